"""The inspection lifecycle of a case (订单式检查): taken, worked, reviewed by two people, closed, accepted.

A case (an order: matching.orders, kept across nights by matching.cases) moves through these stages::

    issued --take--> in_progress --submit--> first_review --approve--> second_review --approve--> closed
       ^                 ^  (return)              |  (return)               |                        |
       |                 +------------------------+-------------------------+                        |
       |                 +--------------------- send back (supervisor) ----------------------- accept --> accepted
       +-- reopened (matching.cases: a closed case whose evidence materially changed)

- **take** (an inspector): the case is theirs to verify (``assignee``);
- **submit** (an inspector): the finding — ``confirmed`` (confirmed and stopped), ``false-positive``,
  ``recovered`` (with the amount: in full when it reaches the amount at risk, else partial) or ``referred``
  (to the police or to discipline inspection, with the referral number);
- **first review** (初审) and **second review** (复核) by two *different* accounts, neither the second the one
  who submitted the finding: the Zhengzhou notice (seeds/004, 「经办业务应严格实行双岗初审和复核」, and
  「坚持经办和复核……岗位分设」) — a reviewer who returns the finding sends it back to ``in_progress``;
- **accept** (验收) or **send back** (a supervisor): the level above accepts the closed case, or sends it back
  to work (Guangdong's order-style inspections are accepted by the level above: seeds/003).

Every step is one audited transaction under the audit lock (``case.<action>``: order id, stages, outcome and
amount, never a subject), kept in ``case_events`` with its reason (free text refused when it holds an
identity number). Roles: inspectors take, submit and review; supervisors accept or send back; a step by
another role, or out of its stage, is a DecisionError that says what the case is waiting for.

Time limits and thresholds are settings (:class:`CaseSettings`, FUNDX_CASES_*; defaults below). Time limits
(:data:`DUE_DAYS`): each rule's case is due so many days after the night it was found;
a case not closed 90 days after it was found, or confirmed and not yet recovered in full by then, is put
under listed supervision (挂牌督办: Shanwei, seeds/001 line 46, 「自发现之日起超过90日未按照规定采取追回措施的
……应当挂牌督办，直至追回基金」) by :func:`escalate`, once, with a notice through the notifier. A case whose
amount at risk reaches the referral threshold of its fund (:data:`REFERRAL_THRESHOLDS`: 5,000 yuan medical
insurance, 10,000 yuan pensions and work injury, the 2025 national plan, seeds/002 「涉案金額超過5000元（醫保）
或1萬元（養老、工傷）的案件，及時移送公安機關」) is flagged ``referral_due`` when it is recorded or updated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from fundx.core.errors import DecisionError
from fundx.core.timeutil import UTC
from fundx.ledger import Ledger
from fundx.ledger.schema import case_events
from fundx.ledger.schema import orders as orders_table

STAGES: tuple[str, ...] = ("issued", "in_progress", "first_review", "second_review", "closed", "accepted")
#: the stages in which a case is still open (status ``open``)
OPEN_STAGES: tuple[str, ...] = STAGES[:4]
OUTCOMES: tuple[str, ...] = ("confirmed", "false-positive", "recovered", "referred")
REFERRED_TO: tuple[str, ...] = ("police", "discipline")
ROLES: dict[str, tuple[str, ...]] = {
    "take": ("inspector",), "submit": ("inspector",), "first_review": ("inspector",),
    "second_review": ("inspector",), "return": ("inspector",),
    "accept": ("supervisor",), "send_back": ("supervisor",),
}
#: days after escalation starts (Shanwei, seeds/001: 90 days from when the loss was found)
ESCALATE_AFTER_DAYS = 90
#: the medical-insurance rules: their cases are referred from 5,000 yuan; every other rule's from 10,000
MEDICAL_RULES: frozenset[str] = frozenset({"frequent_visits", "bill_over_mean", "hospital_over_mean",
                                           "bill_after_death", "bill_in_custody", "overlapping_stays"})
REFERRAL_THRESHOLDS: dict[str, float] = {"medical": 5000.0, "pension": 10000.0}
#: days from the night a case is found to its due date. Stopping a payment is urgent (seeds/001 line 44,
#: 「应当立即停止待遇支付」): the death and custody cases of paid benefits are due in 15 days; the others in 30,
#: the employers' (a visit to the employer and its books) in 60. A deployment may give its own (rule params).
DUE_DAYS: dict[str, int] = {
    "paid_after_death": 15, "paid_in_custody": 15, "retired_in_custody": 15,
    "deregistered_subsidised": 60, "deregistered_contributing": 60, "contributions_without_wage": 60,
}
DEFAULT_DUE_DAYS = 30
MAX_REASON = 500
MAX_REFERRAL_NO = 32


class CaseSettings(BaseSettings):
    """The lifecycle's time limits and thresholds; each field is the environment variable FUNDX_CASES_<NAME>
    (the defaults are the documents': module docstring)."""

    model_config = SettingsConfigDict(env_prefix="FUNDX_CASES_", extra="ignore")

    referral_medical: float = Field(REFERRAL_THRESHOLDS["medical"], gt=0,
                                    description="yuan at risk from which a medical-insurance case is flagged for "
                                                "referral to the police (national plan 2025: 5,000)")
    referral_pension: float = Field(REFERRAL_THRESHOLDS["pension"], gt=0,
                                    description="yuan at risk from which a pension, work-injury or other case is "
                                                "flagged for referral (national plan 2025: 10,000)")
    escalate_after_days: int = Field(ESCALATE_AFTER_DAYS, ge=1, le=3650,
                                     description="days after a case was found that it goes under listed supervision "
                                                 "(挂牌督办) if not closed, or confirmed and not recovered (Shanwei: 90)")
    due_days: str = Field("", description="days to a case's due date per rule, as rule=days,rule=days; the rules "
                                          "not named keep matching.lifecycle.DUE_DAYS (15 death and custody, 60 "
                                          "employers, 30 the others)")

    def due(self) -> dict[str, int]:
        """:data:`DUE_DAYS` with the rules this setting names; a ValueError names a bad entry."""
        from matching.orders import RULES

        out = dict(DUE_DAYS)
        for entry in (e.strip() for e in self.due_days.split(",") if e.strip()):
            rule, _, days = entry.partition("=")
            rule = rule.strip()
            if rule not in RULES or not days.strip().isdigit():
                raise ValueError(f"FUNDX_CASES_DUE_DAYS: {entry!r} is not rule=days with a rule of "
                                 f"{', '.join(RULES)}")
            out[rule] = int(days)
        return out

    def thresholds(self) -> dict[str, float]:
        return {"medical": self.referral_medical, "pension": self.referral_pension}


def case_settings() -> CaseSettings:
    """The FUNDX_CASES_* settings as the environment has them now."""
    return CaseSettings()


@dataclass(frozen=True)
class Actor:
    """Who takes a step: an account's name and role, as authenticated by the console or the CLI."""

    name: str
    role: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", (self.name or "").strip()[:64])


def due_days(rule: str, given: int | Mapping[str, int] | None = None) -> int:
    """Days from the night to a case's due date: ``given`` (one for all, or per rule), else :data:`DUE_DAYS`."""
    if isinstance(given, int):
        return given
    if isinstance(given, Mapping) and rule in given:
        return given[rule]
    return DUE_DAYS.get(rule, DEFAULT_DUE_DAYS)


def fund_of(rule: str) -> str:
    """``medical`` for the medical-insurance rules, else ``pension`` (pensions, work injury and the others)."""
    return "medical" if rule in MEDICAL_RULES else "pension"


def referral_due(rule: str, amount_at_risk: float, thresholds: Mapping[str, float] | None = None) -> bool:
    """True when the amount at risk reaches its fund's referral threshold: ``thresholds``, else the settings'
    (FUNDX_CASES_REFERRAL_MEDICAL and _PENSION, by default :data:`REFERRAL_THRESHOLDS`)."""
    limits = dict(thresholds) if thresholds is not None else case_settings().thresholds()
    return float(amount_at_risk) >= limits[fund_of(rule)]


def recovery(amount_at_risk: float, amount_recovered: float | None) -> str | None:
    """``full`` when what was recovered reaches the amount at risk, ``partial`` when less, None when nothing."""
    if not amount_recovered:
        return None
    return "full" if amount_recovered + 0.005 >= amount_at_risk else "partial"


def free_text(reason: str | None, what: str = "the reason") -> str | None:
    """A reason or note as kept: whitespace collapsed, at most :data:`MAX_REASON` characters, never anything shaped
    like an identity number (a ValueError says which)."""
    from matching.orders import UNMASKED_ID

    text = " ".join((reason or "").split()) or None
    if text is not None:
        if len(text) > MAX_REASON:
            raise ValueError(f"{what} is longer than {MAX_REASON} characters")
        if UNMASKED_ID.search(text):
            raise ValueError(f"{what} contains something shaped like an identity number; refer to the order instead")
    return text


def check_finding(outcome: str, amount: float, referral_to: str | None, referral_no: str | None,
                  ) -> tuple[float, str | None, str | None]:
    """A finding checked: the outcome one of :data:`OUTCOMES`, the amount 0 or more (0 for a false positive, more for
    a recovery), a referral's destination and number with ``referred`` only. Returns the amount rounded and the
    referral; a ValueError says what is wrong."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}: one of {', '.join(OUTCOMES)}")
    try:
        amount = float(amount)
    except (TypeError, ValueError):
        raise ValueError("the amount must be a number") from None
    if not math.isfinite(amount) or amount < 0:
        raise ValueError("the amount must be a number, 0 or more")
    if outcome == "false-positive" and amount != 0:
        raise ValueError("a false positive has nothing recovered: the amount must be 0")
    if outcome == "recovered" and amount <= 0:
        raise ValueError("a recovered case needs the amount recovered (more than 0)")
    if outcome == "referred":
        if referral_to not in REFERRED_TO:
            raise ValueError(f"a referred case names where it went: {' or '.join(REFERRED_TO)}")
        number = (referral_no or "").strip()
        if not number or len(number) > MAX_REFERRAL_NO or not number.isprintable():
            raise ValueError(f"a referred case needs the referral number (up to {MAX_REFERRAL_NO} characters)")
        if any(c.isspace() for c in number):
            raise ValueError("the referral number is one word")
        free_text(number, "the referral number")
        return round(amount, 2), referral_to, number
    if referral_to is not None or referral_no is not None:
        raise ValueError("a referral is given only with the outcome referred")
    return round(amount, 2), None, None


def _allowed(action: str, actor: Actor) -> str:
    name = (actor.name or "").strip()[:64]
    if not name:
        raise DecisionError("a step of a case needs the account taking it")
    if actor.role not in ROLES[action]:
        raise DecisionError(f"{name} ({actor.role}) may not {action.replace('_', ' ')} a case: only "
                            f"{' or '.join(ROLES[action])}s do", action="sign in with an account of that role")
    return name


_DONE = {"take": "taken", "submit": "given a finding", "first_review": "first-reviewed",
         "second_review": "second-reviewed", "return": "returned", "accept": "accepted", "send_back": "sent back"}
_WAITING = {"issued": "an inspector to take it", "in_progress": "the inspector's finding",
            "first_review": "its first review", "second_review": "its second review (by another account)",
            "closed": "a supervisor's acceptance", "accepted": "nothing: it was accepted"}


def _step(ledger: Ledger, order_id: str, action: str, actor: Actor, wanted: tuple[str, ...], to_stage: str, *,
          values: Mapping[str, Any] | None = None, outcome: str | None = None, amount: float | None = None,
          reason: str | None = None, check=None):
    """One step: the case read under the audit lock, checked (stage, role, ``check``), changed, its event and audit
    entry written, in one transaction. Returns the order after the step."""
    from matching import orders as mo

    name = _allowed(action, actor)
    now = datetime.now(UTC)
    with ledger.audited() as conn:
        row = conn.execute(orders_table.select().where(orders_table.c.order_id == order_id)).mappings().one_or_none()
        if row is None:
            raise DecisionError(f"there is no case {order_id}", action="see the cases with fundx cases list")
        if row["stage"] not in wanted:
            raise DecisionError(f"case {order_id} is {row['stage'].replace('_', ' ')}, waiting for "
                                f"{_WAITING[row['stage']]}; it cannot be {_DONE[action]} now",
                                action="see fundx cases show " + order_id)
        if check is not None:
            check(row, name)
        changes = dict(values or {})
        changes["stage"] = to_stage
        changes["status"] = "open" if to_stage in OPEN_STAGES else "closed"
        done = conn.execute(orders_table.update().where(orders_table.c.order_id == order_id,
                                                        orders_table.c.stage == row["stage"]).values(**changes))
        if done.rowcount != 1:
            raise DecisionError(f"case {order_id} changed meanwhile; look again")
        record_event(conn, order_id, actor=name, action=action, from_stage=row["stage"], to_stage=to_stage,
                     outcome=outcome, amount=amount, reason=reason, at=now)
        details: dict[str, Any] = {"from": row["stage"], "to": to_stage, "rule": row["rule"]}
        if outcome is not None:
            details |= {"outcome": outcome, "amount": amount}
        ledger.audit(conn, f"case.{action}", order_id, details, actor=name)
        after = conn.execute(orders_table.select().where(orders_table.c.order_id == order_id)).mappings().one()
        if to_stage == "closed":
            _on_closed(conn, ledger, after, name)
        return mo._order(after)


def record_event(conn: sa.Connection, order_id: str, *, actor: str, action: str, from_stage: str, to_stage: str,
                 at: datetime, outcome: str | None = None, amount: float | None = None,
                 reason: str | None = None) -> None:
    """One step of a case in ``case_events`` (numbered after its last), in the caller's audited transaction."""
    seq = conn.execute(sa.select(sa.func.coalesce(sa.func.max(case_events.c.seq), 0))
                       .where(case_events.c.order_id == order_id)).scalar_one() + 1
    conn.execute(case_events.insert().values(order_id=order_id, seq=seq, at=at, actor=actor, action=action,
                                             from_stage=from_stage, to_stage=to_stage, outcome=outcome,
                                             amount=amount, reason=reason))


def _on_closed(conn: sa.Connection, ledger: Ledger, row: Any, actor: str) -> None:
    """What a case's closing sets off, in its transaction (the stop-payment instruction of a confirmed case)."""
    if row["outcome"] == "confirmed":
        from matching.stops import issue_for

        issue_for(conn, ledger, row, actor)


def take(ledger: Ledger, order_id: str, *, actor: Actor):
    """An inspector takes an issued case (or one sent back to work) to verify it."""
    return _step(ledger, order_id, "take", actor, ("issued",), "in_progress", values={"assignee": actor.name})


def submit(ledger: Ledger, order_id: str, *, actor: Actor, outcome: str, amount: float = 0,
           referral_to: str | None = None, referral_no: str | None = None, note: str | None = None):
    """The inspector's finding, for review: outcome, amount recovered, referral (module docstring)."""
    amount, referral_to, referral_no = check_finding(outcome, amount, referral_to, referral_no)
    text = free_text(note, "the note")

    def theirs(row: Mapping[str, Any], who: str) -> None:
        if row["assignee"] not in (None, who):
            raise DecisionError(f"case {order_id} is with {row['assignee']}: its finding is theirs to give",
                                action="ask them, or a supervisor to send it back to another inspector")

    return _step(ledger, order_id, "submit", actor, ("in_progress",), "first_review", outcome=outcome,
                 amount=amount, reason=text, check=theirs,
                 values={"outcome": outcome, "amount_recovered": amount, "referral_to": referral_to,
                         "referral_no": referral_no, "note": text, "submitted_by": actor.name,
                         "assignee": actor.name})


def review(ledger: Ledger, order_id: str, *, actor: Actor, approve: bool, reason: str | None = None):
    """The first review (初审) or the second (复核), whichever the case waits for. Approving the second closes the
    case with its finding; it must be another account than the first reviewer's and the submitter's. Returning a
    finding (``approve=False``, with a reason) sends the case back to its inspector."""
    text = free_text(reason)
    name = (actor.name or "").strip()[:64]

    def independent(row: Mapping[str, Any], who: str) -> None:
        if row["stage"] == "second_review" and who in (row["first_reviewer"], row["submitted_by"]):
            did = "first-reviewed" if who == row["first_reviewer"] else "submitted"
            raise DecisionError(f"{who} {did} case {order_id}: its second review is another account's "
                                "(two-person review)", action="ask another inspector to review it")

    if not approve:
        if not text:
            raise ValueError("returning a finding needs the reason")
        return _step(ledger, order_id, "return", actor, ("first_review", "second_review"), "in_progress",
                     reason=text, check=independent, values={"first_reviewer": None, "second_reviewer": None})
    with ledger.engine.connect() as conn:
        stage = conn.execute(sa.select(orders_table.c.stage).where(orders_table.c.order_id == order_id)).scalar()
    if stage == "second_review":
        return _step(ledger, order_id, "second_review", actor, ("second_review",), "closed", reason=text,
                     check=independent, values={"second_reviewer": name, "closed_at": datetime.now(UTC),
                                                "closed_by": name})
    return _step(ledger, order_id, "first_review", actor, ("first_review",), "second_review", reason=text,
                 values={"first_reviewer": name})


def accept(ledger: Ledger, order_id: str, *, actor: Actor, reason: str | None = None):
    """A supervisor accepts a closed case (验收)."""
    return _step(ledger, order_id, "accept", actor, ("closed",), "accepted", reason=free_text(reason),
                 values={"accepted_by": actor.name, "accepted_at": datetime.now(UTC)})


def send_back(ledger: Ledger, order_id: str, *, actor: Actor, reason: str):
    """A supervisor sends a closed case back to work, with the reason: it is open again, its finding kept for the
    inspector to revise and its reviews to be done again."""
    text = free_text(reason)
    if not text:
        raise ValueError("sending a case back needs the reason")
    return _step(ledger, order_id, "send_back", actor, ("closed",), "in_progress", reason=text,
                 values={"first_reviewer": None, "second_reviewer": None, "closed_at": None, "closed_by": None})


# --- reading ------------------------------------------------------------------------------------


def events(ledger: Ledger, order_id: str) -> list[dict[str, Any]]:
    """A case's steps, oldest first: when, who, action, from and to stage, outcome, amount, reason."""
    with ledger.engine.connect() as conn:
        rows = conn.execute(case_events.select().where(case_events.c.order_id == order_id)
                            .order_by(case_events.c.seq)).mappings().all()
    return [dict(r) for r in rows]


def waiting_for(order: Any, actor: Actor) -> bool:
    """True when the case waits for a step ``actor`` may take: an issued case, their own in progress, a finding to
    first-review, a second review they may do (not theirs to submit or first-review); a closed one for a
    supervisor."""
    if actor.role == "supervisor":
        return order.stage == "closed"
    if actor.role != "inspector":
        return False
    if order.stage == "in_progress":
        return order.assignee == actor.name
    if order.stage == "second_review":
        return actor.name not in (order.first_reviewer, order.submitted_by)
    return order.stage in ("issued", "first_review")


def queue(ledger: Ledger, actor: Actor, *, stage: str | None = None, district: str | None = None, mine: bool = False,
          overdue_only: bool = False, today: date | None = None) -> list[Any]:
    """The cases by stage and district, oldest due first: all of them, or ``mine`` (waiting for ``actor``), or the
    overdue ones; the view is audited (``case.listed``: the filters and the count). An unknown stage or district is
    a ValueError."""
    from fundx.core.timeutil import SHANGHAI
    from matching import orders as mo

    if stage is not None and stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}: one of {', '.join(STAGES)}")
    day = today or datetime.now(SHANGHAI).date()
    found = [o for o in mo.orders(ledger, district=district)
             if (stage is None or o.stage == stage) and (not mine or waiting_for(o, actor))
             and (not overdue_only or overdue(o, day))]
    found.sort(key=lambda o: (o.due_on, o.order_id))
    ledger.log_event("case.listed", district or "all", {"stage": stage, "mine": mine, "overdue": overdue_only,
                                                        "shown": len(found)}, actor=actor.name)
    return found


def view(ledger: Ledger, order_id: str, *, actor: Actor) -> Any:
    """One case (None if there is none), the view audited (``case.viewed``)."""
    from matching import orders as mo

    case = mo.get(ledger, order_id)
    if case is not None:
        ledger.log_event("case.viewed", order_id, {"stage": case.stage}, actor=actor.name)
    return case


def overdue(order: Any, today: date) -> bool:
    """An open case past its due date."""
    return order.status == "open" and order.due_on < today


def escalation_due(order: Any, today: date, after_days: int = ESCALATE_AFTER_DAYS) -> bool:
    """A case to put under listed supervision on ``today`` (module docstring): found ``after_days`` (90) ago or more
    and not closed, or confirmed and not recovered in full."""
    if today < order.night + timedelta(days=after_days):
        return False
    if order.status == "open":
        return True
    return order.outcome == "confirmed" and order.amount_at_risk > 0 and \
        recovery(order.amount_at_risk, order.amount_recovered) != "full"


@dataclass(frozen=True)
class Escalated:
    """What :func:`escalate` did: the cases newly under listed supervision, per district, and the notices sent."""

    order_ids: tuple[str, ...]
    per_district: dict[str, int]
    deliveries: int = 0


def escalate(ledger: Ledger, today: date, *, notifier: Any = None, actor: str = "matching") -> Escalated:
    """Put every case due for it under listed supervision (挂牌督办), once each (``escalated_at``, audited
    ``case.escalated``), and tell the notifier's channels per district: counts and order ids, never a subject."""
    from fundx.notify.notice import Notice
    from matching import orders as mo

    now = datetime.now(UTC)
    after_days = case_settings().escalate_after_days
    chosen = [o for o in mo.orders(ledger) if o.escalated_at is None and escalation_due(o, today, after_days)]
    if not chosen:
        return Escalated((), {})
    with ledger.audited() as conn:
        for o in chosen:
            conn.execute(orders_table.update().where(orders_table.c.order_id == o.order_id)
                         .values(escalated_at=now))
            ledger.audit(conn, "case.escalated", o.order_id, {
                "rule": o.rule, "night": o.night.isoformat(), "stage": o.stage,
                "days": (today - o.night).days}, actor=actor)
    per: dict[str, list[str]] = {}
    for o in chosen:
        per.setdefault(o.district, []).append(o.order_id)
    sent = 0
    if notifier:
        for district, ids in sorted(per.items()):
            notice = Notice(kind="breach", feed=f"cases {district}", rule="listed_supervision", severity="critical",
                            night=today.isoformat(), expected=f"closed and recovered within {after_days} days",
                            observed=f"{len(ids)} cases", detail="挂牌督办: " + ", ".join(sorted(ids)[:20])
                            + (" ..." if len(ids) > 20 else ""),
                            breach_id=f"{today.isoformat()}:cases:{district}:listed_supervision")
            sent += sum(1 for d in notifier.send(notice) if d.ok)
    return Escalated(tuple(sorted(o.order_id for o in chosen)), {k: len(v) for k, v in per.items()}, sent)
