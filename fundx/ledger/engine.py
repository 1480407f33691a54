"""Connecting to the ledger's database: the backends it runs on, a SQLite file kept private, the engine.

SQLite (embedded default, a file under FUNDX_HOME) or PostgreSQL (by URL, for several workers); any
other URL is a ConfigurationError naming FUNDX_LEDGER_URL.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fundx.core.errors import ConfigurationError


def backend_of(url: str) -> str:
    """``sqlite`` or ``postgresql``; ConfigurationError naming FUNDX_LEDGER_URL for anything else."""
    action = "set FUNDX_LEDGER_URL to sqlite:///path/ledger.db or postgresql+psycopg://user@host/db"
    try:
        backend = sa.engine.make_url(url).get_backend_name()
    except sa.exc.ArgumentError:
        raise ConfigurationError("FUNDX_LEDGER_URL is not a SQLAlchemy URL", action=action) from None
    if backend not in ("sqlite", "postgresql"):
        raise ConfigurationError(f"FUNDX_LEDGER_URL: the ledger runs on SQLite or PostgreSQL, not {backend}", action=action)
    return backend


def _private_sqlite(url: str) -> None:
    """Make a new SQLite ledger file 0600 before SQLite does (it would follow the umask: 0644 lets every
    user read the console's password hashes), and close an existing one of ours that others may read.

    SQLite creates the -wal, -shm and -journal files with the database file's permissions, so they
    follow; ones left from before are closed too.
    """
    from fundx.core.settings import close_to_owner

    database = sa.engine.make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.parent.is_dir():
        return  # SQLite's own error says the folder is missing
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600))
    except FileExistsError:
        pass
    for name in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
        close_to_owner(name, what="the ledger file")


def open_engine(url: str) -> Engine:
    """The engine of the ledger at ``url``; a SQLite file is made private first, then opened in WAL mode."""
    if url.startswith("sqlite"):
        _private_sqlite(url)
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # WAL lets readers (status, console) run beside a night
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # FULL: a commit survives a power cut. The handoff's commit is the point after which a
            # stage may see a batch; with NORMAL a power cut could undo a commit the stage acted on.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()

        return engine
    connect_args = {"connect_timeout": 10} if url.startswith("postgresql") else {}
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
