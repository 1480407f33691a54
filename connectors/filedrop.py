"""The file-drop transport: CSV or xlsx files an agency drops into a folder.

A file is taken once its done-marker (``<name>.ok``) is there; its time, for windows, is the
marker's modification time. The marker's ``rows=`` and ``sha256=`` lines are checked against the
file (a mismatch means it is still being written: IncompletePull, tried again shortly). Headers are
the agency's own (physicalName in the contract) and are renamed to the contract's logical names;
only the contract's columns are read. Every value is handed on as text, exactly as the agency wrote it.

A CSV row with more or fewer fields than its header is never read into the columns (a trailing comma
would shift every value one column left): it stays in its place as a row marked ``row_shape`` with its
row number (:data:`fundx.core.digest.DEFECT`) and its text kept sealed (:data:`fundx.core.digest.RAW`), and the
contract's check quarantines it for the stewards. A file is refused, naming the limit, when its header
has more columns than FUNDX_FILE_MAX_COLUMNS, a value is longer than FUNDX_FILE_MAX_CELL_CHARS, or a
file read whole holds more cells than FUNDX_FILE_MAX_CELLS (a streamed feed reads any size in chunks).
"""

from __future__ import annotations

import codecs
import hashlib
import io
import logging
from collections.abc import Iterator
from datetime import date, datetime, time
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from connectors.base import Connector, Tally, rechunk
from connectors.config import FeedConfig, FileDropConfig
from contracts import Contract
from contracts.rules import ROW_SHAPE
from fundx.core.digest import ARRIVAL, DEFECT, RAW
from fundx.core.errors import DataError, IncompletePull, NotFoundError, SourceSchemaError
from fundx.core.settings import Settings, resolve
from fundx.core.timeutil import SHANGHAI, Window

log = logging.getLogger("fundx.connectors.filedrop")

#: a file whose marker does not match is looked at again after this many seconds
RECHECK_SECONDS = 1.0

#: an xlsx workbook is refused, before any of it is parsed, if its members would unpack to more than
#: this many bytes in all, or if one member of more than XLSX_RATIO_FLOOR bytes unpacks to more than
#: XLSX_MAX_RATIO times its packed size (a zip bomb; real sheets pack 5-30 times)
XLSX_MAX_UNPACKED_BYTES = 1024 * 1024 * 1024
XLSX_MAX_RATIO = 200
XLSX_RATIO_FLOOR = 1024 * 1024

#: a header line longer than this, in bytes, is refused before it is parsed (no real header comes near it)
MAX_HEADER_BYTES = 1024 * 1024
#: characters of a malformed row's text kept, sealed, for the stewards' record
MAX_RAW_CHARS = 4096

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
        # files with a malformed row read on several threads (which do not number rows): read on one
        self._numbered_files: set[str] = set()

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
            frames.append(frame.assign(**{ARRIVAL: number}))  # a later file is the agency's later word
            tally.page(len(frame), size)
        if not frames:
            return pd.DataFrame({name: [] for name in self.contract.names}, dtype=object)
        # the latest file comes last, so its rows win when a key repeats (see base.deduplicate)
        return pd.concat(frames, ignore_index=True)

    # --- streaming (fundx.exchange.stream) -----------------------------------------------------------

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
                frame = frame.assign(**{ARRIVAL: number})
                for start in range(0, len(frame), rows):
                    yield frame.iloc[start:start + rows]
                continue
            for frame in self._csv_chunks(path, marker, rows, tally):
                yield frame.assign(**{ARRIVAL: number})

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
        """Frames of logical columns from a decoded CSV stream, malformed rows marked in their places."""
        import pyarrow as pa

        header = self._header(source.header_names(self.config.delimiter, MAX_HEADER_BYTES), name)
        numbered = name in self._numbered_files
        malformed = _Malformed()
        try:
            batches = self._arrow_csv(pa, source, header, malformed, threads=not numbered, stream=True)
            pending: list[pd.DataFrame] = []
            held = good = seen = 0
            for batch in batches:
                self._check_cells(batch, name)
                bad = malformed.take()
                if bad and not numbered and bad[0][0] is None:
                    self._numbered_files.add(name)  # only a single-threaded read numbers its rows
                    raise IncompletePull(f"{name}: a malformed row, read again to number it",
                                         feed=self.name, retry_after=0)
                frame = _place(self._strings(batch.to_pandas(), name), bad, good, seen, name)
                good, seen = good + batch.num_rows, seen + len(bad)
                pending.append(frame)
                held += len(frame)
                while held >= rows:
                    whole = pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0]
                    frame, rest = whole.iloc[:rows], whole.iloc[rows:]
                    pending, held = ([rest] if len(rest) else []), len(rest)
                    yield frame
            if bad := malformed.take():  # malformed rows after the last well-formed one
                pending.append(_place(self._strings(_no_rows(header, self.contract), name), bad, good, seen, name))
            if pending:
                yield pd.concat(pending, ignore_index=True)
        except (pa.ArrowInvalid, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise self._unreadable(name, exc) from None

    def _header(self, names: list[str], name: str) -> list[str]:
        """A CSV file's header, checked: not wider than FUNDX_FILE_MAX_COLUMNS, no contract column twice."""
        limit = self.settings.file_max_columns
        if len(names) > limit:
            raise DataError(
                f"{name}: its header has {len(names):,} columns, more than FUNDX_FILE_MAX_COLUMNS={limit:,}; "
                "the file was not read", feed=self.name,
                action=f"ask {self.feed.agency} what it sent (the contract has {len(self.contract.columns)} columns), "
                       "or raise FUNDX_FILE_MAX_COLUMNS",
            )
        cleaned = [h.strip().lstrip("\ufeff") for h in names]
        twice = sorted({h for h in cleaned if cleaned.count(h) > 1 and h in self.contract.physical_to_logical})
        if twice:
            raise DataError(f"{name}: its header names the column(s) {', '.join(twice)} more than once",
                            feed=self.name, action=f"ask {self.feed.agency} which column is meant and to resend the file")
        return names

    def _arrow_csv(self, pa: Any, source: Any, header: list[str], malformed: _Malformed, *, threads: bool,
                   stream: bool) -> Any:
        """pyarrow's CSV reader over ``source``: every value text, only the contract's columns, rows with
        the wrong number of fields handed to ``malformed`` (skipped here, placed back by :func:`_place`)."""
        from pyarrow import csv as pacsv

        wanted = {h for h in header if h.strip().lstrip("\ufeff") in self.contract.physical_to_logical}
        options = dict(
            read_options=pacsv.ReadOptions(block_size=1 << 22, use_threads=threads),
            parse_options=pacsv.ParseOptions(delimiter=self.config.delimiter, newlines_in_values=True,
                                             invalid_row_handler=malformed),
            convert_options=pacsv.ConvertOptions(column_types={h: pa.string() for h in header},
                                                 include_columns=[h for h in header if h in wanted],
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
        return pacsv.open_csv(source, **options) if stream else pacsv.read_csv(source, **options)

    def _check_cells(self, table: Any, name: str) -> None:
        """DataError if a value is longer than FUNDX_FILE_MAX_CELL_CHARS (Excel's own limit by default)."""
        import pyarrow.compute as pc

        limit = self.settings.file_max_cell_chars
        for column, values in zip(table.schema.names, table.columns):
            longest = pc.max(pc.utf8_length(values)).as_py() if len(values) else None
            if longest is not None and longest > limit:
                raise DataError(
                    f"{name}: a value of column {column.strip()} is {longest:,} characters long, more than "
                    f"FUNDX_FILE_MAX_CELL_CHARS={limit:,}; the file was not read", feed=self.name,
                    action=f"ask {self.feed.agency} what it sent, or raise FUNDX_FILE_MAX_CELL_CHARS",
                )

    def _unreadable(self, name: str, exc: BaseException) -> DataError:
        # pyarrow's message may quote the row: only its kind is said
        return DataError(f"{name} is not a well-formed CSV file ({type(exc).__name__}: an unterminated quote, "
                         "or bytes that are not text)", feed=self.name,
                         action=f"ask {self.feed.agency} to export the file again")

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
        import pyarrow as pa

        first = payload[:MAX_HEADER_BYTES + 1].split(b"\n", 1)
        if len(first) == 1 and len(payload) > MAX_HEADER_BYTES:
            raise _header_too_long(name, self.name)
        header = self._header(_header_names(first[0], self.config.delimiter), name)
        cells = payload.count(b"\n") * max(len(header), 1)  # known before a byte is parsed (and held)
        if cells > self.settings.file_max_cells:
            raise _too_many_cells(name, self.name, cells, self.settings.file_max_cells)
        for threads in (True, False):  # a malformed row read on several threads has no number: read on one
            malformed = _Malformed()
            try:
                table = self._arrow_csv(pa, io.BytesIO(payload), header, malformed, threads=threads, stream=False)
            except (pa.ArrowInvalid, ValueError) as exc:
                raise self._unreadable(name, exc) from None
            if malformed.numbered():
                break
        self._check_cells(table, name)
        return _place(self._strings(table.to_pandas(), name), malformed.take(), 0, 0, name)

    def _xlsx(self, data: bytes, name: str) -> pd.DataFrame:
        """A workbook's sheet in logical columns: only the contract's columns, found by the header row.

        The sheet's declared size (its ``<dimension>``) is not believed: a sheet that declares 16,384
        columns would otherwise have every row padded to that width. The header may not be wider than
        FUNDX_FILE_MAX_COLUMNS, the cells read not more than FUNDX_FILE_MAX_CELLS, a value not longer
        than FUNDX_FILE_MAX_CELL_CHARS (Excel's own limit); anything the workbook reader cannot take is
        the agency's bad file (DataError), never an internal error.
        """
        from openpyxl import load_workbook

        settings = self.settings
        try:
            self._check_workbook(data, name)
            book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except (DataError, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the reader raises on these bytes, the file is at fault
            raise self._not_a_workbook(name, exc) from None
        try:
            if self.config.sheet not in book.sheetnames:
                raise SourceSchemaError(
                    f"{name} has no sheet {self.config.sheet!r}", feed=self.name,
                    action=f"ask {self.feed.agency} about the workbook's layout, or fix filedrop.sheet",
                )
            sheet = book[self.config.sheet]
            sheet.reset_dimensions()  # the declared size is the file's claim, not its content
            rows = sheet.iter_rows(values_only=True)
            header = list(next(rows, ()))
            while header and header[-1] in (None, ""):
                header.pop()
            headers = self._header(["" if h is None else str(h) for h in header], name)
            wanted = [i for i, h in enumerate(headers) if h.strip().lstrip("\ufeff") in self.contract.physical_to_logical]
            body: list[list[str | None]] = []
            cells, longest = len(header), 0
            for row in rows:
                cells += len(row)
                if cells > settings.file_max_cells:
                    raise _too_many_cells(name, self.name, cells, settings.file_max_cells)
                if not any(v is not None and v != "" for v in row):
                    continue
                values = [cell_text(row[i]) if i < len(row) else None for i in wanted]
                longest = max(longest, *(len(v) for v in values if v is not None), 0)
                body.append(values)
        except (DataError, SourceSchemaError):
            raise
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - the sheet is parsed while its rows are read: the file is at fault
            raise self._not_a_workbook(name, exc) from None
        finally:
            book.close()
        if longest > settings.file_max_cell_chars:
            raise DataError(f"{name}: a value is {longest:,} characters long, more than FUNDX_FILE_MAX_CELL_CHARS="
                            f"{settings.file_max_cell_chars:,}; the file was not read", feed=self.name,
                            action=f"ask {self.feed.agency} what it sent, or raise FUNDX_FILE_MAX_CELL_CHARS")
        columns = [headers[i] for i in wanted]
        frame = (pd.DataFrame(body, columns=columns, dtype=object) if body
                 else pd.DataFrame({h: [] for h in columns}, dtype=object))
        return self._rename(frame, name)

    def _not_a_workbook(self, name: str, exc: BaseException) -> DataError:
        return DataError(f"{name} is not a readable xlsx workbook ({type(exc).__name__})", feed=self.name,
                         action=f"ask {self.feed.agency} to save the workbook again from its spreadsheet program")

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
            for member in members:  # whatever its name says: a part is read as XML if its content is XML
                if not member.is_dir() and _declares_dtd(archive, member):
                    raise DataError(
                        f"{name}: {member.filename} declares a DTD (XML entities); it was not parsed",
                        feed=self.name, action="ask the agency to save the workbook again from its spreadsheet program",
                    )


class _Malformed:
    """pyarrow's ``invalid_row_handler``: each row with more or fewer fields than the header is skipped
    by the reader and kept here — its row number (the header is row 1; None when read on several
    threads), the fields expected and found, and its text — for :func:`_place` to put back, marked."""

    def __init__(self) -> None:
        self.rows: list[tuple[int | None, int, int, str]] = []

    def __call__(self, row: Any) -> str:
        self.rows.append((row.number, row.expected_columns, row.actual_columns, row.text[:MAX_RAW_CHARS]))
        return "skip"

    def numbered(self) -> bool:
        return all(number is not None for number, *_ in self.rows)

    def take(self) -> list[tuple[int | None, int, int, str]]:
        rows, self.rows = self.rows, []
        return rows


def _place(frame: pd.DataFrame, bad: list[tuple[int | None, int, int, str]], good: int, seen: int,
           name: str) -> pd.DataFrame:
    """``frame`` — the well-formed rows ``good`` .. ``good + len(frame)`` of a file, in logical columns —
    with the malformed rows ``bad`` (``seen`` came before them in the file) put back in their places:
    no value of theirs in any column, marked ``row_shape`` with their row number, their text kept."""
    if not bad:
        return frame
    import numpy as np

    at = np.array([(number or 0) - 2 - (seen + i) - good for i, (number, *_) in enumerate(bad)], dtype=np.int64)
    marks = pd.DataFrame({c: pd.Series([None] * len(bad), dtype="str") for c in frame.columns})
    marks[DEFECT] = pd.Series([f"{ROW_SHAPE}: {name} row {number}: {found} fields where the header has {expected}"
                               for number, expected, found, _ in bad], dtype="str")
    marks[RAW] = pd.Series([text for *_, text in bad], dtype="str")
    # a well-formed row i sorts at 2i+1, a malformed row that came before it at 2i: each lands where it was
    order = np.concatenate([np.arange(len(frame), dtype=np.int64) * 2 + 1, np.clip(at, 0, len(frame)) * 2])
    both = pd.concat([frame, marks], ignore_index=True)
    return both.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)


def _no_rows(header: list[str], contract: Contract) -> pd.DataFrame:
    """An empty frame with the file's header columns that the contract reads (all text)."""
    wanted = [h for h in header if h.strip().lstrip("\ufeff") in contract.physical_to_logical]
    return pd.DataFrame({h: pd.Series([], dtype="str") for h in wanted})


def _header_names(line: bytes, delimiter: str) -> list[str]:
    """A CSV header line's column names (UTF-8 bytes, without its line break)."""
    import csv

    text = line.decode("utf-8", errors="replace").rstrip("\r")
    return next(csv.reader([text], delimiter=delimiter), [])


def _header_too_long(name: str, feed: str) -> DataError:
    return DataError(f"{name}: its first line is longer than {MAX_HEADER_BYTES:,} bytes: not a CSV header; "
                     "the file was not read", feed=feed, action="ask the agency what it sent")


def _too_many_cells(name: str, feed: str, cells: int, limit: int) -> DataError:
    return DataError(
        f"{name} holds {cells:,} cells, more than FUNDX_FILE_MAX_CELLS={limit:,} for a file read whole; "
        "it was not read", feed=feed,
        action="stream the feed (stream: true in its config: any size in bounded memory), split the file, "
               "or raise FUNDX_FILE_MAX_CELLS",
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

    with archive.open(member) as stream:
        start = stream.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not start.startswith(b"<") and not start.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False  # not XML (an image, a binary part): no parser reads it as XML
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

    def header_names(self, delimiter: str, max_bytes: int) -> list[str]:
        """The header line's column names (read ahead, left in the stream); DataError past ``max_bytes``."""
        while b"\n" not in self._buffer[self._pos:] and not self._done:
            if len(self._buffer) - self._pos > max_bytes:
                raise _header_too_long(self._name, self._feed)
            self._fill()
        line = self._buffer[self._pos:].split(b"\n", 1)[0]
        if len(line) > max_bytes:
            raise _header_too_long(self._name, self._feed)
        return _header_names(line, delimiter)

    def close(self) -> None:
        if not self.closed:
            self._handle.close()
        super().close()
