"""Content digests of batches: the identity of what a pull brought, independent of row order."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pandas as pd


def content_digest(frame: pd.DataFrame) -> str:
    """``sha256:<hex>`` of a frame's columns and rows; the same rows in any order give the same digest.

    Each row is hashed with pandas' vectorised 64-bit hash over normalised columns (text as text,
    whatever its dtype; numbers as float64; date-times as UTC nanoseconds), the row hashes are
    sorted, and SHA-256 runs over the column names and the sorted hashes. A frame read in chunks
    has the same digest: ``digest_of(columns, concatenated row_hashes(chunk) ...)`` (fundx.stream).
    """
    return digest_of(frame.columns, row_hashes(frame))


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """One 64-bit hash per row (uint64), independent of the frame's dtypes and of other rows."""
    rows = np.zeros(len(frame), dtype=np.uint64)
    if len(frame):
        for i in range(len(frame.columns)):
            rows = (rows * _MIX) ^ _column_hashes(frame.iloc[:, i])  # wraps modulo 2**64; order counts
    return rows


def _column_hashes(column: pd.Series) -> np.ndarray:
    """pandas' 64-bit hash of each value; text with few distinct values (genders, dates, districts) is
    hashed once per distinct value — the same hashes, several times faster."""
    if len(column) > 1000 and (isinstance(column.dtype, pd.StringDtype) or column.dtype == object):
        sample = column.iloc[:1000]
        if sample.nunique(dropna=True) < 200 and all(isinstance(v, str) for v in sample.dropna().iloc[:50]):
            codes, uniques = pd.factorize(column, use_na_sentinel=True)
            hashed = pd.util.hash_array(np.asarray(uniques, dtype=object), categorize=False)
            values = hashed.take(np.maximum(codes, 0))
            if (codes < 0).any():
                values[codes < 0] = _NONE_HASH
            return values
    # categorize=False: hashing every value beats factorizing first for mostly distinct columns
    return pd.util.hash_array(_normalise(column), categorize=False)


def digest_of(columns: Iterable[object], hashes: np.ndarray) -> str:
    """The content digest of rows given their :func:`row_hashes` (in any order) and the column names."""
    names = [str(c) for c in columns]
    digest = hashlib.sha256()
    digest.update("\x1f".join(names).encode("utf-8"))
    digest.update(b"\x1e%d\x1e" % len(hashes))
    if len(hashes) and names:
        digest.update(np.sort(np.asarray(hashes, dtype=np.uint64)).tobytes())
    return "sha256:" + digest.hexdigest()


_MIX = np.uint64(0x100000001B3)
_NONE_HASH = pd.util.hash_array(np.array([None], dtype=object), categorize=False)[0]  # a missing text value


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
    if pd.api.types.is_bool_dtype(column.dtype) or not pd.api.types.is_numeric_dtype(column.dtype):
        return column.to_numpy()
    # numbers as float64 whatever their width: a chunk of integers and one with a gap (float) agree
    return column.to_numpy(dtype="float64", na_value=np.nan)
