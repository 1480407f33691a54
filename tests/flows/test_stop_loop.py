"""The stop-payment loop on the sandbox: a night, matching, one death case confirmed; its instruction opens with
openssl, the office applies and acknowledges it, pays the next month to everybody else, and the next nights
show the confirmed person unpaid while a look-alike suspect nobody confirmed is paid on."""

from __future__ import annotations

import json
import subprocess
from datetime import date, datetime, timedelta

import pytest

from fundx.core.timeutil import SHANGHAI
from fundx.crypto.keys import KeyStore
from fundx.ledger import Ledger

pytestmark = pytest.mark.prefect

END = "2026-11-23T00:00:00+08:00"
NIGHT = date(2026, 11, 23)
APPLIED = datetime(2026, 11, 24, 10, 0, tzinfo=SHANGHAI)  # the office takes the instructions
PAID = datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI)  # and pays November
NEXT_END = "2026-11-26T00:00:00+08:00"
NEXT_NIGHT = date(2026, 11, 26)


@pytest.fixture(scope="module")
def sandbox(sandbox_factory):
    with sandbox_factory("stops", people=3000) as sb:
        yield sb


def _paid(home, keys, subject: str, month: str) -> int:
    """Payments of ``month`` the matching stage received for the person behind ``subject``."""
    from matching.run import sources
    from matching.sql import one_per_key
    from matching.store import Store

    rows = one_per_key("payments", Store(sources()["payments"], home=home, keys=keys).read("payments"))
    number = int(month[:4]) * 12 + int(month[5:7]) - 1
    person = bytes.fromhex(subject)
    return sum(1 for p, m in zip(rows.column("person").to_pylist(), rows.column("month").to_pylist())
               if p == person and m == number)


def test_a_confirmed_death_stops_the_payments_and_nothing_else(sandbox, home, tmp_path, keys_dir, monkeypatch):
    import sqlite3

    from flows.exchange import nightly_exchange
    from flows.matching import matching_night
    from matching import cases, stops
    from matching import orders as mo
    from sandbox.office_db import office_path
    from sandbox.office_stops import take_instructions

    nightly_exchange(end=END)
    matching_night(night=NIGHT)
    ledger = Ledger.from_settings()
    keys = KeyStore(home=home)
    # the deaths still paid: the office paid them through October, the last month it paid
    paid_on = [o for o in mo.orders(ledger, rule="paid_after_death")
               if json.loads(o.detail).get("paid_through") == "2026-10"]
    assert len(paid_on) >= 4, len(paid_on)
    dead, tampered, lookalike, wrong = paid_on[:4]
    # the death is confirmed through its review by two people (the lifecycle's closing issues the instruction);
    # another is closed as a false positive the same way; the third in one step
    from matching import lifecycle as lc

    li, wang = lc.Actor("inspector.li", "inspector"), lc.Actor("inspector.wang", "inspector")
    for order, outcome, issued in ((dead, "confirmed", 1), (wrong, "false-positive", 0)):
        before = len(stops.instructions(ledger))
        lc.take(ledger, order.order_id, actor=li)
        lc.submit(ledger, order.order_id, actor=li, outcome=outcome)
        lc.review(ledger, order.order_id, actor=li, approve=True)
        assert len(stops.instructions(ledger)) == before  # nothing before the second review closes it
        lc.review(ledger, order.order_id, actor=wang, approve=True)
        assert len(stops.instructions(ledger)) == before + issued
    mo.close(ledger, tampered.order_id, outcome="confirmed", amount=0, actor="inspector.li")
    sent = stops.deliver(ledger, home=home)
    assert len(sent.written) == 2 and stops.deliver(ledger, home=home).written == []
    by_order = {i.order_id: i for i in stops.instructions(ledger)}
    instruction = by_order[dead.order_id]
    path = stops.outbox_dir(home) / instruction.file

    # openssl: the office's key decrypts it, the CA verifies the exchange's signature
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
    assert (doc["order_id"], doc["action"], doc["rule"]) == (dead.order_id, "terminate", "paid_after_death")
    assert doc["entries"] and all(e["entry_id"].startswith("RE") for e in doc["entries"])
    assert doc["id_masked"] == dead.id_masked and "*" in doc["id_masked"]

    # one byte of the other instruction flipped on its way: the office refuses it, saying why
    spoiled = stops.outbox_dir(home) / by_order[tampered.order_id].file
    data = bytearray(spoiled.read_bytes())
    data[len(data) // 2] ^= 1
    spoiled.write_bytes(bytes(data))
    db = office_path(sandbox.home)
    answered = {a.instruction_id: a for a in take_instructions(db, stops.outbox_dir(home), stops.answers_dir(home),
                                                                keys=keys, now=APPLIED)}
    assert answered[instruction.id].outcome == "acknowledged" and answered[instruction.id].entries >= 1
    refused = answered[by_order[tampered.order_id].id]
    assert refused.outcome == "refused" and "TamperedError" in (refused.reason or "")
    # read again (as `fundx sandbox office-stops` does): nothing applied or answered twice
    from typer.testing import CliRunner

    from fundx.cli import app
    from fundx.core.settings import reload_settings

    monkeypatch.setenv("FUNDX_SANDBOX_HOME", str(sandbox.home))
    reload_settings()
    again = CliRunner().invoke(app, ["sandbox", "office-stops", "--at", PAID.isoformat()])
    assert again.exit_code == 0 and "0 instructions answered" in again.output, again.output
    with sqlite3.connect(db) as con:
        entry = doc["entries"][0]["entry_id"]
        status, stop_month, updated = con.execute(
            "SELECT status, stop_month, updated_at FROM v_benefit_roll_rows WHERE entry_id = ?", (entry,)).fetchone()
    assert (status, stop_month, updated) == ("stopped", doc["from_month"], "2026-11-24 10:00:00")

    # a forged answer: a matching stage's key signs "acknowledged" for the refused instruction
    from fundx.crypto.seal import sign

    key, cert = keys.stage_signer("death_matching")
    forged = {"format": stops.ANSWER_FORMAT, "office": stops.OFFICE, "instruction_id": by_order[tampered.order_id].id,
              "file_sha256": by_order[tampered.order_id].file_sha256, "outcome": "acknowledged", "reason": None,
              "entries": 1, "monthly_amount": 1.0, "at": APPLIED.isoformat()}
    (stops.answers_dir(home) / "forged.p7s").write_bytes(sign(json.dumps(forged).encode(), signer_key=key,
                                                              signer_cert=cert))
    got = stops.record_answers(ledger, home=home)
    assert (got.acknowledged, got.refused, got.invalid, got.settled) == (1, 1, 1, 2)
    now = {i.order_id: i for i in stops.instructions(ledger)}
    assert now[dead.order_id].status == "acknowledged" and now[dead.order_id].monthly_amount_stopped > 0
    assert now[tampered.order_id].status == "refused" and "TamperedError" in now[tampered.order_id].reason
    assert [a["outcome"] for a in stops.answers(ledger) if a["file"] == "forged.p7s"] == ["invalid"]
    # the office's answer verifies with openssl against the CA too; nothing under stops/ names anyone in clear
    ack = stops.answers_dir(home) / answered[instruction.id].file
    checked = subprocess.run(["openssl", "cms", "-verify", "-inform", "DER", "-in", str(ack), "-binary",
                              "-CAfile", str(keys_dir / "ca.pem"), "-purpose", "any"],
                             check=False, capture_output=True, timeout=60)
    assert checked.returncode == 0 and json.loads(checked.stdout)["outcome"] == "acknowledged", checked.stderr
    import re

    from fundx.core.identity import is_valid_id

    for file in stops.stops_dir(home).rglob("*"):
        if file.is_file():
            assert not [m for m in re.findall(rb"\d{17}[\dX]", file.read_bytes()) if is_valid_id(m.decode())], file

    # the office pays November to every active entry; the next nights bring it to the exchange and the stage
    paid = CliRunner().invoke(app, ["sandbox", "pay-month", "--at", PAID.isoformat()])
    assert paid.exit_code == 0 and "paid 2026-11: " in paid.output, paid.output
    nightly_exchange(end=NEXT_END)
    later = matching_night(night=NEXT_NIGHT)
    assert later["orders_new"] == 0
    assert _paid(home, keys, dead.subject, "2026-11") == 0  # stopped
    assert _paid(home, keys, tampered.subject, "2026-11") == 1  # refused: still paid
    assert _paid(home, keys, lookalike.subject, "2026-11") == 1  # nobody confirmed it: paid on
    # the confirmed case does not grow; the look-alike's case gets the new month
    after = {o.order_id: o for o in mo.orders(ledger, rule="paid_after_death")}
    assert (after[dead.order_id].months, after[dead.order_id].status) == (dead.months, "closed")
    assert after[lookalike.order_id].months == lookalike.months + 1
    assert after[lookalike.order_id].amount_at_risk > lookalike.amount_at_risk
    assert [v["change"] for v in cases.versions(ledger, lookalike.order_id)][-1] == "updated"
    assert [v["night"] for v in cases.versions(ledger, dead.order_id)] == [NIGHT.isoformat()]
    # the payment the refused instruction did not stop reopens its case: paid again after it was confirmed; and
    # the false positive, paid another month, reopens saying why (material change: more months)
    assert after[tampered.order_id].status == "open"
    assert (after[wrong.order_id].status, after[wrong.order_id].stage) == ("open", "issued")
    assert "months" in cases.versions(ledger, wrong.order_id)[-1]["reason"]
    assert [e["action"] for e in lc.events(ledger, wrong.order_id)][-1] == "reopen"

    # the report: the loss stopped, figures only
    report = CliRunner().invoke(app, ["matching", "report", "--json"])
    assert report.exit_code == 0, report.output
    (deaths,) = [s for s in json.loads(report.output)["stops"] if s["rule"] == "paid_after_death"]
    assert (deaths["instructions"], deaths["acknowledged"], deaths["refused"]) == (2, 1, 1)  # not the false positive
    assert deaths["monthly_amount_stopped"] == pytest.approx(now[dead.order_id].monthly_amount_stopped)
    listed = CliRunner().invoke(app, ["stops", "list", "--json"])
    assert listed.exit_code == 0 and dead.order_id in listed.output and dead.subject not in listed.output
    assert timedelta(0) < PAID - APPLIED
