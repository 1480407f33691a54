"""``fundx console``: serve the stewards' console (fundx/console/) and manage its accounts."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fundx.cli.common import console, err, fail, operator

console_app = typer.Typer(
    help="The stewards' console: a web page over the nights, the quarantine, decisions and the audit trail.",
    invoke_without_command=True)


@console_app.callback()
def console_serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="address to listen on (other than loopback only with TLS)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8765,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM) to serve HTTPS")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="its private key (PEM)")] = None,
) -> None:
    """Serve the stewards' console (http://127.0.0.1:8765 by default) until Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    from fundx.console import accounts  # before the ledger is opened: its tables are made with the ledger's
    from fundx.console.app import check_bind, serve
    from fundx.core.errors import FundxError
    from fundx.ledger import Ledger

    try:
        check_bind(host, tls_cert, tls_key)
    except FundxError as exc:
        fail(exc)
    if not accounts.accounts(Ledger.from_settings()):
        err.print("[yellow]no console accounts yet:[/yellow] fundx console add-user NAME --role steward|auditor|inspector|supervisor")
    scheme = "https" if tls_cert else "http"
    console.print(f"the stewards' console: {scheme}://{'[' + host + ']' if ':' in host else host}:{port}/ (Ctrl-C stops it)")
    try:
        serve(host, port, tls_cert=tls_cert, tls_key=tls_key)
    except FundxError as exc:
        fail(exc)


@console_app.command("add-user")
def console_add_user(
    name: Annotated[str, typer.Argument(help="account name: 2-32 of a-z 0-9 . _ -, starting with a letter")],
    role: Annotated[str, typer.Option(help="steward (reads, decides quarantines, unmasks), auditor (reads only), "
                                           "inspector (works and reviews cases) or supervisor (accepts cases)")],
    reset: Annotated[bool, typer.Option("--reset", help="the account exists: set a new password and role")] = False,
) -> None:
    """Create a console account; the password comes from a prompt (or FUNDX_CONSOLE_PASSWORD), never echoed."""
    from fundx.console import accounts
    from fundx.core.errors import FundxError
    from fundx.ledger import Ledger

    password = os.environ.get("FUNDX_CONSOLE_PASSWORD")
    if not password:
        if not sys.stdin.isatty():
            err.print("[red]error:[/red] no terminal to ask for the password: set FUNDX_CONSOLE_PASSWORD")
            raise typer.Exit(2)
        password = typer.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True)
    try:
        made = accounts.add_account(Ledger.from_settings(), name, role, password, actor=operator(), reset=reset)
    except FundxError as exc:
        fail(exc)
    console.print(f"console account {made.name} ({made.role}) {'reset' if reset else 'created'}; "
                  f"the password is stored as an argon2id hash")


@console_app.command("users")
def console_users() -> None:
    """The console's accounts and roles."""
    from fundx.console import accounts
    from fundx.core.timeutil import SHANGHAI
    from fundx.ledger import Ledger

    table = Table(title="console accounts")
    for col in ("account", "role", "created", "last sign-in"):
        table.add_column(col)
    for a in accounts.accounts(Ledger.from_settings()):
        table.add_row(a.name, a.role, a.created_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M"),
                      a.last_login_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") if a.last_login_at else "never")
    console.print(table)


@console_app.command("remove-user")
def console_remove_user(name: Annotated[str, typer.Argument(help="the account")]) -> None:
    """Remove a console account and end its sessions (audited)."""
    from fundx.console import accounts
    from fundx.ledger import Ledger

    if not accounts.remove_account(Ledger.from_settings(), name, actor=operator()):
        err.print(f"[red]error:[/red] there is no console account {name!r}")
        raise typer.Exit(1)
    console.print(f"console account {name} removed; its sessions ended")
