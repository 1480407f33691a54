"""The originals: every pulled batch's rows as the agency served them, sealed to the backup certificate.

The Zhengzhou notice on fund management (seeds/004, 四(四)) asks whoever changes electronic records to keep a
backup of the original data (做好原始数据备份). The exchange changes what it pulls — the contract's repairs
(full-width digits, dates, a lower-case x), rows it quarantines or holds back — so before any of that reaches
a stage, the pulled rows themselves are kept: ``<FUNDX_BACKUP_DIR>/originals/<batch_id>/`` holds them as
Parquet parts (the pulled frame: the agency's values, in the contract's column names, rows repeated by the key
collapsed as the connector does), each signed by the exchange and encrypted to the ``backup`` certificate only
— the exchange cannot read them back; whoever holds the backup key can (``fundx backup`` opens them).

:func:`keep` seals the parts in the handoff's step (b), before the commit; :func:`record` writes
``batch.json`` after the commit: the batch's id, feed, window (to the microsecond), rows, digest and what
became of it — ids, counts and digests only. A ``batch.json`` is the exchange's word that the batch was
committed; a restore reads them to put back the windows of batches the stages acknowledged
(:mod:`fundx.backup.reconcile`). Parts without one belong to a run that stopped before its commit: the
batch is pulled again, and its originals are written again under its id.

A streamed pull (``stream: true``) is kept chunk by chunk from its spool (one part per chunk, memory
bounded by the chunk as for the rest of its path): each chunk's job encodes its pulled rows as Parquet
while it holds them for the check (:func:`fundx.exchange.chunks.check_chunk`), so that they are not read
back from the spool and decoded a second time — unless no backup certificate is configured
(:func:`backup_certificate_expected`); a whole pull in parts of at most FUNDX_PART_BYTES.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fundx.core.errors import ConfigurationError
from fundx.core.files import write_file_atomic
from fundx.core.settings import Settings, get_settings
from fundx.core.timeutil import SHANGHAI, Window, now
from fundx.crypto.keys import KeyStore
from fundx.crypto.manifest import Manifest
from fundx.crypto.parts import iter_parts, parquet
from fundx.wire.inbox import LocalInbox, PartFile, part_name

log = logging.getLogger("fundx.handoff")

#: the recipient the originals and the backups are encrypted to (fundx.crypto.pki.OFFICE_RECIPIENTS)
BACKUP = "backup"
#: the folder of the originals under the backup location
FOLDER = "originals"
#: the committed batch's facts, beside its sealed parts
BATCH_JSON = "batch.json"
ORIGINALS_FORMAT = "fundx.original/1"


def root(settings: Settings | None = None) -> Path:
    """Where the originals are: FUNDX_BACKUP_DIR/originals (default FUNDX_HOME/backups/originals)."""
    return (settings or get_settings()).backups / FOLDER


def backup_certificate_expected(settings: Settings | None = None) -> bool:
    """Whether :func:`keep` will find a backup certificate: one configured (FUNDX_KEYS_STAGE_CERTS ``backup``, or
    a ``stages/backup*.pem`` in the key folder), or the development PKI the handoff creates on first use (no
    FUNDX_KEYS_* set, no CA yet: :func:`fundx.exchange.handoff.exchange_keys`) — a look at settings and file
    names only: no key is read, no PKI created. False lets the check's chunk jobs skip encoding the originals
    (:func:`fundx.exchange.chunks.check_chunk`); :func:`keep` encodes them itself if a certificate has come since."""
    keys = KeyStore(home=(settings or get_settings()).home)  # its key folder, as keep() finds it; nothing loaded
    if BACKUP in keys.settings.stage_certs or keys.paths.stage_certs(BACKUP):
        return True
    return not keys.settings.production and not keys.paths.ca_cert.exists()


def _store(settings: Settings | None = None) -> LocalInbox:
    return LocalInbox((settings or get_settings()).backups)


def keep(pulled: Any, batch_id: str, keys: KeyStore, *, settings: Settings | None = None,
         logger: logging.Logger | logging.LoggerAdapter | None = None,
         encoded: tuple[int, Iterator[bytes]] | None = None) -> list[PartFile]:
    """Seal the pulled rows of one batch to the backup certificate, under its id; the parts written.

    ``encoded``: how many parts and the parts, when the check encoded the pulled rows already
    (a streamed batch's chunk jobs: :meth:`fundx.exchange.spooled.SpooledBatch.original_payloads`).

    Nothing is kept (a warning says why) when no backup certificate is configured:
    a night is not stopped for its backup — ``fundx keys init`` (development) or FUNDX_KEYS_STAGE_CERTS
    ``{"backup": ...}`` (production) configures one.
    """
    logger = logger or log
    settings = settings or get_settings()
    try:
        recipients = keys.recipient_certificates(BACKUP)
    except ConfigurationError as missing:
        logger.warning("%s: the originals of batch %s are not kept: %s", pulled.feed, batch_id, missing)
        return []
    signer_key, signer_cert = keys.exchange_signer()
    store = _store(settings)
    store.remove(FOLDER, batch_id)  # an earlier run's, stopped before its commit
    count, payloads = encoded if encoded is not None else _payloads(pulled, settings.part_bytes)
    window: Window = pulled.window
    created_at = now().isoformat()
    files = []
    for number, payload in enumerate(payloads, start=1):
        manifest = Manifest(
            batch_id=batch_id, feed=pulled.feed, window_start=window.start.astimezone(SHANGHAI).isoformat(),
            window_end=window.end.astimezone(SHANGHAI).isoformat(), part=number, parts=count,
            rows=pulled.rows, content_digest=pulled.digest, contract_version="original", recipient=BACKUP,
            created_at=created_at,
        )
        files.append(store.write_part(FOLDER, batch_id, part_name(number, count), payload, manifest,
                                      signer_key=signer_key, signer_cert=signer_cert, recipients=recipients))
        del payload
    return files


def _payloads(pulled: Any, part_bytes: int) -> tuple[int, Iterator[bytes]]:
    """How many parts, and the parts: a whole pull's frame cut into Parquet parts of at most ``part_bytes``;
    a streamed pull's spooled chunks one by one (one part per chunk, its repeated rows dropped as the pull
    dropped them), so that memory holds one chunk, never the batch."""
    import pyarrow as pa

    frame = getattr(pulled, "frame", None)
    if frame is not None:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        parts = list(iter_parts(table, part_bytes))
        del table
        return len(parts), _drain(parts)
    chunks = tuple(getattr(pulled, "chunks", ()))

    def streamed() -> Iterator[bytes]:
        for chunk in chunks:
            rows = pulled.spool.get_object(chunk.name)
            if len(chunk.drop):
                rows = rows.drop(index=rows.index[chunk.drop])
            yield parquet(pa.Table.from_pandas(rows, preserve_index=False))

    return len(chunks), streamed()


def _drain(parts: list[bytes]) -> Iterator[bytes]:
    for number in range(len(parts)):
        yield parts[number]
        parts[number] = b""  # sealed: its plaintext goes


def record(pulled: Any, batch_id: str, files: list[PartFile], *, outcome: str, stage: str | None,
           delivered_rows: int, quarantined_rows: int, report: dict[str, Any], held_reason: str | None = None,
           settings: Settings | None = None) -> None:
    """After the commit: ``batch.json`` beside the batch's sealed originals (nothing when none were kept),
    with the contract check's counts (rows failing each rule; no values) that a restore records again."""
    if not files:
        return
    window: Window = pulled.window
    body = {
        "format": ORIGINALS_FORMAT, "batch_id": batch_id, "feed": pulled.feed, "stage": stage, "outcome": outcome,
        "window_start": window.start.isoformat(timespec="microseconds"),
        "window_end": window.end.isoformat(timespec="microseconds"),
        "rows": pulled.rows, "digest": pulled.digest, "delivered": delivered_rows, "quarantined": quarantined_rows,
        "valid": report.get("valid"), "contract_version": report.get("contract_version"), "held_reason": held_reason,
        "rules": {r["rule"]: r["failed"] for r in report.get("rules", ()) if r.get("failed")},
        "files": [{"name": f.name, "sha256": f.sha256, "bytes": f.bytes} for f in files],
        "recorded_at": now().isoformat(),
    }
    folder = root(settings) / batch_id
    write_file_atomic(folder / BATCH_JSON, (json.dumps(body, indent=1) + "\n").encode(), 0o600)


def committed_in(base: Path) -> dict[str, dict[str, Any]]:
    """Every committed batch's ``batch.json`` under the originals folder ``base``, by batch id (unreadable
    ones left out)."""
    found: dict[str, dict[str, Any]] = {}
    if not base.is_dir():
        return found
    for path in sorted(base.glob(f"*/{BATCH_JSON}")):
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(body, dict) and body.get("format") == ORIGINALS_FORMAT and body.get("batch_id") == path.parent.name:
            found[path.parent.name] = body
    return found
