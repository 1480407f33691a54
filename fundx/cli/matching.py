"""``fundx matching``: run the rules over the stages' stores into suspects and orders; report per rule.

:func:`print_matching` also prints the matching night of ``fundx demo``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fundx.cli.common import bad, console, fail, money, night_arg

matching_app = typer.Typer(
    help="The matching stage: run the rules over the stages' stores into suspects and orders; report per rule.",
    no_args_is_help=True)


@matching_app.command("report")
def matching_report(
    night: Annotated[str | None, typer.Option(help="only this matching night (YYYY-MM-DD); default every night")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    truths: Annotated[Path | None, typer.Option(
        help="a sandbox's truth.json: also score the orders against its planted cases and look-alikes "
             "(planted, found, precision, recall, look-alikes flagged)")] = None,
) -> None:
    """Per rule: suspects (orders), open and closed, precision = (confirmed + recovered) / closed, amounts at
    risk and recovered; and the total (reads only). With --truths, also against the sandbox's planted cases."""
    from fundx.ledger import Ledger
    from matching import orders as mo

    day = night_arg(night)
    ledger = Ledger.from_settings()
    reports = mo.report(ledger, day)
    whole = mo.total(reports)
    scores = _scores(ledger, day, truths) if truths is not None else None
    from matching import stops

    stopped = stops.summary(ledger)  # every night's: an instruction outlives the night its order was issued
    if as_json:
        doc = {"night": day, "rules": [r.as_dict() for r in reports], "total": whole.as_dict(), "stops": stopped}
        if scores is not None:
            doc["planted"] = [{"rule": s.rule, "planted": s.planted, "found": s.found, "true_positive": s.true_positive,
                               "precision": s.precision, "recall": s.recall, "lookalikes": s.lookalikes,
                               "lookalikes_flagged": s.lookalikes_flagged} for s in scores]
        print(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    table = Table(title="matching outcomes" + (f", night of {day}" if day else ", every night"))
    for col in ("rule", "suspects", "closed", "confirmed", "false +", "recovered", "precision", "at risk ¥",
                "recovered ¥"):
        table.add_column(col, justify="left" if col == "rule" else "right", no_wrap=True)

    def row(r) -> list[str]:
        precision = "" if r.precision is None else f"{100 * r.precision:.1f} %"
        return [f"{r.title}\n{r.rule}" if r.rule != "total" else "合计 total", f"{r.suspects:,}", f"{r.closed:,}", f"{r.confirmed:,}",
                f"{r.false_positive:,}", f"{r.recovered:,}", precision, money(r.amount_at_risk),
                money(r.amount_recovered)]

    for r in reports:
        table.add_row(*row(r))
    table.add_section()
    table.add_row(*row(whole), style="bold")
    console.print(table)
    if any(s["instructions"] for s in stopped):
        loss = Table(title="stop instructions to the social-insurance office (every night): the loss stopped")
        for col in ("rule", "action", "issued", "awaiting the office", "acknowledged", "refused", "stopped ¥ a month"):
            loss.add_column(col, justify="left" if col in ("rule", "action") else "right", no_wrap=True)
        for s in stopped:
            loss.add_row(f"{mo.TITLES.get(s['rule'], '')}\n{s['rule']}", s["action"], f"{s['instructions']:,}",
                         f"{s['issued'] + s['delivered']:,}", f"{s['acknowledged']:,}", f"{s['refused']:,}",
                         money(s["monthly_amount_stopped"]))
        console.print(loss)
    if scores is not None:
        planted = Table(title="against the sandbox's planted cases" + (f", night of {day}" if day else ", every night"))
        for col in ("rule", "planted", "found", "precision", "recall", "look-alikes flagged"):
            planted.add_column(col, justify="left" if col == "rule" else "right", no_wrap=True)
        for sc in scores:
            planted.add_row(f"{mo.TITLES.get(sc.rule, '')}\n{sc.rule}", f"{sc.planted:,}", f"{sc.found:,}",
                            "-" if sc.precision is None else f"{sc.precision:.2f}",
                            "-" if sc.recall is None else f"{sc.recall:.2f}",
                            f"{sc.lookalikes_flagged:,} of {sc.lookalikes:,}")
        console.print(planted)


def _scores(ledger, day: str | None, path: Path) -> list:
    """The orders (of the night, or every night) scored against a sandbox truth file (matching.evaluate)."""
    from fundx.crypto.keys import KeyStore
    from matching import evaluate
    from matching import orders as mo

    try:
        truths = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        bad(f"--truths {path}: not a readable truth file ({type(exc).__name__})")
    if not isinstance(truths, dict) or "seed" not in truths:
        bad(f"--truths {path}: not a sandbox truth file (no seed)")
    from fundx.core.errors import FundxError

    made = mo.orders(ledger, night=day)
    try:
        return evaluate.score([(o.rule, o.subject) for o in made], truths, KeyStore().match_key())
    except FundxError as exc:  # no matching key here: the subjects cannot be compared
        fail(exc)
    except KeyError as exc:
        bad(f"--truths {path}: {exc.args[0]}")


_PARAM = re.compile(r"^([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)=(.+)$")


def _params(given: list[str] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for text in given or []:
        match = _PARAM.match(text.strip())
        if not match:
            bad(f"--param {text!r}: write rule.name=value, e.g. shared_account.min_people=4")
        key = f"{match.group(1)}.{match.group(2)}"
        if key in params:
            bad(f"--param {key} given twice")
        params[key] = match.group(3).strip()
    return params


@matching_app.command("run")
def matching_run(
    night: Annotated[str | None, typer.Option(help="the matching night (YYYY-MM-DD); default tonight")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="override a rule's parameter: rule.name=value (repeatable), e.g. bill_over_mean.over=0.3")] = None,
) -> None:
    """Load what the stages received (the office's own feeds among them), run the rules; record suspects and
    orders, write the masked lists and the investigators' sealed file."""
    from datetime import date

    from fundx.core.errors import FundxError

    day = night_arg(night)
    params = _params(param)
    from matching.rules import parse_params
    from matching.run import run_matching

    try:
        parse_params(params)  # an unknown parameter or a bad value is bad input: exit 2 before any work
    except FundxError as exc:
        fail(exc, 2)

    try:
        result = run_matching(date.fromisoformat(day) if day else None, params)
    except FundxError as exc:
        fail(exc)
    print_matching(result)
    console.print("next: [bold]fundx orders list --night " + str(result.night) + "[/bold], "
                  "[bold]fundx matching report[/bold]")


def print_matching(result, truths: dict | None = None) -> None:
    """A matching night: rows loaded, suspects and amounts per rule (against the sandbox's planted
    truths when given: planted, precision, recall, and how many of the planted look-alikes that must not
    be flagged were), orders opened, files written."""
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
    columns = ["rule", "规则", "suspects", "at risk"] + (["planted", "precision", "recall", "look-alikes flagged"]
                                                             if scores else [])
    for col in columns:
        found.add_column(col, justify="left" if col in ("rule", "规则") else "right")
    for r in result.rules:
        row = [r.rule, mo.TITLES.get(r.rule, ""), f"{r.suspects:,}", money(r.amount_at_risk)]
        if scores:
            sc = scores[r.rule]
            row += [f"{sc.planted:,}", "-" if sc.precision is None else f"{sc.precision:.2f}",
                    "-" if sc.recall is None else f"{sc.recall:.2f}", f"{sc.lookalikes_flagged} of {sc.lookalikes}"]
        found.add_row(*row)
    found.add_section()
    found.add_row("total", "", f"{sum(r.suspects for r in result.rules):,}",
                  money(sum(r.amount_at_risk for r in result.rules)), style="bold")
    console.print(found)
    console.print(f"orders opened: {result.orders_new:,}; found again with new evidence: {result.orders_updated:,}; "
                  f"reopened: {result.orders_reopened:,}; put under listed supervision (挂牌督办): {result.escalated:,}")
    folders = sorted({str(p.parent) for p in result.files})
    console.print(f"files written: {len(result.files)} in {', '.join(folders)} (orders-<district>.csv, "
                  f"suspects-<rule>.csv: masked; investigators.p7m: sealed to the investigators)")
