"""The conformance suite every connector passes: eight checks against a live endpoint.

    results = run_suite("police.deaths")                               # the configured endpoint
    results = run_suite("justice.prisoners", skip={"paging": "why"})   # a skip needs a written reason
                                                                       # (or the config's conformance: skip:)
    results = run_suite("police.deaths", context=Context.for_sandbox("police.deaths", sandbox))

Each check takes a :class:`Context` (the feed, its config and contract, the environment that names
its endpoint and credentials, the settings, and — against the sandbox — fault control and the rows
the agency serves) and returns a :class:`Result`: ``passed``, ``failed`` or ``skipped`` with a
message that names the feed and what is wrong. Messages never hold a record's values or a secret
(known secrets are masked in every message as a last guard).

==============  =================================================================================
check           what it asks
==============  =================================================================================
connection      a small window (the last 30 days) pulls without error, in contract columns
paging          REST: paging ends, no record arrives twice (the raw pages, before the connector's
                de-duplication by key), and the rows are what the agency announced or serves
incremental     [t0, t1) then [t1, t2) is [t0, t2): disjoint keys (file drops: disjoint files),
                nothing lost, the same content
rerun           the same window again gives the same keys and the same content digest
contract        the rows fit the contract: no schema break, failing rows within the batch policy
secrets         no credential, access token or probe secret in log lines (DEBUG) or errors,
                including the error from a deliberately wrong credential
timeouts        every HTTP request has finite connect and read timeouts from the settings; a
                database engine a connect and statement timeout
retries         transient failures are retried (and end with every row when they pass); permanent
                ones fail at once with a permanent error type
==============  =================================================================================

Checks that do not apply to a transport are skipped with a built-in reason (:data:`NOT_APPLICABLE`).
Fault-based parts of ``retries`` use the sandbox's fault profiles when the feed's agency is a
sandbox agency (in process, or a running ``fundx sandbox start`` through its control server);
against a real agency they fall back to probes that need no cooperation (an unreachable address, a
missing path, folder or relation).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets as _secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from unittest import mock

import pandas as pd

from connectors import build_connector, load_feed
from connectors.base import Connector, Pull, deduplicate
from connectors.config import (
    ApiKeyAuth,
    BearerAuth,
    FeedConfig,
    OAuth2ClientCredentialsAuth,
)
from contracts import Contract, load_contract
from fundx.core.digest import content_digest
from fundx.core.errors import FundxError, PermanentError, TransientError, content_free
from fundx.core.settings import Settings, get_settings, resolve
from fundx.core.timeutil import SHANGHAI, Window, aware

__all__ = [
    "CHECKS",
    "NOT_APPLICABLE",
    "Context",
    "ControlServerFaults",
    "FaultControl",
    "Result",
    "SandboxFaults",
    "check_skip",
    "config_skip",
    "run_check",
    "run_suite",
    "suite_passed",
]

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"

#: the checks, in the order they run
CHECKS: tuple[str, ...] = (
    "connection", "paging", "incremental", "rerun", "contract", "secrets", "timeouts", "retries",
)

#: (check, transport) -> why the check does not apply
NOT_APPLICABLE: dict[tuple[str, str], str] = {
    ("paging", "filedrop"): "a file drop has no pages: each file is read whole (incremental checks the files)",
    ("paging", "database"): "a database relation is read with one ordered query, not in pages the agency serves",
    ("secrets", "filedrop"): "a file drop takes no credentials",
    ("timeouts", "filedrop"): "a file drop reads a local folder: there is no connection to time out",
}

#: the last days pulled by the connection check
CONNECTION_DAYS = 30
#: the environment variables the probes set (never a real credential)
PROBE_SECRET_ENV = "FUNDX_CONFORMANCE_PROBE_SECRET"  # noqa: S105 - the variable's name, not a secret
PROBE_URL_ENV = "FUNDX_CONFORMANCE_PROBE_URL"



# --- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """The outcome of one check for one feed."""

    feed: str
    check: str
    status: str  # passed | failed | skipped
    message: str
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.check

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    def as_dict(self) -> dict[str, Any]:
        return {"feed": self.feed, "check": self.check, "status": self.status, "message": self.message,
                "seconds": round(self.seconds, 3)}


class CheckFailed(Exception):
    """Raised inside a check: the check failed, for the reason given."""


class CheckSkipped(Exception):
    """Raised inside a check: the check does not apply, for the reason given."""


def suite_passed(results: Iterable[Result]) -> bool:
    """True when no check failed (skipped ones do not count against)."""
    return not any(r.failed for r in results)


def check_skip(skip: Mapping[str, str] | None) -> dict[str, str]:
    """``skip`` checked: known check names, each with a written reason; ValueError naming the problem."""
    checked: dict[str, str] = {}
    for name, reason in (skip or {}).items():
        if name not in CHECKS:
            raise ValueError(f"cannot skip unknown check {name!r} (checks: {', '.join(CHECKS)})")
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"skipping check {name!r} needs a written reason, e.g. skip={{{name!r}: 'why'}}")
        checked[name] = reason.strip()
    return checked


def config_skip(config: FeedConfig) -> dict[str, str]:
    """The checks the feed's config skips (``conformance: skip:``), with their reasons; ValueError naming
    the config for an unknown check."""
    try:
        return check_skip(config.conformance.skip if config.conformance is not None else None)
    except ValueError as exc:
        raise ValueError(f"{config.feed}: conformance.skip: {exc}") from None


# --- fault control ----------------------------------------------------------------------------


class FaultControl(Protocol):
    """Arms the sandbox's fault profiles at an agency."""

    def agencies(self) -> set[str]: ...

    def get(self, agency: str) -> list[str]: ...

    def set(self, agency: str, faults: list[str]) -> None: ...


class SandboxFaults:
    """Fault control of an in-process :class:`sandbox.agencies.Sandbox`."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox

    def agencies(self) -> set[str]:
        return set(self.sandbox.faults)

    def get(self, agency: str) -> list[str]:
        return list(self.sandbox.faults.get(agency, []))

    def set(self, agency: str, faults: list[str]) -> None:
        self.sandbox.set_faults(agency, list(faults))


class ControlServerFaults:
    """Fault control of a running sandbox through its control server (``POST {control}/faults``)."""

    def __init__(self, control_url: str, timeout: float = 10.0) -> None:
        self.url, self.timeout = control_url.rstrip("/"), timeout

    def _all(self) -> dict[str, list[str]]:
        import requests

        response = requests.get(self.url + "/faults", timeout=self.timeout)
        response.raise_for_status()
        return dict(response.json().get("faults", {}))

    def agencies(self) -> set[str]:
        return set(self._all())

    def get(self, agency: str) -> list[str]:
        return list(self._all().get(agency, []))

    def set(self, agency: str, faults: list[str]) -> None:
        import requests

        response = requests.post(self.url + "/faults", json={"agency": agency, "faults": list(faults)}, timeout=self.timeout)
        if response.status_code != 200:
            raise RuntimeError(f"the sandbox's control server refused faults {faults} for {agency} (HTTP {response.status_code})")


# --- the context ------------------------------------------------------------------------------


@dataclass
class Context:
    """What the checks of one feed work with: config, contract, endpoint environment, settings, window."""

    feed: str
    config: FeedConfig
    contract: Contract
    settings: Settings
    window: Window
    #: environment variables set while a check runs (the sandbox's endpoints and credentials)
    env: dict[str, str] = field(default_factory=dict)
    #: the sandbox's fault profiles, when the feed's agency is a sandbox agency
    faults: FaultControl | None = None
    #: the rows the agency serves for a window (the sandbox's ground truth), when known
    expected: Callable[[datetime, datetime], pd.DataFrame] | None = None
    #: the day dates may not be after, for the contract check (default: today)
    today: date | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def for_feed(
        cls,
        feed: str,
        *,
        settings: Settings | None = None,
        env: Mapping[str, str] | None = None,
        faults: FaultControl | None = None,
        expected: Callable[[datetime, datetime], pd.DataFrame] | None = None,
        window: Window | None = None,
        today: date | None = None,
    ) -> Context:
        """The context of a configured feed (ConfigurationError for an unknown or broken config)."""
        config = load_feed(feed)
        settings = settings or get_settings()
        if window is None:
            end = datetime.now(SHANGHAI).replace(microsecond=0)
            window = Window(min(settings.initial_watermark, end), end)
        return cls(feed, config, load_contract(config.contract), settings, window, dict(env or {}), faults,
                   expected, today)

    @classmethod
    def for_sandbox(cls, feed: str, sandbox: Any, *, settings: Settings | None = None, **kw: Any) -> Context:
        """The context of a feed served by an in-process sandbox: its env, faults and ground truth."""

        def expected(start: datetime, end: datetime) -> pd.DataFrame:
            return sandbox.expected(feed, start, end)

        return cls.for_feed(feed, settings=settings, env=sandbox.env, faults=SandboxFaults(sandbox),
                            expected=expected, **kw)

    # -- helpers the checks share

    @property
    def transport(self) -> str:
        return self.config.transport

    @property
    def agency(self) -> str:
        return self.config.agency

    def connector(self, config: FeedConfig | None = None, settings: Settings | None = None) -> Connector:
        """A fresh connector for the feed (or for a changed copy of its config)."""
        return build_connector(config or self.config, settings or self.settings)

    def settings_with(self, **changes: Any) -> Settings:
        return self.settings.model_copy(update=changes)

    def full_pull(self) -> Pull:
        """The whole window, pulled once per context (the checks compare against it)."""
        if "full" not in self._cache:
            self._cache["full"] = self.connector().extract(self.window)
        return self._cache["full"]

    def fault_control(self) -> FaultControl | None:
        """The fault control for this feed's agency, when it is a sandbox agency."""
        if self.faults is None:
            return None
        try:
            return self.faults if self.agency in self.faults.agencies() else None
        except Exception:  # noqa: BLE001 - a control server that went away: no fault control
            return None

    def secret_values(self) -> dict[str, str]:
        """The feed's configured secrets (resolved now) by what they are; no value shorter than 8 characters."""
        refs: dict[str, str] = {}
        if self.config.rest is not None and self.config.rest.auth is not None:
            auth = self.config.rest.auth
            if isinstance(auth, BearerAuth):
                refs["rest.auth.token"] = auth.token
            elif isinstance(auth, ApiKeyAuth):
                refs["rest.auth.key"] = auth.key
            elif isinstance(auth, OAuth2ClientCredentialsAuth):
                refs["rest.auth.client_secret"] = auth.client_secret
        if self.config.database is not None:
            refs["database.url"] = self.config.database.url
        values: dict[str, str] = {}
        for setting, ref in refs.items():
            try:
                value = resolve(ref, setting=setting, feed=self.feed, secret=True).get_secret_value()
            except FundxError:
                continue
            if setting == "database.url":
                password = _url_password(value)
                if password:
                    values["the password in database.url"] = password
                if "://" in value and "@" in value:
                    values["database.url"] = value
                continue
            values[setting] = value
        return {k: v for k, v in values.items() if len(v) >= 8}

    @contextlib.contextmanager
    def applied(self, extra: Mapping[str, str] | None = None) -> Iterator[None]:
        """The context's environment (and ``extra``) in os.environ while a check runs."""
        with _environment({**self.env, **(extra or {})}):
            yield


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


# --- running ----------------------------------------------------------------------------------


def run_suite(
    feed: str,
    *,
    skip: Mapping[str, str] | None = None,
    context: Context | None = None,
    checks: Iterable[str] | None = None,
    **context_options: Any,
) -> list[Result]:
    """Every check (or those named) for ``feed``; ``skip`` maps a check to the written reason for skipping it."""
    skipped = check_skip(skip)
    names = list(checks) if checks is not None else list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)} (checks: {', '.join(CHECKS)})")
    if context is None:
        context = Context.for_feed(feed, **context_options)
    return [run_check(name, context, skip=skipped) for name in names]


def run_check(name: str, context: Context, *, skip: Mapping[str, str] | None = None) -> Result:
    """One check for the context's feed; never raises for what it finds (a failure is a Result)."""
    feed = context.feed
    skipped = config_skip(context.config) | check_skip(skip)
    if name not in CHECKS:
        raise ValueError(f"unknown check {name!r} (checks: {', '.join(CHECKS)})")
    if name in skipped:
        return Result(feed, name, SKIPPED, f"{feed}: {name} skipped: {skipped[name]}")
    reason = NOT_APPLICABLE.get((name, context.transport))
    if reason:
        return Result(feed, name, SKIPPED, f"{feed}: {name} does not apply: {reason}")
    started = time.monotonic()
    secrets_known: dict[str, str] = {}
    try:
        with context.applied():
            secrets_known = context.secret_values()
            message = CHECK_FUNCTIONS[name](context)
        status = PASSED
    except CheckSkipped as exc:
        status, message = SKIPPED, str(exc)
    except CheckFailed as exc:
        status, message = FAILED, str(exc)
    except Exception as exc:  # noqa: BLE001 - what a pull raised: its type and content-free message
        status, message = FAILED, f"{_describe(content_free(exc))}"
    message = _mask(message if message.startswith(f"{feed}:") else f"{feed}: {message}", secrets_known)
    return Result(feed, name, status, message, time.monotonic() - started)


def _describe(error: FundxError) -> str:
    return f"{error.kind}: {error}"


def _mask(text: str, known: Mapping[str, str]) -> str:
    for label, value in known.items():
        if value and value in text:
            text = text.replace(value, f"<{label}>")
    return text


# --- shared machinery -------------------------------------------------------------------------


class _LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> list[tuple[str, str]]:
        """(logger, text) of every record: the formatted message and any traceback."""
        out = []
        formatter = logging.Formatter()
        for record in self.records:
            try:
                text = record.getMessage()
            except Exception:  # noqa: BLE001 - a broken log call: look at its parts
                text = f"{record.msg} {record.args}"
            if record.exc_info:
                text += "\n" + formatter.formatException(record.exc_info)
            out.append((record.name, text))
        return out


@contextlib.contextmanager
def _capture_logs(logger: str = "", level: int = logging.DEBUG) -> Iterator[_LogCapture]:
    """Every log record of ``logger`` (default: all) at ``level`` and above while inside."""
    handler = _LogCapture()
    target = logging.getLogger(logger)
    old_level = target.level
    target.addHandler(handler)
    target.setLevel(level)
    try:
        yield handler
    finally:
        target.removeHandler(handler)
        target.setLevel(old_level)


def _retry_count(capture: _LogCapture) -> int:
    """Retries the shared retrier logged (``fundx.core.retry`` warnings)."""
    return sum(1 for r in capture.records if r.name == "fundx.retry" and r.levelno >= logging.WARNING)


@dataclass
class _Attempt:
    pull: Pull | None
    error: BaseException | None
    retries: int
    seconds: float


def _attempt(connector: Connector, window: Window) -> _Attempt:
    """One pull that may fail: its pull or error, and the retries the retrier logged."""
    started = time.monotonic()
    with _capture_logs("fundx.retry", logging.WARNING) as capture:
        try:
            pull = connector.extract(window)
        except Exception as exc:  # noqa: BLE001 - the check judges whatever the connector raised
            return _Attempt(None, exc, _retry_count(capture), time.monotonic() - started)
    return _Attempt(pull, None, max(pull.retries, _retry_count(capture)), time.monotonic() - started)


def _keys(frame: pd.DataFrame, key: tuple[str, ...]) -> set[Any]:
    if len(key) == 1:
        return set(frame[key[0]].tolist())
    return set(frame[list(key)].itertuples(index=False, name=None))


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _url_password(url: str) -> str | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password
    except Exception:  # noqa: BLE001 - any URL sqlalchemy cannot parse has no password to hide
        return None


def _with_section(config: FeedConfig, **changes: Any) -> FeedConfig:
    """A copy of the config with fields of its transport's section changed."""
    section = config.section.model_copy(update=changes)
    return config.model_copy(update={config.transport: section})


def _with_page_size(config: FeedConfig, size: int) -> FeedConfig:
    assert config.rest is not None
    paging = config.rest.paging.model_copy(update={"page_size": size})
    return _with_section(config, paging=paging)


@contextlib.contextmanager
def _armed(control: FaultControl, agency: str, faults: list[str]) -> Iterator[None]:
    """Faults armed at one agency; the ones armed before are put back afterwards."""
    before = control.get(agency)
    control.set(agency, faults)
    try:
        yield
    finally:
        control.set(agency, before)


def _plural(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _window_text(window: Window) -> str:
    fmt = "%Y-%m-%d %H:%M"
    return f"[{window.start.astimezone(SHANGHAI).strftime(fmt)}, {window.end.astimezone(SHANGHAI).strftime(fmt)})"


# --- (a) connection and auth ------------------------------------------------------------------


def check_connection(ctx: Context) -> str:
    start = max(ctx.window.start, ctx.window.end - timedelta(days=CONNECTION_DAYS))
    window = Window(start, ctx.window.end)
    pull = ctx.connector().extract(window)
    if list(pull.frame.columns) != list(ctx.contract.names):
        raise CheckFailed(f"{ctx.feed}: the pull's columns are not the contract's columns in contract order")
    return (f"{ctx.feed}: pulled {_plural(pull.rows, 'row')} of the last {CONNECTION_DAYS} days in "
            f"{_plural(pull.pages, 'page')} ({pull.duration_s:.2f} s)")


# --- (b) paging -------------------------------------------------------------------------------


@dataclass
class _Page:
    number: int
    keys: list[Any]
    total: Any = None


class _Runaway(Exception):
    """Raised from the page hook when a pull reads more pages than it possibly could."""


def _paged_pull(ctx: Context, config: FeedConfig, max_pages: int) -> tuple[Pull, list[_Page], int]:
    """A pull that records every page as the connector received it (before de-duplication).

    The REST connector's ``_page`` is wrapped on this one instance: each page's keys (and the
    total the agency announced, for page/size paging) are recorded as they arrive; a pull reading
    more than ``max_pages`` pages is stopped. The progress callback gives the raw record count.
    """
    connector = ctx.connector(config)
    pages: list[_Page] = []
    total_field = getattr(config.rest.paging, "total", None) if config.rest is not None else None
    original = getattr(connector, "_page", None)
    if original is not None:
        def page(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            body, keys = out[0], out[2]
            total = body.get(total_field) if total_field and isinstance(body, Mapping) else None
            pages.append(_Page(len(pages) + 1, list(keys), total))
            if len(pages) > max_pages:
                raise _Runaway(len(pages))
            return out

        connector._page = page  # type: ignore[attr-defined]
    received = [0]

    def progress(rows: int) -> None:
        received[0] = rows

    try:
        pull = connector.extract(ctx.window, progress=progress)
    except _Runaway:
        raise CheckFailed(
            f"{ctx.feed}: paging did not end: more than {max_pages} pages of {config.rest.paging.page_size} "  # type: ignore[union-attr]
            f"for a window the agency serves in fewer; its next-page answer must come back to an end"
        ) from None
    return pull, pages, received[0]


def _repeats(pages: list[_Page]) -> list[tuple[int, int, int, list[int]]]:
    """(page, records on it, records already received, the pages they first came on) for each repeating page."""
    first_seen: dict[Any, int] = {}
    found = []
    for page in pages:
        again = [k for k in page.keys if k in first_seen]
        if again:
            found.append((page.number, len(page.keys), len(again), sorted({first_seen[k] for k in again})))
        for k in page.keys:
            first_seen.setdefault(k, page.number)
    return found


def _paging_problems(ctx: Context, pull: Pull, pages: list[_Page], received: int, size: int) -> list[str]:
    problems = []
    for number, count, again, earlier in _repeats(pages):
        where = f"page {earlier[0]}" if len(earlier) == 1 else "pages " + ", ".join(map(str, earlier))
        problems.append(
            f"page {number} (pages of {size}) repeats {again} of its {count} records, already received on {where}; "
            f"the connector's de-duplication by key hides it"
        )
    if not pages and received > pull.rows:
        problems.append(f"{received} records arrived for {pull.rows} distinct keys (pages of {size}): records repeat")
    totals = [p.total for p in pages if p.total is not None]
    if totals:
        try:
            announced = int(totals[-1])
        except (TypeError, ValueError):
            announced = None
        if announced is not None and announced != pull.rows:
            problems.append(f"the agency announced {announced} rows, {pull.rows} distinct rows arrived (pages of {size})")
    return problems


def check_paging(ctx: Context) -> str:
    assert ctx.config.rest is not None
    configured = ctx.config.rest.paging.page_size
    expected = ctx.expected(ctx.window.start, ctx.window.end) if ctx.expected is not None else None
    rows_hint = len(expected) if expected is not None else None

    def cap(size: int) -> int:
        return 10_000 if rows_hint is None else math.ceil(rows_hint / size) * 2 + 10

    pull, pages, received = _paged_pull(ctx, ctx.config, cap(configured))
    problems = _paging_problems(ctx, pull, pages, received, configured)
    runs = [f"{len(pages) or pull.pages} {'page' if (len(pages) or pull.pages) == 1 else 'pages'} of {configured}"]
    # again in pages small enough that the window takes several: where paging bugs show
    small = max(1, min(configured, math.ceil(pull.rows / 4))) if pull.rows > 1 else None
    if small is not None and small < configured:
        small_pull, small_pages, small_received = _paged_pull(ctx, _with_page_size(ctx.config, small), cap(small))
        problems += _paging_problems(ctx, small_pull, small_pages, small_received, small)
        key = ctx.contract.key
        mine, theirs = _keys(pull.frame, key), _keys(small_pull.frame, key)
        if mine != theirs:
            problems.append(f"pages of {small} gave {len(theirs - mine)} keys that pages of {configured} did not, "
                            f"and missed {len(mine - theirs)}")
        runs.append(f"{len(small_pages) or small_pull.pages} pages of {small}")
    if expected is not None:
        key = ctx.contract.key
        want, got = _keys(expected, key), _keys(pull.frame, key)
        if want != got:
            problems.append(f"{len(want - got)} of the {len(want)} rows the agency serves for the window are missing "
                            f"and {len(got - want)} it does not serve arrived")
    if problems:
        raise CheckFailed(f"{ctx.feed}: paging: " + "; ".join(problems))
    against = " = the agency's rows for the window" if expected is not None else ""
    return f"{ctx.feed}: {pull.rows} rows{against}, each received once in " + " and in ".join(runs)


# --- (c) incremental --------------------------------------------------------------------------


def _moments(values: pd.Series) -> pd.Series:
    """Incremental values as aware datetimes (naive ones are Asia/Shanghai local time); unreadable: NaT."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values.dt.tz_localize(SHANGHAI)

    def one(value: Any) -> Any:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return pd.NaT
        try:
            return pd.Timestamp(aware(value if isinstance(value, datetime) else str(value)))
        except (ValueError, TypeError):
            return pd.NaT

    return values.map(one)


def _split_point(ctx: Context, whole: Pull) -> datetime:
    """A moment inside the window that splits the feed's rows (or files) about in half."""
    start, end = ctx.window.start, ctx.window.end
    middle = start + (end - start) / 2
    connector = ctx.connector()
    arrivals = getattr(connector, "arrivals", None)
    if callable(arrivals):
        times = sorted({t for t, _, _ in arrivals(ctx.window)})
        if len(times) >= 2:
            return times[len(times) // 2]
        return middle
    column = ctx.contract.incremental
    if column is None or whole.rows == 0:
        return middle
    moments = _moments(whole.frame[column]).dropna()
    if moments.empty:
        return middle
    moment = pd.Timestamp(sorted(moments.tolist())[len(moments) // 2]).to_pydatetime()
    return moment if start < moment < end else middle


def check_incremental(ctx: Context) -> str:
    whole = ctx.full_pull()
    split = _split_point(ctx, whole)
    before, after = Window(ctx.window.start, split), Window(split, ctx.window.end)
    connector = ctx.connector()
    first = connector.extract(before)
    second = connector.extract(after)
    key = ctx.contract.key
    a, b, all_keys = _keys(first.frame, key), _keys(second.frame, key), _keys(whole.frame, key)
    problems, notes = [], []
    arrivals = getattr(connector, "arrivals", None)
    if callable(arrivals):  # a file drop windows files: each file in one window, a key may be in several snapshots
        files_a = {p.name for _, p, _ in arrivals(before)}
        files_b = {p.name for _, p, _ in arrivals(after)}
        files_all = {p.name for _, p, _ in arrivals(ctx.window)}
        if files_a & files_b:
            problems.append(f"{len(files_a & files_b)} files were taken in both windows")
        if files_a | files_b != files_all:
            problems.append(f"{len(files_all - (files_a | files_b))} files of the whole window were in neither half")
        if a & b:
            notes.append(f"{len(a & b)} keys are in files of both halves (snapshots: the latest file wins)")
        unit = f"{len(files_a)} + {len(files_b)} files"
    else:
        if a & b:
            problems.append(f"{len(a & b)} keys were pulled in both {_window_text(before)} and {_window_text(after)}: "
                            f"a pull from the watermark brings rows again")
        unit = f"{first.rows} + {second.rows} rows"
    if a | b != all_keys:
        problems.append(f"the two halves have {len((a | b) - all_keys)} keys the whole window has not, "
                        f"and miss {len(all_keys - (a | b))} of its keys")
    joined = deduplicate(pd.concat([first.frame, second.frame], ignore_index=True), key, ctx.contract.incremental)
    if not problems and content_digest(joined) != whole.digest:
        problems.append("the two halves' rows together differ in content from the whole window's rows")
    if problems:
        raise CheckFailed(f"{ctx.feed}: incremental pull split at {split.astimezone(SHANGHAI):%Y-%m-%d %H:%M}: "
                          + "; ".join(problems))
    if first.rows == 0 or second.rows == 0:
        notes.append("one half is empty, so this says little")
    note = f" ({'; '.join(notes)})" if notes else ""
    return (f"{ctx.feed}: {_window_text(before)} then {_window_text(after)}: {unit}, disjoint, "
            f"together the {whole.rows} rows of the whole window{note}")


# --- (d) rerun --------------------------------------------------------------------------------


def check_rerun(ctx: Context) -> str:
    first = ctx.full_pull()
    again = ctx.connector().extract(ctx.window)
    if again.rows != first.rows or _keys(again.frame, ctx.contract.key) != _keys(first.frame, ctx.contract.key):
        raise CheckFailed(f"{ctx.feed}: a rerun of {_window_text(ctx.window)} gave {again.rows} rows after {first.rows}, "
                          f"not the same keys")
    if again.digest != first.digest:
        raise CheckFailed(f"{ctx.feed}: a rerun of {_window_text(ctx.window)} gave the same {again.rows} keys but "
                          f"different content ({again.digest[:19]}… after {first.digest[:19]}…)")
    return f"{ctx.feed}: a rerun of the window gave the same {again.rows} rows ({again.digest[:19]}…)"


# --- (e) contract -----------------------------------------------------------------------------


def check_contract(ctx: Context) -> str:
    from contracts.validate import check

    pull = ctx.full_pull()
    checked = check(ctx.contract, pull.frame, today=ctx.today)
    report = checked.report
    policy = report["policy"]
    if report.get("schema_break"):
        raise CheckFailed(f"{ctx.feed}: the rows break contract {ctx.contract.feed} {ctx.contract.version}: "
                          f"{checked.reject_reason}")
    if checked.rejected:
        raise CheckFailed(f"{ctx.feed}: contract {ctx.contract.feed} {ctx.contract.version} would hold the batch "
                          f"back: {checked.reject_reason}")
    rows = report["rows"]
    share = 100.0 * report["quarantined"] / rows if rows else 0.0
    return (f"{ctx.feed}: {rows} rows fit contract {ctx.contract.feed} {ctx.contract.version}: "
            f"{report['quarantined']} quarantined ({share:.2f} %), within its "
            f"{policy['reject_above_failed_percent']:g} % batch policy")


# --- (f) secrets ------------------------------------------------------------------------------


def _probe_config(ctx: Context) -> tuple[FeedConfig, dict[str, str], str, str] | None:
    """The config with one credential replaced by a wrong probe value: (config, env, what, value)."""
    value = "conformance-probe-" + _secrets.token_hex(12)
    config = ctx.config
    if config.rest is not None:
        auth = config.rest.auth
        ref = f"env:{PROBE_SECRET_ENV}"
        new: BearerAuth | ApiKeyAuth | OAuth2ClientCredentialsAuth
        if isinstance(auth, BearerAuth):
            new, what = auth.model_copy(update={"token": ref}), "rest.auth.token"
        elif isinstance(auth, ApiKeyAuth):
            new, what = auth.model_copy(update={"key": ref}), "rest.auth.key"
        elif isinstance(auth, OAuth2ClientCredentialsAuth):
            new, what = auth.model_copy(update={"client_secret": ref}), "rest.auth.client_secret"
        else:
            return None
        return _with_section(config, auth=new), {PROBE_SECRET_ENV: value}, what, value
    if config.database is not None:
        url = f"postgresql+psycopg://fundx_probe:{value}@127.0.0.1:{_closed_port()}/fundx_probe"
        return (_with_section(config, url=f"env:{PROBE_URL_ENV}"), {PROBE_URL_ENV: url},
                "password in database.url", value)
    return None


def _error_texts(error: BaseException) -> list[tuple[str, str]]:
    """(where, text) for an error and the errors chained to it."""
    texts, seen = [], set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = type(current).__name__
        texts.append((f"the {kind} message", str(current)))
        texts.append((f"the {kind} repr", repr(current)))
        action = getattr(current, "action", None)
        if isinstance(action, str):
            texts.append((f"the {kind} action", action))
        texts.append((f"the {kind} arguments", " ".join(map(str, current.args))))
        current = current.__cause__ or current.__context__
    return texts


def _where(secret: str, texts: list[tuple[str, str]], logs: list[tuple[str, str]]) -> list[str]:
    places = sorted({where for where, text in texts if secret in text})
    loggers = sorted({name for name, text in logs if secret in text})
    lines = sum(1 for _, text in logs if secret in text)
    if lines:
        places.append(f"{lines} log line{'s' if lines > 1 else ''} (logger {', '.join(loggers)})")
    return places


def check_secrets(ctx: Context) -> str:
    known = ctx.secret_values()
    probe = _probe_config(ctx)
    if not known and probe is None:
        raise CheckSkipped(f"{ctx.feed}: secrets does not apply: the feed is configured with no credentials")
    findings: list[str] = []
    # 1. a pull with the configured credentials, logging at DEBUG everywhere
    connector = ctx.connector()
    with _capture_logs() as capture:
        pull = None
        try:
            pull = connector.extract(ctx.window)
        except Exception as exc:  # noqa: BLE001 - the check judges whatever the connector raised
            error: BaseException | None = exc
        else:
            error = None
    token = getattr(getattr(connector, "_auth", None), "_token", None)
    if token is not None and hasattr(token, "get_secret_value"):
        known = {**known, "the access token the agency issued": token.get_secret_value()}
    texts = [("the connector repr", repr(connector))]
    if pull is not None:
        texts.append(("the pull's repr", repr(pull)))
    if error is not None:
        texts += _error_texts(error)
    logs = _exchange_logs(capture)
    for what, value in known.items():
        places = _where(value, texts, logs)
        if places:
            findings.append(f"{what} (configured) appears in {', '.join(places)}")
    # 2. a wrong credential: the agency's rejection must not carry a secret into errors or logs
    probed = ""
    if probe is not None:
        config, env, what, value = probe
        with _environment(env), _capture_logs() as capture:
            outcome = _attempt(ctx.connector(config, ctx.settings_with(retry_attempts=2)), ctx.window)
        if outcome.error is None:
            findings.append(f"a wrong {what} was accepted: the pull succeeded")
        else:
            probe_texts = _error_texts(outcome.error)
            probe_logs = _exchange_logs(capture)
            for label, secret in {**known, f"the wrong {what} sent by the probe": value}.items():
                places = _where(secret, probe_texts, probe_logs)
                if places:
                    findings.append(f"{label} appears in {', '.join(places)} after the agency rejected a wrong {what}")
            probed = f"; a wrong {what} ended in {type(outcome.error).__name__}, no secret in it"
    if findings:
        raise CheckFailed(f"{ctx.feed}: secrets leak: " + "; ".join(findings))
    checked = (", ".join(known) + " absent from" if known else "no credential configured; nothing secret in")
    return f"{ctx.feed}: {checked} {_plural(len(logs), 'DEBUG log line')} and errors{probed}"


def _exchange_logs(capture: _LogCapture) -> list[tuple[str, str]]:
    """Log lines of the exchange's process; the in-process sandbox agencies' own lines are theirs."""
    return [(name, text) for name, text in capture.texts() if not (name == "sandbox" or name.startswith("sandbox."))]


# --- (g) timeouts -----------------------------------------------------------------------------


def _finite_positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def check_timeouts(ctx: Context) -> str:
    start = max(ctx.window.start, ctx.window.end - timedelta(days=CONNECTION_DAYS))
    window = Window(start, ctx.window.end)
    if ctx.transport == "database":
        return _database_timeouts(ctx, window)
    import requests

    seen: list[Any] = []
    original = requests.Session.request

    def request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("timeout", "none"))
        return original(self, method, url, *args, **kwargs)

    with mock.patch.object(requests.Session, "request", request):
        ctx.connector().extract(window)
    if not seen:
        raise CheckFailed(f"{ctx.feed}: the pull made no request through requests.Session: its timeouts cannot be seen")
    wanted = (ctx.settings.http_connect_timeout, ctx.settings.http_read_timeout)
    bad = [t for t in seen if not (isinstance(t, tuple) and len(t) == 2 and all(_finite_positive(v) for v in t))]
    if bad:
        raise CheckFailed(f"{ctx.feed}: {len(bad)} of {len(seen)} HTTP requests had no finite (connect, read) "
                          f"timeout (one had {bad[0]!r})")
    other = [t for t in seen if tuple(t) != wanted]
    if other:
        raise CheckFailed(f"{ctx.feed}: {len(other)} of {len(seen)} HTTP requests had timeouts {other[0]!r}, not the "
                          f"settings' {wanted!r} (FUNDX_HTTP_CONNECT_TIMEOUT, FUNDX_HTTP_READ_TIMEOUT)")
    return (f"{ctx.feed}: {_plural(len(seen), 'HTTP request')}, {'each ' if len(seen) > 1 else ''}with a "
            f"{wanted[0]:g} s connect and {wanted[1]:g} s read timeout from the settings")


def _database_timeouts(ctx: Context, window: Window) -> str:
    from connectors import database

    seen: list[tuple[Any, dict[str, Any]]] = []
    original = database.create_engine

    def create_engine(url: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append((url, dict(kwargs.get("connect_args") or {})))
        return original(url, *args, **kwargs)

    with mock.patch.object(database, "create_engine", create_engine):
        ctx.connector().extract(window)
    if not seen:
        raise CheckFailed(f"{ctx.feed}: the pull created no engine through SQLAlchemy: its timeouts cannot be seen")
    wanted = ctx.settings.db_timeout
    for url, args in seen:
        backend = url.get_backend_name()
        if backend == "sqlite":
            if not _finite_positive(args.get("timeout")) or args["timeout"] != wanted:
                raise CheckFailed(f"{ctx.feed}: the SQLite engine's busy timeout is {args.get('timeout')!r}, not the "
                                  f"settings' {wanted:g} s (FUNDX_DB_TIMEOUT)")
            how = f"a {wanted:g} s busy timeout"
        elif backend == "postgresql":
            options = url.query.get("options", "")
            options = " ".join(options) if isinstance(options, tuple) else options
            if not _finite_positive(args.get("connect_timeout")):
                raise CheckFailed(f"{ctx.feed}: the PostgreSQL engine has no finite connect_timeout")
            if f"statement_timeout={int(wanted * 1000)}" not in options:
                raise CheckFailed(f"{ctx.feed}: the PostgreSQL engine has no statement_timeout of the settings' "
                                  f"{wanted:g} s (FUNDX_DB_TIMEOUT)")
            how = f"a {args['connect_timeout']} s connect and {wanted:g} s statement timeout"
        else:
            raise CheckFailed(f"{ctx.feed}: no connect or statement timeout is known for database backend {backend}")
    return f"{ctx.feed}: the database engine has {how} from the settings"


# --- (h) retries ------------------------------------------------------------------------------


def _expect_transient(ctx: Context, what: str, outcome: _Attempt, *, recovers: bool, baseline: Pull | None) -> str:
    if recovers:
        if outcome.error is not None:
            raise CheckFailed(f"{ctx.feed}: {what}: the pull failed ({_describe(content_free(outcome.error))}) "
                              f"instead of retrying to the end")
        assert outcome.pull is not None
        if outcome.retries < 1:
            raise CheckFailed(f"{ctx.feed}: {what}: the pull made no retry; the fault did not show or was not retried")
        if baseline is not None and outcome.pull.digest != baseline.digest:
            raise CheckFailed(f"{ctx.feed}: {what}: retried, but ended with {outcome.pull.rows} rows that differ from "
                              f"the {baseline.rows} rows of a pull without the fault")
        return f"{what}: retried {outcome.retries}×, then every row"
    if not isinstance(outcome.error, TransientError):
        got = "success" if outcome.error is None else _describe(content_free(outcome.error))
        raise CheckFailed(f"{ctx.feed}: {what}: expected a transient error after retries, got {got}")
    if outcome.retries < 1:
        raise CheckFailed(f"{ctx.feed}: {what}: {type(outcome.error).__name__} was not retried")
    return f"{what}: {type(outcome.error).__name__} after {outcome.retries + 1} tries"


def _expect_permanent(ctx: Context, what: str, outcome: _Attempt, kinds: tuple[type[BaseException], ...]) -> str:
    if outcome.error is None:
        raise CheckFailed(f"{ctx.feed}: {what}: the pull succeeded; expected a permanent error")
    if not isinstance(outcome.error, PermanentError):
        raise CheckFailed(f"{ctx.feed}: {what}: expected a permanent error, got {_describe(content_free(outcome.error))}")
    if outcome.retries:
        raise CheckFailed(f"{ctx.feed}: {what}: {type(outcome.error).__name__} was retried {outcome.retries}× "
                          f"instead of failing at once")
    if kinds and not isinstance(outcome.error, kinds):
        raise CheckFailed(f"{ctx.feed}: {what}: expected {' or '.join(k.__name__ for k in kinds)}, got "
                          f"{_describe(content_free(outcome.error))}")
    return f"{what}: {type(outcome.error).__name__} at once"


def check_retries(ctx: Context) -> str:
    from fundx.core.errors import NotFoundError, SourceSchemaError

    control = ctx.fault_control()
    done: list[str] = []
    few = ctx.settings_with(retry_attempts=min(3, max(2, ctx.settings.retry_attempts)))
    if ctx.transport == "rest":
        baseline = ctx.full_pull()
        if control is not None:
            size = max(1, min(ctx.config.rest.paging.page_size, math.ceil(baseline.rows / 3) or 1))  # type: ignore[union-attr]
            config = _with_page_size(ctx.config, size)
            with _armed(control, ctx.agency, ["server_errors", "rate_limit"]):
                outcome = _attempt(ctx.connector(config), ctx.window)
            done.append(_expect_transient(ctx, "503s and 429s (faults server_errors, rate_limit)", outcome,
                                          recovers=True, baseline=baseline))
            with _armed(control, ctx.agency, ["renamed_column"]):
                outcome = _attempt(ctx.connector(), ctx.window)
            done.append(_expect_permanent(ctx, "a renamed column (fault renamed_column)", outcome, (SourceSchemaError,)))
        else:
            unreachable = _with_section(ctx.config, base_url=f"http://127.0.0.1:{_closed_port()}")
            outcome = _attempt(ctx.connector(unreachable, few), ctx.window)
            done.append(_expect_transient(ctx, "an unreachable agency", outcome, recovers=False, baseline=None))
        missing = _with_section(ctx.config, path=ctx.config.rest.path.rstrip("/") + "/conformance-missing")  # type: ignore[union-attr]
        outcome = _attempt(ctx.connector(missing), ctx.window)
        done.append(_expect_permanent(ctx, "a path the agency does not serve (404)", outcome, (NotFoundError,)))
    elif ctx.transport == "filedrop":
        baseline = ctx.full_pull()
        if control is not None:
            with _armed(control, ctx.agency, ["truncated"]):
                outcome = _attempt(ctx.connector(), ctx.window)
            if baseline.pages == 0:
                done.append("a file cut short: no files in the window, not exercised")
            else:
                done.append(_expect_transient(ctx, "a file cut short (fault truncated)", outcome, recovers=True,
                                              baseline=baseline))
            with _armed(control, ctx.agency, ["renamed_column"]):
                outcome = _attempt(ctx.connector(), ctx.window)
            if baseline.pages:
                done.append(_expect_permanent(ctx, "a renamed header (fault renamed_column)", outcome,
                                              (SourceSchemaError,)))
        else:
            done.append(_unfinished_file(ctx, few))
        gone = _with_section(ctx.config, directory=str(Path(tempfile.gettempdir()) / f"fundx-conformance-{_secrets.token_hex(6)}"))
        outcome = _attempt(ctx.connector(gone), ctx.window)
        done.append(_expect_permanent(ctx, "a drop folder that is not there", outcome, (NotFoundError,)))
    else:  # database
        url = f"postgresql+psycopg://fundx_probe@127.0.0.1:{_closed_port()}/fundx_probe"
        with _environment({PROBE_URL_ENV: url}):
            outcome = _attempt(ctx.connector(_with_section(ctx.config, url=f"env:{PROBE_URL_ENV}"), few), ctx.window)
        done.append(_expect_transient(ctx, "a database server refusing connections", outcome, recovers=False,
                                      baseline=None))
        if control is not None:
            with _armed(control, ctx.agency, ["renamed_column"]):
                outcome = _attempt(ctx.connector(), ctx.window)
            done.append(_expect_permanent(ctx, "a renamed column (fault renamed_column)", outcome, (SourceSchemaError,)))
        missing = _with_section(ctx.config, relation="conformance_missing_relation")
        outcome = _attempt(ctx.connector(missing), ctx.window)
        done.append(_expect_permanent(ctx, "a relation that is not there", outcome, (NotFoundError,)))
    return f"{ctx.feed}: " + "; ".join(done)


def _unfinished_file(ctx: Context, settings: Settings) -> str:
    """No fault control: a copy of the newest file whose done-marker does not match must be retried."""
    connector = ctx.connector()
    arrivals = connector.arrivals(ctx.window)  # type: ignore[attr-defined]
    if not arrivals:
        return "a file still being written: no files in the window, not exercised"
    arrived, path, _marker = arrivals[-1]
    with tempfile.TemporaryDirectory(prefix="fundx-conformance-") as folder:
        copy = Path(folder) / path.name
        shutil.copyfile(path, copy)
        done = copy.with_name(copy.name + ctx.config.filedrop.done_suffix)  # type: ignore[union-attr]
        done.write_text(f"rows=1\nsha256={'0' * 64}\n", encoding="utf-8")
        stamp = arrived.timestamp()
        os.utime(done, (stamp, stamp))
        config = _with_section(ctx.config, directory=folder)
        outcome = _attempt(ctx.connector(config, settings), ctx.window)
    return _expect_transient(ctx, "a file whose done-marker does not match it yet", outcome, recovers=False,
                             baseline=None)


CHECK_FUNCTIONS: dict[str, Callable[[Context], str]] = {
    "connection": check_connection,
    "paging": check_paging,
    "incremental": check_incremental,
    "rerun": check_rerun,
    "contract": check_contract,
    "secrets": check_secrets,
    "timeouts": check_timeouts,
    "retries": check_retries,
}
assert tuple(CHECK_FUNCTIONS) == CHECKS
