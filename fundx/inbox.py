"""Stage inboxes: where sealed batches wait for their stage, behind a small interface.

One folder per batch, ``<root>/<stage>/<batch_id>/``, holding ``part-0001-of-0003.p7m`` ... and,
once the batch is complete and recorded, ``READY`` (JSON: the batch id, the parts and the SHA-256
of each sealed file — no personal data). A stage reads only batches that have READY.

:class:`LocalInbox` is a folder under FUNDX_HOME (the embedded default). The interface is what the
handoff and the stage use, so that an object store (an fsspec URL) can take its place later:
whole-object writes that appear at once, listing, reading and removal.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fundx.errors import ConfigurationError, DataError
from fundx.keys import Certificate, PrivateKey, fsync_dir, write_file_atomic
from fundx.seal import Manifest, iter_parts, seal_to_file
from fundx.timeutil import SHANGHAI, Window

READY = "READY"
PART_SUFFIX = ".p7m"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


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
        """The batch folders of a stage, sorted (ready or not)."""

    def stages(self) -> list[str]:
        """The stages that have an inbox."""

    def remove(self, stage: str, batch_id: str) -> None:
        """Remove a batch's folder and everything in it (nothing if it is not there)."""

    def where(self, stage: str, batch_id: str | None = None) -> str:
        """Where a stage's inbox (or one batch) is, for messages."""


class LocalInbox:
    """Inboxes as folders: ``<root>/<stage>/<batch_id>/`` (folders 0700, files 0600)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, stage: str, batch_id: str | None = None) -> Path:
        folder = self.root / checked_name(stage, "stage")
        return folder if batch_id is None else folder / checked_name(batch_id, "batch")

    def write_part(self, stage: str, batch_id: str, name: str, payload: bytes, manifest: Manifest, *,
                   signer_key: PrivateKey, signer_cert: Certificate, recipients: Sequence[Certificate]) -> PartFile:
        folder = self._dir(stage, batch_id)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = folder / checked_name(name, "part")
        seal_to_file(path, payload, manifest, signer_key=signer_key, signer_cert=signer_cert, recipients=recipients)
        return PartFile(name, file_sha256(path), path.stat().st_size)

    def write_ready(self, stage: str, batch_id: str, data: bytes) -> None:
        write_file_atomic(self._dir(stage, batch_id) / READY, data, 0o600)

    def read_ready(self, stage: str, batch_id: str) -> bytes | None:
        try:
            return (self._dir(stage, batch_id) / READY).read_bytes()
        except FileNotFoundError:
            return None

    def parts(self, stage: str, batch_id: str) -> list[str]:
        folder = self._dir(stage, batch_id)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name.endswith(PART_SUFFIX)
                      and not p.name.startswith("."))

    def read_part(self, stage: str, batch_id: str, name: str) -> bytes:
        return (self._dir(stage, batch_id) / checked_name(name, "part")).read_bytes()

    def batches(self, stage: str) -> list[str]:
        folder = self._dir(stage)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and _NAME.match(p.name))

    def stages(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name))

    def remove(self, stage: str, batch_id: str) -> None:
        folder = self._dir(stage, batch_id)
        if folder.exists():
            shutil.rmtree(folder)
            fsync_dir(folder.parent)

    def where(self, stage: str, batch_id: str | None = None) -> str:
        return str(self._dir(stage, batch_id))


def file_sha256(path: Path) -> str:
    """The SHA-256 (hex) of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    """The frame as Parquet files of at most ``part_bytes`` each (see fundx.seal.iter_parts)."""
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
