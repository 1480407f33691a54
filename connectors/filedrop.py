"""The file-drop transport: CSV or xlsx files an agency drops into a folder.

A file is taken once its done-marker (``<name>.ok``) is there; its time, for windows, is the
marker's modification time. The marker's ``rows=`` and ``sha256=`` lines are checked against the
file (a mismatch means it is still being written: IncompletePull, tried again shortly). Headers are
the agency's own (physicalName in the contract) and are renamed to the contract's logical names.
Every value is handed on as text, exactly as the agency wrote it.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import logging
import zlib
from collections.abc import Iterator
from datetime import date, datetime, time
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from connectors.base import Connector, Tally, rechunk
from connectors.config import FeedConfig, FileDropConfig
from contracts import Contract
from fundx.errors import DataError, IncompletePull, NotFoundError, SourceSchemaError
from fundx.settings import Settings, resolve
from fundx.timeutil import SHANGHAI, Window

log = logging.getLogger("fundx.connectors.filedrop")

#: a file whose marker does not match is looked at again after this many seconds
RECHECK_SECONDS = 1.0

#: an xlsx workbook is refused, before any of it is parsed, if its members would unpack to more than
#: this many bytes in all, or if one member of more than XLSX_RATIO_FLOOR bytes unpacks to more than
#: XLSX_MAX_RATIO times its packed size (a zip bomb; real sheets pack 5-30 times)
XLSX_MAX_UNPACKED_BYTES = 1024 * 1024 * 1024
XLSX_MAX_RATIO = 200
XLSX_RATIO_FLOOR = 1024 * 1024

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


def cell_text(value: Any) -> str | None:
    """A spreadsheet cell as the text the agency meant: numbers as their text, dates as ISO dates."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value != "" else None
    if isinstance(value, datetime):
        if value.tzinfo is None and value.time() == time.min:
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    return str(value)


def read_marker(path: Path) -> dict[str, str]:
    """``key=value`` lines of a done-marker."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip().lower()] = value.strip()
    return values


class FileDropConnector(Connector):
    """Pulls a feed from files dropped into a folder, one file at a time."""

    transport = "filedrop"

    def __init__(self, feed: FeedConfig, contract: Contract, settings: Settings) -> None:
        super().__init__(feed, contract, settings)
        assert feed.filedrop is not None
        self.config: FileDropConfig = feed.filedrop
        self._c_parser_files: set[str] = set()  # files pyarrow refused while streaming: read with pandas' C parser

    def folder(self) -> Path:
        """The drop folder, resolved (symlinks and all)."""
        folder = Path(str(resolve(self.config.directory, setting="filedrop.directory", feed=self.name)))
        if not folder.is_dir():
            raise NotFoundError(
                f"the drop folder named by filedrop.directory does not exist ({folder.name})",
                feed=self.name,
                action=f"check filedrop.directory ({self.config.directory}) and that {self.feed.agency}'s drop is mounted",
            )
        return folder.resolve()

    def arrivals(self, window: Window) -> list[tuple[datetime, Path, Path]]:
        """Files whose done-marker arrived inside ``window``: (marker time, file, marker), oldest first."""
        folder = self.folder()
        found = []
        for path in folder.glob(self.config.pattern):
            if path.name.endswith(self.config.done_suffix):
                continue
            marker = path.with_name(path.name + self.config.done_suffix)
            if not _inside(path, folder) or not _inside(marker, folder):
                log.warning("%s: skipping %s: it points outside the drop folder", self.name, path.name)
                continue
            if not path.is_file() or not marker.is_file():
                continue
            arrived = datetime.fromtimestamp(marker.stat().st_mtime, tz=SHANGHAI)
            if window.contains(arrived):
                found.append((arrived, path, marker))
        found.sort(key=lambda item: (item[0], item[1].name))
        return found

    def _pull(self, window: Window, tally: Tally) -> pd.DataFrame:
        frames = []
        for number, (_, path, marker) in enumerate(self.arrivals(window), start=1):
            frame, size = tally.retry(partial(self._read, path, marker), what=f"file {number} ({path.name})")
            frames.append(frame)
            tally.page(len(frame), size)
        if not frames:
            return pd.DataFrame({name: [] for name in self.contract.names}, dtype=object)
        # the latest file comes last, so its rows win when a key repeats (see base.deduplicate)
        return pd.concat(frames, ignore_index=True)

    # --- streaming (fundx.stream) -----------------------------------------------------------

    streams = True  # CSV files are read block by block; a workbook is read whole, then sliced

    def chunks(self, window: Window, tally: Tally, rows: int) -> Iterator[pd.DataFrame]:
        """Each arrived file in frames of at most ``rows`` rows, oldest file first (see Connector.chunks).

        A CSV file is checked against its marker (SHA-256, then its row count as it is read) and
        decoded, parsed and renamed block by block, so memory stays bounded by ``rows`` whatever the
        file's size. A mismatch raises IncompletePull (the streamed pull starts again).
        """
        yield from rechunk(self._file_frames(window, tally, rows), rows)  # a file's tail joins the next file's rows

    def _file_frames(self, window: Window, tally: Tally, rows: int) -> Iterator[pd.DataFrame]:
        for number, (_, path, marker) in enumerate(self.arrivals(window), start=1):
            if self.config.format != "csv":
                frame, size = tally.retry(partial(self._read, path, marker), what=f"file {number} ({path.name})")
                tally.page(len(frame), size)
                for start in range(0, len(frame), rows):
                    yield frame.iloc[start:start + rows]
                continue
            yield from self._csv_chunks(path, marker, rows, tally)

    def _csv_chunks(self, path: Path, marker: Path, rows: int, tally: Tally) -> Iterator[pd.DataFrame]:
        expected = read_marker(marker)
        count, digest = expected.get("rows"), expected.get("sha256")
        if count is None or digest is None or not count.isdigit():
            raise IncompletePull(f"{path.name}: its done-marker has no rows= and sha256= lines yet",
                                 feed=self.name, retry_after=RECHECK_SECONDS)
        encoding, skip = self._scan(path, digest)
        source = _DecodingReader(path, encoding, skip, name=path.name, feed=self.name)
        seen = 0
        try:
            for frame in self._csv_frames(source, path.name, rows):
                seen += len(frame)
                tally.page(len(frame), 0)
                yield frame
        finally:
            source.close()
        tally.bytes += source.raw_bytes
        if source.sha256 != digest.lower():
            raise IncompletePull(f"{path.name}: its content changed while it was read (still being written?)",
                                 feed=self.name, retry_after=RECHECK_SECONDS)
        if seen != int(count):
            raise IncompletePull(f"{path.name}: {seen} data rows, its done-marker says {count}",
                                 feed=self.name, retry_after=RECHECK_SECONDS)

    def _scan(self, path: Path, digest: str) -> tuple[str, int]:
        """Check a file against its marker's SHA-256 and find its encoding, reading it once in blocks."""
        sha = hashlib.sha256()
        encoding, skip = (self.config.encoding, 0) if self.config.encoding != "auto" else ("", 0)
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
            if not encoding and maybe_utf8:
                try:
                    utf8.decode(b"", final=True)
                except UnicodeDecodeError:
                    maybe_utf8 = False
        if sha.hexdigest() != digest.lower():
            raise IncompletePull(
                f"{path.name}: its content does not match its done-marker's sha256 (still being written?)",
                feed=self.name, retry_after=RECHECK_SECONDS,
            )
        return (encoding or ("utf-8" if maybe_utf8 else "gb18030")), skip

    def _csv_frames(self, source: _DecodingReader, name: str, rows: int) -> Iterator[pd.DataFrame]:
        """Frames of logical columns from a decoded CSV stream (pyarrow's reader, else pandas' C parser)."""
        import pyarrow as pa
        from pyarrow import csv as pacsv

        header = source.header_names(self.config.delimiter)
        if name in self._c_parser_files:
            reader = pd.read_csv(source, engine="c", dtype=str, keep_default_na=False, sep=self.config.delimiter,
                                 chunksize=rows)
            try:
                for frame in reader:
                    frame = self._rename(frame, name)
                    yield frame.mask(frame == "")
            except (ValueError, pd.errors.ParserError) as again:
                raise DataError(f"{name} is not a well-formed CSV file ({type(again).__name__})", feed=self.name) from None
            return
        try:
            batches = pacsv.open_csv(
                source,
                read_options=pacsv.ReadOptions(block_size=1 << 22, use_threads=True),
                parse_options=pacsv.ParseOptions(delimiter=self.config.delimiter),
                convert_options=pacsv.ConvertOptions(column_types={h: pa.string() for h in header},
                                                     strings_can_be_null=False, quoted_strings_can_be_null=False),
            )
            pending: list[pd.DataFrame] = []
            held = 0
            for batch in batches:
                pending.append(batch.to_pandas())
                held += batch.num_rows
                while held >= rows:
                    whole = pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0]
                    frame, rest = whole.iloc[:rows], whole.iloc[rows:]
                    pending, held = ([rest] if len(rest) else []), len(rest)
                    yield self._strings(frame, name)
            if pending:
                yield self._strings(pd.concat(pending, ignore_index=True), name)
        except (pa.ArrowInvalid, ValueError) as exc:  # pyarrow refuses some files the C parser reads
            if isinstance(exc, DataError):
                raise
            log.info("%s: %s: pyarrow CSV reader refused the file (%s), reading it again with the C parser",
                     self.name, name, type(exc).__name__)
            self._c_parser_files.add(name)
            raise IncompletePull(f"{name}: read again with the C parser", feed=self.name, retry_after=0) from None

    def _strings(self, frame: pd.DataFrame, name: str) -> pd.DataFrame:
        frame = self._rename(frame, name)
        return frame.mask(frame == "")

    def _read(self, path: Path, marker: Path) -> tuple[pd.DataFrame, int]:
        """One complete file as a frame of logical columns, and its size; checks it against its marker."""
        expected = read_marker(marker)
        data = path.read_bytes()
        rows, digest = expected.get("rows"), expected.get("sha256")
        if rows is None or digest is None or not rows.isdigit():
            raise IncompletePull(
                f"{path.name}: its done-marker has no rows= and sha256= lines yet",
                feed=self.name, retry_after=RECHECK_SECONDS,
            )
        if hashlib.sha256(data).hexdigest() != digest.lower():
            raise IncompletePull(
                f"{path.name}: its content does not match its done-marker's sha256 (still being written?)",
                feed=self.name, retry_after=RECHECK_SECONDS,
            )
        if self.config.format == "csv":
            frame = self._csv(data, path.name)
        else:
            frame = self._xlsx(data, path.name)
        if len(frame) != int(rows):
            raise IncompletePull(
                f"{path.name}: {len(frame)} data rows, its done-marker says {rows}",
                feed=self.name, retry_after=RECHECK_SECONDS,
            )
        return frame, len(data)

    def _rename(self, frame: pd.DataFrame, name: str) -> pd.DataFrame:
        """The frame's agency headers renamed to logical names; columns the contract lacks dropped."""
        headers = [str(h).strip().lstrip("\ufeff") for h in frame.columns]
        frame.columns = headers
        self.check_columns(headers, where=name)
        mapping = {p: n for p, n in self.contract.physical_to_logical.items() if p in headers}
        return frame.loc[:, list(mapping)].rename(columns=mapping)

    def _csv(self, data: bytes, name: str) -> pd.DataFrame:
        encoding, skip = detect_encoding(data) if self.config.encoding == "auto" else (self.config.encoding, 0)
        if codecs.lookup(encoding).name == "utf-8":
            decode(data[skip:], name=name, encoding="utf-8", feed=self.name)  # strict check, reports the offset
            payload = data[skip + 3 :] if data[skip:].startswith(codecs.BOM_UTF8) else data[skip:]
        else:  # the CSV reader takes UTF-8 only
            payload = decode(data, name=name, encoding=self.config.encoding, feed=self.name).encode("utf-8")
        if b"\x00" in payload:  # never text: a binary file, or UTF-16 without its BOM; a database would refuse it later
            wide = codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))
            where = "" if wide else f" at offset {data.find(bytes(1))}"
            raise DataError(
                f"{name} holds a NUL character{where}; it is not a text CSV file",
                feed=self.name, action="ask the agency to resend the file in GB18030 or UTF-8",
            )
        options: dict[str, Any] = {"dtype": str, "keep_default_na": False, "sep": self.config.delimiter}
        try:
            frame = pd.read_csv(io.BytesIO(payload), engine="pyarrow", **options)
        except (ValueError, pd.errors.ParserError) as exc:  # pyarrow refuses some files the C parser reads
            log.info("%s: %s: pyarrow CSV reader refused the file (%s), using the C parser", self.name, name, type(exc).__name__)
            try:
                frame = pd.read_csv(io.BytesIO(payload), engine="c", **options)
            except (ValueError, pd.errors.ParserError) as again:
                raise DataError(
                    f"{name} is not a well-formed CSV file ({type(again).__name__})", feed=self.name
                ) from None
        frame = self._rename(frame, name)
        return frame.mask(frame == "")

    def _xlsx(self, data: bytes, name: str) -> pd.DataFrame:
        from xml.etree.ElementTree import ParseError
        from zipfile import BadZipFile

        from openpyxl import load_workbook
        from openpyxl.utils.exceptions import InvalidFileException

        unreadable = (BadZipFile, InvalidFileException, KeyError, OSError, ParseError, EOFError, zlib.error)
        try:
            self._check_workbook(data, name)
            book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except unreadable as exc:
            raise DataError(f"{name} is not a readable xlsx workbook ({type(exc).__name__})", feed=self.name) from None
        try:
            if self.config.sheet not in book.sheetnames:
                raise SourceSchemaError(
                    f"{name} has no sheet {self.config.sheet!r}", feed=self.name,
                    action=f"ask {self.feed.agency} about the workbook's layout, or fix filedrop.sheet",
                )
            rows = book[self.config.sheet].iter_rows(values_only=True)
            header = next(rows, None) or ()
            width = len(header)
            body = [
                [cell_text(v) for v in row[:width]] + [None] * (width - len(row))
                for row in rows
                if any(v is not None and v != "" for v in row)
            ]
        except unreadable as exc:  # the sheet is parsed while its rows are read
            raise DataError(f"{name} is not a readable xlsx workbook ({type(exc).__name__})", feed=self.name) from None
        finally:
            book.close()
        headers = ["" if h is None else str(h) for h in header]
        frame = pd.DataFrame(body, columns=headers) if body else pd.DataFrame({h: [] for h in headers}, dtype=object)
        return self._rename(frame, name)


    def _check_workbook(self, data: bytes, name: str) -> None:
        """Refuse, before parsing, a workbook that unpacks too far (a zip bomb) or whose XML declares a
        DTD (entity expansion, "billion laughs", or external entities): no xlsx needs one."""
        import zipfile

        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            unpacked = sum(m.file_size for m in members)
            if unpacked > XLSX_MAX_UNPACKED_BYTES:
                raise DataError(
                    f"{name} would unpack to {unpacked} bytes, more than {XLSX_MAX_UNPACKED_BYTES}; it was not opened",
                    feed=self.name, action="ask the agency to split the workbook, or to check what it sent",
                )
            for member in members:
                if member.file_size > XLSX_RATIO_FLOOR and member.file_size > XLSX_MAX_RATIO * max(member.compress_size, 1):
                    raise DataError(
                        f"{name}: a member unpacks {member.file_size // max(member.compress_size, 1)} times its size "
                        f"(more than {XLSX_MAX_RATIO}: a zip bomb); it was not opened",
                        feed=self.name, action="ask the agency what it sent; do not open the file by hand",
                    )
            for member in members:
                if member.filename.lower().endswith((".xml", ".rels", ".vml")) and _declares_dtd(archive, member):
                    raise DataError(
                        f"{name}: {member.filename} declares a DTD (XML entities); it was not parsed",
                        feed=self.name, action="ask the agency to save the workbook again from its spreadsheet program",
                    )


def _declares_dtd(archive: Any, member: Any) -> bool:
    """True if the XML member has a document type declaration; parsed only up to its root element."""
    import xml.parsers.expat

    class _Root(Exception):
        pass

    found = False

    def doctype(*_: object) -> None:
        nonlocal found
        found = True
        raise _Root

    def root(*_: object) -> None:
        raise _Root

    parser = xml.parsers.expat.ParserCreate()
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = doctype
    parser.StartElementHandler = root
    with archive.open(member) as stream:
        while chunk := stream.read(64 * 1024):
            try:
                parser.Parse(chunk, False)
            except _Root:
                return found
            except xml.parsers.expat.ExpatError:
                return False  # not well-formed: the workbook reader reports it
    return found


def _inside(path: Path, folder: Path) -> bool:
    """True if ``path``, with symlinks followed, stays inside ``folder``."""
    try:
        return path.resolve().is_relative_to(folder)
    except (OSError, RuntimeError):
        return False


class _DecodingReader(io.RawIOBase):
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
        self._buffer = self._buffer[self._pos:] + data
        self._pos = 0
        self._done = final
        return not final

    def readinto(self, target: Any) -> int:
        while self._pos >= len(self._buffer) and not self._done:
            self._fill()
        size = min(len(target), len(self._buffer) - self._pos)
        target[:size] = self._buffer[self._pos:self._pos + size]
        self._pos += size
        return size

    def header_names(self, delimiter: str) -> list[str]:
        """The header line's column names (read ahead, left in the stream)."""
        import csv

        while b"\n" not in self._buffer[self._pos:] and not self._done:
            self._fill()
        line = self._buffer[self._pos:].split(b"\n", 1)[0].decode("utf-8").rstrip("\r")
        return next(csv.reader([line], delimiter=delimiter), [])

    def close(self) -> None:
        if not self.closed:
            self._handle.close()
        super().close()
