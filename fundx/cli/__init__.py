"""The ``fundx`` command: run the exchange, look at what it did, and drive the sandbox agencies.

This module assembles the Typer app from one module per command group (fundx/cli/<group>.py; the
commands of ``fundx`` itself come from exchange.py and demo.py) and checks the ledger's schema
revision before any command that uses the ledger. What the groups share is in fundx/cli/common.py.
Every group module imports only typer, rich and the standard library at its top, so ``fundx --help``
loads neither Prefect, Great Expectations nor pandas; each command imports what it needs when it runs.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from fundx.cli import preflight
from fundx.cli.audit import audit_app
from fundx.cli.backup import backup_app
from fundx.cli.cases import cases_app
from fundx.cli.common import check, fail, refuse_another_schema
from fundx.cli.connector import connector_app
from fundx.cli.console import console_app
from fundx.cli.contract import contract_app
from fundx.cli.demo import demo_app
from fundx.cli.exchange import exchange_app
from fundx.cli.failures import failures_app
from fundx.cli.keys import keys_app
from fundx.cli.ledger import ledger_app
from fundx.cli.matching import matching_app
from fundx.cli.notify import notify_app
from fundx.cli.orders import orders_app
from fundx.cli.retention import retention_app
from fundx.cli.sandbox import sandbox_app
from fundx.cli.sla import sla_app
from fundx.cli.stage import stage_app
from fundx.cli.stops import stops_app


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
# The order here is the order of `fundx --help` and of docs/reference/cli.md: fundx's own commands
# (demo; night, pull, backfill, status, feeds), then the groups.
app.add_typer(demo_app)  # no name: its command joins fundx's own
app.add_typer(exchange_app)
app.add_typer(retention_app)  # no name: `fundx purge`
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(keys_app, name="keys")
app.add_typer(stage_app, name="stage")
app.add_typer(audit_app, name="audit")
app.add_typer(failures_app, name="failures")
app.add_typer(notify_app, name="notify")
app.add_typer(sla_app, name="sla")
app.add_typer(matching_app, name="matching")
app.add_typer(orders_app, name="orders")
app.add_typer(cases_app, name="cases")
app.add_typer(stops_app, name="stops")
# onboarding an agency: scaffold and check a connector; infer, diff and release contracts
app.add_typer(connector_app, name="connector")
app.add_typer(contract_app, name="contract")
app.add_typer(ledger_app, name="ledger")
app.add_typer(console_app, name="console")
app.add_typer(backup_app, name="backup")

#: commands that never open the ledger, and `fundx ledger` itself: they run whatever the ledger's schema
#: revision (demo checks after it has reset its own ledger; backup opens its copies and its target itself)
_ANY_LEDGER = frozenset({"ledger", "sandbox", "feeds", "connector", "contract", "notify", "demo", "backup"})


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
    if ctx.meta.get("fundx.help"):
        return
    check(preflight.home)  # any command: FUNDX_HOME made (0700) if missing, and writable
    if ctx.invoked_subcommand not in _ANY_LEDGER:
        refuse_another_schema()


def main() -> None:
    from fundx.core.errors import FundxError

    try:
        app()
    except FundxError as exc:
        try:
            fail(exc)
        except typer.Exit as done:
            sys.exit(done.exit_code)


if __name__ == "__main__":
    main()
