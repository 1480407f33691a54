"""Inspection orders: recorded once per night, rule and subject, numbered, closed once, reported, dispatched."""

from __future__ import annotations

import json
import stat
from datetime import date, timedelta

import pandas as pd
import pytest
from typer.testing import CliRunner

from fundx.core.errors import DecisionError
from fundx.core.identity import id_check_char
from fundx.core.settings import reload_settings
from fundx.ledger.schema import audit
from matching import orders as mo

NIGHT = date(2026, 3, 1)
runner = CliRunner()


def token(n: int) -> str:
    return f"{n:032x}"


def suspect(rule: str, subject: str, area: str, amount: float, *, months: int | None = None,
            id_masked: str | None = "MASK", detail: dict | str | None = None) -> dict:
    return {
        "rule": rule, "subject": subject, "area": area, "amount_at_risk": amount, "months": months,
        "id_masked": f"{area}********123X" if id_masked == "MASK" else id_masked,
        "detail": detail if isinstance(detail, str) else json.dumps(detail or {"paid_through": "2026-02"}),
    }


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(mo.COLUMNS))


NIGHT_SUSPECTS = frame(
    suspect("paid_after_death", token(0xB), "330110", 3000.0, months=2),
    suspect("paid_after_death", token(0xC), "330106", 1500.0, months=1),
    suspect("paid_after_death", token(0xA), "330106", 4500.5, months=3),
    suspect("shared_account", token(0xD), "330102", 6200.0, id_masked=None, detail={"people": 3}),
    suspect("deregistered_subsidised", "91330106MA2XXXXX1Y", "330106", 12000.0, id_masked=None,
            detail={"months": ["2025-11", "2025-12"]}),
    suspect("frequent_visits", token(0xE), "410102", 800.0),  # registered outside Hangzhou
)


def audit_entries(ledger, action: str) -> list[dict]:
    with ledger.engine.connect() as conn:
        return [dict(r) for r in conn.execute(audit.select().where(audit.c.action == action).order_by(audit.c.seq))
                .mappings()]


def a_real_id() -> str:
    first17 = "33010619900101123"
    return first17 + id_check_char(first17)


# --- recording --------------------------------------------------------------------------------------


def test_record_numbers_districts_and_due_dates(ledger):
    got = mo.record(ledger, NIGHT, NIGHT_SUSPECTS, due_days={"deregistered_subsidised": 60})
    assert got.opened == 6
    by_subject = {o.subject: o for o in got}
    # numbered per (night, rule) by area, then subject
    assert by_subject[token(0xA)].order_id == "O20260301-1-0001"
    assert by_subject[token(0xC)].order_id == "O20260301-1-0002"
    assert by_subject[token(0xB)].order_id == "O20260301-1-0003"
    assert by_subject[token(0xD)].order_id == "O20260301-3-0001"
    assert by_subject[token(0xE)].order_id == "O20260301-6-0001"
    employer = by_subject["91330106MA2XXXXX1Y"]
    assert employer.order_id == "O20260301-8-0001" and employer.id_masked is None
    assert employer.due_on == NIGHT + timedelta(days=60) and by_subject[token(0xA)].due_on == NIGHT + timedelta(days=30)
    assert by_subject[token(0xA)].district == "西湖区" and by_subject[token(0xB)].district == "余杭区"
    assert by_subject[token(0xE)].district == "外地 410102"
    assert by_subject[token(0xA)].amount_at_risk == pytest.approx(4500.5) and by_subject[token(0xA)].months == 3
    assert by_subject[token(0xD)].months is None and by_subject[token(0xD)].title == "多对一"
    assert all(o.status == "open" and o.outcome is None and o.night == NIGHT for o in got)
    assert [o.order_id for o in got] == sorted(o.order_id for o in got)


def test_record_is_idempotent_and_audited_with_counts_only(ledger):
    first = mo.record(ledger, NIGHT, NIGHT_SUSPECTS)
    again = mo.record(ledger, NIGHT, NIGHT_SUSPECTS)
    assert again.opened == 0 and [o.order_id for o in again] == [o.order_id for o in first]
    assert len(mo.orders(ledger)) == 6

    # a later run of the same night finds one more: it is numbered after the night's orders
    more = frame(*NIGHT_SUSPECTS.to_dict(orient="records"), suspect("paid_after_death", token(0x1), "330102", 10.0))
    third = mo.record(ledger, NIGHT, more)
    assert third.opened == 1 and len(third) == 7
    assert {o.subject: o.order_id for o in third}[token(0x1)] == "O20260301-1-0004"

    # another night: a new subject is numbered from 1 again; one found again keeps its order (a version of it)
    other = mo.record(ledger, NIGHT + timedelta(days=1), frame(suspect("paid_after_death", token(0xA), "330106", 1.0),
                                                               suspect("paid_after_death", token(0x2), "330106", 5.0)))
    assert {o.subject: o.order_id for o in other} == {token(0xA): "O20260301-1-0001", token(0x2): "O20260302-1-0001"}
    assert (other.opened, other.updated, other.reopened) == (1, 1, 0)

    entries = audit_entries(ledger, "orders.opened")
    assert [json.loads(e["details"])["opened"] for e in entries] == [6, 0, 1, 1]
    assert json.loads(entries[0]["details"])["per_rule"]["paid_after_death"] == 3
    text = json.dumps(entries, default=str)
    assert token(0xA) not in text and "91330106MA2XXXXX1Y" not in text and "********" not in text
    assert ledger.verify_audit().ok


@pytest.mark.parametrize(("change", "column"), [
    ({"drop": "detail"}, "detail"),
    ({"drop": "months"}, "months"),
    ({"id_masked": a_real_id()}, "id_masked"),
    ({"id_masked": a_real_id()[:17] + "x"}, "id_masked"),
    ({"detail": json.dumps({"other": a_real_id()})}, "detail"),
    ({"detail": "not json"}, "detail"),
    ({"subject": a_real_id()}, "subject"),
    ({"rule": "paid_twice"}, "rule"),
    ({"area": "3301"}, "area"),
    ({"amount_at_risk": -1.0}, "amount_at_risk"),
])
def test_record_refuses_bad_frames_naming_the_column(ledger, change, column):
    rows = NIGHT_SUSPECTS.copy()
    if "drop" in change:
        rows = rows.drop(columns=[change["drop"]])
    else:
        for key, value in change.items():
            rows.loc[1, key] = value
    with pytest.raises(ValueError, match=column) as refused:
        mo.record(ledger, NIGHT, rows)
    assert a_real_id() not in str(refused.value)
    assert mo.orders(ledger) == [] and audit_entries(ledger, "orders.opened") == []


def test_record_refuses_a_subject_twice_in_one_rule(ledger):
    rows = frame(suspect("bill_over_mean", token(1), "330106", 10.0), suspect("bill_over_mean", token(1), "330106", 20.0))
    with pytest.raises(ValueError, match="subject"):
        mo.record(ledger, NIGHT, rows)


def test_masked_ids_and_credit_codes_pass():
    assert not mo.UNMASKED_ID.search("330106********123X")
    assert not mo.UNMASKED_ID.search(json.dumps({"account": "6222********1234", "token": "12345678901234567890abcdef"}))
    assert mo.UNMASKED_ID.search(f"身份证{a_real_id()}。")
    # an employer's 18-digit credit code is shaped like a number but is not one: evidence may name it
    assert mo.UNMASKED_ID.search("913301020322476657") and not mo.holds_identity_number('{"employers": ["913301020322476657"]}')
    assert mo.holds_identity_number(f"身份证{a_real_id()}。") and mo.holds_identity_number(a_real_id()[:17] + "x")


def _credit_codes_shaped_and_checked_like_identity_numbers(kind: str, area: str, wanted: int) -> list[str]:
    """Credit codes (GB 32100-2015: ``kind``, the registering district ``area``, a GB 11714 organization code
    and the MOD 31 check) that are all digits and pass the identity number's own checks, as about one in
    2,000 of a registry's codes do (five of the 50,000 employers of a city of a million people)."""
    from fundx.core.creditcodes import org_code_check_char, uscc_check_char
    from fundx.core.identity import is_valid_id

    found, n = [], 0
    while len(found) < wanted:
        body = f"{n:08d}"
        first17 = kind + area + body + org_code_check_char(body)
        code = first17 + uscc_check_char(first17)
        if code.isdigit() and is_valid_id(code):
            found.append(code)
        n += 7919
    return found


def test_credit_codes_that_pass_as_identity_numbers_are_evidence_and_real_numbers_are_still_refused(city_of):
    # at a million people the night stopped here: an employer's code passed the identity number's checks
    codes = (_credit_codes_shaped_and_checked_like_identity_numbers("91", "330122", 3)
             + _credit_codes_shaped_and_checked_like_identity_numbers("92", "330182", 3))
    for code in codes:
        assert not mo.holds_identity_number(json.dumps({"employers": [{"uscc": code, "months": "2026-01"}]}))
        assert not mo.holds_identity_number(f"deregistered_subsidised,{code},,330122")
    # ... and every identity number of a city (all provinces, every birth year) is still caught, alone or in text
    city = city_of(3000, 7)
    numbers = {str(n) for frame in (city.roll, *city.feeds.values()) if "id_number" in frame
               for n in frame["id_number"].dropna()}
    from fundx.core.identity import is_valid_id

    real = sorted(n for n in numbers if is_valid_id(n))
    assert len(real) > 2_000
    assert all(mo.holds_identity_number(json.dumps({"note": n})) for n in real)


def test_record_keeps_an_employers_code_in_the_evidence_and_refuses_an_identity_number(ledger):
    employer = suspect("unemployed_contributing", token(3), "330106", 10.0,
                       detail={"employers": ["913301020322476657"], "months": ["2026-02"]})
    assert mo.record(ledger, NIGHT, frame(employer)).opened == 1
    leaked = suspect("unemployed_contributing", token(4), "330106", 10.0, detail={"who": a_real_id()})
    with pytest.raises(ValueError, match="detail holds an unmasked identity number"):
        mo.record(ledger, NIGHT, frame(leaked))


# --- closing ------------------------------------------------------------------------------------------


def test_close_once_audited(ledger):
    mo.record(ledger, NIGHT, NIGHT_SUSPECTS)
    closed = mo.close(ledger, "O20260301-1-0001", outcome="recovered", amount=4500.5, actor="wang", note="refunded")
    assert (closed.status, closed.outcome, closed.amount_recovered, closed.closed_by, closed.note) == (
        "closed", "recovered", 4500.5, "wang", "refunded")
    assert closed.closed_at is not None
    with pytest.raises(DecisionError, match=r"O20260301-1-0001 was closed already by wang at \d{4}-\d\d-\d\d"):
        mo.close(ledger, "O20260301-1-0001", outcome="false-positive", amount=0, actor="li")
    assert mo.get(ledger, "O20260301-1-0001").outcome == "recovered"
    with pytest.raises(DecisionError, match="no order O20260301-1-0999"):
        mo.close(ledger, "O20260301-1-0999", outcome="confirmed", amount=0, actor="li")
    entries = audit_entries(ledger, "order.closed")
    assert len(entries) == 1 and entries[0]["subject"] == "O20260301-1-0001" and entries[0]["actor"] == "wang"
    details = json.loads(entries[0]["details"])
    assert details["outcome"] == "recovered" and details["amount"] == 4500.5 and "refunded" not in entries[0]["details"]
    assert ledger.verify_audit().ok


@pytest.mark.parametrize(("outcome", "amount", "message"), [
    ("false-positive", 10.0, "must be 0"),
    ("recovered", 0.0, "more than 0"),
    ("confirmed", -5.0, "0 or more"),
    ("confirmed", float("nan"), "0 or more"),
    ("fraud", 1.0, "unknown outcome"),
])
def test_close_checks_outcome_and_amount(ledger, outcome, amount, message):
    mo.record(ledger, NIGHT, NIGHT_SUSPECTS)
    with pytest.raises(ValueError, match=message):
        mo.close(ledger, "O20260301-1-0001", outcome=outcome, amount=amount, actor="wang")
    assert mo.get(ledger, "O20260301-1-0001").status == "open"
    with pytest.raises(ValueError, match="identity number"):
        mo.close(ledger, "O20260301-1-0001", outcome="confirmed", amount=0, actor="wang", note=f"is {a_real_id()}")


# --- reading and reporting ---------------------------------------------------------------------------


def test_orders_filters(ledger):
    mo.record(ledger, NIGHT, NIGHT_SUSPECTS)
    mo.record(ledger, NIGHT + timedelta(days=1), frame(suspect("paid_in_custody", token(9), "330106", 5.0)))
    assert len(mo.orders(ledger)) == 7
    assert len(mo.orders(ledger, night=NIGHT)) == 6
    assert len(mo.orders(ledger, night="2026-03-02")) == 1
    west = mo.orders(ledger, district="西湖区")
    assert len(west) == 4 and mo.orders(ledger, district="330106") == west
    assert [o.subject for o in mo.orders(ledger, district="外地 410102")] == [token(0xE)]
    assert len(mo.orders(ledger, rule="paid_after_death")) == 3
    mo.close(ledger, "O20260301-3-0001", outcome="confirmed", amount=0, actor="wang")
    assert len(mo.orders(ledger, status="open")) == 6 and len(mo.orders(ledger, status="closed")) == 1
    for bad in ({"district": "Atlantis"}, {"rule": "nope"}, {"status": "pending"}):
        with pytest.raises(ValueError):
            mo.orders(ledger, **bad)


def test_report_figures(ledger):
    mo.record(ledger, NIGHT, NIGHT_SUSPECTS)
    mo.record(ledger, NIGHT + timedelta(days=1), frame(suspect("paid_after_death", token(9), "330106", 100.0)))
    mo.close(ledger, "O20260301-1-0001", outcome="recovered", amount=4500.5, actor="wang")
    mo.close(ledger, "O20260301-1-0002", outcome="false-positive", amount=0, actor="wang")
    mo.close(ledger, "O20260301-1-0003", outcome="confirmed", amount=0, actor="wang")
    mo.close(ledger, "O20260302-1-0001", outcome="false-positive", amount=0, actor="wang")
    mo.close(ledger, "O20260301-8-0001", outcome="recovered", amount=8000, actor="wang")

    every = {r.rule: r for r in mo.report(ledger)}
    assert list(every) == list(mo.RULES)
    death = every["paid_after_death"]
    assert (death.suspects, death.closed, death.open, death.confirmed, death.false_positive, death.recovered) == (
        4, 4, 0, 1, 2, 1)
    assert death.precision == pytest.approx(0.5)
    assert death.amount_at_risk == pytest.approx(9100.5) and death.amount_recovered == pytest.approx(4500.5)
    assert every["deregistered_subsidised"].precision == 1.0
    assert every["shared_account"].precision is None and every["shared_account"].suspects == 1
    assert every["paid_in_custody"].suspects == 0 and every["paid_in_custody"].amount_at_risk == 0

    night = {r.rule: r for r in mo.report(ledger, NIGHT)}
    assert night["paid_after_death"].suspects == 3 and night["paid_after_death"].precision == pytest.approx(2 / 3)
    whole = mo.total(list(night.values()))
    assert (whole.suspects, whole.closed) == (6, 4)
    assert whole.precision == pytest.approx(3 / 4)
    assert whole.amount_at_risk == pytest.approx(3000 + 1500 + 4500.5 + 6200 + 12000 + 800)
    assert whole.amount_recovered == pytest.approx(12500.5)


# --- dispatch files -----------------------------------------------------------------------------------


def test_write_dispatch(ledger, tmp_path):
    got = mo.record(ledger, NIGHT, NIGHT_SUSPECTS)
    folder = tmp_path / "matching" / NIGHT.isoformat()
    paths = mo.write_dispatch(folder, got)
    names = sorted(p.name for p in paths)
    assert names == sorted([
        "orders-330102.csv", "orders-330106.csv", "orders-330110.csv", "orders-410102.csv",
        "suspects-paid_after_death.csv", "suspects-shared_account.csv", "suspects-frequent_visits.csv",
        "suspects-deregistered_subsidised.csv",
    ])
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        raw = path.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf")
        text = raw.decode("utf-8-sig")
        assert not mo.UNMASKED_ID.search(text) and token(0xA) not in text
    west = (folder / "orders-330106.csv").read_bytes().decode("utf-8-sig").splitlines()
    assert west[0] == "order_id,rule,规则,district,id_masked,amount_at_risk,months,due_on"
    assert west[1].split(",") == ["O20260301-1-0001", "paid_after_death", "死亡未停发", "西湖区", "330106********123X",
                                  "4500.50", "3", "2026-03-31"]
    assert len(west) == 1 + 3
    death = (folder / "suspects-paid_after_death.csv").read_text(encoding="utf-8-sig").splitlines()
    assert len(death) == 1 + 3 and "detail" in death[0]
    assert not list(folder.glob(".*.tmp"))
    # written again (a rerun of the night): the same files, still 0600
    assert mo.write_dispatch(folder, got) == paths


# --- the command ---------------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNDX_HOME", str(tmp_path / "var"))
    monkeypatch.delenv("FUNDX_LEDGER_URL", raising=False)
    monkeypatch.setenv("FUNDX_STEWARD", "inspector.zhao")
    reload_settings()
    from fundx.ledger import Ledger

    led = Ledger.from_settings()
    mo.record(led, NIGHT, NIGHT_SUSPECTS)
    yield led
    led.dispose()
    reload_settings()


def invoke(*args: str):
    from fundx.cli import app

    return runner.invoke(app, list(args))


def test_cli_list_show(home):
    listed = invoke("orders", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [r["area"] for r in rows] == sorted(r["area"] for r in rows) and len(rows) == 6
    assert all("subject" not in r for r in rows) and rows[1]["id_masked"] == "330106********123X"

    table = invoke("orders", "list", "--night", "2026-03-01", "--district", "西湖区")
    assert table.exit_code == 0, table.output
    assert "O20260301-1-0001" in table.output and "O20260301-1-0003" not in table.output
    assert "330106********123X" in table.output and token(0xA) not in table.output

    by_rule = invoke("orders", "list", "--rule", "shared_account", "--json")
    assert [r["order_id"] for r in json.loads(by_rule.output)] == ["O20260301-3-0001"]

    shown = invoke("orders", "show", "O20260301-8-0001", "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["detail"] == {"months": ["2025-11", "2025-12"]} and data["district"] == "西湖区"
    assert invoke("orders", "show", "O20260301-8-0001").exit_code == 0


def test_cli_report(home):
    """The report counts what was closed (here in one step, matching.orders.close; people close through the
    lifecycle: tests/cli/test_cases_cli.py)."""
    mo.close(home, "O20260301-1-0001", outcome="recovered", amount=4500.5, actor="inspector.zhao", note="refunded")
    mo.close(home, "O20260301-1-0002", outcome="false-positive", amount=0, actor="inspector.zhao")
    assert invoke("orders", "close", "O20260301-1-0003").exit_code == 2  # no one-step close from the command line
    still_open = json.loads(invoke("orders", "list", "--open", "--json").output)
    assert len(still_open) == 4

    report = invoke("matching", "report", "--json")
    assert report.exit_code == 0, report.output
    figures = json.loads(report.output)
    death = next(r for r in figures["rules"] if r["rule"] == "paid_after_death")
    assert (death["suspects"], death["closed"], death["precision"], death["amount_recovered"]) == (3, 2, 0.5, 4500.5)
    assert figures["total"]["suspects"] == 6 and figures["total"]["precision"] == 0.5
    table = invoke("matching", "report", "--night", "2026-03-01")
    assert table.exit_code == 0 and "50.0 %" in table.output and "total" in table.output


def test_cli_report_scores_the_orders_against_a_truth_file(home, tmp_path, keys_dir, monkeypatch):
    """--truths: per rule, the orders against the planted cases and the planted look-alikes."""
    monkeypatch.setenv("FUNDX_KEYS_DIR", str(keys_dir))
    reload_settings()
    employer = "91330106MA2XXXXX1Y"  # the night's deregistered_subsidised order (credit codes are not tokenised)
    path = tmp_path / "truth.json"

    def planted(lookalike: str) -> dict:
        path.write_text(json.dumps({"seed": 1, "subsidised_deregistered": [{"uscc": employer}], "lookalikes": [
            {"rule": "deregistered_subsidised", "kind": "deregistered, no subsidy after", "uscc": lookalike}]}),
            encoding="utf-8")
        result = invoke("matching", "report", "--json", "--truths", str(path))
        assert result.exit_code == 0, result.output
        return {p["rule"]: p for p in json.loads(result.output)["planted"]}["deregistered_subsidised"]

    clean = planted("91330106MA2YYYYY2Z")
    assert (clean["planted"], clean["found"], clean["precision"], clean["recall"]) == (1, 1, 1.0, 1.0)
    assert (clean["lookalikes"], clean["lookalikes_flagged"]) == (1, 0)
    assert planted(employer)["lookalikes_flagged"] == 1  # a look-alike the rule flagged is counted
    table = invoke("matching", "report", "--truths", str(path))
    assert table.exit_code == 0 and "look-alikes flagged" in table.output


@pytest.mark.parametrize("args", [
    ("orders", "show", "O20260301-9-0001"),
    ("orders", "list", "--night", "yesterday"),
    ("orders", "list", "--district", "Atlantis"),
    ("orders", "list", "--rule", "paid_twice"),
    ("matching", "report", "--night", "2026-13-01"),
    ("matching", "report", "--truths", "/nonexistent/truth.json"),
    ("matching", "report", "--truths", __file__),
    ("matching", "run", "--param", "min_people=4"),
    ("matching", "run", "--param", "shared_account.min_people"),
])
def test_cli_bad_input_exits_2(home, args):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "error" in result.output.lower() or "usage" in result.output.lower()
    assert mo.get(home, "O20260301-1-0001").status == "open"


def test_every_rule_has_a_number_that_never_changes():
    """An order id carries its rule's number (its place in orders.RULES): every rule the stage runs has one,
    and the first eight keep theirs (orders already issued name them)."""
    from matching import rules

    assert set(rules.RULES) <= set(mo.RULES)
    assert mo.RULES[:8] == ("paid_after_death", "paid_in_custody", "shared_account", "duplicate_receipt",
                            "unemployed_contributing", "frequent_visits", "bill_over_mean", "deregistered_subsidised")
    assert len(set(mo.RULES)) == len(mo.RULES) < 100
    assert all(mo.TITLES[r] for r in rules.RULES)
