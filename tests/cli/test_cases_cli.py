"""`fundx cases`: the lifecycle from the command line, under accounts whose passwords are checked. Two inspectors
and a supervisor walk a case from issue to acceptance; the first reviewer cannot second-review; a wrong password,
an unknown account, a role without the right and bad input end in one line and change nothing; views are audited;
FUNDX_STEWARD names nobody here."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest
from typer.testing import CliRunner

from fundx.core.settings import reload_settings
from fundx.ledger.schema import audit
from matching import orders as mo

NIGHT = date(2026, 3, 1)
PASSWORD = {"li": "correct horse battery 1", "wang": "correct horse battery 2", "chen": "correct horse battery 3",
            "sun": "correct horse battery 4"}
runner = CliRunner()


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    from fundx.console import accounts
    from fundx.ledger import Ledger

    monkeypatch.setenv("FUNDX_HOME", str(tmp_path / "var"))
    monkeypatch.delenv("FUNDX_LEDGER_URL", raising=False)
    monkeypatch.setenv("FUNDX_STEWARD", "chen")  # an environment variable names nobody in `fundx cases`
    reload_settings()
    led = Ledger.from_settings()
    for name, role in (("li", "inspector"), ("wang", "inspector"), ("chen", "supervisor"), ("sun", "auditor")):
        accounts.add_account(led, name, role, PASSWORD[name], actor="admin")
    rows = [{"rule": "paid_after_death", "subject": f"{n:032x}", "id_masked": "330106********123X", "area": "330106",
             "amount_at_risk": 3000.0 * n, "months": n, "detail": "{}"} for n in (1, 2)]
    mo.record(led, NIGHT, pd.DataFrame(rows, columns=list(mo.COLUMNS)))
    yield led
    led.dispose()
    reload_settings()


def cases(account: str, *args: str, password: str | None = None):
    from fundx.cli import app

    command, rest = args[0], list(args[1:])
    return runner.invoke(app, ["cases", command, *rest, "--account", account],
                         input=(PASSWORD.get(account, "x" * 12) if password is None else password) + "\n")


def test_two_inspectors_and_a_supervisor_walk_a_case_to_acceptance(ledger):
    oid = "O20260301-1-0001"
    queue = cases("li", "list", "--mine", "--json")
    assert queue.exit_code == 0, queue.output
    assert [c["order_id"] for c in json.loads(queue.output[queue.output.index("["):])] == [oid, "O20260301-1-0002"]
    assert cases("li", "take", oid).exit_code == 0
    done = cases("li", "submit", oid, "--outcome", "recovered", "--amount", "3000", "--note", "repaid by the family")
    assert done.exit_code == 0 and "first review" in done.output, done.output
    assert cases("li", "review", oid, "--approve").exit_code == 0
    own = cases("li", "review", oid, "--approve")
    assert own.exit_code == 1 and "two-person review" in own.output
    assert cases("wang", "review", oid, "--approve", "--reason", "bank statement seen").exit_code == 0
    refused = cases("wang", "accept", oid)
    assert refused.exit_code == 1 and "only supervisors" in refused.output
    accepted = cases("chen", "accept", oid)
    assert accepted.exit_code == 0 and "accepted" in accepted.output
    shown = cases("sun", "show", oid)
    assert shown.exit_code == 0 and "recovered" in shown.output and "second_review → closed" in shown.output
    case = mo.get(ledger, oid)
    assert (case.stage, case.submitted_by, case.first_reviewer, case.second_reviewer, case.accepted_by) == (
        "accepted", "li", "li", "wang", "chen")
    with ledger.engine.connect() as conn:
        actions = [(r.action, r.actor) for r in conn.execute(audit.select().where(audit.c.action.like("case.%"))
                                                             .order_by(audit.c.seq))]
    assert ("case.viewed", "sun") in actions and ("case.listed", "li") in actions
    assert [a for a in actions if a[0] not in ("case.viewed", "case.listed")] == [
        ("case.take", "li"), ("case.submit", "li"), ("case.first_review", "li"), ("case.second_review", "wang"),
        ("case.accept", "chen")]


@pytest.mark.parametrize(("account", "args", "password", "says"), [
    ("li", ("take", "O20260301-1-0001"), "correct horse battery 9", "wrong password, unknown or locked"),
    ("nobody", ("take", "O20260301-1-0001"), None, "wrong password, unknown or locked"),
    ("li", ("take", "O20260301-1-0001"), "", "no password given"),
    ("sun", ("take", "O20260301-1-0001"), None, "only inspectors"),
    ("chen", ("take", "O20260301-1-0001"), None, "only inspectors"),
    ("li", ("submit", "O20260301-1-0001", "--outcome", "confirmed"), None, "issued, waiting for an inspector"),
    ("li", ("take", "O20260301-1-0999"), None, "no case O20260301-1-0999"),
])
def test_refusals_are_one_line_and_change_nothing(ledger, account, args, password, says):
    result = cases(account, *args, password=password)
    assert result.exit_code == 1, result.output
    assert says in result.output and "Traceback" not in result.output
    assert mo.get(ledger, "O20260301-1-0001").stage == "issued"


@pytest.mark.parametrize("args", [
    ("take", "not-a-case"),
    ("list", "--stage", "finished"),
    ("list", "--district", "Atlantis"),
    ("submit", "O20260301-1-0001", "--outcome", "fraud"),
])
def test_bad_input_exits_2(ledger, args):
    if args[0] == "submit":
        assert cases("li", "take", "O20260301-1-0001").exit_code == 0
    result = cases("li", *args)
    assert result.exit_code == 2, result.output
