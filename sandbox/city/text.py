"""Text and day numbers built straight into Arrow: fixed-width ASCII, ISO dates and timestamps, feed frames.

The builders make hundreds of thousands of rows at a time: their text is composed as N x W uint8
matrices of ASCII and handed to Arrow without making Python objects, except where a value needs
them (names, the few planted mistakes).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fundx.core.idcolumns import civil_from_days
from sandbox.schema import feed_schema

#: seconds in a day, and the day the day numbers count from (day 0)
DAY = 86_400
EPOCH = date(1970, 1, 1)


def day_number(d: date) -> int:
    """Days since 1970-01-01 of a date."""
    return (d - EPOCH).days


def month_of(days: np.ndarray) -> np.ndarray:
    """Month numbers (year * 12 + month - 1) of days since 1970-01-01."""
    y, m, _d = civil_from_days(days)
    return y * 12 + m - 1


def to_days(values: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of clean ISO texts or date objects; NO_DAY where missing."""
    return np.array(["NaT" if v is None else v for v in values], dtype="datetime64[D]").astype(np.int64)


def ascii_matrix(n: int, *parts: str | tuple[np.ndarray, int]) -> np.ndarray:
    """An N x W uint8 matrix of ASCII text from literal parts and (integers, width) zero-padded parts."""
    width = sum(len(p) if isinstance(p, str) else p[1] for p in parts)
    out = np.empty((n, width), dtype=np.uint8)
    col = 0
    for p in parts:
        if isinstance(p, str):
            out[:, col:col + len(p)] = np.frombuffer(p.encode("ascii"), dtype=np.uint8)
            col += len(p)
        else:
            v, w = np.asarray(p[0], dtype=np.int64), p[1]
            for k in range(w - 1, -1, -1):
                v, digit = np.divmod(v, 10)
                out[:, col + k] = digit.astype(np.uint8) + 48
            col += w
    return out


def arrow_text(mat: np.ndarray) -> pa.Array:
    """Arrow strings from an N x W uint8 ASCII matrix, without making Python objects."""
    n, w = mat.shape
    data = pa.py_buffer(np.ascontiguousarray(mat).reshape(-1))
    if w * n < 2**31 - 1:
        offsets = np.arange(0, w * (n + 1), w, dtype=np.int32)
        return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), data)
    offsets = np.arange(0, w * (n + 1), w, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), data)


def date_text(days: np.ndarray) -> pa.Array:
    """ISO dates (2026-10-12) from days since 1970-01-01."""
    y, m, d = civil_from_days(days)
    return arrow_text(ascii_matrix(len(y), (y, 4), "-", (m, 2), "-", (d, 2)))


def time_text(seconds: np.ndarray) -> pa.Array:
    """ISO 8601 timestamps with +08:00 from Shanghai wall-clock seconds since 1970-01-01."""
    seconds = np.asarray(seconds, dtype=np.int64)
    y, m, d = civil_from_days(seconds // DAY)
    s = seconds % DAY
    return arrow_text(ascii_matrix(len(y), (y, 4), "-", (m, 2), "-", (d, 2), "T", (s // 3600, 2), ":",
                                   (s // 60 % 60, 2), ":", (s % 60, 2), "+08:00"))


def month_text(months: np.ndarray) -> pa.Array:
    """YYYY-MM from month numbers (year * 12 + month - 1)."""
    months = np.asarray(months, dtype=np.int64)
    return arrow_text(ascii_matrix(len(months), (months // 12, 4), "-", (months % 12 + 1, 2)))


def pick(options: tuple[str, ...] | list[str], idx: np.ndarray) -> pa.Array:
    """Arrow strings options[idx]."""
    return pa.array(list(options), pa.string()).take(pa.array(np.asarray(idx, dtype=np.int64)))


def join(*arrays: pa.Array) -> pa.Array:
    """Element-wise concatenation of Arrow string arrays."""
    return pc.binary_join_element_wise(*arrays, "")


def with_nulls(arr: pa.Array, null: np.ndarray) -> pa.Array:
    """arr with nulls where null is True."""
    return pc.if_else(pa.array(null), pa.scalar(None, arr.type), arr)


def str_column(arr: pa.Array) -> pd.Series:
    """A pandas 3 'str' column from Arrow strings."""
    return pd.Series(arr, dtype="str")


def feed_frame(feed: str, columns: dict[str, object]) -> pd.DataFrame:
    """A feed's frame with exactly the contract's columns, in contract order."""
    order = feed_schema(feed).columns
    if set(order) != set(columns):
        raise ValueError(f"{feed}: generated columns {sorted(columns)} differ from the contract's {order}")
    data = {c: (str_column(columns[c]) if isinstance(columns[c], (pa.Array, pa.ChunkedArray)) else columns[c])
            for c in order}
    return pd.DataFrame(data)


def serial_keys(prefix: str, start: int, n: int, width: int) -> pa.Array:
    """Unique keys prefix + zero-padded (start, start+1, ...)."""
    return arrow_text(ascii_matrix(n, prefix, (np.arange(start, start + n, dtype=np.int64), width)))
