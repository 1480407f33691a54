"""``fundx ledger``: the ledger's schema revision, and upgrading it after a new fundx is installed.

fundx/cli/__init__.py mounts it: ``app.add_typer(ledger_app, name="ledger")``. These commands run whatever
revision the ledger is at; every command that reads or writes the ledger refuses a ledger whose schema
is not this fundx's, in one line naming ``fundx ledger upgrade`` (see ``fundx.cli._options``).
"""

from __future__ import annotations

import getpass
import json
import os
from typing import Annotated

import typer
from rich.markup import escape

from fundx.cli.common import console, err, fail

ledger_app = typer.Typer(
    help="The ledger's schema: the revision it is at, and upgrading it to this fundx's (after installing a new release).",
    no_args_is_help=True,
)


def _open():
    """The configured ledger, opened as it is (``Ledger.from_settings`` would refuse an older one)."""
    from fundx.core.settings import get_settings, prepare_home
    from fundx.ledger import Ledger

    settings = get_settings()
    prepare_home(settings.home)
    return Ledger(settings.ledger, create=False)


def _where(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@ledger_app.command("status")
def ledger_status(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """The ledger's schema revision and this fundx's; exit 1 when fundx cannot run on it (behind: upgrade it;
    ahead: a newer fundx wrote it)."""
    from fundx.core.errors import FundxError
    from fundx.ledger import migrations
    from fundx.ledger.schema import SCHEMA_HEAD

    try:
        ledger = _open()
        state = migrations.status(ledger)
    except FundxError as exc:
        fail(exc)
    problem = state.problem(ledger.url)
    ledger.dispose()
    if as_json:
        print(json.dumps({"ledger": _where(ledger.url), "status": state.status, "revision": state.revision,
                          "head": SCHEMA_HEAD, "problem": problem}, indent=2))
    elif state.status == "new":
        console.print(f"no ledger yet at {escape(_where(ledger.url))}: the first command that needs one makes it "
                      f"at schema revision {SCHEMA_HEAD}", soft_wrap=True)
    elif state.status == "current":
        console.print(f"the ledger {escape(_where(ledger.url))} is at schema revision {SCHEMA_HEAD}, this fundx's",
                      soft_wrap=True)
    else:
        err.print(f"[yellow]{escape(problem or state.status)}[/yellow]", soft_wrap=True)
    if problem:
        raise typer.Exit(1)


@ledger_app.command("upgrade")
def ledger_upgrade() -> None:
    """Upgrade the ledger to this fundx's schema revision, keeping every row, in one transaction (audited as
    ledger.upgraded). A ledger of fundx 0.1.0 is recognised and upgraded too. Run it after installing a new
    release, with the exchange's runs and workers stopped; at the newest revision already, it does nothing."""
    from fundx.core.errors import FundxError
    from fundx.ledger import migrations

    actor = os.environ.get("FUNDX_STEWARD") or getpass.getuser()
    try:
        ledger = _open()
        done = migrations.upgrade(ledger, actor=actor)
    except FundxError as exc:
        fail(exc)
    where = escape(_where(ledger.url))
    ledger.dispose()
    if done.created:
        console.print(f"no ledger was at {where}: made a new one at schema revision {done.after}", soft_wrap=True)
    elif not done.changed:
        console.print(f"the ledger {where} is at schema revision {done.after} already: nothing to do", soft_wrap=True)
    else:
        before = done.before or "fundx 0.1.0's schema (no revision; stamped 0001)"
        made = f"; made the tables it lacked: {', '.join(done.made_tables)}" if done.made_tables else ""
        console.print(f"the ledger {where} upgraded from {before} to {done.after} (revisions run: "
                      f"{', '.join(done.applied) or 'none'}{made}); every row kept; audited as ledger.upgraded",
                      soft_wrap=True)
