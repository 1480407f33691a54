"""Vectorised row checks shared by the custom expectations and the plain-pandas baseline.

Every function takes a whole column (a pandas Series as a connector delivers it: Arrow-backed
``str``, ``object`` holding dates or text, or ``datetime64``) and returns numpy arrays of the
column's length. Nothing here loops over rows in Python.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fundx.core.idcolumns import (
    NO_DAY,
    IdColumn,
    arrow_text,
    ascii_number,
    bytes_within,
    calendar_days,
    fixed_width_rows,
    id_column,
)

#: What a spreadsheet leaves of an 18-digit number: 3.301061956100938e+17, 1.10105E+17.
EXCEL_MANGLED = r"^[0-9](?:\.[0-9]+)?[eE]\+?[0-9]+$"
#: ISO 8601 timestamps with an offset (2026-10-12T08:00:00+08:00); the offset is required.
ISO_TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:?[0-9]{2})$"

#: yyyy-MM-dd byte by byte: digits, and '-' at 4 and 7 (bytes_within's lows and spans)
_ISO_LOW = np.frombuffer(b"0000-00-00", dtype=np.uint8)
_ISO_SPAN = np.frombuffer(bytes([9, 9, 9, 9, 0, 9, 9, 0, 9, 9]), dtype=np.uint8)


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


@dataclass(frozen=True)
class IsoForm:
    """A text column's values of 10 bytes (``pos``): written yyyy-MM-dd (``shape``), a real calendar date
    (``ok``) and its days since 1970-01-01 (``days``, meaningful where ``ok``)."""

    pos: np.ndarray
    shape: np.ndarray
    ok: np.ndarray
    days: np.ndarray


def _iso_form(values: pd.Series | pa.Array) -> IsoForm:
    pos, mat = column_rows(values, 10)
    if not len(pos):
        return IsoForm(pos, np.zeros(0, dtype=bool), np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64))
    shape = bytes_within(mat, _ISO_LOW, _ISO_SPAN)
    ok, days = calendar_days(np.where(shape, ascii_number(mat, 0, 4), -1), ascii_number(mat, 5, 2),
                             ascii_number(mat, 8, 2))
    return IsoForm(pos, shape, ok, days)


def iso_form(values: pd.Series | pa.Array) -> IsoForm:
    """A text column's ISO dates by their bytes, once per column within shared_work(): the contract's
    normalisation asks for their shape (contracts.normalise.iso_dates), the date rules for their days."""
    return _once("iso", values, _iso_form)


def iso_text_days(values: pd.Series | pa.Array) -> np.ndarray:
    """Days since 1970-01-01 of ISO dates written as text (2021-04-12); NO_DAY for anything else."""
    n = len(values)
    form = iso_form(values)
    if len(form.pos) == n:  # every value 10 bytes long: no positions to scatter to
        return np.where(form.ok, form.days, NO_DAY)
    out = np.full(n, NO_DAY, dtype=np.int64)
    out[form.pos[form.ok]] = form.days[form.ok]
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
    """Whether each value, read as text, matches the regular expression (search; anchor it); nulls False.

    A pattern of one fixed width of ASCII characters (:func:`fixed_form`: ``^HKZX3301[0-9]{10}$``) is tested on
    the values' bytes instead (the same answer: tests/contracts/test_fast_paths.py); ISO_TIMESTAMP's usual form
    too, the regex then judging only the other values; EXCEL_MANGLED only over the values with an e or E."""
    arr = _arrow(values)
    if not _is_text(arr):
        arr = arrow_text(values)
    form = fixed_form(pattern)
    if form is not None:
        return form_matches(arr, form)
    if pattern == EXCEL_MANGLED:  # a match holds an e or E: only such values go to the regex
        maybe = np.flatnonzero(pc.or_(pc.match_substring(arr, "e"), pc.match_substring(arr, "E"))
                               .fill_null(False).to_numpy(zero_copy_only=False))
        found = np.zeros(len(arr), dtype=bool)
        if len(maybe):
            found[maybe] = _regex(arr.take(pa.array(maybe)), pattern)
        return found
    if pattern == ISO_TIMESTAMP:
        ok = form_matches(arr, _TIMESTAMP_FORM)  # 2026-10-12T08:00:00+08:00: a match of ISO_TIMESTAMP
        rest = np.flatnonzero(~ok & present(arr))
        if len(rest):
            ok[rest] = _regex(arr.take(pa.array(rest)) if len(rest) < len(arr) else arr, pattern)
        return ok
    return _regex(arr, pattern)


_DIGIT = frozenset(range(48, 58))
#: ISO_TIMESTAMP's usual form, 2026-10-12T08:00:00+08:00 (every value of it matches ISO_TIMESTAMP)
_TIMESTAMP_FORM: tuple[frozenset[int], ...] = (
    *[_DIGIT] * 4, frozenset(b"-"), *[_DIGIT] * 2, frozenset(b"-"), *[_DIGIT] * 2, frozenset(b"T"),
    *[_DIGIT] * 2, frozenset(b":"), *[_DIGIT] * 2, frozenset(b":"), *[_DIGIT] * 2, frozenset(b"+-"),
    *[_DIGIT] * 2, frozenset(b":"), *[_DIGIT] * 2)


def _regex(arr: pa.Array, pattern: str) -> np.ndarray:
    return pc.match_substring_regex(arr, pattern).fill_null(False).to_numpy(zero_copy_only=False)


#: a regex of fixed-width ASCII: ^, then literals and [classes] each maybe {n} times, then $
_FORM_ATOM = re.compile(r"(\[[A-Za-z0-9_ :\-]+\]|[A-Za-z0-9_ :\-])(?:\{([0-9]+)\})?")


@lru_cache(maxsize=256)
def fixed_form(pattern: str) -> tuple[frozenset[int], ...] | None:
    """The byte each position of a match may hold, for an anchored pattern of one fixed width of ASCII
    characters (``^[0-9]{17}[0-9X]$``: literals and classes of literals and ranges, each maybe ``{n}``); None
    for any other pattern (it goes to the regex engine). RE2's ``$`` is the end of the text, so such a pattern
    matches exactly the values of that many bytes holding an allowed byte at each position."""
    if not (pattern.startswith("^") and pattern.endswith("$")) or pattern.endswith("\\$"):
        return None
    body, at, form = pattern[1:-1], 0, []
    while at < len(body):
        found = _FORM_ATOM.match(body, at)
        if found is None:
            return None
        atom, times = found.group(1), int(found.group(2) or 1)
        allowed: set[int] = set()
        if atom.startswith("["):
            inner, k = atom[1:-1], 0
            while k < len(inner):
                if k + 2 < len(inner) and inner[k + 1] == "-":
                    if ord(inner[k]) > ord(inner[k + 2]):
                        return None
                    allowed.update(range(ord(inner[k]), ord(inner[k + 2]) + 1))
                    k += 3
                else:
                    allowed.add(ord(inner[k]))
                    k += 1
        else:
            allowed.add(ord(atom))
        form += [frozenset(allowed)] * times
        at = found.end()
    return tuple(form) if 0 < len(form) <= 64 else None


def form_matches(values: pd.Series | pa.Array, form: tuple[frozenset[int], ...]) -> np.ndarray:
    """Whether each value is ``len(form)`` bytes, each one its position allows (:func:`fixed_form`); nulls False."""
    out = np.zeros(len(values), dtype=bool)
    pos, mat = column_rows(values, len(form))
    if not len(pos):
        return out
    low = np.array([min(allowed) for allowed in form], dtype=np.uint8)
    ok = bytes_within(mat, low, np.array([max(allowed) for allowed in form], dtype=np.uint8) - low)
    for k, allowed in enumerate(form):
        if max(allowed) - min(allowed) + 1 != len(allowed):  # a class that is not one range ([0-9X]): by table
            table = np.zeros(256, dtype=bool)
            table[sorted(allowed)] = True
            ok &= table[mat[:, k]]
    out[pos] = ok
    return out


def repeated(values: pd.Series | pa.Array) -> np.ndarray:
    """Whether each value occurs more than once in the column (missing values never: they are not values).

    The values of the column's most common byte length (a key's usual width) are told apart by a 64-bit hash
    of their bytes, sorted: only the rows whose hash may occur twice — every copy of a repeated value, and a
    few others — are compared by their text (Arrow's dictionary encoding), as are the values of other
    lengths (a value of another length cannot equal them). The same answer as counting every value's rows
    (tests/contracts/test_fast_paths.py), without a hash table of every value."""
    arr = _arrow(values)
    if not _is_text(arr):
        arr = arrow_text(values)
    n = len(arr)
    lengths = pc.binary_length(arr).fill_null(-1).to_numpy()
    out = np.zeros(n, dtype=bool)
    if n < 2 or not (lengths >= 0).any():
        return out
    width = int(np.argmax(np.bincount(lengths[lengths >= 0])))
    pos, mat = column_rows(arr, width)
    hashes = _row_hashes(mat)
    ordered = np.sort(hashes)
    twice = ordered[1:][ordered[1:] == ordered[:-1]]
    if len(twice):  # the rows whose hash's top 20 bits are a repeated hash's: all of those rows, and a few more
        marked = np.zeros(1 << 20, dtype=bool)
        marked[twice >> np.uint64(44)] = True
        suspects = pos[marked[hashes >> np.uint64(44)]]
    else:
        suspects = pos[:0]
    others = np.flatnonzero((lengths >= 0) & (lengths != width))
    todo = np.concatenate([suspects, others]) if len(others) else suspects
    if len(todo):
        codes = pc.dictionary_encode(arr.take(pa.array(todo)))
        index = codes.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        out[todo] = np.bincount(index, minlength=len(codes.dictionary))[index] > 1
    return out


def _row_hashes(mat: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of bytes (multiply-xor over its 8-byte words; equal rows, equal hashes)."""
    n, width = mat.shape
    words = np.zeros((n, -(-width // 8) * 8), dtype=np.uint8)
    words[:, :width] = mat
    lanes = words.view(np.uint64)
    out = np.full(n, np.uint64(width), dtype=np.uint64)
    for k in range(lanes.shape[1]):
        out ^= lanes[:, k]
        out *= np.uint64(0x9E3779B97F4A7C15)
        out ^= out >> np.uint64(29)
    return out


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
    """While inside, parsed columns are computed once and reused (scope: one validation; inside another
    shared_work(), the outer one's: a check's normalisation and its rules share what both parse)."""
    if _shared.get() is not None:
        yield
        return
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


def column_rows(values: pd.Series | pa.Array, width: int) -> tuple[np.ndarray, np.ndarray]:
    """fixed_width_rows, computed once per column and width within shared_work() (read, never written)."""
    return _once(f"rows{width}", values, lambda v: fixed_width_rows(v, width))


def column_days(values: pd.Series | pa.Array) -> np.ndarray:
    """date_days, computed once per column within shared_work()."""
    return _once("days", values, date_days)


def column_ids(values: pd.Series | pa.Array) -> IdColumn:
    """fundx.core.idcolumns.id_column, computed once per column within shared_work()."""
    return _once("ids", values, lambda v: id_column(v, rows=column_rows(v, 18)))
