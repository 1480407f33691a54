"""``fundx connector``: onboard an agency connector (``new``) and prove it conforms (``check``).

``connector_app`` is mounted by fundx/cli/__init__.py as ``fundx connector``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fundx.cli.common import console, err, fail

connector_app = typer.Typer(
    help="Agency connectors: scaffold a new feed (new) and run the conformance suite against its endpoint (check).",
    no_args_is_help=True,
)

TRANSPORTS = ("rest", "filedrop", "database")
_STYLE = {"passed": "green", "failed": "red", "skipped": "yellow"}


def _parse_skips(values: list[str]) -> dict[str, str]:
    """``CHECK=REASON`` options as a skip map; ValueError naming the bad one."""
    from onboarding.conformance import CHECKS, check_skip

    skip: dict[str, str] = {}
    for value in values:
        name, sep, reason = value.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"--skip {value!r}: write CHECK=REASON (checks: {', '.join(CHECKS)})")
        if name in skip:
            raise ValueError(f"--skip {name}: given twice")
        skip[name] = reason
    return check_skip(skip)


def _sandbox_faults(settings: Any, config: Any) -> Any:
    """Fault control of a running ``fundx sandbox start``, when it serves this feed's agency at the endpoint used."""
    from onboarding.conformance import ControlServerFaults

    state_file = settings.sandbox_home / "sandbox.json"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        os.kill(int(state["pid"]), 0)
        control, where = state["control_url"], state.get("urls", {}).get(config.agency)
    except (OSError, KeyError, ValueError, TypeError):
        return None
    if not where or not _same_endpoint(config, str(where)):
        return None  # the feed is pointed elsewhere (a real agency): the sandbox's faults would not reach it
    return ControlServerFaults(control)


def _same_endpoint(config: Any, where: str) -> bool:
    from fundx.core.settings import resolve

    try:
        if config.rest is not None:
            return str(resolve(config.rest.base_url, setting="rest.base_url")).rstrip("/") == where.rstrip("/")
        if config.filedrop is not None:
            folder = str(resolve(config.filedrop.directory, setting="filedrop.directory"))
            return Path(folder).resolve() == Path(where).resolve()
        url = resolve(config.database.url, setting="database.url", secret=True).get_secret_value()
        from sqlalchemy.engine import make_url

        return make_url(url).set(password=None) == make_url(where).set(password=None)
    except Exception:  # noqa: BLE001 - unresolvable or unparsable: not the sandbox's endpoint
        return False


@connector_app.command("check")
def check(
    feed: Annotated[str, typer.Argument(help="feed name, e.g. police.deaths")],
    skip: Annotated[
        list[str] | None,
        typer.Option("--skip", metavar="CHECK=REASON", help="skip a check, saying why (repeatable)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Run the conformance suite against the feed's configured endpoint (or the running sandbox).

    Exit status: 0 when no check failed, 1 when one did, 2 for an unknown feed or a bad --skip.
    """
    from connectors import feed_names, load_feed
    from fundx.core.errors import FundxError
    from fundx.core.settings import get_settings
    from onboarding.conformance import CHECKS, Context, run_suite, suite_passed

    if feed not in feed_names():
        err.print(f"[red]error:[/red] unknown feed {feed!r}; known: {', '.join(feed_names()) or 'none'}")
        raise typer.Exit(2)
    try:
        skipped = _parse_skips(skip or [])
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    try:
        settings = get_settings()
        config = load_feed(feed)
        context = Context.for_feed(feed, settings=settings, faults=_sandbox_faults(settings, config))
    except FundxError as exc:
        fail(exc, 2)
    if not as_json:
        where = "the running sandbox (faults armed through its control server)" if context.faults else "its configured endpoint"
        with console.status(f"checking {feed} against {where}"):
            results = run_suite(feed, skip=skipped, context=context)
    else:
        results = run_suite(feed, skip=skipped, context=context)
    ok = suite_passed(results)
    if as_json:
        print(json.dumps({"feed": feed, "passed": ok, "checks": [r.as_dict() for r in results]},
                         ensure_ascii=False, indent=2))
    else:
        table = Table(title=f"conformance of {feed}")
        table.add_column("check")
        table.add_column("result")
        table.add_column("s", justify="right")
        table.add_column("what it found")
        for r in results:
            text = r.message[len(feed) + 2:] if r.message.startswith(f"{feed}: ") else r.message
            table.add_row(r.check, f"[{_STYLE[r.status]}]{r.status}[/]", f"{r.seconds:.1f}", text)
        console.print(table)
        failed = [r.check for r in results if r.failed]
        if failed:
            console.print(f"[red]{feed} does not conform:[/red] {', '.join(failed)} failed")
        else:
            counted = sum(r.passed for r in results)
            console.print(f"[green]{feed} conforms:[/green] {counted} of {len(CHECKS)} checks passed, "
                          f"{len(results) - counted} skipped")
    raise typer.Exit(0 if ok else 1)


@connector_app.command("new")
def new(
    feed: Annotated[str, typer.Argument(metavar="AGENCY.FEED", help="the new feed's name, e.g. tax.arrears")],
    transport: Annotated[str, typer.Option("--transport", help="rest, filedrop or database", case_sensitive=False)],
    stage: Annotated[str | None, typer.Option("--stage", help="the recipient stage of the feed's batches")] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite files that exist")] = False,
) -> None:
    """Scaffold a new feed: its connector config and draft contract, with TODOs to fill in (nothing else
    names a feed: the night, the sandbox and the conformance suite derive theirs from the configs)."""
    transport = transport.lower()
    if transport not in TRANSPORTS:
        err.print(f"[red]error:[/red] --transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
        raise typer.Exit(2)
    from fundx.core.errors import FundxError

    try:
        from onboarding.scaffold import scaffold
    except ImportError as exc:
        err.print(f"[red]error:[/red] onboarding.scaffold is not available ({type(exc).__name__})")
        raise typer.Exit(1) from None
    try:
        written = scaffold(feed, transport, stage=stage, force=force)
    except FundxError as exc:
        fail(exc, 1)
    except (ValueError, FileExistsError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2 if isinstance(exc, ValueError) else 1) from None
    console.print(f"wrote {len(written)} file{'s' if len(written) != 1 else ''} for {feed} ({transport}):")
    for path in written:
        console.print(f"  {_shown(Path(path))}")
    console.print("next:")
    console.print("  1. fill in the TODOs in the files above (endpoint, auth, paging or file pattern, columns)")
    console.print(f"  2. fundx contract infer {feed}   (draft the contract's columns from a sample)")
    console.print(f"  3. fundx connector check {feed}   (the conformance suite against its endpoint)")


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
