"""A backup of the exchange: made (:func:`create`), proved (:func:`verify`) and read back (:func:`extract`).

One folder per backup, ``<FUNDX_BACKUP_DIR>/fundx-backup-<UTC time>-<random>/``::

    MANIFEST.json            what the backup holds: every file with its SHA-256 and size, the ledger's
                             backend, schema revision and audit head — names, digests and counts only
    manifest.p7m             the same manifest, sealed: the one a verify or restore believes
    sealed/00001-0001.p7m    each file in parts of at most 64 MiB, signed by the exchange and encrypted
    ...                      to the ``backup`` certificate only (fundx.crypto.seal: CMS AuthEnvelopedData)

Each part carries the fundx manifest (fundx.crypto.manifest) naming the backup, the part's number and
the file's digest, so a part moved to another backup, another file or another place does not open as
that. The files are: ``ledger.db`` (a consistent copy, fundx.backup.ledger_copy), the public parts of
the keys folder (CA, CRL and every certificate — no private key ever: a file holding one is refused),
and the stewards' quarantine (already sealed for the stewards, sealed once more). A backup is written
under a hidden name and renamed into place when complete: a folder without the dot is whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fundx.core.errors import ConfigurationError, FundxError, SealError
from fundx.core.files import atomic_file, fsync_dir, write_file_atomic
from fundx.core.settings import Settings, get_settings
from fundx.core.timeutil import UTC, now
from fundx.crypto.certificates import Certificate, PrivateKey
from fundx.crypto.keys import KeyStore
from fundx.crypto.manifest import Manifest, content_digest
from fundx.crypto.opening import open_sealed, recipients_among
from fundx.crypto.seal import seal_to_file

BACKUP_FORMAT = "fundx.backup/1"
#: the recipient every backup is encrypted to (fundx.crypto.pki.OFFICE_RECIPIENTS)
BACKUP = "backup"
#: a file is sealed in parts of at most this many bytes (a part is opened in memory)
PART_BYTES = 64 * 1024 * 1024
LEDGER_FILE = "ledger.db"
#: a PostgreSQL ledger's pg_dump (custom format) of the same snapshot, when pg_dump is installed
PG_DUMP_FILE = "ledger.pgdump"
PREFIX = "fundx-backup-"


class BackupError(FundxError):
    """A backup that does not open, or is not complete: what is wrong, naming the file (never content)."""

    default_action = "make a new backup with `fundx backup create`, or restore from an older one"


@dataclass(frozen=True)
class Made:
    """What :func:`create` wrote."""

    path: Path
    files: int
    bytes: int
    ledger_method: str
    audit_entries: int
    audit_head: str


def _digest_file(path: Path) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _public_key_files(keys: KeyStore) -> list[tuple[str, Path]]:
    """The keys folder's certificates and CRL (``*.pem``); a ``.pem`` holding a private key is refused."""
    folder = keys.paths.dir
    found = []
    for path in sorted(folder.rglob("*.pem")) if folder.is_dir() else ():
        if not path.is_file() or path.is_symlink():
            continue
        if b"PRIVATE KEY" in path.read_bytes():
            raise ConfigurationError(f"{path} holds a private key; a backup keeps public parts only",
                                     action="keep private keys in .key files, apart from certificates")
        found.append((f"keys/{path.relative_to(folder).as_posix()}", path))
    if not any(name == "keys/ca.pem" for name, _ in found):
        raise ConfigurationError(f"no CA certificate in {folder}", action="set FUNDX_KEYS_DIR to the exchange's keys")
    return found


def _quarantine_files(home: Path) -> list[tuple[str, Path]]:
    folder = home / "quarantine"
    return [(f"quarantine/{p.relative_to(folder).as_posix()}", p)
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()] if folder.is_dir() else []


def create(settings: Settings | None = None, keys: KeyStore | None = None) -> Made:
    """Write a sealed, consistent backup of the ledger, the keys' public parts and the quarantine."""
    from fundx.backup.ledger_copy import copy_out
    from fundx.ledger import Ledger
    from fundx.ledger.engine import backend_of
    from fundx.ledger.revision import schema_state

    settings = settings or get_settings()
    keys = keys or KeyStore(home=settings.home)
    recipients = keys.recipient_certificates(BACKUP)
    signer_key, signer_cert = keys.exchange_signer()
    root = settings.backups
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    created = now().astimezone(UTC)
    backup_id = f"{PREFIX}{created:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    work = root / f".{backup_id}"
    work.mkdir(mode=0o700)
    try:
        with tempfile.TemporaryDirectory(dir=root, prefix=".scratch-") as scratch:
            copy, native = Path(scratch) / LEDGER_FILE, Path(scratch) / PG_DUMP_FILE
            method = copy_out(settings.ledger, copy, native=native)
            copied = Ledger(f"sqlite:///{copy}", create=False)
            try:
                verdict = copied.verify_audit()
                with copied.engine.connect() as conn:
                    revision = schema_state(conn).revision
            finally:
                copied.dispose()
            sources = [(LEDGER_FILE, copy), *([(PG_DUMP_FILE, native)] if native.is_file() else []),
                       *_public_key_files(keys), *_quarantine_files(settings.home)]
            (work / "sealed").mkdir(mode=0o700)
            entries = [_seal_file(work, n, name, path, backup_id, created.isoformat(), signer_key, signer_cert,
                                  recipients) for n, (name, path) in enumerate(sources, start=1)]
        manifest = {
            "format": BACKUP_FORMAT, "backup_id": backup_id, "created_at": created.isoformat(),
            "ledger": {"backend": backend_of(settings.ledger), "method": method, "revision": revision,
                       "audit_entries": verdict.entries, "audit_head_seq": verdict.head_seq,
                       "audit_head": verdict.head_hash, "audit_ok": verdict.ok},
            "files": entries,
        }
        text = (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode()
        seal_to_file(work / "manifest.p7m", text, _part_manifest(backup_id, created.isoformat(), 1, 1, text),
                     signer_key=signer_key, signer_cert=signer_cert, recipients=recipients)
        write_file_atomic(work / "MANIFEST.json", text, 0o600)
        fsync_dir(work)
        final = root / backup_id
        os.replace(work, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in final.rglob("*") if p.is_file())
    return Made(final, len(entries), size, method, verdict.entries, verdict.head_hash)


def _part_manifest(backup_id: str, created_at: str, part: int, parts: int, whole: bytes | str) -> Manifest:
    digest = whole if isinstance(whole, str) else content_digest(whole)
    return Manifest(batch_id=backup_id, feed=BACKUP, window_start=created_at, window_end=created_at, part=part,
                    parts=parts, rows=0, content_digest=digest, contract_version=BACKUP_FORMAT, recipient=BACKUP,
                    created_at=created_at)


def _seal_file(work: Path, number: int, name: str, path: Path, backup_id: str, created_at: str,
               signer_key: PrivateKey, signer_cert: Certificate, recipients: list[Certificate]) -> dict[str, Any]:
    sha, size = _digest_file(path)  # read twice: each part's manifest names the whole file's digest
    parts = max(1, -(-size // PART_BYTES))
    sealed = []
    with path.open("rb") as handle:
        for part in range(1, parts + 1):
            payload = handle.read(PART_BYTES)
            target = work / "sealed" / f"{number:05d}-{part:04d}.p7m"
            seal_to_file(target, payload, _part_manifest(backup_id, created_at, part, parts, f"sha256:{sha}"),
                         signer_key=signer_key, signer_cert=signer_cert, recipients=recipients)
            part_sha, part_bytes = _digest_file(target)
            sealed.append({"name": target.relative_to(work).as_posix(), "sha256": part_sha, "bytes": part_bytes})
    return {"path": name, "sha256": sha, "bytes": size, "parts": sealed}


# --- reading a backup back -------------------------------------------------------------------------


def latest(settings: Settings | None = None) -> Path:
    """The newest complete backup in the backup location; BackupError when there is none."""
    root = (settings or get_settings()).backups
    found = sorted((p for p in root.glob(f"{PREFIX}*") if p.is_dir()),  # by the time in the name, then on disk
                   key=lambda p: (p.name[len(PREFIX):len(PREFIX) + 16], p.stat().st_mtime_ns)) if root.is_dir() else []
    if not found:
        raise BackupError(f"no backup in {root}", action="run `fundx backup create` (FUNDX_BACKUP_DIR says where)")
    return found[-1]


class Reader:
    """One backup opened with the backup key: its sealed manifest, and each file read back part by part."""

    def __init__(self, path: Path, keys: KeyStore | None = None):
        self.path = Path(path)
        if not (self.path / "manifest.p7m").is_file():
            raise BackupError(f"{self.path} is not a fundx backup (no manifest.p7m)")
        self.keys = keys or KeyStore()
        self.ca, self.crl = self.keys.ca(), self.keys.crl()
        pairs = self.keys.stage_keys(BACKUP)
        if not pairs:
            raise ConfigurationError("the backup key is not available",
                                     action="set FUNDX_KEYS_STAGE_KEYS {\"backup\": [...]} to the backup's private key "
                                            "(development: FUNDX_HOME/keys/stages/backup.key)")
        self.pairs = pairs
        text = self._open(self.path / "manifest.p7m", "manifest.p7m", None).payload
        self.manifest: dict[str, Any] = json.loads(text)
        if self.manifest.get("format") != BACKUP_FORMAT:
            raise BackupError(f"{self.path}: the manifest is not a {BACKUP_FORMAT} manifest")
        self.backup_id: str = self.manifest["backup_id"]
        plain = self.path / "MANIFEST.json"
        if plain.is_file() and plain.read_bytes() != text:
            raise BackupError(f"{self.path}: MANIFEST.json differs from the sealed manifest")

    def _open(self, path: Path, name: str, expect: dict[str, Any] | None) -> Any:
        if not path.is_file():
            raise BackupError(f"backup {self.path.name}: {name} is missing")
        data = path.read_bytes()
        try:
            for key, cert in self.pairs:
                if recipients_among(data, [cert]):
                    return open_sealed(data, recipient_key=key, recipient_cert=cert, trusted_ca=self.ca, crl=self.crl,
                                       expect={"recipient": BACKUP, "feed": BACKUP, **(expect or {})})
        except SealError as refused:
            raise BackupError(f"backup {self.path.name}: {name} does not open: {refused.kind}: {refused}") from None
        raise BackupError(f"backup {self.path.name}: {name} is not sealed to this backup key")

    @property
    def files(self) -> list[dict[str, Any]]:
        return list(self.manifest["files"])

    def chunks(self, entry: dict[str, Any]) -> Iterator[bytes]:
        """One file's bytes, part by part, each part's sealed file and its opening checked."""
        parts = entry["parts"]
        for number, part in enumerate(parts, start=1):
            path = self.path / part["name"]
            if path.is_file():
                sha, _ = _digest_file(path)
                if sha != part["sha256"]:
                    raise BackupError(f"backup {self.path.name}: {part['name']} ({entry['path']}) is not the file "
                                      "the manifest names (SHA-256 differs)")
            opened = self._open(path, f"{part['name']} ({entry['path']})",
                                {"batch_id": self.backup_id, "part": number, "parts": len(parts),
                                 "content_digest": f"sha256:{entry['sha256']}"})
            yield opened.payload

    def extract(self, entry: dict[str, Any], target: Path) -> None:
        """Write one file to ``target`` (0600, atomically), checking its size and SHA-256 on the way."""
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        h, size = hashlib.sha256(), 0
        with atomic_file(target, 0o600) as out:
            for chunk in self.chunks(entry):
                h.update(chunk)
                size += len(chunk)
                out.write(chunk)
            if h.hexdigest() != entry["sha256"] or size != entry["bytes"]:
                raise BackupError(f"backup {self.path.name}: {entry['path']} does not match its digest")


@dataclass(frozen=True)
class Verified:
    """A backup that opened and is complete: how many files and bytes, the ledger's audit verdict."""

    path: Path
    backup_id: str
    files: int
    bytes: int
    audit: str


def verify(path: Path | None = None, keys: KeyStore | None = None) -> Verified:
    """Prove a backup opens with the backup key and is complete: every file present, every part opens and
    names this backup, every digest matches, no sealed file the manifest does not list, and the ledger copy
    opens with its audit trail intact from its first entry to the head the manifest recorded."""
    from fundx.ledger import Ledger

    reader = Reader(path or latest(), keys)
    listed = {p["name"] for e in reader.files for p in e["parts"]}
    extra = sorted(p.relative_to(reader.path).as_posix() for p in (reader.path / "sealed").glob("*")
                   if p.relative_to(reader.path).as_posix() not in listed) if (reader.path / "sealed").is_dir() else []
    if extra:
        raise BackupError(f"backup {reader.path.name}: {len(extra)} sealed files the manifest does not list "
                          f"({', '.join(extra[:3])})")
    total, audit = 0, ""
    with tempfile.TemporaryDirectory(prefix="fundx-verify-") as scratch:
        for entry in reader.files:
            if entry["path"] == LEDGER_FILE:
                copy = Path(scratch) / LEDGER_FILE
                reader.extract(entry, copy)
                ledger = Ledger(f"sqlite:///{copy}", create=False)
                try:
                    verdict = ledger.verify_audit()
                finally:
                    ledger.dispose()
                recorded = reader.manifest["ledger"]
                if not verdict.ok:
                    raise BackupError(f"backup {reader.path.name}: the ledger copy's {verdict}")
                if (verdict.head_seq, verdict.head_hash) != (recorded["audit_head_seq"], recorded["audit_head"]):
                    raise BackupError(f"backup {reader.path.name}: the ledger copy's audit head is not the one "
                                      "the manifest recorded")
                audit = str(verdict)
            elif entry["path"] == PG_DUMP_FILE:
                dump = Path(scratch) / PG_DUMP_FILE
                reader.extract(entry, dump)
                _check_pg_dump(dump, reader.path.name)
            else:
                h = hashlib.sha256()
                for chunk in reader.chunks(entry):
                    h.update(chunk)
                if h.hexdigest() != entry["sha256"]:
                    raise BackupError(f"backup {reader.path.name}: {entry['path']} does not match its digest")
            total += entry["bytes"]
    if not audit:
        raise BackupError(f"backup {reader.path.name}: it holds no ledger")
    return Verified(reader.path, reader.backup_id, len(reader.files), total, audit)


def _check_pg_dump(dump: Path, name: str) -> None:
    """``pg_restore --list`` reads the dump's table of contents (no server needed); skipped without pg_restore."""
    import shutil
    import subprocess

    exe = shutil.which("pg_restore")
    if exe is None:
        return
    done = subprocess.run([exe, "--list", str(dump)], capture_output=True, timeout=600, check=False,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise BackupError(f"backup {name}: pg_restore cannot read {PG_DUMP_FILE}")
