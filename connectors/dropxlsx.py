"""Reading a dropped xlsx workbook: its sheet in the contract's columns, found by the header row, and
the checks that refuse a hostile workbook.

The sheet is read by calamine (python-calamine, Rust), many times faster than openpyxl, in a child process of
its own: calamine aborts the whole process on some hostile cells (``<c r="ZZZZZZ3">`` panics where Python cannot
catch it), and a night must not end with one agency's file. Every cell reference is checked (:func:`sheet_extent`:
columns A..XFD, rows 1..1,048,576, the grid calamine will build within FUNDX_FILE_MAX_CELLS) while the child reads:
calamine builds the sheet as a dense grid of its last row by its last column, so one cell at XFD1048576 would ask
for 17 billion cells — the child's address space is capped (:data:`CHILD_BASE_BYTES`), so such a grid stops the
child, and the child's answer is used only once every reference passed (a workbook they refuse has its child ended).

Before any of it is parsed, and before the child starts, a workbook is refused if it would unpack too far (a zip
bomb) or if a part declares an XML DTD (entity expansion, external entities); while it is read, its declared size
is not believed, and its header, cells and values are held to FUNDX_FILE_MAX_COLUMNS,
FUNDX_FILE_MAX_CELLS and FUNDX_FILE_MAX_CELL_CHARS. A cell is handed on as the text the agency meant
(:func:`cell_text`), a column as Arrow-backed text, as a CSV file's (the child answers in columns: UTF-8 with
offsets; no call per text cell). Anything the workbook reader cannot take is the agency's bad file (DataError).
"""

from __future__ import annotations

import io
import pickle
import re
import subprocess
import sys
from datetime import date, datetime, time, timedelta
from typing import Any

import pandas as pd

from connectors.dropfile import DropFileReader, too_many_cells
from connectors.xlsxscan import numpy_extent
from fundx.core.errors import DataError, SourceSchemaError

#: an xlsx workbook is refused, before any of it is parsed, if its members would unpack to more than
#: this many bytes in all, or if one member of more than XLSX_RATIO_FLOOR bytes unpacks to more than
#: XLSX_MAX_RATIO times its packed size (a zip bomb; real sheets pack 5-30 times)
XLSX_MAX_UNPACKED_BYTES = 1024 * 1024 * 1024
XLSX_MAX_RATIO = 200
XLSX_RATIO_FLOOR = 1024 * 1024


def cell_text(value: Any) -> str | None:
    """A spreadsheet cell as the text the agency meant: numbers as their text (a whole number without ``.0``, as
    the sheet has it: calamine reads every number as a float), dates as ISO dates."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value != "" else None
    if isinstance(value, float) and value.is_integer() and abs(value) < _EXACT:
        return str(int(value))
    if isinstance(value, datetime):
        if value.tzinfo is None and value.time() == time.min:
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):  # a duration cell ([h]:mm): as Excel shows it
        seconds = int(value.total_seconds())
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return str(value)


#: whole numbers below this are written without ``.0`` (as a spreadsheet writes them, and as Python writes a float
#: in plain digits: from 1e16 on it uses an exponent); larger ones keep the float's text (1.10105e+17: what Excel
#: made of a long number, which the contract then refuses as an identity number)
_EXACT = 10 ** 16
#: Excel's grid: columns A..XFD, rows 1..1,048,576
MAX_COLUMN, MAX_ROW = 16_384, 1_048_576
_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(c|row)(?=[\s/>])([^>]*)>")
_REF_ATTR = re.compile(rb"""(?:^|\s)r\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_CELL_REF = re.compile(rb"^([A-Z]{1,3})([0-9]{1,7})$")
#: a sheet whose grid (last row by last column) is larger than this and more than SPARSE_RATIO times its cells is
#: refused: a few stray cells far out would have the reader build (and hand over) a grid of empty cells
SPARSE_FLOOR, SPARSE_RATIO = 1_000_000, 16
#: seconds the child process reading a workbook may take
READ_TIMEOUT = 300


def _shown(ref: bytes) -> str:
    """A reference as text to name it in an error: at most 16 characters, ASCII letters and digits only (the rest
    as ?), so nothing the file holds reaches a log but the shape of a cell reference."""
    return "".join(chr(c) if chr(c).isascii() and chr(c).isalnum() else "?" for c in ref[:16]) or "(empty)"


def _column_number(letters: bytes) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ch - 64
    return n


#: the fast path of :func:`sheet_extent`: every c and row tag of a stretch in the form writers use (``<c r="B7"``,
#: ``<row r="7"``, the reference first, double quotes, no prefix) and no ``<`` inside a tag
_ANY_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:c|row)(?=[\s/>])[^>]*>")
_PLAIN_ROW = re.compile(rb'<row r="([1-9][0-9]{0,6})"(?=[\s/>])[^>]*>')
_PLAIN_CELL = re.compile(rb'<c r="([A-Z]{1,3})[1-9][0-9]{0,6}"(?=[\s/>])[^>]*>')  # its column's letters
_PLAIN_CELL_ROW = re.compile(rb'<c r="[A-Z]{1,3}([1-9][0-9]{0,6})"(?=[\s/>])[^>]*>')  # the same tags: its row
_NESTED = re.compile(rb"<[^>]*<")


def sheet_extent(xml: Any) -> tuple[int, int, int]:
    """(last row, last column, cells) of the cells of a sheet's XML (a binary stream), as a reader places them: a cell
    at its reference, else after the row's previous cell; a row at its number, else after the previous row.
    A ValueError names a reference outside Excel's grid or not shaped like one.

    A stretch whose every tag is in the form writers use is measured by numpy, every tag at once
    (:func:`connectors.xlsxscan.numpy_extent`), else by a few regular-expression passes (:func:`_plain_extent`:
    a namespace prefix, or ``:c`` in the text); any other stretch, and one the fast pass finds out of the grid (to name the first
    such reference), cell by cell (:func:`_scan`) — the same figures either way."""
    state = [0, 0, 0, 0, 0]  # last row, last column, cells, the row and column a reader is at
    tail = b""
    while chunk := xml.read(1024 * 1024):
        text = tail + chunk
        end = text.rfind(b"<")
        if end < 0 or text.find(b">", end) >= 0:
            end = len(text)
        body, tail = text[:end], text[end:]
        if not (numpy_extent(body, state, MAX_ROW, MAX_COLUMN) or _plain_extent(body, state)):
            _scan(body, state)
    return state[0], state[1], state[2]


def _plain_extent(body: bytes, state: list[int]) -> bool:
    """Measure ``body`` into ``state`` if every c and row tag in it is plain and within the grid; else False
    (``state`` untouched). With no ``<`` inside a tag, every tag is one stretch from ``<`` to the next ``>``, so
    the plain tags are all the tags when they are as many."""
    if _NESTED.search(body) is not None:
        return False
    rows = _PLAIN_ROW.findall(body)
    cells = _PLAIN_CELL.findall(body)
    if len(rows) + len(cells) != len(_ANY_TAG.findall(body)):
        return False
    last_row, last_col, count, row, col = state
    if cells:
        widest = max(_column_number(c) for c in set(cells))
        deepest = max(int(r) for r in set(_PLAIN_CELL_ROW.findall(body)))
        if widest > MAX_COLUMN or deepest > MAX_ROW:
            return False
        last_col = max(last_col, widest)
        last_row = max(last_row, deepest, row)  # a cell before this stretch's first row tag is in the current row
    if rows:
        highest = max(int(r) for r in set(rows))
        if highest > MAX_ROW:
            return False
        last_row = max(last_row, highest)
    at_row, at_cell = body.rfind(b'<row r="'), body.rfind(b'<c r="')
    if rows:
        row = int(rows[-1])
        col = 0
    if cells and at_cell > at_row:  # the stretch ends inside a row: a reader is at its last cell's column
        col = _column_number(cells[-1])
    state[:] = [last_row, last_col, count + len(cells), row, col]
    return True


def _scan(body: bytes, state: list[int]) -> None:
    """Measure ``body`` into ``state`` tag by tag (ValueError at the first reference out of the grid)."""
    last_row, last_col, cells, row, col = state
    for match in _TAG.finditer(body):
        ref = _REF_ATTR.search(match.group(2))
        value = None if ref is None else (ref.group(1) if ref.group(1) is not None else ref.group(2))
        if match.group(1) == b"row":
            if value is None:
                row += 1
            elif value.isdigit() and 0 < len(value) <= 7:
                row = int(value)
            else:
                raise ValueError(f"row number {_shown(value)} is not one")
            col = 0
            if row > MAX_ROW:
                raise ValueError(f"row {row} is past the last row of a sheet ({MAX_ROW})")
            last_row = max(last_row, row)
            continue
        cells += 1
        if value is None:
            col += 1
        else:
            cell = _CELL_REF.match(value)
            if cell is None:
                raise ValueError(f"cell reference {_shown(value)} is not one (letters A..XFD, then a row number)")
            col = _column_number(cell.group(1))
            row_of_cell = int(cell.group(2))
            if col > MAX_COLUMN or not 0 < row_of_cell <= MAX_ROW:
                raise ValueError(f"cell {_shown(value)} is outside a sheet's grid (A1:XFD{MAX_ROW})")
            last_row = max(last_row, row_of_cell)
        if col > MAX_COLUMN:
            raise ValueError(f"a row has more than {MAX_COLUMN} cells")
        last_col = max(last_col, col)
        last_row = max(last_row, row)
    state[:] = [last_row, last_col, cells, row, col]


#: the child process's program: read the sheet with calamine, answer with a pickle ("ok", rows) — or, asked for
#: "columns", ("columns", (header, rows, empty rows, columns)) — ("no sheet", names) or ("error", the exception's
#: type). Run with ``python -I``: nothing of the parent's path or environment. Its address space is capped (argv[3]
#: bytes, 0: none): calamine may start on a sheet while its references are still being checked (:class:`SheetRead`).
#: A column is its text cells' UTF-8 in one piece with their offsets (Arrow's layout, made without pyarrow: its
#: import would cost more than the sheet), and its cells of other kinds (numbers, dates) apart, as calamine gave
#: them, with their places: the parent makes those the contract's text (:func:`cell_text`). A row of nothing but
#: empty cells is listed as empty.
_CHILD = """
import gc, io, pickle, resource, sys
from array import array
from itertools import accumulate
gc.disable()  # a short life making no cycles: the collector would walk the sheet's rows again and again
cap = int(sys.argv[3]) if len(sys.argv) > 3 else 0
if cap:
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
from python_calamine import CalamineWorkbook
data = sys.stdin.buffer.read()

def columns(rows):
    header, body = (rows[0], rows[1:]) if rows else ([], [])
    width = len(header)
    if any(len(row) != width for row in body):
        raise ValueError("the rows are not of one width")
    empty = [i for i, row in enumerate(body) if row.count("") + row.count(None) == width]
    out = []
    for column in zip(*body):
        others = []
        if not set(map(type, column)) <= {str}:
            others = [(i, v) for i, v in enumerate(column) if v.__class__ is not str]
            column = [v if v.__class__ is str else "" for v in column]
        encoded = list(map(str.encode, column))
        out.append((array("q", accumulate(map(len, encoded), initial=0)).tobytes(), b"".join(encoded), others))
    return header, len(body), empty, out

try:
    book = CalamineWorkbook.from_filelike(io.BytesIO(data))
    if sys.argv[1] not in book.sheet_names:
        answer = ("no sheet", list(book.sheet_names))
    else:
        rows = book.get_sheet_by_name(sys.argv[1]).to_python(skip_empty_area=False)
        answer = ("columns", columns(rows)) if sys.argv[2:3] == ["columns"] else ("ok", rows)
        del rows
except Exception as exc:
    answer = ("error", type(exc).__name__)
sys.stdout.buffer.write(pickle.dumps(answer, protocol=5))
"""

#: the child's address space, when calamine starts before the references are checked (:meth:`XlsxReader.read`):
#: this much, and CHILD_XML_FACTOR bytes for each byte the workbook unpacks to (the 100,000-prisoner sheet, 50 MB of
#: XML, peaks at 150 MB; a sheet as sparse as :data:`SPARSE_RATIO` allows needs some 26 bytes a byte). A workbook
#: whose cells would have calamine build a larger grid stops the child (allocation fails) instead of the machine
CHILD_BASE_BYTES = 1024 * 1024 * 1024
CHILD_XML_FACTOR = 32


class SheetRead:
    """A workbook's sheet being read by calamine in a child process, started at once; :meth:`result` waits for the
    answer (as :func:`read_sheet` gives it), :meth:`cancel` ends the child. A thread talks to the child (the workbook
    in, the answer out) while the caller checks the workbook's cell references: the answer is used only once they
    passed. ``cap``: the child's address space in bytes (0: no cap)."""

    def __init__(self, data: bytes, sheet: str, *, mode: str = "rows", cap: int = 0) -> None:
        import threading

        self._proc = subprocess.Popen([sys.executable, "-I", "-c", _CHILD, sheet, mode, str(cap)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._out = b""
        self._timed_out = False
        self._thread = threading.Thread(target=self._talk, args=(data,), name="fundx-xlsx-child", daemon=True)
        self._thread.start()

    def _talk(self, data: bytes) -> None:
        try:
            self._out, _ = self._proc.communicate(data, timeout=READ_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._timed_out = True
            self._proc.kill()
            self._proc.communicate()

    def cancel(self) -> None:
        """End the child (its answer will not be used) and wait for it."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._thread.join()

    def result(self) -> tuple[str, Any]:
        """The child's answer: (status, payload), ("error", why) when it died. TimeoutExpired after READ_TIMEOUT."""
        self._thread.join()
        if self._timed_out:
            raise subprocess.TimeoutExpired(self._proc.args, READ_TIMEOUT)
        code = self._proc.returncode
        if code != 0:
            why = f"signal {-code}" if code < 0 else f"exit {code}"
            return "error", f"the reader stopped on it: {why}"
        status, payload = pickle.loads(self._out)  # noqa: S301 - our own child's answer, over a pipe
        self._out = b""
        return status, payload


def read_sheet(data: bytes, sheet: str) -> tuple[str, Any]:
    """A workbook's sheet read by calamine in a child process: ("ok", rows as lists of cell values), ("no sheet",
    the sheet names), or ("error", why) — also when the child died (a panic aborts it: "the reader stopped on it").
    Call it on a workbook :meth:`XlsxReader._check_workbook` passed. TimeoutExpired after :data:`READ_TIMEOUT`."""
    return SheetRead(data, sheet).result()


def sheet_columns(payload: Any, wanted: list[int]) -> tuple[list[Any], int]:
    """The ``wanted`` columns of a child's ("columns", payload) answer as Arrow text (large_string), the contract's
    text of each cell (:func:`cell_text`: an empty cell missing), rows of nothing but empty cells left out; and the
    longest value's length in characters."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    _, count, empty, columns = payload
    keep = None
    if empty:
        keep = np.ones(count, dtype=bool)
        keep[np.asarray(empty, dtype=np.int64)] = False
    out, longest = [], 0
    for i in wanted:
        offsets, text, others = columns[i]
        values = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(text))
        blank = pc.equal(pc.binary_length(values), 0)
        if others:  # cells of other kinds: their text in their places
            places = np.zeros(count, dtype=bool)
            places[np.fromiter((p for p, _ in others), dtype=np.int64, count=len(others))] = True
            texts = pa.array([cell_text(v) for _, v in others], type=pa.large_string())
            values = pc.replace_with_mask(values, pa.array(places), texts)
            blank = pc.and_(blank, pa.array(~places))
        values = pc.if_else(blank, pa.scalar(None, pa.large_string()), values)
        if keep is not None:
            values = values.filter(pa.array(keep))
        if len(values):
            longest = max(longest, pc.max(pc.utf8_length(values)).as_py() or 0)
        out.append(values)
    return out, longest


class XlsxReader(DropFileReader):
    """Reads a feed's xlsx workbooks, whole (a workbook is not read in blocks)."""

    def read(self, data: bytes, name: str) -> pd.DataFrame:
        """A workbook's sheet in logical columns: only the contract's columns, found by the header row.

        The sheet's declared size (its ``<dimension>``) is not believed: a sheet that declares 16,384
        columns would otherwise have every row padded to that width. The header may not be wider than
        FUNDX_FILE_MAX_COLUMNS, the cells read not more than FUNDX_FILE_MAX_CELLS, a value not longer
        than FUNDX_FILE_MAX_CELL_CHARS (Excel's own limit); anything the workbook reader cannot take is
        the agency's bad file (DataError), never an internal error.

        The workbook is refused before any reader sees it if it would unpack too far or declares a DTD; then
        calamine starts reading the sheet in its child process (its memory capped, :class:`SheetRead`) while
        this process checks every cell reference, and the child's answer is used only once the references
        passed — a workbook they refuse has its child ended and its answer never read.
        """
        settings = self.settings
        unpacked = self._guarded(lambda: self._check_archive(data, name), name)
        reading = SheetRead(data, self.config.sheet or "", mode="columns",
                            cap=CHILD_BASE_BYTES + CHILD_XML_FACTOR * unpacked)
        try:
            extent = self._guarded(lambda: self._check_cells(data, name), name)
            self._check_grid(extent, name)
        except BaseException:
            reading.cancel()
            raise
        payload = self._answer(reading, name)
        header = list(payload[0])
        while header and header[-1] in (None, ""):
            header.pop()
        headers = self._header(["" if h is None else str(cell_text(h) or "") for h in header], name)
        wanted = [i for i, h in enumerate(headers) if h.strip().lstrip("\ufeff") in self.contract.physical_to_logical]
        columns = [headers[i] for i in wanted]
        if not payload[1]:
            return self._rename(pd.DataFrame({h: pd.Series([], dtype="str") for h in columns}), name)
        values, longest = sheet_columns(payload, wanted)
        if longest > settings.file_max_cell_chars:
            raise DataError(f"{name}: a value is {longest:,} characters long, more than FUNDX_FILE_MAX_CELL_CHARS="
                            f"{settings.file_max_cell_chars:,}; the file was not read", feed=self.name,
                            action=f"ask {self.feed.agency} what it sent, or raise FUNDX_FILE_MAX_CELL_CHARS")
        import pyarrow as pa

        frame = pa.Table.from_arrays(values, names=columns).to_pandas()  # text columns, as a CSV file's
        return self._rename(frame, name)

    def _guarded(self, check: Any, name: str) -> Any:
        """``check()``: whatever it raises on these bytes but a DataError or MemoryError is the file's fault."""
        try:
            return check()
        except (DataError, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the checks raise on these bytes, the file is at fault
            raise self._not_a_workbook(name, exc) from None

    def _check_grid(self, extent: tuple[int, int, int], name: str) -> None:
        """Refuse a sheet whose grid (last row by last column) exceeds FUNDX_FILE_MAX_CELLS or is mostly empty."""
        grid = extent[0] * extent[1]
        if grid > self.settings.file_max_cells:
            raise too_many_cells(name, self.name, grid, self.settings.file_max_cells)
        if grid > SPARSE_FLOOR and grid > SPARSE_RATIO * extent[2]:
            raise DataError(f"{name}: its sheet's {extent[2]:,} cells lie in a grid of {extent[0]:,} rows by "
                            f"{extent[1]:,} columns, which the reader would fill with empty cells; it was not read",
                            feed=self.name, action=f"ask {self.feed.agency} to delete the stray cells far from the "
                                                   "table and send the workbook again")

    def _answer(self, reading: SheetRead, name: str) -> Any:
        """The child's answer for the sheet (:class:`SheetRead`), or the agency's bad file."""
        try:
            status, payload = reading.result()
        except subprocess.TimeoutExpired:
            raise DataError(f"{name}: reading the workbook took more than {READ_TIMEOUT} s; it was not read",
                            feed=self.name, action=f"ask {self.feed.agency} what it sent") from None
        if status == "no sheet":
            raise SourceSchemaError(
                f"{name} has no sheet {self.config.sheet!r}", feed=self.name,
                action=f"ask {self.feed.agency} about the workbook's layout, or fix filedrop.sheet",
            )
        if status != "columns":
            raise DataError(f"{name} is not a readable xlsx workbook ({payload})", feed=self.name,
                            action=f"ask {self.feed.agency} to save the workbook again from its spreadsheet program")
        return payload

    def _not_a_workbook(self, name: str, exc: BaseException) -> DataError:
        return DataError(f"{name} is not a readable xlsx workbook ({type(exc).__name__})", feed=self.name,
                         action=f"ask {self.feed.agency} to save the workbook again from its spreadsheet program")

    def _check_workbook(self, data: bytes, name: str) -> tuple[int, int, int]:
        """Refuse, before parsing, a workbook that unpacks too far (a zip bomb), whose XML declares a DTD (entity
        expansion, "billion laughs", or external entities: no xlsx needs one), or that has a cell outside a
        sheet's grid. Returns the largest extent (rows, columns, cells) of its sheets (:func:`sheet_extent`)."""
        self._check_archive(data, name)
        return self._check_cells(data, name)

    def _check_archive(self, data: bytes, name: str) -> int:
        """Refuse a workbook that unpacks too far (a zip bomb) or whose XML declares a DTD (entity expansion,
        "billion laughs", or external entities: no xlsx needs one): before any reader sees it. The bytes its
        members would unpack to, as the archive declares them."""
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
        return unpacked

    def _check_cells(self, data: bytes, name: str) -> tuple[int, int, int]:
        """Refuse a workbook with a cell outside a sheet's grid; the largest extent (rows, columns, cells) of its
        sheets (:func:`sheet_extent`), every XML part measured whatever its name says."""
        import zipfile

        extent = (0, 0, 0)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.infolist():
                if member.is_dir() or not _is_xml(archive, member):
                    continue
                try:
                    with archive.open(member) as stream:
                        rows, cols, cells = sheet_extent(stream)
                except ValueError as bad:
                    raise DataError(f"{name} is not a readable xlsx workbook ({member.filename}: {bad})", feed=self.name,
                                    action="ask the agency to save the workbook again from its spreadsheet "
                                           "program") from None
                if rows * cols > max(extent[0] * extent[1], 1):
                    extent = (rows, cols, cells)
        return extent


def _is_xml(archive: Any, member: Any) -> bool:
    with archive.open(member) as stream:
        start = stream.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    return start.startswith(b"<")


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
