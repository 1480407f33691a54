"""``make serve-pg``'s PostgreSQL: Prefect's database and the ledger created if missing (Prefect's with
the ``pg_trgm`` extension it needs), the ledger's tables made once, before any process starts; errors
that say where, as whom, why and what to do, never a password.
"""

from __future__ import annotations

from deployments.serve_setup import PgDatabases, ServeError, plain_url

PG_CONNECT_TIMEOUT = 5


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
    return ServeError(f"PostgreSQL at {where} is not reachable as {user} ({setting}={plain_url(url)}): {reason}", action)


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
