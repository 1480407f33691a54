"""``fundx notify``: try the channels that notices of SLA breaches go to (FUNDX_NOTIFY)."""

from __future__ import annotations

import typer
from rich.table import Table

from fundx.cli.common import console, fail

notify_app = typer.Typer(help="Where notices of SLA breaches go (FUNDX_NOTIFY).", no_args_is_help=True)


@notify_app.command("test")
def notify_test() -> None:
    """Send a test notice to every channel of FUNDX_NOTIFY; exit 1 if any channel failed."""
    from fundx.core.errors import FundxError
    from fundx.notify import Notifier, send_test

    try:
        results = send_test(Notifier.from_settings())
    except FundxError as exc:
        fail(exc)
    if not results:
        console.print("no channels configured: set FUNDX_NOTIFY (docs/service-levels.md)")
        raise typer.Exit(1)
    table = Table(title="test notice")
    for col in ("channel", "outcome", "attempts", "seconds"):
        table.add_column(col)
    for r in results:
        outcome = "[green]ok[/green]" if r.ok else f"[red]{r.error}: {r.message or ''}[/red]"
        table.add_row(r.channel, outcome, str(r.attempts), f"{r.seconds:.2f}")
    console.print(table)
    if not all(r.ok for r in results):
        raise typer.Exit(1)
