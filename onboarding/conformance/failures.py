"""The checks of a connector facing an agency that fails: (g) finite timeouts, (h) retries of transient errors only."""

from __future__ import annotations

import math
import os
import secrets as _secrets
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from connectors.base import Pull
from fundx.core.errors import PermanentError, TransientError, content_free
from fundx.core.settings import Settings
from fundx.core.timeutil import Window
from onboarding.conformance.context import Context
from onboarding.conformance.probing import (
    PROBE_URL_ENV,
    Attempt,
    armed,
    attempt,
    closed_port,
    describe,
    environment,
    plural,
    with_page_size,
    with_section,
)
from onboarding.conformance.pulling import CONNECTION_DAYS
from onboarding.conformance.results import CheckFailed

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
    return (f"{ctx.feed}: {plural(len(seen), 'HTTP request')}, {'each ' if len(seen) > 1 else ''}with a "
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


def _expect_transient(ctx: Context, what: str, outcome: Attempt, *, recovers: bool, baseline: Pull | None) -> str:
    if recovers:
        if outcome.error is not None:
            raise CheckFailed(f"{ctx.feed}: {what}: the pull failed ({describe(content_free(outcome.error))}) "
                              f"instead of retrying to the end")
        assert outcome.pull is not None
        if outcome.retries < 1:
            raise CheckFailed(f"{ctx.feed}: {what}: the pull made no retry; the fault did not show or was not retried")
        if baseline is not None and outcome.pull.digest != baseline.digest:
            raise CheckFailed(f"{ctx.feed}: {what}: retried, but ended with {outcome.pull.rows} rows that differ from "
                              f"the {baseline.rows} rows of a pull without the fault")
        return f"{what}: retried {outcome.retries}×, then every row"
    if not isinstance(outcome.error, TransientError):
        got = "success" if outcome.error is None else describe(content_free(outcome.error))
        raise CheckFailed(f"{ctx.feed}: {what}: expected a transient error after retries, got {got}")
    if outcome.retries < 1:
        raise CheckFailed(f"{ctx.feed}: {what}: {type(outcome.error).__name__} was not retried")
    return f"{what}: {type(outcome.error).__name__} after {outcome.retries + 1} tries"


def _expect_permanent(ctx: Context, what: str, outcome: Attempt, kinds: tuple[type[BaseException], ...]) -> str:
    if outcome.error is None:
        raise CheckFailed(f"{ctx.feed}: {what}: the pull succeeded; expected a permanent error")
    if not isinstance(outcome.error, PermanentError):
        raise CheckFailed(f"{ctx.feed}: {what}: expected a permanent error, got {describe(content_free(outcome.error))}")
    if outcome.retries:
        raise CheckFailed(f"{ctx.feed}: {what}: {type(outcome.error).__name__} was retried {outcome.retries}× "
                          f"instead of failing at once")
    if kinds and not isinstance(outcome.error, kinds):
        raise CheckFailed(f"{ctx.feed}: {what}: expected {' or '.join(k.__name__ for k in kinds)}, got "
                          f"{describe(content_free(outcome.error))}")
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
            config = with_page_size(ctx.config, size)
            with armed(control, ctx.agency, ["server_errors", "rate_limit"]):
                outcome = attempt(ctx.connector(config), ctx.window)
            done.append(_expect_transient(ctx, "503s and 429s (faults server_errors, rate_limit)", outcome,
                                          recovers=True, baseline=baseline))
            with armed(control, ctx.agency, ["renamed_column"]):
                outcome = attempt(ctx.connector(), ctx.window)
            done.append(_expect_permanent(ctx, "a renamed column (fault renamed_column)", outcome, (SourceSchemaError,)))
        else:
            unreachable = with_section(ctx.config, base_url=f"http://127.0.0.1:{closed_port()}")
            outcome = attempt(ctx.connector(unreachable, few), ctx.window)
            done.append(_expect_transient(ctx, "an unreachable agency", outcome, recovers=False, baseline=None))
        missing = with_section(ctx.config, path=ctx.config.rest.path.rstrip("/") + "/conformance-missing")  # type: ignore[union-attr]
        outcome = attempt(ctx.connector(missing), ctx.window)
        done.append(_expect_permanent(ctx, "a path the agency does not serve (404)", outcome, (NotFoundError,)))
    elif ctx.transport == "filedrop":
        baseline = ctx.full_pull()
        if control is not None:
            with armed(control, ctx.agency, ["truncated"]):
                outcome = attempt(ctx.connector(), ctx.window)
            if baseline.pages == 0:
                done.append("a file cut short: no files in the window, not exercised")
            else:
                done.append(_expect_transient(ctx, "a file cut short (fault truncated)", outcome, recovers=True,
                                              baseline=baseline))
            with armed(control, ctx.agency, ["renamed_column"]):
                outcome = attempt(ctx.connector(), ctx.window)
            if baseline.pages:
                done.append(_expect_permanent(ctx, "a renamed header (fault renamed_column)", outcome,
                                              (SourceSchemaError,)))
        else:
            done.append(_unfinished_file(ctx, few))
        gone = with_section(ctx.config, directory=str(Path(tempfile.gettempdir()) / f"fundx-conformance-{_secrets.token_hex(6)}"))
        outcome = attempt(ctx.connector(gone), ctx.window)
        done.append(_expect_permanent(ctx, "a drop folder that is not there", outcome, (NotFoundError,)))
    else:  # database
        url = f"postgresql+psycopg://fundx_probe@127.0.0.1:{closed_port()}/fundx_probe"
        with environment({PROBE_URL_ENV: url}):
            outcome = attempt(ctx.connector(with_section(ctx.config, url=f"env:{PROBE_URL_ENV}"), few), ctx.window)
        done.append(_expect_transient(ctx, "a database server refusing connections", outcome, recovers=False,
                                      baseline=None))
        if control is not None:
            with armed(control, ctx.agency, ["renamed_column"]):
                outcome = attempt(ctx.connector(), ctx.window)
            done.append(_expect_permanent(ctx, "a renamed column (fault renamed_column)", outcome, (SourceSchemaError,)))
        missing = with_section(ctx.config, relation="conformance_missing_relation")
        outcome = attempt(ctx.connector(missing), ctx.window)
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
        config = with_section(ctx.config, directory=folder)
        outcome = attempt(ctx.connector(config, settings), ctx.window)
    return _expect_transient(ctx, "a file whose done-marker does not match it yet", outcome, recovers=False,
                             baseline=None)
