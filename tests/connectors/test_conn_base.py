"""What every connector shares: frame shaping, de-duplication by key, schema checks, the Pull's repr."""

from __future__ import annotations

import pandas as pd
import pytest

from connectors import load_feed
from connectors.base import Connector, Pull, Repeats, Tally, deduplicate
from contracts import load_contract
from fundx.core.digest import DEFECT
from fundx.core.errors import SourceSchemaError
from fundx.core.settings import Settings
from fundx.core.timeutil import Window


class Canned(Connector):
    """A connector whose agency is a list of frames (a double for the base's own logic)."""

    transport = "canned"

    def __init__(self, frames):
        feed = "civil_affairs.deaths"
        super().__init__(load_feed(feed), load_contract(feed), Settings())
        self.frames = frames

    def _pull(self, window, tally: Tally) -> pd.DataFrame:
        for frame in self.frames:
            tally.page(len(frame), 100)
        return pd.concat(self.frames, ignore_index=True)


def record(record_id, reported_at, name="张三", **extra):
    return {"record_id": record_id, "id_number": "33010519500101123X", "name": name,
            "death_date": "2026-04-12", "reported_at": reported_at, **extra}


WINDOW = Window.of("2026-01-01", "2026-12-01")


def test_frame_in_contract_order_with_optional_columns_added():
    pull = Canned([pd.DataFrame([record("A", "2026-04-13T09:00:00+08:00")])]).extract(WINDOW)
    assert list(pull.frame.columns) == list(load_contract("civil_affairs.deaths").names)
    assert pull.frame["funeral_home"].isna().all()
    assert pull.rows == 1 and pull.pages == 1 and pull.bytes == 100


def test_a_page_served_twice_yields_no_duplicates():
    page = pd.DataFrame([record("A", "2026-04-13T09:00:00+08:00"), record("B", "2026-04-13T10:00:00+08:00")])
    pull = Canned([page, page]).extract(WINDOW)
    assert list(pull.frame["record_id"]) == ["A", "B"]
    assert pull.digest == Canned([page]).extract(WINDOW).digest


def test_repeated_key_keeps_the_latest_by_incremental_column_not_arrival():
    newer = pd.DataFrame([record("A", "2026-04-14T09:00:00+08:00", name="新")])
    older = pd.DataFrame([record("A", "2026-04-13T09:00:00+08:00", name="旧")])
    assert Canned([newer, older]).extract(WINDOW).frame.loc[0, "name"] == "新"
    assert Canned([older, newer]).extract(WINDOW).frame.loc[0, "name"] == "新"


def test_incremental_times_compare_as_instants_across_offsets():
    utc_later = pd.DataFrame([record("A", "2026-04-13T02:30:00+00:00", name="later")])  # 10:30 in Shanghai
    local_earlier = pd.DataFrame([record("A", "2026-04-13T10:00:00+08:00", name="earlier")])
    assert Canned([utc_later, local_earlier]).extract(WINDOW).frame.loc[0, "name"] == "later"


def test_deduplicate_collapses_identical_copies_keeping_the_last_arrival_in_arrival_order():
    frame = pd.DataFrame({"k": ["a", "b", "a", "c"], "v": [1, 2, 1, 4]})
    repeats = Repeats()
    out = deduplicate(frame, ("k",), None, repeats=repeats)
    assert out.to_dict("list") == {"k": ["b", "a", "c"], "v": [2, 1, 4]}
    assert (repeats.identical, repeats.superseded, repeats.conflicting) == (1, 0, 0)


def test_different_rows_under_one_key_without_an_incremental_column_are_a_conflict_not_a_silent_collapse():
    frame = pd.DataFrame({"k": ["a", "b", "a", "a", "c"], "v": [1, 2, 3, 1, 4]})
    repeats = Repeats()
    out = deduplicate(frame, ("k",), None, repeats=repeats)
    # the copy of a=1 collapses; a=1 and a=3 disagree: both stay, both marked, in arrival order
    assert out[["k", "v"]].to_dict("list") == {"k": ["b", "a", "a", "c"], "v": [2, 3, 1, 4]}
    marks = out[DEFECT].tolist()
    assert marks[0] is None or marks[0] != marks[0]  # b: no mark (NaN)
    assert marks[1] == marks[2] == "key_conflict: 2 different rows of this batch share this record key"
    assert (repeats.identical, repeats.superseded, repeats.conflicting) == (1, 0, 2)


def test_a_later_version_by_the_incremental_column_replaces_an_earlier_one_but_a_tie_is_a_conflict():
    frame = pd.DataFrame({"k": ["a", "a", "b", "b", "b"], "v": [1, 2, 1, 2, 3],
                          "t": ["2026-04-13T09:00:00+08:00", "2026-04-14T09:00:00+08:00",
                                "2026-04-13T09:00:00+08:00", "2026-04-14T09:00:00+08:00", "2026-04-14T09:00:00+08:00"]})
    repeats = Repeats()
    out = deduplicate(frame, ("k",), "t", repeats=repeats)
    assert out[["k", "v"]].to_dict("list") == {"k": ["a", "b", "b"], "v": [2, 2, 3]}
    assert out[DEFECT].isna().tolist() == [True, False, False]
    assert (repeats.identical, repeats.superseded, repeats.conflicting) == (0, 2, 2)


def test_rows_with_an_incomplete_key_or_a_malformed_row_are_never_matched_with_each_other():
    frame = pd.DataFrame({"k": [None, None, "a", None], "v": [1, 1, 2, None],
                          DEFECT: [None, None, None, "row_shape: d.csv line 5: 9 fields, the header has 8"]})
    out = deduplicate(frame, ("k",), None)
    assert len(out) == 4  # two rows without a key are the required rule's to quarantine, not one row
    assert out[DEFECT].tolist()[:3] == [None, None, None] or out[DEFECT].iloc[:3].isna().all()


def test_missing_required_column_is_a_schema_error_without_values():
    frame = pd.DataFrame([record("A", "2026-04-13T09:00:00+08:00")]).drop(columns=["id_number"])
    with pytest.raises(SourceSchemaError) as info:
        Canned([frame]).extract(WINDOW)
    assert str(info.value).startswith("civil_affairs.deaths: ")
    assert "id_number" in str(info.value) and "33010519500101123X" not in str(info.value)
    assert "civil_affairs" in info.value.action


def test_progress_gets_the_running_row_count():
    pages = [pd.DataFrame([record(f"R{i}{j}", "2026-04-13T09:00:00+08:00") for j in range(3)]) for i in range(3)]
    seen: list[int] = []
    Canned(pages).extract(WINDOW, progress=seen.append)
    assert seen == [3, 6, 9]


def test_pull_repr_carries_no_records():
    pull = Canned([pd.DataFrame([record("A", "2026-04-13T09:00:00+08:00")])]).extract(WINDOW)
    assert isinstance(pull, Pull)
    assert "33010519500101123X" not in repr(pull) and "张三" not in repr(pull)
    assert "civil_affairs.deaths" in repr(pull)
