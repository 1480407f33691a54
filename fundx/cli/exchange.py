"""``fundx night``, ``pull`` and ``backfill`` run the exchange; ``status`` and ``feeds`` show what it knows and did.

``exchange_app`` has no name: fundx/cli/__init__.py adds its commands to ``fundx`` itself.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Table

from fundx.cli import preflight
from fundx.cli.common import check, console, err, one_line, prefect_defaults
from fundx.cli.stage import print_deliveries

exchange_app = typer.Typer()


@contextmanager
def _live_progress(label: str):
    """A status line that shows rows pulled per feed while a flow runs."""
    from flows import exchange

    with console.status(label) as status:
        def sink(feed: str, rows: int) -> None:
            status.update(f"{label} — {feed}: {rows:,} rows")

        exchange.progress_sink = sink
        try:
            yield
        finally:
            exchange.progress_sink = None


def run_night(feeds: list[str] | None = None) -> int:
    """Run one night (these feeds, or every feed) with a live status line; the run's id in the ledger."""
    from flows.exchange import nightly_exchange
    from fundx.core.errors import NightFailed
    from fundx.ledger import Ledger

    with _live_progress("running the night"):
        try:
            nightly_exchange(feeds=feeds)
        except NightFailed:
            pass  # the table below names the failed feeds and what to do
    return Ledger.from_settings().last_runs(1)[0]["id"]


def print_run(run_id: int) -> None:
    """A run's table, one row per feed, then each problem with what to do, holds, releases and breaches."""
    from fundx.core.settings import get_settings
    from fundx.exchange import quarantine
    from fundx.ledger import Ledger

    ledger = Ledger.from_settings()
    table = Table(title=f"run {run_id}")
    columns: tuple[tuple[str, Literal["left", "right"]], ...] = (
        ("feed", "left"), ("outcome", "left"), ("pulled", "right"), ("valid", "right"), ("quarantined", "right"),
        ("rejected", "right"), ("bytes", "right"), ("retries", "right"), ("seconds", "right"), ("handed to", "left"))
    for col, justify in columns:
        table.add_column(col, justify=justify)
    problems = []
    by_pull = {d.pull_id: d for d in ledger.deliveries() if d.pull_id is not None}
    night = ledger.run_night(run_id)
    kept_by_pull = {q.pull_id: q for q in quarantine.batches_by_pull(ledger, [p.id for p in ledger.pulls_of_run(run_id)])}
    for p in ledger.pulls_of_run(run_id):
        ok = p.outcome in ("pulled", "held")
        batch = by_pull.get(p.id)
        q = kept_by_pull.get(p.id)
        handed = "-"
        if batch is not None:
            handed = batch.stage
        elif p.outcome == "held":
            handed = "held for the stewards"
        elif q is not None:
            handed = "stewards only"
        elif ok:
            handed = "nothing new" if not p.rows else "delivered before"
        held = p.outcome == "held"
        rows = p.rows or 0
        quarantined = 0 if q is None or held else q.quarantined
        outcome = {"pulled": "[green]pulled[/green]", "held": "[yellow]held[/yellow]"}.get(
            p.outcome, f"[red]failed: {p.error_type}[/red]")
        table.add_row(
            p.feed, outcome, f"{rows:,}" if ok else "-",
            "-" if not ok else f"{0 if held else rows - quarantined:,}",
            "-" if not ok else f"{quarantined:,}", "-" if not ok else f"{rows if held else 0:,}",
            _size(p.bytes) if ok else "-", str(p.retries if p.retries is not None else "-"), f"{p.duration_s:.2f}",
            handed,
        )
        if not ok:
            problems.append(p)
    console.print(table)
    for p in problems:
        console.print(f"[red]{p.error_message}[/red]\n  what to do: {p.action}")
    for q in (q for q in kept_by_pull.values() if q.held):
        console.print(f"[yellow]{q.feed}: batch {q.batch_id} held back whole ({q.reason})[/yellow]\n"
                      f"  what to do: a data steward decides with fundx failures show {q.batch_id}")
    released = quarantine.releases_of_run(ledger, run_id)
    for d in released:
        console.print(f"{d.feed}: {len(d.rows)} rows released by {d.actor} (decision {d.id}) handed over "
                      f"as batch {d.delivered_batch_id}")
    breached = [r for r in _breaches_of(ledger, night) if r["status"] == "open"]
    if breached:
        console.print(f"service levels: {len(breached)} open breaches on {night} "
                      f"({', '.join(sorted({(r['feed'] or 'night') + ' ' + r['rule'] for r in breached}))}): "
                      f"[bold]fundx sla report --night {night}[/bold]")
    if kept_by_pull:
        report = get_settings().home / "reports" / night
        console.print(f"rows that failed their contract are sealed for the stewards: [bold]fundx failures list[/bold]; "
                      f"the night's validation report: {report / 'index.html'}")


def _breaches_of(ledger, night: str) -> list[dict]:
    from fundx.sla import monitor

    return monitor.breach_records(ledger, night=night)


def exit_for_run(run_id: int) -> None:
    """Exit 1 unless the run completed."""
    from fundx.ledger import Ledger

    run = next(r for r in Ledger.from_settings().last_runs(50) if r["id"] == run_id)
    if run["outcome"] != "completed":
        raise typer.Exit(1)


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@exchange_app.command()
def night(
    feed: Annotated[list[str] | None, typer.Option("--feed", help="run only these feeds (repeatable)")] = None,
) -> None:
    """Run one night of every feed against the configured agencies (or a running sandbox)."""
    from connectors import feed_names
    from fundx.core.errors import ConfigurationError

    check(preflight.keys)
    names = feed or feed_names()
    problems = preflight.feeds(names)
    if len(problems) == len(names):  # nothing could run: say so now, not after starting Prefect for nothing
        first = next(iter(problems.values()))
        one_line(ConfigurationError(
            f"no feed can run: {len(problems)} of {len(names)} lack what they need, e.g. {first}",
            action="start the sandbox (fundx sandbox start) or set the agencies' settings (fundx pull FEED names "
                   "each feed's)"))
    for name, problem in problems.items():  # the night runs the others, and records these as failed
        err.print(f"[yellow]warning:[/yellow] {escape(str(problem))} — {escape(problem.action)} (the night goes on "
                  f"without {name})", soft_wrap=True)
    prefect_defaults()
    run_id = run_night(feed or None)
    print_run(run_id)
    exit_for_run(run_id)


@exchange_app.command()
def pull(feed: Annotated[str, typer.Argument(help="feed name, e.g. police.deaths")]) -> None:
    """Pull one feed from its watermark up to now."""
    _run_feed(feed, None, None)


@exchange_app.command()
def backfill(
    feed: Annotated[str, typer.Argument(help="feed name, e.g. police.deaths")],
    from_: Annotated[str, typer.Option("--from", help="window start, a date or ISO time (Asia/Shanghai)")],
    to: Annotated[str, typer.Option("--to", help="window end (exclusive), a date or ISO time")],
) -> None:
    """Re-pull a window; the feed's watermark never moves backwards."""
    from fundx.core.timeutil import Window

    try:
        Window.of(from_, to)
    except ValueError as exc:
        err.print(f"[red]error:[/red] --from/--to: {exc}")
        raise typer.Exit(2) from None
    _run_feed(feed, from_, to)


def _run_feed(feed: str, start: str | None, end: str | None) -> None:
    from connectors import feed_names
    from fundx.core.errors import FundxError

    if feed not in feed_names():
        err.print(f"[red]error:[/red] unknown feed {feed!r}; known: {', '.join(feed_names())}")
        raise typer.Exit(2)
    check(preflight.keys)
    if problem := preflight.feeds([feed]).get(feed):  # before Prefect starts: in seconds, one line
        one_line(problem)
    prefect_defaults()
    from flows.exchange import exchange_feed
    from fundx.ledger import Ledger

    with _live_progress(f"pulling {feed}"):
        try:
            exchange_feed(feed, start=start, end=end)
        except FundxError:
            pass  # recorded in the ledger; printed below
    run_id = Ledger.from_settings().last_runs(1)[0]["id"]
    print_run(run_id)
    exit_for_run(run_id)


@exchange_app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Each feed's watermark, last pull and totals, and the last nights."""
    from connectors import feed_names
    from fundx.core.timeutil import SHANGHAI
    from fundx.ledger import Ledger

    ledger = Ledger.from_settings()
    marks, latest, totals = ledger.watermarks(), ledger.latest_pulls(), ledger.totals()
    handed = ledger.delivery_counts()
    nothing = {"delivered": 0, "awaiting": 0, "acknowledged": 0, "refused": 0, "abandoned": 0, "lost": 0, "rows": 0,
               "refusals": 0}
    feeds: list[dict[str, Any]] = []
    for name in feed_names():
        pull = latest.get(name)
        feeds.append({
            "feed": name,
            "watermark": marks[name].astimezone(SHANGHAI).isoformat() if name in marks else None,
            "last_pull": None if pull is None else {
                "at": pull.started_at.astimezone(SHANGHAI).isoformat(), "outcome": pull.outcome,
                "rows": pull.rows, "bytes": pull.bytes, "error_type": pull.error_type,
                "error": pull.error_message, "action": pull.action,
                "repeats": {"identical": pull.repeats_identical, "superseded": pull.repeats_superseded,
                            "conflicting": pull.repeats_conflicting},
            },
            "totals": totals.get(name, {"pulled": 0, "failed": 0, "rows": 0}),
            "deliveries": handed.get(name, dict(nothing)),
        })
    nights = [
        {"run": r["id"], "kind": r["kind"], "night": r["night"], "outcome": r["outcome"],
         "feeds": r["feeds"], "failed": r["feeds_failed"], "summary": r["summary"] or ""}
        for r in ledger.last_runs(5)
    ]
    if as_json:
        print(json.dumps({"ledger": _redacted_url(ledger.url), "feeds": feeds, "runs": nights}, ensure_ascii=False, indent=2))
        return
    # the repeats column only when a last pull had rows sharing a record key (most nights none: no column)
    repeated = any(any((f["last_pull"] or {}).get("repeats", {}).values()) for f in feeds)
    table = Table(title=f"feeds — ledger {_redacted_url(ledger.url)}", caption=(
        "repeats: rows of the last pull that shared a record key — copies collapsed / earlier versions replaced / "
        "conflicting (kept for the stewards)") if repeated else None)
    for col in ("feed", "watermark", "last pull", "outcome", "rows", *(("repeats",) if repeated else ()),
                "pulls ok/failed", "rows in all"):
        table.add_column(col, justify="right" if col.startswith(("rows", "repeats")) else "left")
    for f in feeds:
        last = f["last_pull"] or {}
        outcome = last.get("outcome", "never pulled")
        if outcome == "failed":
            outcome = f"[red]failed: {last['error_type']}[/red]"
        repeats = last.get("repeats") or {}
        table.add_row(
            f["feed"], (f["watermark"] or "-")[:19], (last.get("at") or "-")[:19], outcome,
            f"{last['rows']:,}" if last.get("rows") is not None else "-",
            *(("/".join(f"{repeats[k]:,}" for k in ("identical", "superseded", "conflicting")) if repeats else "-",)
              if repeated else ()),
            f"{f['totals']['pulled']}/{f['totals']['failed']}", f"{f['totals']['rows']:,}",
        )
    console.print(table)
    print_deliveries()
    if any(f["deliveries"]["awaiting"] for f in feeds):
        console.print("batches awaiting their stage's answer: run [bold]fundx stage receive --all[/bold]")
    runs = Table(title="last runs")
    for col in ("run", "kind", "night", "outcome", "feeds", "failed", "summary"):
        runs.add_column(col)
    for r in nights:
        runs.add_row(str(r["run"]), r["kind"], r["night"], r["outcome"], str(r["feeds"]), str(r["failed"]), r["summary"])
    console.print(runs)


def _redacted_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@exchange_app.command()
def feeds() -> None:
    """The feeds this exchange knows: agency, transport, recipient stage."""
    from connectors import feed_names, load_feed

    table = Table(title="feeds")
    for col in ("feed", "agency", "transport", "stage", "title"):
        table.add_column(col)
    for name in feed_names():
        f = load_feed(name)
        table.add_row(name, f.agency, f.transport, f.stage, f.title)
    console.print(table)
