"""The ledger's database: its engine, transactions and locks, and making a new ledger at the schema's head.

:class:`LedgerDatabase` is what every part of :class:`fundx.ledger.Ledger` stands on. Two locks keep
several processes apart: the schema lock while a ledger is made or upgraded, and a feed's lock while a
run exchanges it (a second run of the feed is refused rather than kept waiting).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, CursorResult, Engine

from fundx.core.errors import FeedBusy, InternalError
from fundx.core.timeutil import UTC
from fundx.ledger.audit import GENESIS
from fundx.ledger.engine import backend_of, open_engine
from fundx.ledger.revision import schema_state
from fundx.ledger.schema import SCHEMA_HEAD, alembic_version, audit_head, metadata

#: a SQLite opening that met "database is locked" outside the busy timeout's reach is tried again this often
_SQLITE_TRIES = 5


def utc_now() -> datetime:
    """The time the ledger records: aware, in UTC."""
    return datetime.now(UTC)


#: the PostgreSQL advisory lock held while the ledger's schema is made or upgraded (Ledger.schema_lock)
_SCHEMA_LOCK = int.from_bytes(hashlib.sha256(b"fundx.ledger.schema").digest()[:8], "big", signed=True)


def inserted_id(result: CursorResult[Any]) -> int:
    """The primary key of the row an INSERT just added."""
    key = result.inserted_primary_key
    if key is None:
        raise InternalError("the database returned no primary key for the inserted row")
    return key[0]


class LedgerDatabase:
    """The ledger's database: the base of :class:`fundx.ledger.Ledger`, whose parts add what it records."""

    def __init__(self, url: str, *, create: bool = True):
        """Open the ledger at ``url``; make it at the schema's head if it is new. LedgerSchemaError if it is at
        another revision. ``create=False`` opens it as it is, checking nothing (fundx.ledger.migrations upgrades
        through such a Ledger)."""
        self.url = url
        backend_of(url)
        self.engine: Engine = open_engine(url)
        if create:
            self._create()

    @classmethod
    def from_settings(cls, settings=None) -> Self:
        from fundx.core.settings import get_settings, prepare_home

        settings = settings or get_settings()
        prepare_home(settings.home)
        return cls(settings.ledger)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def schema_lock(self) -> Iterator[Connection]:
        """A transaction that has the ledger's schema to itself: making a new ledger, upgrading one.

        PostgreSQL: a transaction-level advisory lock, so that of several processes opening a new ledger
        at the same moment (the workers of ``make serve-pg``, two runs started together) one creates the
        tables while the others wait, then find them (two CREATE TABLE of one name would fail with a
        unique violation in pg_type). SQLite: BEGIN IMMEDIATE, the database's write lock, taken before
        anything is read; the tables it creates are in the transaction (Python's sqlite3 commits nothing
        before DDL), so a ledger is made, or upgraded, whole or not at all.
        """
        if self.dialect == "postgresql":
            with self.engine.begin() as conn:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
                yield conn
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def _create(self) -> None:
        """A new ledger at the schema's head, stamped with it; an existing one must be at the head already.

        At the head, tables missing from it are made again (a test's clean-up may have dropped them) and
        the audit chain's head row is made if missing, as every open always did. On SQLite, an opening that
        meets "database is locked" where the busy timeout does not wait (SQLite answers at once when waiting
        could deadlock: several processes opening one new file at the same moment) is tried again, whole:
        it is one transaction, and the next try finds the ledger made if another opener got there first
        (the same as fundx.ledger.migrations.upgrade).
        """
        for attempt in range(1, _SQLITE_TRIES + 1):
            try:
                return self._create_once()
            except sa.exc.OperationalError as exc:
                if self.dialect != "sqlite" or "locked" not in str(exc.orig) or attempt == _SQLITE_TRIES:
                    raise
                time.sleep(0.2 * attempt)

    def _create_once(self) -> None:
        with self.schema_lock() as conn:
            state = schema_state(conn)
            if state.status == "new":
                metadata.create_all(conn)
                alembic_version.create(conn)
                conn.execute(alembic_version.insert().values(version_num=SCHEMA_HEAD))
            elif state.status == "current":
                metadata.create_all(conn)
            else:
                raise state.error(self.url)
            self._ensure_audit_head(conn)

    def _ensure_audit_head(self, conn: Connection) -> None:
        """The audit chain's head row, made at the genesis hash if the ledger has none yet."""
        dialect_insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
        conn.execute(
            dialect_insert(audit_head)
            .values(id=1, seq=0, hash=GENESIS)
            .on_conflict_do_nothing(index_elements=[audit_head.c.id])
        )

    # one feed at a time -------------------------------------------------------------------------

    @contextmanager
    def feed_lock(self, feed: str) -> Iterator[None]:
        """Hold the feed for one run: a second run of the same feed raises FeedBusy instead of waiting.

        Recovery of a crashed delivery is safe only while no other run can be sealing the same feed.
        PostgreSQL: a session advisory lock (several workers); SQLite: a file lock beside the ledger
        (one machine). Both are released by the operating system or the server if the process dies.
        """
        key = int.from_bytes(hashlib.sha256(b"fundx.feed:" + feed.encode()).digest()[:8], "big", signed=True)
        busy = FeedBusy(f"another run is exchanging {feed} right now", feed=feed)
        if self.dialect == "postgresql":
            with self.engine.connect() as conn:
                if not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                    conn.rollback()
                    raise busy
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
            return
        import fcntl

        database = sa.engine.make_url(self.url).database
        folder = Path(database).parent if database and database != ":memory:" else Path(tempfile.gettempdir())
        folder = folder / "locks"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(folder / f"{feed}.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise busy from None
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def dispose(self) -> None:
        self.engine.dispose()
