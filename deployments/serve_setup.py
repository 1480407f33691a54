"""What ``make serve`` runs with: its folder of pid files and logs, where Prefect's database and the
ledger are (SQLite, or PostgreSQL from the FUNDX_SERVE_PG_* variables for ``make serve-pg``), and the
environment every process it starts gets. ``setup()`` reads it all; nothing here starts a process.

The variables, and how passwords are kept out of URLs, are described in :mod:`deployments.run`.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from deployments.settings import ServeSettings, serve_settings

#: workers ``start --postgres`` runs when --workers is not given (plain ``start``: one)
PG_WORKERS = 2
PG_SERVER_VAR = "FUNDX_SERVE_PG_URL"
PG_SERVER_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_PREFECT_DB_VAR, PG_PREFECT_DB_DEFAULT = "FUNDX_SERVE_PG_PREFECT_DB", "fundx_prefect"
PG_LEDGER_DB_VAR, PG_LEDGER_DB_DEFAULT = "FUNDX_SERVE_PG_LEDGER_DB", "fundx_ledger"
PREFECT_DB_VAR = "PREFECT_SERVER_DATABASE_CONNECTION_URL"
PREFECT_DB_LEGACY_VAR = "PREFECT_API_DATABASE_CONNECTION_URL"  # Prefect's older name of the same setting
LEDGER_VAR = "FUNDX_LEDGER_URL"


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
        prefect_url=plain_url(prefect), ledger_url=plain_url(ledger), maintenance_db=server.database or "postgres",
        prefect_from=prefect_from, ledger_from=ledger_from, password=passwords.pop() if passwords else None,
    )


def plain_url(url) -> str:
    """The URL without its password (SQLAlchemy's URL.set cannot remove one)."""
    return url._replace(password=None).render_as_string(hide_password=False)


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
        return plain_url(sa.engine.make_url(url))
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


def make_target(s: Setup) -> str:
    """The make target that starts this set-up, for what to do next in messages."""
    return "make serve-pg" if s.postgres is not None else "make serve"
