"""Typed settings for the exchange, read from FUNDX_* environment variables.

Everything the exchange keeps lives under one directory, FUNDX_HOME (default ./var): the ledger,
keys, stage inboxes (``inboxes/<stage>/<batch>/``), the stages' acknowledgements (``acks/``) and,
in the embedded default, the stages' own side (``stages/<stage>/``). The sandbox agencies keep *their* data apart, under
FUNDX_SANDBOX_HOME (default ./agencies), because that side holds plain personal data.

Secrets are never written in configs. A config value such as ``env:FUNDX_POLICE_CLIENT_SECRET`` or
``secret:fundx-police-client-secret`` is a *reference*, resolved by :func:`resolve` at the moment it is
used: first the process environment, then the ``exchange.env`` file that a running sandbox hands to
the exchange, then (for ``secret:``) a Prefect Secret block.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, cast, overload

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fundx.core.errors import ConfigurationError
from fundx.core.timeutil import aware

#: an amount of memory as DuckDB's memory_limit takes it: a number and a unit (KB, MB, GB, TB or KiB ... TiB)
_MEMORY = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B)", re.IGNORECASE)
_UNIT = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def number_bytes(number: float, unit: str) -> int:
    """Bytes in ``number`` ``unit`` (a unit of :data:`_UNIT`, as the matching_memory setting normalises it)."""
    return int(number * _UNIT[unit])


class Settings(BaseSettings):
    """The exchange's settings; each field is the environment variable FUNDX_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="FUNDX_", extra="ignore", validate_default=True)

    home: Path = Field(Path("var"), description="where the exchange keeps its state")
    sandbox_home: Path = Field(Path("agencies"), description="where the sandbox agencies keep their data")
    ledger_url: str | None = Field(
        None, description="SQLAlchemy URL of the ledger, e.g. postgresql+psycopg://user@host:5432/fundx; "
                          "default SQLite at FUNDX_HOME/ledger.db")
    feeds_dir: Path | None = Field(
        None, description="the folder of the feed configs (<feed>.yaml) the exchange pulls, and that the sandbox, "
                          "the conformance suite and the tests derive their feeds from; default connectors/feeds")
    contracts_dir: Path | None = Field(
        None, description="the folder of the data contracts (<feed>.odcs.yaml, and their released/ copies) the "
                          "feed configs name; default contracts/")
    city: str = Field(
        "hangzhou", description="the deployment's city file: a shipped city (hangzhou, shenyang) or a path to a "
                                "city YAML file (fundx/core/city.py); its districts route inspection orders")
    initial_watermark: datetime = Field(
        aware("2020-01-01"), description="where a feed that was never pulled starts"
    )
    http_connect_timeout: float = Field(5.0, gt=0, description="seconds to open a connection")
    http_read_timeout: float = Field(30.0, gt=0, description="seconds to wait for a response's bytes")
    http_request_deadline: float = Field(
        120.0, gt=0, description="seconds one HTTP request may take in all, connect to last byte (an agency that "
                                 "trickles its answer never trips the read timeout)",
    )
    pull_deadline: float = Field(
        1800.0, gt=0, description="seconds one feed's pull may take in all: every page, query, retry and backoff; "
                                  "past it the feed fails (DeadlineExceeded) and the night goes on",
    )
    db_timeout: float = Field(30.0, gt=0, description="seconds for a database connect or statement")
    retry_attempts: int = Field(
        6, ge=1, le=20, description="tries of one request before giving up: exponential backoff with full jitter "
                                    "between tries; an agency's Retry-After is honoured up to retry_max_delay")
    retry_base_delay: float = Field(0.5, ge=0, description="first backoff delay in seconds (doubles each try)")
    retry_max_delay: float = Field(30.0, ge=0, description="longest single backoff or Retry-After honoured")
    max_response_bytes: int = Field(64 * 1024 * 1024, gt=0, description="largest HTTP body accepted")
    chunk_rows: int = Field(
        250_000, ge=1, description="rows a streamed feed reads, checks and spools at a time (bounds its memory)",
    )
    file_max_columns: int = Field(
        1024, ge=1, description="most columns a dropped file's header may have (a wider file is refused unread)",
    )
    file_max_cell_chars: int = Field(
        32_767, ge=1, description="longest value, in characters, a dropped file may hold (Excel's own cell limit)",
    )
    file_max_cells: int = Field(
        100_000_000, ge=1,
        description="most cells (rows x header columns) of a dropped file read whole; a streamed feed reads any size",
    )
    part_bytes: int = Field(
        64 * 1024 * 1024, ge=4096, le=64 * 1024 * 1024,
        description="largest Parquet part a batch is split into before sealing (a stage opens one part in memory)",
    )
    matching_memory: str = Field(
        "512MB", description="the most memory the matching stage's DuckDB may hold (e.g. 512MB, 1GB, 2GiB): past "
                             "it the rules spill to a folder under FUNDX_HOME (removed after the night); the "
                             "process holds more than this (the store's files, Python, the exchange before it)",
    )
    backup_dir: Path | None = Field(
        None, description="where `fundx backup create` writes its sealed backups and the exchange keeps the sealed "
                          "originals of every pulled batch (both encrypted to the backup certificate); default "
                          "FUNDX_HOME/backups — production puts it on another disk or machine",
    )

    @field_validator("home", "sandbox_home", "feeds_dir", "contracts_dir", "backup_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()

    @field_validator("city")
    @classmethod
    def _city_file(cls, value: str) -> str:
        from fundx.core.city import city_path, shipped_cities

        path = city_path(value)
        if not path.is_file():
            raise ValueError(f"no city file {value!r}: a shipped city ({', '.join(shipped_cities())}) "
                             "or the path to a city YAML file")
        # a path is made absolute here, so that workers started elsewhere read the same file
        return value.strip() if value.strip() in shipped_cities() else str(path.resolve())

    @field_validator("matching_memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        match = _MEMORY.fullmatch(value.strip())
        if match is None or float(match.group(1)) <= 0:
            raise ValueError(f"{value!r} is not an amount of memory such as 512MB, 1GB or 2GiB")
        number, unit = match.group(1), match.group(2)
        unit = unit.upper().replace("IB", "iB")
        if number_bytes(float(number), unit) < 16 * 1024 * 1024:
            raise ValueError(f"{value!r} is below 16MB, too little for the matching stage's DuckDB")
        return f"{number}{unit}"

    @field_validator("initial_watermark", mode="before")
    @classmethod
    def _aware(cls, value):
        return aware(value)

    @property
    def ledger(self) -> str:
        return self.ledger_url or f"sqlite:///{self.home / 'ledger.db'}"

    @property
    def backups(self) -> Path:
        """Where backups and the sealed originals go: FUNDX_BACKUP_DIR, else FUNDX_HOME/backups."""
        return self.backup_dir or self.home / "backups"

    @property
    def sandbox_env_file(self) -> Path:
        """Credentials and endpoints a running sandbox hands to the exchange."""
        return self.sandbox_home / "exchange.env"


#: the umask of every fundx process: what it creates is 0600 (files) and 0700 (folders), whatever the
#: shell's umask — Prefect's home, Great Expectations' Data Docs and SQLite's -wal/-shm files included
PRIVATE_UMASK = 0o077


def private_umask() -> None:
    """Set this process's umask to :data:`PRIVATE_UMASK`; its children (Prefect's server and workers,
    the flow runs they start) inherit it. Called first thing by every entry point: the ``fundx``
    command, the flows (a Prefect worker may have been started with any umask), the console server,
    ``python -m deployments.run`` and ``deployments.serve``. Files with secrets get explicit modes too."""
    os.umask(PRIVATE_UMASK)


def prepare_home(home: Path | None = None) -> Path:
    """FUNDX_HOME, made 0700 if it is missing (whatever the umask).

    One that exists and lets group or others in is closed to 0700 if this user owns it, with a
    warning (a home made before files were private, or by a loose umask: a 0700 home keeps others
    from everything in it); one owned by another user is left alone with a warning.
    """
    home = Path(home or get_settings().home)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    close_to_owner(home, what="FUNDX_HOME")
    return home


def close_to_owner(path: Path, *, what: str) -> None:
    """Take group and other permission bits off ``path`` if it has any and this user owns it (warning);
    warn if another user owns it. Nothing if it does not exist."""
    try:
        st = path.stat()  # a link's target: that is what others could read
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077:
        return
    log = logging.getLogger("fundx.settings")
    if st.st_uid != os.geteuid():
        log.warning("%s %s lets group or others in (%o) and belongs to another user: fundx leaves it as it is",
                    what, path, mode)
        return
    os.chmod(path, mode & ~0o077)
    log.warning("%s %s let group or others in (%o); it is now %o", what, path, mode, mode & ~0o077)


@lru_cache(maxsize=1)
def _cached() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # noqa: BLE001 - pydantic ValidationError: name the variable, drop the value
        raise ConfigurationError(_describe_validation(exc)) from None


def get_settings() -> Settings:
    """The settings of this process (read once; call ``reload_settings`` after changing the environment)."""
    return _cached()


def reload_settings() -> Settings:
    _cached.cache_clear()
    return _cached()


def _describe_validation(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return f"invalid settings: {type(exc).__name__}"
    parts = []
    for err in errors():
        key = "FUNDX_" + "_".join(str(p) for p in err.get("loc", ())).upper()
        parts.append(f"{key}: {err.get('msg', 'invalid')}")
    return "invalid settings: " + "; ".join(parts)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, '#' comments; no shell expansion."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


@overload
def resolve(ref: str, *, setting: str, feed: str | None = None, secret: Literal[False] = False) -> str: ...
@overload
def resolve(ref: str, *, setting: str, feed: str | None = None, secret: Literal[True]) -> SecretStr: ...
@overload
def resolve(ref: str, *, setting: str, feed: str | None = None, secret: bool) -> str | SecretStr: ...
def resolve(ref: str, *, setting: str, feed: str | None = None, secret: bool = False) -> str | SecretStr:
    """The value behind a config reference.

    ``env:NAME``: environment variable NAME, else NAME in the running sandbox's exchange.env.
    ``secret:BLOCK``: the Prefect Secret block BLOCK. Anything else is a literal (not allowed for
    secrets). ``setting`` names the config key for error messages; values never appear in them.
    """
    if ref.startswith("env:"):
        name = ref[4:]
        value = os.environ.get(name)
        if value is None:
            value = read_env_file(get_settings().sandbox_env_file).get(name)
        if value is None or value == "":
            raise ConfigurationError(
                f"setting {setting} needs environment variable {name}, which is not set",
                feed=feed,
                action=f"export {name}=... (or start the sandbox: fundx sandbox start)",
            )
    elif ref.startswith("secret:"):
        block = ref[7:]
        try:
            from prefect.blocks.system import Secret

            # called from sync code, Prefect's dual sync/async load returns the block itself
            value = cast("Secret[Any]", Secret.load(block)).get()
        except Exception as exc:  # noqa: BLE001 - any failure to load is a configuration problem
            raise ConfigurationError(
                f"setting {setting}: Prefect Secret block {block!r} could not be loaded ({type(exc).__name__})",
                feed=feed,
                action=f"create it: prefect block create secret, named {block}",
            ) from None
    elif secret:
        raise ConfigurationError(
            f"setting {setting} holds a secret written in the config; use env:NAME or secret:BLOCK",
            feed=feed,
        )
    else:
        value = ref
    return SecretStr(str(value)) if secret else str(value)
