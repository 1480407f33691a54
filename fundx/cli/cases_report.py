"""``fundx cases report`` and ``fundx cases monthly``: the quarterly report per district and the monthly suspect
lists (matching.reports), for supervisors and district heads, under an account (its password checked, like every
``fundx cases`` command); each report made is audited (``cases.report``: the period and the counts)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from fundx.cli.cases import Account, cases_app, signed_in
from fundx.cli.common import bad, console, money

Out = Annotated[Path | None, typer.Option("--out", help="the folder to write into (default FUNDX_HOME/reports/"
                                                        "cases-PERIOD)")]


def _folder(out: Path | None, period: str) -> Path:
    """The folder to write into, checked before anything is read: exit 2 naming --out when it cannot be written."""
    from fundx.core.settings import get_settings

    folder = out if out is not None else get_settings().home / "reports" / f"cases-{period}"
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        bad(f"--out: {escape(str(folder))} cannot be written (not a folder, or no permission); give another folder")
    return folder


def _written(folder: Path, make) -> list[Path]:
    try:
        return make(folder)
    except ValueError as exc:
        bad(str(exc))
    except OSError as exc:
        bad(f"--out: could not write into {escape(str(folder))}: {exc.strerror or type(exc).__name__}")


@cases_app.command("report")
def cases_report(
    account: Account,
    quarter: Annotated[str, typer.Option(help="the quarter: YYYYQ1..YYYYQ4, e.g. 2026Q4")],
    out: Out = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """The quarterly report per district: cases found in the quarter, verified share (target 100 %), overdue,
    escalated, recovered, referred; written as CSV, PNG and PDF (audited)."""
    from fundx.ledger import Ledger
    from matching import reports

    try:
        reports.parse_quarter(quarter)
    except ValueError as exc:
        bad(f"--quarter: {exc}")
    folder = _folder(out, quarter.upper())
    actor = signed_in(account)
    ledger = Ledger.from_settings()
    try:
        report = reports.quarterly(ledger, quarter)
    except ValueError as exc:
        bad(f"--quarter: {exc}")
    paths = _written(folder, lambda f: reports.write_quarterly(f, report))
    t = report.total
    ledger.log_event("cases.report", report.quarter, {
        "kind": "quarterly", "as_of": report.as_of.isoformat(), "issued": t.issued, "verified": t.verified,
        "overdue": t.overdue, "escalated": t.escalated, "recovered": t.recovered, "referred": t.referred,
        "districts": sum(1 for d in report.districts if d.issued), "files": [p.name for p in paths]},
        actor=actor.name)
    if as_json:
        print(json.dumps({**report.as_json(), "files": [str(p) for p in paths]}, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"cases of {report.quarter} (found {report.first} – {report.last}), as of {report.as_of}"
                        + (" (running)" if report.running else ""))
    for col in ("district", "issued", "open", "verified", "share", "overdue", "escal.", "conf.", "false+",
                "recov.", "ref.", "recovered ¥", "recov. %"):
        table.add_column(col, justify="left" if col == "district" else "right")
    for d in report.rows:
        if not d.issued and d is not report.total:
            continue
        if d is report.total:
            table.add_section()
        table.add_row(d.district, str(d.issued), str(d.open), str(d.verified), _share(d.verified_share),
                      str(d.overdue), str(d.escalated), str(d.confirmed), str(d.false_positive), str(d.recovered),
                      str(d.referred), money(d.amount_recovered), _share(d.recovered_share),
                      style="bold" if d is report.total else None)
    console.print(table)
    console.print("written: " + ", ".join(escape(str(p)) for p in paths))


def _share(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


@cases_app.command("monthly")
def cases_monthly(
    account: Account,
    month: Annotated[str, typer.Option(help="the month: YYYY-MM, e.g. 2026-11")],
    out: Out = None,
) -> None:
    """The month's suspect lists: one CSV per rule (死亡未停发, 服刑未暂停, ...) of the cases found in the month,
    masked identities only, and a summary per district and rule (audited)."""
    from fundx.ledger import Ledger
    from matching import orders as mo
    from matching import reports

    try:
        reports.parse_month(month)
    except ValueError as exc:
        bad(f"--month: {exc}")
    folder = _folder(out, month.strip())
    actor = signed_in(account)
    ledger = Ledger.from_settings()
    try:
        lists = reports.monthly(ledger, month)
    except ValueError as exc:
        bad(f"--month: {exc}")
    paths = _written(folder, lambda f: reports.write_monthly(f, lists))
    per_rule = {rule: len(chosen) for rule, chosen in lists.by_rule().items()}
    ledger.log_event("cases.report", lists.month, {"kind": "monthly", "cases": len(lists.cases),
                                                   "per_rule": per_rule, "files": len(paths)}, actor=actor.name)
    console.print(f"{len(lists.cases)} cases found in {lists.month}"
                  + "".join(f"\n  {mo.TITLES.get(r, r)} ({r}): {n}" for r, n in per_rule.items()))
    console.print("written: " + ", ".join(escape(str(p)) for p in paths))
