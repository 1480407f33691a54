"""A stage's store: what the rules read, kept as Parquet files encrypted with AES-256-GCM.

``FUNDX_HOME/stages/<stage>/store/<table>/<name>.enc``: one file per loaded batch (the table is the
union of its files) or one ``snapshot.enc`` for the office's nightly tables. A batch loaded part by part
(matching.load.Kept) into more than one file is a folder of files instead, ``<table>/<batch>/000001.enc``, ...
(:class:`BatchWriter`): written into ``<table>/.staging/<batch>/`` and renamed into place whole, the
rename being the one point at which the batch is in the store; each file's associated data names its batch,
its number and whether it is the last, so that a file moved, reordered or dropped does not open. Stores
written before hold one file per batch, and read as they did. The nightly purge
compacts a table's batch files into one ``compacted-<generation>.enc`` (:meth:`Store.compact`);
``<table>/index.json`` names the batches that file holds (or that were purged from it) — batch ids
and the generation, nothing of a row — so that a batch is loaded once, however it was compacted. Each file is
``FXS1 | nonce (12) | ciphertext+tag``, with the stage, table and file name as associated data, so a
file moved to another table or stage does not open. The 32-byte store key is made once and kept
wrapped (RSA-OAEP, SHA-256) to each of the stage's current encryption certificates in
``store.key``: opening the store takes the private key that opens the stage's batches. Nothing
decrypted is written to disk; DuckDB reads the tables from memory (see docs/matching.md).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fundx.core.errors import ConfigurationError, TamperedError
from fundx.core.files import fsync_dir, private_folder, write_file_atomic
from fundx.core.settings import get_settings
from fundx.crypto.keys import KeyStore
from fundx.wire.inbox import checked_name
from matching.scan import Scan, StoreFile
from matching.sql import one_per_key

MAGIC = b"FXS1"
KEY_FORMAT = "fundx-store-key/1"
SNAPSHOT = "snapshot"
COMPACTED = "compacted-"
INDEX = "index.json"
#: where a batch's files are written before the batch is renamed into its table (no batch name starts with '.')
STAGING = ".staging"
#: rows per Parquet row group of a store file (pyarrow's default): a table is read into DuckDB a row group at a
#: time (matching.scan); smaller groups made the peak larger when the rules scanned the files in every query
ROW_GROUP = 1024 * 1024
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _fingerprint(cert) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()



def _rsa_private(key: object, stage: str) -> rsa.RSAPrivateKey:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigurationError(f"stage {stage}'s private key is not RSA: its store key is wrapped with RSA-OAEP")
    return key


def _rsa_public(key: object, stage: str) -> rsa.RSAPublicKey:
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigurationError(f"a certificate of stage {stage} has no RSA key: its store key is wrapped with RSA-OAEP")
    return key


class Store:
    """One stage's encrypted tables."""

    def __init__(self, stage: str, *, home: Path | None = None, keys: KeyStore | None = None) -> None:
        self.stage = checked_name(stage, "stage")
        self.home = Path(home or get_settings().home)
        self.keys = keys or KeyStore(home=self.home)
        self.dir = self.home / "stages" / self.stage / "store"
        self._key: bytes | None = None
        self._key_lock = threading.Lock()  # the key made or unwrapped once: the load seals in a thread of its own

    # -- the key -----------------------------------------------------------------------------------

    @property
    def key_file(self) -> Path:
        return self.dir / "store.key"

    def _store_key(self) -> bytes:
        if self._key is not None:
            return self._key
        with self._key_lock:
            if self._key is None:
                self._key = self._unwrapped_or_new_key()
            return self._key

    def _unwrapped_or_new_key(self) -> bytes:
        pairs = self.keys.stage_keys(self.stage)
        if not pairs:
            raise ConfigurationError(f"stage {self.stage} has no private key, so its store cannot be opened",
                                     action="run `fundx keys init` (development) or set FUNDX_KEYS_STAGE_KEYS")
        if self.key_file.exists():
            doc = json.loads(self.key_file.read_text(encoding="utf-8"))
            wrapped = {w["cert_sha256"]: base64.b64decode(w["key"]) for w in doc.get("wrapped", [])}
            for key, cert in pairs:
                blob = wrapped.get(_fingerprint(cert))
                if blob is not None:
                    self._key = _rsa_private(key, self.stage).decrypt(blob, _OAEP)
                    self._rewrap_if_new_certificates(doc)
                    return self._key
            raise ConfigurationError(
                f"the store of stage {self.stage} is wrapped to none of its private keys ({self.key_file})",
                action="restore the stage's retired key under keys/retired, or remove the store to rebuild it from received/",
            )
        self._key = os.urandom(32)
        self._write_key_file()
        return self._key

    def _write_key_file(self) -> None:
        assert self._key is not None
        certs = self.keys.stage_certificates(self.stage)
        doc = {"format": KEY_FORMAT, "stage": self.stage,
               "wrapped": [{"cert_sha256": _fingerprint(c),
                            "key": base64.b64encode(_rsa_public(c.public_key(), self.stage).encrypt(self._key, _OAEP)).decode()}
                           for c in certs]}
        private_folder(self.dir)
        write_file_atomic(self.key_file, json.dumps(doc, indent=1).encode(), 0o600)

    def _rewrap_if_new_certificates(self, doc: dict) -> None:
        """A stage mid-rotation gets its store key wrapped to its new certificate too."""
        have = {w["cert_sha256"] for w in doc.get("wrapped", [])}
        if any(_fingerprint(c) not in have for c in self.keys.stage_certificates(self.stage)):
            self._write_key_file()

    # -- tables ------------------------------------------------------------------------------------

    def _path(self, table: str, name: str) -> Path:
        return self.dir / checked_name(table, "store table") / f"{checked_name(name, 'store file')}.enc"

    def _aad(self, table: str, name: str) -> bytes:
        return f"{self.stage}/{table}/{name}".encode()

    def write(self, table: str, name: str, data: pa.Table) -> Path:
        """Write one file of a table (atomically; replaces a file of the same name)."""
        buf = io.BytesIO()
        pq.write_table(data, buf, compression="zstd", row_group_size=ROW_GROUP)
        return self.write_plain(table, name, buf.getvalue())

    def write_plain(self, table: str, name: str, parquet: bytes) -> Path:
        """Write one file of a table from its Parquet bytes (atomically; replaces a file of the same name)."""
        path = self._path(table, name)
        private_folder(path.parent)  # 0700 from the store's own folder down, whatever the umask
        write_file_atomic(path, self._seal(parquet, self._aad(table, name)), 0o600)
        return path

    def _seal(self, plain: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        return MAGIC + nonce + AESGCM(self._store_key()).encrypt(nonce, plain, aad)

    def _open(self, data: bytes, aad: bytes, what: str) -> bytes:
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 12 + 16:
            raise TamperedError(f"store of {self.stage}: {what} is not a store file")
        nonce = data[len(MAGIC):len(MAGIC) + 12]
        try:
            return AESGCM(self._store_key()).decrypt(nonce, data[len(MAGIC) + 12:], aad)
        except Exception:  # noqa: BLE001 - InvalidTag: altered, or moved from another table, batch or stage
            raise TamperedError(f"store of {self.stage}: {what} fails its authentication tag "
                                f"(altered, or not this stage's)") from None

    def _segment_aad(self, table: str, name: str, number: int, last: bool) -> bytes:
        return f"{self.stage}/{table}/{name}/{number:06d}/{'last' if last else 'more'}".encode()

    def _batch_dir(self, table: str, name: str) -> Path:
        return self.dir / checked_name(table, "store table") / checked_name(name, "store file")

    def batch_writer(self, table: str, name: str) -> BatchWriter:
        """A batch written a file at a time (:class:`BatchWriter`): in the table once committed, never before."""
        return BatchWriter(self, checked_name(table, "store table"), checked_name(name, "store file"))

    def replace(self, table: str, data: pa.Table) -> Path:
        """Make ``data`` the whole table (the office's snapshots): one file, the others removed."""
        path = self.write(table, SNAPSHOT, data)
        for other in _entries(path.parent):
            if other != SNAPSHOT:
                _remove(path.parent, other)
        fsync_dir(path.parent)
        return path

    def has(self, table: str, name: str) -> bool:
        """Whether batch ``name`` was loaded into ``table`` (its own file, or compacted, or purged since)."""
        return (self._path(table, name).exists() or self._batch_dir(table, name).is_dir()
                or name in self._index(table)["batches"])

    def tables(self) -> list[str]:
        """The tables this store has files of."""
        return sorted(p.name for p in self.dir.iterdir() if p.is_dir()) if self.dir.is_dir() else []

    def names(self, table: str) -> list[str]:
        """The files that make up the table now: the current compacted file and the batches loaded since."""
        folder = self.dir / checked_name(table, "store table")
        if not folder.is_dir():
            return []
        index = self._index(table)
        current = _compacted_name(index["generation"]) if index["generation"] else None
        merged = set(index["batches"])
        return sorted(n for n in _entries(folder) if n == current or not (n.startswith(COMPACTED) or n in merged))

    def read_file(self, table: str, name: str) -> pa.Table:
        """One file of the table, or every file of a batch stored as several (concatenated, in order)."""
        parts = [pq.read_table(io.BytesIO(p)) for p in self._plains(table, name)]
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="default")

    def _plain(self, table: str, name: str) -> bytes:
        return self._open(self._path(table, name).read_bytes(), self._aad(table, name), f"{table}/{name}")

    def _plains(self, table: str, name: str) -> Iterator[bytes]:
        """The decrypted Parquet of a table's file, or of each file of a batch stored as several, in order, one at
        a time. TamperedError when a batch's files are not 1..n with n the one sealed as the last."""
        for plain in self._openers(table, name):
            yield plain()

    def _openers(self, table: str, name: str) -> list[Callable[[], bytes]]:
        """For a table's file, or each file of a batch stored as several, in order: what reads and decrypts it
        (each time it is called). TamperedError when a batch's files are not 1..n (from their names; the one
        sealed as the last, and each file's number, are checked as it is decrypted)."""
        folder = self._batch_dir(table, name)
        if not folder.is_dir():
            return [lambda: self._plain(table, name)]
        files = sorted(folder.glob("*.enc"))
        if [p.name for p in files] != [f"{n:06d}.enc" for n in range(1, len(files) + 1)] or not files:
            raise TamperedError(f"store of {self.stage}: {table}/{name} does not hold its files 1 to n")

        def opener(number: int, path: Path) -> Callable[[], bytes]:
            aad = self._segment_aad(table, name, number, number == len(files))
            return lambda: self._open(path.read_bytes(), aad, f"{table}/{name}/{path.name}")

        return [opener(number, path) for number, path in enumerate(files, start=1)]

    def scan(self, table: str) -> Scan | None:
        """The table for the rules to scan (matching.scan.Scan): its files, in :meth:`read_parts`' order (the
        compacted file first, then the batches in the order received), each decrypted here once for its Parquet
        footer (and a batch's first file for when it was received) and again when the rules copy it, so that one
        file's Parquet is in memory at a time. None when nothing was stored yet."""
        names = self.names(table)
        if not names:
            return None
        files: dict[str, tuple[StoreFile, ...]] = {}
        received: dict[str, str] = {}
        for name in names:
            made = []
            for plain in self._openers(table, name):
                data = plain()
                made.append(StoreFile.of(plain, data))
                if len(made) == 1:  # a batch's files share its received_at
                    received[name] = _first_received(data)
                del data
            files[name] = tuple(made)

        def order(name: str) -> tuple[int, str]:
            return (0, "") if name.startswith(COMPACTED) else (1, received[name])

        return Scan(tuple(files[n] for n in sorted(names, key=order)))

    def read(self, table: str) -> pa.Table | None:
        """The whole table (every file, concatenated), or None when nothing was stored yet."""
        parts = [self.read_file(table, n) for n in self.names(table)]
        if not parts:
            return None
        return pa.concat_tables(parts, promote_options="default")

    def read_parts(self, table: str) -> tuple[pa.Table | None, list[int]]:
        """The whole table, its compacted file first and then the batches loaded since in the order they were
        received, and the row counts of those parts (matching.rules.Inputs.parts): each part is one row per key
        (:meth:`compact` keeps the latest row per key; matching.load stores a batch one row per key). (None, [])
        when nothing was stored yet."""
        names = self.names(table)
        if not names:
            return None, []
        read = {n: self.read_file(table, n) for n in names}

        def order(name: str) -> tuple[int, str]:
            return (0, "") if name.startswith(COMPACTED) else (1, _received(read[name]))

        ordered = sorted(names, key=order)
        parts = [read[n] for n in ordered]
        return pa.concat_tables(parts, promote_options="default"), [p.num_rows for p in parts]

    # -- compaction --------------------------------------------------------------------------------

    def _index(self, table: str) -> dict:
        path = self.dir / checked_name(table, "store table") / INDEX
        if not path.is_file():
            return {"generation": 0, "batches": []}
        doc = json.loads(path.read_text(encoding="utf-8"))
        return {"generation": int(doc.get("generation", 0)), "batches": list(doc.get("batches", []))}

    def compact(self, table: str, keep: Callable[[pa.Table], pa.Table] | None = None, *,
                dry_run: bool = False) -> Compacted:
        """Merge the table's batch files into one file, keeping the rows ``keep`` returns (all, without it),
        and of a table the rules read by key (matching.sql.KEYS) only the latest row per key.

        Crash-safe: the new ``compacted-<n+1>.enc`` is written whole, then ``index.json`` (written atomically)
        makes it the table's file and names the batches it replaces, then the replaced files are removed; a
        crash before the index leaves the old files in force, one after it leaves files :meth:`names` ignores
        (removed by the next compaction). A snapshot table (the office's) is left alone.
        """
        folder = self.dir / checked_name(table, "store table")
        names = self.names(table)
        if not names or names == [SNAPSHOT]:
            return Compacted(table, len(names), len(names), 0, 0)
        index = self._index(table)
        whole = self.read(table)
        assert whole is not None
        kept = one_per_key(table, keep(whole) if keep is not None else whole)
        if len(names) == 1 and names[0].startswith(COMPACTED) and kept.num_rows == whole.num_rows:
            if not dry_run:  # compact already, nothing to drop: only what a crash left behind goes
                _sweep(folder, names[0], set(index["batches"]))
            return Compacted(table, 1, 1, whole.num_rows, whole.num_rows)
        done = Compacted(table, len(names), 1, whole.num_rows, kept.num_rows)
        if dry_run:
            return done
        generation = index["generation"] + 1
        self.write(table, _compacted_name(generation), kept)
        batches = sorted(set(index["batches"]) | {n for n in names if not n.startswith(COMPACTED)})
        write_file_atomic(folder / INDEX, json.dumps({"generation": generation, "batches": batches}).encode(), 0o600)
        _sweep(folder, _compacted_name(generation), set(batches))
        return done


@dataclass(frozen=True)
class Compacted:
    """What :meth:`Store.compact` did to a table: files and rows before and after (counts only)."""

    table: str
    files_before: int
    files_after: int
    rows_before: int
    rows_after: int


def _received(rows: pa.Table) -> str:
    """When rows were received (the earliest received_at, ISO), or "" for rows without them: the order of a
    table's batches (Store.read_parts, Store.scan)."""
    at = rows.column("received_at") if "received_at" in rows.column_names else None
    first = pc.min(at).as_py() if at is not None and len(at) else None
    return first.isoformat() if first is not None else ""


def _first_received(parquet: bytes) -> str:
    """:func:`_received` of a file's Parquet, reading its received_at column only."""
    f = pq.ParquetFile(io.BytesIO(parquet))
    columns = ["received_at"] if "received_at" in f.schema_arrow.names else []
    return _received(f.read(columns=columns))


def _sweep(folder: Path, current: str, merged: set[str]) -> None:
    """Remove the files a compaction replaced: older compacted files and the batches merged into ``current``."""
    for name in _entries(folder):
        if name != current and (name.startswith(COMPACTED) or name in merged):
            _remove(folder, name)
    fsync_dir(folder)


def _entries(folder: Path) -> set[str]:
    """The names of a table's files (``<name>.enc``) and of its batches stored as several (``<name>/``)."""
    if not folder.is_dir():
        return set()
    return ({p.name[:-4] for p in folder.glob("*.enc") if p.is_file()}
            | {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")})


def _remove(folder: Path, name: str) -> None:
    (folder / f"{name}.enc").unlink(missing_ok=True)
    if (folder / name).is_dir():
        shutil.rmtree(folder / name)


class BatchWriter:
    """One batch written to a table a file at a time (:meth:`add`: one Parquet file each, sealed as it comes, so
    only one file's bytes are in memory), then :meth:`commit`: the batch's folder renamed from the table's
    ``.staging/`` into the table — the only moment it is in the store, so a crash before leaves nothing loaded
    (the staging folder is cleared when the batch is written again) and one after leaves it whole. The last file
    is held until the next comes or the commit, to be sealed as the last; a batch of one file is stored as one
    (``<table>/<batch>.enc``, written atomically), as every batch was before."""

    def __init__(self, store: Store, table: str, name: str) -> None:
        self.store, self.table, self.name = store, table, name
        self.staging = store.dir / table / STAGING / name
        if self.staging.exists():
            shutil.rmtree(self.staging)  # what a crash left of an earlier attempt
        private_folder(self.staging)
        self.files = 0
        self._held: bytes | None = None

    def add(self, parquet: bytes) -> None:
        """One more file of the batch (Parquet bytes)."""
        if self._held is not None:
            self._write(self._held, last=False)
        self._held = parquet

    def _write(self, parquet: bytes, *, last: bool) -> None:
        self.files += 1
        aad = self.store._segment_aad(self.table, self.name, self.files, last)
        write_file_atomic(self.staging / f"{self.files:06d}.enc", self.store._seal(parquet, aad), 0o600)

    def written(self) -> Iterator[bytes]:
        """The files added so far, decrypted, one at a time (the one held included)."""
        for number in range(1, self.files + 1):
            path = self.staging / f"{number:06d}.enc"
            aad = self.store._segment_aad(self.table, self.name, number, False)
            yield self.store._open(path.read_bytes(), aad, f"{self.table}/{STAGING}/{self.name}/{path.name}")
        if self._held is not None:
            yield self._held

    def commit(self) -> Path:
        """Put the batch into its table (at least one file added): its folder renamed into place."""
        if self._held is None:
            raise ValueError(f"store batch {self.table}/{self.name}: no file to commit")
        if self.files == 0:  # a batch of one file: stored as one, <table>/<batch>.enc (written atomically)
            path = self.store.write_plain(self.table, self.name, self._held)
            self._held = None
            self.abort()
            return path
        self._write(self._held, last=True)
        self._held = None
        fsync_dir(self.staging)
        final = self.store._batch_dir(self.table, self.name)
        _remove(final.parent, self.name)  # a batch written again replaces itself
        os.rename(self.staging, final)
        fsync_dir(final.parent)
        fsync_dir(self.staging.parent)
        return final

    def abort(self) -> None:
        """Nothing of the batch kept."""
        self._held = None
        shutil.rmtree(self.staging, ignore_errors=True)


def _compacted_name(generation: int) -> str:
    return f"{COMPACTED}{generation:06d}"
