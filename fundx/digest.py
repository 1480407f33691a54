"""Content digests of batches: the identity of what a pull brought, independent of row order."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd


def content_digest(frame: pd.DataFrame) -> str:
    """``sha256:<hex>`` of a frame's columns and rows; the same rows in any order give the same digest.

    Each row is hashed with pandas' vectorised 64-bit hash over normalised columns (text as text,
    whatever its dtype; date-times as UTC nanoseconds), the row hashes are sorted, and SHA-256 runs
    over the column names and the sorted hashes.
    """
    digest = hashlib.sha256()
    digest.update("\x1f".join(map(str, frame.columns)).encode("utf-8"))
    digest.update(b"\x1e%d\x1e" % len(frame))
    if len(frame) and len(frame.columns):
        rows = np.zeros(len(frame), dtype=np.uint64)
        for i in range(len(frame.columns)):
            # categorize=False: hashing every value beats factorizing first for mostly distinct columns
            column = pd.util.hash_array(_normalise(frame.iloc[:, i]), categorize=False)
            rows = (rows * _MIX) ^ column  # wraps modulo 2**64; the multiplier makes column order count
        digest.update(np.sort(rows).tobytes())
    return "sha256:" + digest.hexdigest()


_MIX = np.uint64(0x100000001B3)


def _normalise(column: pd.Series) -> np.ndarray:
    """A column's values in a dtype-independent form, so equal values hash equally."""
    missing = column.isna().to_numpy()
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        column = column.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(column.dtype):
        nanos = column.dt.as_unit("ns").to_numpy().view("int64").copy()
        nanos[missing] = np.iinfo(np.int64).min
        return nanos
    if isinstance(column.dtype, pd.StringDtype) or column.dtype == object:
        values = column.to_numpy(dtype=object, na_value=None)
        return values
    return column.to_numpy()
