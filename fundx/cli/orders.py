"""``fundx orders``: the inspection orders the matching opened — list them by district, show one, close it."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from fundx.cli.common import bad, console, money, night_arg

orders_app = typer.Typer(
    help="Inspection orders (订单式检查), one per suspect: list them by district, show one, close it with its outcome.",
    no_args_is_help=True)


def _order_filters(district: str | None, rule: str | None) -> None:
    from matching import orders as mo

    if district is not None and mo.area_of(district) is None:
        bad(f"--district: unknown district {district!r}; an area code (330106) or one of "
            f"{', '.join(mo.district_names())}")
    if rule is not None and rule not in mo.RULES:
        bad(f"--rule: unknown rule {rule!r}; one of {', '.join(mo.RULES)}")


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

    day = night_arg(night)
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
            state = f"{o.outcome}" + (f"\n{money(o.amount_recovered)}" if o.amount_recovered else "")
        table.add_row(o.district if o.area != previous else "", o.order_id, f"{o.title}\n{o.rule}", o.id_masked or "",
                      money(o.amount_at_risk), o.due_on.isoformat(), state)
        previous = o.area
    console.print(table)
    still = [o for o in found if o.status == "open"]
    console.print(f"{len(found):,} orders in {len({o.area for o in found})} districts; {len(still):,} open, "
                  f"{money(sum(o.amount_at_risk for o in still))} at risk in the open ones")
    console.print("work one through its review: [bold]fundx cases take ORDER --account NAME[/bold] (fundx cases --help)")


def _today():
    from fundx.core.timeutil import SHANGHAI, now

    return now().astimezone(SHANGHAI).date()


@orders_app.command("show")
def orders_show(
    order: Annotated[str, typer.Argument(help="the order id, e.g. O20260301-1-0001 (fundx orders list)")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """One order: rule, district, masked identity, the masked evidence, due date and outcome, and its versions
    (each night that found the case again with something new, and why it reopened)."""
    from fundx.ledger import Ledger
    from matching import cases
    from matching import orders as mo

    ledger = Ledger.from_settings()
    found = mo.get(ledger, order)
    if found is None:
        bad(f"there is no order {order!r} (see fundx orders list)")
    data = found.as_dict()
    history = cases.versions(ledger, found.order_id)
    data["versions"] = [{k: v for k, v in h.items() if k not in ("order_id", "detail")} for h in history]
    if as_json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"order {found.order_id}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows = [
        ("night", found.night.isoformat()), ("rule", f"{found.rule_no}. {found.rule} {found.title}"),
        ("district", f"{found.district} ({found.area})"), ("subject (token)", found.subject),
        ("identity (masked)", found.id_masked or ""), ("amount at risk", money(found.amount_at_risk)),
        ("months", "" if found.months is None else str(found.months)),
        ("evidence", json.dumps(data["detail"], ensure_ascii=False, indent=1) if not isinstance(data["detail"], str)
         else data["detail"]),
        ("due on", found.due_on.isoformat()), ("status", found.status), ("stage", found.stage),
    ]
    if found.status == "closed":
        rows += [("outcome", found.outcome or ""), ("amount recovered", money(found.amount_recovered)),
                 ("closed", f"{found.closed_at:%Y-%m-%d %H:%M} UTC by {found.closed_by}" if found.closed_at else ""),
                 ("note", found.note or "")]
    for h in data["versions"]:
        months = "" if h["months"] is None else f", {h['months']} months"
        rows.append((f"version {h['night']}", f"{h['change']}: {money(h['amount_at_risk'])}{months}"
                                              + (f" — {h['reason']}" if h["reason"] else "")))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)

