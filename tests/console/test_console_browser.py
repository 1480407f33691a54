"""The console in a real headless Chromium (Debian's chromium and chromedriver, driven by Selenium),
served by `fundx console` in a process of its own.

A steward switches the sign-in page to English, signs in, opens last night's failures, releases two rows with a reason, and after the
feed's next run sees them delivered; an auditor sees no way to decide and a forged POST with the
auditor's session gets 403. Each page is saved as FUNDX_HOME/reports/console-<page>.png. The
server's log holds no identity number and no payload.

Skipped, with the reason, only where chromium cannot be had (`make test` installs it as root).
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from console_helpers import AUDITOR, FEED, NEXT_END, PASSWORDS, PAYLOADS, STEWARD, leaked, served_console

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _missing() -> str | None:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        return (f"Debian's chromium and chromedriver are not installed ({CHROMIUM}, {CHROMEDRIVER}): "
                "`make test` installs them as root; else apt-get install chromium chromium-driver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -c constraints.txt -e '.[dev,browser]'"
    return None


pytestmark = [pytest.mark.browser, pytest.mark.skipif(_missing() is not None, reason=_missing() or "")]


@pytest.fixture(scope="module")
def server(night):
    """`fundx console` on a free loopback port, its output in FUNDX_HOME/console.log."""
    yield from served_console(night.home, dict(os.environ))


@pytest.fixture(scope="module")
def browser(night, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1440,1000",
                f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-domain-reliability", "--disable-client-side-phishing-detection",
                "--no-pings", "--password-store=basic", "--lang=en-US"):
        options.add_argument(arg)
    service = Service(CHROMEDRIVER, log_output=str(profile / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _shot(driver, home: Path, name: str) -> Path:
    """The whole page as FUNDX_HOME/reports/console-<name>.png."""
    path = home / "reports" / f"console-{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    full = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    driver.set_window_size(1440, min(max(int(full["height"]) + 140, 700), 6000))
    assert driver.save_screenshot(str(path)), name
    return path


def _no_alert(driver) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        alert = driver.switch_to.alert
    except NoAlertPresentException:
        return
    text = alert.text
    alert.dismiss()
    pytest.fail(f"a planted payload ran: alert({text!r})")


def _sign_in(driver, base: str, name: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/")
    assert "/login" in driver.current_url
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORDS[name])
    _submit(driver, driver.find_element(By.ID, "sign-in"))
    assert driver.find_element(By.CSS_SELECTOR, "span.account").text == name


def _submit(driver, element) -> None:
    """Click a link or button and wait until the next page has replaced this one."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as gone
    from selenium.webdriver.support.ui import WebDriverWait

    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    # While the old page is torn down chromium may answer a probe of it with a transient
    # "unhandled inspector error" instead of "stale element": ask again until it says stale.
    wait = WebDriverWait(driver, 20, ignored_exceptions=(WebDriverException,))
    wait.until(gone.staleness_of(page))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def test_a_steward_releases_two_rows_that_go_out_with_the_next_run_and_an_auditor_cannot_decide(
        night, server, browser, monkeypatch):
    from selenium.webdriver.common.by import By

    from fundx.exchange import quarantine
    from fundx.exchange.run import run_feed
    from fundx.ledger import Ledger

    base, log_path = server
    driver, home, batch = browser, night.home, night.batch_id
    shots = []

    # signing in
    driver.get(f"{base}/failures/{batch}")
    assert "/login?next=/failures/" in driver.current_url
    assert driver.find_element(By.TAG_NAME, "h1").text == "登录"  # Chinese first
    _submit(driver, driver.find_element(By.ID, "lang-en"))  # the steward reads English: the switch keeps the way back
    assert "/login?next=/failures/" in driver.current_url and driver.find_element(By.TAG_NAME, "h1").text == "Sign in"
    shots.append(_shot(driver, home, "login"))
    driver.find_element(By.ID, "name").send_keys(STEWARD)
    driver.find_element(By.ID, "password").send_keys("a wrong password")
    _submit(driver, driver.find_element(By.ID, "sign-in"))
    assert "not accepted" in driver.find_element(By.CSS_SELECTOR, ".error").text
    _sign_in(driver, base, STEWARD)

    # the nights: last night, per feed, with a link to its failures
    assert driver.find_element(By.TAG_NAME, "h1").text.startswith("Night of ")
    row = driver.find_element(By.XPATH, f"//table[@id='night-table']//tr[td[1][starts-with(., '{FEED}')]]")
    cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
    assert int(cells[1].replace(",", "")) > 0 and int(cells[3].replace(",", "")) == night.quarantined
    assert driver.find_elements(By.CSS_SELECTOR, "svg.trend rect.bar-valid")
    shots.append(_shot(driver, home, "nights"))

    # last night's failures: rules, Data Docs, masked rows; the payloads are text, nothing ran
    _submit(driver, row.find_element(By.CSS_SELECTOR, "a.batch-link"))
    assert batch in driver.find_element(By.TAG_NAME, "h1").text
    _no_alert(driver)
    assert driver.find_elements(By.TAG_NAME, "script") == []
    rules = driver.find_element(By.ID, "rules").text
    assert "gender.allowed_values" in rules
    shown = driver.find_element(By.ID, "rows").text
    for payload in PAYLOADS:
        assert payload in shown  # as text on the page, i.e. escaped in the HTML
    assert "********" in shown and leaked(driver.page_source, night.ids) == []
    shots.append(_shot(driver, home, "failures"))

    _submit(driver, driver.find_element(By.ID, "data-docs"))
    _no_alert(driver)
    assert FEED in driver.page_source
    shots.append(_shot(driver, home, "datadocs"))
    driver.back()

    # release rows 1 and 2 with a reason
    for number in (1, 2):
        driver.find_element(By.CSS_SELECTOR, f"#row-{number} input[type=checkbox]").click()
    driver.find_element(By.ID, "reason").send_keys("agency confirmed both rows by phone, ticket 4411")
    _submit(driver, driver.find_element(By.ID, "release"))
    decided = driver.find_element(By.ID, "decided").text
    assert "2 rows (1-2) released by wang" in decided and "death_matching" in decided
    ledger = Ledger.from_settings()
    (decision,) = quarantine.decisions_of(ledger, batch_id=batch)
    assert (decision.rows, decision.status, decision.actor) == ((1, 2), "pending", STEWARD)
    assert driver.find_element(By.CSS_SELECTOR, "#row-1 td.state").text == f"released ({decision.id})"
    shots.append(_shot(driver, home, "decided"))

    # the next run delivers them; the page says so
    later = run_feed(FEED, end=NEXT_END)
    assert [h.rows for h in later.released] == [2]
    driver.get(f"{base}/failures/{batch}")
    for number in (1, 2):
        assert driver.find_element(By.CSS_SELECTOR, f"#row-{number} td.state").text == f"delivered ({decision.id})"
    assert f"delivered as {decision.release_batch_id}" in driver.find_element(By.ID, "decisions").text
    shots.append(_shot(driver, home, "delivered"))

    driver.get(f"{base}/audit?action=failures.")
    assert "Hash chain intact" in driver.find_element(By.ID, "chain").text
    assert "failures.release" in driver.find_element(By.ID, "audit").text
    shots.append(_shot(driver, home, "audit"))

    # an auditor: no form, no checkboxes; a forged POST with the auditor's own session is refused
    _submit(driver, driver.find_element(By.CSS_SELECTOR, "form.who button"))
    assert "/login" in driver.current_url
    _sign_in(driver, base, AUDITOR)
    driver.get(f"{base}/failures/{batch}")
    assert driver.find_elements(By.ID, "decide") == [] and driver.find_elements(By.CSS_SELECTOR, "input[type=checkbox]") == []
    assert driver.find_elements(By.ID, "read-only")
    shots.append(_shot(driver, home, "auditor"))
    token = driver.find_element(By.CSS_SELECTOR, "form.who input[name=csrf]").get_attribute("value")
    cookies = {c["name"]: c["value"] for c in driver.get_cookies()}
    forged = httpx.post(f"{base}/failures/{batch}/decide", cookies=cookies, follow_redirects=False,
                        data={"csrf": token, "action": "release", "scope": "all", "reason": "auditor forges a release"})
    assert forged.status_code == 403
    assert httpx.get(f"{base}/failures/{batch}/rows/3/unmask", cookies=cookies).status_code == 403
    assert len(quarantine.decisions_of(ledger, batch_id=batch)) == 1

    assert all(p.stat().st_size > 5_000 for p in shots)
    log_text = log_path.read_text(encoding="utf-8", errors="replace")
    assert leaked(log_text, night.ids) == [] and not any(p in log_text for p in PAYLOADS)
    assert PASSWORDS[STEWARD] not in log_text and "GET /" not in log_text  # no access log
