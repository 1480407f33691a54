"""``make serve`` / ``make serve-pg`` / ``make serve-stop``: the exchange unattended on a real Prefect server.

    python -m deployments.run start     # server, work pool, deployments, automations, worker
    python -m deployments.run start --postgres [--workers N]   # the same on PostgreSQL, N workers (2)
    python -m deployments.run status    # what runs, where (exit 1 unless the server and every worker are up)
    python -m deployments.run stop      # the workers, then the server, and whatever they started

``start`` runs, each in the background with its log under ``$FUNDX_HOME/serve/``:

1. ``prefect server start`` on FUNDX_SERVE_HOST:FUNDX_SERVE_PORT (127.0.0.1:4200), its database
   SQLite at ``$PREFECT_HOME/prefect.db`` unless PREFECT_SERVER_DATABASE_CONNECTION_URL says otherwise,
   PREFECT_HOME defaulting to ``$FUNDX_HOME/prefect`` as for the ``fundx`` command; then waits until
   ``/api/health`` answers (about 12 s on a fresh database; at most FUNDX_SERVE_START_TIMEOUT);
2. ``python -m deployments.register`` (work pool ``fundx``, deployments, automations);
3. ``prefect worker start --pool fundx --type process`` (``--workers N`` of them, named
   ``fundx-<host>``, ``fundx-<host>-2``, ...), and waits until the server lists every one online.

With ``--postgres`` (``make serve-pg``) Prefect's own database and the fundx ledger are on a
PostgreSQL server, so that several workers (and machines) share them; before anything starts, both
databases are created if missing (Prefect's with the ``pg_trgm`` extension it needs) and the
ledger's tables are made once:

| variable | default | meaning |
|---|---|---|
| FUNDX_SERVE_PG_URL | postgresql://postgres@127.0.0.1:5432/postgres | the server, the user, and the database to connect to when creating the two below |
| FUNDX_SERVE_PG_PREFECT_DB | fundx_prefect | Prefect's database (the server gets PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://.../fundx_prefect) |
| FUNDX_SERVE_PG_LEDGER_DB | fundx_ledger | the ledger (every worker and flow run gets FUNDX_LEDGER_URL=postgresql+psycopg://.../fundx_ledger) |

A PREFECT_SERVER_DATABASE_CONNECTION_URL or FUNDX_LEDGER_URL already set to a PostgreSQL URL is used
as it is (its database created if missing). Passwords belong in PGPASSWORD or a password file
(~/.pgpass, PGPASSFILE), which both drivers read; one written in a URL is taken out of it and handed
to the processes as PGPASSWORD, so no URL that reaches a log, a state file or a command line holds it.

Every process gets this environment plus FUNDX_HOME and FUNDX_SANDBOX_HOME made absolute and
PREFECT_API_URL pointing at the server: the workers hand it on to each flow-run process, which (in
the repository root, the deployments' working directory) finds the agencies as ``fundx night``
does — FUNDX_* variables first, then the ``exchange.env`` that a running ``fundx sandbox start``
writes under FUNDX_SANDBOX_HOME, read when a feed runs.

Both commands are idempotent: ``start`` with everything up says so (and starts a worker that is
missing); ``stop`` with nothing up too. Pids are in ``$FUNDX_HOME/serve/`` (``server.pid``,
``worker.pid``, ``worker-2.pid``, ...), what ``start`` set up in ``serve/setup.json`` (databases
without passwords, workers); ``stop`` ends each process group and every descendant (flow-run
processes included), TERM first, KILL after 20 s. ``start`` refuses to mix: a server started by
``make serve`` (SQLite) gets no PostgreSQL worker, and the other way round.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeGuard

from deployments.catalog import REPO_ROOT, WORK_POOL
from deployments.settings import ServeSettings, serve_settings
from fundx.core.process import alive

STOP_GRACE_SECONDS = 20.0
#: workers ``start --postgres`` runs when --workers is not given (plain ``start``: one)
PG_WORKERS = 2
PG_SERVER_VAR = "FUNDX_SERVE_PG_URL"
PG_SERVER_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_PREFECT_DB_VAR, PG_PREFECT_DB_DEFAULT = "FUNDX_SERVE_PG_PREFECT_DB", "fundx_prefect"
PG_LEDGER_DB_VAR, PG_LEDGER_DB_DEFAULT = "FUNDX_SERVE_PG_LEDGER_DB", "fundx_ledger"
PREFECT_DB_VAR = "PREFECT_SERVER_DATABASE_CONNECTION_URL"
PREFECT_DB_LEGACY_VAR = "PREFECT_API_DATABASE_CONNECTION_URL"  # Prefect's older name of the same setting
LEDGER_VAR = "FUNDX_LEDGER_URL"
PG_CONNECT_TIMEOUT = 5


class ServeError(Exception):
    """``make serve`` could not do what was asked; ``action`` says what to do."""

    def __init__(self, message: str, action: str) -> None:
        super().__init__(message)
        self.action = action


@dataclass(frozen=True)
class Paths:
    dir: Path

    @property
    def server_pid(self) -> Path:
        return self.dir / "server.pid"

    @property
    def worker_pid(self) -> Path:
        return self.worker_pid_of(1)

    @property
    def server_log(self) -> Path:
        return self.dir / "server.log"

    @property
    def worker_log(self) -> Path:
        return self.worker_log_of(1)

    def worker_pid_of(self, n: int) -> Path:
        return self.dir / ("worker.pid" if n == 1 else f"worker-{n}.pid")

    def worker_log_of(self, n: int) -> Path:
        return self.dir / ("worker.log" if n == 1 else f"worker-{n}.log")

    def worker_numbers(self) -> list[int]:
        """The workers that have a pid file (running or not), in order."""
        found = []
        for path in self.dir.glob("worker*.pid"):
            match = re.fullmatch(r"worker(?:-(\d+))?\.pid", path.name)
            if match:
                found.append(int(match.group(1) or 1))
        return sorted(found)

    @property
    def register_log(self) -> Path:
        return self.dir / "register.log"

    @property
    def state(self) -> Path:
        return self.dir / "serve.json"

    @property
    def setup(self) -> Path:
        """What ``start`` set up: databases (without passwords) and workers; read by status and start."""
        return self.dir / "setup.json"


# PostgreSQL (make serve-pg) ----------------------------------------------------------------------


@dataclass(frozen=True)
class PgDatabases:
    """Where ``make serve-pg`` keeps Prefect's database and the ledger. The URLs hold no password."""

    prefect_url: str  # postgresql+asyncpg://..., for the server (PREFECT_SERVER_DATABASE_CONNECTION_URL)
    ledger_url: str  # postgresql+psycopg://..., for the workers and their flow runs (FUNDX_LEDGER_URL)
    maintenance_db: str  # the database connected to when creating the two (FUNDX_SERVE_PG_URL's)
    # the variables that name each one's server and its database, for error messages
    prefect_from: tuple[str, str]
    ledger_from: tuple[str, str]
    password: str | None = field(default=None, repr=False)  # from a URL; handed on as PGPASSWORD only


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")


def _url(value: str, var: str):
    import sqlalchemy as sa

    try:
        url = sa.engine.make_url(value)
    except (sa.exc.ArgumentError, ValueError):
        raise ServeError(f"{var} is not a database URL",
                         f"set {var} to postgresql://USER@HOST:PORT/DATABASE (password in PGPASSWORD or ~/.pgpass), "
                         f"or unset it") from None
    if url.get_backend_name() != "postgresql":
        raise ServeError(
            f"{var} names a {url.get_backend_name()} database, but `make serve-pg` keeps it on PostgreSQL",
            f"unset {var} (make serve-pg then uses {PG_SERVER_VAR}) or point it at PostgreSQL; "
            f"`make serve` runs on SQLite",
        )
    return url


def _database_name(value: str | None, var: str, default: str) -> str:
    name = value or default
    if not _IDENTIFIER.fullmatch(name):
        raise ServeError(f"{var}: {name!r} is not a plain PostgreSQL database name",
                         f"set {var} to letters, digits and underscores (at most 63), e.g. {default}")
    return name


def pg_databases(environ: dict[str, str] | None = None) -> PgDatabases:
    """Prefect's database and the ledger on PostgreSQL, from the FUNDX_SERVE_PG_* variables (see the module)."""
    import sqlalchemy as sa

    env = os.environ if environ is None else environ
    server = _url(env.get(PG_SERVER_VAR) or PG_SERVER_DEFAULT, PG_SERVER_VAR)

    def on_server(drivername: str, database: str):
        return sa.engine.URL.create(drivername, username=server.username, password=server.password,
                                    host=server.host, port=server.port, database=database, query=server.query)

    prefect_var = PREFECT_DB_VAR if env.get(PREFECT_DB_VAR) else PREFECT_DB_LEGACY_VAR
    if env.get(prefect_var):
        prefect = _url(env[prefect_var], prefect_var)
        if prefect.drivername != "postgresql+asyncpg":
            raise ServeError(f"{prefect_var} must name the asyncpg driver for Prefect's server, "
                             f"not {prefect.drivername}",
                             "write it as postgresql+asyncpg://USER@HOST:PORT/DATABASE, or unset it")
        _database_name(prefect.database, prefect_var, PG_PREFECT_DB_DEFAULT)
        prefect_from = (prefect_var, prefect_var)
    else:
        prefect_from = (PG_SERVER_VAR, PG_PREFECT_DB_VAR)
        prefect = on_server("postgresql+asyncpg",
                            _database_name(env.get(PG_PREFECT_DB_VAR), PG_PREFECT_DB_VAR, PG_PREFECT_DB_DEFAULT))
    if env.get(LEDGER_VAR):
        ledger = _url(env[LEDGER_VAR], LEDGER_VAR)
        _database_name(ledger.database, LEDGER_VAR, PG_LEDGER_DB_DEFAULT)
        dialect = ledger.get_dialect()
        try:  # postgresql:// means psycopg2 to SQLAlchemy; this environment may have psycopg (3) only
            dialect.import_dbapi()
        except ImportError:
            raise ServeError(f"{LEDGER_VAR} asks for the {dialect.driver} driver, which is not installed",
                             "write it as postgresql+psycopg://USER@HOST:PORT/DATABASE") from None
        ledger_from = (LEDGER_VAR, LEDGER_VAR)
    else:
        ledger_from = (PG_SERVER_VAR, PG_LEDGER_DB_VAR)
        ledger = on_server("postgresql+psycopg",
                           _database_name(env.get(PG_LEDGER_DB_VAR), PG_LEDGER_DB_VAR, PG_LEDGER_DB_DEFAULT))
    passwords = {u.password for u in (server, prefect, ledger) if u.password}
    if len(passwords) > 1:
        named = sorted({PG_SERVER_VAR, prefect_from[0], ledger_from[0]})
        raise ServeError(
            f"{', '.join(named[:-1])} and {named[-1]} carry different passwords",
            "take the passwords out of the URLs and put them in a password file (PGPASSFILE, or ~/.pgpass: "
            "host:port:database:user:password per line)",
        )
    return PgDatabases(
        prefect_url=_plain(prefect), ledger_url=_plain(ledger), maintenance_db=server.database or "postgres",
        prefect_from=prefect_from, ledger_from=ledger_from, password=passwords.pop() if passwords else None,
    )


def _plain(url) -> str:
    """The URL without its password (SQLAlchemy's URL.set cannot remove one)."""
    return url._replace(password=None).render_as_string(hide_password=False)


def describe_database(url: str) -> str:
    """``fundx_ledger on 127.0.0.1:5432 as postgres`` for a PostgreSQL URL; the SQLite file; never a password."""
    import sqlalchemy as sa

    try:
        u = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return "an unreadable URL"
    if u.get_backend_name() == "sqlite":
        return f"SQLite at {u.database}"
    host = f"{u.host or 'the local socket'}:{u.port or 5432}"
    return f"PostgreSQL database {u.database} on {host} as {u.username or 'the login user'}"


def _pg_reason(exc: BaseException, password: str | None) -> str:
    """One content-free line about a driver error (the password, should a driver echo it, masked)."""
    cause = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(cause).strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    for line in lines[1:]:  # libpq puts the reason ("Connection refused") on the last line
        if not line.startswith(("(Background", "[SQL")):
            text = f"{text} — {line}"
    if password:
        text = text.replace(password, "***")
    return f"{type(cause).__name__}: {text[:300]}"


def _pg_engine(url: str, password: str | None):
    import sqlalchemy as sa

    target = sa.engine.make_url(url)
    if password:
        target = target.set(password=password)
    return sa.create_engine(target.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT",
                            poolclass=sa.pool.NullPool, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT})


def _unreachable(url, setting: str, exc: BaseException, password: str | None) -> ServeError:
    """``url`` (a sqlalchemy URL, the one connected to) could not be reached: where, as whom, why, what to do."""
    reason = _pg_reason(exc, password)
    where = f"{url.host or 'the local socket'}:{url.port or 5432}"
    user = url.username or "the login user"
    lowered = reason.lower()
    if "password" in lowered or "authentication" in lowered:
        action = (f"check the user in {setting} ({user}) and give its password in PGPASSWORD or ~/.pgpass "
                  f"(better than in the URL)")
    elif "role" in lowered and "does not exist" in lowered:
        action = f"create the role {user} on {where}, or name an existing user in {setting}"
    elif "database" in lowered and "does not exist" in lowered:
        action = f"name an existing database in {setting} to connect to (postgres, say)"
    else:
        action = (f"start PostgreSQL on {where} (e.g. sudo service postgresql start), or point {setting} at a "
                  f"running server; `make serve` runs without PostgreSQL")
    return ServeError(f"PostgreSQL at {where} is not reachable as {user} ({setting}={_plain(url)}): {reason}", action)


def ensure_database(url: str, *, settings: tuple[str, str], maintenance_db: str, password: str | None = None,
                    extensions: tuple[str, ...] = ()) -> bool:
    """Create the database ``url`` names if missing (and ``extensions`` in it); True if it was created.

    ``settings``: the variables naming the server and the database, for the errors."""
    import sqlalchemy as sa

    server_setting, name_setting = settings
    target = sa.engine.make_url(url)
    name = target.database
    maintenance = target._replace(drivername="postgresql", password=None, database=maintenance_db)
    admin = _pg_engine(maintenance.render_as_string(hide_password=False), password)
    created = False
    try:
        try:
            conn = admin.connect()
        except sa.exc.DBAPIError as exc:
            raise _unreachable(maintenance, server_setting, exc, password) from None
        with conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar()
            if not exists:
                try:
                    conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
                    created = True
                except sa.exc.ProgrammingError as exc:
                    if "already exists" not in str(exc.orig):  # created by someone else just now: fine
                        raise ServeError(
                            f"could not create database {name} ({name_setting}) as "
                            f"{target.username or 'the login user'}: {_pg_reason(exc, password)}",
                            f"create it as a PostgreSQL superuser (createdb -h {target.host or 'HOST'} -U postgres "
                            f"{name}), or grant CREATEDB to the user in {server_setting}",
                        ) from None
    finally:
        admin.dispose()
    if extensions:
        engine = _pg_engine(url, password)
        try:
            with engine.connect() as conn:
                for ext in extensions:
                    try:
                        conn.execute(sa.text(f"CREATE EXTENSION IF NOT EXISTS {ext}"))
                    except sa.exc.DBAPIError as exc:
                        raise ServeError(
                            f"database {name} ({name_setting}) needs the {ext} extension, which could not be "
                            f"created: {_pg_reason(exc, password)}",
                            f"install PostgreSQL's contrib modules on the server (Debian: postgresql-contrib), or have "
                            f"a superuser run CREATE EXTENSION {ext} in {name}",
                        ) from None
        except sa.exc.DBAPIError as exc:
            raise _unreachable(target, server_setting, exc, password) from None
        finally:
            engine.dispose()
    return created


def prepare_postgres(pg: PgDatabases, say=print) -> None:
    """Both databases exist (Prefect's with pg_trgm) and the ledger has its tables, before any process starts.

    The tables are made here, once, so that the first flow runs of several workers find them."""
    import sqlalchemy as sa

    from fundx.core.errors import FundxError
    from fundx.ledger import Ledger

    for url, settings, extensions, what in ((pg.prefect_url, pg.prefect_from, ("pg_trgm",), "Prefect's database"),
                                            (pg.ledger_url, pg.ledger_from, (), "the ledger")):
        created = ensure_database(url, settings=settings, maintenance_db=pg.maintenance_db, password=pg.password,
                                  extensions=extensions)
        say(f"{what}: {describe_database(url)}{' (created)' if created else ''}")
    target = sa.engine.make_url(pg.ledger_url)
    try:
        ledger = Ledger((target.set(password=pg.password) if pg.password else target)
                        .render_as_string(hide_password=False))
        ledger.dispose()
    except (sa.exc.DBAPIError, FundxError) as exc:
        raise ServeError(f"the ledger's tables could not be made in {describe_database(pg.ledger_url)} "
                         f"({pg.ledger_from[1]}): {_pg_reason(exc, pg.password)}",
                         f"check that the user in {pg.ledger_from[0]} may create tables in that database") from None


# the set-up --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    settings: ServeSettings
    home: Path
    sandbox_home: Path
    paths: Paths
    env: dict[str, str]  # for the workers and register (PREFECT_API_URL set)
    workers: int = 1
    postgres: PgDatabases | None = None

    @property
    def url(self) -> str:
        return self.settings.api_url

    @property
    def server_env(self) -> dict[str, str]:
        env = dict(self.env)
        env.pop("PREFECT_API_URL", None)
        if self.postgres is not None:
            env.pop(PREFECT_DB_LEGACY_VAR, None)
            env[PREFECT_DB_VAR] = self.postgres.prefect_url
        return env

    def worker_name(self, n: int = 1) -> str:
        return f"fundx-{socket.gethostname()}" + ("" if n == 1 else f"-{n}")

    @property
    def prefect_database(self) -> str:
        if self.postgres is not None:
            return self.postgres.prefect_url
        return (self.env.get(PREFECT_DB_VAR) or self.env.get(PREFECT_DB_LEGACY_VAR)
                or f"sqlite:///{Path(self.env['PREFECT_HOME']) / 'prefect.db'}")

    @property
    def ledger_database(self) -> str:
        return self.env.get(LEDGER_VAR) or f"sqlite:///{self.home / 'ledger.db'}"

    def described(self) -> dict:
        """What this set-up runs on (no password): compared with a running server's before mixing them."""
        return {"postgres": self.postgres is not None, "workers": self.workers,
                "prefect_database": _no_password(self.prefect_database), "ledger": _no_password(self.ledger_database)}


def _no_password(url: str) -> str:
    import sqlalchemy as sa

    try:
        return _plain(sa.engine.make_url(url))
    except (sa.exc.ArgumentError, ValueError):
        return "(unreadable URL)"


def setup(*, postgres: bool = False, workers: int | None = None) -> Setup:
    """Settings, folders and the children's environment (this process's, completed)."""
    from fundx.core.settings import reload_settings

    settings = serve_settings()
    fundx = reload_settings()
    env = dict(os.environ)
    env["FUNDX_HOME"] = str(fundx.home)
    env["FUNDX_SANDBOX_HOME"] = str(fundx.sandbox_home)
    env["PREFECT_HOME"] = str(Path(env.get("PREFECT_HOME") or fundx.home / "prefect").expanduser().resolve())
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    if not env.get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY"):  # about a second per flow run; unused
        env.pop("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", None)
    env["PREFECT_API_URL"] = settings.api_url
    if env.get("PREFECT_SERVER_API_AUTH_STRING") and not env.get("PREFECT_API_AUTH_STRING"):
        env["PREFECT_API_AUTH_STRING"] = env["PREFECT_SERVER_API_AUTH_STRING"]  # the server's basic auth
    env["PYTHONUNBUFFERED"] = "1"
    pg = None
    if postgres:
        pg = pg_databases(env)
        # the workers and their flow runs talk to the server's API, never to its database
        env.pop(PREFECT_DB_VAR, None)
        env.pop(PREFECT_DB_LEGACY_VAR, None)
        env[LEDGER_VAR] = pg.ledger_url  # every worker, and every flow run it starts, on the same ledger
        if env.get(PG_SERVER_VAR):
            env[PG_SERVER_VAR] = _no_password(env[PG_SERVER_VAR])
        if pg.password:
            env["PGPASSWORD"] = pg.password  # read by libpq (psycopg) and asyncpg alike; never in a URL
    return Setup(settings=settings, home=fundx.home, sandbox_home=fundx.sandbox_home,
                 paths=Paths(fundx.home / "serve"), env=env,
                 workers=workers or (PG_WORKERS if postgres else 1), postgres=pg)


# processes --------------------------------------------------------------------------------------


def _cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def ours(pid: int | None) -> TypeGuard[int]:
    """Whether ``pid`` is alive and a Prefect process (not an unrelated process that got the pid again)."""
    if not alive(pid):
        return False
    cmd = _cmdline(pid)
    return cmd is None or "prefect" in cmd


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int(entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal(pids: list[int], group: int | None, sig: int) -> None:
    if group is not None:
        try:
            os.killpg(group, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def terminate(pid: int, grace: float = STOP_GRACE_SECONDS) -> list[int]:
    """TERM the process group ``pid`` leads and every descendant; KILL what is left after ``grace`` s."""
    everyone = [pid, *descendants(pid)]
    group = pid if _leads_group(pid) else None
    _signal(everyone, group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        everyone += [p for p in descendants(pid) if p not in everyone]  # started while stopping
        if not any(alive(p) for p in everyone):
            break
        time.sleep(0.2)
    else:
        _signal([p for p in everyone if alive(p)], group, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(p) for p in everyone):
            time.sleep(0.1)
    _reap(pid)
    return everyone


def terminate_all(pids: list[int], grace: float = STOP_GRACE_SECONDS) -> list[int]:
    """:func:`terminate` several processes at once (so that N workers take one grace period, not N)."""
    if len(pids) <= 1:
        return [p for pid in pids for p in terminate(pid, grace)]
    with ThreadPoolExecutor(max_workers=len(pids)) as pool:
        return [p for ended in pool.map(lambda pid: terminate(pid, grace), pids) for p in ended]


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _private(path: Path, text: str) -> None:
    """A pid or state file, 0600 whatever the umask (written whole: a reader never sees half of it)."""
    from fundx.core.files import write_file_atomic

    write_file_atomic(path, text.encode(), 0o600)


def _log_file(path: Path):
    """A log to append to, made 0600 whatever the umask (the servers' logs may name feeds and flow runs)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o600), "ab")


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with _log_file(log) as out:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        out.write(f"\n--- {stamp} started by deployments.run: {' '.join(cmd[1:])}\n".encode())
        out.flush()
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=REPO_ROOT, start_new_session=True)


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join("    " + line for line in text)


# the server ------------------------------------------------------------------------------------


def _headers() -> dict[str, str]:
    """Basic auth when the server asks for it (PREFECT_SERVER_API_AUTH_STRING / PREFECT_API_AUTH_STRING)."""
    auth = os.environ.get("PREFECT_API_AUTH_STRING") or os.environ.get("PREFECT_SERVER_API_AUTH_STRING")
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    return headers


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        # url: the local Prefect server's http(s) API URL from the serve settings (S310 on these two lines)
        request = urllib.request.Request(f"{url}/health", headers=_headers())  # noqa: S310
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _start_server(s: Setup, say) -> int:
    host, port = s.settings.serve_host, s.settings.serve_port
    if not port_free(host, port):
        raise ServeError(
            f"port {port} on {host} is taken by another program (not a server started by `make serve` "
            f"for FUNDX_HOME={s.home})",
            f"stop that program, or use another port: FUNDX_SERVE_PORT={port + 1} {_make_target(s)}",
        )
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    proc = _spawn(cmd, s.server_env, s.paths.server_log)
    _private(s.paths.server_pid, f"{proc.pid}\n")
    say(f"starting the Prefect server on {s.url.removesuffix('/api')} (pid {proc.pid}; log {s.paths.server_log}; "
        f"database {describe_database(s.prefect_database)})")
    timeout = s.settings.serve_start_timeout
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            s.paths.server_pid.unlink(missing_ok=True)
            raise ServeError(
                f"the Prefect server exited with code {proc.returncode} while starting; "
                f"the end of {s.paths.server_log}:\n{_tail(s.paths.server_log)}",
                f"read {s.paths.server_log}",
            )
        if healthy(s.url, timeout=1.0):
            return proc.pid
        time.sleep(0.3)
    terminate(proc.pid)
    s.paths.server_pid.unlink(missing_ok=True)
    raise ServeError(
        f"the Prefect server did not answer {s.url}/health within {timeout:g} s; the end of "
        f"{s.paths.server_log}:\n{_tail(s.paths.server_log)}",
        f"read {s.paths.server_log}; on a slow machine or database raise FUNDX_SERVE_START_TIMEOUT",
    )


def _wait_healthy(s: Setup, pid: int) -> None:
    deadline = time.monotonic() + s.settings.serve_start_timeout
    while not healthy(s.url, timeout=1.0):
        if not alive(pid) or time.monotonic() > deadline:
            raise ServeError(
                f"the Prefect server (pid {pid}) does not answer {s.url}/health; see {s.paths.server_log}",
                f"make serve-stop, then {_make_target(s)}",
            )
        time.sleep(0.3)


# the workers -----------------------------------------------------------------------------------


def online_workers(url: str, pool: str = WORK_POOL, since: float | None = None) -> list[str]:
    """Names of the pool's workers the server lists as online (with a heartbeat after ``since``)."""
    # url: the local Prefect server's http(s) API URL from the serve settings (S310 on the lines below)
    request = urllib.request.Request(f"{url}/work_pools/{pool}/workers/filter", data=b"{}", method="POST",  # noqa: S310
                                     headers=_headers())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            workers = json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return []
    names = []
    for w in workers:
        beat = w.get("last_heartbeat_time")
        if w.get("status") != "ONLINE" or not beat:
            continue
        if since is not None and datetime.fromisoformat(beat.replace("Z", "+00:00")).timestamp() < since - 1:
            continue
        names.append(w["name"])
    return names


def _spawn_workers(s: Setup, numbers: list[int], say) -> dict[int, subprocess.Popen]:
    """Start the workers ``numbers`` (1 is ``worker.pid``/``fundx-<host>``), without waiting for them."""
    procs: dict[int, subprocess.Popen] = {}
    for n in numbers:
        name, log = s.worker_name(n), s.paths.worker_log_of(n)
        cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", WORK_POOL, "--type", "process",
               "--name", name, "--install-policy", "never", "--no-create-pool-if-not-found"]
        proc = _spawn(cmd, s.env, log)
        _private(s.paths.worker_pid_of(n), f"{proc.pid}\n")
        procs[n] = proc
        say(f"starting worker {name} on pool {WORK_POOL!r} (pid {proc.pid}; log {log})")
    return procs


def _await_workers(s: Setup, procs: dict[int, subprocess.Popen], since: float) -> list[tuple[int, Path]]:
    """Wait until the server lists every worker of ``procs`` online (heartbeat after ``since``).

    If one fails to come up, all of ``procs`` are stopped again and ServeError names its log."""

    def give_up(error: ServeError) -> ServeError:
        terminate_all([p.pid for p in procs.values()])
        for n in procs:
            s.paths.worker_pid_of(n).unlink(missing_ok=True)
        return error

    waiting = {s.worker_name(n): n for n in procs}
    deadline = time.monotonic() + s.settings.serve_start_timeout
    while time.monotonic() < deadline:
        for n, proc in procs.items():
            if proc.poll() is not None:
                log = s.paths.worker_log_of(n)
                raise give_up(ServeError(
                    f"worker {s.worker_name(n)} exited with code {proc.returncode} while starting; the end of "
                    f"{log}:\n{_tail(log)}", f"read {log}"))
        for name in online_workers(s.url, since=since):
            waiting.pop(name, None)
        if not waiting:
            return [(proc.pid, s.paths.worker_pid_of(n)) for n, proc in procs.items()]
        time.sleep(0.5)
    logs = ", ".join(str(s.paths.worker_log_of(n)) for n in waiting.values())
    raise give_up(ServeError(
        f"{'worker' if len(waiting) == 1 else 'workers'} {', '.join(waiting)} did not come online within "
        f"{s.settings.serve_start_timeout:g} s; see {logs}",
        f"read {logs}; on a slow machine raise FUNDX_SERVE_START_TIMEOUT"))


def _register(s: Setup, say, on_pool=None) -> None:
    """``python -m deployments.register``, its lines shown as they come; ``on_pool()`` is called as soon as
    it reports the work pool (so that the workers start while the deployments are registered)."""
    say("registering the work pool, deployments and automations")
    with _log_file(s.paths.register_log) as log:
        proc = subprocess.Popen([sys.executable, "-m", "deployments.register"], env=s.env, cwd=REPO_ROOT,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        try:
            for raw in proc.stdout:  # type: ignore[union-attr]
                log.write(raw)
                line = raw.decode(errors="replace").rstrip("\n")
                say("  " + line)
                if on_pool is not None and line.startswith("work pool "):
                    on_pool()
                    on_pool = None
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if code != 0:
        raise ServeError(
            f"registering failed (exit {code}); the end of {s.paths.register_log}:\n"
            f"{_tail(s.paths.register_log, 20)}",
            f"read {s.paths.register_log}; fix it, then: {_make_target(s)}",
        )


# commands --------------------------------------------------------------------------------------


def _make_target(s: Setup) -> str:
    return "make serve-pg" if s.postgres is not None else "make serve"


def _recorded(s: Setup) -> dict | None:
    """What the running ``start`` set up (serve/setup.json), or None."""
    try:
        return json.loads(s.paths.setup.read_text())
    except (OSError, ValueError):
        return None


def _check_same_setup(s: Setup, recorded: dict | None) -> None:
    """A running server keeps its databases: refuse to add workers of another set-up to it."""
    running = recorded or {"postgres": False}  # a server started before setup.json existed: make serve
    wanted = s.described()
    differs = [key for key in ("prefect_database", "ledger") if recorded and recorded.get(key) != wanted[key]]
    if running.get("postgres") != wanted["postgres"] or differs:
        was = "make serve-pg (PostgreSQL)" if running.get("postgres") else "make serve (SQLite)"
        detail = "; ".join(f"{key}: running {recorded.get(key)}, asked for {wanted[key]}" for key in differs) \
            if recorded else ""
        raise ServeError(
            f"a server started by {was} runs for FUNDX_HOME={s.home}{' (' + detail + ')' if detail else ''}; "
            f"its workers and new ones must share one Prefect database and one ledger",
            f"make serve-stop, then {_make_target(s)}; or keep using the running one ({was.split(' (', maxsplit=1)[0]})",
        )


def start(s: Setup | None = None, say=print) -> dict:
    """Start what is not running; the state (also written to serve/serve.json)."""
    s = s or setup()
    s.paths.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    server = read_pid(s.paths.server_pid)
    server_up = ours(server)
    if server_up:
        _check_same_setup(s, _recorded(s))
    if s.postgres is not None:
        prepare_postgres(s.postgres, say)
    wanted = list(range(1, s.workers + 1))
    running = {n: pid for n in s.paths.worker_numbers() if ours(pid := read_pid(s.paths.worker_pid_of(n)))}
    for n in s.paths.worker_numbers():  # a worker that died and is not asked for any more: forget it
        if n not in running and n not in wanted:
            s.paths.worker_pid_of(n).unlink(missing_ok=True)
    if server_up and all(n in running for n in wanted) and healthy(s.url):
        names = ", ".join(f"{s.worker_name(n)} (pid {running[n]})" for n in sorted(running))
        say(f"already running: Prefect server {s.url.removesuffix('/api')} (pid {server}), "
            f"{'worker' if len(running) == 1 else 'workers'} {names}; `make serve-stop` stops them. After changing "
            f"deployments/: PREFECT_API_URL={s.url} {Path(sys.executable).parent / 'python'} -m deployments.register")
        _next_steps(s, say)
        return _state(s)
    started: list[tuple[int, Path]] = []
    if server_up:
        _wait_healthy(s, server)  # type: ignore[arg-type]
        say(f"Prefect server already running on {s.url.removesuffix('/api')} (pid {server})")
    else:
        if running:  # workers without their server: start them all afresh
            terminate_all(list(running.values()))
            running = {}
        for n in s.paths.worker_numbers():
            s.paths.worker_pid_of(n).unlink(missing_ok=True)
        _private(s.paths.setup, json.dumps(s.described(), indent=2) + "\n")
        started.append((_start_server(s, say), s.paths.server_pid))
    missing = [n for n in wanted if n not in running]
    spawned: dict[int, subprocess.Popen] = {}
    since = time.time()

    def spawn() -> None:  # as soon as the pool exists
        spawned.update(_spawn_workers(s, missing, say))

    try:
        _register(s, say, on_pool=spawn if missing else None)
        for n in sorted(running):
            say(f"worker {s.worker_name(n)} already running (pid {running[n]})")
        if missing and not spawned:
            spawn()
        if spawned:
            _await_workers(s, spawned, since)
    except BaseException:  # leave nothing half-started behind: the workers started here, then the server
        terminate_all([proc.pid for proc in spawned.values() if proc.poll() is None])
        for n in spawned:
            s.paths.worker_pid_of(n).unlink(missing_ok=True)
        for pid, path in reversed(started):
            terminate(pid)
            path.unlink(missing_ok=True)
        if not server_up:
            s.paths.setup.unlink(missing_ok=True)
        raise
    state = _state(s)
    _private(s.paths.state, json.dumps(state, indent=2) + "\n")
    _next_steps(s, say)
    return state


def _databases(s: Setup) -> tuple[str, str]:
    """Prefect's database and the ledger, described (as the running set-up recorded them, if it did)."""
    recorded = _recorded(s) or {}
    prefect = recorded.get("prefect_database") or s.described()["prefect_database"]
    ledger = recorded.get("ledger") or s.described()["ledger"]
    return describe_database(prefect), describe_database(ledger)


def _database(s: Setup) -> str:
    return _databases(s)[0]


def _state(s: Setup) -> dict:
    server = read_pid(s.paths.server_pid)
    server_up = ours(server)
    is_healthy = server_up and healthy(s.url)
    online = set(online_workers(s.url)) if is_healthy else set()
    workers = []
    for n in s.paths.worker_numbers() or [1]:
        pid = read_pid(s.paths.worker_pid_of(n))
        up = ours(pid)
        workers.append({"pid": pid if up else None, "name": s.worker_name(n), "pool": WORK_POOL,
                        "online": up and s.worker_name(n) in online, "log": str(s.paths.worker_log_of(n)),
                        **({} if up or pid is None else {"stale_pid": pid})})
    prefect_db, ledger_db = _databases(s)
    recorded = _recorded(s) or {}
    return {
        "api_url": s.url,
        "ui_url": s.url.removesuffix("/api"),
        "server": {"pid": server if server_up else None, "healthy": is_healthy,
                   "log": str(s.paths.server_log), "database": prefect_db},
        "worker": workers[0],
        "workers": workers,
        "postgres": bool(recorded.get("postgres")) if recorded else s.postgres is not None,
        "ledger": ledger_db,
        "fundx_home": str(s.home),
        "prefect_home": s.env["PREFECT_HOME"],
        "sandbox_env": str(s.sandbox_home / "exchange.env") if (s.sandbox_home / "exchange.env").is_file() else None,
    }


def _next_steps(s: Setup, say) -> None:
    bin_dir = Path(sys.executable).parent
    here = os.getcwd()

    def rel(path: Path) -> str:
        return os.path.relpath(path) if str(path).startswith(here + os.sep) else str(path)

    prefect, fundx = rel(bin_dir / "prefect"), rel(bin_dir / "fundx")
    agencies = s.sandbox_home / "exchange.env"
    prefect_db, ledger_db = _databases(s)
    say("")
    say(f"Prefect UI: {s.url.removesuffix('/api')}    database: {prefect_db}")
    if s.postgres is not None:
        say(f"ledger: {ledger_db} (every worker's FUNDX_LEDGER_URL)")
    if agencies.is_file():
        say(f"agencies: the running sandbox's {rel(agencies)}")
    else:
        say(f"agencies: the FUNDX_* endpoints of this environment; no sandbox runs under {rel(s.sandbox_home)} "
            f"(start one: {fundx} sandbox start)")
    steps = [(f"export PREFECT_API_URL={s.url}", "")]
    if s.postgres is not None:  # so that `fundx status` and the console read the ledger the workers write
        steps.append((f"export {LEDGER_VAR}={s.postgres.ledger_url}", "the workers' ledger, for fundx commands"))
    several = s.workers > 1
    steps += [
        (f"{prefect} deployment ls", ""),
        (f"{prefect} deployment run 'nightly-exchange/nightly' --watch",
         "a night now, through " + ("one of the workers" if several else "the worker")),
        (f"{prefect} deployment run 'exchange-feed/police.deaths'", "one feed"),
        (f"{fundx} status", "what the ledger recorded"),
        ("make serve-status", "the server and " + ("every worker" if several else "the worker")),
        ("make serve-stop", "stop the " + ("workers" if several else "worker") + " and the server"),
    ]
    width = max(len(cmd) for cmd, _ in steps)
    say("next:")
    for cmd, why in steps:
        say(f"  {cmd:<{width}}  # {why}" if why else f"  {cmd}")
    logs = [s.paths.server_log, *(s.paths.worker_log_of(n) for n in range(1, s.workers + 1))]
    say(f"logs: {', '.join(rel(p) for p in logs)} (the flow runs' lines too); "
        f"each run's own in the UI or `prefect flow-run logs <id>`")


def stop(s: Setup | None = None, say=print) -> list[int]:
    """Stop the workers (all at once), then the server (and everything they started); the pids that were ended."""
    s = s or setup()
    ended: list[int] = []
    workers = [(n, read_pid(s.paths.worker_pid_of(n))) for n in s.paths.worker_numbers()]
    running = [(n, pid) for n, pid in workers if ours(pid)]
    if running:
        ended += terminate_all([pid for _, pid in running])
        for n, pid in running:
            say(f"worker{'' if n == 1 else ' ' + s.worker_name(n)} (pid {pid}) stopped")
    for n, _ in workers:
        s.paths.worker_pid_of(n).unlink(missing_ok=True)
    server = read_pid(s.paths.server_pid)
    if ours(server):
        ended += terminate(server)
        say(f"server (pid {server}) stopped")
    s.paths.server_pid.unlink(missing_ok=True)
    s.paths.state.unlink(missing_ok=True)
    s.paths.setup.unlink(missing_ok=True)
    if not ended:
        say("nothing to stop: no server or worker of `make serve` is running for FUNDX_HOME=" + str(s.home))
    return ended


def status(s: Setup | None = None, say=print, as_json: bool = False) -> int:
    """What runs: the server, every worker (online or not), the databases; 0 if all of it is up."""
    s = s or setup()
    state = _state(s)
    workers = state["workers"]
    up = bool(state["server"]["healthy"] and workers and all(w["pid"] for w in workers))
    if as_json:
        say(json.dumps(state, indent=2))
        return 0 if up else 1
    server = state["server"]
    say(f"server: {'up, ' + state['ui_url'] + ' (pid ' + str(server['pid']) + ')' if server['pid'] else 'not running'}"
        f"{'' if server['healthy'] or not server['pid'] else ' — NOT answering /api/health'}; "
        f"database {server['database']}; log {server['log']}")
    say(f"ledger: {state['ledger']}")
    for w in workers:
        if w["pid"]:
            where = f"{w['name']} on pool {WORK_POOL} (pid {w['pid']}, " + \
                ("online" if w["online"] else "NOT listed online by the server") + ")"
        elif w.get("stale_pid"):
            where = f"{w['name']} NOT running (was pid {w['stale_pid']}; its log says why)"
        else:
            where = "not running"
        say(f"worker: {where}; log {w['log']}")
    return 0 if up else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--json", action="store_true", help="status as JSON")
    parser.add_argument("--postgres", action="store_true",
                        help="start: Prefect's database and the ledger on PostgreSQL (FUNDX_SERVE_PG_URL), "
                             "several workers")
    parser.add_argument("--workers", type=int, metavar="N",
                        help=f"start: process workers on the pool (default {PG_WORKERS} with --postgres, else 1)")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be 1 or more")
    from fundx.core.errors import FundxError
    from fundx.core.settings import private_umask

    private_umask()  # the server, the workers and their flow runs inherit it: Prefect's home, logs, pids private

    try:
        if args.command == "start":
            start(setup(postgres=args.postgres, workers=args.workers))
            return 0
        if args.command == "stop":
            stop()
            return 0
        return status(as_json=args.json)
    except ServeError as exc:
        print(f"error: {exc}\nwhat to do: {exc.action}", file=sys.stderr)
        return 1
    except FundxError as exc:
        print(f"error: {exc}\nwhat to do: {exc.action}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
