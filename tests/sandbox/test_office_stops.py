"""The sandbox office's side of the stop loop without a whole sandbox: an instruction naming an entry the roll does
not have is refused and changes nothing; one it applies is applied once, its answer written again if lost; the
payment run pays active entries only."""

from __future__ import annotations

import json
import sqlite3
from datetime import date, datetime

import pandas as pd
import pytest

from fundx.core.timeutil import SHANGHAI
from fundx.crypto.keys import KeyStore
from matching import orders as mo
from matching import stops
from sandbox.office_stops import pay_month, take_instructions

AT = datetime(2026, 11, 24, 10, 0, tzinfo=SHANGHAI)
ROLL = ("entry_id", "id_number", "scheme", "status", "monthly_amount", "bank_account", "start_month", "stop_month",
        "paid_through", "updated_at")


@pytest.fixture
def office(tmp_path):
    db = tmp_path / "office.db"
    with sqlite3.connect(db) as con:
        con.execute(f"CREATE TABLE v_benefit_roll_rows ({', '.join(ROLL)})")
        con.execute("CREATE TABLE v_benefit_payments_rows (payment_id PRIMARY KEY, entry_id, id_number, scheme, month, "
                    "amount, bank_account, paid_at)")
        con.executemany(f"INSERT INTO v_benefit_roll_rows VALUES ({', '.join('?' * len(ROLL))})", [
            ("RE0000000001", "x1", "basic_pension", "active", 3000.0, "6222", "2020-01", None, "2026-10",
             "2026-10-10 10:00:00"),
            ("RE0000000002", "x2", "basic_pension", "active", 2000.0, "6223", "2020-01", None, "2026-10",
             "2026-10-10 10:00:00")])
        con.execute("INSERT INTO v_benefit_payments_rows VALUES ('PM000000012026010', 'RE0000000001', 'x1', "
                    "'basic_pension', '2026-10', 3000.0, '6222', '2026-10-10 10:00:00')")
    return db


def _instruction(ledger, home, monkeypatch, n: int, entries: list[str]) -> str:
    monkeypatch.setattr(stops, "_entries", lambda keys, home, subjects: {
        s: [{"entry_id": e, "scheme": "basic_pension"} for e in entries] for s in subjects})
    made = mo.record(ledger, date(2026, 11, 23), pd.DataFrame([{
        "rule": "paid_after_death", "subject": f"{n:032x}", "area": "330106", "amount_at_risk": 3000.0, "months": 1,
        "id_masked": "330106********123X", "detail": json.dumps({"death_date": "2026-09-03"})}], columns=list(mo.COLUMNS)))
    mo.close(ledger, made[0].order_id, outcome="confirmed", amount=0, actor="a")
    stops.deliver(ledger, home=home)
    return stops.instructions(ledger, order_id=made[0].order_id)[0].id


@pytest.mark.parametrize("ledger", ["sqlite"], indirect=True)
def test_the_office_refuses_an_unknown_entry_and_applies_a_known_one_once(ledger, home, office, monkeypatch):
    keys = KeyStore(home=home)
    unknown = _instruction(ledger, home, monkeypatch, 1, ["RE0000000001", "RE0000009999"])
    known = _instruction(ledger, home, monkeypatch, 2, ["RE0000000001"])
    out, answers = stops.outbox_dir(home), stops.answers_dir(home)
    got = {a.instruction_id: a for a in take_instructions(office, out, answers, keys=keys, now=AT)}
    assert got[unknown].outcome == "refused" and got[unknown].reason.startswith("UnknownEntry: 1 of 2 entries")
    assert (got[known].outcome, got[known].entries, got[known].monthly_amount) == ("acknowledged", 1, 3000.0)
    with sqlite3.connect(office) as con:
        rows = {r[0]: r[1:] for r in con.execute("SELECT entry_id, status, stop_month, updated_at "
                                                  "FROM v_benefit_roll_rows")}
    assert rows == {"RE0000000001": ("stopped", "2026-10", "2026-11-24 10:00:00"),
                    "RE0000000002": ("active", None, "2026-10-10 10:00:00")}
    # the acknowledgement lost: written again, nothing applied again
    (answers / got[known].file).unlink()
    assert take_instructions(office, out, answers, keys=keys, now=AT) == []
    assert (answers / got[known].file).is_file()
    assert stops.record_answers(ledger, home=home).settled == 2
    assert {i.id: i.status for i in stops.instructions(ledger)} == {unknown: "refused", known: "acknowledged"}
    # November is paid to the entry still active only
    paid = pay_month(office, now=AT)
    assert (paid.month, paid.payments, paid.amount) == ("2026-11", 1, 2000.0)
    with sqlite3.connect(office) as con:
        assert con.execute("SELECT entry_id, paid_at FROM v_benefit_payments_rows WHERE month = '2026-11'").fetchall() \
            == [("RE0000000002", "2026-11-24 10:00:00")]
    assert pay_month(office, now=AT, month="2026-11").payments == 0  # paid already
