"""A local file read as a feed's contract columns, every value text, as a connector would deliver it.

``fundx contract check FEED PATH`` and the peers' benchmark (bench/peers/) read a file at hand this way: a
Parquet file, a UTF-8 CSV file (a byte-order mark allowed) or an xlsx workbook (first sheet, read as the
file-drop connector reads it: :mod:`connectors.dropxlsx`). Its columns are the contract's logical names or
the agency's own headers (``physicalName``), renamed to the logical names; every value becomes text (a typed
Parquet column is cast: a date as its ISO text, a number as its digits) and an empty value is missing, as
:mod:`connectors.dropcsv` delivers them. A column the contract does not have is refused (the file is not the
feed's, or the contract is behind), never dropped silently; a missing required column is left for the check
to judge (a schema break). Errors are :class:`fundx.core.errors.DataError` naming the file and the feed,
never a value of it.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from contracts import Contract
from fundx.core.columns import RESERVED_COLUMNS
from fundx.core.errors import DataError

#: the kinds of file read, by suffix
SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".xlsx": "xlsx"}
_ACTION = "give a Parquet, UTF-8 CSV or xlsx file whose columns are the contract's"


def file_kind(path: Path) -> str | None:
    """``parquet``, ``csv`` or ``xlsx`` by the file's suffix; None for any other."""
    return SUFFIXES.get(path.suffix.lower())


def read_local(contract: Contract, path: Path | str) -> Any:
    """The file's rows as a pandas frame of the contract's logical columns (text, missing where empty)."""
    path = Path(path)
    feed = contract.feed
    if not path.is_file():
        raise DataError(f"{path}: no such file", feed=feed, action=_ACTION)
    kind = file_kind(path)
    if kind is None:
        raise DataError(f"{path}: not a .parquet, .csv or .xlsx file", feed=feed, action=_ACTION)
    if kind == "xlsx":
        return _xlsx(contract, path)
    table = _parquet(path, feed) if kind == "parquet" else _csv(path, feed)
    return _text_frame(contract, table, path)


def logical_names(contract: Contract, headers: list[str], path: Path) -> list[str]:
    """The file's headers as the contract's logical names; DataError naming those the contract does not have."""
    names, unknown = [], []
    for header in headers:
        cleaned = str(header).strip().lstrip("\ufeff")
        if cleaned in contract.by_name or cleaned in RESERVED_COLUMNS:
            names.append(cleaned)
        elif cleaned in contract.physical_to_logical:
            names.append(contract.physical_to_logical[cleaned])
        else:
            unknown.append(cleaned)
    if unknown:
        raise DataError(f"{path}: column(s) {', '.join(unknown)} not in the contract of {contract.feed}",
                        feed=contract.feed, action=f"check the file is {contract.feed}'s, or update the contract")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"{path}: column(s) {', '.join(twice)} given more than once", feed=contract.feed,
                        action="keep one column of each name (logical or the agency's header, not both)")
    return names


def _parquet(path: Path, feed: str) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:  # the file's own reader: a column of one row group is one Arrow array (no chunks to combine later)
        return pq.ParquetFile(path).read()
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__})", feed=feed,
                        action=_ACTION) from None


def _csv(path: Path, feed: str) -> Any:
    import pyarrow as pa
    from pyarrow import csv as pacsv

    try:
        with path.open("rb") as f:
            header = f.readline(1 << 20)
        headers = next(csv.reader([header.decode("utf-8-sig").rstrip("\r\n")]), [])
        return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(headers, pa.string()), strings_can_be_null=False,
            quoted_strings_can_be_null=False))
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        # pyarrow's message may quote a row: only its kind is said
        raise DataError(f"{path}: not a well-formed UTF-8 CSV file ({type(exc).__name__})", feed=feed,
                        action=_ACTION) from None


def _text_frame(contract: Contract, table: Any, path: Path) -> Any:
    """An Arrow table as a frame of text columns named by the contract, empty values missing."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = logical_names(contract, list(table.schema.names), path)
    columns = []
    for column in table.columns:
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            try:
                column = pc.cast(column, pa.string())
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
                raise DataError(f"{path}: a column of type {column.type} cannot be read as text",
                                feed=contract.feed, action=_ACTION) from None
        if len(column) and (pc.min(pc.binary_length(column)).as_py() or 0) == 0:  # an empty value: missing
            column = pc.if_else(pc.equal(column, ""), pa.scalar(None, column.type), column)
        columns.append(column)
    return pa.Table.from_arrays(columns, names=names).to_pandas()


def _xlsx(contract: Contract, path: Path) -> Any:
    """The workbook's first sheet read as the file-drop connector reads an agency's workbook (the same checks
    against a hostile workbook first, calamine in a child process)."""
    from connectors.config import FileDropConfig
    from connectors.dropxlsx import XlsxReader, read_sheet
    from fundx.core.errors import SourceSchemaError
    from fundx.core.settings import get_settings

    class _Feed:  # what XlsxReader needs of its connector (connectors.dropfile.DropFeed)
        def __init__(self, sheet: str) -> None:
            self.feed: Any = type("Agency", (), {"agency": "the agency"})()
            self.contract = contract
            self.settings = get_settings()
            self.config = FileDropConfig(directory=str(path.parent), pattern=path.name, format="xlsx", sheet=sheet)

        @property
        def name(self) -> str:
            return contract.feed

        def check_columns(self, present: Any, *, where: str = "", physical: bool = True) -> None:
            logical_names(contract, [h for h in present if h], path)

    data = path.read_bytes()
    feed = _Feed("-")
    reader = XlsxReader(feed)
    try:
        try:  # the workbook checks XlsxReader.read makes, before calamine reads the sheet names
            reader._check_workbook(data, str(path))
        except (DataError, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the checks raise on these bytes, the file is at fault
            raise reader._not_a_workbook(str(path), exc) from None
        status, names = read_sheet(data, "[?]")  # no sheet can be named so (Excel forbids [ ] ?): it lists them
        if status != "no sheet" or not names:
            raise DataError(f"{path} is not a readable xlsx workbook", feed=contract.feed, action=_ACTION)
        feed.config = FileDropConfig(directory=str(path.parent), pattern=path.name, format="xlsx", sheet=names[0])
        frame = reader.read(data, str(path))
    except SourceSchemaError as exc:
        raise DataError(str(exc), feed=contract.feed, action=_ACTION) from None
    frame = frame.astype("str")
    return frame.mask(frame == "")
