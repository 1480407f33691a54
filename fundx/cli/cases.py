"""``fundx cases``: the inspection lifecycle from the command line (matching.lifecycle), under an account.

Every command names the account that acts (``--account``) and asks its password (hidden; from standard input
when it is not a terminal), checked like a console sign-in (fundx.console.accounts.authenticate: counted,
locked after repeated failures, audited): nobody acts under a name taken from the environment. Views are
audited too (``case.viewed``). The roles: inspectors take, give findings and review; supervisors accept or send
back; auditors and stewards read.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from fundx.cli.common import bad, console, fail, money
from fundx.cli.common import signed_in as common_signed_in

cases_app = typer.Typer(
    help="Inspection cases (订单式检查) through their lifecycle: take, finding, two reviews, acceptance. Each command "
         "acts as an account (--account) and asks its password.",
    no_args_is_help=True)

Account = Annotated[str, typer.Option("--account", "-a", help="the console account acting (its password is asked)")]


def signed_in(name: str):
    """The lifecycle's actor: the account, its password checked (fundx.cli.common.signed_in)."""
    from matching import lifecycle

    account = common_signed_in(name)
    return lifecycle.Actor(account.name, account.role)


def _order_id(order: str) -> str:
    from matching import orders as mo

    text = order.strip()
    if not mo._ORDER_ID.match(text):
        bad(f"{order!r} is not a case number (O20260301-1-0001)")
    return text


def _shown(ledger, case) -> None:
    from matching import lifecycle as lc

    console.print(f"[bold]{case.order_id}[/bold] {case.title} ({case.rule}) · {case.district} · "
                  f"{case.id_masked or ''}")
    console.print(f"stage [bold]{case.stage.replace('_', ' ')}[/bold] · due {case.due_on} · at risk "
                  f"{money(case.amount_at_risk)}" + (f" · {case.months} months" if case.months is not None else "")
                  + (" · [yellow]referral due[/yellow]" if case.referral_due else "")
                  + (" · [red]listed supervision (挂牌督办)[/red]" if case.escalated_at else ""))
    if case.outcome:
        finding = case.outcome + (f" {money(case.amount_recovered)} ({case.recovery})" if case.recovery else "")
        if case.referral_to:
            finding += f" to {case.referral_to} no. {case.referral_no}"
        console.print(f"finding: {finding}" + ("" if case.status == "closed" else " (under review)"))
    table = Table(title="steps")
    for col in ("#", "when (UTC)", "who", "step", "from → to", "outcome", "reason"):
        table.add_column(col, overflow="fold")
    for e in lc.events(ledger, case.order_id):
        table.add_row(str(e["seq"]), e["at"].strftime("%Y-%m-%d %H:%M"), e["actor"], e["action"],
                      f"{e['from_stage']} → {e['to_stage']}", e["outcome"] or "", e["reason"] or "")
    console.print(table)


@cases_app.command("list")
def cases_list(
    account: Account,
    stage: Annotated[str | None, typer.Option(help="only this stage: issued, in_progress, first_review, "
                                                   "second_review, closed, accepted")] = None,
    district: Annotated[str | None, typer.Option(help="only this district: its name or area code")] = None,
    mine: Annotated[bool, typer.Option("--mine", help="only the cases waiting for me (my queue)")] = False,
    overdue: Annotated[bool, typer.Option("--overdue", help="only open cases past their due date")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Cases by stage and district: the queue of an inspector, a district's, the overdue ones (audited view)."""
    from fundx.ledger import Ledger
    from matching import lifecycle as lc

    if stage is not None and stage not in lc.STAGES:
        bad(f"--stage: unknown stage {stage!r}; one of {', '.join(lc.STAGES)}")
    actor = signed_in(account)
    try:
        found = lc.queue(Ledger.from_settings(), actor, stage=stage, district=district, mine=mine, overdue_only=overdue)
    except ValueError as exc:
        bad(str(exc))
    if as_json:
        print(json.dumps([{k: v for k, v in o.as_dict().items() if k not in ("subject", "detail", "note")}
                          for o in found], ensure_ascii=False, indent=2))
        return
    if not found:
        console.print("no cases")
        return
    table = Table(title="cases")
    for col in ("case", "district", "rule", "identity (masked)", "at risk", "due", "stage", "with"):
        table.add_column(col, overflow="fold")
    for o in found:
        with_whom = o.assignee or ""
        table.add_row(o.order_id, o.district, o.title, o.id_masked or "", money(o.amount_at_risk), o.due_on.isoformat(),
                      o.stage.replace("_", " ") + (" ⚑" if o.escalated_at else ""), with_whom)
    console.print(table)


@cases_app.command("show")
def cases_show(order: Annotated[str, typer.Argument(help="the case number, e.g. O20260301-1-0001")],
               account: Account) -> None:
    """One case: its finding, reviews and every step (audited view; identities masked)."""
    from fundx.ledger import Ledger
    from matching import lifecycle as lc

    oid = _order_id(order)
    actor = signed_in(account)
    ledger = Ledger.from_settings()
    case = lc.view(ledger, oid, actor=actor)
    if case is None:
        from fundx.core.errors import DecisionError

        fail(DecisionError(f"there is no case {oid}", action="see fundx cases list --account NAME"))
    _shown(ledger, case)


def _act(step, oid: str) -> None:
    from fundx.core.errors import DecisionError

    try:
        case = step()
    except DecisionError as exc:
        fail(exc)
    except ValueError as exc:
        bad(str(exc))
    console.print(f"{case.order_id}: now [bold]{case.stage.replace('_', ' ')}[/bold]")


@cases_app.command("take")
def cases_take(order: Annotated[str, typer.Argument(help="the case number")], account: Account) -> None:
    """Take an issued case to verify it (inspectors)."""
    from fundx.ledger import Ledger
    from matching import lifecycle as lc

    oid = _order_id(order)
    actor = signed_in(account)
    _act(lambda: lc.take(Ledger.from_settings(), oid, actor=actor), oid)


@cases_app.command("submit")
def cases_submit(
    order: Annotated[str, typer.Argument(help="the case number")],
    account: Account,
    outcome: Annotated[str, typer.Option(help="confirmed | false-positive | recovered | referred")],
    amount: Annotated[float, typer.Option(help="yuan recovered (0 for false-positive; more than 0 when recovered)")] = 0,
    referral_to: Annotated[str | None, typer.Option(help="referred: police or discipline")] = None,
    referral_no: Annotated[str | None, typer.Option(help="referred: the referral's number")] = None,
    note: Annotated[str | None, typer.Option(help="what was checked (no identity numbers)")] = None,
) -> None:
    """Give the finding of a case in progress, for its two reviews (inspectors)."""
    from fundx.ledger import Ledger
    from matching import lifecycle as lc

    oid = _order_id(order)
    actor = signed_in(account)
    _act(lambda: lc.submit(Ledger.from_settings(), oid, actor=actor, outcome=outcome, amount=amount,
                           referral_to=referral_to, referral_no=referral_no, note=note), oid)


@cases_app.command("review")
def cases_review(
    order: Annotated[str, typer.Argument(help="the case number")],
    account: Account,
    approve: Annotated[bool, typer.Option("--approve/--return", help="approve the finding, or return it to work")],
    reason: Annotated[str | None, typer.Option(help="why (needed to return)")] = None,
) -> None:
    """The first review (初审) or the second (复核, by another account) of a case's finding (inspectors)."""
    from fundx.ledger import Ledger
    from matching import lifecycle as lc

    oid = _order_id(order)
    actor = signed_in(account)
    _act(lambda: lc.review(Ledger.from_settings(), oid, actor=actor, approve=approve, reason=reason), oid)


@cases_app.command("accept")
def cases_accept(order: Annotated[str, typer.Argument(help="the case number")], account: Account,
                 reason: Annotated[str | None, typer.Option(help="a remark")] = None) -> None:
    """Accept a closed case (验收; supervisors)."""
    from fundx.ledger import Ledger
    from matching import lifecycle as lc

    oid = _order_id(order)
    actor = signed_in(account)
    _act(lambda: lc.accept(Ledger.from_settings(), oid, actor=actor, reason=reason), oid)


@cases_app.command("send-back")
def cases_send_back(order: Annotated[str, typer.Argument(help="the case number")], account: Account,
                    reason: Annotated[str, typer.Option(help="why it goes back to work")]) -> None:
    """Send a closed case back to work (supervisors)."""
    from fundx.ledger import Ledger
    from matching import lifecycle as lc

    oid = _order_id(order)
    actor = signed_in(account)
    _act(lambda: lc.send_back(Ledger.from_settings(), oid, actor=actor, reason=reason), oid)


@cases_app.command("escalate")
def cases_escalate(
    today: Annotated[str | None, typer.Option(help="the day to judge by (YYYY-MM-DD; default today, Shanghai)")] = None,
) -> None:
    """Put cases open 90 days, or confirmed and not recovered by then, under listed supervision (挂牌督办), and
    tell FUNDX_NOTIFY's channels (the matching night does it too)."""
    from datetime import date

    from fundx.core.timeutil import SHANGHAI, now
    from fundx.ledger import Ledger
    from fundx.notify.notifier import Notifier
    from matching import lifecycle as lc

    try:
        day = date.fromisoformat(today) if today else now().astimezone(SHANGHAI).date()
    except ValueError:
        bad(f"--today: {today!r} is not a date (YYYY-MM-DD)")
    done = lc.escalate(Ledger.from_settings(), day, notifier=Notifier.from_settings())
    console.print(f"{len(done.order_ids)} cases put under listed supervision"
                  + "".join(f"\n  {d}: {n}" for d, n in sorted(done.per_district.items()))
                  + (f"\n{done.deliveries} notices sent" if done.order_ids else ""))

from fundx.cli import cases_report as _reports  # noqa: E402,F401  (registers the report commands)
