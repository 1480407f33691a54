"""Large feeds in bounded memory: one pull read, checked, sealed and handed over chunk by chunk.

A streamed run of a feed (``stream: true`` in its config, or ``run_feed(..., stream=True)``) is the
same run as any other — the same Prefect tasks, the same batch id and digests, the same delivery
(:func:`fundx.exchange.handoff.deliver`: steps (a)-(d), one ledger commit) — with a different kind of batch:
its rows wait in an encrypted spool (:class:`SpooledPull`, checked into a :class:`SpooledBatch`), so
its memory is bounded by FUNDX_CHUNK_ROWS rows and one 64 MB part, not by the size of the feed:

1. **pull** — the connector reads the window piece by piece (:meth:`connectors.base.Connector.chunks`:
   a server-side cursor, a CSV file block by block; read one chunk ahead in a thread, :func:`prefetched`,
   so the reading overlaps the hashing of the chunk before; the pull's deadline, FUNDX_PULL_DEADLINE, is
   checked between chunks); each chunk is shaped to the contract and put in
   the **spool**, ``FUNDX_HOME/spool/<feed>.<random>/``, encrypted with AES-256-GCM under a key that
   exists only in this process's memory (and in the jobs handed to a task runner's workers), so no
   record is ever at rest in plain text. A 64-bit hash of each row's key is kept; rows whose key
   hashes repeat are read back and de-duplicated exactly as a whole pull is
   (:func:`connectors.base.deduplicate`). The pull's digest is computed from per-row hashes
   (:func:`fundx.core.digest.digest_of`): the same as the digest of the whole frame. Each column's value
   hashes are spooled beside the chunk, so the check hashes again only the values it normalised.
2. **normalise + validate** — one job per chunk (:func:`check_chunk`): the contract's check on the
   chunk's rows; the failing rows go back to the spool as a frame, the valid ones already encoded as
   Parquet pieces (the seal step's encoding, done where the rows are). Jobs run through a
   :class:`Runner`: in this process (:class:`LocalRunner`), on a warm pool of this machine's processes
   or in parallel on a Dask cluster (:mod:`fundx.exchange.runners`). The batch is judged on its totals by the
   one verdict a whole batch gets too (:func:`contracts.validate.verdict`).
3. **seal** — a chunk's Parquet piece of a MiB or more is a part as it is; smaller ones are merged
   with their neighbours into parts of at most FUNDX_PART_BYTES; quarantined rows become the stewards'
   parts; each part is sealed by a job of its own (:func:`seal_part`), which loads the exchange's
   keys itself: keys never travel in a job.
4. **handoff** — :func:`fundx.exchange.handoff.deliver`, as for any batch.

:class:`fundx.exchange.batch.Steps` records each step's seconds, rows and peak memory (VmHWM, reset per step)
for ``make bench``. The spool is removed when the run ends, whatever the outcome
(:func:`fundx.exchange.handoff.close_pull`); one a killed run left behind is removed by the next streamed run
of the feed.
"""

from __future__ import annotations

import logging
import os
import pickle
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from connectors.base import PullFigures
from fundx.core.digest import (
    ARRIVAL,
    DEFECT,
    column_hashes,
    digest_of,
    fold,
    fold_in,
    fold_named,
    row_hashes_since,
    text_hashes,
)
from fundx.core.process import alive
from fundx.core.testpoints import kill_point  # TEST ONLY: the chaos night's kill points (FUNDX_TEST_KILL_AT)
from fundx.core.timeutil import Window
from fundx.crypto.keys import fsync_dir
from fundx.crypto.seal import PART_BYTES
from fundx.exchange.batch import CheckedBatch, Steps
from fundx.exchange.runners import LocalRunner, Runner
from fundx.wire.inbox import Inbox, LocalInbox, PartFile, part_name

log = logging.getLogger("fundx.stream")



# --- the spool ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spool:
    """Encrypted scratch files of one streamed run: AES-256-GCM, the key only in memory.

    Each file is ``nonce || ciphertext`` with the file's name as associated data, so a file cannot
    be swapped for another. Picklable (a folder and a key) so that a worker process can read it.
    """

    folder: Path
    key: bytes = field(repr=False)

    @classmethod
    def create(cls, home: Path, feed: str) -> Spool:
        root = Path(home) / "spool"
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder = root / f"{feed}.{secrets.token_hex(6)}"
        folder.mkdir(mode=0o700)
        fd = os.open(folder / "owner", os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(str(os.getpid()))
        return cls(folder, secrets.token_bytes(32))

    def put(self, name: str, data: bytes | memoryview) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self.key).encrypt(nonce, bytes(data), name.encode())
        path = self.folder / name
        path.unlink(missing_ok=True)
        # scratch, never synced: a crash discards the spool, and the next run reads the rows again
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(nonce)
            handle.write(sealed)

    def get(self, name: str) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        data = (self.folder / name).read_bytes()
        return AESGCM(self.key).decrypt(data[:12], data[12:], name.encode())

    def put_object(self, name: str, value: Any) -> None:
        self.put(name, pickle.dumps(value, protocol=5))

    def get_object(self, name: str) -> Any:
        return pickle.loads(self.get(name))  # noqa: S301 - our own file, authenticated by AES-GCM under our key

    def remove(self, name: str) -> None:
        (self.folder / name).unlink(missing_ok=True)

    def clear(self) -> None:
        for path in self.folder.iterdir():
            if path.name != "owner":
                path.unlink(missing_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def remove_stale_spools(home: Path, feed: str) -> int:
    """Remove the spools of this feed's runs that are no longer alive (a killed run's); returns how many.

    Called under the feed's lock, so no other live run of the feed has a spool.
    """
    root = Path(home) / "spool"
    removed = 0
    for folder in root.glob(f"{feed}.*") if root.is_dir() else ():
        try:
            pid = int((folder / "owner").read_text(encoding="ascii"))
        except (OSError, ValueError):
            pid = 0
        if pid == os.getpid() or alive(pid):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    if removed:
        fsync_dir(root)
    return removed


# --- 1. the pull ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """One spooled chunk of a pull: its rows before de-duplication, the ones dropped, its first position."""

    name: str
    received: int
    drop: np.ndarray = field(repr=False)  # positions inside the chunk of rows a later row of the same key replaces
    offset: int = 0  # position of its first kept row in the de-duplicated pull
    #: (position inside the chunk, mark) of its rows in key conflicts with rows of any chunk (no content)
    marks: tuple[tuple[int, str], ...] = ()

    @property
    def rows(self) -> int:
        return self.received - len(self.drop)


@dataclass(frozen=True, eq=False, kw_only=True)
class SpooledPull(PullFigures):
    """What a streamed extract brought: a pull's figures (:class:`connectors.base.PullFigures`), the rows
    spooled in chunks."""

    spool: Spool = field(repr=False)
    chunks: tuple[Chunk, ...] = field(repr=False, default=())
    columns: tuple[str, ...] = ()


def extract(connector: Any, window: Window, spool: Spool, *, chunk_rows: int,
            progress: Callable[[int], None] | None = None) -> SpooledPull:
    """Every row the agency serves for ``window``, spooled in chunks and de-duplicated by the contract key."""
    from connectors.base import Repeats, Tally, deduplicate
    from contracts.rules import KEY_CONFLICT
    from fundx.core.retry import Retrier

    started = time.monotonic()
    contract = connector.contract
    key, columns = list(contract.key), tuple(contract.names)
    tally = Tally(retry=Retrier.for_pull(connector.settings, feed=connector.name), progress=progress)
    deadline = tally.deadline
    assert deadline is not None

    def attempt() -> tuple[list[tuple[str, int]], list[np.ndarray], list[np.ndarray]]:
        spool.clear()  # a read that starts again starts from nothing
        tally.pages = tally.rows = tally.bytes = 0
        read: list[tuple[str, int]] = []
        keys: list[np.ndarray] = []
        hashes: list[np.ndarray] = []
        for number, raw in enumerate(prefetched(connector.chunks(window, tally, chunk_rows))):
            frame = connector.shape_chunk(raw).reset_index(drop=True)
            name = f"raw-{number:06d}"
            spool.put_object(name, frame)
            by_column = dict(zip(frame.columns, column_hashes(frame)))
            keys.append(fold((by_column[k] for k in key), len(frame)))
            hashes.append(fold_named(by_column, len(frame)))
            # the check hashes its valid rows again from these, only where normalising changed a value
            spool.put_object(_hashes_name(name), by_column)
            read.append((name, len(frame)))
            kill_point("between_chunks")
            deadline.check(f"chunk {number + 1}")  # a source that yields slowly stops here, not at its end
        return read, keys, hashes

    read, keys, hashes = tally.retry(attempt, what="streamed read")
    received = sum(n for _, n in read)
    key_hashes = np.concatenate(keys) if keys else np.zeros(0, dtype=np.uint64)
    del keys
    drop = np.zeros(received, dtype=bool)
    repeats = Repeats()
    marks: dict[int, str] = {}  # position in the pull -> key_conflict mark
    suspects = _repeated(key_hashes)
    del key_hashes
    if suspects.any():  # rows whose key hash repeats: de-duplicate them exactly, as a whole pull would be
        import pandas as pd

        pieces, start = [], 0
        for name, n in read:
            inside = np.nonzero(suspects[start:start + n])[0]
            if len(inside):
                piece = spool.get_object(name).iloc[inside]
                pieces.append(piece.assign(__position=inside + start))
            start += n
        candidates = pd.concat(pieces, ignore_index=True)
        kept = deduplicate(candidates, tuple(key), contract.incremental, columns=columns, repeats=repeats)
        drop[candidates["__position"].to_numpy()] = True
        drop[kept["__position"].to_numpy()] = False
        if DEFECT in kept.columns:  # key conflicts found here; a malformed row's mark is in its chunk already
            conflicts = kept[kept[DEFECT].fillna("").str.startswith(KEY_CONFLICT).to_numpy()]
            marks = {int(p): str(n) for p, n in zip(conflicts["__position"], conflicts[DEFECT])}
    chunks, start, offset = [], 0, 0
    for name, n in read:
        dropped = np.nonzero(drop[start:start + n])[0]
        noted_here = tuple(sorted((p - start, note) for p, note in marks.items() if start <= p < start + n))
        chunks.append(Chunk(name, n, dropped, offset, noted_here))
        offset += n - len(dropped)
        start += n
    all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)
    if marks:  # a key conflict's mark counts in its rows' hashes, as the column does in a whole pull's
        noted = np.fromiter(marks, dtype=np.int64, count=len(marks))
        all_hashes[noted] = fold_in(all_hashes[noted], DEFECT, text_hashes(marks.values()))
    pulled = SpooledPull(
        feed=connector.name, window=window, rows=offset, bytes=tally.bytes, digest=digest_of(columns, all_hashes[~drop]),
        pages=tally.pages, duration_s=time.monotonic() - started, retries=tally.retries, spool=spool,
        chunks=tuple(chunks), columns=columns, repeats=repeats,
    )
    log.info("%s: pulled %d rows (%d received) in %d chunks, %d pages, %d bytes, %d retries, %.2f s (streamed); %s",
             pulled.feed, pulled.rows, received, len(chunks), pulled.pages, pulled.bytes, pulled.retries,
             pulled.duration_s, repeats)
    return pulled


def prefetched(chunks: Iterator[Any]) -> Iterator[Any]:
    """``chunks``, read one ahead in a thread of their own: the connector's reading (sockets, files,
    pyarrow's parser: work that lets go of the GIL) overlaps the hashing and spooling of the chunk
    before. At most two chunks are in memory; an error of the reader is raised here, in order."""
    import queue
    import threading

    handoff: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    done = object()

    def read() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        handoff.put((chunk, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
            item: tuple[Any, BaseException | None] = (done, None)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            item = (done, error)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    reader = threading.Thread(target=read, name="fundx-prefetch", daemon=True)
    reader.start()
    try:
        while True:
            chunk, error = handoff.get()
            if error is not None:
                raise error
            if chunk is done:
                return
            yield chunk
    finally:
        stop.set()
        reader.join()


def _hashes_name(raw: str) -> str:
    """The spool name of a raw chunk's column hashes."""
    return "hashes-" + raw.split("-", 1)[1]


def _repeated(values: np.ndarray) -> np.ndarray:
    """A mask of the values that occur more than once."""
    mask = np.zeros(len(values), dtype=bool)
    if len(values) < 2:
        return mask
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    same = ordered[1:] == ordered[:-1]
    mask[order[1:][same]] = True
    mask[order[:-1][same]] = True
    return mask


# --- 2. normalise + validate -------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckJob:
    """One chunk to check (no records: a spool reference, positions and the check's parameters)."""

    spool: Spool = field(repr=False)
    feed: str
    chunk: Chunk
    today: date
    arrived: datetime
    part_bytes: int = PART_BYTES


@dataclass
class CheckResult:
    """One chunk's check: counts, the valid rows' hashes and event lags, a counts-only GX result."""

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
    gx: Any = field(repr=False)
    normalise_seconds: float = 0.0
    seconds: float = 0.0
    #: the valid rows as Parquet, in the spool: (name, rows, bytes) of each piece, in row order
    pieces: list[tuple[str, int, int]] = field(default_factory=list)
    schema: Any = field(default=None, repr=False)
    encode_seconds: float = 0.0
    offset: int = 0


def chunk_frame(spool: Spool, chunk: Chunk) -> Any:
    """A spooled chunk's rows as the de-duplicated pull has them: the rows a later version replaces
    dropped, the rows of key conflicts marked (:data:`fundx.core.digest.DEFECT`) for the check to quarantine."""
    frame = spool.get_object(chunk.name)
    if chunk.marks:
        import pandas as pd

        if DEFECT not in frame.columns:
            frame[DEFECT] = pd.Series(None, index=frame.index, dtype="str")
        at, notes = zip(*chunk.marks)
        frame.loc[list(at), DEFECT] = list(notes)
    frame = frame.drop(columns=[ARRIVAL], errors="ignore")  # the file a row came in: de-duplication's alone
    return frame.drop(index=chunk.drop) if len(chunk.drop) else frame


def check_chunk(job: CheckJob) -> CheckResult:
    """Check one spooled chunk against its feed's contract; its split goes back to the spool: the
    failing rows as a frame (for the stewards), the valid ones already as Parquet pieces of at most
    ``part_bytes`` (for the stage) — encoded here, so that with a pool of workers it runs in parallel."""
    from contracts.docs import counts_only
    from contracts.sla.latency import event_lags
    from contracts.validate import check_rows

    started = time.perf_counter()
    frame = chunk_frame(job.spool, job.chunk)
    hashes = job.spool.get_object(_hashes_name(job.chunk.name))
    if len(job.chunk.drop):
        hashes = {c: np.delete(h, job.chunk.drop) for c, h in hashes.items()}
    frame.index = np.arange(job.chunk.offset, job.chunk.offset + len(frame))  # positions in the whole pull
    checked = check_rows(_contract(job.feed), frame, today=job.today)
    valid_hashes = row_hashes_since(checked.valid, frame, hashes)
    del frame, hashes
    number = job.chunk.name.split("-", 1)[1]
    name = "failed-" + number
    job.spool.put_object(name, checked.quarantined)
    encoding = time.perf_counter()
    pieces, schema = _encode_valid(job, checked.valid, number)
    encode_seconds = time.perf_counter() - encoding
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
        lags=lags, gx=counts_only(checked.result) if checked.result is not None else None,
        normalise_seconds=checked.normalise_seconds, seconds=time.perf_counter() - started,
        pieces=pieces, schema=schema, encode_seconds=encode_seconds, offset=job.chunk.offset,
    )
    del checked
    _trim_heap()
    return result


def _trim_heap() -> None:
    """Free a checked chunk's memory now: collect reference cycles and give the C heap's free pages
    back to the system (glibc's ``malloc_trim``).

    Great Expectations leaves a chunk's frames in reference cycles that the cyclic collector frees
    only every several chunks, and the small objects each chunk's result keeps pin the top of glibc's
    heap: without this a 10M-row feed's check swung up to 3-4 GB where one chunk needs ~600 MB."""
    import gc

    gc.collect()  # Great Expectations leaves a chunk's frames in reference cycles: free them now, not chunks later
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


def _encode_valid(job: CheckJob, valid: Any, number: str) -> tuple[list[tuple[str, int, int]], Any]:
    """A chunk's valid rows as Parquet pieces of at most ``part_bytes`` in the spool, and their schema."""
    from fundx.crypto.seal import iter_parts
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


def _read_piece(spool: Spool, name: str) -> Any:
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


class SpooledBatch(CheckedBatch):
    """A streamed pull checked chunk by chunk (:func:`check_spooled`): its rows stay in the spool, the
    chunks' results name them; parts are sealed through ``runner``."""

    def __init__(self, pulled: SpooledPull, results: list[CheckResult], report: dict[str, Any], validation_result: Any,
                 valid_digest: str, lag: tuple[float, float] | None, runner: Runner) -> None:
        self.pulled = pulled
        self.results = results
        self.report = report
        self.validation_result = validation_result
        self._valid_digest = valid_digest
        self._lag = lag
        self.runner = runner

    def valid_digest(self) -> str:
        return self._valid_digest

    def valid_payloads(self, part_bytes: int) -> SpooledParts:
        return valid_parts(self.pulled, self, part_bytes)

    def quarantine_payloads(self, part_bytes: int, *, held: bool) -> SpooledParts:
        return quarantine_parts(self.pulled, self, part_bytes, held=held)

    def event_lag(self) -> tuple[float, float] | None:
        return self._lag


def check_spooled(pulled: SpooledPull, *, runner: Runner, steps: Steps, history: Sequence[int] | None,
                  today: date | None = None, arrived: datetime | None = None,
                  part_bytes: int = PART_BYTES) -> SpooledBatch:
    """Check every chunk (through ``runner``), then the batch on its totals: the one verdict
    (contracts.validate.verdict) a batch read whole gets. ``history``: the feed's recent row counts."""
    from contracts import load_contract
    from contracts.normalise import NormalisationRecord
    from contracts.rules import contract_rules
    from contracts.sla.latency import lag_percentiles
    from contracts.validate import check_report, verdict
    from fundx.core.timeutil import SHANGHAI, now

    contract = load_contract(pulled.feed)
    rules = contract_rules(contract)
    today = today or datetime.now(SHANGHAI).date()
    arrived = arrived or now()
    jobs = [CheckJob(pulled.spool, pulled.feed, chunk, today, arrived, part_bytes) for chunk in pulled.chunks]
    started = time.perf_counter()
    with steps.step("validate") as figures:
        results = runner.map(check_chunk, jobs)
        figures["rows"] = pulled.rows
    # The jobs also normalised their rows and encoded the valid ones as Parquet: the step's wall clock is
    # shared out in proportion to the jobs' own seconds (with parallel workers these add up to more).
    normalise_seconds = sum(r.normalise_seconds for r in results)
    encode_seconds = sum(r.encode_seconds for r in results)
    steps.share("validate", normalise=normalise_seconds, seal=encode_seconds,
                of=sum(r.seconds for r in results), rows=pulled.rows)
    rows = sum(r.rows for r in results)
    valid = sum(r.valid for r in results)
    bad = sum(r.quarantined for r in results)
    counts = {rule.id: 0 for rule in rules.rules}
    record = NormalisationRecord()
    for r in results:
        for rule_id, n in r.counts.items():
            counts[rule_id] = counts.get(rule_id, 0) + n
        for column, kinds in r.normalisation.items():
            for kind, n in kinds.items():
                record.add(column, kind, n)
    unevaluated = [u for r in results for u in r.unevaluated]
    decided = verdict(contract, rows=rows, failed=bad, history=history, unevaluated=unevaluated,
                      schema_reason=next((r.schema_reason for r in results if r.schema_reason), None))
    report = check_report(contract, rules, rows=rows, valid=valid, quarantined=bad, counts=counts | decided.counts,
                          record=record, rejected=decided.rejected, reason=decided.reason,
                          seconds=time.perf_counter() - started, schema=decided.schema_break)
    report["unevaluated"] = sorted(set(unevaluated))
    report["normalise_seconds"] = round(normalise_seconds, 3)
    report["streamed"] = {"chunks": len(results)}
    lags = [r.lags for r in results if r.lags is not None and len(r.lags)]
    hashes = np.concatenate([r.valid_hashes for r in results]) if results else np.zeros(0, dtype=np.uint64)
    for r in results:
        r.valid_hashes = np.zeros(0, dtype=np.uint64)
        r.lags = None
    return SpooledBatch(
        pulled, results, report,
        merged_result([r.gx for r in results if r.gx is not None], contract, rows=rows, rows_ok=decided.rows_ok),
        digest_of(pulled.columns, hashes), lag_percentiles(np.concatenate(lags)) if lags else None, runner,
    )


_COUNTED = ("element_count", "unexpected_count", "missing_count")


def merged_result(results: list[Any], contract: Any, *, rows: int, rows_ok: bool) -> Any:
    """One counts-only GX suite result from the chunks' (for Data Docs): counts summed, percentages and
    successes recomputed, the table-level row count as the verdict has it (contracts.validate.settle_result)."""
    if not results:
        return None
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult

    from contracts.validate import settle_result

    first = results[0]
    merged = []
    for i, item in enumerate(first.results):
        parts = [r.results[i] for r in results if i < len(r.results)]
        kept = dict(item.result or {})
        raised = any((p.exception_info or {}).get("raised_exception") for p in parts)
        if "element_count" in kept:
            for name in _COUNTED:
                if name in kept:
                    kept[name] = sum(int((p.result or {}).get(name) or 0) for p in parts)
            total, bad, missing = kept["element_count"], kept.get("unexpected_count", 0), kept.get("missing_count", 0)
            present = total - missing
            share = 100.0 * bad / present if present else 0.0
            for name, value in (("unexpected_percent", share), ("unexpected_percent_nonmissing", share),
                                ("unexpected_percent_total", 100.0 * bad / total if total else 0.0),
                                ("missing_percent", 100.0 * missing / total if total else 0.0)):
                if name in kept:
                    kept[name] = value
            mostly = float((item.expectation_config.kwargs or {}).get("mostly", 1.0))
            success = not raised and (present == 0 or (present - bad) / present >= mostly)
        else:  # table level, the row count: the batch's, settled below
            success = not raised
        merged.append(ExpectationValidationResult(success=success, expectation_config=item.expectation_config,
                                                  result=kept, exception_info=item.exception_info))
    whole = ExpectationSuiteValidationResult(success=False, results=merged, suite_name=first.suite_name,
                                             statistics=dict(first.statistics or {}), meta=first.meta)
    return settle_result(whole, contract, rows=rows, rows_ok=rows_ok)


# --- 3. seal -------------------------------------------------------------------------------------


class SpooledParts(Sequence[bytes]):
    """Parquet parts waiting in the spool, read one at a time (what fundx.wire.inbox.seal_parts takes)."""

    def __init__(self, spool: Spool, names: list[str]) -> None:
        self.spool, self.names = spool, names

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self.spool.get(n) for n in self.names[index]]
        return self.spool.get(self.names[index])

    def __setitem__(self, index: int, _value: bytes) -> None:  # seal_parts drops a part once it is sealed
        self.spool.remove(self.names[index])


#: a Parquet piece of a chunk under this size is merged with its neighbours (no swarm of tiny parts)
SMALL_PIECE = 2**20


def valid_parts(pulled: SpooledPull, checked: SpooledBatch, part_bytes: int) -> SpooledParts:
    """The valid rows as Parquet parts of at most ``part_bytes``, in the spool, in row order.

    The check encoded each chunk's valid rows already (:func:`check_chunk`, in parallel when the
    runner has workers): a piece of a MiB or more is a part as it is. Smaller pieces, and those of a
    chunk whose schema differs from the first chunk's (a column all missing in it is typed null), are
    read back and encoded again together with their neighbours.
    """
    import pyarrow as pa

    from fundx.crypto.seal import iter_parts

    spool, names = pulled.spool, list[str]()
    schema = next((r.schema for r in checked.results if r.schema is not None), None)
    pending: list[Any] = []
    pending_bytes = 0

    def flush() -> None:
        nonlocal pending, pending_bytes
        if pending:
            table = pa.concat_tables(pending) if len(pending) > 1 else pending[0]
            for data in iter_parts(table, part_bytes):
                name = f"part-{len(names) + 1:06d}"
                spool.put(name, data)
                names.append(name)
        pending, pending_bytes = [], 0

    for result in checked.results:
        same = result.schema is None or result.schema == schema
        for piece, _rows, size in result.pieces:
            if same and size >= min(SMALL_PIECE, part_bytes // 2):
                flush()
                names.append(piece)
                continue
            table = _read_piece(spool, piece)
            if not same:
                table = _conform(table, schema, pulled.feed)
            if pending and pending_bytes + size > 0.9 * part_bytes:
                flush()
            pending.append(table)
            pending_bytes += size
    flush()
    if not names:  # a batch always has at least one part
        from fundx.wire.inbox import parquet_parts

        spool.put("part-000001", parquet_parts(_empty(pulled), pulled.feed, part_bytes)[0])
        names.append("part-000001")
    return SpooledParts(spool, names)


def _valid_frame(spool: Spool, result: CheckResult, failed: Any) -> Any:
    """A chunk's valid rows read back from their Parquet pieces, indexed by their positions in the pull."""
    import pandas as pd
    import pyarrow as pa

    from fundx.exchange.quarantine import RULES

    if not result.pieces:
        return failed.iloc[0:0].drop(columns=[RULES])
    tables = [_read_piece(spool, piece) for piece, _rows, _size in result.pieces]
    frame = (pa.concat_tables(tables) if len(tables) > 1 else tables[0]).to_pandas()
    positions = np.setdiff1d(np.arange(result.offset, result.offset + result.rows), failed.index.to_numpy())
    if len(positions) != len(frame):
        from fundx.core.errors import InternalError

        raise InternalError(f"chunk {result.name}: {len(frame)} valid rows read back, {len(positions)} expected")
    frame.index = pd.Index(positions)
    return frame


def _empty(pulled: SpooledPull) -> Any:
    import pandas as pd

    return pd.DataFrame({c: [] for c in pulled.columns}, dtype=object)


def _conform(table: Any, schema: Any, feed: str) -> Any:
    """A chunk's table in the schema of the first chunk (a column all missing in one chunk is typed null)."""
    import pyarrow as pa

    from fundx.core.errors import DataError

    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError):
        unified = [f.name for f in schema if f.name in table.schema.names and table.schema.field(f.name).type != f.type]
        raise DataError(
            f"the column(s) {', '.join(unified) or '?'} change type from one chunk of the batch to the next",
            feed=feed, action=f"fix the contract or the connector of {feed} so that every column has one type",
        ) from None


def quarantine_parts(pulled: SpooledPull, checked: SpooledBatch, part_bytes: int, *, held: bool) -> SpooledParts:
    """The stewards' rows (failing ones; every row when held) as Parquet parts, numbered across chunks."""

    from fundx.crypto.seal import iter_parts
    from fundx.exchange.quarantine import POSITION, ROW, RULES, held_rows
    from fundx.wire.inbox import arrow_table

    spool, names, number = pulled.spool, list[str](), 1
    for result in checked.results:
        failed = spool.get_object(result.name)
        if held:  # every row to the stewards, in pull order: the valid ones read back from their pieces
            valid = _valid_frame(spool, result, failed)
            rows = held_rows(valid, failed)
            del valid
        else:
            rows = failed
        del failed
        if len(rows) == 0:
            continue
        rows = rows.copy()
        positions = rows.index.to_numpy()
        rows.reset_index(drop=True, inplace=True)
        rows[RULES] = rows[RULES].astype("str")
        rows.insert(0, POSITION, positions.astype("int64"))
        rows.insert(0, ROW, range(number, number + len(rows)))
        number += len(rows)
        for data in iter_parts(arrow_table(rows, pulled.feed), part_bytes):
            name = f"quarantine-{len(names) + 1:06d}"
            spool.put(name, data)
            names.append(name)
    return SpooledParts(spool, names)


@dataclass(frozen=True)
class SealJob:
    """One part to seal: a spool reference and the manifest's fields; the keys are loaded by the job."""

    spool: Spool = field(repr=False)
    name: str
    inbox_root: Path
    stage: str
    batch_id: str
    part: int
    parts: int
    manifest: dict[str, Any]
    home: Path


def seal_part(job: SealJob) -> PartFile:
    """Seal one spooled part into its inbox folder (signed by the exchange, encrypted to the stage)."""
    from fundx.crypto.keys import KeySettings, KeyStore
    from fundx.crypto.seal import Manifest

    keys = KeyStore(KeySettings(), home=job.home)
    signer_key, signer_cert = keys.exchange_signer()
    recipients = keys.recipient_certificates(job.stage)
    payload = job.spool.get(job.name)
    inbox = LocalInbox(job.inbox_root)
    written = inbox.write_part(job.stage, job.batch_id, part_name(job.part, job.parts), payload,
                               Manifest(part=job.part, parts=job.parts, **job.manifest),
                               signer_key=signer_key, signer_cert=signer_cert, recipients=recipients)
    job.spool.remove(job.name)
    return written


def seal_spooled(inbox: Inbox, stage: str, parts: SpooledParts, *, runner: Runner, home: Path,
                 manifest: dict[str, Any]) -> list[PartFile] | None:
    """Seal spooled parts in parallel through ``runner``; None when the inbox is not a local folder
    (the caller then seals them one by one)."""
    if not isinstance(inbox, LocalInbox) or isinstance(runner, LocalRunner):
        return None
    batch_id = manifest["batch_id"]
    Path(inbox.where(stage, batch_id)).mkdir(mode=0o700, parents=True, exist_ok=True)
    jobs = [SealJob(parts.spool, name, inbox.root, stage, batch_id, number, len(parts), manifest, home)
            for number, name in enumerate(parts.names, start=1)]
    return runner.map(seal_part, jobs)
