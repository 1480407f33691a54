"""Reading a dropped CSV file with pyarrow: every value text, only the contract's columns, and each row
with more or fewer fields than its header placed back where it was, empty and marked.

Such a row is never read into the columns (a trailing comma would shift every value one column left):
it stays in its place as a row marked ``row_shape`` with its row number (:data:`fundx.core.digest.DEFECT`)
and its text kept sealed (:data:`fundx.core.digest.RAW`), and the contract's check quarantines it for
the stewards. A file is refused, naming the limit, when its header line is longer than
:data:`MAX_HEADER_BYTES` or has more columns than FUNDX_FILE_MAX_COLUMNS, a value is longer than
FUNDX_FILE_MAX_CELL_CHARS, or a file read whole holds more cells than FUNDX_FILE_MAX_CELLS. A file
is read whole (:meth:`CsvReader.read`) or, for a streamed feed, block by block from a
:class:`connectors.decoding.DecodingReader` (:meth:`CsvReader.frames`).
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from typing import Any

import pandas as pd

from connectors.decoding import DecodingReader, decode, detect_encoding
from connectors.dropfile import DropFeed, DropFileReader, too_many_cells
from contracts import Contract
from contracts.rules import ROW_SHAPE
from fundx.core.digest import DEFECT, RAW
from fundx.core.errors import DataError, IncompletePull

#: a header line longer than this, in bytes, is refused before it is parsed (no real header comes near it)
MAX_HEADER_BYTES = 1024 * 1024
#: characters of a malformed row's text kept, sealed, for the stewards' record
MAX_RAW_CHARS = 4096


class CsvReader(DropFileReader):
    """Reads a feed's CSV files: whole (:meth:`read`) or in frames of bounded size (:meth:`frames`)."""

    def __init__(self, connector: DropFeed) -> None:
        super().__init__(connector)
        # files with a malformed row read on several threads (which do not number rows): read on one
        self._numbered_files: set[str] = set()

    def read(self, data: bytes, name: str) -> pd.DataFrame:
        """A whole file's bytes as a frame of logical columns, malformed rows marked in their places."""
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
            raise too_many_cells(name, self.name, cells, self.settings.file_max_cells)
        for threads in (True, False):  # a malformed row read on several threads has no number: read on one
            malformed = _Malformed()
            try:
                table = self._arrow_csv(pa, io.BytesIO(payload), header, malformed, threads=threads, stream=False)
            except (pa.ArrowInvalid, ValueError) as exc:
                raise self._unreadable(name, exc) from None
            if malformed.numbered():
                break
        self._check_cells(table, name)
        return _place(self._frame(table, name), malformed.take(), 0, 0, name)

    def frames(self, source: DecodingReader, name: str, rows: int) -> Iterator[pd.DataFrame]:
        """Frames of logical columns from a decoded CSV stream, malformed rows marked in their places."""
        import pyarrow as pa

        line = source.first_line(MAX_HEADER_BYTES)
        if line is None:
            raise _header_too_long(name, self.name)
        header = self._header(_header_names(line, self.config.delimiter), name)
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
                frame = _place(self._frame(batch, name), bad, good, seen, name)
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
            convert_options=pacsv.ConvertOptions(column_types={h: pa.large_string() for h in header},  # pandas' own
                                                 include_columns=[h for h in header if h in wanted],
                                                 # an empty value, quoted or not, is a missing one
                                                 null_values=[""], strings_can_be_null=True,
                                                 quoted_strings_can_be_null=True),
        )
        return pacsv.open_csv(source, **options) if stream else pacsv.read_csv(source, **options)

    def _check_cells(self, table: Any, name: str) -> None:
        """DataError if a value is longer than FUNDX_FILE_MAX_CELL_CHARS (Excel's own limit by default)."""
        import pyarrow.compute as pc

        limit = self.settings.file_max_cell_chars
        for column, values in zip(table.schema.names, table.columns):
            most = pc.max(pc.binary_length(values)).as_py() if len(values) else None
            if most is None or most <= limit:  # a character is a byte or more: no value is too long
                continue
            longest = pc.max(pc.utf8_length(values)).as_py()
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
        # empty values are missing already: the parser reads them as nulls (:meth:`_arrow_csv`)
        return self._rename(frame, name)

    def _frame(self, table: Any, name: str) -> pd.DataFrame:
        """An Arrow table or batch of the file's columns as :meth:`_strings` makes its pandas frame: the
        columns picked and renamed in Arrow, then converted once."""
        headers = [str(h).strip().lstrip("\ufeff") for h in table.schema.names]
        self.connector.check_columns(headers, where=name)
        mapping = {p: n for p, n in self.contract.physical_to_logical.items() if p in headers}
        return table.select([headers.index(p) for p in mapping]).rename_columns(list(mapping.values())).to_pandas()


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
