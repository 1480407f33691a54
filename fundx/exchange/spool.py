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
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fundx.core.files import fsync_dir
from fundx.core.process import alive

log = logging.getLogger("fundx.stream")

_PIECE = 1 << 20  # bytes encrypted or decrypted at a time: AES-GCM runs fastest on pieces of about a MiB
_ALIGN = 64  # where a spooled object's buffer starts in its file's plaintext (Arrow's and NumPy's data aligned)


def _aligned(at: int) -> int:
    return -(-at // _ALIGN) * _ALIGN


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
        self._write(name, [data])

    def _write(self, name: str, pieces: list[Any]) -> None:
        """Write ``pieces`` (bytes-like) one after the other as the file ``name``: ``nonce || ciphertext || tag``,
        as AES-GCM seals their concatenation in one call, encrypted a MiB at a time (never a copy of the whole)."""
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        nonce = secrets.token_bytes(12)
        encryptor = Cipher(algorithms.AES(self.key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(name.encode())
        out = bytearray(_PIECE + 15)  # update_into needs a block's room beyond the piece
        sealed = memoryview(out)
        path = self.folder / name
        path.unlink(missing_ok=True)
        # scratch, never synced: a crash discards the spool, and the next run reads the rows again
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(nonce)
            for piece in pieces:
                view = memoryview(piece).cast("B")
                for start in range(0, len(view), _PIECE):
                    handle.write(sealed[:encryptor.update_into(view[start:start + _PIECE], out)])
            encryptor.finalize()
            handle.write(encryptor.tag)

    def get(self, name: str) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        data = (self.folder / name).read_bytes()
        return AESGCM(self.key).decrypt(data[:12], data[12:], name.encode())

    def put_object(self, name: str, value: Any) -> None:
        """Spool a picklable object: its pickle (protocol 5) and the large buffers it holds (Arrow and
        NumPy data) as they are, each at an aligned place — no copy of them is made to write them."""
        buffers: list[pickle.PickleBuffer] = []
        try:
            meta = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
            views = [b.raw() for b in buffers]
        except BufferError:  # a buffer that is not contiguous: inside the pickle, then
            meta, views = pickle.dumps(value, protocol=5), []
        head = struct.pack(f"<{len(views) + 2}Q", len(views), len(meta), *(v.nbytes for v in views))
        pieces: list[Any] = [head, meta]
        at = len(head) + len(meta)
        for view in views:
            pieces.append(bytes(_aligned(at) - at))
            pieces.append(view)
            at = _aligned(at) + view.nbytes
        self._write(name, pieces)

    def get_object(self, name: str) -> Any:
        """An object spooled by :meth:`put_object`; its buffers are the decrypted file's own memory."""
        data = self._read(name)
        count, size = struct.unpack_from("<2Q", data, 0)
        lengths = struct.unpack_from(f"<{count}Q", data, 16)
        at = 16 + 8 * count
        meta, at = data[at:at + size], at + size
        buffers = []
        for length in lengths:
            at = _aligned(at)
            buffers.append(data[at:at + length])
            at += length
        return pickle.loads(meta, buffers=buffers)  # noqa: S301 - our own file, authenticated by AES-GCM under our key

    def _read(self, name: str) -> memoryview:
        """The plaintext of the file ``name`` in memory of its own (writable), decrypted a MiB at a time;
        InvalidTag, before any of it is used, if it is not the file this spool wrote under that name."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        path = self.folder / name
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size - 12 - 16
            if size < 0:
                raise InvalidTag
            nonce = handle.read(12)
            handle.seek(12 + size)
            tag = handle.read(16)
            handle.seek(12)
            decryptor = Cipher(algorithms.AES(self.key), modes.GCM(nonce, tag)).decryptor()
            decryptor.authenticate_additional_data(name.encode())
            plain = bytearray(size + 15)  # update_into needs a block's room beyond the piece
            scratch = bytearray(_PIECE)
            done = 0
            while done < size:
                read = handle.readinto(memoryview(scratch)[:min(_PIECE, size - done)])
                if not read:
                    raise InvalidTag
                done += decryptor.update_into(memoryview(scratch)[:read], memoryview(plain)[done:])
            decryptor.finalize()  # InvalidTag unless every byte is as written
        return memoryview(plain)[:size]

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
