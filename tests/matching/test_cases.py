"""Cases across nights (matching.cases): a suspect found again keeps its order, with a version per night that
saw something new; a closed false positive stays closed unless its evidence materially changes, and then
reopens saying why; a rerun of a night changes nothing."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pandas as pd
import pytest

from fundx.ledger.schema import audit
from matching import cases
from matching import orders as mo

NIGHT = date(2026, 3, 1)


def token(n: int) -> str:
    return f"{n:032x}"


def finding(subject: str, months: int, amount: float, sources: dict | None = None, rule: str = "paid_after_death"):
    detail = {"death_date": "2025-12-03", "sources": sources or {"civil_affairs.deaths": {"key": "MZ01"}}}
    return {"rule": rule, "subject": subject, "id_masked": "330106********123X", "area": "330106",
            "amount_at_risk": amount, "months": months, "detail": json.dumps(detail, sort_keys=True)}


def night(ledger, day: date, *rows: dict):
    return mo.record(ledger, day, pd.DataFrame(list(rows), columns=list(mo.COLUMNS)))


def reopened_events(ledger) -> list[dict]:
    with ledger.engine.connect() as conn:
        return [dict(r) for r in conn.execute(audit.select().where(audit.c.action == "order.reopened")).mappings()]


def test_two_nights_give_one_case_and_a_version_only_when_something_changed(ledger):
    first = night(ledger, NIGHT, finding(token(1), 2, 6000.0), finding(token(2), 1, 3000.0))
    second = night(ledger, NIGHT + timedelta(days=1), finding(token(1), 3, 9000.0), finding(token(2), 1, 3000.0))
    assert (second.opened, second.updated, second.reopened) == (0, 1, 0)
    assert [o.order_id for o in second] == [o.order_id for o in first]
    assert len(mo.orders(ledger)) == 2 and len(mo.orders(ledger, status="open")) == 2
    one = mo.get(ledger, first[0].order_id)
    assert (one.months, one.amount_at_risk) == (3, 9000.0)  # the order shows the latest finding
    history = cases.versions(ledger, one.order_id)
    assert [(v["night"], v["change"], v["months"]) for v in history] == [
        ("2026-03-01", "issued", 2), ("2026-03-02", "updated", 3)]
    assert "months 2 -> 3" in history[1]["reason"] and token(1) not in json.dumps(history)
    assert [v["change"] for v in cases.versions(ledger, first[1].order_id)] == ["issued"]  # nothing new: no version


def test_a_rerun_of_a_night_changes_nothing(ledger):
    night(ledger, NIGHT, finding(token(1), 2, 6000.0))
    later = NIGHT + timedelta(days=1)
    night(ledger, later, finding(token(1), 3, 9000.0))
    again = night(ledger, later, finding(token(1), 3, 9000.0))
    assert (again.opened, again.updated, again.reopened) == (0, 0, 0)
    earlier = night(ledger, NIGHT, finding(token(1), 2, 6000.0))  # the first night run again, after the second
    assert (earlier.opened, earlier.updated) == (0, 0)
    assert len(cases.versions(ledger, again[0].order_id)) == 2


def test_a_false_positive_stays_closed_until_its_evidence_materially_changes(ledger):
    oid = night(ledger, NIGHT, finding(token(1), 2, 6000.0))[0].order_id
    mo.close(ledger, oid, outcome="false-positive", amount=0, actor="inspector.li", note="alive, seen at home")
    # the same evidence, or less of it, night after night: closed
    for n, (months, amount) in enumerate([(2, 6000.0), (2, 6000.0), (1, 3000.0)], start=1):
        again = night(ledger, NIGHT + timedelta(days=n), finding(token(1), months, amount))
        assert (again.opened, again.reopened) == (0, 0) and again[0].status == "closed"
    assert mo.orders(ledger, status="open") == []
    # a source that did not know the case before: it reopens, saying why, and the audit says so
    sources = {"civil_affairs.deaths": {"key": "MZ01"}, "police.deaths": {"key": "HK07"}}
    back = night(ledger, NIGHT + timedelta(days=5), finding(token(1), 2, 6000.0, sources))
    assert (back.opened, back.reopened) == (0, 1)
    order = mo.get(ledger, oid)
    assert (order.status, order.outcome, order.closed_by) == ("open", None, None)
    assert order.due_on == NIGHT + timedelta(days=5 + mo.DEFAULT_DUE_DAYS)
    last = cases.versions(ledger, oid)[-1]
    assert last["change"] == "reopened" and last["reason"] == "new source police.deaths"
    event = reopened_events(ledger)[0]
    details = json.loads(event["details"])
    assert event["subject"] == oid and details["was"] == "false-positive" and details["closed_by"] == "inspector.li"
    assert token(1) not in event["details"] and ledger.verify_audit().ok


@pytest.mark.parametrize(("outcome", "amount"), [("confirmed", 0), ("recovered", 6000.0)])
def test_a_confirmed_case_still_paid_reopens(ledger, outcome, amount):
    """Confirmed (or recovered) and the payments did not stop: more months paid is a new finding."""
    oid = night(ledger, NIGHT, finding(token(1), 2, 6000.0))[0].order_id
    mo.close(ledger, oid, outcome=outcome, amount=amount, actor="inspector.li")
    assert night(ledger, NIGHT + timedelta(days=1), finding(token(1), 2, 6000.0)).reopened == 0
    back = night(ledger, NIGHT + timedelta(days=31), finding(token(1), 3, 9000.0))
    assert back.reopened == 1 and mo.get(ledger, oid).status == "open"
    assert cases.versions(ledger, oid)[-1]["reason"] == "months 2 -> 3; amount at risk 6000.00 -> 9000.00"


def test_material_change():
    before = {"months": 2, "amount_at_risk": 100.0, "detail": json.dumps({"sources": {"a": {}}})}
    same = dict(before)
    assert cases.material_change(before, same) is None
    assert cases.material_change(before, {**same, "months": 1, "amount_at_risk": 50.0}) is None
    assert cases.material_change(before, {**same, "detail": json.dumps({"sources": {"a": {}, "b": {}}})}) == "new source b"
    assert cases.material_change({**before, "months": None}, {**same, "months": None}) is None
    assert cases.material_change(before, {**same, "detail": "not json"}) is None


def test_orders_show_lists_the_versions(ledger, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from fundx.cli import app
    from fundx.core.settings import reload_settings

    oid = night(ledger, NIGHT, finding(token(1), 2, 6000.0))[0].order_id
    night(ledger, NIGHT + timedelta(days=1), finding(token(1), 3, 9000.0))
    monkeypatch.setenv("FUNDX_HOME", str(tmp_path / "var"))
    monkeypatch.setenv("FUNDX_LEDGER_URL", str(ledger.engine.url.render_as_string(hide_password=False)))
    reload_settings()
    try:
        shown = CliRunner().invoke(app, ["orders", "show", oid, "--json"])
        assert shown.exit_code == 0, shown.output
        assert [(v["night"], v["change"]) for v in json.loads(shown.output)["versions"]] == [
            ("2026-03-01", "issued"), ("2026-03-02", "updated")]
        table = CliRunner().invoke(app, ["orders", "show", oid])
        assert table.exit_code == 0 and "version 2026-03-02" in table.output and "months 2 -> 3" in table.output
    finally:
        reload_settings()
