"""A store table as DuckDB reads it: its files, each decrypted only when it is read (one file's Parquet in memory
at a time), a batch stored as several files being one part of several files.

matching.rules.prepare copies each into DuckDB temporary tables (its first part and the rest), a file at a time
and a row group at a time within it, so that the tables the rules read live under FUNDX_MATCHING_MEMORY (and
spill past it) rather than as decrypted Parquet or decoded Arrow tables beside DuckDB. Nothing decrypted is
written to disk here.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

_FORMAT = ds.ParquetFileFormat()


def fragment(plain: bytes) -> ds.ParquetFileFragment:
    """One store file's decrypted Parquet as a fragment DuckDB can scan (read from memory, never from disk)."""
    return _FORMAT.make_fragment(pa.py_buffer(plain))


@dataclass(frozen=True)
class StoreFile:
    """One file of a store table: how to decrypt it (``plain``, called each time it is read), and what its Parquet
    footer says (schema and rows: read when the scan was made, the decrypted bytes not kept)."""

    plain: Callable[[], bytes]
    schema: pa.Schema
    rows: int

    @classmethod
    def of(cls, plain: Callable[[], bytes], data: bytes) -> StoreFile:
        """The file whose decrypted Parquet is ``data`` now and ``plain()`` later."""
        meta = pq.ParquetFile(io.BytesIO(data))
        return cls(plain, meta.schema_arrow, meta.metadata.num_rows)


@dataclass(frozen=True)
class Scan:
    """A store table's files in the order the rules read them (Store.scan): the compacted file first, then the
    batches loaded since in the order received; each one row per key. A part is one file, or the files of a batch
    stored as several (matching.store.BatchWriter). Columns a file lacks (stored before a column was added) read
    as NULL."""

    groups: tuple[tuple[StoreFile, ...], ...]

    @property
    def files(self) -> tuple[StoreFile, ...]:
        return tuple(f for group in self.groups for f in group)

    @property
    def schema(self) -> pa.Schema:
        return pa.unify_schemas([f.schema for f in self.files], promote_options="default")

    @property
    def column_names(self) -> list[str]:
        return list(self.schema.names)

    @property
    def parts(self) -> list[int]:
        """Each part's row count (from its files' Parquet metadata), in order: matching.rules.Inputs.parts."""
        return [sum(f.rows for f in group) for group in self.groups]

    @property
    def num_rows(self) -> int:
        return sum(self.parts)

    def datasets(self, start: int = 0, stop: int | None = None) -> Iterator[ds.Dataset]:
        """The files of parts ``start`` to ``stop`` (all, by default), one dataset each with the whole table's
        columns, each decrypted as it is reached: one file's Parquet in memory while the caller reads it."""
        schema = self.schema
        for group in self.groups[start:stop]:
            for f in group:
                yield ds.FileSystemDataset([fragment(f.plain())], schema, _FORMAT)
