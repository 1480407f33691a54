"""The inspection lifecycle (matching.lifecycle): a case is taken, given a finding, reviewed by two different
accounts, closed and accepted by a supervisor or sent back; every step audited and kept; steps out of order, by
the wrong role, or a second review by the first reviewer or the submitter, are refused and change nothing.
Escalation at 90 days (挂牌督办) and referral flags at 5,000 / 10,000 yuan. SQLite and PostgreSQL (``ledger``)."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pandas as pd
import pytest

from fundx.core.errors import DecisionError
from fundx.ledger.schema import audit
from matching import lifecycle as lc
from matching import orders as mo

NIGHT = date(2026, 3, 1)
LI, WANG, ZHAO = lc.Actor("inspector.li", "inspector"), lc.Actor("inspector.wang", "inspector"), \
    lc.Actor("inspector.zhao", "inspector")
CHEN = lc.Actor("supervisor.chen", "supervisor")


def finding(n: int, amount: float, rule: str = "paid_after_death", months: int | None = 2) -> dict:
    return {"rule": rule, "subject": f"{n:032x}", "id_masked": "330106********123X", "area": "330106",
            "amount_at_risk": amount, "months": months, "detail": json.dumps({"sources": {"police.deaths": {}}})}


def record(ledger, *rows: dict, day: date = NIGHT):
    return mo.record(ledger, day, pd.DataFrame(list(rows), columns=list(mo.COLUMNS)), due_days=lc.DUE_DAYS)


def audited(ledger, prefix: str = "case.") -> list[tuple[str, str, str]]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(audit.select().where(audit.c.action.like(prefix + "%")).order_by(audit.c.seq)).mappings()
        return [(r["action"], r["subject"], r["actor"]) for r in rows]


def test_a_case_walks_from_issue_to_acceptance_with_two_reviewers_and_a_supervisor(ledger):
    oid = record(ledger, finding(1, 6000.0))[0].order_id
    case = mo.get(ledger, oid)
    assert (case.stage, case.status, case.due_on) == ("issued", "open", NIGHT + timedelta(days=15))
    assert lc.take(ledger, oid, actor=LI).stage == "in_progress"
    assert lc.submit(ledger, oid, actor=LI, outcome="recovered", amount=2500, note="family repaid part").stage \
        == "first_review"
    assert lc.review(ledger, oid, actor=LI, approve=True).stage == "second_review"  # 初审 by the inspector
    with pytest.raises(DecisionError, match="two-person review"):
        lc.review(ledger, oid, actor=LI, approve=True)  # the first reviewer cannot re-check
    closed = lc.review(ledger, oid, actor=WANG, approve=True, reason="bank statement checked")
    assert (closed.stage, closed.status, closed.outcome, closed.amount_recovered) == ("closed", "closed", "recovered",
                                                                                     2500.0)
    assert (closed.first_reviewer, closed.second_reviewer, closed.closed_by) == (LI.name, WANG.name, WANG.name)
    assert closed.recovery == "partial"
    with pytest.raises(DecisionError, match="only supervisors"):
        lc.accept(ledger, oid, actor=WANG)
    accepted = lc.accept(ledger, oid, actor=CHEN)
    assert (accepted.stage, accepted.status, accepted.accepted_by) == ("accepted", "closed", CHEN.name)
    steps = [(e["action"], e["from_stage"], e["to_stage"], e["actor"]) for e in lc.events(ledger, oid)]
    assert steps == [("take", "issued", "in_progress", LI.name), ("submit", "in_progress", "first_review", LI.name),
                     ("first_review", "first_review", "second_review", LI.name),
                     ("second_review", "second_review", "closed", WANG.name), ("accept", "closed", "accepted", CHEN.name)]
    assert [a for a, _, _ in audited(ledger)] == ["case.take", "case.submit", "case.first_review", "case.second_review",
                                                  "case.accept"]
    assert ledger.verify_audit().ok
    report = {r.rule: r for r in mo.report(ledger)}["paid_after_death"]
    assert (report.closed, report.recovered, report.amount_recovered) == (1, 1, 2500.0)


def test_the_submitter_cannot_second_review_and_returns_send_the_case_back(ledger):
    oid = record(ledger, finding(1, 3000.0))[0].order_id
    lc.take(ledger, oid, actor=LI)
    lc.submit(ledger, oid, actor=LI, outcome="confirmed")
    lc.review(ledger, oid, actor=WANG, approve=True)  # another inspector's first review
    with pytest.raises(DecisionError, match="inspector.li submitted"):
        lc.review(ledger, oid, actor=LI, approve=True)
    with pytest.raises(ValueError, match="reason"):
        lc.review(ledger, oid, actor=ZHAO, approve=False)
    back = lc.review(ledger, oid, actor=ZHAO, approve=False, reason="no death certificate in the file")
    assert (back.stage, back.status, back.first_reviewer) == ("in_progress", "open", None)
    lc.submit(ledger, oid, actor=LI, outcome="confirmed", note="certificate added")
    lc.review(ledger, oid, actor=WANG, approve=True)
    closed = lc.review(ledger, oid, actor=ZHAO, approve=True)
    assert closed.stage == "closed" and closed.outcome == "confirmed"
    sent = lc.send_back(ledger, oid, actor=CHEN, reason="the stop month is wrong")
    assert (sent.stage, sent.status, sent.closed_by, sent.outcome) == ("in_progress", "open", None, "confirmed")
    assert [e["action"] for e in lc.events(ledger, oid)][-1] == "send_back"


@pytest.mark.parametrize(("step", "match"), [
    (lambda ledger, oid: lc.submit(ledger, oid, actor=LI, outcome="confirmed"), "issued, waiting for an inspector"),
    (lambda ledger, oid: lc.review(ledger, oid, actor=LI, approve=True), "issued"),
    (lambda ledger, oid: lc.accept(ledger, oid, actor=CHEN), "issued"),
    (lambda ledger, oid: lc.take(ledger, oid, actor=CHEN), "only inspectors"),
    (lambda ledger, oid: lc.take(ledger, oid, actor=lc.Actor("auditor.sun", "auditor")), "only inspectors"),
    (lambda ledger, oid: lc.take(ledger, oid, actor=lc.Actor(" ", "inspector")), "needs the account"),
    (lambda ledger, oid: lc.take(ledger, "O20260301-1-0999", actor=LI), "no case O20260301-1-0999"),
])
def test_steps_out_of_order_or_by_the_wrong_role_are_refused_and_change_nothing(ledger, step, match):
    oid = record(ledger, finding(1, 3000.0))[0].order_id
    with pytest.raises(DecisionError, match=match):
        step(ledger, oid)
    assert mo.get(ledger, oid).stage == "issued" and lc.events(ledger, oid) == [] and audited(ledger) == []


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"outcome": "fraud"}, "unknown outcome"),
    ({"outcome": "false-positive", "amount": 5}, "amount must be 0"),
    ({"outcome": "recovered", "amount": 0}, "more than 0"),
    ({"outcome": "confirmed", "amount": float("nan")}, "0 or more"),
    ({"outcome": "referred"}, "police or discipline"),
    ({"outcome": "referred", "referral_to": "police"}, "referral number"),
    ({"outcome": "referred", "referral_to": "police", "referral_no": "a b"}, "one word"),
    ({"outcome": "confirmed", "referral_to": "police", "referral_no": "X1"}, "only with the outcome referred"),
    ({"outcome": "confirmed", "note": "it is 110105194912310021"}, "identity number"),
])
def test_bad_findings_are_refused_naming_what_is_wrong(ledger, kwargs, match):
    oid = record(ledger, finding(1, 3000.0))[0].order_id
    lc.take(ledger, oid, actor=LI)
    with pytest.raises(ValueError, match=match):
        lc.submit(ledger, oid, actor=LI, **kwargs)
    assert mo.get(ledger, oid).stage == "in_progress"


def test_a_referral_keeps_its_number_and_flags_follow_the_thresholds(ledger):
    made = record(ledger, finding(1, 10000.0), finding(2, 9999.99), finding(3, 5000.0, rule="bill_over_mean"),
                  finding(4, 4999.0, rule="bill_over_mean"))
    flags = {o.subject[-1]: o.referral_due for o in made}
    assert flags == {"1": True, "2": False, "3": True, "4": False}
    oid = made[0].order_id
    lc.take(ledger, oid, actor=LI)
    lc.submit(ledger, oid, actor=LI, outcome="referred", referral_to="police", referral_no="GA-2026-0117")
    lc.review(ledger, oid, actor=LI, approve=True)
    done = lc.review(ledger, oid, actor=WANG, approve=True)
    assert (done.outcome, done.referral_to, done.referral_no) == ("referred", "police", "GA-2026-0117")
    # the amount found later crosses the threshold: the case is flagged then, and stays flagged
    later = record(ledger, finding(2, 12000.0, months=3), day=NIGHT + timedelta(days=1))
    assert later[0].referral_due


def test_cases_open_90_days_or_confirmed_and_not_recovered_escalate_once_with_a_notice(ledger):
    made = record(ledger, finding(1, 3000.0), finding(2, 3000.0), finding(3, 3000.0), finding(4, 3000.0))
    open_one, confirmed, recovered, false_positive = (o.order_id for o in made)
    for oid, outcome, amount in ((confirmed, "confirmed", 0), (recovered, "recovered", 3000), (false_positive,
                                                                                                "false-positive", 0)):
        lc.take(ledger, oid, actor=LI)
        lc.submit(ledger, oid, actor=LI, outcome=outcome, amount=amount)
        lc.review(ledger, oid, actor=LI, approve=True)
        lc.review(ledger, oid, actor=WANG, approve=True)
    sent = []

    class Notifier:
        def __bool__(self):
            return True

        def send(self, notice):
            sent.append(notice)
            return [type("D", (), {"ok": True})()]

    assert lc.escalate(ledger, NIGHT + timedelta(days=89), notifier=Notifier()).order_ids == ()
    done = lc.escalate(ledger, NIGHT + timedelta(days=90), notifier=Notifier())
    assert done.order_ids == tuple(sorted((open_one, confirmed))) and done.deliveries == 1
    assert [n.rule for n in sent] == ["listed_supervision"] and open_one in sent[0].detail
    assert sent[0].observed == "2 cases" and "0000" not in sent[0].feed
    assert lc.escalate(ledger, NIGHT + timedelta(days=120), notifier=Notifier()).order_ids == ()  # once
    assert mo.get(ledger, open_one).escalated_at is not None and mo.get(ledger, recovered).escalated_at is None
    assert [a for a, _, _ in audited(ledger, "case.escalated")] == ["case.escalated"] * 2


def test_a_reopened_case_starts_again_at_issued_with_its_history(ledger):
    oid = record(ledger, finding(1, 3000.0))[0].order_id
    lc.take(ledger, oid, actor=LI)
    lc.submit(ledger, oid, actor=LI, outcome="false-positive")
    lc.review(ledger, oid, actor=LI, approve=True)
    lc.review(ledger, oid, actor=WANG, approve=True)
    record(ledger, finding(1, 4500.0, months=3), day=NIGHT + timedelta(days=1))  # one more month paid
    again = mo.get(ledger, oid)
    assert (again.stage, again.status, again.outcome, again.first_reviewer) == ("issued", "open", None, None)
    assert [e["action"] for e in lc.events(ledger, oid)][-1] == "reopen"
    assert "months 2 -> 3" in lc.events(ledger, oid)[-1]["reason"]


def test_thresholds_limits_and_due_days_are_settings(ledger, monkeypatch):
    monkeypatch.setenv("FUNDX_CASES_REFERRAL_PENSION", "2000")
    monkeypatch.setenv("FUNDX_CASES_DUE_DAYS", "paid_after_death=7, bill_over_mean=45")
    monkeypatch.setenv("FUNDX_CASES_ESCALATE_AFTER_DAYS", "30")
    settings = lc.case_settings()
    assert settings.due()["paid_after_death"] == 7 and settings.due()["paid_in_custody"] == 15
    made = mo.record(ledger, NIGHT, pd.DataFrame([finding(1, 2500.0)], columns=list(mo.COLUMNS)),
                     due_days=settings.due())
    assert made[0].referral_due and made[0].due_on == NIGHT + timedelta(days=7)
    assert lc.escalate(ledger, NIGHT + timedelta(days=30)).order_ids == (made[0].order_id,)
    monkeypatch.setenv("FUNDX_CASES_DUE_DAYS", "paid_twice=3")
    with pytest.raises(ValueError, match="FUNDX_CASES_DUE_DAYS: 'paid_twice=3' is not rule=days"):
        lc.case_settings().due()


def test_only_the_inspector_who_took_a_case_gives_its_finding(ledger):
    oid = record(ledger, finding(1, 3000.0))[0].order_id
    lc.take(ledger, oid, actor=LI)
    with pytest.raises(DecisionError, match="is with inspector.li"):
        lc.submit(ledger, oid, actor=WANG, outcome="false-positive")
    assert mo.get(ledger, oid).stage == "in_progress"
    assert lc.Actor("  inspector.li ", "inspector").name == LI.name
