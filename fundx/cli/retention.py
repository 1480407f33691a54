"""``fundx purge``: remove what is past its contract's retention, compact the stages' stores, audit it."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from fundx.cli.common import bad, console, err, fail

retention_app = typer.Typer()


@retention_app.command()
def purge(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count what would go; change nothing")] = False,
    as_of: Annotated[str | None, typer.Option("--as-of", help="with --dry-run: count as if it were this time "
                                                               "(ISO, Asia/Shanghai if no offset)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Remove what is past its contract's retention; compact the stages' stores; audit the counts.

    Sealed batches, quarantined rows, the stages' answers and stage-store rows go once their contract's
    period (slaProperties) has passed; what is unacknowledged, undecided or held by an open order stays
    (docs/operations.md, Retention). The night runs it at its end. Exit 1 when a step could not run."""
    from fundx.core.errors import FundxError
    from fundx.core.timeutil import aware
    from matching.retention import purge as run_purge
    from matching.retention import summary_rows

    if as_of is not None and not dry_run:
        bad("--as-of counts as if at another time: give --dry-run with it")
    try:
        when = aware(as_of) if as_of else None
    except ValueError:
        bad(f"--as-of {as_of!r} is not a date or ISO time")
    try:
        report = run_purge(now=when, dry_run=dry_run)
    except FundxError as exc:
        fail(exc)
    rows = summary_rows(report)
    if as_json:
        print(json.dumps({"now": report.now.isoformat(), "dry_run": report.dry_run, "removed": rows,
                          "kept": report.notes, "problems": report.problems}, ensure_ascii=False, indent=2))
    else:
        verb = "would remove" if dry_run else "removed"
        table = Table(title=f"purge {'(dry run) ' if dry_run else ''}as of {report.now.isoformat(timespec='seconds')}")
        for col in ("feed", "kind", "what", verb):
            table.add_column(col, justify="right" if col == verb else "left", no_wrap=True)
        for r in rows:
            table.add_row(r["feed"], r["kind"], r["what"], f"{r['count']:,}")
        console.print(table if rows else f"nothing past its retention as of {report.now.isoformat(timespec='seconds')}")
        for note in report.notes:
            console.print(f"kept: {note}", soft_wrap=True)
        for problem in report.problems:
            err.print(f"[red]problem:[/red] {problem}", soft_wrap=True)
    if report.problems:
        raise typer.Exit(1)
