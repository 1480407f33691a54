"""The stage side of the handoff: take sealed batches from the inbox, verify them, acknowledge or refuse.

For each batch folder of the stage's inbox that has READY and was not received yet, every part is
checked before anything is kept: its SHA-256 against READY, then :func:`fundx.crypto.opening.open_sealed`
with the stage's key that the part is encrypted to (a stage mid-rotation holds several), which
verifies the GCM tag, the signature, the signer's certificate (CA, validity, CRL) and that the
manifest names this stage; the signer must be the exchange (not any certificate of the CA); the
manifests must name this batch, number the parts 1..n and agree with READY on feed, window, rows,
digest and part count; the Parquet payloads must hold exactly the rows the manifest announces. A
batch already received — under its own name or with its parts put into another folder — is a
replay.

A batch that passes is kept **still sealed** under ``FUNDX_HOME/stages/<stage>/received/<batch>/``
(no plaintext at rest; the stage's store comes later) and acknowledged; one that fails is moved
aside to ``stages/<stage>/refused/`` and refused, with the error's type and message as the reason
(never content). A symbolic link in the inbox — in place of a batch folder, a part or READY — is
never followed (:mod:`fundx.wire.inbox`): its batch is refused (SymlinkError), only its regular files are
set aside, the link itself is removed, and the receive goes on with the next batch. Either answer is
a CMS SignedData, signed with the stage's own signing certificate, over a small JSON document,
written to ``FUNDX_HOME/acks/<stage>/``; the exchange verifies and records it
(:func:`fundx.exchange.acks.record_acks`).

Receiving is crash-safe: the parts and a RECEIPT are written to a temporary folder that is renamed
into ``received/`` in one step; the acknowledgement is then written, the inbox folder removed and
a DONE marker written. A receive that was interrupted after the rename is finished by the next one.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fundx.core.errors import (
    CertificateError,
    ConfigurationError,
    ManifestError,
    ReplayError,
    SealError,
    SymlinkError,
    TamperedError,
    UnknownSignerError,
    WrongRecipientError,
)
from fundx.core.files import fsync_dir, write_file_atomic
from fundx.core.settings import get_settings
from fundx.crypto.certificates import Certificate, PrivateKey, common_name
from fundx.crypto.keys import KeyStore
from fundx.crypto.manifest import Manifest
from fundx.crypto.opening import open_sealed, recipients_among
from fundx.crypto.seal import sign
from fundx.wire.documents import ACK_FORMAT, READY_FORMAT, acks_root
from fundx.wire.inbox import Inbox, checked_name, inbox_for

log = logging.getLogger("fundx.stage")

RECEIPT = "RECEIPT.json"
DONE = "DONE"


@dataclass(frozen=True)
class Receipt:
    """What the stage did with one inbox folder (ids, counts and the reason: no content)."""

    stage: str
    folder: str
    outcome: str  # received | refused
    rows: int = 0
    parts: int = 0
    reason: str | None = None
    ack: str = ""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class _Keys:
    """What a receive needs from the key store, loaded once."""

    pairs: list[tuple[PrivateKey, Certificate]]
    ca: Certificate
    crl: Any
    exchange: Certificate


class Stage:
    """One stage's side of the handoff: its inbox, its received batches, its answers."""

    def __init__(self, name: str, *, home: Path | None = None, keys: KeyStore | None = None,
                 inbox: Inbox | None = None, acks: Path | None = None) -> None:
        self.name = checked_name(name, "stage")
        self.home = Path(home or get_settings().home)
        self.keys = keys or KeyStore(home=self.home)
        self.inbox = inbox or inbox_for(self.home)
        self.dir = self.home / "stages" / self.name
        self.received_dir = self.dir / "received"
        self.refused_dir = self.dir / "refused"
        self.tmp_dir = self.dir / "tmp"
        self.acks_dir = (acks or acks_root(self.home)) / self.name
        self._signer: tuple[PrivateKey, Certificate] | None = None

    # -- the whole inbox ---------------------------------------------------------------------------

    def receive(self) -> list[Receipt]:
        """Take every READY batch of the inbox not yet received; returns one receipt per folder handled."""
        for made in (self.received_dir, self.refused_dir, self.tmp_dir, self.acks_dir):
            made.mkdir(mode=0o700, parents=True, exist_ok=True)
        receipts = self._finish_interrupted()
        keys: _Keys | None = None
        for folder in self.inbox.batches(self.name):
            try:
                ready = self.inbox.read_ready(self.name, folder)
            except SymlinkError as linked:  # a linked folder or READY: refused unread, and the receive goes on
                receipts.append(self._refuse(folder, None, linked))
                continue
            if ready is None:
                continue  # still being written, or abandoned by the exchange: not ours to touch
            if keys is None:
                keys = _Keys(self.keys.stage_keys(self.name), self.keys.ca(), self.keys.crl(),
                             self.keys.exchange_certificate())
                if not keys.pairs:
                    raise CertificateError(f"stage {self.name} has no private key to open its parts with")
            try:
                receipts.append(self._take(folder, ready, keys))
            except (SealError, CertificateError) as refused:
                receipts.append(self._refuse(folder, ready, refused))
        return receipts

    def received(self) -> list[str]:
        """The batches this stage has received, sorted."""
        if not self.received_dir.is_dir():
            return []
        return sorted(p.name for p in self.received_dir.iterdir() if (p / DONE).exists())

    # -- one batch ---------------------------------------------------------------------------------

    def _take(self, folder: str, ready_bytes: bytes, keys: _Keys) -> Receipt:
        linked = self.inbox.links(self.name, folder)
        if linked:  # a batch holds its sealed parts and READY, never a link to anything else
            shown = ", ".join(n for n in linked[:5] if _plain(n)) or "entries with unusual names"
            raise SymlinkError(f"batch {folder}: {len(linked)} of its entries are symbolic links ({shown}); "
                               "none was followed")
        ready_sha = _sha256(ready_bytes)
        done = self.received_dir / folder / DONE
        if done.exists():
            when = json.loads((self.received_dir / folder / RECEIPT).read_text(encoding="utf-8")).get("at", "?")
            raise ReplayError(f"batch {folder} was received already, at {when}")
        ready = _parse_ready(ready_bytes, folder)
        if ready["batch_id"] != folder:
            raise ManifestError(f"folder {folder}: its READY names batch {ready['batch_id']}")
        names = [f["name"] for f in ready["files"]]
        present = self.inbox.parts(self.name, folder)
        if sorted(names) != present:
            raise ManifestError(f"batch {folder}: READY lists {len(names)} parts, the folder holds {len(present)}")

        work = self.tmp_dir / f"{folder}.{uuid.uuid4().hex[:8]}"
        work.mkdir(mode=0o700)
        try:
            first: Manifest | None = None
            rows = 0
            for number, entry in enumerate(ready["files"], start=1):
                data = self.inbox.read_part(self.name, folder, entry["name"])
                manifest, part_rows = self._open(folder, number, len(names), data, entry, keys)
                if first is None:
                    first = manifest
                    _agree(folder, manifest, ready)
                elif (manifest.feed, manifest.window_start, manifest.window_end, manifest.rows,
                      manifest.content_digest, manifest.contract_version) != (
                        first.feed, first.window_start, first.window_end, first.rows,
                        first.content_digest, first.contract_version):
                    raise ManifestError(f"batch {folder}: part {number}'s manifest disagrees with part 1's")
                rows += part_rows
                write_file_atomic(work / entry["name"], data, 0o600)
            assert first is not None
            if rows != first.rows:
                raise ManifestError(f"batch {folder}: the parts hold {rows} rows, the manifest announces {first.rows}")
            body = self._answer(folder, "received", ready_sha=ready_sha, feed=first.feed, rows=rows,
                                parts=first.parts, digest=first.content_digest)
            write_file_atomic(work / RECEIPT, json.dumps(body, indent=1).encode(), 0o600)
            work.rename(self.received_dir / folder)  # the one step that makes the batch received
            fsync_dir(self.received_dir)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        ack = self._finish(folder, body)
        log.info("stage %s received batch %s: %d rows in %d parts", self.name, folder, rows, first.parts)
        return Receipt(self.name, folder, "received", rows, first.parts, None, ack)

    def _open(self, folder: str, number: int, parts: int, data: bytes, entry: dict[str, Any],
              keys: _Keys) -> tuple[Manifest, int]:
        """Verify one sealed part; returns its manifest and the rows its Parquet payload holds."""
        if _sha256(data) != entry["sha256"]:
            raise TamperedError(f"batch {folder}: part {number}'s SHA-256 differs from READY (altered at rest or in transit)")
        mine = recipients_among(data, [cert for _, cert in keys.pairs])
        if not mine:
            raise WrongRecipientError(f"batch {folder}: part {number} is not sealed for any key of stage {self.name}")
        key = next(k for k, c in keys.pairs if c is mine[0])
        opened = open_sealed(data, recipient_key=key, recipient_cert=mine[0], trusted_ca=keys.ca, crl=keys.crl,
                             expect={"recipient": self.name})
        if opened.signer.subject != keys.exchange.subject:
            raise UnknownSignerError(
                f"batch {folder}: part {number} is signed by CN={common_name(opened.signer)!r}, not by the exchange"
            )
        manifest = opened.manifest
        assert manifest is not None  # open_sealed requires one
        if manifest.batch_id != folder:
            if _plain(manifest.batch_id) and (self.received_dir / manifest.batch_id / DONE).exists():
                raise ReplayError(f"folder {folder}: part {number} is part {manifest.part} of batch "
                                  f"{manifest.batch_id}, which was received already")
            raise ManifestError(f"folder {folder}: part {number} belongs to batch {manifest.batch_id}")
        if manifest.part != number or manifest.parts != parts:
            raise ManifestError(f"batch {folder}: file {number} holds part {manifest.part} of {manifest.parts}")
        return manifest, _parquet_rows(opened.payload, folder, number)

    # -- answers -----------------------------------------------------------------------------------

    def _answer(self, folder: str, outcome: str, *, ready_sha: str | None, feed: str | None = None, rows: int = 0,
                parts: int = 0, digest: str | None = None, reason: str | None = None) -> dict[str, Any]:
        return {
            "format": ACK_FORMAT, "stage": self.name, "batch_id": folder, "outcome": outcome, "feed": feed,
            "rows": rows, "parts": parts, "content_digest": digest, "ready_sha256": ready_sha, "reason": reason,
            "at": _utc_now().isoformat(),
        }

    def _signed(self, body: dict[str, Any]) -> bytes:
        if self._signer is None:
            self._signer = self.keys.stage_signer(self.name)
        key, cert = self._signer
        return sign(json.dumps(body, sort_keys=True, ensure_ascii=False).encode(), signer_key=key, signer_cert=cert)

    def _finish(self, folder: str, body: dict[str, Any]) -> str:
        """After the rename into received/: acknowledge, clear the inbox folder, mark DONE (idempotent)."""
        name = f"{folder}.received.p7s"
        ack = self.acks_dir / name
        if not ack.exists():
            write_file_atomic(ack, self._signed(body), 0o600)
        try:
            ready = self.inbox.read_ready(self.name, folder)
        except SymlinkError:
            ready = None  # READY swapped for a link since: the next receive refuses the folder
        if ready is not None and _sha256(ready) == body["ready_sha256"]:
            self.inbox.remove(self.name, folder)  # the very delivery received: nothing of it stays behind
        write_file_atomic(self.received_dir / folder / DONE, b"", 0o600)
        return name

    def _finish_interrupted(self) -> list[Receipt]:
        receipts = []
        for folder in sorted(p for p in self.received_dir.iterdir() if p.is_dir()):
            if (folder / DONE).exists():
                continue
            body = json.loads((folder / RECEIPT).read_text(encoding="utf-8"))
            ack = self._finish(folder.name, body)
            log.warning("stage %s: finished receiving batch %s (interrupted before)", self.name, folder.name)
            receipts.append(Receipt(self.name, folder.name, "received", body["rows"], body["parts"], None, ack))
        for leftover in self.tmp_dir.iterdir():  # a receive that died before its rename
            shutil.rmtree(leftover, ignore_errors=True)
        return receipts

    def _refuse(self, folder: str, ready_bytes: bytes | None, error: SealError | CertificateError) -> Receipt:
        """Set the folder aside (still sealed) and write a signed refusal naming the error; nothing is received.

        ``ready_bytes`` is None when READY could not be read (a link). Only regular files are set aside:
        a link, or a folder that is one, is never followed, so nothing it points to is copied.
        """
        stamp = _utc_now().strftime("%Y%m%dT%H%M%S%fZ")
        aside = self.refused_dir / f"{folder}.{stamp}"
        aside.mkdir(mode=0o700, parents=True)
        try:
            names = self.inbox.parts(self.name, folder)
        except SymlinkError:
            names = []  # the folder itself is a link
        for name in names:
            try:
                data = self.inbox.read_part(self.name, folder, name)
            except SymlinkError:
                continue  # swapped for a link since it was listed
            write_file_atomic(aside / name, data, 0o600)
        if ready_bytes is not None:
            write_file_atomic(aside / "READY", ready_bytes, 0o600)
        reason = f"{error.kind}: {error}"
        body = self._answer(folder, "refused", ready_sha=_sha256(ready_bytes) if ready_bytes is not None else None,
                            reason=reason, feed=_claimed_feed(ready_bytes) if ready_bytes is not None else None)
        name = f"{folder}.refused.{stamp}.p7s"
        write_file_atomic(self.acks_dir / name, self._signed(body), 0o600)
        self.inbox.remove(self.name, folder)  # after the answer: an emptied folder always has one
        log.warning("stage %s refused batch %s: %s", self.name, folder, error.kind)
        return Receipt(self.name, folder, "refused", reason=reason, ack=name)


def _parse_ready(data: bytes, folder: str) -> dict[str, Any]:
    """READY as written by the handoff; ManifestError if it is anything else."""
    try:
        ready = json.loads(data)
    except ValueError:
        raise ManifestError(f"batch {folder}: READY is not JSON") from None
    files = ready.get("files") if isinstance(ready, dict) else None
    if (not isinstance(ready, dict) or ready.get("format") != READY_FORMAT or not isinstance(files, list) or not files
            or not isinstance(ready.get("batch_id"), str) or ready.get("parts") != len(files)
            or not all(isinstance(f, dict) and isinstance(f.get("name"), str) and isinstance(f.get("sha256"), str)
                       for f in files)):
        raise ManifestError(f"batch {folder}: READY is not a {READY_FORMAT} document")
    for f in files:
        try:
            checked_name(f["name"], "part")
        except ConfigurationError:
            raise ManifestError(f"batch {folder}: READY names a part file that is not a plain name") from None
    return ready


def _plain(name: str) -> bool:
    try:
        checked_name(name, "batch")
    except ConfigurationError:
        return False
    return True


def _claimed_feed(ready_bytes: bytes) -> str | None:
    """The feed READY names, if it is readable (unverified: used only to count refusals per feed)."""
    try:
        feed = json.loads(ready_bytes).get("feed")
    except (ValueError, AttributeError):
        return None
    return feed if isinstance(feed, str) and len(feed) <= 128 else None


def _agree(folder: str, manifest: Manifest, ready: dict[str, Any]) -> None:
    """The signed manifest and the (unsigned) READY say the same about the batch."""
    for field, value in (("feed", manifest.feed), ("rows", manifest.rows), ("parts", manifest.parts),
                         ("content_digest", manifest.content_digest), ("window_start", manifest.window_start),
                         ("window_end", manifest.window_end), ("stage", manifest.recipient)):
        if ready.get(field) != value:
            raise ManifestError(f"batch {folder}: READY's {field} differs from the signed manifest's")


def _parquet_rows(payload: bytes, folder: str, number: int) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(io.BytesIO(payload)).metadata.num_rows
    except (pa.ArrowException, OSError):
        raise ManifestError(f"batch {folder}: part {number} is not a readable Parquet file") from None


def stages_with_inboxes(home: Path | None = None) -> list[str]:
    """Every stage a feed delivers to, and every stage that has an inbox folder."""
    from connectors import feed_names, load_feed

    named = {load_feed(f).stage for f in feed_names()}
    return sorted(named | set(inbox_for(Path(home or get_settings().home)).stages()))
