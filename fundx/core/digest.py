"""Content digests of batches: the identity of what a pull brought, independent of row order."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pandas as pd

from fundx.core.columns import ARRIVAL, DEFECT, RAW, RESERVED_COLUMNS  # noqa: F401 - where they have always been


def content_digest(frame: pd.DataFrame) -> str:
    """``sha256:<hex>`` of a frame's columns and rows; the same rows in any order give the same digest.

    Each row is hashed with pandas' vectorised 64-bit hash over normalised columns (text as text,
    whatever its dtype; numbers as float64; date-times as UTC nanoseconds), the row hashes are
    sorted, and SHA-256 runs over the column names and the sorted hashes. A frame read in chunks
    has the same digest: ``digest_of(columns, concatenated row_hashes(chunk) ...)`` (fundx.exchange.stream).
    """
    return digest_of(frame.columns, row_hashes(frame))


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """One 64-bit hash per row (uint64), independent of the frame's dtypes and of other rows."""
    rows = np.zeros(len(frame), dtype=np.uint64)
    if len(frame):
        for i, name in enumerate(frame.columns):
            rows = _mix(rows, str(name), _column_hashes(frame.iloc[:, i]))
    return rows


def column_hashes(frame: pd.DataFrame) -> list[np.ndarray]:
    """Each column's value hashes (uint64), in column order: :func:`fold` of them is :func:`row_hashes`,
    of a subset in key order the key's row hashes — one hashing pass serves both."""
    return [_column_hashes(frame.iloc[:, i]) for i in range(len(frame.columns))]


def fold(hashes: Iterable[np.ndarray], rows: int) -> np.ndarray:
    """Row hashes from column hashes (in column order, none of them reserved), as :func:`row_hashes` combines them."""
    out = np.zeros(rows, dtype=np.uint64)
    for values in hashes:
        out = (out * _MIX) ^ values
    return out


def fold_named(by_column: dict[str, np.ndarray], rows: int) -> np.ndarray:
    """Row hashes from each column's value hashes, by column name in order: a reserved column
    (:data:`RESERVED_COLUMNS`) counts only in the rows where it holds a value."""
    out = np.zeros(rows, dtype=np.uint64)
    for name, values in by_column.items():
        out = _mix(out, name, values)
    return out


def text_hashes(values: Iterable[str | None]) -> np.ndarray:
    """The value hashes of a text column holding ``values``, as a frame's column of them hashes."""
    return _column_hashes(pd.Series(list(values), dtype="str"))


def fold_in(rows: np.ndarray, name: str, values: np.ndarray) -> np.ndarray:
    """Row hashes with one more column's value hashes folded in, as the column ``name`` would be last."""
    return _mix(rows.copy(), name, values)


def _mix(rows: np.ndarray, name: str, values: np.ndarray) -> np.ndarray:
    """Row hashes with one more column's value hashes folded in (a reserved column's only where it holds a value)."""
    if name == ARRIVAL:
        return rows
    if name in RESERVED_COLUMNS:
        held = values != _NONE_HASH
        rows[held] = (rows[held] * _MIX) ^ values[held]
        return rows
    return (rows * _MIX) ^ values  # wraps modulo 2**64; order counts


def row_hashes_since(after: pd.DataFrame, before: pd.DataFrame, before_hashes: dict[str, np.ndarray]) -> np.ndarray:
    """:func:`row_hashes` of ``after``, whose rows are rows of ``before`` (same index labels) with some
    values changed — normalised, say — given ``before``'s column hashes: only changed values are hashed
    again. A value's hash depends on the value and its column's kind only, so the result is the same."""
    positions = before.index.get_indexer(after.index)
    if len(after) and (positions < 0).any():
        return row_hashes(after)
    out = np.zeros(len(after), dtype=np.uint64)
    for i, name in enumerate(after.columns):
        column = after.iloc[:, i]
        known = before_hashes.get(name)
        if known is None or name not in before.columns or not _comparable(column.dtype, before[name].dtype):
            values = _column_hashes(column)
        else:
            values = known[positions]
            old = before[name].iloc[positions]
            changed = _changed(column, old)
            if changed.any():
                values[changed] = _column_hashes(column[changed])
        out = (out * _MIX) ^ values
    return out


def _comparable(new: object, old: object) -> bool:
    """Whether values of these dtypes can be compared one by one and hash alike when equal."""
    if new != old:
        return False
    return (isinstance(new, pd.StringDtype) or pd.api.types.is_numeric_dtype(new)
            or pd.api.types.is_datetime64_any_dtype(new)) and not pd.api.types.is_bool_dtype(new)


def _changed(new: pd.Series, old: pd.Series) -> np.ndarray:
    """Where two aligned columns of one dtype differ (missing equals missing)."""
    if isinstance(new.dtype, pd.StringDtype) and new.dtype.storage == "pyarrow":
        import pyarrow as pa
        import pyarrow.compute as pc

        a, b = pa.array(new), pa.array(old)  # the Arrow data itself, no copy
        same = pc.fill_null(pc.equal(a, b), False)
        both = pc.and_(pc.is_null(a), pc.is_null(b))
        return ~np.asarray(pc.or_(same, both).to_numpy(zero_copy_only=False), dtype=bool)
    new_missing, old_missing = new.isna().to_numpy(), old.isna().to_numpy()
    same = np.asarray(new.to_numpy() == old.to_numpy(), dtype=bool)
    return ~((same & ~new_missing & ~old_missing) | (new_missing & old_missing))


def _column_hashes(column: pd.Series) -> np.ndarray:
    """pandas' 64-bit hash of each value; text with few distinct values (genders, dates, districts) is
    hashed once per distinct value — the same hashes, several times faster."""
    if len(column) > 1000 and (isinstance(column.dtype, pd.StringDtype) or column.dtype == object):
        sample = column.iloc[:1000]
        if sample.nunique(dropna=True) < 200 and all(isinstance(v, str) for v in sample.dropna().iloc[:50]):
            codes, uniques = pd.factorize(column, use_na_sentinel=True)
            if not len(uniques):  # every value missing (an optional column the source does not send)
                return np.full(len(column), _NONE_HASH, dtype=np.uint64)
            hashed = pd.util.hash_array(np.asarray(uniques, dtype=object), categorize=False)
            values = hashed.take(np.maximum(codes, 0))
            if (codes < 0).any():
                values[codes < 0] = _NONE_HASH
            return values
    # categorize=False: hashing every value beats factorizing first for mostly distinct columns
    return pd.util.hash_array(_normalise(column), categorize=False)


def digest_of(columns: Iterable[object], hashes: np.ndarray, *, sort_in_place: bool = False) -> str:
    """The content digest of rows given their :func:`row_hashes` (in any order) and the column names.

    ``sort_in_place``: ``hashes`` (uint64, the caller's own) are sorted where they are, not copied first
    (a 10M-row pull's are 80 MB)."""
    names = [str(c) for c in columns if str(c) not in RESERVED_COLUMNS]
    digest = hashlib.sha256()
    digest.update("\x1f".join(names).encode("utf-8"))
    digest.update(b"\x1e%d\x1e" % len(hashes))
    if len(hashes) and names:
        if sort_in_place and isinstance(hashes, np.ndarray) and hashes.dtype == np.uint64 and hashes.flags.writeable:
            hashes.sort()
            ordered = hashes
        else:
            ordered = np.sort(np.asarray(hashes, dtype=np.uint64))
        digest.update(np.ascontiguousarray(ordered).data.cast("B"))  # the bytes themselves, no copy
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
    if isinstance(column.dtype, pd.StringDtype) and column.dtype.storage == "pyarrow":
        return _utf8_objects(column)
    if isinstance(column.dtype, pd.StringDtype) or column.dtype == object:
        values = column.to_numpy(dtype=object, na_value=None)
        return values
    if pd.api.types.is_bool_dtype(column.dtype) or not pd.api.types.is_numeric_dtype(column.dtype):
        return column.to_numpy()
    # numbers as float64 whatever their width: a chunk of integers and one with a gap (float) agree
    return column.to_numpy(dtype="float64", na_value=np.nan)


def _utf8_objects(column: pd.Series) -> np.ndarray:
    """Arrow-backed text as an object array of each value's UTF-8 bytes (None where missing).

    pandas hashes a text value as the UTF-8 bytes it encodes to, and bytes as they are: the hashes are
    the same as of the strings, without making a Python string of each value and encoding it again.
    """
    import pyarrow as pa

    data = column.array.__arrow_array__()  # the Arrow data itself, no copy
    if pa.types.is_large_string(data.type):
        data = data.cast(pa.large_binary())
    elif pa.types.is_string(data.type):
        data = data.cast(pa.binary())
    else:  # another layout of text (string_view): as strings
        return column.to_numpy(dtype=object, na_value=None)
    return np.asarray(data.to_numpy(zero_copy_only=False), dtype=object)
