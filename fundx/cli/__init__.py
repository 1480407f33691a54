"""The ``fundx`` command: run the exchange, look at what it did, and drive the sandbox agencies."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup


class _Fundx(TyperGroup):
    """The top-level group; notes a ``--help`` after the command, which only prints help whatever the ledger."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:  # called before the group's callback
        ctx.meta["fundx.help"] = "--help" in args
        return super().resolve_command(ctx, args)


app = typer.Typer(
    help="fundx — the inter-agency data exchange for social-insurance fund supervision.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_Fundx,
)
sandbox_app = typer.Typer(help="Start and stop the simulated agencies (real servers and files on loopback).")
app.add_typer(sandbox_app, name="sandbox")
keys_app = typer.Typer(help="Keys and X.509 certificates (a development PKI under FUNDX_HOME/keys).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
stage_app = typer.Typer(help="The stages' side of the handoff: receive sealed batches and acknowledge them.",
                        no_args_is_help=True)
app.add_typer(stage_app, name="stage")
audit_app = typer.Typer(help="The ledger's hash-chained audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
failures_app = typer.Typer(
    help="The stewards' quarantine: rows that failed their contract (sealed for the stewards), and decisions.",
    no_args_is_help=True)
app.add_typer(failures_app, name="failures")
notify_app = typer.Typer(help="Where notices of SLA breaches go (FUNDX_NOTIFY).", no_args_is_help=True)
app.add_typer(notify_app, name="notify")
sla_app = typer.Typer(help="Service levels from the contracts: judge a night, record and notify breaches.",
                      no_args_is_help=True)
app.add_typer(sla_app, name="sla")
matching_app = typer.Typer(
    help="The matching stage: run the rules over the stages' stores into suspects and orders; report per rule.",
    no_args_is_help=True)
app.add_typer(matching_app, name="matching")
orders_app = typer.Typer(
    help="Inspection orders (订单式检查), one per suspect: list them by district, show one, close it with its outcome.",
    no_args_is_help=True)
app.add_typer(orders_app, name="orders")
# onboarding an agency: scaffold and check a connector; infer, diff and release contracts
from fundx.cli.connector import connector_app  # noqa: E402
from fundx.cli.contract import contract_app  # noqa: E402
from fundx.cli.ledger import ledger_app  # noqa: E402

app.add_typer(connector_app, name="connector")
app.add_typer(contract_app, name="contract")
app.add_typer(ledger_app, name="ledger")
#: commands that never open the ledger, and `fundx ledger` itself: they run whatever the ledger's schema
#: revision (demo checks after it has reset its own ledger)
_ANY_LEDGER = frozenset({"ledger", "sandbox", "feeds", "connector", "contract", "notify", "demo"})
# Wide enough for feed names when the output is not a terminal (CI logs, pipes).
console = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)


def _prefect_defaults() -> None:
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


def _fail(error: BaseException, code: int = 1) -> None:
    from fundx.core.errors import FundxError

    if isinstance(error, FundxError):
        err.print(f"[red]error:[/red] {error}")
        if error.action not in str(error):  # a message that says what to do already is one line
            err.print(f"[yellow]what to do:[/yellow] {error.action}")
    else:
        err.print(f"[red]error:[/red] {type(error).__name__}")
    raise typer.Exit(code)


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


@app.callback()
def _options(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show Prefect's and fundx's own log lines")] = False,
) -> None:
    from fundx.core.settings import private_umask

    private_umask()  # whatever the shell's umask: files 0600, folders 0700 (also Prefect's, SQLite's, GX's)
    if verbose:
        os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if ctx.invoked_subcommand not in _ANY_LEDGER and not ctx.meta.get("fundx.help"):
        _refuse_another_schema()


def _refuse_another_schema() -> None:
    """Refuse, in one line and before anything starts (Prefect, a stage, the matching), to run on a ledger
    whose schema revision is not this fundx's: behind it (the line names `fundx ledger upgrade`) or ahead."""
    import sqlalchemy as sa

    from fundx.core.errors import FundxError
    from fundx.core.settings import get_settings
    from fundx.ledger import check_schema

    try:
        check_schema(get_settings().ledger)
    except FundxError as exc:  # LedgerSchemaError, or FUNDX_LEDGER_URL unusable
        if exc.action not in str(exc):
            _fail(exc)
        from rich.markup import escape

        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)  # one line, however long
        raise typer.Exit(1) from None
    except sa.exc.DBAPIError:
        pass  # the database cannot be reached: the command's own first use of the ledger says so


# the exchange ----------------------------------------------------------------------------------


@app.command()
def demo(
    people: Annotated[int, typer.Option(help="people in the synthetic city")] = 10_000,
    seed: Annotated[int | None, typer.Option(help="generator seed (default: the fixed demo seed)")] = None,
    faults: Annotated[str, typer.Option(help="fault profiles, e.g. 'police=server_errors,rate_limit;justice=empty'")] = "",
    fresh: Annotated[bool, typer.Option(help="start from an empty demo ledger (only a home made by `fundx demo`)")] = True,
) -> None:
    """Start the sandbox agencies, run one whole night, and print what each feed did."""
    from fundx.core.settings import get_settings, reload_settings

    settings = get_settings()
    _prepare_demo_home(settings.home, fresh)
    _refuse_another_schema()  # --no-fresh keeps a ledger that may be older than this fundx
    _prefect_defaults()
    from sandbox.agencies import Sandbox, parse_faults
    from sandbox.city import DEFAULT_SEED

    try:
        fault_map = parse_faults(faults) if faults else {}
    except ValueError as exc:
        err.print(f"[red]error:[/red] --faults: {exc}")
        raise typer.Exit(2) from None
    with console.status(f"generating a city of {people:,} people and starting the sandbox agencies on loopback"):
        sb = Sandbox(settings.sandbox_home, people=people, seed=seed or DEFAULT_SEED, faults=fault_map).start()
    try:
        os.environ.update(sb.env)
        reload_settings()
        console.print(f"sandbox agencies up (data under {settings.sandbox_home}); exchange state under {settings.home}")
        for why in sb.not_simulated.values():
            console.print(f"[yellow]not simulated, left out of the night:[/yellow] {why}")
        run_id = _run_night(sb.feeds if sb.not_simulated else None)
    finally:
        sb.stop()
    _print_run(run_id)
    console.print("the stages take their sealed batches from their inboxes and acknowledge them:")
    _receive_and_record(None)
    _print_deliveries()
    console.print("the matching stages load what they received (pseudonymised) and match it against the office's "
                  "benefit roll:")
    from fundx.core.errors import FundxError
    from matching.run import run_matching

    try:
        _print_matching(run_matching(), truths=sb.city.truths)
    except FundxError as exc:
        _fail(exc)
    console.print("next: [bold]fundx status[/bold] shows the ledger; [bold]fundx orders list[/bold] the inspection "
                  "orders; [bold]fundx audit verify[/bold] checks the audit trail; [bold]make test[/bold] runs the suite")
    _exit_for_run(run_id)


def _prepare_demo_home(home: Path, fresh: bool) -> None:
    marker = home / "DEMO"
    if home.exists() and any(home.iterdir()) and not marker.exists():
        if fresh:
            err.print(f"[red]error:[/red] {home} holds state that `fundx demo` did not make; refusing to reset it")
            err.print("[yellow]what to do:[/yellow] point FUNDX_HOME at another folder, or pass --no-fresh")
            raise typer.Exit(2)
        return
    if fresh:
        import shutil

        for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
            (home / name).unlink(missing_ok=True)
        for folder in ("inboxes", "acks", "stages", "locks", "quarantine", "reports", "matching"):  # they go with the ledger
            shutil.rmtree(home / folder, ignore_errors=True)
    from fundx.core.settings import prepare_home
    from fundx.crypto.keys import write_file_atomic

    prepare_home(home)
    write_file_atomic(marker, b"made by `fundx demo`; `fundx demo` may reset this folder's ledger\n", 0o600)


def _run_night(feeds: list[str] | None = None) -> int:
    from flows.exchange import nightly_exchange
    from fundx.core.errors import NightFailed
    from fundx.ledger import Ledger

    with _live_progress("running the night"):
        try:
            nightly_exchange(feeds=feeds)
        except NightFailed:
            pass  # the table below names the failed feeds and what to do
    return Ledger.from_settings().last_runs(1)[0]["id"]


def _print_run(run_id: int) -> None:
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


def _exit_for_run(run_id: int) -> None:
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


@app.command()
def night(
    feed: Annotated[list[str] | None, typer.Option("--feed", help="run only these feeds (repeatable)")] = None,
) -> None:
    """Run one night of every feed against the configured agencies (or a running sandbox)."""
    _prefect_defaults()
    run_id = _run_night(feed or None)
    _print_run(run_id)
    _exit_for_run(run_id)


@app.command()
def pull(feed: Annotated[str, typer.Argument(help="feed name, e.g. police.deaths")]) -> None:
    """Pull one feed from its watermark up to now."""
    _run_feed(feed, None, None)


@app.command()
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
    _prefect_defaults()
    from flows.exchange import exchange_feed
    from fundx.ledger import Ledger

    with _live_progress(f"pulling {feed}"):
        try:
            exchange_feed(feed, start=start, end=end)
        except FundxError:
            pass  # recorded in the ledger; printed below
    run_id = Ledger.from_settings().last_runs(1)[0]["id"]
    _print_run(run_id)
    _exit_for_run(run_id)


@app.command()
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
    _print_deliveries()
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


@app.command()
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


# keys, stages, audit ----------------------------------------------------------------------------


@keys_app.command("init")
def keys_init(
    force: Annotated[bool, typer.Option("--force", help="start over with a new CA (every certificate is re-issued)")] = False,
) -> None:
    """Create the development PKI under FUNDX_HOME/keys: CA, CRL, exchange signer, per stage an
    encryption and an acknowledgement-signing certificate (private keys mode 0600). Development only."""
    from fundx.core.settings import get_settings
    from fundx.crypto.keys import init_keys, recipients
    from fundx.ledger import Ledger

    settings = get_settings()
    paths = init_keys(settings.home, force=force)
    Ledger.from_settings().log_event("keys.init", str(paths.dir), {"development": True, "force": force}, actor="cli")
    table = Table(title=f"development PKI in {paths.dir}")
    table.add_column("who")
    table.add_column("certificate")
    table.add_column("private key")
    table.add_row("CA", str(paths.ca_cert), str(paths.ca_key))
    table.add_row("exchange (signs parts)", str(paths.exchange_cert), str(paths.exchange_key))
    for stage in recipients():
        table.add_row(f"{stage} (decrypts)", str(paths.stage_cert(stage)), str(paths.stage_key(stage)))
        table.add_row(f"{stage} (signs answers)", str(paths.signer_cert(stage)), str(paths.signer_key(stage)))
    console.print(table)
    console.print(f"revocation list: {paths.crl}. Production sets FUNDX_KEYS_* instead (files, env: or secret:).")


def _receive_and_record(stage: str | None) -> tuple[int, int]:
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


def _print_deliveries() -> None:
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
    _, refused = _receive_and_record(stage)
    if refused:
        raise typer.Exit(1)


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


# the sandbox ------------------------------------------------------------------------------------


def _sandbox_state(home: Path) -> dict | None:
    path = home / "sandbox.json"
    if not path.is_file():
        return None
    state = json.loads(path.read_text(encoding="utf-8"))
    try:
        os.kill(int(state["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return None
    return state


@sandbox_app.command("start")
def sandbox_start(
    people: Annotated[int, typer.Option(help="people in the synthetic city")] = 10_000,
    seed: Annotated[int | None, typer.Option(help="generator seed")] = None,
    faults: Annotated[str, typer.Option(help="fault profiles, e.g. 'police=server_errors'")] = "",
    medical_db_url: Annotated[str | None, typer.Option(help="PostgreSQL URL for the medical-insurance database")] = None,
) -> None:
    """Start the agencies in the background; `fundx pull` and `fundx night` then find them."""
    from fundx.core.settings import get_settings

    home = get_settings().sandbox_home
    if (state := _sandbox_state(home)) is not None:
        console.print(f"sandbox already running (pid {state['pid']}); `fundx sandbox stop` first")
        return
    home.mkdir(parents=True, exist_ok=True)
    (home / "sandbox.json").unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "sandbox", "serve", "--home", str(home), "--people", str(people)]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    if faults:
        cmd += ["--faults", faults]
    if medical_db_url:
        cmd += ["--medical-db-url", medical_db_url]
    log = open(home / "sandbox.log", "ab")  # noqa: SIM115 - the sandbox's output, open for as long as it runs
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    with console.status(f"generating a city of {people:,} people and starting the agencies"):
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err.print(f"[red]error:[/red] the sandbox exited with code {proc.returncode}; see {home / 'sandbox.log'}")
                raise typer.Exit(1)
            if (state := _sandbox_state(home)) is not None:
                break
            time.sleep(0.2)
        else:
            proc.terminate()
            err.print("[red]error:[/red] the sandbox did not come up within 300 s")
            raise typer.Exit(1)
    _print_sandbox(state)


def _print_sandbox(state: dict) -> None:
    table = Table(title=f"sandbox pid {state['pid']} ({state.get('people', '?'):,} people)")
    table.add_column("agency")
    table.add_column("where")
    for agency, where in sorted(state.get("urls", {}).items()):
        table.add_row(agency, str(where))
    table.add_row("control", state.get("control_url", "-"))
    console.print(table)
    for feed, why in sorted(state.get("not_simulated", {}).items()):
        console.print(f"[yellow]not simulated:[/yellow] {why}" if why.startswith(f"{feed}:") else
                      f"[yellow]not simulated:[/yellow] {feed}: {why}")


@sandbox_app.command("stop")
def sandbox_stop() -> None:
    """Stop the background agencies."""
    from fundx.core.settings import get_settings

    home = get_settings().sandbox_home
    state = _sandbox_state(home)
    if state is None:
        console.print("no sandbox is running")
        return
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    (home / "sandbox.json").unlink(missing_ok=True)
    console.print(f"sandbox (pid {pid}) stopped")


@sandbox_app.command("status")
def sandbox_status() -> None:
    """Whether the background agencies run, and where."""
    from fundx.core.settings import get_settings

    state = _sandbox_state(get_settings().sandbox_home)
    if state is None:
        console.print("no sandbox is running")
        raise typer.Exit(1)
    _print_sandbox(state)


# the stewards' quarantine -----------------------------------------------------------------------


def _steward() -> str:
    """Who decides: FUNDX_STEWARD, else the operating-system user."""
    import getpass

    return os.environ.get("FUNDX_STEWARD") or getpass.getuser()


@failures_app.command("list")
def failures_list(
    feed: Annotated[str | None, typer.Option(help="only this feed")] = None,
    night: Annotated[str | None, typer.Option(help="only this night (YYYY-MM-DD)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Quarantined and held batches (newest first), with rows failing each rule and what is decided."""
    from fundx.exchange import quarantine
    from fundx.ledger import Ledger

    ledger = Ledger.from_settings()
    found = quarantine.batches(ledger, feed=feed, night=night)
    rules: dict[str, list[dict]] = {}
    for r in quarantine.rule_counts(ledger, feed=feed, night=night):
        rules.setdefault(r["batch_id"], []).append({"rule": r["rule"], "failed": r["failed"], "rows": r["rows"]})
    if as_json:
        print(json.dumps([{
            "batch": q.batch_id, "feed": q.feed, "night": q.night, "pulled": q.pulled, "valid": q.valid,
            "quarantined": q.quarantined, "held": q.held, "reason": q.reason, "released": q.released,
            "released_pending": q.released_pending, "rejected": q.rejected, "open": q.open,
            "rules": sorted(rules.get(q.batch_id, []), key=lambda r: r["rule"]),
        } for q in found], ensure_ascii=False, indent=2))
        return
    if not found:
        console.print("nothing quarantined" + (f" for {feed}" if feed else "") + (f" on {night}" if night else ""))
        return
    table = Table(title="quarantined batches")
    for col in ("night", "feed", "batch", "pulled", "quarantined", "held", "released", "rejected", "open"):
        table.add_column(col, justify="right" if col in ("pulled", "quarantined", "released", "rejected", "open") else "left")
    for q in found:
        table.add_row(q.night, q.feed, q.batch_id, f"{q.pulled:,}", f"{q.quarantined:,}", "[yellow]held[/yellow]" if q.held else "",
                      f"{q.released:,}", f"{q.rejected:,}", f"{q.open:,}")
    console.print(table)
    per_rule = Table(title="rows failing each rule")
    for col in ("batch", "rule", "failed", "of rows"):
        per_rule.add_column(col, justify="right" if col in ("failed", "of rows") else "left")
    for q in found:
        for r in sorted(rules.get(q.batch_id, []), key=lambda r: (-r["failed"], r["rule"])):
            per_rule.add_row(q.batch_id, r["rule"], f"{r['failed']:,}", f"{100 * r['failed'] / max(r['rows'], 1):.2f} %")
    console.print(per_rule)
    console.print("look at a batch's rows: [bold]fundx failures show BATCH[/bold]")


@failures_app.command("show")
def failures_show(
    batch: Annotated[str, typer.Argument(help="the quarantined batch (fundx failures list)")],
    rule: Annotated[str | None, typer.Option(help="only rows that broke this rule")] = None,
    limit: Annotated[int, typer.Option(help="rows to show at most")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """A quarantined batch's rows: the rules each broke, identity numbers masked, and only the values those
    rules looked at. Opening the quarantine is audited."""
    from fundx.core.errors import FundxError
    from fundx.exchange import quarantine
    from fundx.ledger import Ledger

    ledger = Ledger.from_settings()
    try:
        record = quarantine.batch(ledger, batch)
        frame = quarantine.read_rows(ledger, batch)
    except FundxError as exc:
        _fail(exc)
    if rule:
        frame = frame[frame[quarantine.RULES].fillna("").str.split(";").map(lambda ids: rule in ids)]
    shown = quarantine.masked_view(frame.head(limit), record.feed)
    state = quarantine.row_status(ledger, batch)
    ledger.log_event("failures.show", batch, {"rows_shown": len(shown), "rule": rule}, actor=_steward())
    if as_json:
        print(json.dumps([{"state": state.get(int(r[quarantine.ROW]), "open"), **r}
                          for r in shown.to_dict(orient="records")], ensure_ascii=False, indent=2))
        return
    verdict = f"held back whole: {record.reason}" if record.held else f"{record.quarantined:,} of {record.pulled:,} rows"
    table = Table(title=f"{batch}\n({record.feed}, night {record.night}; {verdict})", show_lines=True)
    table.add_column("row", justify="right")
    table.add_column("state")
    table.add_column("rules broken", overflow="fold")
    table.add_column("values (identity masked; other personal data only where a broken rule looks)", overflow="fold")
    values = [c for c in shown.columns if c not in (quarantine.ROW, quarantine.RULES)]
    for r in shown.to_dict(orient="records"):
        lines = [f"{c}: {r[c]}" for c in values if r[c] != quarantine.HIDDEN]
        table.add_row(str(r[quarantine.ROW]), state.get(int(r[quarantine.ROW]), "open"),
                      r[quarantine.RULES].replace(";", "\n") or "(none: held with its batch)", "\n".join(lines))
    console.print(table)
    more = len(frame) - len(shown)
    if more > 0:
        console.print(f"{more:,} more rows: --limit, or --rule to narrow")
    console.print(f"decide: [bold]fundx failures release {batch} --rows 1,3-5 --reason TEXT[/bold] (or --rule RULE, "
                  f"or every open row), or [bold]fundx failures reject ...[/bold]")


def _decide(action: str, batch: str, rows: str | None, rule: str | None, reason: str) -> None:
    from connectors import load_feed
    from fundx.core.errors import FundxError
    from fundx.exchange import quarantine
    from fundx.ledger import Ledger

    ledger = Ledger.from_settings()
    try:
        decision = quarantine.decide(ledger, batch, action, reason=reason, actor=_steward(),
                                     rows=quarantine.parse_rows(rows), rule=rule)
    except FundxError as exc:
        _fail(exc)
    what = quarantine.row_ranges(decision.rows)
    if action == "release":
        stage = load_feed(decision.feed).stage
        console.print(f"decision {decision.id}: {len(decision.rows)} rows ({what}) of {batch} released by "
                      f"{decision.actor}; they go to {stage} with the next run of {decision.feed}")
    else:
        console.print(f"decision {decision.id}: {len(decision.rows)} rows ({what}) of {batch} rejected by "
                      f"{decision.actor}; they stay sealed in the quarantine and are never delivered")


_ROWS_HELP = "row numbers as `fundx failures show` prints them, e.g. 1,3,7-9 (default: every open row)"


@failures_app.command("release")
def failures_release(
    batch: Annotated[str, typer.Argument(help="the quarantined batch")],
    reason: Annotated[str, typer.Option(help="why (required; audited; no identity numbers)")],
    rows: Annotated[str | None, typer.Option(help=_ROWS_HELP)] = None,
    rule: Annotated[str | None, typer.Option(help="every open row that broke this rule")] = None,
) -> None:
    """Release rows to their stage: they go out with the feed's next run, exactly once. Audited."""
    _decide("release", batch, rows, rule, reason)


@failures_app.command("reject")
def failures_reject(
    batch: Annotated[str, typer.Argument(help="the quarantined batch")],
    reason: Annotated[str, typer.Option(help="why (required; audited; no identity numbers)")],
    rows: Annotated[str | None, typer.Option(help=_ROWS_HELP)] = None,
    rule: Annotated[str | None, typer.Option(help="every open row that broke this rule")] = None,
) -> None:
    """Reject rows for good: they stay sealed in the quarantine and are never delivered. Audited."""
    _decide("reject", batch, rows, rule, reason)


def _night_arg(night: str | None) -> str | None:
    from datetime import date

    if night is None:
        return None
    try:
        return date.fromisoformat(night).isoformat()
    except ValueError:
        err.print(f"[red]error:[/red] --night: {night!r} is not a date (YYYY-MM-DD)")
        raise typer.Exit(2) from None


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

    try:
        done = monitor.check(night=_night_arg(night))
    except FundxError as exc:
        _fail(exc)
    console.print(_findings_table(f"service levels, night of {done.night}", done.findings))
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
    day = date.fromisoformat(_night_arg(night) or now().astimezone(SHANGHAI).date().isoformat())
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


@notify_app.command("test")
def notify_test() -> None:
    """Send a test notice to every channel of FUNDX_NOTIFY; exit 1 if any channel failed."""
    from fundx.core.errors import FundxError
    from fundx.notify import Notifier, send_test

    try:
        results = send_test(Notifier.from_settings())
    except FundxError as exc:
        _fail(exc)
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


# matching: suspects and inspection orders --------------------------------------------------------


def _bad(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def _money(x: float | None) -> str:
    return "" if x is None else f"{x:,.2f}"


def _order_filters(district: str | None, rule: str | None) -> None:
    from matching import orders as mo

    if district is not None and mo.area_of(district) is None:
        _bad(f"--district: unknown district {district!r}; an area code (330106) or one of "
             f"{', '.join(mo.district_names())}")
    if rule is not None and rule not in mo.RULES:
        _bad(f"--rule: unknown rule {rule!r}; one of {', '.join(mo.RULES)}")


@orders_app.command("list")
def orders_list(
    night: Annotated[str | None, typer.Option(help="only this matching night (YYYY-MM-DD)")] = None,
    district: Annotated[str | None, typer.Option(help="only this district: its name (西湖区) or area code (330106)")] = None,
    rule: Annotated[str | None, typer.Option(help="only this rule, e.g. paid_after_death")] = None,
    only_open: Annotated[bool, typer.Option("--open", help="only orders still open")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Inspection orders by district: rule, masked identity, amount at risk, due date, outcome (reads only)."""
    from fundx.ledger import Ledger
    from matching import orders as mo

    day = _night_arg(night)
    _order_filters(district, rule)
    found = mo.orders(Ledger.from_settings(), night=day, district=district, rule=rule,
                      status="open" if only_open else None)
    found.sort(key=lambda o: (o.area, o.order_id))
    if as_json:
        print(json.dumps([{k: v for k, v in o.as_dict().items() if k not in ("subject", "detail", "note")}
                          for o in found], ensure_ascii=False, indent=2))
        return
    if not found:
        console.print("no orders" + (" open" if only_open else "") + (f" of {day}" if day else "")
                      + (f" in {district}" if district else "") + (f" for {rule}" if rule else ""))
        return
    table = Table(title="inspection orders" + (f", night of {day}" if day else ""))
    for col in ("district", "order", "rule", "identity (masked)", "at risk", "due", "state"):
        table.add_column(col, justify="right" if col == "at risk" else "left", overflow="fold",
                         no_wrap=col != "district")
    today = _today()
    previous = None
    for o in found:
        if previous is not None and o.area != previous:
            table.add_section()
        if o.status == "open":
            state = "[red]overdue[/red]" if o.due_on < today else "open"
        else:
            state = f"{o.outcome}" + (f"\n{_money(o.amount_recovered)}" if o.amount_recovered else "")
        table.add_row(o.district if o.area != previous else "", o.order_id, f"{o.title}\n{o.rule}", o.id_masked or "",
                      _money(o.amount_at_risk), o.due_on.isoformat(), state)
        previous = o.area
    console.print(table)
    still = [o for o in found if o.status == "open"]
    console.print(f"{len(found):,} orders in {len({o.area for o in found})} districts; {len(still):,} open, "
                  f"{_money(sum(o.amount_at_risk for o in still))} at risk in the open ones")
    console.print("close one: [bold]fundx orders close ORDER --outcome confirmed|false-positive|recovered --amount X[/bold]")


def _today():
    from fundx.core.timeutil import SHANGHAI, now

    return now().astimezone(SHANGHAI).date()


@orders_app.command("show")
def orders_show(
    order: Annotated[str, typer.Argument(help="the order id, e.g. O20260301-1-0001 (fundx orders list)")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """One order: rule, district, masked identity, the masked evidence, due date and outcome."""
    from fundx.ledger import Ledger
    from matching import orders as mo

    found = mo.get(Ledger.from_settings(), order)
    if found is None:
        _bad(f"there is no order {order!r} (see fundx orders list)")
    data = found.as_dict()
    if as_json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"order {found.order_id}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows = [
        ("night", found.night.isoformat()), ("rule", f"{found.rule_no}. {found.rule} {found.title}"),
        ("district", f"{found.district} ({found.area})"), ("subject (token)", found.subject),
        ("identity (masked)", found.id_masked or ""), ("amount at risk", _money(found.amount_at_risk)),
        ("months", "" if found.months is None else str(found.months)),
        ("evidence", json.dumps(data["detail"], ensure_ascii=False, indent=1) if not isinstance(data["detail"], str)
         else data["detail"]),
        ("due on", found.due_on.isoformat()), ("status", found.status),
    ]
    if found.status == "closed":
        rows += [("outcome", found.outcome or ""), ("amount recovered", _money(found.amount_recovered)),
                 ("closed", f"{found.closed_at:%Y-%m-%d %H:%M} UTC by {found.closed_by}" if found.closed_at else ""),
                 ("note", found.note or "")]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


@orders_app.command("close")
def orders_close(
    order: Annotated[str, typer.Argument(help="the order id (fundx orders list)")],
    outcome: Annotated[str, typer.Option(help="confirmed | false-positive | recovered")],
    amount: Annotated[float, typer.Option(help="amount recovered (CNY): 0 for a false positive, more than 0 if recovered")],
    note: Annotated[str | None, typer.Option(help="a short note kept with the order (no identity numbers)")] = None,
) -> None:
    """Close an order with its outcome and amount: once, audited; who closed it is FUNDX_STEWARD (else the OS user)."""
    from fundx.core.errors import FundxError
    from fundx.ledger import Ledger
    from matching import orders as mo

    if outcome not in mo.OUTCOMES:
        _bad(f"--outcome: {outcome!r} is not one of {', '.join(mo.OUTCOMES)}")
    ledger = Ledger.from_settings()
    if mo.get(ledger, order) is None:
        _bad(f"there is no order {order!r} (see fundx orders list)")
    try:
        closed = mo.close(ledger, order, outcome=outcome, amount=amount, actor=_steward(), note=note)
    except ValueError as exc:
        _bad(str(exc))
    except FundxError as exc:
        _fail(exc)
    console.print(f"order {closed.order_id} ({closed.district}, {closed.rule} {closed.title}) closed by "
                  f"{closed.closed_by}: {closed.outcome}, amount {_money(closed.amount_recovered)}")


@matching_app.command("report")
def matching_report(
    night: Annotated[str | None, typer.Option(help="only this matching night (YYYY-MM-DD); default every night")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Per rule: suspects (orders), open and closed, precision = (confirmed + recovered) / closed, amounts at
    risk and recovered; and the total (reads only)."""
    from fundx.ledger import Ledger
    from matching import orders as mo

    day = _night_arg(night)
    reports = mo.report(Ledger.from_settings(), day)
    whole = mo.total(reports)
    if as_json:
        print(json.dumps({"night": day, "rules": [r.as_dict() for r in reports], "total": whole.as_dict()},
                         ensure_ascii=False, indent=2))
        return
    table = Table(title="matching outcomes" + (f", night of {day}" if day else ", every night"))
    for col in ("rule", "suspects", "closed", "confirmed", "false +", "recovered", "precision", "at risk ¥",
                "recovered ¥"):
        table.add_column(col, justify="left" if col == "rule" else "right", no_wrap=True)

    def row(r) -> list[str]:
        precision = "" if r.precision is None else f"{100 * r.precision:.1f} %"
        return [f"{r.title}\n{r.rule}" if r.rule != "total" else "合计 total", f"{r.suspects:,}", f"{r.closed:,}", f"{r.confirmed:,}",
                f"{r.false_positive:,}", f"{r.recovered:,}", precision, _money(r.amount_at_risk),
                _money(r.amount_recovered)]

    for r in reports:
        table.add_row(*row(r))
    table.add_section()
    table.add_row(*row(whole), style="bold")
    console.print(table)


_PARAM = re.compile(r"^([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)=(.+)$")


def _params(given: list[str] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for text in given or []:
        match = _PARAM.match(text.strip())
        if not match:
            _bad(f"--param {text!r}: write rule.name=value, e.g. shared_account.min_people=4")
        key = f"{match.group(1)}.{match.group(2)}"
        if key in params:
            _bad(f"--param {key} given twice")
        params[key] = match.group(3).strip()
    return params


@matching_app.command("run")
def matching_run(
    night: Annotated[str | None, typer.Option(help="the matching night (YYYY-MM-DD); default tonight")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="override a rule's parameter: rule.name=value (repeatable), e.g. bill_over_mean.over=0.3")] = None,
) -> None:
    """Load what the stages received, take the office's snapshot, run the rules; record suspects and orders,
    write the masked lists and the investigators' sealed file."""
    from datetime import date

    from fundx.core.errors import FundxError

    day = _night_arg(night)
    params = _params(param)
    from matching.rules import parse_params
    from matching.run import run_matching

    try:
        parse_params(params)  # an unknown parameter or a bad value is bad input: exit 2 before any work
    except FundxError as exc:
        _fail(exc, 2)

    try:
        result = run_matching(date.fromisoformat(day) if day else None, params)
    except FundxError as exc:
        _fail(exc)
    _print_matching(result)
    console.print("next: [bold]fundx orders list --night " + str(result.night) + "[/bold], "
                  "[bold]fundx matching report[/bold]")


def _print_matching(result, truths: dict | None = None) -> None:
    """A matching night: rows loaded, suspects and amounts per rule (against the sandbox's planted
    truths when given: planted, precision, recall), orders opened, files written."""
    from matching import orders as mo

    console.print(f"[bold]matching night of {result.night}[/bold]")
    loaded = Table(title="rows loaded per stage")
    loaded.add_column("stage")
    loaded.add_column("rows", justify="right")
    for stage, rows in sorted(result.loaded.items()):
        loaded.add_row(stage, f"{rows:,}")
    console.print(loaded)
    scores = {}
    if truths is not None:
        from fundx.crypto.keys import KeyStore
        from fundx.ledger import Ledger
        from matching import evaluate

        made = mo.orders(Ledger.from_settings(), night=result.night)
        scores = {sc.rule: sc for sc in evaluate.score([(o.rule, o.subject) for o in made], truths,
                                                      KeyStore().match_key())}
    found = Table(title="suspects per rule" + (" (against the sandbox's planted cases)" if scores else ""))
    columns = ["rule", "规则", "suspects", "at risk"] + (["planted", "precision", "recall"] if scores else [])
    for col in columns:
        found.add_column(col, justify="left" if col in ("rule", "规则") else "right")
    for r in result.rules:
        row = [r.rule, mo.TITLES.get(r.rule, ""), f"{r.suspects:,}", _money(r.amount_at_risk)]
        if scores:
            sc = scores[r.rule]
            row += [f"{sc.planted:,}", "-" if sc.precision is None else f"{sc.precision:.2f}",
                    "-" if sc.recall is None else f"{sc.recall:.2f}"]
        found.add_row(*row)
    found.add_section()
    found.add_row("total", "", f"{sum(r.suspects for r in result.rules):,}",
                  _money(sum(r.amount_at_risk for r in result.rules)), style="bold")
    console.print(found)
    console.print(f"orders opened: {result.orders_new:,}")
    folders = sorted({str(p.parent) for p in result.files})
    console.print(f"files written: {len(result.files)} in {', '.join(folders)} (orders-<district>.csv, "
                  f"suspects-<rule>.csv: masked; investigators.p7m: sealed to the investigators)")


# the stewards' console ---------------------------------------------------------------------------

console_app = typer.Typer(
    help="The stewards' console: a web page over the nights, the quarantine, decisions and the audit trail.",
    invoke_without_command=True)
app.add_typer(console_app, name="console")


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
        _fail(exc)
    if not accounts.accounts(Ledger.from_settings()):
        err.print("[yellow]no console accounts yet:[/yellow] fundx console add-user NAME --role steward|auditor")
    scheme = "https" if tls_cert else "http"
    console.print(f"the stewards' console: {scheme}://{'[' + host + ']' if ':' in host else host}:{port}/ (Ctrl-C stops it)")
    try:
        serve(host, port, tls_cert=tls_cert, tls_key=tls_key)
    except FundxError as exc:
        _fail(exc)


@console_app.command("add-user")
def console_add_user(
    name: Annotated[str, typer.Argument(help="account name: 2-32 of a-z 0-9 . _ -, starting with a letter")],
    role: Annotated[str, typer.Option(help="steward (reads, decides, unmasks) or auditor (reads only)")],
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
        made = accounts.add_account(Ledger.from_settings(), name, role, password, actor=_steward(), reset=reset)
    except FundxError as exc:
        _fail(exc)
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

    if not accounts.remove_account(Ledger.from_settings(), name, actor=_steward()):
        err.print(f"[red]error:[/red] there is no console account {name!r}")
        raise typer.Exit(1)
    console.print(f"console account {name} removed; its sessions ended")


def main() -> None:
    from fundx.core.errors import FundxError

    try:
        app()
    except FundxError as exc:
        try:
            _fail(exc)
        except typer.Exit as done:
            sys.exit(done.exit_code)


if __name__ == "__main__":
    main()
