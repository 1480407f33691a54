"""Handing a pulled batch to its stage exactly once: seal it, write it, record it, mark it READY.

A batch is identified by its feed, window and content digest (:func:`batch_id_for`; no personal
data in the id). Its rows become Parquet parts of at most FUNDX_PART_BYTES, each sealed with a
:class:`~fundx.seal.Manifest` (signed by the exchange, encrypted to every current certificate of
the feed's stage) into ``inboxes/<stage>/<batch_id>/``. The order of the steps is what makes a
crash at any point lose nothing and deliver nothing twice:

(a) the ledger records the delivery as ``sealing`` and commits, before any file is written;
(b) every part is sealed and written (each atomically: temporary name, fsync, rename);
(c) ONE ledger transaction: the delivery becomes ``delivered``, the pull is recorded and the
    feed's watermark moves (the watermark never moves before this commit);
(d) the READY marker is written (atomically), then the ledger marks the batch ``ready``.
The stage reads only batches with READY, so before (c) nothing is visible to it, and after (c)
everything it will see is on disk.

Recovery (:func:`recover`, at the start of every run of the feed, under the feed's lock): a
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
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fundx.errors import (
    CertificateError,
    DataError,
    DeliveryLost,
    FundxError,
    HandoffPending,
    InternalError,
    SealError,
    UnknownSignerError,
    content_free,
)
from fundx.inbox import Inbox, PartFile, inbox_for, part_name
from fundx.keys import KeyPaths, KeySettings, KeyStore, common_name, init_keys
from fundx.ledger import DeliveryRecord, Ledger, night_of
from fundx.seal import Manifest, iter_parts, open_signed
from fundx.settings import Settings, get_settings
from fundx.timeutil import SHANGHAI, Window, aware, now

log = logging.getLogger("fundx.handoff")

READY_FORMAT = "fundx.ready/1"
ACK_FORMAT = "fundx.ack/1"

#: the points where a test may stop a delivery (see :func:`_test_kill_point`)
KILL_POINTS = ("after_seal", "after_write", "before_commit", "after_commit", "after_ready")


def _test_kill_point(name: str) -> None:
    """TEST ONLY: wait here to be killed when FUNDX_TEST_KILL_AT names this point.

    tests/flows/test_handoff.py runs a feed in a child process with FUNDX_TEST_KILL_AT set, reads
    this line from the child's stdout and sends it SIGKILL. Nothing else reads the variable; unset
    (always, outside that test) this function does nothing.
    """
    if os.environ.get("FUNDX_TEST_KILL_AT") != name:
        return
    print(f"fundx-test-kill-point {name}", flush=True)
    time.sleep(600)
    os._exit(97)  # never killed: fail loudly rather than carry on


def batch_id_for(feed: str, window: Window, digest: str) -> str:
    """A batch's id: feed, window (Asia/Shanghai, to the second) and the first 12 hex of its digest."""
    fmt = "%Y%m%dT%H%M%S"
    start, end = window.start.astimezone(SHANGHAI), window.end.astimezone(SHANGHAI)
    return f"{feed}-{start:{fmt}}-{end:{fmt}}-{digest.split(':', 1)[-1][:12]}"


@dataclass(frozen=True)
class Handoff:
    """What the handoff did with one pull (ids and counts only: safe to log and to return)."""

    outcome: str  # delivered | already_delivered | empty
    batch_id: str | None = None
    stage: str | None = None
    parts: int = 0
    sealed_bytes: int = 0
    attempt: int = 0


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


# --- the batch's payload -----------------------------------------------------------------------


def _table(frame: Any, feed: str) -> Any:
    """The frame as a pyarrow Table; DataError naming the column (never a value) if one will not convert."""
    import pyarrow as pa

    converting = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except converting:
        for column in frame.columns:
            try:
                pa.array(frame[column], from_pandas=True)
            except converting:
                raise DataError(
                    f"column {column} holds values of mixed types and cannot be written to Parquet", feed=feed,
                    action=f"fix the contract or the connector of {feed} so that {column} has one type",
                ) from None
        raise DataError("the batch cannot be written to Parquet", feed=feed) from None


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


def deliver(ledger: Ledger, pulled: Any, *, run_id: int, started_at: datetime, backfill: bool = False,
            keys: KeyStore | None = None, inbox: Inbox | None = None, settings: Settings | None = None,
            logger: logging.Logger | logging.LoggerAdapter | None = None) -> Handoff:
    """Hand one pull (a connectors.base.Pull) to its stage exactly once; see the module docstring.

    Records the pull and moves the watermark in every case that ends without an error. Raises
    HandoffPending if only the READY marker is missing at the end (the next run writes it).
    """
    logger = logger or log
    settings = settings or get_settings()
    feed, window = pulled.feed, pulled.window

    if pulled.rows == 0:
        ledger.record_pull(run_id, pulled, started_at=started_at, backfill=backfill)
        return Handoff("empty")

    batch_id = batch_id_for(feed, window, pulled.digest)
    existing = ledger.delivery(batch_id)
    if existing is not None and existing.status in ("delivered", "ready", "acknowledged"):
        with ledger.audited() as conn:
            ledger.record_pull(run_id, pulled, started_at=started_at, backfill=backfill, conn=conn)
            ledger.audit(conn, "batch.already_delivered", batch_id, {"status": existing.status, "run_id": run_id})
        logger.info("%s: batch %s was delivered already (%s); nothing sent again", feed, batch_id, existing.status)
        return Handoff("already_delivered", batch_id, existing.stage, existing.parts)

    from connectors import load_feed
    from contracts import load_contract

    stage = load_feed(feed).stage
    contract_version = load_contract(feed).version
    keys = keys or exchange_keys(settings, ledger, logger)
    inbox = inbox or inbox_for(settings.home)
    signer_key, signer_cert = keys.exchange_signer()
    recipients = keys.recipient_certificates(stage)
    payloads = list(iter_parts(_table(pulled.frame, feed), settings.part_bytes))
    parts = len(payloads)

    attempt = ledger.begin_delivery(  # (a)
        batch_id=batch_id, feed=feed, stage=stage, window=window, digest=pulled.digest, rows=pulled.rows,
        parts=parts, contract_version=contract_version, run_id=run_id,
    )
    committing = False
    try:
        inbox.remove(stage, batch_id)  # what an earlier, abandoned attempt may have left
        files: list[PartFile] = []
        created = now().isoformat()
        for number in range(1, parts + 1):  # (b)
            manifest = Manifest(
                batch_id=batch_id, feed=feed, window_start=window.start.astimezone(SHANGHAI).isoformat(),
                window_end=window.end.astimezone(SHANGHAI).isoformat(), part=number, parts=parts,
                rows=pulled.rows, content_digest=pulled.digest, contract_version=contract_version,
                recipient=stage, created_at=created,
            )
            files.append(inbox.write_part(stage, batch_id, part_name(number, parts), payloads[number - 1], manifest,
                                          signer_key=signer_key, signer_cert=signer_cert, recipients=recipients))
            payloads[number - 1] = b""  # sealed: let the plaintext part go
            if number == 1:
                _test_kill_point("after_seal")
        _test_kill_point("after_write")
        sealed_bytes = sum(f.bytes for f in files)
        committing = True
        with ledger.audited() as conn:  # (c) delivery + pull + watermark, one commit
            pull_id = ledger.record_pull(run_id, pulled, started_at=started_at, backfill=backfill, conn=conn)
            ledger.mark_delivered(conn, batch_id, attempt=attempt, pull_id=pull_id, sealed_bytes=sealed_bytes)
            _test_kill_point("before_commit")
    except BaseException as exc:
        if not committing:
            # Nothing the stage can see exists yet, and the watermark has not moved: undo what is on disk.
            # If the failure came from the commit itself its outcome is unknown: the next run's recovery decides.
            _abandon(ledger, inbox, stage, batch_id, exc, logger)
        raise
    _test_kill_point("after_commit")
    try:
        record = ledger.delivery(batch_id)
        if record is None:
            raise InternalError(f"batch {batch_id} vanished from the ledger after its commit")
        ready = _ready_of(record, files)  # (d)
        inbox.write_ready(stage, batch_id, ready)
        _test_kill_point("after_ready")
        ledger.mark_ready(batch_id, _sha256(ready))
    except (OSError, FundxError) as exc:
        raise HandoffPending(
            f"batch {batch_id} is delivered and recorded, but READY could not be written "
            f"({content_free(exc).kind}); the next run of {feed} writes it", feed=feed,
        ) from None
    logger.info("%s: batch %s handed to %s: %d rows in %d sealed parts, %d bytes (attempt %d)",
                feed, batch_id, stage, pulled.rows, parts, sealed_bytes, attempt)
    return Handoff("delivered", batch_id, stage, parts, sealed_bytes, attempt)


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
    for d in ledger.deliveries(feed, status=("sealing", "delivered")):
        if d.status == "sealing":  # crash before (c): the stage never saw it, the watermark never moved
            inbox.remove(d.stage, d.batch_id)
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


def plan_window(ledger: Ledger, feed: str, start: str | None, end: str | None) -> tuple[Window, bool]:
    """The window to pull: from the feed's watermark to ``end`` (default now); a given start is a backfill."""
    until = aware(end) if end else now()
    if start:
        return Window(aware(start), until), True
    since = ledger.watermark(feed) or get_settings().initial_watermark
    return Window(min(since, until), until), False


def _extract(feed: str, window: Window) -> Any:
    from connectors import connector_for

    return connector_for(feed).extract(window)


def run_feed(
    feed: str,
    *,
    run_id: int | None = None,
    start: str | None = None,
    end: str | None = None,
    ledger: Ledger | None = None,
    pull: Callable[[str, Window], Any] | None = None,
    handoff: Callable[..., Handoff] | None = None,
    logger: logging.Logger | logging.LoggerAdapter | None = None,
) -> FeedRun:
    """One feed: lock it, recover interrupted deliveries, pull its window, hand the batch to its stage.

    ``pull`` and ``handoff`` default to the plain functions; the Prefect flow passes its tasks.
    A failure is recorded in the ledger (type and content-free message) and raised as a fundx error.
    """
    logger = logger or log
    ledger = ledger or Ledger.from_settings()
    pull = pull or _extract
    handoff = handoff or deliver
    own_run = run_id is None
    if own_run:
        run_id = ledger.start_run("backfill" if start else "feed", night_of(now()))
    assert run_id is not None
    started = now()
    window: Window | None = None
    backfill = bool(start)
    try:
        with ledger.feed_lock(feed):
            recovered = recover(ledger, feed, logger=logger)
            window, backfill = plan_window(ledger, feed, start, end)
            if backfill:
                ledger.log_event("backfill.requested", feed, {"window": [window.start.isoformat(), window.end.isoformat()],
                                                              "run_id": run_id})
            logger.info("%s: pulling %s%s", feed, window, " (backfill)" if backfill else "")
            pulled = pull(feed, window)
            result = handoff(ledger, pulled, run_id=run_id, started_at=started, backfill=backfill, logger=logger)
    except BaseException as exc:
        error = content_free(exc)
        if not isinstance(error, HandoffPending):  # a pending READY was recorded as pulled already
            failed_window = window or Window(started, started)
            ledger.record_failure(run_id, feed, failed_window, error, started_at=started, backfill=backfill)
        if own_run:
            ledger.finish_run(run_id, feeds=1, failed=1, summary=f"{feed}: {error.kind}")
        logger.error("%s failed: %s — %s", feed, error.kind, error.action)
        if error is exc:
            raise
        raise error from None
    if own_run:
        ledger.finish_run(run_id, feeds=1, failed=0)
    logger.info("%s: %d rows, %d bytes, %d pages, %d retries in %.1f s, %s; %s", feed, pulled.rows, pulled.bytes,
                pulled.pages, pulled.retries, pulled.duration_s, pulled.digest, result.outcome.replace("_", " "))
    return FeedRun(feed, window, pulled.rows, pulled.bytes, pulled.pages, pulled.retries, pulled.duration_s,
                   pulled.digest, result, tuple(recovered))


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
    for stage_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        stage = stage_dir.name
        seen = ledger.acks_recorded(stage)
        for path in sorted(stage_dir.glob("*.p7s")):
            if path.name in seen:
                continue
            data = path.read_bytes()
            file_sha = _sha256(data)
            try:
                body = _verified_ack(data, path.name, stage, ca, crl)
            except (SealError, CertificateError) as refused:
                ledger.record_ack(stage=stage, file=path.name, file_sha256=file_sha, outcome="invalid", batch_id=None,
                                  reason=f"{refused.kind}: {refused}")
                logger.warning("acknowledgement %s/%s refused: %s", stage, path.name, refused.kind)
                counts["invalid"] += 1
                continue
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
