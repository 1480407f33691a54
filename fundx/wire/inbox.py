"""Stage inboxes: where sealed batches wait for their stage, behind a small interface.

One folder per batch, ``<root>/<stage>/<batch_id>/``, holding ``part-0001-of-0003.p7m`` ... and,
once the batch is complete and recorded, ``READY`` (JSON: the batch id, the parts and the SHA-256
of each sealed file — no personal data). A stage reads only batches that have READY.

:class:`LocalInbox` is a folder under FUNDX_HOME (the embedded default). The interface is what the
handoff and the stage use, so that an object store (an fsspec URL) can take its place later:
whole-object writes that appear at once, listing, reading and removal.

Inboxes never follow symbolic links below a stage's folder: a batch folder, part or READY that is a
link (or not a regular file) is never opened through — :class:`~fundx.core.errors.SymlinkError` instead —
so a link planted in an inbox cannot make the stage read, copy or remove what it points to.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fundx.core.errors import ConfigurationError, DataError, SymlinkError
from fundx.core.files import fsync_dir, write_file_atomic
from fundx.core.timeutil import SHANGHAI, Window
from fundx.crypto.certificates import Certificate, PrivateKey
from fundx.crypto.manifest import Manifest
from fundx.crypto.parts import iter_parts
from fundx.crypto.seal import seal_to_file

READY = "READY"
PART_SUFFIX = ".p7m"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


#: open a file for reading, never through a final symbolic link, never blocking on a FIFO
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def read_regular(name: str | Path, *, what: str, dir_fd: int | None = None) -> bytes:
    """The bytes of a regular file, opened without following a link; SymlinkError (naming ``what``)
    if it is a link or not a regular file. FileNotFoundError if it is not there."""
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SymlinkError(f"{what} is a symbolic link; it was not followed") from None
        raise
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise SymlinkError(f"{what} is not a regular file; it was not read")
        os.set_blocking(handle.fileno(), True)
        return handle.read()


def part_name(part: int, parts: int) -> str:
    """The file name of one sealed part: ``part-0001-of-0003.p7m``."""
    return f"part-{part:04d}-of-{parts:04d}{PART_SUFFIX}"


def checked_name(name: str, what: str) -> str:
    """A stage or batch name that is safe as one path segment (letters, digits, '.', '_', '-')."""
    if not _NAME.match(name) or ".." in name:
        raise ConfigurationError(f"{what} {name!r} is not a plain name (letters, digits, '.', '_', '-')")
    return name


@dataclass(frozen=True)
class PartFile:
    """A sealed part as written: its name, the SHA-256 of the file and its size."""

    name: str
    sha256: str
    bytes: int


class Inbox(Protocol):
    """Where the exchange puts sealed batches and their stage takes them."""

    def write_part(self, stage: str, batch_id: str, name: str, payload: bytes, manifest: Manifest, *,
                   signer_key: PrivateKey, signer_cert: Certificate, recipients: Sequence[Certificate]) -> PartFile:
        """Seal ``payload`` into the batch's folder; the part appears whole or not at all."""

    def write_ready(self, stage: str, batch_id: str, data: bytes) -> None:
        """Write the batch's READY marker, whole or not at all."""

    def read_ready(self, stage: str, batch_id: str) -> bytes | None:
        """The READY marker's bytes, or None if the batch is not ready."""

    def parts(self, stage: str, batch_id: str) -> list[str]:
        """The names of the sealed parts present, sorted."""

    def read_part(self, stage: str, batch_id: str, name: str) -> bytes:
        """One sealed part's bytes."""

    def batches(self, stage: str) -> list[str]:
        """The batch folders of a stage, sorted (ready or not); a symbolic link in their place is listed too,
        so that the stage can refuse it (reading through it raises SymlinkError)."""

    def links(self, stage: str, batch_id: str) -> list[str]:
        """The entries of a batch folder that are symbolic links (never followed), sorted."""

    def stages(self) -> list[str]:
        """The stages that have an inbox."""

    def remove(self, stage: str, batch_id: str) -> None:
        """Remove a batch's folder and everything in it (nothing if it is not there); a link in its place
        is removed itself, never what it points to."""

    def where(self, stage: str, batch_id: str | None = None) -> str:
        """Where a stage's inbox (or one batch) is, for messages."""


class LocalInbox:
    """Inboxes as folders: ``<root>/<stage>/<batch_id>/`` (folders 0700, files 0600).

    Below a stage's folder nothing is opened through a symbolic link: a batch folder is opened with
    O_NOFOLLOW and its files relative to it (``dir_fd``), with O_NOFOLLOW too.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, stage: str, batch_id: str | None = None) -> Path:
        folder = self.root / checked_name(stage, "stage")
        return folder if batch_id is None else folder / checked_name(batch_id, "batch")

    def _unlinked(self, stage: str, batch_id: str) -> Path:
        """The batch folder's path, SymlinkError if a link stands in its place."""
        folder = self._dir(stage, batch_id)
        if folder.is_symlink():
            raise SymlinkError(f"batch {batch_id}: its folder is a symbolic link; it was not followed")
        return folder

    def _open_batch(self, stage: str, batch_id: str) -> int:
        """A descriptor of the batch folder opened without following a link (the caller closes it)."""
        stage_fd = os.open(self._dir(stage), _DIR_FLAGS)
        try:
            try:
                return os.open(checked_name(batch_id, "batch"), _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=stage_fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    linked = stat.S_ISLNK(os.lstat(batch_id, dir_fd=stage_fd).st_mode)
                    raise SymlinkError(f"batch {batch_id}: its folder is "
                                       f"{'a symbolic link' if linked else 'not a folder'}; it was not followed") from None
                raise
        finally:
            os.close(stage_fd)

    def write_part(self, stage: str, batch_id: str, name: str, payload: bytes, manifest: Manifest, *,
                   signer_key: PrivateKey, signer_cert: Certificate, recipients: Sequence[Certificate]) -> PartFile:
        folder = self._dir(stage, batch_id)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._unlinked(stage, batch_id) / checked_name(name, "part")
        sha256 = seal_to_file(path, payload, manifest, signer_key=signer_key, signer_cert=signer_cert,
                              recipients=recipients)
        return PartFile(name, sha256, path.stat().st_size)

    def write_ready(self, stage: str, batch_id: str, data: bytes) -> None:
        write_file_atomic(self._unlinked(stage, batch_id) / READY, data, 0o600)

    def read_ready(self, stage: str, batch_id: str) -> bytes | None:
        try:
            fd = self._open_batch(stage, batch_id)
        except FileNotFoundError:
            return None
        try:
            return read_regular(READY, what=f"batch {batch_id}: READY", dir_fd=fd)
        except FileNotFoundError:
            return None
        finally:
            os.close(fd)

    def parts(self, stage: str, batch_id: str) -> list[str]:
        try:
            fd = self._open_batch(stage, batch_id)
        except FileNotFoundError:
            return []
        try:
            with os.scandir(fd) as entries:
                return sorted(e.name for e in entries if e.is_file(follow_symlinks=False)
                              and e.name.endswith(PART_SUFFIX) and not e.name.startswith("."))
        finally:
            os.close(fd)

    def links(self, stage: str, batch_id: str) -> list[str]:
        try:
            fd = self._open_batch(stage, batch_id)
        except FileNotFoundError:
            return []
        try:
            with os.scandir(fd) as entries:
                return sorted(e.name for e in entries if e.is_symlink())
        finally:
            os.close(fd)

    def read_part(self, stage: str, batch_id: str, name: str) -> bytes:
        fd = self._open_batch(stage, batch_id)
        try:
            return read_regular(checked_name(name, "part"), what=f"batch {batch_id}: {name}", dir_fd=fd)
        finally:
            os.close(fd)

    def batches(self, stage: str) -> list[str]:
        folder = self._dir(stage)
        if not folder.is_dir():
            return []
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries
                          if _NAME.match(e.name) and (e.is_dir(follow_symlinks=False) or e.is_symlink()))

    def stages(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name))

    def remove(self, stage: str, batch_id: str) -> None:
        folder = self._dir(stage, batch_id)
        if folder.is_symlink():  # the link itself goes; rmtree would refuse it, and must never reach its target
            folder.unlink()
            fsync_dir(folder.parent)
        elif folder.exists():
            shutil.rmtree(folder)  # fd-based on Linux: links inside are removed, never followed
            fsync_dir(folder.parent)

    def where(self, stage: str, batch_id: str | None = None) -> str:
        return str(self._dir(stage, batch_id))


def arrow_table(frame: Any, feed: str) -> Any:
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


def parquet_parts(frame: Any, feed: str, part_bytes: int) -> list[bytes]:
    """The frame as Parquet files of at most ``part_bytes`` each (see fundx.crypto.parts.iter_parts)."""
    return list(iter_parts(arrow_table(frame, feed), part_bytes))


def seal_parts(inbox: Inbox, stage: str, payloads: list[bytes], *, batch_id: str, feed: str, window: Window,
               digest: str, rows: int, contract_version: str, created_at: str, signer_key: PrivateKey,
               signer_cert: Certificate, recipients: Sequence[Certificate],
               after_part: Callable[[int], None] | None = None) -> list[PartFile]:
    """Seal Parquet parts into ``<stage>/<batch_id>/``, each with the batch's manifest.

    Each part is signed, encrypted to every recipient and written atomically; its plaintext is
    dropped from ``payloads`` as soon as it is sealed.
    """
    parts = len(payloads)
    files: list[PartFile] = []
    for number in range(1, parts + 1):
        manifest = Manifest(
            batch_id=batch_id, feed=feed, window_start=window.start.astimezone(SHANGHAI).isoformat(),
            window_end=window.end.astimezone(SHANGHAI).isoformat(), part=number, parts=parts, rows=rows,
            content_digest=digest, contract_version=contract_version, recipient=stage, created_at=created_at,
        )
        files.append(inbox.write_part(stage, batch_id, part_name(number, parts), payloads[number - 1], manifest,
                                      signer_key=signer_key, signer_cert=signer_cert, recipients=recipients))
        payloads[number - 1] = b""
        if after_part is not None:
            after_part(number)
    return files


def inbox_for(home: Path) -> Inbox:
    """The stage inboxes of this exchange: folders under ``home/inboxes`` (the embedded default)."""
    return LocalInbox(Path(home) / "inboxes")
