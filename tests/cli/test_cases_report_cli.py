"""`fundx cases report` and `fundx cases monthly`: under an account whose password is checked; the files written
match the ledger's cases (a case of the quarter before and one in another district are not counted as this
district's); the report is audited; bad input (a quarter or month that does not exist, a folder that cannot be
written) ends in one line naming the option, exit 2, with nothing written or audited."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import pandas as pd
import pytest
from typer.testing import CliRunner

from fundx.core.settings import reload_settings
from fundx.core.timeutil import SHANGHAI
from fundx.ledger.schema import audit
from matching import orders as mo
from matching import reports

PASSWORD = {"chen": "correct horse battery 3"}
runner = CliRunner()
TODAY = datetime.now(SHANGHAI).date()
QUARTER = f"{TODAY.year}Q{(TODAY.month + 2) // 3}"
FIRST = reports.parse_quarter(QUARTER)[0]  # the running quarter's first day: its cases are found then
BEFORE = FIRST - timedelta(days=1)  # the quarter before's last day


def suspect(n: int, area: str) -> dict:
    return {"rule": "paid_after_death", "subject": f"{n:032x}", "id_masked": f"{area}********{n:03d}X",
            "area": area, "amount_at_risk": 1000.0 * n, "months": 1, "detail": "{}"}


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    from fundx.console import accounts
    from fundx.ledger import Ledger

    monkeypatch.setenv("FUNDX_HOME", str(tmp_path / "var"))
    monkeypatch.delenv("FUNDX_LEDGER_URL", raising=False)
    reload_settings()
    led = Ledger.from_settings()
    accounts.add_account(led, "chen", "supervisor", PASSWORD["chen"], actor="admin")
    for night, rows in ((BEFORE, [suspect(1, "330106")]), (FIRST, [suspect(2, "330106"), suspect(3, "330106"),
                                                                    suspect(4, "330108")])):
        mo.record(led, night, pd.DataFrame(rows, columns=list(mo.COLUMNS)))
    found = mo.orders(led, night=FIRST)
    mo.close(led, found[0].order_id, outcome="recovered", amount=2000, actor="tests")
    yield led
    led.dispose()
    reload_settings()


def cases(*args: str, password: str | None = None):
    from fundx.cli import app

    return runner.invoke(app, ["cases", *args, "--account", "chen"],
                         input=(PASSWORD["chen"] if password is None else password) + "\n")


def reported(ledger) -> list[dict]:
    with ledger.engine.connect() as conn:
        return [dict(r) for r in conn.execute(audit.select().where(audit.c.action == "cases.report")).mappings()]


def test_the_quarterly_report_is_written_and_matches_the_cases(ledger, tmp_path):
    out = tmp_path / "q"
    result = cases("report", "--quarter", QUARTER, "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output[result.output.index("{"):])
    rows = {d["district"]: d for d in doc["districts"]}
    assert (rows["西湖区"]["issued"], rows["西湖区"]["verified"], rows["西湖区"]["recovered"]) == (2, 1, 1)
    assert rows["西湖区"]["amount_recovered"] == 2000.0 and rows["滨江区"]["issued"] == 1
    assert (doc["total"]["issued"], doc["total"]["open"]) == (3, 2)  # not the case of the quarter before
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"cases-{QUARTER}.csv", f"cases-{QUARTER}.pdf", f"cases-{QUARTER}.png"]
    back = {r["district"]: r for r in reports.read_quarter_csv((out / f"cases-{QUARTER}.csv").read_bytes())}
    assert (back["西湖区"]["issued"], back["合计"]["issued"], back["合计"]["verified"]) == ("2", "3", "1")
    entry = reported(ledger)
    assert len(entry) == 1 and entry[0]["actor"] == "chen" and entry[0]["subject"] == QUARTER
    details = json.loads(entry[0]["details"])
    assert (details["kind"], details["issued"], details["verified"], details["recovered"]) == ("quarterly", 3, 1, 1)
    table = cases("report", "--quarter", QUARTER, "--out", str(out))
    assert table.exit_code == 0 and "西湖区" in table.output and "written" in table.output


def test_the_monthly_lists_are_written(ledger, tmp_path):
    month = f"{FIRST:%Y-%m}"
    result = cases("monthly", "--month", month, "--out", str(tmp_path / "m"))
    assert result.exit_code == 0, result.output
    assert "3 cases found" in result.output and "死亡未停发" in result.output
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        f"summary-{month}.csv", f"suspects-{month}-paid_after_death-死亡未停发.csv"]
    assert [json.loads(e["details"])["cases"] for e in reported(ledger)] == [3]


@pytest.mark.parametrize(("args", "names"), [
    (("report", "--quarter", "2026Q5"), "--quarter"),
    (("report", "--quarter", "2099Q1"), "--quarter"),  # not begun
    (("monthly", "--month", "2026-13"), "--month"),
    (("report", "--quarter", QUARTER, "--out", "/proc/version/x"), "--out"),
    (("monthly", "--month", "2026-11", "--out", "/proc/version"), "--out"),
])
def test_bad_input_is_one_line_naming_the_option(ledger, args, names):
    result = cases(*args)
    assert result.exit_code == 2, result.output
    assert names in result.output and "Traceback" not in result.output
    assert reported(ledger) == []


def test_a_wrong_password_writes_nothing(ledger, tmp_path):
    result = cases("report", "--quarter", QUARTER, "--out", str(tmp_path / "q"), password="not the password 12")
    assert result.exit_code == 1 and "wrong password" in result.output
    assert not (tmp_path / "q").exists() and reported(ledger) == []


def test_the_default_folder_is_under_the_home(ledger, tmp_path):
    month = f"{date(FIRST.year, FIRST.month, 1):%Y-%m}"
    assert cases("monthly", "--month", month).exit_code == 0
    assert (tmp_path / "var" / "reports" / f"cases-{month}" / f"summary-{month}.csv").is_file()
