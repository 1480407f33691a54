"""Rebuilding a home from a backup (:func:`restore`) and teaching the restored ledger what happened since
(:func:`reconcile`).

A backup is older than the last nights: batches were delivered, acknowledged and quarantined after it.
Their ledger rows are lost, but not the facts: the stages' signed acknowledgements are in
``FUNDX_HOME/acks/<stage>/``, undelivered parts still in ``inboxes/``, the stewards' quarantine in
``quarantine/``, and the originals' ``batch.json`` (fundx.exchange.originals) says, for every batch the
exchange committed, its feed, window to the microsecond, rows, digest and counts per rule. Reconciling
records, for each batch the restored ledger does not know, its pull (the feed's watermark moves to the
batch's window end), its delivery (``ready`` with the READY the stage answered about, then settled by its
acknowledgement; ``ready`` from the inbox's READY; ``delivered`` when only parts are there, which the next
run's recovery completes or reports lost) and its quarantine, all audited as ``backup.reconciled``. The
next night then pulls from where the stages' knowledge ends: nothing is sent twice, nothing skipped.

A batch acknowledged by its stage without a ``batch.json`` (one made before the originals were kept, or
whose run stopped between its commit and its ``batch.json``) has its window read from its id, to the
second. A release of quarantined rows (``<batch>-r<decision>``) acknowledged since is recorded as a
delivery (no pull, no watermark); the steward's decision itself is not recoverable (docs/operations.md).
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from connectors.base import PullFigures
from fundx.backup.archive import LEDGER_FILE, Reader, verify
from fundx.backup.ledger_copy import copy_in, ledger_exists
from fundx.core.errors import CertificateError, ConfigurationError, SealError
from fundx.core.settings import prepare_home
from fundx.core.timeutil import SHANGHAI, UTC, Window, aware, now
from fundx.crypto.keys import KeyStore
from fundx.exchange import originals
from fundx.exchange.acks import record_acks
from fundx.exchange.quarantine import STEWARDS, record_rule_failures, store_for
from fundx.ledger import Ledger
from fundx.ledger.runs import night_of
from fundx.ledger.schema import deliveries, quarantines
from fundx.wire.documents import acks_root, sha256, verified_ack
from fundx.wire.inbox import inbox_for

log = logging.getLogger("fundx.backup")

_RELEASE = re.compile(r"^(?P<source>.+)-r(?P<decision>\d+)$")
_BATCH_ID = re.compile(r"^(?P<feed>[^-]+)-(?P<start>\d{8}T\d{6})-(?P<end>\d{8}T\d{6})-(?P<digest>[0-9a-f]{12})$")


@dataclass(frozen=True)
class Restored:
    """What :func:`restore` did: the files written, those kept because the home had them, the reconciliation."""

    backup_id: str
    ledger_url: str
    written: int
    kept: int
    reconciled: Reconciled


@dataclass(frozen=True)
class Reconciled:
    """What :func:`reconcile` taught the restored ledger (batch ids: no personal data)."""

    delivered: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    watermarks: dict[str, str] = field(default_factory=dict)
    acks_recorded: int = 0


def restore(path: Path, home: Path, *, ledger_url: str | None = None, force: bool = False,
            keys: KeyStore | None = None) -> Restored:
    """Rebuild ``home`` from the backup at ``path``: the ledger (SQLite at ``home/ledger.db`` unless
    ``ledger_url``), the certificates and CRL, the quarantine; then :func:`reconcile` with what the stages
    answered since. Refuses an existing ledger unless ``force``; never overwrites a certificate or a
    quarantine file the home has (it is counted as kept)."""
    keys = keys or KeyStore()
    verify(path, keys)  # every part opens and every digest matches before anything is written
    reader = Reader(path, keys)
    home = Path(home).expanduser().resolve()
    url = ledger_url or f"sqlite:///{home / LEDGER_FILE}"
    if ledger_exists(url) and not force:
        raise ConfigurationError(f"a ledger exists already at {sa.engine.make_url(url).render_as_string()}",
                                 action="restore into another --home, or pass --force to replace it")
    prepare_home(home)
    written = kept = 0
    with tempfile.TemporaryDirectory(prefix="fundx-restore-") as scratch:
        for entry in reader.files:
            if entry["path"] == LEDGER_FILE:
                copy = Path(scratch) / LEDGER_FILE
                reader.extract(entry, copy)
                copy_in(copy, url, replace=force)
                written += 1
                continue
            target = home / entry["path"]
            if not target.resolve().is_relative_to(home):
                raise ConfigurationError(f"backup {reader.path.name}: {entry['path']} points outside the home")
            if target.exists():
                kept += 1
                continue
            reader.extract(entry, target)
            written += 1
    ledger = Ledger(url)
    try:
        ledger.log_event("backup.restored", reader.backup_id, {"written": written, "kept": kept,
                                                               "created_at": reader.manifest["created_at"]})
        done = reconcile(ledger, home, keys=keys, originals_root=Path(path).resolve().parent / originals.FOLDER)
    finally:
        ledger.dispose()
    return Restored(reader.backup_id, url, written, kept, done)


def _window_from_id(batch_id: str) -> tuple[str, Window] | None:
    m = _BATCH_ID.match(batch_id)
    if m is None:
        return None
    start, end = (datetime.strptime(m[k], "%Y%m%dT%H%M%S").replace(tzinfo=SHANGHAI) for k in ("start", "end"))
    return m["feed"], Window(start, end)


def _answers(home: Path, keys: KeyStore) -> dict[str, dict[str, Any]]:
    """Every verified answer of a stage, by batch id (an acknowledgement wins over a refusal)."""
    found: dict[str, dict[str, Any]] = {}
    root = acks_root(home)
    if not root.is_dir():
        return found
    ca, crl = keys.ca(), keys.crl()
    for stage_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        for path in sorted(stage_dir.glob("*.p7s")):
            try:
                body = verified_ack(path.read_bytes(), path.name, stage_dir.name, ca, crl)
            except (SealError, CertificateError, OSError):
                continue  # proves nothing; record_acks records it as invalid
            batch_id = body.get("batch_id")
            if isinstance(batch_id, str) and (batch_id not in found or body["outcome"] == "received"):
                found[batch_id] = body
    return found


def reconcile(ledger: Ledger, home: Path, *, keys: KeyStore, originals_root: Path | None = None) -> Reconciled:
    """Record in ``ledger`` every batch committed after its backup, as the stages' answers, the inboxes, the
    quarantine and the originals show them; then record the answers. See the module docstring."""
    root = originals_root or originals.root()
    facts = originals.committed_in(root)
    answers = _answers(home, keys)
    with ledger.engine.connect() as conn:
        known = set(conn.execute(sa.select(deliveries.c.batch_id)).scalars())
        known_q = set(conn.execute(sa.select(quarantines.c.batch_id)).scalars())
    inbox = inbox_for(home)
    store = store_for(home)
    on_hold = set(store.batches(STEWARDS))
    todo: dict[str, dict[str, Any]] = {}
    for batch_id, fact in facts.items():
        if batch_id not in known and batch_id not in known_q:
            todo[batch_id] = dict(fact)
    for batch_id, answer in answers.items():
        if batch_id in known or batch_id in todo:
            continue
        release = _RELEASE.match(batch_id)
        parsed = _window_from_id(release["source"] if release else batch_id)
        if parsed is None:
            continue
        feed, window = parsed
        # a release of quarantined rows (<batch>-r<decision>) has no pull of its own: its delivery only
        todo[batch_id] = {"batch_id": batch_id, "feed": feed, "stage": answer["stage"],
                          "outcome": "released" if release else "delivered",
                          "window_start": window.start.isoformat(), "window_end": window.end.isoformat(),
                          "rows": answer.get("rows") or 0, "digest": answer.get("content_digest") or "",
                          "delivered": answer.get("rows") or 0, "quarantined": 0, "rules": {}}
    done = Reconciled()
    if not todo:
        done = Reconciled(acks_recorded=_record_answers(ledger, keys, home))
        return done
    run_id = ledger.start_run("restore", night_of(now()))
    for batch_id, fact in sorted(todo.items(), key=lambda item: (item[1]["window_end"], item[0])):
        _reconcile_one(ledger, run_id, batch_id, fact, answers.get(batch_id), inbox,
                       store.where(STEWARDS, batch_id) if batch_id in on_hold else None, done)
    ledger.finish_run(run_id, feeds=len({f["feed"] for f in todo.values()}), failed=0,
                      summary=f"reconciled {len(done.delivered)} deliveries, {len(done.quarantined)} quarantines")
    recorded = _record_answers(ledger, keys, home)
    return Reconciled(done.delivered, done.quarantined, done.watermarks, recorded)


def _record_answers(ledger: Ledger, keys: KeyStore, home: Path) -> int:
    summary = record_acks(ledger, keys=keys, root=acks_root(home))
    return summary.received + summary.refused + summary.invalid


def _reconcile_one(ledger: Ledger, run_id: int, batch_id: str, fact: dict[str, Any], answer: dict[str, Any] | None,
                   inbox: Any, quarantine_folder: str | None, done: Reconciled) -> None:
    window = Window(aware(fact["window_start"]), aware(fact["window_end"]))
    feed = fact["feed"]
    pulled = PullFigures(feed=feed, window=window, rows=int(fact.get("rows") or 0), bytes=0,
                         digest=str(fact.get("digest") or ""), pages=0, duration_s=0.0, retries=0)
    stage = fact.get("stage") or (answer or {}).get("stage")
    released = fact.get("outcome") == "released"
    delivered = fact.get("outcome") in ("delivered", "released") and stage
    status, ready_sha, parts = "delivered", None, 0
    if delivered:
        ready = inbox.read_ready(stage, batch_id)
        if answer is not None and answer.get("ready_sha256"):
            status, ready_sha, parts = "ready", answer["ready_sha256"], int(answer.get("parts") or 0)
        elif ready is not None:
            status, ready_sha = "ready", sha256(ready)
        parts = parts or len(inbox.parts(stage, batch_id))
    stamp = now()
    with ledger.audited() as conn:
        pull_id = None if released else ledger.record_pull(
            run_id, pulled, started_at=stamp, outcome="held" if fact.get("outcome") == "held" else "pulled", conn=conn)
        if delivered:
            conn.execute(deliveries.insert().values(
                batch_id=batch_id, feed=feed, stage=stage, window_start=window.start, window_end=window.end,
                digest=(answer or {}).get("content_digest") or pulled.digest, rows=int(fact.get("delivered") or 0),
                parts=parts, contract_version=fact.get("contract_version"), status=status, attempts=1,
                run_id=run_id, pull_id=pull_id, ready_sha256=ready_sha, created_at=stamp, delivered_at=stamp,
                ready_at=stamp if status == "ready" else None, updated_at=stamp,
            ))
            done.delivered.append(batch_id)
        if int(fact.get("quarantined") or 0) and quarantine_folder is not None:
            files = _sealed_files(Path(quarantine_folder))
            night = night_of(window.end)
            conn.execute(quarantines.insert().values(
                batch_id=batch_id, feed=feed, night=night, run_id=run_id, pull_id=pull_id,
                window_start=window.start, window_end=window.end, digest=pulled.digest,
                contract_version=fact.get("contract_version"), pulled=pulled.rows,
                valid=int(fact.get("valid") or 0), quarantined=int(fact["quarantined"]),
                held=fact.get("outcome") == "held", reason=fact.get("held_reason"), parts=files[0], bytes=files[1],
                created_at=stamp,
            ))
            record_rule_failures(conn, batch_id=batch_id, feed=feed, night=night, report={
                "rows": pulled.rows, "rules": [{"rule": r, "failed": n} for r, n in (fact.get("rules") or {}).items()]})
            done.quarantined.append(batch_id)
        ledger.audit(conn, "backup.reconciled", batch_id, {
            "feed": feed, "stage": stage, "status": status if delivered else fact.get("outcome"),
            "window": [window.start.astimezone(UTC).isoformat(), window.end.astimezone(UTC).isoformat()],
            "by": "acknowledgement" if answer is not None else "originals", "pull_id": pull_id,
        })
    if not released:
        done.watermarks[feed] = window.end.isoformat()


def _sealed_files(folder: Path) -> tuple[int, int]:
    """How many sealed parts, and bytes, a batch's quarantine folder holds."""
    files = [p for p in folder.glob("*.p7m") if p.is_file() and not p.is_symlink()]
    return len(files), sum(p.stat().st_size for p in files)
