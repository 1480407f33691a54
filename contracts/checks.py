"""Vectorised row checks shared by the custom expectations and the plain-pandas baseline.

Every function takes a whole column (a pandas Series as a connector delivers it: Arrow-backed
``str``, ``object`` holding dates or text, or ``datetime64``) and returns numpy arrays of the
column's length. Nothing here loops over rows in Python.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fundx.core.idcolumns import NO_DAY, IdColumn, arrow_text, ascii_number, calendar_days, fixed_width_rows, id_column

#: What a spreadsheet leaves of an 18-digit number: 3.301061956100938e+17, 1.10105E+17.
EXCEL_MANGLED = r"^[0-9](?:\.[0-9]+)?[eE]\+?[0-9]+$"
#: ISO 8601 timestamps with an offset (2026-10-12T08:00:00+08:00); the offset is required.
ISO_TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:?[0-9]{2})$"

_DATE_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9]


def _is_text(arr: pa.Array) -> bool:
    return pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)


def _arrow(values: pd.Series | pa.Array) -> pa.Array:
    """A column as one Arrow array, whatever pandas holds it as (text stays text)."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    if isinstance(values, pd.Series) and values.dtype == object:
        try:
            return pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return arrow_text(values)  # mixed objects: read each as text
    arr = pa.array(values, from_pandas=True)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def iso_text_days(values: pd.Series | pa.Array) -> np.ndarray:
    """Days since 1970-01-01 of ISO dates written as text (2021-04-12); NO_DAY for anything else."""
    n = len(values)
    out = np.full(n, NO_DAY, dtype=np.int64)
    pos, mat = fixed_width_rows(values, 10)
    if len(pos):
        shape = (mat[:, 4] == 45) & (mat[:, 7] == 45) & ((mat[:, _DATE_DIGITS] - np.uint8(48)) <= 9).all(axis=1)
        ok, days = calendar_days(np.where(shape, ascii_number(mat, 0, 4), -1), ascii_number(mat, 5, 2),
                                 ascii_number(mat, 8, 2))
        if len(pos) == n:  # every value 10 bytes long: no positions to scatter to
            return np.where(ok, days, NO_DAY)
        out[pos[ok]] = days[ok]
    return out


def date_days(values: pd.Series | pa.Array) -> np.ndarray:
    """Days since 1970-01-01 of a date column (ISO text, date objects, datetime64); NO_DAY where none.

    Text that is not a real ISO calendar date (2021-02-30, 2021/4/12 before normalisation) has no day.
    """
    if isinstance(values, pd.Series) and pd.api.types.is_datetime64_any_dtype(values.dtype):
        stamps = values.dt.tz_localize(None) if getattr(values.dt, "tz", None) is not None else values
        days = stamps.to_numpy(dtype="datetime64[D]").astype(np.int64)
        return np.where(values.isna().to_numpy(), NO_DAY, days)
    arr = _arrow(values)
    if _is_text(arr):
        return iso_text_days(arr)
    if pa.types.is_date(arr.type) or pa.types.is_timestamp(arr.type):
        days = pc.cast(arr, pa.date32()) if not pa.types.is_date32(arr.type) else arr
        return days.cast(pa.int32()).fill_null(0).to_numpy().astype(np.int64) * np.where(
            days.is_null().to_numpy(zero_copy_only=False), 0, 1) + np.where(
            days.is_null().to_numpy(zero_copy_only=False), NO_DAY, 0)
    if pa.types.is_null(arr.type):
        return np.full(len(arr), NO_DAY, dtype=np.int64)
    return iso_text_days(arrow_text(values))


def present(values: pd.Series | pa.Array) -> np.ndarray:
    """Whether each value is there (not null/NaN/None)."""
    if isinstance(values, pd.Series):
        return values.notna().to_numpy()
    return ~np.asarray(values.is_null().to_numpy(zero_copy_only=False))


def matches(values: pd.Series | pa.Array, pattern: str) -> np.ndarray:
    """Whether each value, read as text, matches the regular expression (search; anchor it); nulls False."""
    arr = _arrow(values)
    if not _is_text(arr):
        arr = arrow_text(values)
    return pc.match_substring_regex(arr, pattern).fill_null(False).to_numpy(zero_copy_only=False)


def is_timestamp(values: pd.Series | pa.Array) -> np.ndarray:
    """Whether each value is a moment with a time zone: typed (tz-aware) or ISO 8601 text with an offset."""
    if isinstance(values, pd.Series) and pd.api.types.is_datetime64_any_dtype(values.dtype):
        aware = getattr(values.dt, "tz", None) is not None
        return values.notna().to_numpy() & aware
    if isinstance(values, pd.Series) and values.dtype == object:
        texts = values.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        if not texts.all():  # moments mixed with other things: rare, so look at each (not the hot path)
            aware = values.map(lambda v: getattr(v, "tzinfo", None) is not None).to_numpy(dtype=bool)
            return aware | (texts & matches(values.where(texts), ISO_TIMESTAMP))
    arr = _arrow(values)
    if pa.types.is_timestamp(arr.type):
        return ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False)) & (arr.type.tz is not None)
    return matches(values, ISO_TIMESTAMP)


# --- work shared by the rules of one validation ------------------------------------------------
# Several rules read the same column (a date column is checked for being a date, for its range,
# for not being in the future and against other dates). Within one validation the frame is alive
# and unchanged, so a column's parsed form is kept, keyed by the identity of its Arrow buffers.

_shared: ContextVar[dict[tuple, Any] | None] = ContextVar("fundx_shared_checks", default=None)


@contextmanager
def shared_work() -> Iterator[None]:
    """While inside, parsed columns are computed once and reused (scope: one validation)."""
    token = _shared.set({})
    try:
        yield
    finally:
        _shared.reset(token)


def _buffers_key(values: pd.Series | pa.Array) -> tuple[tuple, pa.Array] | None:
    """The identity of a column's Arrow buffers, and the array that holds them (to be kept alive)."""
    if isinstance(values, pd.Series) and values.dtype == object:
        return None  # object columns have no stable buffers to name them by
    try:
        arr = _arrow(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    key = (str(arr.type), arr.offset, len(arr),
           *((b.address, b.size) if b is not None else None for b in arr.buffers()))
    return key, arr


class _Parsed:
    """One column's parsed form in the memo: the array whose buffers name it, kept alive with the result, and a
    lock, so that rules checked side by side (:func:`contracts.engine.row_codes`) parse it once between them."""

    def __init__(self, arr: pa.Array) -> None:
        self.arr = arr
        self.lock = threading.Lock()
        self.done = False
        self.result: Any = None


_memo_lock = threading.Lock()


def _once(kind: str, values: pd.Series | pa.Array, compute: Callable[[Any], Any]) -> Any:
    memo = _shared.get()
    found = _buffers_key(values) if memo is not None else None
    if memo is None or found is None:
        return compute(values)
    key = (kind, *found[0])
    with _memo_lock:
        # the buffers the key names are kept with the result: while the memo lives they cannot be freed, so
        # no other column (a temporary copy Great Expectations makes of another column of the same length,
        # a chunked column combined again) can be given the same addresses and read this column's result
        parsed = memo.setdefault(key, _Parsed(found[1]))
    with parsed.lock:
        if not parsed.done:
            parsed.result = compute(values)
            parsed.done = True
    return parsed.result


def column_days(values: pd.Series | pa.Array) -> np.ndarray:
    """date_days, computed once per column within shared_work()."""
    return _once("days", values, date_days)


def column_ids(values: pd.Series | pa.Array) -> IdColumn:
    """fundx.core.idcolumns.id_column, computed once per column within shared_work()."""
    return _once("ids", values, id_column)
