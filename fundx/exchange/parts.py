"""A streamed batch's parts: valid rows and the stewards' rows as Parquet parts in the spool, and the
jobs that seal them (:func:`seal_part`, run through a task runner; keys never travel in a job).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fundx.exchange.chunks import CheckResult, read_piece
from fundx.exchange.runners import LocalRunner, Runner
from fundx.exchange.spool import Spool
from fundx.exchange.stream import SpooledPull
from fundx.wire.inbox import Inbox, LocalInbox, PartFile, part_name

log = logging.getLogger("fundx.stream")


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


def valid_parts(pulled: SpooledPull, results: list[CheckResult], part_bytes: int) -> SpooledParts:
    """The valid rows as Parquet parts of at most ``part_bytes``, in the spool, in row order.

    The check encoded each chunk's valid rows already (:func:`check_chunk`, in parallel when the
    runner has workers): a piece of a MiB or more is a part as it is. Smaller pieces, and those of a
    chunk whose schema differs from the first chunk's (a column all missing in it is typed null), are
    read back and encoded again together with their neighbours.
    """
    import pyarrow as pa

    from fundx.crypto.parts import iter_parts

    spool, names = pulled.spool, list[str]()
    schema = next((r.schema for r in results if r.schema is not None), None)
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

    for result in results:
        same = result.schema is None or result.schema == schema
        for piece, _rows, size in result.pieces:
            if same and size >= min(SMALL_PIECE, part_bytes // 2):
                flush()
                names.append(piece)
                continue
            table = read_piece(spool, piece)
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
    tables = [read_piece(spool, piece) for piece, _rows, _size in result.pieces]
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


def quarantine_parts(pulled: SpooledPull, results: list[CheckResult], part_bytes: int, *, held: bool) -> SpooledParts:
    """The stewards' rows (failing ones; every row when held) as Parquet parts, numbered across chunks.

    The chunks' rows are gathered into parts of at most ``part_bytes`` (their Arrow buffers up to half
    of it: :func:`fundx.crypto.parts.iter_parts` encodes such a table once), not a part per chunk:
    a few failing rows per chunk would otherwise be a swarm of small sealed files.
    """
    import pyarrow as pa

    from fundx.crypto.parts import iter_parts
    from fundx.exchange.quarantine import POSITION, ROW, RULES, held_rows
    from fundx.wire.inbox import arrow_table

    spool, names, number = pulled.spool, list[str](), 1
    pending: list[Any] = []
    pending_bytes = 0

    def put(table: Any) -> None:
        for data in iter_parts(table, part_bytes):
            name = f"quarantine-{len(names) + 1:06d}"
            spool.put(name, data)
            names.append(name)

    def flush() -> None:
        nonlocal pending, pending_bytes
        if len(pending) > 1:
            try:  # a column all missing in one chunk's rows is typed null there: promoted to the others' type
                put(pa.concat_tables(pending, promote_options="default"))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                for table in pending:  # types that do not unify: a part of its own each, as they come
                    put(table)
        elif pending:
            put(pending[0])
        pending, pending_bytes = [], 0

    for result in results:
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
        table = arrow_table(rows, pulled.feed)
        del rows
        if pending and pending_bytes + table.nbytes > part_bytes // 2:
            flush()
        pending.append(table)
        pending_bytes += table.nbytes
    flush()
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
    from fundx.crypto.manifest import Manifest

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
