"""Splitting a batch into parts: Parquet files of at most :data:`PART_BYTES` each, sealed one by one.

``openssl cms`` verifies a part in memory, so a batch is cut into parts small enough for it; each
part is a Parquet file of whole rows, in order.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from fundx.core.errors import DataError

#: largest part a batch is split into (openssl verifies a part in memory)
PART_BYTES = 64 * 1024 * 1024


def _parquet(table: Any) -> bytes:
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def iter_parts(table: Any, max_bytes: int = PART_BYTES) -> Iterator[bytes]:
    """Parquet files of at most ``max_bytes`` each, holding the table's rows in order.

    Rows per part are estimated from the last part written and halved where a part comes out too
    large, so each row is encoded about once. DataError if a single row is larger than ``max_bytes``.
    """
    import pyarrow as pa

    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    rows = table.num_rows
    if rows == 0:
        yield _parquet(table)
        return
    sample = table.slice(0, min(rows, 10_000))
    step = max(1, int(sample.num_rows * 0.9 * max_bytes / max(len(_parquet(sample)), 1)))
    start = 0
    while start < rows:
        piece = table.slice(start, min(step, rows - start))
        for data, count in _fit(piece, max_bytes):
            yield data
            step = max(1, int(count * 0.9 * max_bytes / max(len(data), 1)))
        start += piece.num_rows


def _fit(table: Any, max_bytes: int) -> Iterator[tuple[bytes, int]]:
    data = _parquet(table)
    if len(data) <= max_bytes:
        yield data, table.num_rows
        return
    if table.num_rows == 1:
        raise DataError(f"one row encodes to {len(data)} bytes, more than the part limit of {max_bytes}")
    half = table.num_rows // 2
    del data
    yield from _fit(table.slice(0, half), max_bytes)
    yield from _fit(table.slice(half), max_bytes)


def split_parts(table: Any, max_bytes: int = PART_BYTES) -> list[bytes]:
    """A pyarrow Table (or RecordBatch) as a list of Parquet files of at most ``max_bytes`` each."""
    return list(iter_parts(table, max_bytes))
