"""A case walked through the console in a real headless Chromium (Debian's chromium and chromedriver, Selenium),
in Chinese (issue 20, part 6): inspector A sees it in 我的待办, takes it, submits a finding and does the first
review (初审); A's second review (复核) is refused in Chinese; inspector B approves the second review; the supervisor
accepts it (验收); the case page shows 已验收 and every step with who took it. Once in English. Each page is saved as
FUNDX_HOME/reports/console-case-<page>.png. The console's log holds no identity number and no subject token.

Served by `fundx console` in a process of its own over a ledger with three cases and no night (no sandbox needed).
Skipped, with the reason, only where chromium cannot be had (`make test` installs it as root).
"""

from __future__ import annotations

import os
import re

import pytest
from console_helpers import INSPECTOR_A, INSPECTOR_B, PASSWORDS, SUBJECTS, SUPERVISOR, seed_cases, served_console
from test_console_browser import CHROMEDRIVER, CHROMIUM, _missing, _shot, _submit

pytestmark = [pytest.mark.browser, pytest.mark.skipif(_missing() is not None, reason=_missing() or "")]

ID_SHAPED = re.compile(r"(?<![0-9])\d{17}[\dXx](?![0-9])")


@pytest.fixture(scope="module")
def cases_home(tmp_path_factory):
    """A home with a ledger of three cases and the case accounts."""
    from fundx.core.settings import reload_settings
    from fundx.ledger import Ledger

    home = tmp_path_factory.mktemp("console-cases") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FUNDX_HOME", str(home))
        mp.delenv("FUNDX_LEDGER_URL", raising=False)
        mp.delenv("FUNDX_CONSOLE_SECRET", raising=False)
        reload_settings()
        try:
            ledger = Ledger.from_settings()
            ids = seed_cases(ledger)
            ledger.dispose()
            yield home, ids
        finally:
            reload_settings()


@pytest.fixture(scope="module")
def server(cases_home):
    home, _ = cases_home
    yield from served_console(home, {k: v for k, v in os.environ.items() if k != "FUNDX_LEDGER_URL"})


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    profile = tmp_path_factory.mktemp("chromium-profile-cases")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1440,1000",
                f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-domain-reliability", "--disable-client-side-phishing-detection",
                "--no-pings", "--password-store=basic", "--lang=zh-CN"):
        options.add_argument(arg)
    service = Service(CHROMEDRIVER, log_output=str(profile / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _sign_in(driver, base: str, name: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/cases")
    assert "/login" in driver.current_url
    assert driver.find_element(By.TAG_NAME, "h1").text == "登录"
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORDS[name])
    _submit(driver, driver.find_element(By.ID, "sign-in"))
    assert driver.find_element(By.CSS_SELECTOR, "span.account").text == name


def _sign_out(driver) -> None:
    from selenium.webdriver.common.by import By

    _submit(driver, driver.find_element(By.CSS_SELECTOR, "form.who button"))


def _open_case(driver, case: str) -> None:
    from selenium.webdriver.common.by import By

    _submit(driver, driver.find_element(By.CSS_SELECTOR, f"#case-{case} a"))
    assert case in driver.find_element(By.TAG_NAME, "h1").text


def test_two_inspectors_and_a_supervisor_walk_a_case_from_issue_to_acceptance_in_chinese(cases_home, server,
                                                                                         browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    home, (case, _other, late) = cases_home
    base, log_path = server
    driver, shots = browser, []

    # inspector A: the case is in 我的待办; A takes it, gives the finding and does the first review
    driver.get(f"{base}/")
    shots.append(_shot(driver, home, "case-login"))
    _sign_in(driver, base, INSPECTOR_A)
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
    assert driver.find_element(By.TAG_NAME, "h1").text == "我的待办"
    assert "死亡未停发" in driver.find_element(By.ID, f"case-{case}").text
    shots.append(_shot(driver, home, "case-queue"))
    _open_case(driver, case)
    facts = driver.find_element(By.ID, "case").text
    assert "西湖区" in facts and "330106********123X" in facts and "应移送" in facts
    assert driver.find_element(By.ID, "stage").text == "已下发"
    assert "police.deaths" in driver.find_element(By.ID, "evidence").text
    shots.append(_shot(driver, home, "case-issued"))
    _submit(driver, driver.find_element(By.ID, "take"))
    assert driver.find_element(By.ID, "stage").text == "核查中"
    Select(driver.find_element(By.ID, "outcome")).select_by_value("confirmed")
    driver.find_element(By.ID, "note").send_keys("派出所出具死亡证明，养老金已停发")
    _submit(driver, driver.find_element(By.ID, "submit-finding"))
    assert driver.find_element(By.ID, "stage").text == "待初审"
    shots.append(_shot(driver, home, "case-finding"))
    _submit(driver, driver.find_element(By.ID, "approve"))
    assert driver.find_element(By.ID, "stage").text == "待复核"
    assert driver.find_element(By.ID, "two-person").text.startswith("双人复核")

    # A tries the second review of their own first review: refused, in Chinese
    _submit(driver, driver.find_element(By.ID, "approve"))
    refusal = driver.find_element(By.ID, "step-error").text
    assert "你已做过初审，复核须由另一账户进行" in refusal
    assert driver.find_element(By.ID, "stage").text == "待复核"
    shots.append(_shot(driver, home, "case-refused"))
    _sign_out(driver)

    # inspector B approves the second review
    _sign_in(driver, base, INSPECTOR_B)
    _open_case(driver, case)
    assert driver.find_elements(By.ID, "two-person") == []
    _submit(driver, driver.find_element(By.ID, "approve"))
    assert driver.find_element(By.ID, "stage").text == "已办结"
    assert driver.find_element(By.ID, "step-done").text == "审核已记录。"
    shots.append(_shot(driver, home, "case-second-review"))
    _sign_out(driver)

    # the supervisor accepts it (验收)
    _sign_in(driver, base, SUPERVISOR)
    _open_case(driver, case)
    driver.find_element(By.ID, "accept-reason").send_keys("材料齐全，同意验收")
    _submit(driver, driver.find_element(By.ID, "accept"))
    assert driver.find_element(By.ID, "stage").text == "已验收"
    assert driver.find_element(By.ID, "accepted-by").text.startswith(SUPERVISOR)
    steps = [[c.text for c in r.find_elements(By.TAG_NAME, "td")]
             for r in driver.find_elements(By.CSS_SELECTOR, "#steps tbody tr")]
    assert [(s[2], s[3]) for s in steps] == [(INSPECTOR_A, "接办"), (INSPECTOR_A, "提交办理结果"),
                                             (INSPECTOR_A, "初审通过"), (INSPECTOR_B, "复核通过"),
                                             (SUPERVISOR, "已验收")]
    shots.append(_shot(driver, home, "case-accepted"))

    # the other lists: by district, overdue
    _submit(driver, driver.find_element(By.ID, "nav-cases"))
    _submit(driver, driver.find_element(By.ID, "tab-district"))
    assert driver.find_element(By.TAG_NAME, "h1").text == "按区查看案件"
    assert "西湖区" in driver.find_element(By.ID, "per-district").text
    shots.append(_shot(driver, home, "case-districts"))
    _submit(driver, driver.find_element(By.ID, "tab-overdue"))
    assert driver.find_element(By.TAG_NAME, "h1").text == "超期案件"
    assert driver.find_elements(By.ID, f"case-{late}")
    shots.append(_shot(driver, home, "case-overdue"))

    # once in English
    driver.get(f"{base}/cases/{case}")
    _submit(driver, driver.find_element(By.ID, "lang-en"))
    assert driver.current_url.endswith(f"/cases/{case}")
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert driver.find_element(By.ID, "stage").text == "accepted"
    assert driver.find_element(By.ID, "nav-cases").text == "Cases"
    shots.append(_shot(driver, home, "case-english"))
    _submit(driver, driver.find_element(By.ID, "lang-zh_CN"))
    assert driver.find_element(By.ID, "stage").text == "已验收"

    assert all(p.stat().st_size > 5_000 for p in shots)
    log_text = log_path.read_text(encoding="utf-8", errors="replace")
    assert not ID_SHAPED.search(log_text), "an identity number in the console's log"
    assert not any(s in log_text for s in SUBJECTS) and "GET /" not in log_text
    assert all(PASSWORDS[n] not in log_text for n in (INSPECTOR_A, INSPECTOR_B, SUPERVISOR))
    assert f"{INSPECTOR_A} was refused approve on case {case}" in log_text
