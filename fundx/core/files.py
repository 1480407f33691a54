"""Files that are private and whole: folders made 0700, files written atomically with their mode from the start.

Everything fundx keeps under FUNDX_HOME is the owner's only (sealed parts, keys, READY markers, the
stages' receipts, scorecards...). A file is created with its final mode by ``os.open``, written under a
temporary name, fsynced and renamed into place, and the rename made durable by fsyncing the folder: a
reader, or a process after a crash, sees the old file or the whole new one, never a part of it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def private_folder(path: Path) -> Path:
    """``path``, with every missing folder on the way made 0700 whatever the umask (``mkdir(parents=True)``
    gives the parents it makes the umask's mode); folders that exist are left as they are."""
    missing: list[Path] = []
    at = path
    while not at.is_dir() and at.parent != at:
        missing.append(at)
        at = at.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            if not folder.is_dir():
                raise
    return path


@contextmanager
def atomic_file(path: Path, mode: int) -> Iterator[BinaryIO]:
    """A file written under a temporary name created with ``mode``, then fsynced and renamed into place.

    The mode is given to ``os.open`` so that a private key or a sealed part is never readable by
    others, not even for a moment; a reader sees the old file or the whole new one.
    """
    private_folder(path.parent)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_file_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically with ``mode`` (see :func:`atomic_file`)."""
    with atomic_file(path, mode) as handle:
        handle.write(data)


def fsync_dir(folder: Path) -> None:
    """Make a rename or removal in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
