"""Reading a dropped xlsx workbook: its sheet in the contract's columns, found by the header row, and
the checks that refuse a hostile workbook.

Before any of it is parsed, a workbook is refused if it would unpack too far (a zip bomb) or if a
part declares an XML DTD (entity expansion, external entities); while it is read, its declared size
is not believed, and its header, cells and values are held to FUNDX_FILE_MAX_COLUMNS,
FUNDX_FILE_MAX_CELLS and FUNDX_FILE_MAX_CELL_CHARS. A cell is handed on as the text the agency meant
(:func:`cell_text`). Anything the workbook reader cannot take is the agency's bad file (DataError).
"""

from __future__ import annotations

import io
from datetime import date, datetime, time
from typing import Any

import pandas as pd

from connectors.dropfile import DropFileReader, too_many_cells
from fundx.core.errors import DataError, SourceSchemaError

#: an xlsx workbook is refused, before any of it is parsed, if its members would unpack to more than
#: this many bytes in all, or if one member of more than XLSX_RATIO_FLOOR bytes unpacks to more than
#: XLSX_MAX_RATIO times its packed size (a zip bomb; real sheets pack 5-30 times)
XLSX_MAX_UNPACKED_BYTES = 1024 * 1024 * 1024
XLSX_MAX_RATIO = 200
XLSX_RATIO_FLOOR = 1024 * 1024


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


class XlsxReader(DropFileReader):
    """Reads a feed's xlsx workbooks, whole (a workbook is not read in blocks)."""

    def read(self, data: bytes, name: str) -> pd.DataFrame:
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
                    raise too_many_cells(name, self.name, cells, settings.file_max_cells)
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
