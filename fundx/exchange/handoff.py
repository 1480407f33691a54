"""Handing a pulled batch to its stage exactly once: check it, seal it, write it, record it, mark it READY.

One path for every feed: :func:`run_feed` pulls the window (:func:`pull_feed`: whole into memory, or
for a large feed in chunks through an encrypted spool, :mod:`fundx.exchange.stream`), checks it
(:func:`check_pull`: a :class:`fundx.exchange.batch.CheckedBatch` either way) and delivers it (:func:`deliver`).
A batch is identified by its feed, window and the digest of what was pulled (:func:`batch_id_for`;
no personal data in the id). It is first checked against its feed's contract (:func:`check_pull`):
its valid rows (normalised) are what the stage gets — Parquet parts of at most FUNDX_PART_BYTES,
each sealed with a :class:`~fundx.crypto.manifest.Manifest` carrying the digest of those rows (signed by the
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

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.base import PullFigures
from fundx.core.errors import (
    BatchHeld,
    FundxError,
    HandoffPending,
    InternalError,
    SourceSchemaError,
    content_free,
)
from fundx.core.settings import Settings, get_settings
from fundx.core.testpoints import kill_point  # TEST ONLY: the SIGKILL tests' and the chaos night's kill points
from fundx.core.timeutil import SHANGHAI, Window, now
from fundx.crypto.keys import KeyPaths, KeySettings, KeyStore
from fundx.crypto.pki import init_keys
from fundx.exchange import originals, quarantine
from fundx.exchange.batch import CheckedBatch, Steps, WholeBatch
from fundx.ledger import Ledger
from fundx.ledger.records import DeliveryRecord
from fundx.ledger.schema import pull_figures
from fundx.wire.documents import ready_document, sha256
from fundx.wire.inbox import Inbox, PartFile, inbox_for, parquet_parts, seal_parts

log = logging.getLogger("fundx.handoff")


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


def ready_of(d: DeliveryRecord, files: list[PartFile]) -> bytes:
    """The READY marker of a delivery recorded in the ledger."""
    return ready_document(batch_id=d.batch_id, feed=d.feed, stage=d.stage, window=d.window, rows=d.rows,
                          digest=d.digest, contract_version=d.contract_version, files=files)


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
    from fundx.exchange.spool import Spool, remove_stale_spools

    settings = get_settings()
    if remove_stale_spools(settings.home, feed):
        log.warning("%s: removed the spool of a run that stopped before it ended; its rows are pulled again", feed)
    spool = Spool.create(settings.home, feed)
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
    timed in ``steps``; they encode the pulled rows for the backup's originals only where a backup
    certificate is configured (a look at the key settings: no key store is opened here). A schema
    break (columns missing or not in the contract) is a SourceSchemaError naming the columns: the feed
    stops and its watermark stays, so the rows are pulled again once the agency or the contract is fixed.
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
        from fundx.exchange.spooled import check_spooled

        settings = get_settings()
        batch = check_spooled(pulled, runner=runner or LocalRunner(), steps=steps, history=history, today=today,
                              part_bytes=settings.part_bytes,
                              originals=originals.backup_certificate_expected(settings))
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
    with step("seal"):  # the originals, sealed to the backup certificate before any commit (timed as sealing)
        kept_originals = originals.keep(pulled, batch_id, keys, settings=settings, logger=logger,
                                        encoded=batch.original_payloads())

    def record_originals(outcome: str, delivered: int) -> None:
        originals.record(pulled, batch_id, kept_originals, outcome=outcome, stage=None if outcome != "delivered" else stage,
                         delivered_rows=delivered, quarantined_rows=kept_rows if keeping else 0, report=batch.report,
                         held_reason=batch.reject_reason if held else None, settings=settings)

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
        record_originals("held" if held else "quarantined", 0)
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
    record_originals("delivered", result.rows)
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
        from fundx.exchange.parts import SpooledParts, seal_spooled

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
        ready = ready_of(record, files)  # (d)
        with step("handoff"):
            inbox.write_ready(stage, batch_id, ready)
            kill_point("after_ready")
            ledger.mark_ready(batch_id, sha256(ready))
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
