"""The cases' monthly suspect lists and quarterly report per district, from the ledger's orders table alone.

The 2025 national plan (seeds/002) asks for monthly lists of suspects —「每月生成"死亡未停發""服刑未暫停"等疑點
清單」— and sets the targets the quarterly report is read against: every suspect followed up —「確保疑點數據覆蓋率
達100%」— and the money recovered —「基金追回率提升至90%以上」, then「違規資金追回率需達95%以上」.

Monthly lists (:func:`monthly`, :func:`write_monthly`)
======================================================
A month's cases are the orders whose ``night`` (the night the matching found the suspect and issued the case)
falls in the month (Asia/Shanghai dates). One CSV per rule that has cases, named with the rule and its Chinese
title (``suspects-2026-11-paid_after_death-死亡未停发.csv``; the ``规则`` column holds the title too), and a summary
per district and rule (``summary-2026-11.csv``: cases, amount at risk, open, closed). Like the dispatch files
(matching.orders.write_dispatch): masked identities only, never a subject token, cells that look like formulas
neutralised, UTF-8 with a BOM, 0600, each file written atomically after every file was checked.

The quarterly report (:func:`quarterly`, :func:`write_quarterly`)
=================================================================
``2026Q4`` is 2026-10-01 to 2026-12-31 (Asia/Shanghai dates). **A case belongs to the quarter in which it was
found**: its ``night`` is in the quarter (a case reopened later keeps the night it was first found). Cases found
before the quarter are not in its report, whatever happened to them in it.

Every state is taken **as of** the report's moment: the end of the quarter's last day (Asia/Shanghai) for a
quarter that is over, or the moment the report is made while the quarter is running (``as_of`` is that date).
A case's stage at that moment is rebuilt from its recorded steps (``case_events``), its ``closed_at`` and
``accepted_at``: a case closed after the quarter's end counts as open at its end; a case sent back or reopened
after it counts as it stood then. Its finding is the last one given (``submit``) up to that moment; its amount
at risk the last night's version (``order_versions``) up to ``as_of``.

=======================  =====================================================================================
``issued``               cases found in the quarter (下发)
``open``                 of them, open as of the moment (issued, in progress, waiting for a review)
``verified``             closed or accepted as of the moment: the finding reviewed twice (已核实)
``verified_share``       verified / issued; the plan's target is 100 % (None when nothing was issued)
``overdue``              open as of the moment and past its due date (due before ``as_of``)
``escalated``            under listed supervision (挂牌督办, matching.lifecycle.escalate) by the moment
``confirmed``            verified with the finding confirmed (and the payment stopped)
``false_positive``       verified as a false positive (never counted as recovered or at risk of loss)
``recovered``            verified as recovered, ``recovered_full`` / ``recovered_partial`` by the amount
                         against the amount at risk (matching.lifecycle.recovery)
``referred``             verified as referred, ``referred_police`` / ``referred_discipline``
``amount_at_risk``       yuan at risk of every case issued
``amount_confirmed``     yuan at risk of the verified cases confirmed or recovered (the loss established)
``amount_recovered``     yuan recovered by the verified recovered cases
``recovered_share``      amount_recovered / amount_confirmed; the plan's targets 90 % and 95 % (None when 0)
=======================  =====================================================================================

The report has a row per district of the city (in the city file's order, zeros included), then any other
district a case was filed under (``外地 <code>``), then the total. :func:`write_quarterly` writes it as CSV and as
a picture (PNG, and the same page as PDF; matching.report_charts) with districts and counts only.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from fundx.core.timeutil import SHANGHAI, UTC
from fundx.ledger import Ledger
from fundx.ledger.schema import case_events, order_versions
from fundx.ledger.schema import orders as orders_table
from matching import orders as mo

#: the plan's targets (seeds/002): suspects followed up, money recovered (90 % in the goals, 95 % by the end)
TARGET_VERIFIED = 1.0
TARGETS_RECOVERED: tuple[float, float] = (0.90, 0.95)
TOTAL = "合计"

_QUARTER = re.compile(r"^(\d{4})[Qq]([1-4])$")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


# --- periods ----------------------------------------------------------------------------------------------


def parse_quarter(text: str) -> tuple[date, date]:
    """``2026Q4`` -> (2026-10-01, 2026-12-31); a ValueError for anything else (2026Q5, 2026-4)."""
    match = _QUARTER.match((text or "").strip())
    if not match:
        raise ValueError(f"{text!r} is not a quarter (YYYYQ1..YYYYQ4, e.g. 2026Q4)")
    year, q = int(match.group(1)), int(match.group(2))
    first = date(year, 3 * q - 2, 1)
    last = date(year + 1, 1, 1) - timedelta(days=1) if q == 4 else date(year, 3 * q + 1, 1) - timedelta(days=1)
    return first, last


def parse_month(text: str) -> tuple[date, date]:
    """``2026-11`` -> (2026-11-01, 2026-11-30); a ValueError for anything else (2026-13, 2026/11)."""
    match = _MONTH.match((text or "").strip())
    if not match:
        raise ValueError(f"{text!r} is not a month (YYYY-MM, e.g. 2026-11)")
    year, month = int(match.group(1)), int(match.group(2))
    first = date(year, month, 1)
    following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return first, following - timedelta(days=1)


def _end_of(day: date) -> datetime:
    """The last moment of a Shanghai day, in UTC."""
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=SHANGHAI).astimezone(UTC) - timedelta(
        microseconds=1)


def _found_in(ledger: Ledger, first: date, last: date) -> list[mo.Order]:
    """The orders whose night is within [first, last], by order id."""
    query = (orders_table.select().where(orders_table.c.night >= first, orders_table.c.night <= last)
             .order_by(orders_table.c.order_id))
    with ledger.engine.connect() as conn:
        return [mo._order(row) for row in conn.execute(query).mappings()]


# --- the state of a case at a moment ------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseAt:
    """A case as it stood at a moment: stage, finding, amounts, escalation."""

    order: mo.Order
    stage: str
    outcome: str | None
    amount_at_risk: float
    amount_recovered: float
    escalated: bool

    @property
    def verified(self) -> bool:
        return self.stage in ("closed", "accepted")

    @property
    def open(self) -> bool:
        return not self.verified


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def states_at(ledger: Ledger, found: Sequence[mo.Order], moment: datetime, as_of: date) -> list[CaseAt]:
    """The cases ``found`` as they stood at ``moment`` (module docstring): stage from their steps, ``closed_at``
    and ``accepted_at``; finding from the last ``submit`` by then; amount at risk from the last version by
    ``as_of``."""
    ids = [o.order_id for o in found]
    steps: dict[str, list[tuple[datetime, int, str, str | None, float | None]]] = {}
    amounts: dict[str, float] = {}
    with ledger.engine.connect() as conn:
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for e in conn.execute(case_events.select().where(case_events.c.order_id.in_(chunk))
                                  .order_by(case_events.c.order_id, case_events.c.seq)).mappings():
                when = _utc(e["at"])
                if when is None:  # pragma: no cover - the column is not null
                    continue
                steps.setdefault(e["order_id"], []).append(
                    (when, e["seq"], e["to_stage"], e["outcome"] if e["action"] == "submit" else None,
                     None if e["amount"] is None else float(e["amount"])))
            query = (sa.select(order_versions.c.order_id, order_versions.c.night, order_versions.c.amount_at_risk)
                     .where(order_versions.c.order_id.in_(chunk)).order_by(order_versions.c.night))
            for oid, night, amount in conn.execute(query):
                if mo._as_date(night) <= as_of:
                    amounts[oid] = float(amount)
    out = []
    for o in found:
        # the steps in order, then the closing and acceptance the row holds (a case closed in one step,
        # orders.close, leaves no step behind)
        timeline = [(at, 0, seq, stage) for at, seq, stage, _, _ in steps.get(o.order_id, [])]
        closed_at, accepted_at = _utc(o.closed_at), _utc(o.accepted_at)
        if closed_at is not None:
            timeline.append((closed_at, 1, 0, "closed"))
        if accepted_at is not None:
            timeline.append((accepted_at, 2, 0, "accepted"))
        timeline.sort(key=lambda t: (t[0], t[1], t[2]))
        stage = "issued"
        for at, _, _, to_stage in timeline:
            if at <= moment:
                stage = to_stage
        outcome, recovered = None, 0.0
        if stage in ("closed", "accepted"):
            findings = sorted((s for s in steps.get(o.order_id, []) if s[3] is not None and s[0] <= moment),
                              key=lambda s: (s[0], s[1]))
            if findings:
                outcome, recovered = findings[-1][3], findings[-1][4] or 0.0
            else:
                outcome, recovered = o.outcome, o.amount_recovered or 0.0
        escalated_at = _utc(o.escalated_at)
        escalated = escalated_at is not None and escalated_at <= moment
        out.append(CaseAt(o, stage, outcome, amounts.get(o.order_id, o.amount_at_risk), recovered, escalated))
    return out


# --- the quarterly report -----------------------------------------------------------------------------------


@dataclass
class DistrictFigures:
    """One district's (or the total's) figures of a quarter (module docstring)."""

    district: str
    issued: int = 0
    open: int = 0
    verified: int = 0
    overdue: int = 0
    escalated: int = 0
    confirmed: int = 0
    false_positive: int = 0
    recovered: int = 0
    recovered_full: int = 0
    recovered_partial: int = 0
    referred: int = 0
    referred_police: int = 0
    referred_discipline: int = 0
    amount_at_risk: float = 0.0
    amount_confirmed: float = 0.0
    amount_recovered: float = 0.0

    @property
    def verified_share(self) -> float | None:
        return self.verified / self.issued if self.issued else None

    @property
    def recovered_share(self) -> float | None:
        return self.amount_recovered / self.amount_confirmed if self.amount_confirmed > 0 else None

    def add(self, case: CaseAt, as_of: date) -> None:
        from matching.lifecycle import recovery

        self.issued += 1
        self.amount_at_risk += case.amount_at_risk
        self.escalated += case.escalated
        if case.open:
            self.open += 1
            self.overdue += case.order.due_on < as_of
            return
        self.verified += 1
        if case.outcome == "confirmed":
            self.confirmed += 1
            self.amount_confirmed += case.amount_at_risk
        elif case.outcome == "false-positive":
            self.false_positive += 1
        elif case.outcome == "recovered":
            self.recovered += 1
            self.amount_confirmed += case.amount_at_risk
            self.amount_recovered += case.amount_recovered
            if recovery(case.amount_at_risk, case.amount_recovered) == "full":
                self.recovered_full += 1
            else:
                self.recovered_partial += 1
        elif case.outcome == "referred":
            self.referred += 1
            if case.order.referral_to == "discipline":
                self.referred_discipline += 1
            else:
                self.referred_police += 1

    def merge(self, other: DistrictFigures) -> None:
        for name, value in asdict(other).items():
            if name != "district":
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("amount_at_risk", "amount_confirmed", "amount_recovered"):
            out[name] = round(out[name], 2)
        out["verified_share"] = self.verified_share
        out["recovered_share"] = self.recovered_share
        return out


@dataclass(frozen=True)
class QuarterReport:
    """A quarter's figures per district and in total, as of a moment (module docstring)."""

    quarter: str
    first: date
    last: date
    as_of: date
    running: bool
    made_at: datetime
    districts: list[DistrictFigures] = field(default_factory=list)
    total: DistrictFigures = field(default_factory=lambda: DistrictFigures(TOTAL))

    @property
    def rows(self) -> list[DistrictFigures]:
        return [*self.districts, self.total]

    def as_json(self) -> dict[str, Any]:
        return {"quarter": self.quarter, "from": self.first.isoformat(), "to": self.last.isoformat(),
                "as_of": self.as_of.isoformat(), "running": self.running, "made_at": self.made_at.isoformat(),
                "targets": {"verified_share": TARGET_VERIFIED, "recovered_share": list(TARGETS_RECOVERED)},
                "districts": [d.as_dict() for d in self.districts], "total": self.total.as_dict()}


def quarterly(ledger: Ledger, quarter: str, *, now: datetime | None = None) -> QuarterReport:
    """The quarter's report (module docstring). ``now`` (tests): when it is made; a quarter that has not begun by
    then, or a bad quarter, is a ValueError."""
    first, last = parse_quarter(quarter)
    made = (now or datetime.now(UTC)).astimezone(UTC)
    today = made.astimezone(SHANGHAI).date()
    if first > today:
        raise ValueError(f"quarter {quarter} has not begun (today is {today.isoformat()})")
    running = last >= today
    as_of, moment = (today, made) if running else (last, _end_of(last))
    cases = states_at(ledger, _found_in(ledger, first, last), moment, as_of)
    names = mo.district_names()
    per = {name: DistrictFigures(name) for name in names}
    for case in cases:
        per.setdefault(case.order.district, DistrictFigures(case.order.district)).add(case, as_of)
    others = sorted(d for d in per if d not in names)
    report = QuarterReport(quarter=f"{first.year}Q{(first.month + 2) // 3}", first=first, last=last, as_of=as_of,
                           running=running, made_at=made, districts=[per[d] for d in [*names, *others]])
    for row in report.districts:
        report.total.merge(row)
    return report


#: the quarterly CSV's columns: (field, Chinese heading)
QUARTER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("district", "区"), ("issued", "下发"), ("open", "在办"), ("verified", "已核实"),
    ("verified_share", "核实率"), ("overdue", "逾期"), ("escalated", "挂牌督办"), ("confirmed", "确认"),
    ("false_positive", "误报"), ("recovered", "追回"), ("recovered_full", "全额追回"),
    ("recovered_partial", "部分追回"), ("referred", "移送"), ("referred_police", "移送公安"),
    ("referred_discipline", "移送纪检"), ("amount_at_risk", "涉及金额"), ("amount_confirmed", "查实金额"),
    ("amount_recovered", "追回金额"), ("recovered_share", "追回率"),
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}" if value >= 1 or value == 0 else f"{value:.4f}"
    return str(value)


def quarter_csv(report: QuarterReport) -> bytes:
    """The report as CSV: a row per district and the total; headings ``field 中文``; shares as fractions."""
    rows = [[f"{name} {zh}" for name, zh in QUARTER_COLUMNS]]
    for row in report.rows:
        doc = row.as_dict()
        rows.append([_cell(doc[name]) if name not in ("verified_share", "recovered_share")
                     else ("" if doc[name] is None else f"{doc[name]:.4f}") for name, _ in QUARTER_COLUMNS])
    return _encode(rows)


def read_quarter_csv(data: bytes) -> list[dict[str, str]]:
    """The rows of :func:`quarter_csv` back, keyed by field name (tests, and anyone checking a file)."""
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig")))
    heads = [h.split(" ", 1)[0] for h in next(reader)]
    return [dict(zip(heads, row)) for row in reader]


def _encode(rows: Iterable[Sequence[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow([mo.neutralise_cell(c) for c in row])
    text = buffer.getvalue()
    if mo.holds_identity_number(text):
        raise ValueError("a report cell holds an unmasked identity number; nothing written")
    return text.encode("utf-8-sig")  # the BOM lets Excel read the Chinese


def _write(folder: Path, files: Sequence[tuple[str, bytes]]) -> list[Path]:
    from fundx.core.files import write_file_atomic

    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, data in files:  # every file made before the first is written
        write_file_atomic(folder / name, data, 0o600)
    return [folder / name for name, _ in files]


def write_quarterly(folder: Path, report: QuarterReport) -> list[Path]:
    """``cases-<quarter>.csv``, ``.png`` and ``.pdf`` in ``folder`` (0700; files 0600, atomic). Returns them."""
    from matching import report_charts

    png, pdf = report_charts.render(report)
    stem = f"cases-{report.quarter}"
    return _write(folder, [(f"{stem}.csv", quarter_csv(report)), (f"{stem}.png", png), (f"{stem}.pdf", pdf)])


# --- the monthly lists --------------------------------------------------------------------------------------

MONTH_COLUMNS = ("order_id", "night", "rule", "规则", "area", "district", "id_masked", "amount_at_risk", "months",
                 "due_on", "stage", "outcome")
SUMMARY_COLUMNS = ("district", "rule", "规则", "cases", "amount_at_risk", "open", "closed")


@dataclass(frozen=True)
class Monthly:
    """A month's cases (found in it), by rule; and the summary rows per district and rule."""

    month: str
    cases: list[mo.Order]

    def by_rule(self) -> dict[str, list[mo.Order]]:
        out: dict[str, list[mo.Order]] = {}
        for rule in mo.RULES:
            chosen = [o for o in self.cases if o.rule == rule]
            if chosen:
                out[rule] = sorted(chosen, key=lambda o: (o.area, o.order_id))
        return out

    def summary(self) -> list[dict[str, Any]]:
        """Per district (city order, then others) and rule: cases, amount at risk, open, closed; then the total."""
        names = mo.district_names()
        order = {n: i for i, n in enumerate(names)}
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for o in self.cases:
            row = rows.setdefault((o.district, o.rule), {"district": o.district, "rule": o.rule, "规则": o.title,
                                                         "cases": 0, "amount_at_risk": 0.0, "open": 0, "closed": 0})
            row["cases"] += 1
            row["amount_at_risk"] += o.amount_at_risk
            row["open" if o.status == "open" else "closed"] += 1
        out = [rows[k] for k in sorted(rows, key=lambda k: (order.get(k[0], len(names)), k[0], mo.RULES.index(k[1])))]
        out.append({"district": TOTAL, "rule": "", "规则": "", "cases": len(self.cases),
                    "amount_at_risk": sum(o.amount_at_risk for o in self.cases),
                    "open": sum(o.status == "open" for o in self.cases),
                    "closed": sum(o.status != "open" for o in self.cases)})
        for row in out:
            row["amount_at_risk"] = round(row["amount_at_risk"], 2)
        return out


def monthly(ledger: Ledger, month: str) -> Monthly:
    """The cases found in ``month`` (YYYY-MM; a ValueError otherwise): their night is in it."""
    first, last = parse_month(month)
    return Monthly(f"{first:%Y-%m}", _found_in(ledger, first, last))


def _month_cells(o: mo.Order) -> list[str]:
    return [o.order_id, o.night.isoformat(), o.rule, o.title, o.area, o.district, o.id_masked or "",
            f"{o.amount_at_risk:.2f}", "" if o.months is None else str(o.months), o.due_on.isoformat(), o.stage,
            o.outcome or ""]


def month_files(lists: Monthly) -> list[tuple[str, bytes]]:
    """The month's files (name, bytes): one list per rule with cases, then ``summary-<month>.csv``."""
    files = [(f"suspects-{lists.month}-{rule}-{mo.TITLES.get(rule, rule)}.csv",
              _encode([MONTH_COLUMNS, *(_month_cells(o) for o in chosen)]))
             for rule, chosen in lists.by_rule().items()]
    summary = [[_cell(row[c]) for c in SUMMARY_COLUMNS] for row in lists.summary()]
    files.append((f"summary-{lists.month}.csv", _encode([SUMMARY_COLUMNS, *summary])))
    return files


def write_monthly(folder: Path, lists: Monthly) -> list[Path]:
    """The month's lists and summary in ``folder`` (0700; files 0600, UTF-8 with BOM, atomic). Returns them."""
    return _write(folder, month_files(lists))
