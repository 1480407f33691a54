"""A store table as DuckDB reads it: its files' Parquet, decrypted but not decoded, one fragment per file (a batch
stored as several files is one part of several fragments).

matching.rules.prepare copies each into DuckDB temporary tables (its first file and the rest), a row group at
a time, so that the tables the rules read live under FUNDX_MATCHING_MEMORY (and spill past it) rather than as
decoded Arrow tables beside DuckDB. Nothing decrypted is written to disk here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset as ds

_FORMAT = ds.ParquetFileFormat()


def fragment(plain: bytes) -> ds.ParquetFileFragment:
    """One store file's decrypted Parquet as a fragment DuckDB can scan (read from memory, never from disk)."""
    return _FORMAT.make_fragment(pa.py_buffer(plain))


@dataclass(frozen=True)
class Scan:
    """A store table's files in the order the rules read them (Store.scan): the compacted file first, then the
    batches loaded since in the order received; each one row per key. A part is one file, or the files of a batch
    stored as several (matching.store.BatchWriter). Columns a file lacks (stored before a column was added) read
    as NULL."""

    groups: tuple[tuple[ds.ParquetFileFragment, ...], ...]

    @property
    def fragments(self) -> tuple[ds.ParquetFileFragment, ...]:
        return tuple(f for group in self.groups for f in group)

    @property
    def schema(self) -> pa.Schema:
        return pa.unify_schemas([f.physical_schema for f in self.fragments], promote_options="default")

    @property
    def column_names(self) -> list[str]:
        return list(self.schema.names)

    @property
    def parts(self) -> list[int]:
        """Each part's row count (from its files' Parquet metadata), in order: matching.rules.Inputs.parts."""
        return [sum(f.count_rows() for f in group) for group in self.groups]

    @property
    def num_rows(self) -> int:
        return sum(self.parts)

    def dataset(self, start: int = 0, stop: int | None = None) -> ds.Dataset:
        """Parts ``start`` to ``stop`` (all, by default) as one dataset, with the whole table's columns."""
        return ds.FileSystemDataset([f for group in self.groups[start:stop] for f in group], self.schema, _FORMAT)
