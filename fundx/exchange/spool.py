"""The spool of a streamed run: encrypted scratch files, AES-256-GCM under a key held only in memory.

A chunk of a streamed pull, its column hashes, its checked rows and its Parquet pieces wait here between
the steps of the run (fundx.exchange.stream); nothing in it is readable without the run's key, and a
killed run's spool is removed by the next streamed run of the feed (:func:`remove_stale_spools`).
"""

from __future__ import annotations

import logging
import os
import pickle
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fundx.core.files import fsync_dir
from fundx.core.process import alive

log = logging.getLogger("fundx.stream")


@dataclass(frozen=True)
class Spool:
    """Encrypted scratch files of one streamed run: AES-256-GCM, the key only in memory.

    Each file is ``nonce || ciphertext`` with the file's name as associated data, so a file cannot
    be swapped for another. Picklable (a folder and a key) so that a worker process can read it.
    """

    folder: Path
    key: bytes = field(repr=False)

    @classmethod
    def create(cls, home: Path, feed: str) -> Spool:
        root = Path(home) / "spool"
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder = root / f"{feed}.{secrets.token_hex(6)}"
        folder.mkdir(mode=0o700)
        fd = os.open(folder / "owner", os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(str(os.getpid()))
        return cls(folder, secrets.token_bytes(32))

    def put(self, name: str, data: bytes | memoryview) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self.key).encrypt(nonce, bytes(data), name.encode())
        path = self.folder / name
        path.unlink(missing_ok=True)
        # scratch, never synced: a crash discards the spool, and the next run reads the rows again
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(nonce)
            handle.write(sealed)

    def get(self, name: str) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        data = (self.folder / name).read_bytes()
        return AESGCM(self.key).decrypt(data[:12], data[12:], name.encode())

    def put_object(self, name: str, value: Any) -> None:
        self.put(name, pickle.dumps(value, protocol=5))

    def get_object(self, name: str) -> Any:
        return pickle.loads(self.get(name))  # noqa: S301 - our own file, authenticated by AES-GCM under our key

    def remove(self, name: str) -> None:
        (self.folder / name).unlink(missing_ok=True)

    def clear(self) -> None:
        for path in self.folder.iterdir():
            if path.name != "owner":
                path.unlink(missing_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def remove_stale_spools(home: Path, feed: str) -> int:
    """Remove the spools of this feed's runs that are no longer alive (a killed run's); returns how many.

    Called under the feed's lock, so no other live run of the feed has a spool.
    """
    root = Path(home) / "spool"
    removed = 0
    for folder in root.glob(f"{feed}.*") if root.is_dir() else ():
        try:
            pid = int((folder / "owner").read_text(encoding="ascii"))
        except (OSError, ValueError):
            pid = 0
        if pid == os.getpid() or alive(pid):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    if removed:
        fsync_dir(root)
    return removed
