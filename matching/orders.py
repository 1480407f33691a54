"""Inspection orders (订单式检查): one per suspect — a case that lives across nights (matching.cases) — and what
came of each.

A matching night's suspects (one row per rule and subject) become orders with :func:`record`: each
gets an id ``O<YYYYMMDD>-<rule no>-<n>``, its district (``area`` routed by the deployment's city file,
FUNDX_CITY: fundx/core/city.py), its amount at risk and a due
date, in one audited transaction; recording the same night again opens nothing new. The district
offices get their orders as CSV files (:func:`write_dispatch`, masked identities only); an
inspector closes an order once with its outcome (:func:`close`, audited, decided under the audit
lock like a steward's decision in :mod:`fundx.exchange.quarantine`), and :func:`report` gives each rule's
precision and the amounts at risk and recovered.

Nothing here sees a raw identity number: ``subject`` is a pseudonymous token (a person's HMAC
token in hex, or an employer's credit code), ``id_masked`` and ``detail`` are masked evidence, and
:func:`record` refuses a frame in which something shaped like a whole identity number appears.
The audit trail gets counts, order ids, outcomes and amounts, never subjects.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from fundx.core.city import City, deployment_city
from fundx.core.errors import DecisionError
from fundx.core.timeutil import UTC
from fundx.ledger import Ledger
from fundx.ledger.schema import orders as orders_table

#: every rule that ever opened orders, in the order they were added: a rule's number in order ids is its place
#: here, so this only grows at its end (tests/matching/test_orders.py holds it to matching.rules.RULES)
RULES: tuple[str, ...] = (
    "paid_after_death",
    "paid_in_custody",
    "shared_account",
    "duplicate_receipt",
    "unemployed_contributing",
    "frequent_visits",
    "bill_over_mean",
    "deregistered_subsidised",
    "hospital_over_mean",
    "bill_after_death",
    "bill_in_custody",
    "overlapping_stays",
    # the rules over history (issue 19): custody and employers
    "contributions_in_custody",
    "retired_in_custody",
    "deregistered_contributing",
    "contributions_without_wage",
)


def _titles() -> dict[str, str]:
    from matching.rules import RULES as DEFINED

    return {name: rule.title for name, rule in DEFINED.items()}


#: each rule's Chinese title (死亡未停发, ...), from its definition (matching.rules)
TITLES: dict[str, str] = _titles()

OUTCOMES: tuple[str, ...] = ("confirmed", "false-positive", "recovered", "referred")
STATUSES: tuple[str, ...] = ("open", "closed")
COLUMNS: tuple[str, ...] = ("rule", "subject", "id_masked", "area", "amount_at_risk", "months", "detail")
DEFAULT_DUE_DAYS = 30

#: a whole identity number (masked ones have ``*``): 17 digits and a digit or X, not inside a longer word
UNMASKED_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
_AREA = re.compile(r"^\d{6}$")


def holds_identity_number(text: str) -> bool:
    """True if ``text`` holds a whole identity number: 18 characters shaped like one (:data:`UNMASKED_ID`) that are
    one (check character and birth date valid, GB 11643-1999) and are not an employer's credit code. The evidence
    of the employer rules names employers by their codes, and an 18-digit credit code (913301020322476657) is
    shaped like a number; about one in 10,000 also has an identity number's check character and a date where the
    birth date goes (a city of a million people's 50,000 employers had five), so shape and check alone refuse
    real evidence. A credit code is told apart by its own checks (:func:`_a_credit_code`)."""
    from fundx.core.identity import is_valid_id

    return any(is_valid_id(m.group(0).upper()) and not _a_credit_code(m.group(0))
               for m in UNMASKED_ID.finditer(text))


def _a_credit_code(text: str) -> bool:
    """Whether 18 characters are an employer's unified social credit code (GB 32100-2015): its MOD 31 check
    character right, its characters 3-8 a known area code (the registering district) and its characters 9-17 a
    GB 11714 organization code with its own check character — except an individual business's (92...), which
    some registries issue without one. An identity number passes all three by chance about once in 200,000 (one
    of 18,121 sandbox numbers passed the first two, none of 36,208 all three): its characters 3-8 are its
    prefecture's and county's digits and the first two of its birth year (330105 1954... gives 010519), rarely a
    real code."""
    from fundx.core.areacodes import is_known_area_code
    from fundx.core.creditcodes import is_valid_uscc

    return (is_valid_uscc(text) and is_known_area_code(text[2:8])
            and (text.startswith("92") or is_valid_uscc(text, check_org_code=True)))


_ORDER_ID = re.compile(r"^O(\d{8})-([1-9]\d?)-(\d{4,})$")


def _city() -> City:
    """The deployment's city (FUNDX_CITY): its districts route the orders."""
    return deployment_city()


def route(area: str) -> str:
    """The area an order is filed under: the code of the city's district serving ``area`` (a district's
    code, or a code it was formerly under: 330103 下城区 -> 330105 拱墅区), else ``area`` itself."""
    district = _city().district_of(area)
    return district.code if district is not None else area


def district_of(area: str) -> str:
    """The district of an area code: the name of the city's district serving it; the city's own code
    (330100: an employer registered by the city's bureau, GB 32100-2015) ``<city>本级``; else ``外地 <code>``
    (a number first issued outside the city, of a person the roll does not pay: matching.sql.routed)."""
    city = _city()
    district = city.district_of(area)
    if district is not None:
        return district.name
    return f"{city.name}本级" if str(area) == f"{city.code}00" else f"外地 {area}"


def district_names() -> list[str]:
    """The names of the city's districts, in the city file's order."""
    return [d.name for d in _city().districts]


def rule_number(rule: str) -> int:
    """A rule's number in order ids (1, 2, ...: its place in :data:`RULES`)."""
    try:
        return RULES.index(rule) + 1
    except ValueError:
        raise ValueError(f"unknown rule {rule!r}: one of {', '.join(RULES)}") from None


def order_id(night: date, rule: str, n: int) -> str:
    """``O20260301-1-0007``: the night, the rule's number and the order's number within them."""
    return f"O{night:%Y%m%d}-{rule_number(rule)}-{n:04d}"


@dataclass(frozen=True)
class Order:
    """One inspection order: a suspect of one rule and night, its district, and what came of it."""

    order_id: str
    night: date
    rule: str
    subject: str
    id_masked: str | None
    area: str
    district: str
    amount_at_risk: float
    months: int | None
    detail: str
    due_on: date
    status: str  # open | closed
    outcome: str | None  # confirmed | false-positive | recovered
    amount_recovered: float | None
    note: str | None
    closed_at: datetime | None
    closed_by: str | None
    created_at: datetime
    # the inspection lifecycle (matching.lifecycle)
    stage: str = "issued"
    assignee: str | None = None
    submitted_by: str | None = None
    first_reviewer: str | None = None
    second_reviewer: str | None = None
    accepted_by: str | None = None
    accepted_at: datetime | None = None
    referral_to: str | None = None
    referral_no: str | None = None
    referral_due: bool = False
    escalated_at: datetime | None = None

    @property
    def recovery(self) -> str | None:
        """``full`` or ``partial`` for what was recovered against the amount at risk; None when nothing was."""
        from matching.lifecycle import recovery

        return recovery(self.amount_at_risk, self.amount_recovered)

    @property
    def title(self) -> str:
        """The rule's Chinese title (死亡未停发, ...)."""
        return TITLES[self.rule]

    @property
    def rule_no(self) -> int:
        return rule_number(self.rule)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (dates as ISO text, ``detail`` parsed)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, (date, datetime)) else value
        out["title"] = self.title
        try:
            out["detail"] = json.loads(self.detail)
        except ValueError:
            pass
        return out


class Recorded(list):
    """What :func:`record` returns: the orders of the suspects given (a list), and how many were new, updated
    with a later night's evidence, and reopened."""

    def __init__(self, orders: Iterable[Order], opened: int, updated: int = 0, reopened: int = 0):
        super().__init__(orders)
        self.opened, self.updated, self.reopened = opened, updated, reopened


def _order(row: Any) -> Order:
    return Order(
        order_id=row["order_id"], night=_as_date(row["night"]), rule=row["rule"], subject=row["subject"],
        id_masked=row["id_masked"], area=row["area"], district=row["district"],
        amount_at_risk=float(row["amount_at_risk"]), months=row["months"], detail=row["detail"],
        due_on=_as_date(row["due_on"]), status=row["status"], outcome=row["outcome"],
        amount_recovered=None if row["amount_recovered"] is None else float(row["amount_recovered"]),
        note=row["note"], closed_at=row["closed_at"], closed_by=row["closed_by"], created_at=row["created_at"],
        stage=row["stage"], assignee=row["assignee"], submitted_by=row["submitted_by"],
        first_reviewer=row["first_reviewer"], second_reviewer=row["second_reviewer"], accepted_by=row["accepted_by"],
        accepted_at=row["accepted_at"], referral_to=row["referral_to"], referral_no=row["referral_no"],
        referral_due=bool(row["referral_due"]), escalated_at=row["escalated_at"],
    )


def _as_date(value: date | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _missing(value: Any) -> bool:
    """None, NaN, NaT or pd.NA."""
    if value is None:
        return True
    import pandas as pd

    try:
        missing = pd.isna(value)
    except (TypeError, ValueError):
        return False
    return bool(missing) if pd.api.types.is_scalar(missing) else False  # a list or dict is not missing


# --- recording a night's suspects --------------------------------------------------------------


def _suspect_rows(suspects: Any) -> list[dict[str, Any]]:
    """The frame's rows, checked and normalised; a ValueError names the column at fault (never a value)."""
    missing = [c for c in COLUMNS if c not in suspects.columns]
    if missing:
        raise ValueError(f"suspects: column {', '.join(missing)} missing (needed: {', '.join(COLUMNS)})")
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for i, raw in enumerate(suspects[list(COLUMNS)].itertuples(index=False, name=None), start=1):
        row = dict(zip(COLUMNS, raw))
        where = f"suspects row {i}"
        rule = row["rule"]
        if not isinstance(rule, str) or rule not in RULES:
            raise ValueError(f"{where}: column rule is not one of {', '.join(RULES)}")
        subject = row["subject"]
        if not isinstance(subject, str) or not subject.strip():
            raise ValueError(f"{where}: column subject must be a token (text)")
        subject = subject.strip()
        if len(subject) > 64:
            raise ValueError(f"{where}: column subject is longer than 64 characters")
        if _is_identity_number(subject):
            raise ValueError(f"{where}: column subject holds an identity number; give the person's token")
        if (rule, subject) in seen:
            raise ValueError(f"{where}: column subject repeats a subject of rule {rule} (one row per rule and subject)")
        seen.add((rule, subject))
        id_masked = None if _missing(row["id_masked"]) else str(row["id_masked"]).strip() or None
        if id_masked is not None and holds_identity_number(id_masked):
            raise ValueError(f"{where}: column id_masked holds an unmasked identity number")
        if id_masked is not None and len(id_masked) > 64:
            raise ValueError(f"{where}: column id_masked is longer than 64 characters")
        area = "" if _missing(row["area"]) else str(row["area"]).strip()
        if not _AREA.match(area):
            raise ValueError(f"{where}: column area is not a 6-digit area code")
        try:
            amount = float(row["amount_at_risk"])
        except (TypeError, ValueError):
            amount = math.nan
        if not math.isfinite(amount) or amount < 0:
            raise ValueError(f"{where}: column amount_at_risk must be a number, 0 or more")
        months = None
        if not _missing(row["months"]):
            try:
                months = float(row["months"])
            except (TypeError, ValueError):
                months = math.nan
            if not math.isfinite(months) or months < 0 or months != int(months):
                raise ValueError(f"{where}: column months must be a whole number of months, 0 or more")
            months = int(months)
        detail = row["detail"]
        if _missing(detail):
            detail = "{}"
        elif isinstance(detail, (dict, list)):
            detail = json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str)
        elif not isinstance(detail, str):
            raise ValueError(f"{where}: column detail must be JSON text")
        try:
            json.loads(detail)
        except ValueError:
            raise ValueError(f"{where}: column detail is not JSON") from None
        if holds_identity_number(detail):
            raise ValueError(f"{where}: column detail holds an unmasked identity number")
        rows.append({"rule": rule, "subject": subject, "id_masked": id_masked, "area": area,
                     "amount_at_risk": round(amount, 2), "months": months, "detail": detail})
    return rows


def _is_identity_number(text: str) -> bool:
    from fundx.core.identity import is_valid_id

    return is_valid_id(text) or is_valid_id(text.upper())


def _due_days(due_days: int | Mapping[str, int], rule: str) -> int:
    days = due_days.get(rule, DEFAULT_DUE_DAYS) if isinstance(due_days, Mapping) else due_days
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise ValueError(f"due_days for {rule} must be a whole number of days, 0 or more")
    return days


def record(ledger: Ledger, night: date, suspects: Any, *, due_days: int | Mapping[str, int] = DEFAULT_DUE_DAYS,
           actor: str = "matching") -> Recorded:
    """Record a night's suspects as cases (matching.cases), in one audited transaction: an order for each new
    (rule, subject); a version of the open order of one found again; a closed one reopened only when its
    evidence materially changed.

    ``suspects``: a pandas DataFrame with the columns rule, subject, id_masked, area, amount_at_risk,
    months and detail (JSON text). New orders of a rule are numbered after the night's existing
    ones, in the order of area, then subject. Recording the same night again changes nothing.
    ``due_days``: days from the night to the due date, one for all or per rule (others: 30).

    Returns the orders of every suspect given (new, found again, or closed and left closed), by order id;
    its ``opened``, ``updated`` and ``reopened`` count what changed. A missing column, an unknown rule, a bad
    value or anything shaped like a whole identity number in ``id_masked`` or ``detail`` is a ValueError
    naming the column, and nothing is recorded.
    """
    from matching import cases

    night = _as_date(night)
    rows = _suspect_rows(suspects)
    for rule in {r["rule"] for r in rows}:
        _due_days(due_days, rule)
    return cases.record(ledger, night, rows, due_days=due_days, actor=actor)


# --- closing an order ---------------------------------------------------------------------------


def _check_close(outcome: str, amount: float, note: str | None) -> tuple[float, str | None]:
    from matching import lifecycle

    if outcome == "referred":
        raise ValueError("a referral is recorded through the case's review (matching.lifecycle.submit), with its number")
    amount, _, _ = lifecycle.check_finding(outcome, amount, None, None)
    return amount, lifecycle.free_text(note, "the note")


def close(ledger: Ledger, order_id: str, *, outcome: str, amount: float, actor: str,
          note: str | None = None) -> Order:
    """Close an open order with its outcome and amount in one step; once, audited (``order.closed``).

    The one-step close is for programs (tests, cases decided before fundx had reviews); people close cases through
    the inspection lifecycle (matching.lifecycle: a finding, then two reviews by different accounts), which is all
    the CLI and the console offer.

    ``outcome``: confirmed | false-positive | recovered; ``amount`` 0 or more, 0 for a false
    positive, more than 0 when recovered (a ValueError otherwise). An unknown order, or one closed
    already (checked under the audit lock), is a DecisionError naming it (and who closed it, when).
    The note is kept with the order, not in the audit trail.
    """
    amount, text = _check_close(outcome, amount, note)
    actor = (actor or "").strip()[:64] or "unknown"
    with ledger.audited() as conn:
        row = conn.execute(orders_table.select().where(orders_table.c.order_id == order_id)).mappings().one_or_none()
        if row is None:
            raise DecisionError(f"there is no order {order_id}", action="see the orders with fundx orders list")
        if row["status"] != "open":
            when = row["closed_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if row["closed_at"] else "?"
            raise DecisionError(f"order {order_id} was closed already by {row['closed_by']} at {when} "
                                f"({row['outcome']})", action="an order is closed once; see fundx orders show " + order_id)
        done = conn.execute(orders_table.update().where(
            orders_table.c.order_id == order_id, orders_table.c.status == "open").values(
            status="closed", stage="closed", outcome=outcome, amount_recovered=amount, note=text,
            closed_at=datetime.now(UTC), closed_by=actor))
        if done.rowcount != 1:
            raise DecisionError(f"order {order_id} is not open any more")
        ledger.audit(conn, "order.closed", order_id, {"outcome": outcome, "amount": amount, "rule": row["rule"],
                                                      "night": _as_date(row["night"]).isoformat()}, actor=actor)
        if outcome == "confirmed":  # the stop-payment loop: a confirmed death or custody case stops the payments
            from matching.stops import issue_for

            issue_for(conn, ledger, row, actor)
        return _order(conn.execute(orders_table.select().where(orders_table.c.order_id == order_id)).mappings().one())


# --- reading ------------------------------------------------------------------------------------


def get(ledger: Ledger, order_id: str) -> Order | None:
    """One order, or None."""
    with ledger.engine.connect() as conn:
        row = conn.execute(orders_table.select().where(orders_table.c.order_id == order_id)).mappings().one_or_none()
    return None if row is None else _order(row)


def area_of(district: str) -> str | None:
    """The area code a district is named by: a 6-digit code, the name of one of the city's districts or
    ``外地 <code>``, or ``<city>本级`` (the city's own code: :func:`district_of`)."""
    text = district.strip()
    if _AREA.match(text):
        return route(text)
    named = _city().district_named(text)
    if named is not None:
        return named.code
    if text == f"{_city().name}本级":
        return f"{_city().code}00"
    outside = re.fullmatch(r"外地\s*(\d{6})", text)
    return outside.group(1) if outside else None


def orders(ledger: Ledger, *, night: date | str | None = None, district: str | None = None, rule: str | None = None,
           status: str | None = None) -> list[Order]:
    """Orders by order id, narrowed by night, district (name or area code), rule and status (open|closed).

    An unknown district, rule or status is a ValueError.
    """
    query = orders_table.select().order_by(orders_table.c.order_id)
    if night is not None:
        query = query.where(orders_table.c.night == _as_date(night))
    if district is not None:
        area = area_of(district)
        if area is None:
            raise ValueError(f"unknown district {district!r}: an area code or one of {', '.join(district_names())}")
        query = query.where(orders_table.c.area == area)
    if rule is not None:
        rule_number(rule)
        query = query.where(orders_table.c.rule == rule)
    if status is not None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}: open or closed")
        query = query.where(orders_table.c.status == status)
    with ledger.engine.connect() as conn:
        return [_order(r) for r in conn.execute(query).mappings()]


@dataclass(frozen=True)
class RuleReport:
    """One rule's orders and outcomes (of one night, or of all)."""

    rule: str
    title: str
    suspects: int
    closed: int
    confirmed: int
    false_positive: int
    recovered: int
    amount_at_risk: float
    amount_recovered: float
    referred: int = 0

    @property
    def open(self) -> int:
        return self.suspects - self.closed

    @property
    def precision(self) -> float | None:
        """(confirmed + recovered + referred) / closed; None while nothing is closed."""
        return (self.confirmed + self.recovered + self.referred) / self.closed if self.closed else None

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "title": self.title, "suspects": self.suspects, "open": self.open,
                "closed": self.closed, "confirmed": self.confirmed, "false_positive": self.false_positive,
                "recovered": self.recovered, "referred": self.referred, "precision": self.precision,
                "amount_at_risk": self.amount_at_risk, "amount_recovered": self.amount_recovered}


def report(ledger: Ledger, night: date | str | None = None) -> list[RuleReport]:
    """Per rule, in :data:`RULES` order: suspects (orders), closed, confirmed, false positives, recovered,
    precision, amount at risk and amount recovered; of one night, or of every night."""
    t = orders_table
    query = (sa.select(t.c.rule, t.c.status, t.c.outcome, sa.func.count().label("n"),
                       sa.func.sum(t.c.amount_at_risk).label("at_risk"),
                       sa.func.sum(t.c.amount_recovered).label("recovered"))
             .group_by(t.c.rule, t.c.status, t.c.outcome))
    if night is not None:
        query = query.where(t.c.night == _as_date(night))
    figures: dict[str, dict[str, Any]] = {r: {"suspects": 0, "closed": 0, "confirmed": 0, "false-positive": 0,
                                              "recovered": 0, "referred": 0, "at_risk": 0.0, "amount_recovered": 0.0}
                                          for r in RULES}
    with ledger.engine.connect() as conn:
        for row in conn.execute(query):
            f = figures.setdefault(row.rule, {"suspects": 0, "closed": 0, "confirmed": 0, "false-positive": 0,
                                              "recovered": 0, "referred": 0, "at_risk": 0.0, "amount_recovered": 0.0})
            f["suspects"] += row.n
            f["at_risk"] += float(row.at_risk or 0)
            if row.status == "closed":
                f["closed"] += row.n
                if row.outcome in ("recovered", "referred"):  # a confirmed order's amount is owed, not yet recovered
                    f["amount_recovered"] += float(row.recovered or 0)
                if row.outcome in OUTCOMES:
                    f[row.outcome] += row.n
    return [RuleReport(rule=r, title=TITLES.get(r, r), suspects=f["suspects"], closed=f["closed"],
                       confirmed=f["confirmed"], false_positive=f["false-positive"], recovered=f["recovered"],
                       referred=f["referred"],
                       amount_at_risk=round(f["at_risk"], 2), amount_recovered=round(f["amount_recovered"], 2))
            for r, f in figures.items()]


def total(reports: Sequence[RuleReport]) -> RuleReport:
    """All rules together (its precision over every closed order)."""
    return RuleReport(
        rule="total", title="合计", suspects=sum(r.suspects for r in reports), closed=sum(r.closed for r in reports),
        confirmed=sum(r.confirmed for r in reports), false_positive=sum(r.false_positive for r in reports),
        recovered=sum(r.recovered for r in reports), referred=sum(r.referred for r in reports),
        amount_at_risk=round(sum(r.amount_at_risk for r in reports), 2),
        amount_recovered=round(sum(r.amount_recovered for r in reports), 2),
    )


# --- dispatching: matching/dispatch.py (the district offices' CSV files) -------------------------------------


def write_dispatch(folder: Path, orders: Iterable[Order]) -> list[Path]:
    """The night's files for the district offices (:func:`matching.dispatch.write_dispatch`)."""
    from matching import dispatch

    return dispatch.write_dispatch(folder, orders)


def neutralise_cell(text: str) -> str:
    """A cell as text a spreadsheet never runs (:func:`matching.dispatch.neutralise_cell`)."""
    from matching import dispatch

    return dispatch.neutralise_cell(text)
