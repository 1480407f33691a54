"""The compiled checks (contracts.engine) find exactly the rows and rules the Great Expectations suite finds,
for every contract, on generated data with what real agencies send wrong mixed in (issue 21).

Each example takes a feed's generated rows and changes some cells to values agencies do send: missing and
blank values, padded and full-width text, a lower-case check character, first-generation 15-digit numbers,
spreadsheet-mangled numbers, wrong check characters, dates written five ways and impossible ones, moments
without a zone, text and negative numbers in amount columns, Chinese text, values of other columns, and
keys copied onto other rows. Both engines then judge the normalised frame: the rule bits of every row, and
the rules neither could evaluate, must be the same. GX is called as the exchange calls it (the compiled
suite, the fast result format) — this test is what allows the exchange to split rows without it.
"""

from __future__ import annotations

from datetime import date
from functools import cache, lru_cache

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import contract_names, load_contract
from contracts.engine import row_codes
from contracts.normalise import normalise
from contracts.validate import gx_raised, gx_validate
from sandbox.city import OFFICE_FEEDS, generate_city, generate_feed

TODAY = date(2026, 11, 1)
ROWS = 240

#: values agencies send wrong, for any column (a column's own values are drawn besides these)
ODD = [
    None, "", "   ", "\u3000", "\t", "无", "NULL", "-", "张三", "x" * 70, "0", "1.10105E+17",
    "3.301061956100938e+17", "11010519491231002x", "110105491231002", "１１０１０５１９４９１２３１００２Ｘ",
    "110105194912310021", "999999194912310024", "2021/4/12", "20210412", "2021-02-30", "2021-4-1",
    "1899-12-31", "2099-01-01", "2021-04-12 08:00:00", "2021-04-12T08:00:00+08:00", "2021-04-12T08:00:00Z",
    "2021-04-12T08:00:00", "91110000600037341L", "91110000600037341M", "9111000060003734", "M", "F", "男",
    "active", "ACTIVE ", "abc", "12.50", " 3 ",
]
NUMBERS = [np.nan, -1.0, 0.0, 0.005, 1e12, 123456.78, "12.5", "abc", None]


@lru_cache(maxsize=1)
def _office() -> dict[str, pd.DataFrame]:
    return generate_city(1500, seed=42).office


@cache
def _base(feed: str) -> pd.DataFrame:
    if feed in OFFICE_FEEDS:
        frame = _office()[feed]
    else:
        frame = pd.concat(list(generate_feed(feed, ROWS, seed=11)), ignore_index=True)
    return frame.head(ROWS).reset_index(drop=True)


@st.composite
def changes(draw: st.DrawFn, feed: str) -> list[tuple[str, int, object]]:
    """Cells to change: (column, row, value); a value of ("copy", row) copies that row's value."""
    frame = _base(feed)
    columns = [c for c in load_contract(feed).names if c in frame.columns]
    out = []
    for _ in range(draw(st.integers(1, 40))):
        column = draw(st.sampled_from(columns))
        row = draw(st.integers(0, len(frame) - 1))
        numeric = pd.api.types.is_numeric_dtype(frame[column].dtype)
        kind = draw(st.sampled_from(("odd", "copy", "other") if not numeric else ("number", "copy")))
        if kind == "odd":
            value: object = draw(st.sampled_from(ODD))
        elif kind == "number":
            value = draw(st.sampled_from(NUMBERS))
        elif kind == "copy":
            value = ("copy", draw(st.integers(0, len(frame) - 1)))
        else:
            value = frame[draw(st.sampled_from(columns))].iloc[draw(st.integers(0, len(frame) - 1))]
        out.append((column, row, value))
    return out


def _apply(feed: str, cells: list[tuple[str, int, object]]) -> pd.DataFrame:
    """The generated rows with the changes, typed as a connector delivers them: text columns stay Arrow
    text when every value is text; a number column that received text becomes objects (as from a sheet)."""
    frame = _base(feed).copy()
    touched = {column for column, _, _ in cells}
    for column in touched:
        frame[column] = frame[column].astype(object)
    for column, row, value in cells:
        if isinstance(value, tuple):
            value = frame[column].iloc[value[1]]
        frame.loc[row, column] = value
    for column in touched:
        values = frame[column]
        present = values.dropna()
        if len(present) and all(isinstance(v, str) for v in present):
            frame[column] = values.astype("str")
        elif len(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            frame[column] = pd.to_numeric(values)
    return frame


def _gx_codes(feed: str, work: pd.DataFrame, row_ids: list[str]) -> tuple[np.ndarray, set[str]]:
    result = gx_validate(load_contract(feed), work, {"today": TODAY.isoformat(), "row_count_min": 0,
                                                     "row_count_max": None})
    codes = np.zeros(len(work), dtype=np.int64)
    raised = set()
    for item in result.results:
        rule_id = item.expectation_config.meta["rule"]
        if gx_raised(item):
            raised.add(rule_id)
        elif rule_id in row_ids:
            failed = np.asarray(item.result.get("unexpected_index_list") or [], dtype=np.int64)
            codes[failed] |= np.int64(1) << np.int64(row_ids.index(rule_id))
    return codes, raised


def _same(feed: str, frame: pd.DataFrame) -> None:
    contract = load_contract(feed)
    work = frame[[c for c in contract.names if c in frame.columns]].copy()
    for name in contract.names:
        if name not in work.columns:
            work[name] = pd.Series(np.nan, index=work.index, dtype="str")
    work, _ = normalise(contract, work[list(contract.names)])
    work = work.reset_index(drop=True)
    ours = row_codes(contract, work, TODAY)
    theirs, raised = _gx_codes(feed, work, ours.row_ids)
    assert set(ours.unevaluated) == raised
    differ = np.flatnonzero(ours.codes != theirs)
    named = {rule: int(np.count_nonzero((ours.codes[differ] ^ theirs[differ]) >> i & 1))
             for i, rule in enumerate(ours.row_ids)}
    assert not len(differ), {rule: n for rule, n in named.items() if n}


@pytest.mark.parametrize("feed", contract_names())
def test_generated_rows_get_the_same_verdict_from_both_engines(feed: str) -> None:
    _same(feed, _base(feed))


@pytest.mark.parametrize("feed", contract_names())
def test_what_agencies_send_wrong_gets_the_same_verdict_from_both_engines(feed: str) -> None:
    @settings(max_examples=6, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(cells=changes(feed))
    def judged_alike(cells: list[tuple[str, int, object]]) -> None:
        _same(feed, _apply(feed, cells))

    judged_alike()


def test_a_rule_neither_engine_can_evaluate_is_unevaluated_in_both() -> None:
    feed = "medical_insurance.bills"
    frame = _base(feed).copy()
    frame["total_amount"] = frame["total_amount"].astype(object)
    frame.loc[3, "total_amount"] = "abc"  # text among the amounts: GX's comparison raises, and so does ours
    _same(feed, frame)
    contract = load_contract(feed)
    work, _ = normalise(contract, frame[list(contract.names)])
    assert "total_amount.range" in row_codes(contract, work.reset_index(drop=True), TODAY).unevaluated
