"""Issue 16, attack 1 and the rows it taught us about: a religious-affairs drop as a real bureau may send it
— a row with a field too many (a trailing comma), one with a field too few, a record sent twice with
different values, a record sent twice unchanged, an identity number typed into a column meant for
something else — run through the exchange whole and streamed, then shown to a steward.

What must hold: no row is ever read into other columns (the malformed ones are quarantined under
``row_shape`` with their row number, their values nowhere); a key conflict is quarantined, both rows,
under ``key_conflict``; identical copies collapse; the other rows reach the stage; the two paths agree;
and no steward view (``fundx failures show``, its JSON, the console's masked view) shows an identity
number in full, whatever column it sits in.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from testkit import account
from typer.testing import CliRunner

from fundx.core.identity import id_check_char
from fundx.core.timeutil import SHANGHAI
from fundx.exchange import quarantine
from fundx.exchange.run import run_feed
from fundx.ledger import Ledger

FEED = "religious_affairs.deaths"
END = "2026-11-23T00:00:00+08:00"
HEADERS = ["登记编号", "公民身份号码", "姓名", "性别", "死亡日期", "宗教活动场所", "登记日期"]
#: anything shaped like an identity number, ASCII or full-width, with or without spaces
WHOLE_ID = re.compile(r"(?<![0-9０-９])(?:[0-9０-９][ -]?){17}[0-9０-９XxＸｘ](?![0-9０-９])")
runner = CliRunner()


def person(n: int) -> str:
    body = f"330106{1940 + n % 40}{1 + n % 12:02d}{1 + n % 28:02d}{100 + n:03d}"[:17]
    return body + id_check_char(body)


def good(n: int, **change: str) -> list[str]:
    row = {"id": f"ZJ3301{n:010d}", "person": person(n), "name": f"王{n}", "gender": "男",
           "died": "2026-04-12", "venue": "灵隐寺", "registered": "2026-04-15"} | change
    return list(row.values())


#: (row number in the file, the header being row 1) of each planted row
TRAILING_COMMA, TOO_FEW = 12, 30
SECRET = person(999)  # the identity number the malformed rows carry


def bureau_file() -> tuple[bytes, int]:
    """The month's file (GB18030 with its BOM, CRLF) and its data rows as the marker counts them."""
    lines = [",".join(HEADERS)]
    rows = [good(n) for n in range(1, 61)]
    rows.insert(TRAILING_COMMA - 2, [*good(900, person=SECRET, venue="清真寺"), ""])  # one field too many
    rows.insert(TOO_FEW - 2, good(901, person=SECRET)[:-1])  # one field too few: no registration date
    rows.append(good(5, name="王五改"))  # record 5 again with another name: which is right? the stewards say
    rows.append(good(7))  # record 7 again, unchanged: one row sent twice
    rows.append(good(61, id=f"{person(998)[:6]} {person(998)[6:14]} {person(998)[14:]}"))  # an id where the record's belongs
    lines += [",".join(r) for r in rows]
    return b"\x84\x31\x95\x33" + ("\r\n".join(lines) + "\r\n").encode("gb18030"), len(rows)


@pytest.fixture(scope="module")
def drop_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("religious")
    data, rows = bureau_file()
    (folder / "deaths_202604.csv").write_bytes(data)
    marker = folder / "deaths_202604.csv.ok"
    marker.write_text(f"rows={rows}\nsha256={hashlib.sha256(data).hexdigest()}\n")
    arrived = datetime(2026, 5, 3, 6, 0, tzinfo=SHANGHAI).timestamp()
    os.utime(marker, (arrived, arrived))
    return folder


@pytest.fixture(scope="module")
def sandbox(drop_folder):
    """No agencies: the religious-affairs drop folder is all this module needs (tests/conftest.py)."""
    return SimpleNamespace(env={"FUNDX_RELIGIOUS_AFFAIRS_DROP": str(drop_folder)})


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_malformed_rows_and_key_conflicts_are_quarantined_and_the_rest_delivered(home, stream, monkeypatch):
    from fundx.core.settings import reload_settings

    if stream:
        monkeypatch.setenv("FUNDX_CHUNK_ROWS", "16")  # malformed rows and the conflict fall in different chunks
        reload_settings()
    done = run_feed(FEED, end=END, stream=stream)
    if stream:
        assert done.steps is not None and done.steps["pull"]["rows"] == 64
    ledger = Ledger.from_settings()
    (kept,) = quarantine.batches(ledger, feed=FEED)
    assert not kept.held
    # 61 records + 2 malformed + record 5's second version; record 7's copy collapsed
    assert done.rows == 64 and done.quarantined == 5 and done.valid == 59
    frame = quarantine.read_rows(ledger, kept.batch_id)
    rules = dict(zip(frame[quarantine.ROW], frame[quarantine.RULES]))
    shapes = frame[frame[quarantine.RULES] == "row_shape"]
    assert len(shapes) == 2
    # never read into the columns: every contract column of a malformed row is empty
    assert shapes[["record_id", "id_number", "name", "death_date", "venue"]].isna().all().all()
    assert sorted(shapes[quarantine.DEFECT]) == [
        f"row_shape: deaths_202604.csv row {TRAILING_COMMA}: 8 fields where the header has 7",
        f"row_shape: deaths_202604.csv row {TOO_FEW}: 6 fields where the header has 7",
    ]
    assert all(SECRET in raw for raw in shapes[quarantine.RAW])  # kept, sealed, for the record
    conflict = frame[frame[quarantine.RULES].str.contains("key_conflict")]
    assert sorted(conflict["name"]) == ["王5", "王五改"] and set(conflict["record_id"]) == {"ZJ33010000000005"}
    assert set(conflict[quarantine.RULES]) == {"key_conflict"}  # not also record_id.unique: the same thing
    assert [r for r in rules.values() if "record_id.format" in r] == ["record_id.format"]
    assert len(rules) == 5


def test_both_paths_make_the_same_batch_and_quarantine(home, monkeypatch):
    ledger = Ledger.from_settings()
    whole = run_feed(FEED, end=END)
    (first,) = quarantine.batches(ledger, feed=FEED)
    rows_whole = quarantine.read_rows(ledger, first.batch_id)
    monkeypatch.setenv("FUNDX_HOME", str(home.parent / "home-streamed"))
    monkeypatch.setenv("FUNDX_CHUNK_ROWS", "16")
    from fundx.core.settings import reload_settings

    reload_settings()
    streamed = run_feed(FEED, end=END, stream=True)
    ledger = Ledger.from_settings()
    (second,) = quarantine.batches(ledger, feed=FEED)
    assert (whole.handoff.batch_id, whole.digest) == (streamed.handoff.batch_id, streamed.digest)
    rows_streamed = quarantine.read_rows(ledger, second.batch_id)
    def records(frame):
        return frame.astype(object).where(frame.notna(), None).to_dict("records")

    assert records(rows_whole) == records(rows_streamed)


def test_no_steward_view_shows_an_identity_number_in_full(home):
    from fundx.cli import app

    done = run_feed(FEED, end=END)
    batch_id = done.handoff.batch_id
    ledger = Ledger.from_settings()
    frame = quarantine.read_rows(ledger, batch_id)
    shown = quarantine.masked_view(frame, FEED)
    assert not WHOLE_ID.search(shown.to_json(force_ascii=False))
    steward = account(ledger)
    listed = runner.invoke(app, ["failures", "show", batch_id, "--json", *steward["args"]], input=steward["input"])
    assert listed.exit_code == 0, listed.output
    assert not WHOLE_ID.search(listed.output), "an identity number in full in fundx failures show --json"
    records = json.loads(listed.output)
    notes = [r["_defect"] for r in records if r["_defect"]]
    assert f"deaths_202604.csv row {TRAILING_COMMA}: 8 fields where the header has 7" in notes
    table = runner.invoke(app, ["failures", "show", batch_id, *steward["args"]], input=steward["input"])
    assert table.exit_code == 0 and not WHOLE_ID.search(table.output)
    # the malformed rows say nothing of the person: no religion, no date of death, no name
    malformed = [r for r in records if r["_rules"] == "row_shape"]
    assert malformed and all(r[c] in ("", quarantine.HIDDEN) for r in malformed
                             for c in ("record_id", "id_number", "name", "death_date", "venue"))


def test_an_identity_number_in_any_column_is_masked_in_the_stewards_view():
    import pandas as pd

    someone = person(77)
    frame = pd.DataFrame({
        quarantine.ROW: [1, 2, 3], quarantine.POSITION: [0, 1, 2],
        "record_id": [someone, f"ZJ{someone}", "ZJ33010000000001"],  # internal: shown, but never an id in full
        "id_number": [someone, None, "x"], "name": ["王某某", None, "李"], "gender": ["男", None, None],
        "death_date": ["2026-04-12", None, None], "venue": [f"寺 {someone[:6]} {someone[6:]}", None, None],
        "registered_on": [f"{someone[:17]}", "2026-04-15", "2026-04-15"],  # 17 digits: not an id's shape
        quarantine.RULES: ["venue.length", "record_id.format", ""],
        quarantine.DEFECT: [None, None, None], quarantine.RAW: [None, None, None],
    })
    shown = quarantine.masked_view(frame, FEED)
    text = shown.to_json(force_ascii=False)
    assert someone not in text and not WHOLE_ID.search(text)
    assert shown.loc[0, "record_id"] == someone[:6] + "********" + someone[-4:]
    assert shown.loc[0, "venue"].startswith("寺 " + someone[:6] + "********")
    assert shown.loc[0, "registered_on"] == someone[:17]  # a look-alike that is no identity number stays
    assert shown.loc[2, "record_id"] == "ZJ33010000000001"  # 16 characters: a record id, shown as sent


def test_a_malformed_row_cannot_be_released_only_rejected(home):
    from fundx.core.errors import DecisionError

    done = run_feed(FEED, end=END)
    batch_id = done.handoff.batch_id
    ledger = Ledger.from_settings()
    frame = quarantine.read_rows(ledger, batch_id)
    malformed = sorted(frame.loc[frame[quarantine.RULES] == "row_shape", quarantine.ROW].astype(int))
    other = sorted(set(frame[quarantine.ROW].astype(int)) - set(malformed))
    reason = "the agency confirmed these rows by phone"
    for rows, rule in ((malformed[:1], None), (None, "row_shape"), (None, None)):
        with pytest.raises(DecisionError, match="never read into their columns"):
            quarantine.decide(ledger, batch_id, "release", reason=reason, actor="steward-wang", rows=rows, rule=rule)
    assert quarantine.decisions_of(ledger, batch_id=batch_id) == []  # nothing recorded
    quarantine.decide(ledger, batch_id, "reject", reason="malformed: asked for a new file", actor="steward-wang",
                      rule="row_shape")
    made = quarantine.decide(ledger, batch_id, "release", reason=reason, actor="steward-wang", rows=other[:1])
    assert made.rows == tuple(other[:1])
