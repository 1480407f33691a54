"""The database transport: a table or view read incrementally, in chunks, with SQLAlchemy.

The URL comes from a reference (it may hold a password) and is never logged. The window is bound
as parameters: in SQLite, where the agencies keep times as Asia/Shanghai local text
(``2026-10-12 09:30:00``), as text of that form; elsewhere as aware datetimes. Values are handed on
as the database's driver returns them.

Where an ADBC driver is installed (adbc-driver-sqlite, adbc-driver-postgresql), the rows are fetched
as Arrow record batches and built into exactly the frames the row path (SQLAlchemy's tuples) builds —
same chunks, dtypes and Python values — several times faster (connectors/arrowdb.py). What it cannot
build exactly (SQLite's mixed storage classes, an unknown column type, a driver that cannot connect)
the row path reads, as it always did; its errors are the row path's.

Each statement has FUNDX_DB_TIMEOUT (PostgreSQL's statement_timeout; SQLite's busy timeout), and the
whole pull FUNDX_PULL_DEADLINE: a statement still running at the pull's deadline is cancelled
(:func:`_cancelled_at`) and the pull fails with DeadlineExceeded.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import SecretStr
from sqlalchemy import Connection, Engine, column, create_engine, inspect, literal, select, table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    NoSuchModuleError,
    NoSuchTableError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.sql.elements import quoted_name

from connectors import arrowdb
from connectors.base import Connector, Tally
from connectors.config import DatabaseConfig, FeedConfig, reference_name
from contracts import Contract
from fundx.core.errors import (
    ConfigurationError,
    DataError,
    DeadlineExceeded,
    NotFoundError,
    PermanentError,
    TransientError,
)
from fundx.core.retry import Deadline
from fundx.core.settings import Settings, resolve
from fundx.core.timeutil import SHANGHAI, Window

log = logging.getLogger("fundx.connectors.database")


def sqlite_time(moment: datetime) -> str:
    """A window bound as SQLite agencies store times: Asia/Shanghai local text."""
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


class DatabaseConnector(Connector):
    """Pulls a feed from a database relation, chunk by chunk, ordered for stable reads."""

    transport = "database"

    def __init__(self, feed: FeedConfig, contract: Contract, settings: Settings) -> None:
        super().__init__(feed, contract, settings)
        assert feed.database is not None
        self.config: DatabaseConfig = feed.database

    def engine(self) -> Engine:
        """A fresh engine for one pull, with connect and statement timeouts."""
        url = resolve(self.config.url, setting="database.url", feed=self.name, secret=True)
        assert isinstance(url, SecretStr)
        try:
            parsed = make_url(url.get_secret_value())
        except ArgumentError:
            raise ConfigurationError(
                "database.url does not hold a valid SQLAlchemy URL", feed=self.name,
                action=f"fix {reference_name(self.config.url)}",
            ) from None
        if (parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
                and not Path(parsed.database).is_file()):  # SQLite would create an empty file in its place
            raise NotFoundError(
                f"the SQLite database file {Path(parsed.database).name} does not exist", feed=self.name,
                action=f"check database.url ({self.config.url})",
            )
        timeout = self.settings.db_timeout
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            connect_args["timeout"] = timeout
        elif parsed.get_backend_name() == "postgresql":
            connect_args["connect_timeout"] = max(1, int(round(timeout)))
            # added to the URL's own options (which may set search_path), not in place of them
            given = parsed.query.get("options", "")
            given = " ".join(given) if isinstance(given, tuple) else given
            parsed = parsed.update_query_dict({"options": f"{given} -c statement_timeout={int(timeout * 1000)}".strip()})
        try:
            return create_engine(parsed, connect_args=connect_args, pool_pre_ping=False)
        except (NoSuchModuleError, ImportError) as exc:
            raise ConfigurationError(
                f"no database driver for {parsed.drivername} ({type(exc).__name__})", feed=self.name,
                action="pip install the driver (psycopg[binary] for PostgreSQL)",
            ) from None

    def _pull(self, window: Window, tally: Tally) -> pd.DataFrame:
        return tally.retry(partial(self._read, window, tally), what="query")

    def _read(self, window: Window, tally: Tally) -> pd.DataFrame:
        start_pages, start_rows = tally.pages, tally.rows  # a retried query starts the count again
        try:
            chunks = list(self._stream(window, tally, self.config.chunk_size))
        except TransientError:
            tally.pages, tally.rows = start_pages, start_rows
            raise
        if not chunks:
            return pd.DataFrame({name: [] for name in self.contract.names}, dtype=object)
        frame = pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]
        self._check_numbers(frame)
        # a database sends no bytes we can count: report the frame's size in memory instead
        tally.bytes += int(frame.memory_usage(index=False, deep=True).sum())
        return frame

    streams = True

    def chunks(self, window: Window, tally: Tally, rows: int) -> Iterator[pd.DataFrame]:
        """The window's rows read from one server-side cursor, ``rows`` at a time (fundx.exchange.stream)."""
        for frame in self._stream(window, tally, min(rows, self.config.chunk_size)):
            self._check_numbers(frame)
            tally.bytes += int(frame.memory_usage(index=False, deep=True).sum())
            yield frame

    def _stream(self, window: Window, tally: Tally, size: int) -> Iterator[pd.DataFrame]:
        engine = self.engine()
        names = list(self.contract.names)
        deadline = tally.deadline
        try:
            with engine.connect() as conn, _cancelled_at(conn, deadline):
                columns = self._columns(conn)
                self.check_columns(columns, where=f"relation {self.config.relation}")
                query = self._query(columns, window, conn.dialect.name)
                if self.arrow and arrowdb.driver(conn.dialect.name) is not None and not self._rows_only:
                    if conn.dialect.name == "sqlite":  # the first row under the deadline (arrowdb's docstring)
                        probe = conn.execution_options(stream_results=True).execute(query)
                        probe.fetchmany(1)
                        probe.close()
                    if (yield from self._arrow_chunks(conn, engine, columns, window, tally, size)):
                        return
                result = conn.execution_options(stream_results=True, yield_per=size).execute(query)
                while True:
                    if deadline is not None:  # a fetch started in time; the watchdog cancels one that runs past
                        deadline.check("query")
                    batch = result.fetchmany(size)
                    if not batch:
                        break
                    # column lists built by index: pandas probes Row objects attribute by attribute
                    frame = pd.DataFrame({name: [row[i] for row in batch] for i, name in enumerate(names)})
                    tally.page(len(batch), 0)
                    yield frame
        except OperationalError as exc:
            if deadline is not None and deadline.passed:  # cancelled by _cancelled_at (or slow anyway)
                raise deadline.exceeded("query") from None
            raise TransientError(
                f"database unavailable or too slow ({_driver_error(exc)})", feed=self.name,
            ) from None
        except NoSuchTableError:
            raise self._not_found() from None
        except DBAPIError as exc:
            if deadline is not None and deadline.passed:
                raise deadline.exceeded("query") from None
            raise PermanentError(
                f"the query on {self.config.relation} failed ({_driver_error(exc)})", feed=self.name,
                action=f"ask {self.feed.agency} whether the relation {self.config.relation} changed",
            ) from None
        except SQLAlchemyError as exc:
            raise PermanentError(f"database error ({type(exc).__name__})", feed=self.name) from None
        finally:
            engine.dispose()

    #: read through an ADBC driver's Arrow batches where one is installed (connectors/arrowdb.py)
    arrow: bool = True
    _rows_only = False  # the Arrow path stopped part-way once: this connector reads rows from now on

    def _arrow_chunks(self, conn: Connection, engine: Engine, present: list[str], window: Window, tally: Tally,
                      size: int) -> Generator[pd.DataFrame, None, bool]:
        """The window's chunks through the Arrow path; False (nothing yielded) when the row path must read
        them instead — the driver cannot connect or read them, or they are not plain (arrowdb.NotPlain)."""
        backend = conn.dialect.name
        have = set(present)
        quote = conn.dialect.identifier_preparer.quote_identifier  # always quoted, as the row path's
        declared: dict[str, str | None] = {}
        if backend == "sqlite":  # the declared types, for SQLite's affinities (arrowdb.affinity)
            where = f"{quote(self.config.db_schema)}." if self.config.db_schema else ""
            declared = {row[1]: row[2] for row in conn.exec_driver_sql(
                f"PRAGMA {where}table_info({quote(self.config.relation)})").fetchall()}
        columns = [arrowdb.Column(c.name, c.physical_name if c.physical_name in have else None,
                                  c.logical_type in ("number", "integer"),
                                  arrowdb.affinity(declared.get(c.physical_name)) if backend == "sqlite" else None)
                   for c in self.contract.columns]
        incremental = self.contract.column(self.config.incremental_column).physical_name
        order = [self.contract.column(n).physical_name for n in self.config.order_by]
        params: tuple[Any, ...] = ((sqlite_time(window.start), sqlite_time(window.end)) if backend == "sqlite"
                                   else (window.start, window.end))
        deadline = tally.deadline
        yielded = False
        try:
            sql = arrowdb.select_sql(columns, self.config.relation, self.config.db_schema, incremental, order,
                                     quote, backend)
            source = arrowdb.batches(engine.url, backend, sql, params, columns, timeout=self.settings.db_timeout,
                                     deadline=deadline)
            for frame in arrowdb.chunks(source, size, columns):
                tally.page(len(frame), 0)
                yielded = True
                yield frame
            return True
        except DeadlineExceeded:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the driver raised, the row path reads (and names it)
            if deadline is not None and deadline.passed:
                raise deadline.exceeded("query") from None
            if not yielded:
                log.info("%s: the Arrow read gave way to the row path (%s)", self.name, type(exc).__name__)
                return False
            self._rows_only = True
            raise TransientError(f"the Arrow read stopped part-way ({type(exc).__name__}); reading rows again",
                                 feed=self.name) from None

    def _check_numbers(self, frame: pd.DataFrame) -> None:
        """DataError naming the column if a column the contract types as a number holds anything else
        (text that is not a number, a date, bytes): the view's column changed type. Never a value."""
        for c in self.contract.columns:
            if c.logical_type not in ("number", "integer") or c.name not in frame.columns:
                continue
            values = frame[c.name]
            if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
                continue
            numbers = pd.to_numeric(values.astype(object).map(_number_or_none), errors="coerce")
            wrong = numbers.isna().to_numpy() & values.notna().to_numpy()
            if wrong.any():
                named = c.name if c.physical_name == c.name else f"{c.name} ({c.physical_name})"
                raise DataError(
                    f"column {named} of {self.config.relation} holds {int(wrong.sum())} value(s) that are not numbers "
                    f"(the first in row {int(wrong.argmax()) + 1}); the contract has {c.logical_type}",
                    feed=self.name,
                    action=f"ask {self.feed.agency} whether the view {self.config.relation} changed the type of {named}",
                )

    def _columns(self, conn: Any) -> list[str]:
        """The relation's column names; NotFoundError if it is not there."""
        inspector = inspect(conn)
        if not inspector.has_table(self.config.relation, schema=self.config.db_schema):
            raise self._not_found()
        return [c["name"] for c in inspector.get_columns(self.config.relation, schema=self.config.db_schema)]

    def _not_found(self) -> NotFoundError:
        where = f"{self.config.db_schema}.{self.config.relation}" if self.config.db_schema else self.config.relation
        return NotFoundError(
            f"the relation {where} does not exist", feed=self.name,
            action=f"check database.relation and database.url, or ask {self.feed.agency} about the view",
        )

    def _query(self, present: list[str], window: Window, dialect: str) -> Any:
        """SELECT the contract's columns in the window, ordered; quoted identifiers, bound parameters."""
        have = set(present)
        source = table(
            quoted_name(self.config.relation, quote=True),
            *[column(quoted_name(c.physical_name, quote=True)) for c in self.contract.columns if c.physical_name in have],
            schema=quoted_name(self.config.db_schema, quote=True) if self.config.db_schema else None,
        )
        picked = [
            source.c[c.physical_name].label(c.name) if c.physical_name in have else literal(None).label(c.name)
            for c in self.contract.columns
        ]
        incremental = source.c[self.contract.column(self.config.incremental_column).physical_name]
        start: str | datetime
        end: str | datetime
        if dialect == "sqlite":
            start, end = sqlite_time(window.start), sqlite_time(window.end)
        else:
            start, end = window.start, window.end
        return (
            select(*picked)
            .where(incremental >= start, incremental < end)
            .order_by(*[source.c[self.contract.column(n).physical_name] for n in self.config.order_by])
        )


@contextmanager
def _cancelled_at(conn: Connection, deadline: Deadline | None) -> Iterator[None]:
    """Cancel the statement running on ``conn`` when the pull's deadline passes.

    SQLite: a progress handler, called every few thousand virtual-machine steps, aborts the statement
    ("interrupted"). PostgreSQL: a watchdog thread asks the server to cancel the running statement
    (psycopg's thread-safe cancel); a fetch that starts after the deadline is stopped by the caller's
    check. Either way the statement fails with an OperationalError that the caller reads as
    DeadlineExceeded. Other backends: only the caller's checks between fetches.
    """
    if deadline is None:
        yield
        return
    dbapi: Any = conn.connection.dbapi_connection
    backend = conn.dialect.name
    timer: threading.Timer | None = None
    if backend == "sqlite":
        dbapi.set_progress_handler(lambda: 1 if deadline.passed else 0, _SQLITE_PROGRESS_STEPS)
    elif backend == "postgresql":
        cancel = getattr(dbapi, "cancel_safe", None) or getattr(dbapi, "cancel", None)
        if cancel is not None:
            timer = threading.Timer(max(0.0, deadline.remaining()), _quietly(cancel))
            timer.daemon = True
            timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
        if backend == "sqlite":
            dbapi.set_progress_handler(None, 0)


#: SQLite virtual-machine steps between two looks at the pull's deadline (a look costs a clock read)
_SQLITE_PROGRESS_STEPS = 10_000


def _quietly(call: Callable[[], Any]) -> Callable[[], None]:
    """``call`` for a watchdog thread: a cancel that fails (the connection closed meanwhile) is no news."""

    def run() -> None:
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - the statement ended or the connection went: nothing to cancel
            log.debug("cancelling the statement at the pull's deadline failed: %s", type(exc).__name__)

    return run


def _number_or_none(value: Any) -> Any:
    """A value to_numeric may read as a number: numbers and numeric text as they are; anything else
    (a bool, a date, bytes, text that is no number) as None, so it counts as not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, Decimal, np.number)):
        return value
    if isinstance(value, str):
        return value if _NUMERIC_TEXT.match(value.strip()) else None
    return None


_NUMERIC_TEXT = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")


def _driver_error(exc: DBAPIError) -> str:
    """The driver's error type, never its message (which may quote the statement or a value)."""
    orig = getattr(exc, "orig", None)
    return type(orig).__name__ if orig is not None else type(exc).__name__
