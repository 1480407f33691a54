"""The contract's row rules compiled to vectorised checks: the row-level split without Great Expectations.

    contract --contract_rules()--> engine-neutral rules --row_codes()--> one bit per rule per row

Great Expectations stays the contract's engine of record (issue 21): it validates every batch's results
and writes its Data Docs (:mod:`contracts.evidence`). But asking it for the row-level split of every
chunk cost 2.5-5.4 times the plainest vectorised code (its metric graph, a filtered copy of the frame per
expectation, ~0.25 s of fixed cost per chunk), so the split is computed here: one function per rule kind
(:data:`TO_MASK`, the twin of :data:`contracts.compile.TO_GX`), each reading a whole column at once,
with GX's own semantics:

- GX's built-in column expectations see only the values that are there (nulls pass, except for
  ``required``); a pattern is a search (``str.contains``), a length is that of the value as text;
- fundx's own expectations (contracts/expectations.py) call the very functions below, so the two cannot
  drift apart;
- a rule GX could not evaluate (a number range over text) is ``unevaluated`` here too.

``tests/contracts/test_engine_vs_gx.py`` proves on generated data — every contract, the agencies'
variations and hypothesis' mutations — that the bits are exactly the failures GX finds.
Importing this module does not import Great Expectations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from contracts import Contract
from contracts.checks import (
    EXCEL_MANGLED,
    column_days,
    column_ids,
    is_timestamp,
    matches,
    present,
    repeated,
    shared_work,
)
from contracts.rules import Rule, contract_rules
from fundx.core.areacodes import known_areas
from fundx.core.idcolumns import NO_DAY, uscc_column
from fundx.core.threads import thread_map

#: GB 32100-2015's shape of a unified social credit code (the check character is the rule's to judge).
USCC_SHAPE = r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$"


def _day(text: str | None) -> int | None:
    """Days since 1970-01-01 of an ISO date (None stays None)."""
    return None if text is None else int(np.datetime64(str(text), "D").astype(np.int64))


# --- fundx's own rules: shared with the custom expectations -------------------------------------------


def identity_number_ok(column: pd.Series) -> np.ndarray:
    """Identity numbers (GB 11643) with a real birth date and the right check character; others pass."""
    ids = column_ids(column)
    return ~ids.shaped | ids.valid


def known_area_ok(column: pd.Series) -> np.ndarray:
    """Identity numbers issued under a county-level code that has existed (GB/T 2260, national, with history)."""
    ids = column_ids(column)
    return ~ids.shaped | known_areas(ids.area)


def credit_code_ok(column: pd.Series) -> np.ndarray:
    """Unified social credit codes (GB 32100) with the right check character; other shapes pass."""
    return ~matches(column, USCC_SHAPE) | uscc_column(column)


def date_ok(column: pd.Series) -> np.ndarray:
    """Real calendar dates; missing values pass."""
    return ~present(column) | (column_days(column) != NO_DAY)


def dates_between_ok(column: pd.Series, min_date: str | None = None, max_date: str | None = None) -> np.ndarray:
    """Dates within [min_date, max_date]; values that are not dates pass (``date`` reports them)."""
    days = column_days(column)
    ok = np.ones(len(days), dtype=bool)
    low, high = _day(min_date), _day(max_date)
    if low is not None:
        ok &= days >= low
    if high is not None:
        ok &= days <= high
    return (days == NO_DAY) | ok


def timestamp_ok(column: pd.Series) -> np.ndarray:
    """Moments with a time zone; missing values pass."""
    return ~present(column) | is_timestamp(column)


def dates_in_order_ok(first: pd.Series, second: pd.Series) -> np.ndarray:
    """The first date on or before the second; rows without both dates pass."""
    a, b = column_days(first), column_days(second)
    return (a == NO_DAY) | (b == NO_DAY) | (a <= b)


def birth_matches_id_ok(ids_column: pd.Series, born: pd.Series) -> np.ndarray:
    """The birth date equals the one written in the identity number (rows without either pass)."""
    ids, day = column_ids(ids_column), column_days(born)
    return ~ids.valid | (day == NO_DAY) | (ids.birth == day)


def not_before_id_birth_ok(ids_column: pd.Series, when: pd.Series) -> np.ndarray:
    """A date not before the birth date in the identity number (rows without either pass)."""
    ids, day = column_ids(ids_column), column_days(when)
    return ~ids.valid | (day == NO_DAY) | (day >= ids.birth)


# --- GX's built-in expectations, as GX's pandas engine computes them ----------------------------------


def _among_present(frame: pd.DataFrame, rule: Rule, test: Callable[[pd.Series], Any]) -> np.ndarray:
    """GX's built-in column expectations look only at the values that are there: the rest pass."""
    column = frame[rule.columns[0]]
    there = present(column)
    if there.all():
        return np.asarray(test(column), dtype=bool)
    ok = np.ones(len(column), dtype=bool)
    ok[there] = np.asarray(test(column[there]), dtype=bool)
    return ok


def _is_text(column: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(column.dtype) and column.dtype != object


def _arrow_text(column: pd.Series) -> pa.Array | pa.ChunkedArray | None:
    """The Arrow array behind a text column held by Arrow (its missing values Arrow's nulls), else None. Over it
    a row-wise test runs on every row at once and the missing rows are passed after: the same as testing only
    the values that are there, without pandas copying them out first."""
    dtype = column.dtype
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        return pa.array(column.array)
    return None


def _passing_missing(column: pd.Series, ok: pa.Array | pa.ChunkedArray | np.ndarray) -> np.ndarray:
    """A row-wise test's verdicts with the missing rows passed (GX looks only at the values that are there)."""
    if not isinstance(ok, np.ndarray):
        ok = pc.fill_null(ok, True)
        ok = ok.to_numpy() if isinstance(ok, pa.ChunkedArray) else ok.to_numpy(zero_copy_only=False)
    return np.asarray(ok, dtype=bool) | ~present(column)


def _pattern(frame: pd.DataFrame, rule: Rule) -> np.ndarray:
    regex = rule.params["regex"]
    column = frame[rule.columns[0]]
    if _arrow_text(column) is not None:
        return _passing_missing(column, matches(column, regex))
    # GX: column.astype(str).str.contains(regex); on Arrow text that is Arrow's own regex search
    return _among_present(frame, rule, lambda s: matches(s, regex) if _is_text(s) else s.astype(str).str.contains(regex))


def _length(frame: pd.DataFrame, rule: Rule) -> np.ndarray:
    low, high = rule.params["min"], rule.params["max"]
    column = frame[rule.columns[0]]
    if (arr := _arrow_text(column)) is not None:  # characters, as str.len counts them
        n = pc.fill_null(pc.utf8_length(arr), 0)
        n = n.to_numpy() if isinstance(n, pa.ChunkedArray) else n.to_numpy(zero_copy_only=False)
        return _passing_missing(column, (n >= low if low is not None else True) & (n <= high if high is not None else True))

    def within(s: pd.Series) -> np.ndarray:
        n = (s if _is_text(s) else s.astype(str)).str.len().to_numpy(dtype=np.int64)
        return np.asarray((n >= low if low is not None else True) & (n <= high if high is not None else True))
    return _among_present(frame, rule, within)


def _number_range(frame: pd.DataFrame, rule: Rule) -> np.ndarray:
    low, high = rule.params["min"], rule.params["max"]

    def between(s: pd.Series) -> np.ndarray:
        if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            x = s.to_numpy(dtype=float)
        elif s.dtype == object:
            x = s.to_numpy(dtype=object)  # GX compares each value: text against a number raises, here too
            if any(isinstance(v, str) for v in x):
                raise TypeError(f"{rule.id}: text in a number column")
        else:
            raise TypeError(f"{rule.id}: a number range over a {s.dtype} column")
        return np.asarray((x >= low if low is not None else True) & (x <= high if high is not None else True),
                          dtype=bool)
    return _among_present(frame, rule, between)


def _not_greater(frame: pd.DataFrame, rule: Rule) -> np.ndarray:
    column, than = (frame[c] for c in rule.columns)
    both = present(column) & present(than)
    ok = np.ones(len(frame), dtype=bool)
    # GX: column_A >= column_B over the rows with both values (ignore_row_if either_value_is_missing)
    ok[both] = np.asarray(than[both].to_numpy() >= column[both].to_numpy(), dtype=bool)
    return ok


def _unique(frame: pd.DataFrame, rule: Rule) -> np.ndarray:
    column = frame[rule.columns[0]]
    if _arrow_text(column) is not None:  # missing values pass; a value there more than once fails
        return ~repeated(column)
    return _among_present(frame, rule, lambda s: ~s.duplicated(keep=False).to_numpy())


def _allowed(frame: pd.DataFrame, rule: Rule) -> np.ndarray:
    values = list(rule.params["values"])
    column = frame[rule.columns[0]]
    if (arr := _arrow_text(column)) is not None and all(isinstance(v, str) for v in values):
        return _passing_missing(column, pc.is_in(arr, value_set=pa.array(values, type=pa.large_string())))
    return _among_present(frame, rule, lambda s: s.isin(values).to_numpy())


def _excel_mangled(frame: pd.DataFrame, rule: Rule) -> np.ndarray:
    column = frame[rule.columns[0]]
    if _arrow_text(column) is not None:
        return _passing_missing(column, ~matches(column, EXCEL_MANGLED))
    return _among_present(
        frame, rule, lambda s: ~(matches(s, EXCEL_MANGLED) if _is_text(s) else s.astype(str).str.contains(EXCEL_MANGLED)))


def _column(check: Callable[[pd.Series], np.ndarray]) -> Callable[[pd.DataFrame, Rule, dict], np.ndarray]:
    return lambda frame, rule, parameters: check(frame[rule.columns[0]])


def _pair(check: Callable[[pd.Series, pd.Series], np.ndarray]) -> Callable[[pd.DataFrame, Rule, dict], np.ndarray]:
    return lambda frame, rule, parameters: check(frame[rule.columns[0]], frame[rule.columns[1]])


def _range(frame: pd.DataFrame, rule: Rule, parameters: dict) -> np.ndarray:
    if rule.params["dates"]:
        return dates_between_ok(frame[rule.columns[0]], rule.params["min"], rule.params["max"])
    return _number_range(frame, rule)


#: rule kind -> its vectorised check (frame, rule, {"today": ISO date}) -> bool per row, True = passes.
#: The twin of contracts.compile.TO_GX: one entry per kind.
TO_MASK: dict[str, Callable[[pd.DataFrame, Rule, dict], np.ndarray]] = {
    "required": lambda frame, rule, parameters: present(frame[rule.columns[0]]),
    "unique": lambda frame, rule, parameters: _unique(frame, rule),
    "pattern": lambda frame, rule, parameters: _pattern(frame, rule),
    "length": lambda frame, rule, parameters: _length(frame, rule),
    "allowed_values": lambda frame, rule, parameters: _allowed(frame, rule),
    "range": _range,
    "date": _column(date_ok),
    "timestamp": _column(timestamp_ok),
    "not_future": lambda frame, rule, parameters: dates_between_ok(frame[rule.columns[0]], None, parameters["today"]),
    "excel_mangled": lambda frame, rule, parameters: _excel_mangled(frame, rule),
    "identity_number": _column(identity_number_ok),
    "area_code": _column(known_area_ok),
    "credit_code": _column(credit_code_ok),
    "birth_date_matches_id": _pair(birth_matches_id_ok),
    "date_order": _pair(dates_in_order_ok),
    "not_before_id_birth": _pair(not_before_id_birth_ok),
    "not_greater_than": lambda frame, rule, parameters: _not_greater(frame, rule),
}


@dataclass
class RowCodes:
    """A frame's rows against the contract's row rules: bit ``i`` of ``codes`` is ``row_ids[i]`` broken."""

    codes: np.ndarray
    row_ids: list[str]
    unevaluated: list[str] = field(default_factory=list)
    #: per rule, the values GX would count as missing (for Data Docs' counts): None where GX reports none
    missing: dict[str, int | None] = field(default_factory=dict)

    def bit(self, rule_id: str) -> np.int64:
        return np.int64(1) << np.int64(self.row_ids.index(rule_id))


def row_codes(contract: Contract, frame: pd.DataFrame, today: date) -> RowCodes:
    """Every row rule of the contract over a normalised frame (its columns, any index): which each row breaks.

    The structural rules (row shape, key conflicts) have their bits but are the transport's to set."""
    rules = contract_rules(contract)
    row_ids = [r.id for r in rules.row_rules]
    if len(row_ids) > 62:
        raise ValueError("more than 62 row rules in one contract")
    codes = np.zeros(len(frame), dtype=np.int64)
    unevaluated: list[str] = []
    missing: dict[str, int | None] = {}
    parameters = {"today": today.isoformat()}

    def judge(rule: Rule) -> tuple[np.ndarray | None, int | None]:
        try:
            ok = TO_MASK[rule.kind](frame, rule, parameters)
        except (TypeError, ValueError, ArithmeticError):
            return None, None  # never trust a batch a rule could not look at (the verdict says so)
        return ~np.asarray(ok, dtype=bool), _missing(frame, rule)

    with shared_work():  # the rules side by side (a column parsed once, whichever rule asks first)
        judged = thread_map(judge, [r for r in rules.row_rules if not r.structural])
    found = iter(judged)
    for i, rule in enumerate(rules.row_rules):
        if rule.structural:
            continue
        failed, missed = next(found)
        if failed is None:
            unevaluated.append(rule.id)
            continue
        if failed.any():
            codes[failed] |= np.int64(1) << np.int64(i)
        missing[rule.id] = missed
    return RowCodes(codes, row_ids, unevaluated, missing)


def _missing(frame: pd.DataFrame, rule: Rule) -> int | None:
    """What GX's result says is missing for the rule's expectation: nothing for ``required``, rows missing
    either value for the built-in pair rule, none for fundx's pair rules (they decide themselves)."""
    if rule.kind == "required":
        return None
    if rule.kind == "not_greater_than":
        return int((~(present(frame[rule.columns[0]]) & present(frame[rule.columns[1]]))).sum())
    if len(rule.columns) > 1:
        return 0
    return int((~present(frame[rule.columns[0]])).sum())
