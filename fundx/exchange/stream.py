"""Large feeds in bounded memory: one pull read, checked, sealed and handed over chunk by chunk.

A streamed run of a feed (``stream: true`` in its config, or ``run_feed(..., stream=True)``) is the
same run as any other — the same Prefect tasks, the same batch id and digests, the same delivery
(:func:`fundx.exchange.handoff.deliver`: steps (a)-(d), one ledger commit) — with a different kind of batch:
its rows wait in an encrypted spool (:class:`SpooledPull`, checked into a :class:`fundx.exchange.spooled.SpooledBatch`), so
its memory is bounded by FUNDX_CHUNK_ROWS rows and one 64 MB part, not by the size of the feed:

1. **pull** — the connector reads the window piece by piece (:meth:`connectors.base.Connector.chunks`:
   a server-side cursor, a CSV file block by block; read one chunk ahead in a thread, :func:`prefetched`,
   so the reading overlaps the hashing of the chunk before; the pull's deadline, FUNDX_PULL_DEADLINE, is
   checked between chunks); each chunk is shaped to the contract and put in
   the **spool** (:mod:`fundx.exchange.spool`), ``FUNDX_HOME/spool/<feed>.<random>/``, encrypted with AES-256-GCM under a key that
   exists only in this process's memory (and in the jobs handed to a task runner's workers), so no
   record is ever at rest in plain text. A 64-bit hash of each row's key is kept; rows whose key
   hashes repeat are read back and de-duplicated exactly as a whole pull is
   (:func:`connectors.base.deduplicate`). The pull's digest is computed from per-row hashes
   (:func:`fundx.core.digest.digest_of`): the same as the digest of the whole frame. Each column's value
   hashes are spooled beside the chunk, so the check hashes again only the values it normalised.
2. **normalise + validate** — one job per chunk (:func:`fundx.exchange.chunks.check_chunk`): the contract's check on the
   chunk's rows; the failing rows go back to the spool as a frame, the valid ones already encoded as
   Parquet pieces (the seal step's encoding, done where the rows are). Jobs run through a
   :class:`fundx.exchange.runners.Runner`: in this process (``LocalRunner``), on a warm pool of this machine's processes
   or in parallel on a Dask cluster (:mod:`fundx.exchange.runners`). The batch is judged on its totals by the
   one verdict a whole batch gets too (:func:`contracts.validate.verdict`; :mod:`fundx.exchange.spooled`).
3. **seal** — a chunk's Parquet piece of a MiB or more is a part as it is; smaller ones are merged
   with their neighbours into parts of at most FUNDX_PART_BYTES; quarantined rows become the stewards'
   parts; each part is sealed by a job of its own (:func:`fundx.exchange.parts.seal_part`), which loads the exchange's
   keys itself: keys never travel in a job.
4. **handoff** — :func:`fundx.exchange.handoff.deliver`, as for any batch.

:class:`fundx.exchange.batch.Steps` records each step's seconds, rows and peak memory (VmHWM, reset per step)
for ``make bench``. The spool is removed when the run ends, whatever the outcome
(:func:`fundx.exchange.handoff.close_pull`); one a killed run left behind is removed by the next streamed run
of the feed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
    text_hashes,
)
from fundx.core.testpoints import kill_point  # TEST ONLY: the chaos night's kill points (FUNDX_TEST_KILL_AT)
from fundx.core.timeutil import Window
from fundx.exchange.spool import Spool

log = logging.getLogger("fundx.stream")


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
            spool.put_object(hashes_name(name), by_column)
            read.append((name, len(frame)))
            del raw, frame, by_column  # not held while the next chunk is awaited
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
    del hashes
    if marks:  # a key conflict's mark counts in its rows' hashes, as the column does in a whole pull's
        noted = np.fromiter(marks, dtype=np.int64, count=len(marks))
        all_hashes[noted] = fold_in(all_hashes[noted], DEFECT, text_hashes(marks.values()))
    if drop.any():
        all_hashes = all_hashes[~drop]
    digest = digest_of(columns, all_hashes, sort_in_place=True)  # the pull's own: sorted where they are
    del all_hashes
    pulled = SpooledPull(
        feed=connector.name, window=window, rows=offset, bytes=tally.bytes, digest=digest,
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


def hashes_name(raw: str) -> str:
    """The spool name of a raw chunk's column hashes."""
    return "hashes-" + raw.split("-", 1)[1]


def _repeated(values: np.ndarray) -> np.ndarray:
    """A mask of the values that occur more than once."""
    mask = np.zeros(len(values), dtype=bool)
    if len(values) < 2:
        return mask
    ordered = np.sort(values)
    if not (ordered[1:] == ordered[:-1]).any():  # the common case, found by a sort without positions
        return mask
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    same = ordered[1:] == ordered[:-1]
    mask[order[1:][same]] = True
    mask[order[:-1][same]] = True
    return mask


def chunk_frame(spool: Spool, chunk: Chunk, frame: Any = None) -> Any:
    """A spooled chunk's rows as the de-duplicated pull has them: the rows a later version replaces
    dropped, the rows of key conflicts marked (:data:`fundx.core.digest.DEFECT`) for the check to quarantine.
    ``frame``: the chunk as spooled, read already (it is marked in place)."""
    frame = spool.get_object(chunk.name) if frame is None else frame
    if chunk.marks:
        import pandas as pd

        if DEFECT not in frame.columns:
            frame[DEFECT] = pd.Series(None, index=frame.index, dtype="str")
        at, notes = zip(*chunk.marks)
        frame.loc[list(at), DEFECT] = list(notes)
    frame = frame.drop(columns=[ARRIVAL], errors="ignore")  # the file a row came in: de-duplication's alone
    return frame.drop(index=chunk.drop) if len(chunk.drop) else frame
