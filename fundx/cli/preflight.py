"""What a command needs, checked before anything slow starts: one clear line and a non-zero exit if it is missing.

Without these checks the first sign of a missing prerequisite came late and long: Prefect's ephemeral
server, unable to make its home or reach its database, retries for about two minutes and ends in a
forty-line traceback; a ledger URL pointing at a server that is down waits out its connect timeout; a
feed's missing setting shows after the server has started; a key that cannot be read shows when the
first batch is sealed. Each check here takes well under a second and says which setting to fix:

- :func:`home` — FUNDX_HOME exists (made 0700 if missing) and this user may write it;
- :func:`ledger` — the ledger opens (FUNDX_LEDGER_URL, or SQLite in FUNDX_HOME);
- :func:`prefect` — a configured Prefect server answers (PREFECT_API_URL), else the ephemeral server can
  make its home (PREFECT_HOME) and reach its database (PREFECT_SERVER_DATABASE_CONNECTION_URL);
- :func:`keys` — the exchange's signing key, its certificate and the CA load (FUNDX_KEYS_*);
- :func:`feeds` — a feed's config loads, its ``env:`` references are set and its drop folder exists
  (``secret:`` references are Prefect blocks: they can only be read once Prefect runs).
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from fundx.core.errors import ConfigurationError, FundxError, NotFoundError

if TYPE_CHECKING:
    from fundx.core.settings import Settings

#: seconds a probe of a server (Prefect, a database) may take
PROBE_SECONDS = 3.0


def home(settings: Settings | None = None) -> Path:
    """FUNDX_HOME, made (0700) if it is missing; ConfigurationError naming the setting if it cannot be."""
    from fundx.core.settings import get_settings, prepare_home

    settings = settings or get_settings()
    try:
        made = prepare_home(settings.home)
        probe = made / f".fundx-write-check-{os.getpid()}"
        probe.touch(mode=0o600)
        probe.unlink()
    except OSError as exc:
        raise ConfigurationError(
            f"FUNDX_HOME ({settings.home}) cannot be made or written ({type(exc).__name__})",
            action="set FUNDX_HOME to a folder this user may create and write, or fix its permissions",
        ) from None
    return made


def ledger(settings: Settings | None = None) -> None:
    """The ledger opens: ConfigurationError naming FUNDX_LEDGER_URL if its server does not answer."""
    import sqlalchemy as sa

    from fundx.core.settings import get_settings
    from fundx.ledger.engine import backend_of

    settings = settings or get_settings()
    url = settings.ledger
    if backend_of(url) == "sqlite":
        return  # a file in FUNDX_HOME (checked by home()), or the path FUNDX_LEDGER_URL names: SQLite says
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": int(PROBE_SECONDS)})
    try:
        with engine.connect():
            pass
    except sa.exc.DBAPIError as exc:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
        raise ConfigurationError(
            f"the ledger at FUNDX_LEDGER_URL ({shown}) cannot be opened ({type(exc.orig).__name__})",
            action="start its database server or fix FUNDX_LEDGER_URL; unset it to keep the ledger in SQLite "
                   "under FUNDX_HOME",
        ) from None
    finally:
        engine.dispose()


def prefect() -> None:
    """Prefect can start: the server PREFECT_API_URL names answers, or the ephemeral server can make its
    home and reach its database. ConfigurationError naming the setting otherwise."""
    api = os.environ.get("PREFECT_API_URL")
    if api:
        health = api.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=PROBE_SECONDS) as answer:  # noqa: S310 - the operator's own URL
                answer.read(64)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ConfigurationError(
                f"the Prefect server at PREFECT_API_URL ({api}) does not answer ({type(exc).__name__})",
                action="start it (make serve), or unset PREFECT_API_URL to run on an ephemeral server in FUNDX_HOME",
            ) from None
        return
    where = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    try:
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        probe = where / f".fundx-write-check-{os.getpid()}"
        probe.touch(mode=0o600)
        probe.unlink()
    except OSError as exc:
        raise ConfigurationError(
            f"PREFECT_HOME ({where}) cannot be made or written ({type(exc).__name__}): Prefect's ephemeral "
            "server keeps its database there", action="unset PREFECT_HOME (fundx keeps it in FUNDX_HOME), or fix it",
        ) from None
    for name in ("PREFECT_SERVER_DATABASE_CONNECTION_URL", "PREFECT_API_DATABASE_CONNECTION_URL"):
        url = os.environ.get(name)
        if url and not url.startswith("sqlite"):
            _reachable(url, name)


def _reachable(url: str, setting: str) -> None:
    """A database server named by a URL accepts a TCP connection; ConfigurationError naming ``setting``."""
    import sqlalchemy as sa

    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigurationError(f"{setting} is not a database URL", action=f"fix {setting}") from None
    host, port = parsed.host or "127.0.0.1", parsed.port or 5432
    try:
        socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
    except OSError as exc:
        raise ConfigurationError(
            f"the database {setting} names ({host}:{port}) does not answer ({type(exc).__name__})",
            action=f"start it, or unset {setting} to let Prefect keep its database in SQLite",
        ) from None


def keys(settings: Settings | None = None) -> None:
    """The exchange's signing key, its certificate and the CA load when production keys are configured
    (FUNDX_KEYS_*); a development PKI is made on first use and needs nothing here."""
    from fundx.core.settings import get_settings
    from fundx.crypto.keys import KeySettings, KeyStore

    key_settings = KeySettings()
    if not key_settings.production:
        return
    store = KeyStore(key_settings, home=(settings or get_settings()).home)
    try:
        store.exchange_signer()
        store.ca()
    except FundxError:
        raise
    except (OSError, ValueError) as exc:  # a file that cannot be read, or bytes that are not a key
        raise ConfigurationError(
            f"the exchange's keys cannot be read ({type(exc).__name__})",
            action="check FUNDX_KEYS_EXCHANGE_KEY, FUNDX_KEYS_EXCHANGE_CERT and FUNDX_KEYS_CA (a file path, "
                   "env:NAME or secret:BLOCK holding PEM) and the key's password",
        ) from None


def feeds(names: list[str]) -> dict[str, FundxError]:
    """What stops each feed before it is pulled: its config does not load, an ``env:`` reference it
    names is not set, its drop folder does not exist. Feed -> the error (no entry: nothing found)."""
    from connectors import load_feed
    from fundx.core.settings import resolve

    found: dict[str, FundxError] = {}
    for name in names:
        try:
            config = load_feed(name)
            for setting, ref in _references(config.model_dump(exclude_none=True)):
                resolve(ref, setting=setting, feed=name)
            if config.filedrop is not None:
                folder = Path(resolve(config.filedrop.directory, setting="filedrop.directory", feed=name))
                if not folder.is_dir():
                    raise NotFoundError(
                        f"the drop folder named by filedrop.directory does not exist ({folder.name})", feed=name,
                        action=f"check filedrop.directory ({config.filedrop.directory}) and that "
                               f"{config.agency}'s drop is mounted",
                    )
        except FundxError as exc:
            found[name] = exc
    return found


def _references(value: object, where: str = "") -> list[tuple[str, str]]:
    """Every ``env:`` reference in a config's values, with the key it sits under (dotted)."""
    if isinstance(value, str):
        return [(where, value)] if value.startswith("env:") else []
    if isinstance(value, dict):
        return [r for k, v in value.items() for r in _references(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, (list, tuple)):
        return [r for i, v in enumerate(value) for r in _references(v, f"{where}.{i}")]
    return []
