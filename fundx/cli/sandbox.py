"""``fundx sandbox``: start, stop and look at the simulated agencies running in the background."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fundx.cli.common import console, err

sandbox_app = typer.Typer(help="Start and stop the simulated agencies (real servers and files on loopback).")


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


def _at(at: str | None):
    """``--at`` as an aware time (Asia/Shanghai when it names no zone); None for now."""
    from fundx.core.timeutil import aware

    if at is None:
        return None
    try:
        return aware(at)
    except ValueError:
        err.print(f"[red]error:[/red] --at: {at!r} is not a time (YYYY-MM-DDTHH:MM[:SS][+08:00])")
        raise typer.Exit(2) from None


def _office_db() -> Path:
    from fundx.core.settings import get_settings
    from sandbox.office_db import office_path

    db = office_path(get_settings().sandbox_home)
    if not db.is_file():
        err.print(f"[red]error:[/red] the sandbox office's database {db} does not exist; run `fundx sandbox start` first",
                  soft_wrap=True)
        raise typer.Exit(1)
    return db


@sandbox_app.command("office-stops")
def sandbox_office_stops(
    at: Annotated[str | None, typer.Option(help="when the office works (ISO time; default now)")] = None,
) -> None:
    """The sandbox office takes the exchange's stop instructions (FUNDX_HOME/stops/outbox): verifies and applies
    each new one to its roll, and writes its signed answer (docs/stops.md)."""
    from fundx.core.errors import FundxError
    from fundx.crypto.keys import KeyStore
    from matching.stops import answers_dir, outbox_dir
    from sandbox.office_stops import take_instructions

    try:
        done = take_instructions(_office_db(), outbox_dir(), answers_dir(), keys=KeyStore(), now=_at(at))
    except FundxError as exc:
        from fundx.cli.common import fail

        fail(exc)
    for a in done:
        console.print(f"{a.instruction_id}: {a.outcome}" + (f" — {a.reason}" if a.reason else
                                                           f", {a.entries} entries, {a.monthly_amount:,.2f} a month"))
    console.print(f"{len(done)} instructions answered in {answers_dir()}")


@sandbox_app.command("pay-month")
def sandbox_pay_month(
    at: Annotated[str | None, typer.Option(help="when the payment run happens (ISO time; default now)")] = None,
    month: Annotated[str | None, typer.Option(help="the month paid (YYYY-MM); default the month after the last paid")] = None,
) -> None:
    """The sandbox office's monthly payment run: pays the next month to every active roll entry (the next night
    pulls it)."""
    from sandbox.office_stops import pay_month

    if month is not None and not (len(month) == 7 and month[4] == "-" and month[:4].isdigit() and month[5:].isdigit()):
        err.print(f"[red]error:[/red] --month: {month!r} is not YYYY-MM")
        raise typer.Exit(2)
    paid = pay_month(_office_db(), now=_at(at), month=month)
    console.print(f"paid {paid.month}: {paid.payments:,} payments, {paid.amount:,.2f} in all")
