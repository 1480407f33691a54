"""``fundx sla``: service levels from the contracts — judge a night, report it, a month's scorecard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fundx.cli.common import console, fail, night_arg, prefect_defaults

sla_app = typer.Typer(help="Service levels from the contracts: judge a night, record and notify breaches.",
                      no_args_is_help=True)


def _findings_table(title: str, findings) -> Table:
    table = Table(title=title)
    for col in ("feed", "rule", "severity", "expected", "observed", "state"):
        table.add_column(col, overflow="fold")
    for f in findings:
        state = "[red]BREACHED[/red]" if f.breached else "[green]met[/green]"
        table.add_row(f.feed or "(the night)", f.rule, f.severity, f.expected, f.observed, state)
    return table


@sla_app.command("check")
def sla_check(night: Annotated[str | None, typer.Option(help="the night (YYYY-MM-DD); default tonight")] = None) -> None:
    """Judge a night now: record breaches and recoveries in the ledger, emit events, notify each once."""
    from fundx.core.errors import FundxError
    from fundx.sla import monitor

    prefect_defaults()  # its events go to this exchange's Prefect (home in FUNDX_HOME), checked before it starts
    try:
        done = monitor.check(night=night_arg(night))
    except FundxError as exc:
        fail(exc)
    console.print(_findings_table(f"service levels, night of {done.night}", done.findings))
    if done.certificates:
        console.print(_findings_table("certificates (FUNDX_KEYS_EXPIRY_WARNING_DAYS)", done.certificates))
    console.print(f"{len(done.opened)} breaches opened, {len(done.recovered)} recovered; notices sent "
                  f"{done.notices_sent}, failed {done.notices_failed}")
    if done.notices_failed:
        raise typer.Exit(1)


@sla_app.command("report")
def sla_report(
    night: Annotated[str | None, typer.Option(help="the night (YYYY-MM-DD); default tonight")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """A night's service levels per feed, met or breached with figures, and the breaches recorded (reads only)."""
    from datetime import date

    from fundx.core.timeutil import SHANGHAI, now
    from fundx.ledger import Ledger
    from fundx.sla import monitor

    ledger = Ledger.from_settings()
    day = date.fromisoformat(night_arg(night) or now().astimezone(SHANGHAI).date().isoformat())
    findings = monitor.judge(ledger, day)
    recorded = monitor.breach_records(ledger, night=day.isoformat())
    if as_json:
        print(json.dumps({
            "night": day.isoformat(),
            "findings": [{"feed": f.feed, "rule": f.rule, "severity": f.severity, "expected": f.expected,
                          "observed": f.observed, "breached": f.breached} for f in findings],
            "breaches": [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in recorded],
        }, ensure_ascii=False, indent=2))
        return
    console.print(_findings_table(f"service levels, night of {day}", findings))
    if recorded:
        table = Table(title="breaches recorded for this night")
        for col in ("feed", "rule", "severity", "status", "notified", "recovered on"):
            table.add_column(col)
        for r in recorded:
            table.add_row(r["feed"] or "(the night)", r["rule"], r["severity"], r["status"],
                          "yes" if r["notified_at"] else "no", r["recovered_on"] or "")
        console.print(table)


@sla_app.command("scorecard")
def sla_scorecard(
    month: Annotated[str | None, typer.Option(help="the month (YYYY-MM); default this month, Asia/Shanghai")] = None,
    png: Annotated[Path | None, typer.Option(help="where the chart goes (default FUNDX_HOME/reports/sla-YYYY-MM.png)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """A month's scorecard per agency and feed: on-time rate, completeness, error rate, latency
    percentiles, breaches; as a table (or JSON) and as a PNG chart."""
    from fundx.sla.scorecard import scorecard_command

    raise typer.Exit(scorecard_command(month, png, as_json, console))
