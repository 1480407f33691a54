"""``fundx stops``: the stop instructions of confirmed death and custody cases — list them, deliver them to the
social-insurance office and record its answers (matching.stops; docs/stops.md)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from fundx.cli.common import bad, console, fail, money

stops_app = typer.Typer(
    help="Stop instructions (停发/暂停待遇) of confirmed death and custody cases: list them, deliver them to the "
         "social-insurance office once, record its signed answers.",
    no_args_is_help=True)


@stops_app.command("list")
def stops_list(
    status: Annotated[str | None, typer.Option(help="only this status: issued | delivered | acknowledged | refused")] = None,
    order: Annotated[str | None, typer.Option(help="only the instructions of this order")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Stop instructions: order, rule, action, first month, status, the office's answer (reads only)."""
    from fundx.ledger import Ledger
    from matching import stops

    if status is not None and status not in stops.STATUSES:
        bad(f"--status: {status!r} is not one of {', '.join(stops.STATUSES)}")
    found = stops.instructions(Ledger.from_settings(), status=status, order_id=order)
    if as_json:
        print(json.dumps([i.as_dict() for i in found], ensure_ascii=False, indent=2))
        return
    if not found:
        console.print("no stop instructions" + (f" {status}" if status else "") + (f" of order {order}" if order else ""))
        return
    table = Table(title="stop instructions to the social-insurance office")
    for col in ("instruction", "order", "rule", "action", "from", "status", "answer"):
        table.add_column(col, overflow="fold")
    for i in found:
        answer = ""
        if i.status == "acknowledged":
            answer = f"{i.entries or 0} entries, {money(i.monthly_amount_stopped)} a month stopped"
        elif i.status == "refused":
            answer = i.reason or ""
        table.add_row(i.id, i.order_id, i.rule, i.action, i.from_month, i.status, answer)
    console.print(table)


@stops_app.command("deliver")
def stops_deliver() -> None:
    """Record the office's new answers, then write every issued instruction to its outbox (once; the matching
    night does the same)."""
    from fundx.core.errors import FundxError
    from fundx.ledger import Ledger
    from matching import stops

    ledger = Ledger.from_settings()
    try:
        answered = stops.record_answers(ledger)
        sent = stops.deliver(ledger)
    except FundxError as exc:
        fail(exc)
    console.print(f"answers: {answered.acknowledged} acknowledged, {answered.refused} refused, {answered.invalid} "
                  f"invalid ({answered.settled} settled an instruction)")
    if sent.busy:
        console.print("another delivery of stop instructions is running: nothing delivered")
    console.print(f"instructions: {len(sent.written)} written to {stops.outbox_dir()}, {len(sent.adopted)} adopted "
                  f"after an interruption, {len(sent.waiting)} waiting for the person's roll entries")


@stops_app.command("resend")
def stops_resend(
    instruction: Annotated[str, typer.Argument(help="the refused instruction's id (fundx stops list --status refused)")],
    account: Annotated[str, typer.Option("--account", "-a", help="the console account acting (an inspector or "
                                                                  "supervisor; its password is asked)")],
) -> None:
    """Send an instruction the office refused again, once its reason is dealt with: the next delivery seals it
    anew (audited under the account)."""
    from fundx.cli.common import signed_in
    from fundx.core.errors import FundxError
    from fundx.ledger import Ledger
    from matching import stops

    who = signed_in(account, ("inspector", "supervisor"))
    try:
        again = stops.resend(Ledger.from_settings(), instruction, actor=who.name)
    except FundxError as exc:
        fail(exc)
    console.print(f"{again.id} is issued again: `fundx stops deliver` (or the next matching night) sends it")
