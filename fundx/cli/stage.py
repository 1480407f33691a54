"""``fundx stage``: the stages take their sealed batches and answer; the exchange records the answers.

:func:`receive_and_record` and :func:`print_deliveries` also serve ``fundx demo`` and ``fundx status``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from fundx.cli.common import console, err

stage_app = typer.Typer(help="The stages' side of the handoff: receive sealed batches and acknowledge them.",
                        no_args_is_help=True)


def receive_and_record(stage: str | None) -> tuple[int, int]:
    """Let one stage (or every stage) take its batches, print what happened, record the answers."""
    from fundx.exchange.acks import record_acks
    from fundx.stage import Stage, stages_with_inboxes

    stages = [stage] if stage else stages_with_inboxes()
    table = Table(title="stages")
    for col in ("stage", "batch", "outcome", "rows", "parts", "reason"):
        table.add_column(col, justify="right" if col in ("rows", "parts") else "left")
    received = refused = 0
    for name in stages:
        receipts = Stage(name).receive()
        for r in receipts:
            ok = r.outcome == "received"
            received += ok
            refused += not ok
            table.add_row(name, r.folder, "[green]received[/green]" if ok else "[red]refused[/red]",
                          f"{r.rows:,}" if ok else "-", str(r.parts) if ok else "-", r.reason or "")
        if not receipts:
            table.add_row(name, "-", "nothing new", "-", "-", "")
    console.print(table)
    answers = record_acks()
    console.print(f"answers recorded in the ledger: {answers.received} acknowledgements, {answers.refused} refusals"
                  + (f", [red]{answers.invalid} with a refused signature[/red]" if answers.invalid else "")
                  + f"; {answers.settled} deliveries settled")
    return received, refused


def print_deliveries() -> None:
    from connectors import feed_names
    from fundx.ledger import Ledger

    counts = Ledger.from_settings().delivery_counts()
    table = Table(title="sealed batches handed to the stages, per feed")
    for col in ("feed", "delivered", "acknowledged", "awaiting answer", "refused", "refusals seen", "rows"):
        table.add_column(col, justify="left" if col == "feed" else "right")
    for feed in sorted(set(feed_names()) | set(counts)):
        c = counts.get(feed)
        if c is None:
            table.add_row(feed, "0", "0", "0", "0", "0", "0")
            continue
        table.add_row(feed, str(c["delivered"]), str(c["acknowledged"]), str(c["awaiting"]),
                      f"[red]{c['refused']}[/red]" if c["refused"] else "0",
                      f"[red]{c['refusals']}[/red]" if c["refusals"] else "0", f"{c['rows']:,}")
    console.print(table)


@stage_app.command("receive")
def stage_receive(
    stage: Annotated[str | None, typer.Argument(help="the stage, e.g. death_matching")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every stage")] = False,
) -> None:
    """Verify, acknowledge (or refuse) every READY batch in a stage's inbox; the exchange records the answers."""
    if bool(stage) == all_:
        err.print("[red]error:[/red] name one STAGE or pass --all")
        raise typer.Exit(2)
    _, refused = receive_and_record(stage)
    if refused:
        raise typer.Exit(1)
