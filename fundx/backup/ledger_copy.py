"""A consistent copy of the ledger as one SQLite file, and that file put back into a ledger of either backend.

SQLite: the online backup API (:meth:`sqlite3.Connection.backup`), a page-by-page copy that is consistent
while nights write (WAL). PostgreSQL: every table of the schema read inside ONE transaction, REPEATABLE READ
and READ ONLY (the snapshot every statement of it sees is the same), written into a new SQLite file at the same
schema revision: one SQLite file is what ``fundx backup verify`` opens anywhere (its audit chain walked without
a server) and what a restore loads into SQLite or PostgreSQL alike. Where ``pg_dump`` is installed, a
native dump (custom format) is taken too, of the very same snapshot (``pg_export_snapshot`` and
``pg_dump --snapshot``), for whoever prefers ``pg_restore``; a pg_dump that fails (not installed, older than
the server) leaves the backup without it and says so.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import sqlalchemy as sa

from fundx.core.errors import ConfigurationError
from fundx.ledger.engine import backend_of, open_engine
from fundx.ledger.schema import alembic_version, metadata

#: rows moved per INSERT between databases
_BATCH = 5000


def _tables() -> list[sa.Table]:
    return [*metadata.sorted_tables, alembic_version]


def _sqlite_path(url: str) -> Path:
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:":
        raise ConfigurationError("FUNDX_LEDGER_URL: an in-memory SQLite ledger cannot be backed up")
    return Path(database)


def copy_out(url: str, target: Path, *, native: Path | None = None) -> str:
    """Write a consistent copy of the ledger at ``url`` to ``target`` (a new SQLite file, 0600); the method used.
    PostgreSQL: also ``pg_dump`` of the same snapshot to ``native`` when given and pg_dump works."""
    target.unlink(missing_ok=True)
    if backend_of(url) == "sqlite":
        source = _sqlite_path(url)
        if not source.is_file():
            raise ConfigurationError(f"the ledger {source} does not exist", action="check FUNDX_HOME / FUNDX_LEDGER_URL")
        _touch_private(target)
        with closing(sqlite3.connect(source, timeout=30)) as src, closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
        return "sqlite3 online backup"
    engine = open_engine(url)
    try:
        _touch_private(target)
        dst_engine = sa.create_engine(f"sqlite:///{target}")
        try:
            snapshot = engine.connect().execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with snapshot as conn, dst_engine.begin() as out:
                dumped = native is not None and _pg_dump(url, str(conn.execute(sa.text("SELECT pg_export_snapshot()"))
                                                                   .scalar()), native)
                metadata.create_all(out)
                alembic_version.create(out)
                for table in _tables():
                    _copy_rows(conn, out, table)
                conn.rollback()
        finally:
            dst_engine.dispose()
    finally:
        engine.dispose()
    how = "PostgreSQL tables read in one REPEATABLE READ READ ONLY transaction, written to SQLite"
    return how + ("; pg_dump of the same snapshot" if dumped else "; no pg_dump (not installed or it failed)")


def _pg_dump(url: str, snapshot: str, target: Path) -> bool:
    """``pg_dump --format=custom --snapshot=...`` of the ledger's database into ``target``; whether it worked
    (the password goes by PGPASSWORD, never on the command line)."""
    import os
    import shutil
    import subprocess

    exe = shutil.which("pg_dump")
    if exe is None:
        return False
    u = sa.engine.make_url(url)
    env = {**os.environ, **({"PGPASSWORD": str(u.password)} if u.password else {})}
    args = [exe, "--format=custom", f"--snapshot={snapshot}", "--no-owner", "--no-privileges", f"--file={target}",
            "--host", u.host or "localhost", "--port", str(u.port or 5432), "--dbname", str(u.database)]
    if u.username:
        args += ["--username", u.username]
    done = subprocess.run(args, env=env, capture_output=True, timeout=3600, check=False, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        target.unlink(missing_ok=True)
        return False
    return True


def _touch_private(path: Path) -> None:
    import os

    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600))


def _rows(conn: sa.Connection, table: sa.Table) -> Iterator[list[dict]]:
    order = list(table.primary_key.columns) or list(table.columns)
    result = conn.execution_options(stream_results=True).execute(table.select().order_by(*order))
    while chunk := result.mappings().fetchmany(_BATCH):
        yield [dict(r) for r in chunk]


def _copy_rows(src: sa.Connection, dst: sa.Connection, table: sa.Table) -> int:
    count = 0
    for chunk in _rows(src, table):
        dst.execute(table.insert(), chunk)
        count += len(chunk)
    return count


def ledger_exists(url: str) -> bool:
    """Whether ``url`` holds a ledger already (a SQLite file with tables, or a database with the ledger's tables)."""
    if backend_of(url) == "sqlite":
        path = _sqlite_path(url)
        if not path.is_file() or path.stat().st_size == 0:
            return False
    engine = open_engine(url)
    try:
        return bool(set(sa.inspect(engine).get_table_names()) & {t.name for t in _tables()})
    finally:
        engine.dispose()


def copy_in(copy: Path, url: str, *, replace: bool) -> None:
    """Make the ledger at ``url`` the copy's: a SQLite file by the backup API, PostgreSQL table by table (ids
    and sequences as they were). An existing ledger there is replaced only with ``replace``."""
    if ledger_exists(url) and not replace:
        raise ConfigurationError(f"a ledger exists already at {_shown(url)}",
                                 action="restore into another --home or ledger, or pass --force to replace it")
    if backend_of(url) == "sqlite":
        path = _sqlite_path(url)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm", "-journal"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        _touch_private(path)
        with closing(sqlite3.connect(f"file:{copy}?mode=ro", uri=True)) as src, closing(sqlite3.connect(path)) as dst:
            src.backup(dst)
        return
    src_engine = sa.create_engine(f"sqlite:///{copy}")
    engine = open_engine(url)
    try:
        with src_engine.connect() as src, engine.begin() as out:
            metadata.drop_all(out)
            alembic_version.drop(out, checkfirst=True)
            metadata.create_all(out)
            alembic_version.create(out)
            for table in _tables():
                _copy_rows(src, out, table)
            for table in metadata.sorted_tables:  # the next id after the restored ones
                for column in table.primary_key.columns:
                    if column.autoincrement is True or (column.autoincrement == "auto" and isinstance(column.type, sa.Integer)
                                                        and len(table.primary_key.columns) == 1):
                        out.execute(sa.text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "  # noqa: S608 - schema names
                            f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false) "
                            f"WHERE pg_get_serial_sequence('{table.name}', '{column.name}') IS NOT NULL"))
    finally:
        src_engine.dispose()
        engine.dispose()


def _shown(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)
