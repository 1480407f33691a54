"""What every ``fundx`` command group shares: the output consoles, the one-line error, the ledger-revision
check, Prefect's quiet defaults, and the small argument helpers (night, money, who decides)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn

import typer
from rich.console import Console

from fundx.cli import preflight

# Wide enough for feed names when the output is not a terminal (CI logs, pipes).
console = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)


def prefect_defaults() -> None:
    """Quiet, local Prefect unless the user configured otherwise (must run before prefect is imported)."""
    from fundx.core.settings import get_settings, prepare_home

    home = prepare_home(get_settings().home)  # Prefect makes its home but not a missing FUNDX_HOME above it
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    # fundx prints each feed's outcome and what to do itself; Prefect's own tracebacks of a failed
    # feed would only repeat it (`fundx -v ...` shows them).
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # Heartbeats cost about a second per flow run and the exchange does not use them.
    if not os.environ.get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY"):
        os.environ.pop("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", None)
    check(preflight.prefect)  # before the server starts: one line now, not two minutes of retries


def check(step: Callable[[], object]) -> None:
    """Run one of the start-up checks (fundx.cli.preflight); what it finds missing ends the command in one
    line, naming the setting and what to do, with exit code 1."""
    from fundx.core.errors import FundxError

    try:
        step()
    except FundxError as exc:
        one_line(exc)


def one_line(error: BaseException, code: int = 1) -> NoReturn:
    """A fundx error and what to do about it, on one line (however long), then exit ``code``."""
    from rich.markup import escape

    from fundx.core.errors import FundxError

    action = error.action if isinstance(error, FundxError) else None
    text = str(error) if action is None or action in str(error) else f"{error} — {action}"
    err.print(f"[red]error:[/red] {escape(text)}", soft_wrap=True)
    raise typer.Exit(code)


def fail(error: BaseException, code: int = 1) -> NoReturn:
    """Say what went wrong in one line — a fundx error with what to do about it; any other error by its type
    only (its message could carry a value) — and exit with ``code``."""
    from fundx.core.errors import FundxError

    if isinstance(error, FundxError):
        one_line(error, code)
    err.print(f"[red]error:[/red] {type(error).__name__}")
    raise typer.Exit(code)


def refuse_another_schema() -> None:
    """Refuse, in one line and before anything starts (Prefect, a stage, the matching), to run on a ledger
    whose schema revision is not this fundx's: behind it (the line names `fundx ledger upgrade`) or ahead."""
    import sqlalchemy as sa

    from fundx.core.errors import FundxError
    from fundx.core.settings import get_settings
    from fundx.ledger.revision import check_schema

    check(preflight.ledger)  # its server answers (or the command would wait out a connect timeout first)
    try:
        check_schema(get_settings().ledger)
    except FundxError as exc:  # LedgerSchemaError, or FUNDX_LEDGER_URL unusable
        one_line(exc)
    except sa.exc.DBAPIError:
        pass  # the database went away since the check: the command's own first use of the ledger says so


def operator() -> str:
    """Who runs an administrative command that no account can (making the first console account, upgrading the
    ledger): FUNDX_STEWARD, else the operating-system user. Decisions on data are never taken under it:
    they need a console account (:func:`signed_in`)."""
    import getpass

    return os.environ.get("FUNDX_STEWARD") or getpass.getuser()


def signed_in(name: str, roles: tuple[str, ...] | None = None):
    """The console account ``name`` (fundx.console.accounts), its password asked (hidden) or read from standard
    input when that is not a terminal, and checked like a console sign-in (counted, locked after repeated
    failures, audited). Exit 1 in one line when it is refused, or its role is not one of ``roles``."""
    import getpass

    from fundx.console import accounts
    from fundx.ledger import Ledger

    if sys.stdin.isatty():
        password = getpass.getpass(f"password of {name}: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        err.print(f"[red]error:[/red] --account {name}: no password given (type it when asked, or give it on standard "
                  "input)")
        raise typer.Exit(1)
    account = accounts.authenticate(Ledger.from_settings(), name, password)
    if account is None:
        err.print(f"[red]error:[/red] --account {name}: wrong password, unknown or locked (see fundx console users)")
        raise typer.Exit(1)
    if roles is not None and account.role not in roles:
        err.print(f"[red]error:[/red] --account {name} is {account.role}: this needs {' or '.join(roles)}")
        raise typer.Exit(1)
    return account


def night_arg(night: str | None, option: str = "--night") -> str | None:
    """A ``--night`` option (or another date ``option``) as YYYY-MM-DD (None when not given); exit 2 naming it when
    it is not a date."""
    from datetime import date

    if night is None:
        return None
    try:
        return date.fromisoformat(night).isoformat()
    except ValueError:
        err.print(f"[red]error:[/red] {option}: {night!r} is not a date (YYYY-MM-DD)")
        raise typer.Exit(2) from None


def bad(message: str) -> NoReturn:
    """Bad input: say what is wrong with it, on one line however long, and exit 2."""
    err.print(f"[red]error:[/red] {message}", soft_wrap=True)
    raise typer.Exit(2)


def money(x: float | None) -> str:
    """An amount (CNY) as 1,234.50; empty when there is none."""
    return "" if x is None else f"{x:,.2f}"
