"""Recovering a feed's deliveries that a crash interrupted, at the start of every run of the feed.

Under the feed's lock (no other run may be sealing it): a quarantine folder no ledger row names (the run
stopped before its commit) is removed; a ``sealing`` delivery (crash before the commit) has its folder
removed and becomes ``abandoned`` — the watermark never moved, so the run's pull covers its rows again;
a ``delivered`` one (crash between the commit and READY) gets its READY now, or — its parts gone — is
recorded ``lost`` and the run stops with DeliveryLost naming the backfill that sends it again.
See fundx.exchange.handoff for the steps this undoes or completes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fundx.core.errors import CertificateError, DeliveryLost, SealError
from fundx.core.settings import get_settings
from fundx.core.testpoints import kill_point  # TEST ONLY: the SIGKILL tests' and the chaos night's kill points
from fundx.core.timeutil import SHANGHAI
from fundx.crypto.keys import KeyStore
from fundx.exchange import quarantine
from fundx.exchange.handoff import ready_of
from fundx.ledger import Ledger
from fundx.ledger.records import DeliveryRecord
from fundx.wire.documents import acks_root, sha256, verified_ack
from fundx.wire.inbox import Inbox, PartFile, inbox_for, part_name

log = logging.getLogger("fundx.handoff")


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
            ready_sha = sha256(ready)
        elif not inbox.parts(d.stage, d.batch_id) and (taken := _stage_answer(d, keys or KeyStore(home=settings.home),
                                                                               acks_root(settings.home))):
            ready_sha = taken
        else:
            ready = ready_of(d, _parts_on_disk(ledger, inbox, d))
            inbox.write_ready(d.stage, d.batch_id, ready)
            ready_sha = sha256(ready)
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
            body = verified_ack(path.read_bytes(), path.name, d.stage, keys.ca(), keys.crl())
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
        files.append(PartFile(name, sha256(data), len(data)))
    return files
