"""The check of one spooled chunk, a job a task runner may run anywhere: normalise, validate, encode.

:func:`check_chunk` takes a :class:`CheckJob` (a spool reference and positions, no records) and leaves
its split in the spool: the failing rows as a frame for the stewards, the valid ones as Parquet pieces
for the stage, and a sample of the valid rows for Great Expectations to confirm once per batch
(contracts.evidence); and the chunk's pulled rows as Parquet for the backup's originals
(fundx.exchange.originals), encoded while the job holds them — unless no backup certificate is configured
(``CheckJob.originals`` False: the originals' step would keep nothing, and encodes the rows itself should a
certificate come before it). It returns counts, the values GX would count missing and the valid rows' hashes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import numpy as np

from fundx.core.digest import (
    row_hashes_since,
)
from fundx.crypto.parts import PART_BYTES
from fundx.exchange.spool import Spool
from fundx.exchange.stream import Chunk, chunk_frame, hashes_name

log = logging.getLogger("fundx.stream")


@dataclass(frozen=True)
class CheckJob:
    """One chunk to check (no records: a spool reference, positions and the check's parameters)."""

    spool: Spool = field(repr=False)
    feed: str
    chunk: Chunk
    today: date
    arrived: datetime
    part_bytes: int = PART_BYTES
    #: encode the chunk's pulled rows for the backup's originals (False: no backup certificate to keep them for)
    originals: bool = True


@dataclass
class CheckResult:
    """One chunk's check: counts, missing values per rule, the valid rows' hashes and event lags."""

    name: str
    rows: int
    valid: int
    quarantined: int
    counts: dict[str, int]
    normalisation: dict[str, dict[str, int]]
    unevaluated: list[str]
    schema_reason: str | None
    valid_hashes: np.ndarray = field(repr=False)
    lags: np.ndarray | None = field(repr=False)
    #: per rule, the values GX counts missing (for the batch's Data Docs counts)
    missing: dict[str, int | None] = field(default_factory=dict)
    #: the spool's name of the chunk's sample of valid rows, for GX's confirmation (contracts.evidence)
    sample: str | None = None
    normalise_seconds: float = 0.0
    seconds: float = 0.0
    #: the valid rows as Parquet, in the spool: (name, rows, bytes) of each piece, in row order
    pieces: list[tuple[str, int, int]] = field(default_factory=list)
    schema: Any = field(default=None, repr=False)
    encode_seconds: float = 0.0
    offset: int = 0
    #: the spool's name of the chunk's pulled rows as Parquet, for the backup's originals
    #: (fundx.exchange.originals); None if they would not encode here (the originals' step encodes them)
    original: str | None = None


def check_chunk(job: CheckJob) -> CheckResult:
    """Check one spooled chunk against its feed's contract; its split goes back to the spool: the
    failing rows as a frame (for the stewards), the valid ones already as Parquet pieces of at most
    ``part_bytes`` (for the stage) — encoded here, so that with a pool of workers it runs in parallel."""
    from contracts.evidence import valid_sample
    from contracts.sla.latency import event_lags
    from contracts.validate import check_rows

    started = time.perf_counter()
    frame = job.spool.get_object(job.chunk.name)
    number = job.chunk.name.split("-", 1)[1]
    encoding = time.perf_counter()
    # before the marks of key conflicts go on the rows
    original = _encode_original(job, frame, number) if job.originals else None
    encode_seconds = time.perf_counter() - encoding
    frame = chunk_frame(job.spool, job.chunk, frame)
    hashes = job.spool.get_object(hashes_name(job.chunk.name))
    if len(job.chunk.drop):
        hashes = {c: np.delete(h, job.chunk.drop) for c, h in hashes.items()}
    frame.index = np.arange(job.chunk.offset, job.chunk.offset + len(frame))  # positions in the whole pull
    checked = check_rows(_contract(job.feed), frame, today=job.today, gx=False)
    valid_hashes = row_hashes_since(checked.valid, frame, hashes)
    del frame, hashes
    name = "failed-" + number
    job.spool.put_object(name, checked.quarantined)
    sample = None
    if len(checked.valid):
        sample = "sample-" + number
        job.spool.put_object(sample, valid_sample(checked.valid, seed=job.chunk.offset))
    encoding = time.perf_counter()
    pieces, schema = _encode_valid(job, checked.valid, number)
    encode_seconds += time.perf_counter() - encoding
    lags = None
    try:
        found = event_lags(job.feed, checked.valid, job.arrived)
        lags = None if found is None else found.astype("float32")
    except Exception:  # noqa: BLE001 - the SLA's event latency never stops a delivery
        lags = None
    result = CheckResult(
        name=name, rows=checked.rows, valid=len(checked.valid), quarantined=len(checked.quarantined),
        counts=dict(checked.counts), normalisation=checked.record.as_dict(), unevaluated=list(checked.unevaluated),
        schema_reason=checked.schema_reason, valid_hashes=valid_hashes,
        lags=lags, missing=dict(checked.missing), sample=sample,
        normalise_seconds=checked.normalise_seconds, seconds=time.perf_counter() - started,
        pieces=pieces, schema=schema, encode_seconds=encode_seconds, offset=job.chunk.offset, original=original,
    )
    del checked
    _trim_heap()
    return result


def _trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``) once a chunk is checked.

    The small objects each chunk's result keeps pin the top of glibc's heap. (Great Expectations, which
    left each chunk's frames in reference cycles and needed a ``gc.collect()`` here, no longer checks
    chunks: it confirms the batch once, contracts.evidence.)"""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    import ctypes
    import ctypes.util

    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return trim


def _encode_original(job: CheckJob, raw: Any, number: str) -> str | None:
    """The chunk's pulled rows — as the agency served them, less the ones a later version replaces — as
    one Parquet file in the spool, for the backup's originals (fundx.exchange.originals); its name, or
    None if pyarrow will not convert them (the originals' step tries again, and says why)."""
    import pyarrow as pa

    from fundx.crypto.parts import parquet

    rows = raw.drop(index=raw.index[job.chunk.drop]) if len(job.chunk.drop) else raw
    try:
        data = parquet(pa.Table.from_pandas(rows, preserve_index=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    del rows
    name = "original-" + number
    job.spool.put(name, data)
    return name


def _encode_valid(job: CheckJob, valid: Any, number: str) -> tuple[list[tuple[str, int, int]], Any]:
    """A chunk's valid rows as Parquet pieces of at most ``part_bytes`` in the spool, and their schema."""
    from fundx.crypto.parts import iter_parts
    from fundx.wire.inbox import arrow_table

    if len(valid) == 0:
        return [], None
    table = arrow_table(valid, job.feed)
    pieces = []
    for k, data in enumerate(iter_parts(table, job.part_bytes)):
        piece = f"valid-{number}-{k:04d}"
        job.spool.put(piece, data)
        pieces.append((piece, _parquet_rows(data), len(data)))
    return pieces, table.schema


def _parquet_rows(data: bytes) -> int:
    import io

    import pyarrow.parquet as pq

    return pq.ParquetFile(io.BytesIO(data)).metadata.num_rows


def read_piece(spool: Spool, name: str) -> Any:
    import io

    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(spool.get(name)))


_CONTRACTS: dict[str, tuple[tuple[int, int], Any]] = {}


def _contract(feed: str) -> Any:
    """The feed's contract, read once per process while its file is unchanged: its compiled suite is
    cached by the contract object, and compiling it costs more than checking a chunk."""
    from contracts import contract_path, load_contract

    stat = contract_path(feed).stat()
    seen = (stat.st_mtime_ns, stat.st_size)
    cached = _CONTRACTS.get(feed)
    if cached is None or cached[0] != seen:
        cached = _CONTRACTS[feed] = (seen, load_contract(feed))
    return cached[1]
