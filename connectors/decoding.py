"""The text of an agency's file: its encoding, found from a byte-order mark or its bytes, and its
text decoded strictly, whole or block by block (handed on as UTF-8, the CSV reader's only input).

Agencies send GB18030 or UTF-8, with or without a BOM; UTF-16 and UTF-32 are recognised by their BOM.
Undecodable bytes, and a NUL character (a binary file, or UTF-16 without its BOM), are a DataError
naming the file and the offset, never a value.
"""

from __future__ import annotations

import codecs
import hashlib
import io
from pathlib import Path
from typing import Any

from fundx.core.errors import DataError

#: byte-order marks, longest first (UTF-32 LE starts like UTF-16 LE)
BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\x84\x31\x95\x33", "gb18030"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def detect_encoding(data: bytes) -> tuple[str, int]:
    """The encoding of a file's bytes and the length of its byte-order mark.

    A BOM wins (UTF-8, UTF-16, UTF-32, GB18030's ``84 31 95 33``); else UTF-8 if the bytes decode
    strictly as UTF-8; else GB18030. The caller decodes strictly and reports undecodable bytes.
    """
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return encoding, len(bom)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "gb18030", 0
    return "utf-8", 0


def decode(data: bytes, *, name: str, encoding: str = "auto", feed: str | None = None) -> str:
    """A file's text: ``encoding`` or auto-detected; undecodable bytes -> DataError naming file and offset."""
    skip = 0
    if encoding == "auto":
        encoding, skip = detect_encoding(data)
    try:
        text = data[skip:].decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{name} cannot be decoded as {encoding}: bad byte at offset {skip + exc.start}",
            feed=feed,
            action="ask the agency to resend the file in GB18030 or UTF-8",
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def scan(path: Path, encoding: str, *, whole: bool = True) -> tuple[str | None, str, int]:
    """A file read once, in blocks: its SHA-256 (hex), its encoding and the length of its byte-order mark.

    ``encoding`` is the feed's (``auto``: a BOM wins, else UTF-8 if the whole file decodes strictly as
    UTF-8, else GB18030, as :func:`detect_encoding` decides for bytes in memory). Not ``whole``: the
    reading stops as soon as the encoding is known (a BOM, a byte that is not UTF-8, or the feed's own
    encoding) and the SHA-256 is None unless the whole file was read to know it — the caller hashes
    the file as it decodes it (:class:`DecodingReader`).
    """
    sha = hashlib.sha256()
    encoding, skip = (encoding, 0) if encoding != "auto" else ("", 0)
    utf8 = codecs.getincrementaldecoder("utf-8")()
    maybe_utf8 = True
    with open(path, "rb") as handle:
        first = True
        for block in iter(lambda: handle.read(1 << 22), b""):
            sha.update(block)
            if first and not encoding:
                for bom, name in BOMS:
                    if block.startswith(bom):
                        encoding, skip = name, len(bom)
                        break
            first = False
            if not encoding and maybe_utf8:
                try:
                    utf8.decode(block)
                except UnicodeDecodeError:
                    maybe_utf8 = False
            if not whole and (encoding or not maybe_utf8):
                return None, (encoding or "gb18030"), skip
        if not encoding and maybe_utf8:
            try:
                utf8.decode(b"", final=True)
            except UnicodeDecodeError:
                maybe_utf8 = False
    return sha.hexdigest(), (encoding or ("utf-8" if maybe_utf8 else "gb18030")), skip


class DecodingReader(io.RawIOBase):
    """A file's bytes decoded from its encoding and handed on as UTF-8, block by block, hashed as read.

    Undecodable bytes are a DataError naming the file and the offset; a NUL character (a binary file,
    or UTF-16 without its BOM) is a DataError too — as when a whole file is read.
    """

    def __init__(self, path: Path, encoding: str, skip: int, *, name: str, feed: str) -> None:
        super().__init__()
        self._handle = open(path, "rb")  # noqa: SIM115 - closed by close(), as the io reader it is
        self._decoder = codecs.getincrementaldecoder(encoding)()
        self._encoding, self._name, self._feed = encoding, name, feed
        self._sha = hashlib.sha256()
        self._buffer = b""
        self._pos = 0  # where the next read starts in the buffer
        self._offset = 0  # raw bytes decoded so far (for error messages)
        self._done = False
        self._started = False
        self._wide = codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))
        self.raw_bytes = 0
        if skip:
            self._sha.update(self._handle.read(skip))
            self._offset = skip
            self.raw_bytes = skip

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        block = self._handle.read(1 << 22)
        final = not block
        self._sha.update(block)
        self.raw_bytes += len(block)
        try:
            text = self._decoder.decode(block, final=final)
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{self._name} cannot be decoded as {self._encoding}: bad byte at offset {self._offset + exc.start}",
                feed=self._feed, action="ask the agency to resend the file in GB18030 or UTF-8",
            ) from None
        if not self._started and text:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        data = text.encode("utf-8")
        if b"\x00" in data:
            where = "" if self._wide or bytes(1) not in block else f" at offset {self._offset + block.find(bytes(1))}"
            raise DataError(f"{self._name} holds a NUL character{where}; it is not a text CSV file", feed=self._feed,
                            action="ask the agency to resend the file in GB18030 or UTF-8")
        self._offset += len(block)
        self._buffer = self._buffer[self._pos:] + data if self._pos < len(self._buffer) else data
        self._pos = 0
        self._done = final
        return not final

    def readinto(self, target: Any) -> int:
        while self._pos >= len(self._buffer) and not self._done:
            self._fill()
        size = min(len(target), len(self._buffer) - self._pos)
        target[:size] = memoryview(self._buffer)[self._pos:self._pos + size]  # no copy of the slice first
        self._pos += size
        return size

    def first_line(self, max_bytes: int) -> bytes | None:
        """The first line's bytes (UTF-8, without its line break; read ahead, left in the stream), or None
        when it is longer than ``max_bytes``."""
        while b"\n" not in self._buffer[self._pos:] and not self._done:
            if len(self._buffer) - self._pos > max_bytes:
                return None
            self._fill()
        line = self._buffer[self._pos:].split(b"\n", 1)[0]
        if len(line) > max_bytes:
            return None
        return line

    def close(self) -> None:
        if not self.closed:
            self._handle.close()
        super().close()
