"""The database transport's Arrow path: the window's rows fetched as Arrow record batches by an ADBC
driver (adbc-driver-sqlite, adbc-driver-postgresql) instead of one Python tuple per row (issue 21).

The frames handed on are exactly the frames the row path (:meth:`connectors.database.DatabaseConnector`,
SQLAlchemy tuples) builds — the same dtypes, the same Python values — so that the contract check, the
content digest and the sealed parts cannot tell the two apart:

- text as pandas' ``str``; a column whose values in a chunk are all NULL as ``object`` Nones;
- SQLite numbers as ``float64``, or ``int64`` where every value of the chunk was stored as an integer
  and none is NULL (what pandas infers from the driver's ints and floats): in a column of INTEGER or
  NUMERIC affinity a whole number is stored as an integer, in one of REAL affinity never;
- PostgreSQL ``numeric`` as :class:`decimal.Decimal` (ADBC sends its text), ``date`` as
  :class:`datetime.date`, ``timestamptz`` in the session's TimeZone (psycopg's tzinfo), integers as ``int64``.

What the Arrow path cannot hand on exactly, it does not hand on: :class:`NotPlain` sends the read back
to the row path. SQLite is dynamically typed and its ADBC driver infers a column's type from the first
batch (a later value of another type fails the read; a batch mixing text and numbers turns the numbers
into text). A value other than text (or NULL) in a text, date or time column, or other than a
number in a number column, means the row path — which hands on such values as they are, and the
contract's checks name them (a number column holding text is a DataError). The column's declared
affinity tells most of it: a TEXT column holds text, and a number column's text or BLOB shows as an
Arrow type other than a number. A BLOB in a TEXT column shows as binary in its batch, or fails the read
in a later batch — unless its bytes are valid UTF-8 and a batch before it typed the column as text:
that one BLOB is then handed on as text where the row path hands on bytes (not caught here). A column of
another affinity (an expression in the view, a column without a type) has its storage classes
carried in one more column of the query (``typeof``, :data:`FLAGS`), which costs the read about a
fifth of its time per such column.

SQLite's ADBC driver cannot cancel a running statement (AdbcStatementCancel: NOT_IMPLEMENTED), so the
caller asks for the query's first row through SQLAlchemy first, where the pull's deadline interrupts
it (a slow view stalls there), and the Arrow reader then reads batches of at most
:data:`SQLITE_BATCH_ROWS` with the deadline checked between them. PostgreSQL's statement is cancelled
on the server at the deadline (``adbc_cancel``) and keeps FUNDX_DB_TIMEOUT as statement_timeout.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy.engine import URL

from fundx.core.retry import Deadline

log = logging.getLogger("fundx.connectors.database")

#: the ADBC driver package of each SQLAlchemy backend
DRIVERS = {"sqlite": "adbc_driver_sqlite", "postgresql": "adbc_driver_postgresql"}
#: rows per SQLite batch: the deadline is looked at between batches
SQLITE_BATCH_ROWS = 16_384
#: the extra column of the SQLite query: the storage classes seen in the row, as bits (:func:`sqlite_flags`)
FLAGS = "__fundx_storage"


class NotPlain(Exception):
    """The Arrow path cannot hand these rows on as the row path would: read them the row path's way."""


def driver(backend: str) -> str | None:
    """The installed ADBC driver package for ``backend``, or None (then the row path reads)."""
    name = DRIVERS.get(backend)
    if name is None or importlib.util.find_spec(name) is None:
        return None
    return name


@dataclass(frozen=True)
class Column:
    """One selected column: the contract's name, the source's name (None: not in the relation), numeric
    or not, and (SQLite) its declared affinity."""

    name: str
    physical: str | None
    number: bool
    affinity: str | None = None  # SQLite: INTEGER, TEXT, BLOB, REAL or NUMERIC; None elsewhere

    @property
    def flagged(self) -> bool:
        """Whether the query carries this column's storage classes (SQLite: nothing else tells them)."""
        if self.physical is None or self.affinity is None:
            return False
        return self.affinity not in (("INTEGER", "NUMERIC", "REAL") if self.number else ("TEXT",))

    @property
    def integral(self) -> bool:
        """Whether a whole number in this column was stored as an integer (SQLite INTEGER/NUMERIC affinity)."""
        return self.number and self.affinity in ("INTEGER", "NUMERIC")


def affinity(declared: str | None) -> str:
    """SQLite's affinity of a declared column type (https://www.sqlite.org/datatype3.html, 3.1)."""
    text = (declared or "").upper()
    if "INT" in text:
        return "INTEGER"
    if any(word in text for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if not text or "BLOB" in text:
        return "BLOB"
    if any(word in text for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def sqlite_flags(columns: Sequence[Column], quote: Any) -> str | None:
    """A SQL expression of the storage classes in a row, or None when no column needs it: bit 2i set
    when column i holds a value of an unexpected class (a number column: not integer/real; any other:
    not text), bit 2i+1 when a number column holds a real. At most 31 columns (one 64-bit integer)."""
    terms = []
    for i, c in enumerate(columns):
        if not c.flagged:
            continue
        assert c.physical is not None
        ref = quote(c.physical)
        if c.number:
            terms.append(f"((typeof({ref}) NOT IN ('integer', 'real', 'null')) << {2 * i})")
            terms.append(f"((typeof({ref}) = 'real') << {2 * i + 1})")
        else:
            terms.append(f"((typeof({ref}) NOT IN ('text', 'null')) << {2 * i})")
    return " | ".join(terms) or None


def select_sql(columns: Sequence[Column], relation: str, schema: str | None, incremental: str,
               order_by: Sequence[str], quote: Any, backend: str) -> str:
    """The row path's query as text: the contract's columns (NULL for those the relation lacks), the
    window as two bound parameters, the order; SQLite adds :data:`FLAGS`."""
    picked = [f"{quote(c.physical)} AS {quote(c.name)}" if c.physical is not None else f"NULL AS {quote(c.name)}"
              for c in columns]
    flags = sqlite_flags(columns, quote) if backend == "sqlite" else None
    if flags is not None:
        if len(columns) > 31:
            raise NotPlain("too many columns for the storage flags")
        picked.append(f"{flags} AS {quote(FLAGS)}")
    source = f"{quote(schema)}.{quote(relation)}" if schema else quote(relation)
    first, second = ("?", "?") if backend == "sqlite" else ("$1", "$2")
    # identifiers quoted by the dialect (from the feed's config and contract), the window bound: no values in the text
    return (f"SELECT {', '.join(picked)} FROM {source} WHERE {quote(incremental)} >= {first} "  # noqa: S608
            f"AND {quote(incremental)} < {second} ORDER BY {', '.join(quote(o) for o in order_by)}")


# --- reading ------------------------------------------------------------------------------------------


def batches(url: URL, backend: str, sql: str, params: tuple[Any, ...], columns: Sequence[Column], *,
            timeout: float, deadline: Deadline | None) -> Iterator[tuple[pa.RecordBatch, str | None]]:
    """The query's record batches as the driver reads them, each with the session's time zone
    (PostgreSQL) for timestamps. The deadline is checked between batches and, on PostgreSQL, cancels
    the running statement on the server."""
    if backend == "sqlite":
        from adbc_driver_sqlite import dbapi as sqlite_dbapi  # type: ignore[import-untyped,unused-ignore]

        target = url.database
        if not target or target == ":memory:":
            raise NotPlain("an in-memory SQLite database is the row path's")
        conn: Any = sqlite_dbapi.connect(target)
    else:
        from adbc_driver_postgresql import dbapi as pg_dbapi  # type: ignore[import-untyped,unused-ignore]

        conn = pg_dbapi.connect(libpq_uri(url, timeout))
    timer: threading.Timer | None = None
    try:
        cursor = conn.cursor()
        zone: str | None = None
        if backend == "sqlite":
            cursor.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            cursor.fetchall()
            cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(SQLITE_BATCH_ROWS)})
        else:
            cursor.execute("SELECT current_setting('TimeZone')")
            zone = str(cursor.fetchall()[0][0])
            if deadline is not None:
                timer = threading.Timer(max(0.0, deadline.remaining()), _cancel(cursor))
                timer.daemon = True
                timer.start()
        cursor.execute(sql, params)
        reader = cursor.fetch_record_batch()
        first = True
        while True:
            if deadline is not None:
                deadline.check("query")
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            if first and backend == "sqlite" and batch.num_rows >= SQLITE_BATCH_ROWS:
                guessed(batch, columns)
            first = False
            yield batch, zone
    finally:
        if timer is not None:
            timer.cancel()
        conn.close()


def guessed(batch: pa.RecordBatch, columns: Sequence[Column]) -> None:
    """NotPlain when SQLite's driver had to guess a column's type from a first batch that more batches
    follow: a column all NULL in it (typed int64: text later fails the read), or a number column of
    integers only that may hold reals later (not under INTEGER affinity). Before any chunk is handed on,
    the row path reads instead of the read failing part-way."""
    for c in columns:
        values = batch.column(c.name)
        if c.physical is not None and values.null_count == len(values):
            raise NotPlain("a column with no value in the driver's first batch")
        if c.number and pa.types.is_integer(values.type) and c.affinity != "INTEGER":
            raise NotPlain("a number column of integers only in the driver's first batch")


def libpq_uri(url: URL, timeout: float) -> str:
    """The SQLAlchemy URL as libpq's connection URI, with connect_timeout. Its query (``options=-c ...``) is
    percent-encoded: libpq reads ``+`` as a plus, not as the space SQLAlchemy's rendering makes of it."""
    query = {k: " ".join(v) if isinstance(v, tuple) else v for k, v in url.query.items()}
    query["connect_timeout"] = str(max(1, int(round(timeout))))
    base = url.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    return base + "?" + urlencode(query, quote_via=quote)


def _cancel(cursor: Any) -> Any:
    def run() -> None:
        try:
            cursor.adbc_cancel()
        except Exception as exc:  # noqa: BLE001 - the statement ended meanwhile: nothing to cancel
            log.debug("cancelling the Arrow read at the pull's deadline failed: %s", type(exc).__name__)

    return run


def chunks(source: Iterator[tuple[pa.RecordBatch, str | None]], size: int,
           columns: Sequence[Column]) -> Iterator[pd.DataFrame]:
    """Frames of exactly ``size`` rows (the last may be shorter) — the row path's fetchmany(size) —
    from the driver's batches, each built as the row path builds it (:func:`frame`)."""
    pending: list[pa.RecordBatch] = []
    held = 0
    zone: str | None = None
    for batch, zone in source:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        held += batch.num_rows
        while held >= size:
            table = pa.Table.from_batches(pending)
            yield frame(table.slice(0, size), columns, zone)
            rest = table.slice(size)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield frame(pa.Table.from_batches(pending), columns, zone)


def frame(table: pa.Table, columns: Sequence[Column], zone: str | None) -> pd.DataFrame:
    """The pandas frame the row path builds from the same rows (``pd.DataFrame`` of the driver's values)."""
    seen = 0
    if FLAGS in table.column_names:
        bits = table.column(FLAGS).to_numpy()
        seen = int(np.bitwise_or.reduce(bits)) if len(bits) else 0
        if seen & sum(1 << (2 * i) for i in range(len(columns))):
            raise NotPlain("a value of an unexpected storage class")
    out = {}
    for i, c in enumerate(columns):
        values = table.column(c.name)
        if c.number and not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)
                             or values.null_count == len(values) or _is_numeric(values.type)):
            raise NotPlain("a number column holding text")  # the row path hands the text on; the check names it
        if c.flagged:
            whole = c.number and not seen & (1 << (2 * i + 1))
        else:
            whole = c.integral and _all_whole(values)
        out[c.name] = _column(values, whole, zone)
    return pd.DataFrame(out, index=pd.RangeIndex(table.num_rows))


def _is_numeric(kind: pa.DataType) -> bool:
    """PostgreSQL's numeric as ADBC sends it: an opaque extension type holding the number's text."""
    return (isinstance(kind, pa.BaseExtensionType) and getattr(kind, "type_name", None) == "numeric"
            and pa.types.is_string(kind.storage_type))


def _all_whole(values: pa.ChunkedArray) -> bool:
    """Whether every value of a floating column is a whole number (stored as an integer under INTEGER or
    NUMERIC affinity)."""
    if not pa.types.is_floating(values.type) or values.null_count:
        return False
    import pyarrow.compute as pc

    return bool(pc.all(pc.equal(pc.floor(values), values)).as_py())


def _column(values: pa.ChunkedArray, whole: bool, zone: str | None) -> Any:
    """One column as the row path's: ``whole``: a SQLite number column that held integers only."""
    rows = len(values)
    if values.null_count == rows:
        return pd.Series([None] * rows, dtype=object)
    kind = values.type
    if _is_numeric(kind):
        storage = pa.chunked_array([c.storage for c in values.chunks], type=kind.storage_type)
        return pd.Series([None if v is None else Decimal(v) for v in storage.to_pylist()], dtype=object)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return values.to_pandas()
    if pa.types.is_floating(kind) and kind.bit_width == 64:
        if whole and values.null_count == 0:  # the driver's ints, every one: pandas makes int64 of them
            return values.cast(pa.int64()).to_pandas()
        return values.to_pandas()
    if pa.types.is_integer(kind) and kind.bit_width >= 16 and pa.types.is_signed_integer(kind):
        return values.cast(pa.int64()).to_pandas()
    if pa.types.is_boolean(kind):
        return values.to_pandas()
    if pa.types.is_date32(kind):
        return values.to_pandas(date_as_object=True)
    if pa.types.is_timestamp(kind) and kind.unit == "us":
        series = values.to_pandas()
        if kind.tz is not None:
            series = series.dt.tz_convert(_zone(zone))
        return series
    raise NotPlain(f"an Arrow type the row path builds differently ({kind})")


def _zone(name: str | None) -> Any:
    """The session's TimeZone as psycopg's tzinfo: ZoneInfo(name), else UTC."""
    try:
        return ZoneInfo(name or "UTC")
    except (ValueError, LookupError, OSError):
        return ZoneInfo("UTC")

