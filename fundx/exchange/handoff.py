"""Handing a pulled batch to its stage exactly once: check it, seal it, write it, record it, mark it READY.

One path for every feed: :func:`run_feed` pulls the window (:func:`pull_feed`: whole into memory, or
for a large feed in chunks through an encrypted spool, :mod:`fundx.exchange.stream`), checks it
(:func:`check_pull`: a :class:`fundx.exchange.batch.CheckedBatch` either way) and delivers it (:func:`deliver`).
A batch is identified by its feed, window and the digest of what was pulled (:func:`batch_id_for`;
no personal data in the id). It is first checked against its feed's contract (:func:`check_pull`):
its valid rows (normalised) are what the stage gets — Parquet parts of at most FUNDX_PART_BYTES,
each sealed with a :class:`~fundx.crypto.seal.Manifest` carrying the digest of those rows (signed by the
exchange, encrypted to every current certificate of the feed's stage) into
``inboxes/<stage>/<batch_id>/`` — and its failing rows go, sealed for the stewards, to
``quarantine/stewards/<batch_id>/`` (:mod:`fundx.exchange.quarantine`). The order of the steps is what makes
a crash at any point lose nothing and deliver nothing twice:

(a) the ledger records the delivery as ``sealing`` and commits, before any file is written;
(b) the quarantine's parts and every part for the stage are sealed and written (each atomically:
    temporary name, fsync, rename);
(c) ONE ledger transaction: the delivery becomes ``delivered``, the pull is recorded, the
    quarantine and its counts per rule are recorded, and the feed's watermark moves (the watermark
    never moves before this commit);
(d) the READY marker is written (atomically), then the ledger marks the batch ``ready``.
The stage reads only batches with READY, so before (c) nothing is visible to it, and after (c)
everything it will see is on disk. A batch with no valid rows, or one its contract's policy holds
back whole (BatchHeld), has no delivery: its quarantine and pull are recorded in one transaction.
Rows the stewards release go out, before the pull, as batches of their own through the same steps
(:func:`deliver_releases`).

Recovery (:func:`recover`, at the start of every run of the feed, under the feed's lock): a
quarantine folder no ledger row names (crash before (c)) is removed; a
``sealing`` delivery (crash before (c)) has its folder removed and becomes ``abandoned`` — the
watermark never moved, so the run's pull covers its rows again; a ``delivered`` one (crash between
(c) and (d)) gets its READY now (or, if its parts are gone, is recorded ``lost`` and the run stops
with DeliveryLost naming the backfill that sends it again). A batch already handed over (same feed, window and digest) is not
delivered again; its pull still moves the watermark. A pull of no rows delivers nothing and moves
the watermark. A batch its stage refused (or one abandoned or lost) is delivered again, as a new
attempt under the same id, when the same rows of the same window are pulled again (``fundx backfill``).

Only counts, ids, digests and error types reach logs, the ledger and exceptions.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from connectors.base import PullFigures
from fundx.core.errors import (
    BatchHeld,
    CertificateError,
    DeliveryLost,
    FundxError,
    HandoffPending,
    InternalError,
    SealError,
    SourceSchemaError,
    UnknownSignerError,
    content_free,
)
from fundx.core.settings import Settings, get_settings
from fundx.core.testpoints import kill_point  # TEST ONLY: the SIGKILL tests' and the chaos night's kill points
from fundx.core.timeutil import SHANGHAI, Window, aware, now
from fundx.crypto.keys import KeyPaths, KeySettings, KeyStore, common_name, init_keys
from fundx.crypto.seal import open_signed
from fundx.exchange import quarantine
from fundx.exchange.batch import CheckedBatch, Steps, WholeBatch
from fundx.ledger import DeliveryRecord, Ledger, night_of, pull_figures
from fundx.wire.inbox import Inbox, PartFile, inbox_for, parquet_parts, part_name, read_regular, seal_parts

log = logging.getLogger("fundx.handoff")

READY_FORMAT = "fundx.ready/1"
ACK_FORMAT = "fundx.ack/1"

def batch_id_for(feed: str, window: Window, digest: str) -> str:
    """A batch's id: feed, window (Asia/Shanghai, to the second) and the first 12 hex of its digest."""
    fmt = "%Y%m%dT%H%M%S"
    start, end = window.start.astimezone(SHANGHAI), window.end.astimezone(SHANGHAI)
    return f"{feed}-{start:{fmt}}-{end:{fmt}}-{digest.split(':', 1)[-1][:12]}"


@dataclass(frozen=True)
class Handoff:
    """What the handoff did with one pull (ids and counts only: safe to log and to return)."""

    outcome: str  # delivered | already_delivered | quarantined (every row failed) | empty
    batch_id: str | None = None
    stage: str | None = None
    parts: int = 0
    sealed_bytes: int = 0
    attempt: int = 0
    quarantined: int = 0  # rows sealed for the stewards
    rows: int = 0  # rows handed to the stage


# --- keys --------------------------------------------------------------------------------------


def exchange_keys(settings: Settings | None = None, ledger: Ledger | None = None,
                  logger: logging.Logger | logging.LoggerAdapter | None = None) -> KeyStore:
    """The exchange's keys: the FUNDX_KEYS_* production references, else FUNDX_HOME/keys.

    In the embedded default (no FUNDX_KEYS_* set) a missing development PKI is created on first
    use, with a warning: development only — production configures its own CA and certificates.
    """
    settings = settings or get_settings()
    key_settings = KeySettings()
    paths = KeyPaths.under(settings.home)
    if not key_settings.production and not paths.ca_cert.exists():
        (logger or log).warning(
            "no keys configured: creating a DEVELOPMENT PKI under %s (development only; production sets FUNDX_KEYS_*)",
            paths.dir,
        )
        init_keys(settings.home)
        if ledger is not None:
            ledger.log_event("keys.init", str(paths.dir), {"development": True, "by": "exchange"})
    return KeyStore(key_settings, home=settings.home)


# --- the batch's READY marker ---------------------------------------------------------------


def ready_document(*, batch_id: str, feed: str, stage: str, window: Window, rows: int, digest: str,
                   contract_version: str | None, files: list[PartFile]) -> bytes:
    """The READY marker: which files make the batch, and their SHA-256 — no personal data.

    The window is written as the manifests write it, so that a stage can hold one against the other.
    """
    return (json.dumps({
        "format": READY_FORMAT,
        "batch_id": batch_id,
        "feed": feed,
        "stage": stage,
        "window_start": window.start.astimezone(SHANGHAI).isoformat(),
        "window_end": window.end.astimezone(SHANGHAI).isoformat(),
        "rows": rows,
        "parts": len(files),
        "content_digest": digest,
        "contract_version": contract_version,
        "files": [{"name": f.name, "sha256": f.sha256, "bytes": f.bytes} for f in files],
        "ready_at": now().isoformat(),
    }, indent=1, ensure_ascii=False) + "\n").encode()


def _ready_of(d: DeliveryRecord, files: list[PartFile]) -> bytes:
    return ready_document(batch_id=d.batch_id, feed=d.feed, stage=d.stage, window=d.window, rows=d.rows,
                          digest=d.digest, contract_version=d.contract_version, files=files)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- delivering --------------------------------------------------------------------------------


def pull_feed(feed: str, window: Window, *, stream: bool = False,
              progress: Callable[[int], None] | None = None) -> PullFigures:
    """Every row the feed's agency serves for ``window``: read whole into memory (a connectors.base.Pull),
    or — ``stream`` — in chunks of FUNDX_CHUNK_ROWS through an encrypted spool (a fundx.exchange.stream.SpooledPull,
    memory bounded by the chunk; :func:`close_pull` removes the spool)."""
    from connectors import connector_for

    connector = connector_for(feed)
    if not stream:
        return connector.extract(window, progress=progress)
    from fundx.exchange import stream as streaming

    settings = get_settings()
    if streaming.remove_stale_spools(settings.home, feed):
        log.warning("%s: removed the spool of a run that stopped before it ended; its rows are pulled again", feed)
    spool = streaming.Spool.create(settings.home, feed)
    try:
        return streaming.extract(connector, window, spool, chunk_rows=settings.chunk_rows, progress=progress)
    except BaseException:
        spool.close()
        raise


def close_pull(pulled: Any) -> None:
    """Let go of what a pull holds beyond memory (a streamed pull's spool: removed)."""
    spool = getattr(pulled, "spool", None)
    if spool is not None:
        spool.close()


def check_pull(ledger: Ledger, pulled: Any, *, runner: Any = None, steps: Any = None, today: Any = None) -> CheckedBatch:
    """Check a pull — whole or spooled — against its feed's contract, with the feed's recent nightly
    row counts as history for the row-count rule; the one verdict (contracts.validate.verdict) decides.

    A spooled pull's chunks are checked through ``runner`` (default: in this process), each step
    timed in ``steps``. A schema break (columns missing or not in the contract) is a SourceSchemaError
    naming the columns: the feed stops and its watermark stays, so the rows are pulled again once the
    agency or the contract is fixed.
    """
    from contracts import contract_path, display_path, load_contract
    from contracts.rules import contract_rules

    contract = load_contract(pulled.feed)
    nights = max((r.params["nights"] for r in contract_rules(contract).batch_rules if r.kind == "row_count"), default=0)
    history = ledger.row_history(pulled.feed, limit=nights) if nights else []
    steps = steps if steps is not None else Steps()
    batch: CheckedBatch
    if hasattr(pulled, "spool"):
        from fundx.exchange.runners import LocalRunner
        from fundx.exchange.stream import check_spooled

        batch = check_spooled(pulled, runner=runner or LocalRunner(), steps=steps, history=history, today=today,
                              part_bytes=get_settings().part_bytes)
    else:
        from contracts.validate import check

        with steps.step("validate") as figures:
            checked = check(contract, pulled.frame, history=history, today=today)
            figures["rows"] = pulled.rows
        normalised = checked.report.get("normalise_seconds", 0.0)
        steps.share("validate", normalise=normalised, seal=0.0, of=normalised, rows=pulled.rows)
        batch = WholeBatch(pulled, checked)
    repeats = getattr(pulled, "repeats", None)
    if repeats is not None:  # what became of rows that shared a record key (connectors.base.deduplicate)
        batch.report["repeats"] = {"identical": repeats.identical, "superseded": repeats.superseded,
                                   "conflicting": repeats.conflicting}
    if batch.schema_break:
        raise SourceSchemaError(
            f"the batch does not match contract {contract.version}: {batch.reject_reason}", feed=pulled.feed,
            action=f"ask the agency about the change, or update {display_path(contract_path(pulled.feed))}",
        )
    return batch


def handed_over(ledger: Ledger, pulled: Any, *, run_id: int, started_at: datetime, backfill: bool = False,
                logger: logging.Logger | logging.LoggerAdapter | None = None) -> Handoff | None:
    """What needs no check and no delivery, recorded: a pull of no rows (the watermark moves), or a batch
    handed over already — delivered, or all with the stewards (its pull moves the watermark; nothing is
    sent again). None: the batch is to be checked and delivered."""
    logger = logger or log
    if pulled.rows == 0:
        ledger.record_pull(run_id, pulled, started_at=started_at, backfill=backfill)
        return Handoff("empty")
    batch_id = batch_id_for(pulled.feed, pulled.window, pulled.digest)
    kept = quarantine.batches(ledger, batch_id=batch_id)
    existing = ledger.delivery(batch_id)
    if not ((existing is not None and existing.status in ("delivered", "ready", "acknowledged"))
            or (existing is None and kept)):
        return None
    status = existing.status if existing is not None else ("held" if kept[0].held else "quarantined")
    with ledger.audited() as conn:
        ledger.record_pull(run_id, pulled, started_at=started_at, backfill=backfill, conn=conn)
        ledger.audit(conn, "batch.already_delivered", batch_id, {"status": status, "run_id": run_id})
    logger.info("%s: batch %s was handed over already (%s); nothing sent again", pulled.feed, batch_id, status)
    return Handoff("already_delivered", batch_id, existing.stage if existing else None,
                   existing.parts if existing else 0)


def deliver(ledger: Ledger, batch: CheckedBatch, *, run_id: int, started_at: datetime, backfill: bool = False,
            keys: KeyStore | None = None, inbox: Inbox | None = None, settings: Settings | None = None,
            steps: Any = None, logger: logging.Logger | logging.LoggerAdapter | None = None) -> Handoff:
    """Hand one checked batch (:func:`check_pull`, whole or spooled) to its stage exactly once; see the
    module docstring.

    Its valid rows go to the stage, its failing rows to the stewards' quarantine, in the same steps and
    the same commit. A batch the contract's policy holds back goes whole to the quarantine and BatchHeld
    is raised after the commit (the feed's run fails for the night, its watermark moves: the rows are with
    the stewards, not lost). Records the pull and moves the watermark in every case that ends without an
    error (or with BatchHeld). Raises HandoffPending if only the READY marker is missing at the end.
    """
    from connectors import load_feed

    logger = logger or log
    settings = settings or get_settings()
    pulled = batch.pulled
    feed, window = pulled.feed, pulled.window
    if (done := handed_over(ledger, pulled, run_id=run_id, started_at=started_at, backfill=backfill,
                            logger=logger)) is not None:
        return done
    batch_id = batch_id_for(feed, window, pulled.digest)
    held = batch.rejected
    contract_version = batch.report["contract_version"]
    stage = load_feed(feed).stage
    keys = keys or exchange_keys(settings, ledger, logger)
    inbox = inbox or inbox_for(settings.home)
    store = quarantine.store_for(settings.home)
    night = ledger.run_night(run_id)
    keeping = held or batch.quarantined_rows > 0
    kept_rows = batch.rows if held else batch.quarantined_rows
    # a batch sent again (refused, lost, abandoned after its commit) has its quarantine recorded already
    recorded = bool(quarantine.batches(ledger, batch_id=batch_id))
    figures = None if backfill or held or ledger.watermark(feed) is None else batch.event_lag()
    step = steps.step if steps is not None else _no_step

    def seal_quarantine() -> list[PartFile]:
        if not keeping or recorded:
            return []
        payloads = batch.quarantine_payloads(settings.part_bytes, held=held)
        return _seal(store, quarantine.STEWARDS, keys, payloads, batch_id=batch_id, feed=feed, window=window,
                     digest=pulled.digest, rows=kept_rows, contract_version=contract_version, runner=batch.runner)

    def commit(conn: Any, q_files: list[PartFile]) -> int:
        """Step (c)'s records of a pulled batch: the pull (and watermark), its event latency, its quarantine."""
        pull_id = ledger.record_pull(run_id, pulled, started_at=started_at, backfill=backfill,
                                     outcome="held" if held else "pulled", conn=conn)
        if figures is not None:
            conn.execute(pull_figures.insert().values(pull_id=pull_id, event_lag_p50=figures[0],
                                                      event_lag_p90=figures[1]))
        if not recorded:
            quarantine.record(ledger, conn, batch_id=batch_id, feed=feed, night=night, run_id=run_id,
                              pull_id=pull_id, window=window, digest=pulled.digest, contract_version=contract_version,
                              checked=batch, held=held, reason=batch.reject_reason if held else None, files=q_files)
        return pull_id

    if held or batch.valid_rows == 0:  # nothing for the stage: the quarantine and the pull, one commit
        with step("seal") as sealing:
            try:
                q_files = seal_quarantine()
            except BaseException:
                store.remove(quarantine.STEWARDS, batch_id)
                raise
            sealing["rows"] = kept_rows
        with step("handoff"), ledger.audited() as conn:
            # a failed commit's outcome is unknown: the next run's recovery removes the quarantine if unrecorded
            commit(conn, q_files)
        if held:
            raise BatchHeld(
                f"batch {batch_id} held back whole for the stewards ({kept_rows} rows): {batch.reject_reason}",
                feed=feed, action=f"a data steward decides: fundx failures show {batch_id}, "
                                  f"then fundx failures release|reject {batch_id} --reason ...",
            )
        logger.warning("%s: all %d rows of batch %s failed their contract: quarantined for the stewards",
                       feed, pulled.rows, batch_id)
        return Handoff("quarantined", batch_id, None, 0, quarantined=kept_rows)

    with step("seal") as sealing:
        payloads = batch.valid_payloads(settings.part_bytes)
        sealing["rows"] = batch.valid_rows
    result = _deliver(  # steps (a)-(d): the stage's batch carries the digest of the rows it holds (valid, normalised)
        ledger, feed=feed, stage=stage, batch_id=batch_id, window=window, digest=batch.valid_digest(), frame=None,
        contract_version=contract_version, run_id=run_id, keys=keys, inbox=inbox, settings=settings, logger=logger,
        seal_extra=seal_quarantine, commit=commit, payloads=payloads, rows=batch.valid_rows, runner=batch.runner,
        undo_extra=None if recorded else lambda: store.remove(quarantine.STEWARDS, batch_id), steps=steps,
    )
    if keeping:
        logger.info("%s: %d of %d rows of batch %s failed their contract: quarantined for the stewards",
                    feed, kept_rows, pulled.rows, batch_id)
    return Handoff(result.outcome, result.batch_id, result.stage, result.parts, result.sealed_bytes, result.attempt,
                   quarantined=kept_rows if keeping else 0, rows=result.rows)


def _seal(store: Inbox, stage: str, keys: KeyStore, payloads: Any, *, batch_id: str, feed: str,
          window: Window, digest: str, rows: int, contract_version: str,
          after_part: Callable[[int], None] | None = None, runner: Any = None) -> list[PartFile]:
    created_at = now().isoformat()
    if runner is not None:  # spooled parts of a streamed batch, sealed in parallel where the runner can
        from fundx.exchange.stream import SpooledParts, seal_spooled

        if isinstance(payloads, SpooledParts):
            manifest = {"batch_id": batch_id, "feed": feed, "window_start": window.start.astimezone(SHANGHAI).isoformat(),
                        "window_end": window.end.astimezone(SHANGHAI).isoformat(), "rows": rows,
                        "content_digest": digest, "contract_version": contract_version, "recipient": stage,
                        "created_at": created_at}
            files = seal_spooled(store, stage, payloads, runner=runner, home=get_settings().home, manifest=manifest)
            if files is not None:
                return files
    signer_key, signer_cert = keys.exchange_signer()
    return seal_parts(store, stage, payloads, batch_id=batch_id, feed=feed, window=window, digest=digest, rows=rows,
                      contract_version=contract_version, created_at=created_at, signer_key=signer_key,
                      signer_cert=signer_cert, recipients=keys.recipient_certificates(stage), after_part=after_part)


def _deliver(ledger: Ledger, *, feed: str, stage: str, batch_id: str, window: Window, digest: str, frame: Any,
             contract_version: str, run_id: int, keys: KeyStore, inbox: Inbox, settings: Settings,
             logger: logging.Logger | logging.LoggerAdapter, commit: Callable[[Any, list[PartFile]], int | None],
             seal_extra: Callable[[], list[PartFile]] = list, undo_extra: Callable[[], None] | None = None,
             payloads: Any = None, rows: int | None = None, runner: Any = None, steps: Any = None) -> Handoff:
    """Steps (a)-(d) for one batch of rows; ``commit(conn, extra_files)`` joins step (c)'s transaction
    (and returns the pull id it recorded, if any); ``seal_extra`` writes other sealed files in step (b).
    A streamed batch gives its ``payloads`` (spooled Parquet parts), ``rows`` and ``runner`` instead of ``frame``."""
    rows = len(frame) if rows is None else rows
    keys.exchange_signer(), keys.recipient_certificates(stage)  # missing keys fail before (a), not after it
    payloads = parquet_parts(frame, feed, settings.part_bytes) if payloads is None else payloads
    step = steps.step if steps is not None else _no_step
    with step("handoff"):
        attempt = ledger.begin_delivery(  # (a)
            batch_id=batch_id, feed=feed, stage=stage, window=window, digest=digest, rows=rows,
            parts=len(payloads), contract_version=contract_version, run_id=run_id,
        )
    committing = False
    try:
        with step("seal") as sealing:
            inbox.remove(stage, batch_id)  # what an earlier, abandoned attempt may have left
            extra = seal_extra()  # (b)
            kill_point("after_quarantine")
            files = _seal(inbox, stage, keys, payloads, batch_id=batch_id, feed=feed, window=window, digest=digest,
                          rows=rows, contract_version=contract_version, runner=runner,
                          after_part=lambda n: kill_point("after_seal") if n == 1 else None)
            sealing["rows"] = rows
        kill_point("after_write")
        sealed_bytes = sum(f.bytes for f in files)
        committing = True
        with step("handoff") as handing, ledger.audited() as conn:  # (c) delivery + pull + watermark, one commit
            pull_id = commit(conn, extra)
            ledger.mark_delivered(conn, batch_id, attempt=attempt, pull_id=pull_id, sealed_bytes=sealed_bytes)
            handing["rows"] = rows
            kill_point("before_commit")
    except BaseException as exc:
        if not committing:
            # Nothing the stage can see exists yet, and the watermark has not moved: undo what is on disk.
            # If the failure came from the commit itself its outcome is unknown: the next run's recovery decides.
            _abandon(ledger, inbox, stage, batch_id, exc, logger)
            if undo_extra is not None:
                undo_extra()
        raise
    kill_point("after_commit")
    try:
        record = ledger.delivery(batch_id)
        if record is None:
            raise InternalError(f"batch {batch_id} vanished from the ledger after its commit")
        ready = _ready_of(record, files)  # (d)
        with step("handoff"):
            inbox.write_ready(stage, batch_id, ready)
            kill_point("after_ready")
            ledger.mark_ready(batch_id, _sha256(ready))
    except (OSError, FundxError) as exc:
        raise HandoffPending(
            f"batch {batch_id} is delivered and recorded, but READY could not be written "
            f"({content_free(exc).kind}); the next run of {feed} writes it", feed=feed,
        ) from None
    logger.info("%s: batch %s handed to %s: %d rows in %d sealed parts, %d bytes (attempt %d)",
                feed, batch_id, stage, rows, len(files), sealed_bytes, attempt)
    return Handoff("delivered", batch_id, stage, len(files), sealed_bytes, attempt, rows=rows)


@contextmanager
def _no_step(_name: str) -> Iterator[dict[str, Any]]:
    yield {}


def _abandon(ledger: Ledger, inbox: Inbox, stage: str, batch_id: str, error: BaseException,
             logger: logging.Logger | logging.LoggerAdapter) -> None:
    """Undo a delivery that failed before its commit; a failure here is left to the next run's recovery."""
    reason = f"{content_free(error).kind} while sealing"
    try:
        inbox.remove(stage, batch_id)
        ledger.abandon(batch_id, reason)
    except (OSError, FundxError) as cleanup:  # the original error is what the caller sees
        logger.error("batch %s: could not undo the failed delivery (%s); the next run recovers it",
                     batch_id, content_free(cleanup).kind)


def recover(ledger: Ledger, feed: str, *, inbox: Inbox | None = None, keys: KeyStore | None = None,
            logger: logging.Logger | logging.LoggerAdapter | None = None) -> list[str]:
    """Finish or undo the feed's deliveries that a crash interrupted; returns what was done, per batch.

    Must run under :meth:`Ledger.feed_lock` (no other run may be sealing the feed). A delivered batch
    whose READY and parts are both gone was taken by its stage in the moment between READY and the
    ledger's mark (the stage answers before it clears the inbox): its verified answer names the
    READY it saw, and that is recorded.
    """
    logger = logger or log
    settings = get_settings()
    inbox = inbox or inbox_for(settings.home)
    done: list[str] = []
    store = quarantine.store_for(settings.home)
    for orphan in quarantine.orphans(store, ledger, feed):  # quarantined rows of a run stopped before its commit
        store.remove(quarantine.STEWARDS, orphan)
        logger.warning("%s: removed the quarantine of batch %s, whose run stopped before recording it; "
                       "its rows are pulled again", feed, orphan)
        done.append(f"{orphan}: quarantine removed")
    for d in ledger.deliveries(feed, status=("sealing", "delivered")):
        if d.status == "sealing":  # crash before (c): the stage never saw it, the watermark never moved
            inbox.remove(d.stage, d.batch_id)
            kill_point("in_recover")
            ledger.abandon(d.batch_id, "the run sealing it stopped before its delivery was recorded", recovered=True)
            logger.warning("%s: batch %s was interrupted while sealing: removed; its rows are pulled again",
                           feed, d.batch_id)
            done.append(f"{d.batch_id}: abandoned")
            continue
        ready = inbox.read_ready(d.stage, d.batch_id)  # crash between (c) and (d)
        if ready is not None:
            ready_sha = _sha256(ready)
        elif not inbox.parts(d.stage, d.batch_id) and (taken := _stage_answer(d, keys or KeyStore(home=settings.home),
                                                                               acks_root(settings.home))):
            ready_sha = taken
        else:
            ready = _ready_of(d, _parts_on_disk(ledger, inbox, d))
            inbox.write_ready(d.stage, d.batch_id, ready)
            ready_sha = _sha256(ready)
        ledger.mark_ready(d.batch_id, ready_sha, recovered=True)
        logger.warning("%s: batch %s was delivered but not marked READY: marked now", feed, d.batch_id)
        done.append(f"{d.batch_id}: ready")
    return done


def _stage_answer(d: DeliveryRecord, keys: KeyStore, root: Path) -> str | None:
    """The READY SHA-256 named by the stage's verified answer about this batch, if it has answered."""
    folder = root / d.stage
    candidates = [folder / f"{d.batch_id}.received.p7s", *sorted(folder.glob(f"{d.batch_id}.refused.*.p7s"))]
    for path in candidates:
        if not path.is_file():
            continue
        try:
            body = _verified_ack(path.read_bytes(), path.name, d.stage, keys.ca(), keys.crl())
        except (SealError, CertificateError):
            continue  # record_acks records it as invalid; it proves nothing here
        if body.get("batch_id") == d.batch_id and isinstance(body.get("ready_sha256"), str):
            return body["ready_sha256"]
    return None


def _parts_on_disk(ledger: Ledger, inbox: Inbox, d: DeliveryRecord) -> list[PartFile]:
    names = [part_name(n, d.parts) for n in range(1, d.parts + 1)]
    present = set(inbox.parts(d.stage, d.batch_id))
    missing = [n for n in names if n not in present]
    if missing:
        lost = DeliveryLost(
            f"batch {d.batch_id} is recorded as delivered but {len(missing)} of its {d.parts} sealed parts "
            f"are missing from {inbox.where(d.stage, d.batch_id)}", feed=d.feed,
            action=(f"fundx backfill {d.feed} --from {d.window.start.astimezone(SHANGHAI).isoformat()} "
                    f"--to {d.window.end.astimezone(SHANGHAI).isoformat()}"),
        )
        inbox.remove(d.stage, d.batch_id)  # what is left of it can never be READY
        ledger.mark_lost(d.batch_id, f"{lost.kind}: {len(missing)} of {d.parts} parts missing")
        raise lost
    files = []
    for name in names:
        data = inbox.read_part(d.stage, d.batch_id, name)
        files.append(PartFile(name, _sha256(data), len(data)))
    return files


# --- one feed, start to end ----------------------------------------------------------------------


@dataclass(frozen=True)
class FeedRun:
    """What one run of a feed did: the pull's figures and the handoff (no rows: safe to return)."""

    feed: str
    window: Window
    rows: int
    bytes: int
    pages: int
    retries: int
    duration_s: float
    digest: str
    handoff: Handoff
    recovered: tuple[str, ...] = ()
    valid: int = 0
    quarantined: int = 0
    released: tuple[Handoff, ...] = ()  # batches of rows the stewards released, delivered by this run
    report: dict[str, Any] | None = None  # the contract check's report: counts per rule, no values
    #: the run's steps (pull, normalise, validate, seal, handoff): seconds, rows, peak_rss_bytes
    steps: dict[str, dict[str, Any]] | None = None


def deliver_releases(ledger: Ledger, feed: str, *, run_id: int, keys: KeyStore | None = None,
                     inbox: Inbox | None = None, settings: Settings | None = None,
                     logger: logging.Logger | logging.LoggerAdapter | None = None) -> list[Handoff]:
    """Hand the rows the stewards released (and not yet delivered) to the feed's stage, exactly once.

    Each release goes as a batch of its own, ``<quarantined batch>-r<decision>``, through the same
    steps (a)-(d) as a pulled batch; the release is marked delivered in step (c)'s commit.
    """
    pending = quarantine.pending_releases(ledger, feed)
    if not pending:
        return []
    from connectors import load_feed
    from fundx.core.digest import content_digest

    logger = logger or log
    settings = settings or get_settings()
    keys = keys or exchange_keys(settings, ledger, logger)
    inbox = inbox or inbox_for(settings.home)
    stage = load_feed(feed).stage
    done = []
    for decision in pending:
        source = quarantine.batch(ledger, decision.batch_id)
        frame = quarantine.released_rows(ledger, decision, keys=keys, home=settings.home)
        batch_id = decision.release_batch_id

        def commit(conn: Any, _extra: list[PartFile], decision=decision, batch_id=batch_id) -> None:
            quarantine.mark_release_delivered(ledger, conn, decision, batch_id)

        done.append(_deliver(
            ledger, feed=feed, stage=stage, batch_id=batch_id, window=source.window, digest=content_digest(frame),
            frame=frame, contract_version=source.contract_version or "", run_id=run_id, keys=keys, inbox=inbox,
            settings=settings, logger=logger, commit=commit,
        ))
        logger.info("%s: %d rows released by the stewards (decision %d) handed to %s as batch %s",
                    feed, len(frame), decision.id, stage, batch_id)
    return done


def write_report(ledger: Ledger, run_id: int, checked: Any,
                 logger: logging.Logger | logging.LoggerAdapter | None = None) -> Path | None:
    """The feed's page of the night's Data Docs (FUNDX_HOME/reports/<night>/); a failure is only logged."""
    from contracts.docs import write_feed_report

    try:
        return write_feed_report(get_settings().home / "reports" / ledger.run_night(run_id), checked)
    except Exception as exc:  # noqa: BLE001 - the report must never stop a feed's delivery
        (logger or log).error("%s: the validation report could not be written (%s)", checked.feed,
                              content_free(exc).kind)
        return None


def plan_window(ledger: Ledger, feed: str, start: str | None, end: str | None) -> tuple[Window, bool]:
    """The window to pull: from the feed's watermark to ``end`` (default now); a given start is a backfill."""
    until = aware(end) if end else now()
    if start:
        return Window(aware(start), until), True
    since = ledger.watermark(feed) or get_settings().initial_watermark
    return Window(min(since, until), until), False


def run_feed(
    feed: str,
    *,
    run_id: int | None = None,
    start: str | None = None,
    end: str | None = None,
    ledger: Ledger | None = None,
    pull: Callable[..., Any] | None = None,
    validate: Callable[..., CheckedBatch] | None = None,
    handoff: Callable[..., Handoff] | None = None,
    release: Callable[..., list[Handoff]] | None = None,
    logger: logging.Logger | logging.LoggerAdapter | None = None,
    stream: bool | None = None,
    runner: Any = None,
) -> FeedRun:
    """One feed: lock it, recover interrupted deliveries, deliver what the stewards released, pull
    its window, check the batch against its contract, hand the valid rows to its stage and the
    failing ones to the stewards' quarantine — the same steps whether its rows are read whole or, for a
    large feed, streamed in chunks through a spool (``stream``, default: the feed config's ``stream``).

    ``pull(feed, window, stream=...)``, ``validate(ledger, pulled, runner=, steps=)``,
    ``handoff(ledger, batch, ...)`` and ``release`` default to :func:`pull_feed`, :func:`check_pull`,
    :func:`deliver` and :func:`deliver_releases`; the Prefect flow passes its tasks, so every feed shows
    the same tasks. A streamed batch's chunks are checked and its parts sealed through ``runner``
    (default: FUNDX_TASK_RUNNER, see :mod:`fundx.exchange.runners`). A failure is recorded in the ledger (type and
    content-free message) and raised as a fundx error; a batch held back whole raises BatchHeld after it
    is recorded. Each step's seconds, rows and peak memory are in the result's ``steps``.
    """
    from contextlib import nullcontext

    logger = logger or log
    ledger = ledger or Ledger.from_settings()
    pull = pull or pull_feed
    validate = validate or check_pull
    handoff = handoff or deliver
    release = release or deliver_releases
    own_run = run_id is None
    if own_run:
        run_id = ledger.start_run("backfill" if start else "feed", night_of(now()))
    assert run_id is not None
    started = now()
    window: Window | None = None
    backfill = bool(start)
    streamed = _streamed(feed, stream)
    steps = Steps()
    pulled: Any = None
    batch: CheckedBatch | None = None
    try:
        with ledger.feed_lock(feed):
            recovered = recover(ledger, feed, logger=logger)
            kill_point("after_recover")
            released = tuple(release(ledger, feed, run_id=run_id, logger=logger))
            window, backfill = plan_window(ledger, feed, start, end)
            if backfill:
                ledger.log_event("backfill.requested", feed, {"window": [window.start.isoformat(), window.end.isoformat()],
                                                              "run_id": run_id})
            logger.info("%s: pulling %s%s%s", feed, window, " (backfill)" if backfill else "",
                        " in chunks" if streamed else "")
            with steps.step("pull") as figures:
                pulled = pull(feed, window, stream=streamed)
                figures["rows"] = pulled.rows
            kill_point("after_pull")
            result = handed_over(ledger, pulled, run_id=run_id, started_at=started, backfill=backfill, logger=logger)
            if result is None:
                if streamed:
                    from fundx.exchange.runners import runner_from_settings

                    runner = runner if runner is not None else runner_from_settings()
                with runner if streamed else nullcontext():  # a cluster, if the runner starts one, serves the batch
                    batch = validate(ledger, pulled, runner=runner, steps=steps)
                    kill_point("after_check")
                    write_report(ledger, run_id, batch, logger)
                    result = handoff(ledger, batch, run_id=run_id, started_at=started, backfill=backfill,
                                     steps=steps, logger=logger)
    except BaseException as exc:
        error = content_free(exc)
        if not isinstance(error, (HandoffPending, BatchHeld)):  # their pull is recorded already
            failed_window = window or Window(started, started)
            ledger.record_failure(run_id, feed, failed_window, error, started_at=started, backfill=backfill)
        if own_run:
            ledger.finish_run(run_id, feeds=1, failed=1, summary=f"{feed}: {error.kind}")
        logger.error("%s failed: %s — %s", feed, error.kind, error.action)
        if error is exc:
            raise
        raise error from None
    finally:
        close_pull(pulled)
    if own_run:
        ledger.finish_run(run_id, feeds=1, failed=0)
    figures = steps.as_dict()
    logger.info("%s: %d rows, %d bytes, %d pages, %d retries in %.1f s, %s; %s; %s", feed, pulled.rows, pulled.bytes,
                pulled.pages, pulled.retries, pulled.duration_s, pulled.digest, result.outcome.replace("_", " "),
                ", ".join(f"{name} {f['seconds']:.1f} s" + (f" (peak {f['peak_rss_bytes'] / 2**20:.0f} MiB)"
                                                             if f["peak_rss_bytes"] else "")
                          for name, f in figures.items()))
    report = batch.report if batch is not None else None
    return FeedRun(feed, window, pulled.rows, pulled.bytes, pulled.pages, pulled.retries, pulled.duration_s,
                   pulled.digest, result, tuple(recovered), valid=report["valid"] if report else 0,
                   quarantined=result.quarantined, released=released, report=report, steps=figures)


def _streamed(feed: str, stream: bool | None) -> bool:
    if stream is not None:
        return stream
    from connectors import load_feed

    return bool(load_feed(feed).stream)


# --- acknowledgements ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AckSummary:
    """What :func:`record_acks` recorded: acknowledgements, refusals, unverifiable files, deliveries settled."""

    received: int = 0
    refused: int = 0
    invalid: int = 0
    settled: int = 0
    waiting: int = 0  # answers about batches whose READY the ledger has not marked yet: recorded next time


def acks_root(home: Path | None = None) -> Path:
    """Where stages put their signed acknowledgements and refusals: ``FUNDX_HOME/acks/<stage>/``."""
    return Path(home or get_settings().home) / "acks"


def record_acks(ledger: Ledger | None = None, *, keys: KeyStore | None = None, root: Path | None = None,
                logger: logging.Logger | logging.LoggerAdapter | None = None) -> AckSummary:
    """Verify every new acknowledgement and refusal the stages wrote, and record it in the ledger.

    An answer counts only if its CMS signature verifies against the trusted CA (and CRL) and its
    signer is the signing certificate of the stage it speaks for (CN = the stage). Anything else is
    recorded as ``invalid`` with the reason, and settles nothing.
    """
    logger = logger or log
    ledger = ledger or Ledger.from_settings()
    keys = keys or KeyStore(home=get_settings().home)
    root = root or acks_root()
    counts = {"received": 0, "refused": 0, "invalid": 0, "settled": 0, "waiting": 0}
    if not root.is_dir():
        return AckSummary()
    ca, crl = keys.ca(), keys.crl()
    for stage_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        stage = stage_dir.name
        seen = ledger.acks_recorded(stage)
        for path in sorted(stage_dir.glob("*.p7s")):
            if path.name in seen:
                continue
            data = b""  # a link is not read (what it points to may be a key): recorded with the SHA-256 of nothing
            try:
                data = read_regular(path, what=f"acknowledgement {stage}/{path.name}")
                body = _verified_ack(data, path.name, stage, ca, crl)
            except (SealError, CertificateError) as refused:
                file_sha = _sha256(data)
                ledger.record_ack(stage=stage, file=path.name, file_sha256=file_sha, outcome="invalid", batch_id=None,
                                  reason=f"{refused.kind}: {refused}")
                logger.warning("acknowledgement %s/%s refused: %s", stage, path.name, refused.kind)
                counts["invalid"] += 1
                continue
            file_sha = _sha256(data)
            batch_id = body.get("batch_id")
            pending = ledger.delivery(batch_id) if isinstance(batch_id, str) else None
            if pending is not None and pending.status in ("sealing", "delivered"):
                counts["waiting"] += 1
                continue
            settled = ledger.record_ack(
                stage=stage, file=path.name, file_sha256=file_sha, outcome=body["outcome"], batch_id=batch_id,
                reason=body.get("reason"), received_at=body["at"], ready_sha256=body.get("ready_sha256"),
                rows=body.get("rows"), parts=body.get("parts"), signer_serial=body["signer_serial"],
                feed=body.get("feed"),
            )
            counts[body["outcome"]] += 1
            counts["settled"] += int(settled)
    summary = AckSummary(**counts)
    if summary.received or summary.refused or summary.invalid:
        logger.info("acknowledgements recorded: %d received, %d refused, %d invalid; %d deliveries settled",
                    summary.received, summary.refused, summary.invalid, summary.settled)
    return summary


def _verified_ack(data: bytes, name: str, stage: str, ca: Any, crl: Any) -> dict[str, Any]:
    opened = open_signed(data, trusted_ca=ca, crl=crl, what=f"acknowledgement {stage}/{name}")
    if common_name(opened.signer) != stage:
        raise UnknownSignerError(
            f"acknowledgement {stage}/{name} is signed by CN={common_name(opened.signer)!r}, not by stage {stage}"
        )
    try:
        body = json.loads(opened.payload)
    except ValueError:
        raise SealError(f"acknowledgement {stage}/{name} is not JSON") from None
    wrong = SealError(f"acknowledgement {stage}/{name} is not a {ACK_FORMAT} document of stage {stage}")
    if not isinstance(body, dict) or body.get("format") != ACK_FORMAT or body.get("stage") != stage \
            or body.get("outcome") not in ("received", "refused") or not isinstance(body.get("at"), str) \
            or not all(isinstance(body.get(k), (int, type(None))) for k in ("rows", "parts")) \
            or not all(isinstance(body.get(k), (str, type(None))) for k in ("batch_id", "reason", "ready_sha256", "feed")):
        raise wrong
    try:
        body["at"] = aware(body["at"])
    except ValueError:
        raise wrong from None
    body["signer_serial"] = format(opened.signer.serial_number, "x")
    return body
