"""``fundx demo``: the sandbox agencies, one whole night, the stages' answers and the matching, in one command.

``demo_app`` has no name: fundx/cli/__init__.py adds its command to ``fundx`` itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from fundx.cli.common import console, err, fail, prefect_defaults, refuse_another_schema
from fundx.cli.exchange import exit_for_run, print_run, run_night
from fundx.cli.matching import print_matching
from fundx.cli.stage import print_deliveries, receive_and_record

demo_app = typer.Typer()


@demo_app.command()
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
    refuse_another_schema()  # --no-fresh keeps a ledger that may be older than this fundx
    prefect_defaults()
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
        run_id = run_night(sb.feeds if sb.not_simulated else None)
    finally:
        sb.stop()
    print_run(run_id)
    console.print("the stages take their sealed batches from their inboxes and acknowledge them:")
    receive_and_record(None)
    print_deliveries()
    console.print("the matching stages load what they received (pseudonymised), the office's benefit roll and "
                  "payments among it, and match:")
    from fundx.core.errors import FundxError
    from matching.run import run_matching

    try:
        print_matching(run_matching(), truths=sb.city.truths)
    except FundxError as exc:
        fail(exc)
    _backup_and_verify()
    console.print("next: [bold]fundx status[/bold] shows the ledger; [bold]fundx orders list[/bold] the inspection "
                  "orders, [bold]fundx cases list --account NAME[/bold] works them through their two-person review "
                  "(accounts: [bold]fundx console add-user NAME --role inspector|supervisor[/bold]); "
                  "[bold]fundx audit verify[/bold] checks the audit trail; [bold]make test[/bold] runs the suite")
    exit_for_run(run_id)


def _backup_and_verify() -> None:
    """The closing lines: `fundx backup create`, then `fundx backup verify` of it (docs/operations.md)."""
    from fundx.backup.archive import create, verify
    from fundx.core.errors import FundxError
    from fundx.ledger import Ledger

    try:
        made = create()
        Ledger.from_settings().log_event("backup.created", made.path.name, {
            "files": made.files, "bytes": made.bytes, "ledger": made.ledger_method,
            "audit_entries": made.audit_entries, "audit_head": made.audit_head}, actor="demo")
        done = verify(made.path)
    except FundxError as exc:
        fail(exc)
    console.print(f"backup: [bold]fundx backup create[/bold] sealed the ledger, certificates and quarantine to the backup "
                  f"certificate ({made.path}); [bold]fundx backup verify[/bold]: {done.files} files opened with the "
                  f"backup key, every digest matches, ledger copy: {done.audit}", soft_wrap=True)


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
        for folder in ("inboxes", "acks", "stages", "locks", "quarantine", "reports", "matching", "backups"):  # they go with the ledger
            shutil.rmtree(home / folder, ignore_errors=True)
    from fundx.core.files import write_file_atomic
    from fundx.core.settings import prepare_home

    prepare_home(home)
    write_file_atomic(marker, b"made by `fundx demo`; `fundx demo` may reset this folder's ledger\n", 0o600)
