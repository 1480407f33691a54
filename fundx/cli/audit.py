"""``fundx audit``: prove the ledger's hash-chained audit trail unbroken."""

from __future__ import annotations

import typer

from fundx.cli.common import console, err

audit_app = typer.Typer(help="The ledger's hash-chained audit trail.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify() -> None:
    """Prove the audit trail unbroken from its first entry, or name the first bad entry (exit 1)."""
    from fundx.ledger import Ledger

    verdict = Ledger.from_settings().verify_audit()
    if verdict.ok:
        console.print(f"[green]{verdict}[/green]")
        return
    err.print(f"[red]{verdict}[/red]")
    raise typer.Exit(1)
