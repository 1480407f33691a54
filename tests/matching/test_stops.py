"""The stop-payment loop's ledger side: a confirmed death or custody case issues one instruction (and only such a
case), delivered once whatever crashes between the file and the ledger; the office's answers count only when
the office signed them."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from fundx.crypto.keys import KeyStore
from fundx.crypto.seal import sign
from fundx.ledger.schema import audit, stop_instructions
from matching import orders as mo
from matching import stops

NIGHT = date(2026, 3, 1)
IN_CUSTODY, RELEASED = "在押", "刑满释放"


def token(n: int) -> str:
    return f"{n:032x}"


def suspect(rule: str, subject: str, detail: dict, *, months: int = 2, amount: float = 3000.0) -> dict:
    return {"rule": rule, "subject": subject, "area": "330106", "amount_at_risk": amount, "months": months,
            "id_masked": "330106********123X", "detail": json.dumps(detail)}


def record(ledger, night: date, *rows: dict) -> dict[tuple[str, str], mo.Order]:
    got = mo.record(ledger, night, pd.DataFrame(list(rows), columns=list(mo.COLUMNS)))
    return {(o.rule, o.subject): o for o in got}


DEATH = {"death_date": "2026-01-15", "confidence": "high", "sources": {"civil_affairs.deaths": {"key": "MZ1"}},
         "paid_through": "2026-02"}


def custody(*periods: tuple[str, str, str | None]) -> dict:
    return {"custody": [{"prisoner_id": f"P{i}", "status": s, "admitted_on": a, "until": u}
                        for i, (s, a, u) in enumerate(periods)]}


def audit_of(ledger, action: str) -> list[dict]:
    with ledger.engine.connect() as conn:
        return [dict(r) for r in conn.execute(audit.select().where(audit.c.action == action)).mappings()]


# --- issuing ------------------------------------------------------------------------------------------


def test_a_confirmed_death_issues_one_termination_from_the_month_after_the_death(ledger):
    made = record(ledger, NIGHT, suspect("paid_after_death", token(1), DEATH),
                  suspect("paid_after_death", token(2), DEATH), suspect("shared_account", token(3), {"people": 3}))
    dead, lookalike, shared = made[("paid_after_death", token(1))], made[("paid_after_death", token(2))], \
        made[("shared_account", token(3))]
    mo.close(ledger, dead.order_id, outcome="confirmed", amount=0, actor="inspector.li")
    mo.close(ledger, lookalike.order_id, outcome="false-positive", amount=0, actor="inspector.li")
    mo.close(ledger, shared.order_id, outcome="confirmed", amount=0, actor="inspector.li")  # stops nothing
    (one,) = stops.instructions(ledger)
    assert (one.id, one.order_id, one.rule, one.action, one.from_month, one.status, one.issued_by) == (
        f"STOP-{dead.order_id}-202602", dead.order_id, "paid_after_death", "terminate", "2026-02", "issued",
        "inspector.li")
    (entry,) = audit_of(ledger, "stop.issued")
    assert entry["subject"] == one.id and entry["actor"] == "inspector.li"
    assert token(1) not in entry["details"] and "330106" not in entry["details"]  # no subject, no identity
    assert json.loads(entry["details"]) == {"order_id": dead.order_id, "rule": "paid_after_death",
                                            "action": "terminate", "from_month": "2026-02"}
    assert ledger.verify_audit().ok


def test_reopening_and_confirming_again_issues_nothing_new(ledger):
    made = record(ledger, NIGHT, suspect("paid_after_death", token(1), DEATH, months=2))
    order = made[("paid_after_death", token(1))]
    mo.close(ledger, order.order_id, outcome="confirmed", amount=0, actor="a")
    with pytest.raises(Exception, match="closed already"):
        mo.close(ledger, order.order_id, outcome="confirmed", amount=0, actor="b")
    # paid again the next month: the case reopens (material change) and is confirmed again
    again = mo.record(ledger, NIGHT + timedelta(days=30), pd.DataFrame(
        [suspect("paid_after_death", token(1), DEATH, months=3, amount=4500.0)], columns=list(mo.COLUMNS)))
    assert again.reopened == 1
    mo.close(ledger, order.order_id, outcome="confirmed", amount=0, actor="b")
    assert [i.id for i in stops.instructions(ledger)] == [f"STOP-{order.order_id}-202602"]
    assert len(audit_of(ledger, "stop.issued")) == 1


def test_custody_suspends_from_the_month_after_the_running_periods_admission(ledger):
    running = custody((RELEASED, "2020-03-01", "2021-05"), (IN_CUSTODY, "2025-06-10", None))
    made = record(ledger, NIGHT, suspect("paid_in_custody", token(1), running),
                  suspect("retired_in_custody", token(1), running),
                  suspect("paid_in_custody", token(2), custody((RELEASED, "2024-01-05", "2025-01"))),
                  suspect("contributions_in_custody", token(4), running))
    for key in (("paid_in_custody", token(1)), ("retired_in_custody", token(1)), ("paid_in_custody", token(2)),
                ("contributions_in_custody", token(4))):
        mo.close(ledger, made[key].order_id, outcome="confirmed", amount=0, actor="a")
    # one suspension for the person, however many custody rules confirmed it; none for the released, none for
    # contributions (the person is not paid by them)
    (one,) = stops.instructions(ledger)
    assert (one.order_id, one.rule, one.action, one.from_month) == (
        made[("paid_in_custody", token(1))].order_id, "paid_in_custody", "suspend", "2025-07")


@pytest.mark.parametrize("rule,detail,expected", [
    ("paid_after_death", {"death_date": "2025-12-31"}, ("terminate", "2026-01")),
    ("paid_after_death", {"death_date": None}, None),
    ("paid_after_death", "not json", None),
    ("retired_in_custody", custody((IN_CUSTODY, "2025-11-30", None)), ("suspend", "2025-12")),
    ("shared_account", {"people": 2}, None),
])
def test_decide(rule, detail, expected):
    assert stops.decide(rule, detail if isinstance(detail, str) else json.dumps(detail)) == expected


# --- delivering once ------------------------------------------------------------------------------------

ENTRIES = [{"entry_id": "RE0000000042", "scheme": "basic_pension"}]


@pytest.fixture
def issued(ledger, home, monkeypatch):
    """One issued instruction; the matching store's roll stands in by the person's one entry."""
    monkeypatch.setattr(stops, "_entries", lambda keys, home, subjects: {s: list(ENTRIES) for s in subjects})
    made = record(ledger, NIGHT, suspect("paid_after_death", token(1), DEATH))
    mo.close(ledger, made[("paid_after_death", token(1))].order_id, outcome="confirmed", amount=0, actor="a")
    (one,) = stops.instructions(ledger)
    return one


def _status(ledger, sid: str, **values) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(stop_instructions.update().where(stop_instructions.c.id == sid).values(**values))


def test_delivery_is_sealed_for_the_office_and_happens_once(ledger, home, issued, keys_dir, tmp_path):
    sent = stops.deliver(ledger, home=home)
    assert sent.written == [issued.id]
    path = stops.outbox_dir(home) / f"{issued.id}.p7m"
    (after,) = stops.instructions(ledger)
    assert after.status == "delivered" and after.file == path.name
    ready = json.loads((stops.outbox_dir(home) / f"{issued.id}.READY").read_text())
    import hashlib

    assert ready["sha256"] == after.file_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert b"RE0000000042" not in path.read_bytes()  # sealed: nothing readable at rest
    # openssl opens it with the office's key and verifies the exchange's signature against the CA
    decrypted = subprocess.run(["openssl", "cms", "-decrypt", "-inform", "DER", "-in", str(path), "-binary",
                                "-inkey", str(keys_dir / "stages" / "social_insurance.key"),
                                "-recip", str(keys_dir / "stages" / "social_insurance.pem"),
                                "-out", str(tmp_path / "signed.der")], check=False, capture_output=True, timeout=60)
    assert decrypted.returncode == 0, decrypted.stderr
    verified = subprocess.run(["openssl", "cms", "-verify", "-inform", "DER", "-in", str(tmp_path / "signed.der"),
                               "-binary", "-CAfile", str(keys_dir / "ca.pem"), "-purpose", "any"],
                              check=False, capture_output=True, timeout=60)
    assert verified.returncode == 0, verified.stderr
    doc = json.loads(verified.stdout)
    assert (doc["format"], doc["instruction_id"], doc["action"], doc["from_month"], doc["entries"]) == (
        stops.FORMAT, issued.id, "terminate", "2026-02", ENTRIES)
    assert doc["id_masked"] == "330106********123X" and doc["evidence"]["detail"]["death_date"] == "2026-01-15"

    # again: nothing is written a second time
    before = path.read_bytes()
    assert stops.deliver(ledger, home=home).written == [] and path.read_bytes() == before
    assert len(audit_of(ledger, "stop.delivered")) == 1


def test_a_crash_after_ready_adopts_the_file_and_one_before_seals_again(ledger, home, issued):
    stops.deliver(ledger, home=home)
    path = stops.outbox_dir(home) / f"{issued.id}.p7m"
    first = path.read_bytes()
    # the ledger never heard of the delivery (a crash between READY and the ledger): the file READY names is kept
    _status(ledger, issued.id, status="issued", file=None, file_sha256=None)
    assert stops.deliver(ledger, home=home).adopted == [issued.id]
    assert path.read_bytes() == first and stops.instructions(ledger)[0].status == "delivered"
    # a crash before READY: the office never read the file; it is sealed again, and READY names the new one
    (stops.outbox_dir(home) / f"{issued.id}.READY").unlink()
    _status(ledger, issued.id, status="issued", file=None, file_sha256=None)
    assert stops.deliver(ledger, home=home).written == [issued.id]
    (after,) = stops.instructions(ledger)
    ready = json.loads((stops.outbox_dir(home) / f"{issued.id}.READY").read_text())
    assert path.read_bytes() != first and ready["sha256"] == after.file_sha256
    assert sorted(p.name for p in stops.outbox_dir(home).iterdir()) == [f"{issued.id}.READY", f"{issued.id}.p7m"]


def test_an_instruction_waits_while_the_roll_does_not_know_the_person(ledger, home, monkeypatch):
    monkeypatch.setattr(stops, "_entries", lambda keys, home, subjects: {})
    made = record(ledger, NIGHT, suspect("paid_after_death", token(1), DEATH))
    mo.close(ledger, made[("paid_after_death", token(1))].order_id, outcome="confirmed", amount=0, actor="a")
    sent = stops.deliver(ledger, home=home)
    assert sent.written == [] and len(sent.waiting) == 1 and stops.instructions(ledger)[0].status == "issued"


# --- the office's answers ----------------------------------------------------------------------------


def _answer(keys: KeyStore, signer: str, **body) -> bytes:
    key, cert = keys.stage_signer(signer)
    doc = {"format": stops.ANSWER_FORMAT, "office": stops.OFFICE, "outcome": "acknowledged", "reason": None,
           "entries": 1, "monthly_amount": 3850.5, "at": datetime.now(UTC).isoformat(), **body}
    return sign(json.dumps(doc).encode(), signer_key=key, signer_cert=cert)


def test_only_the_offices_own_signed_answer_settles_an_instruction(ledger, home, issued):
    stops.deliver(ledger, home=home)
    (sent,) = stops.instructions(ledger)
    keys = KeyStore(home=home)
    folder = stops.answers_dir(home)
    folder.mkdir(parents=True)
    # forged: a matching stage's signing key, claiming the office's answer
    (folder / "a-forged.p7s").write_bytes(_answer(keys, "death_matching", instruction_id=sent.id,
                                                  file_sha256=sent.file_sha256))
    # the office's, about a file it was not sent
    (folder / "b-other-file.p7s").write_bytes(_answer(keys, stops.OFFICE, instruction_id=sent.id,
                                                      file_sha256="0" * 64))
    got = stops.record_answers(ledger, home=home)
    assert (got.acknowledged, got.invalid, got.settled) == (1, 1, 0)
    assert stops.instructions(ledger)[0].status == "delivered"
    recorded = {a["file"]: a for a in stops.answers(ledger)}
    assert recorded["a-forged.p7s"]["outcome"] == "invalid" and "not by the office" in recorded["a-forged.p7s"]["reason"]
    assert recorded["b-other-file.p7s"]["applied"] is False
    # the office's answer about the very file
    (folder / "c-office.p7s").write_bytes(_answer(keys, stops.OFFICE, instruction_id=sent.id,
                                                  file_sha256=sent.file_sha256))
    assert stops.record_answers(ledger, home=home).settled == 1
    (done,) = stops.instructions(ledger)
    assert (done.status, done.entries, done.monthly_amount_stopped) == ("acknowledged", 1, 3850.5)
    assert stops.record_answers(ledger, home=home) == stops.Answered()  # each file is read once
    (figures,) = [s for s in stops.summary(ledger) if s["rule"] == "paid_after_death"]
    assert (figures["instructions"], figures["acknowledged"], figures["monthly_amount_stopped"]) == (1, 1, 3850.5)
    assert [e["subject"] for e in audit_of(ledger, "stop.acknowledged")] == [sent.id, sent.id]
    assert ledger.verify_audit().ok


def test_a_refused_instruction_is_sent_again_as_a_new_file_and_only_a_refused_one(ledger, home, issued):
    from fundx.core.errors import DecisionError

    stops.deliver(ledger, home=home)
    with pytest.raises(DecisionError, match="is delivered, not refused"):
        stops.resend(ledger, issued.id, actor="b")
    (sent,) = stops.instructions(ledger)
    keys = KeyStore(home=home)
    stops.answers_dir(home).mkdir(parents=True)
    (stops.answers_dir(home) / "refused.p7s").write_bytes(_answer(
        keys, stops.OFFICE, instruction_id=sent.id, file_sha256=sent.file_sha256, outcome="refused",
        reason="UnknownEntry: 1 of 1 entries the instruction names are not on the office's roll", entries=0))
    assert stops.record_answers(ledger, home=home).settled == 1
    again = stops.resend(ledger, issued.id, actor="b")
    assert again.status == "issued" and not (stops.outbox_dir(home) / f"{issued.id}.READY").exists()
    assert stops.deliver(ledger, home=home).written == [issued.id]  # sealed anew, never adopted
    (now,) = stops.instructions(ledger)
    assert now.status == "delivered" and now.file_sha256 != sent.file_sha256
    (entry,) = audit_of(ledger, "stop.resent")
    assert entry["actor"] == "b" and "UnknownEntry" in entry["details"]


def test_the_lifecycle_issues_the_instruction_when_the_second_review_closes_a_confirmed_case(ledger):
    """matching.lifecycle's closing (the second review's approval) issues the instruction once; a supervisor sending
    the case back and its closing again issue nothing new."""
    from matching import lifecycle as lc

    li, wang, chen = lc.Actor("inspector.li", "inspector"), lc.Actor("inspector.wang", "inspector"), \
        lc.Actor("supervisor.chen", "supervisor")
    oid = record(ledger, NIGHT, suspect("paid_after_death", token(1), DEATH))[("paid_after_death", token(1))].order_id
    lc.take(ledger, oid, actor=li)
    lc.submit(ledger, oid, actor=li, outcome="confirmed")
    lc.review(ledger, oid, actor=li, approve=True)
    assert stops.instructions(ledger) == []  # not closed yet
    lc.review(ledger, oid, actor=wang, approve=True)
    (one,) = stops.instructions(ledger)
    assert (one.order_id, one.action, one.from_month, one.issued_by) == (oid, "terminate", "2026-02", wang.name)
    lc.send_back(ledger, oid, actor=chen, reason="the death certificate's copy is missing")
    lc.submit(ledger, oid, actor=li, outcome="confirmed")
    lc.review(ledger, oid, actor=li, approve=True)
    lc.review(ledger, oid, actor=wang, approve=True)
    assert [i.id for i in stops.instructions(ledger)] == [one.id]
