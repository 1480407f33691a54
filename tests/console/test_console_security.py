"""The console's defences, through FastAPI's TestClient against a real ledger and sealed quarantine.

Unauthenticated requests, forged or missing CSRF tokens, an auditor deciding, an HTML/JS payload
planted in an agency's rows, path traversal on the Data Docs route, the stored password hash, and
identity numbers in responses and logs.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from console_helpers import AUDITOR, PASSWORDS, PAYLOADS, STEWARD, client_for, leaked

from fundx.core.timeutil import UTC

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def app(night):
    from fundx.console.app import create_app
    from fundx.ledger import Ledger

    return create_app(Ledger.from_settings(), home=night.home)


@pytest.fixture
def client(app, caplog):
    caplog.set_level(logging.DEBUG)
    with client_for(app, follow_redirects=False) as c:
        yield c


def sign_in(client, name: str, password: str | None = None):
    """Sign in through the form; returns the response of the POST."""
    form = client.get("/login")
    assert form.status_code == 200
    token = CSRF.search(form.text).group(1)
    return client.post("/login", data={"csrf": token, "name": name, "password": password or PASSWORDS[name],
                                       "next": "/"})


def csrf_of(client, path: str = "/") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return CSRF.search(page.text).group(1)


def test_unauthenticated_requests_go_to_sign_in_or_get_401(client, night):
    batch = night.batch_id
    for path in ("/", "/failures", f"/failures/{batch}", "/audit", f"/failures/{batch}/rows/1/unmask",
                 "/nights/2026-11-23", "/reports/index.html"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), path
        assert "id_number" not in answer.text
    assert client.get(f"/failures/{batch}").headers["location"] == f"/login?next=/failures/{batch}"
    for path in (f"/failures/{batch}/decide", f"/failures/{batch}/rows/1/unmask", "/logout"):
        answer = client.post(path, data={"action": "release", "scope": "all", "reason": "no session at all here"})
        assert answer.status_code == 401, path
    # a cookie that is not signed by this console, or names no session, is no session
    client.cookies.set("fundx_console", "made-up-token.signature")
    assert client.get("/").status_code == 303
    from fundx.exchange import quarantine
    from fundx.ledger import Ledger

    assert quarantine.decisions_of(Ledger.from_settings(), batch_id=batch) == []


def test_sign_in_refuses_wrong_passwords_and_forged_form_tokens_and_sets_a_strict_cookie(client, night):
    wrong = sign_in(client, STEWARD, "not-the-password-at-all")
    assert wrong.status_code == 401 and "not accepted" in wrong.text and "fundx_console=" not in wrong.headers.get(
        "set-cookie", "")
    assert sign_in(client, "nobody-here", "whatever-password").status_code == 401
    client.get("/login")
    forged = client.post("/login", data={"csrf": "forged", "name": STEWARD, "password": PASSWORDS[STEWARD]})
    assert forged.status_code == 403
    cross_site = client.post("/login", headers={"origin": "http://evil.example"},
                             data={"csrf": CSRF.search(client.get("/login").text).group(1), "name": STEWARD,
                                   "password": PASSWORDS[STEWARD]})
    assert cross_site.status_code == 403

    for elsewhere in ("//evil.example/", "/\t/evil.example", "https://evil.example/", "/\\evil.example"):
        token = CSRF.search(client.get("/login").text).group(1)
        moved = client.post("/login", data={"csrf": token, "name": STEWARD, "password": PASSWORDS[STEWARD],
                                             "next": elsewhere})
        assert moved.status_code == 303 and moved.headers["location"] == "/", elsewhere  # never another host
        client.cookies.clear()  # signed in: start again from the sign-in form
    ok = sign_in(client, STEWARD)
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    cookie = next(v for k, v in ok.headers.multi_items() if k == "set-cookie" and v.startswith("fundx_console="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=28800" in cookie
    page = client.get("/")
    assert page.status_code == 200 and f"{STEWARD}" in page.text
    headers = page.headers
    assert "default-src 'self'" in headers["content-security-policy"] and "script-src 'none'" in headers[
        "content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff" and "server" not in headers


def test_a_forged_or_missing_csrf_token_is_refused_and_records_nothing(client, night, app):
    from fundx.console import accounts
    from fundx.exchange import quarantine

    before = quarantine.decisions_of(app.state.ledger, batch_id=night.batch_id)
    sign_in(client, STEWARD)
    batch = night.batch_id
    form = {"action": "release", "scope": "selected", "row": ["1"], "reason": "agency confirmed by phone"}
    assert client.post(f"/failures/{batch}/decide", data=form).status_code == 403
    assert client.post(f"/failures/{batch}/decide", data={**form, "csrf": "forged-token"}).status_code == 403
    # another session's token is not this session's
    other, _ = accounts.open_session(app.state.ledger, accounts.Account(STEWARD, "steward", None, None),
                                     lifetime=timedelta(hours=1))
    other_csrf = accounts.session_of(app.state.ledger, other, idle=timedelta(minutes=5)).csrf
    assert client.post(f"/failures/{batch}/decide", data={**form, "csrf": other_csrf}).status_code == 403
    assert client.post(f"/failures/{batch}/rows/1/unmask", data={"reason": "need it for a call",
                                                                 "csrf": "forged"}).status_code == 403
    assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
    token = csrf_of(client)
    cross_site = client.post(f"/failures/{batch}/decide", data={**form, "csrf": token},
                             headers={"origin": "http://evil.example"})
    assert cross_site.status_code == 403
    assert quarantine.decisions_of(app.state.ledger, batch_id=batch) == before


def test_an_auditor_reads_but_cannot_decide_or_unmask(client, night, app):
    from fundx.exchange import quarantine

    before = quarantine.decisions_of(app.state.ledger, batch_id=night.batch_id)
    sign_in(client, AUDITOR)
    batch = night.batch_id
    page = client.get(f"/failures/{batch}")
    assert page.status_code == 200
    assert 'id="decide"' not in page.text and 'type="checkbox"' not in page.text and '/unmask"' not in page.text
    assert 'id="read-only"' in page.text
    token = CSRF.search(page.text).group(1)  # the sign-out form's: a valid token of this session
    forged = client.post(f"/failures/{batch}/decide", data={"csrf": token, "action": "release", "scope": "all",
                                                            "reason": "auditor tries to release"})
    assert forged.status_code == 403 and "auditor" in forged.text
    assert client.get(f"/failures/{batch}/rows/1/unmask").status_code == 403
    assert client.post(f"/failures/{batch}/rows/1/unmask",
                       data={"csrf": token, "reason": "auditor wants to see"}).status_code == 403
    assert quarantine.decisions_of(app.state.ledger, batch_id=batch) == before


def test_a_payload_planted_in_an_agency_field_is_rendered_as_text(client, night, app):
    sign_in(client, STEWARD)
    batch = night.batch_id
    page = client.get(f"/failures/{batch}", params={"rule": "gender.allowed_values"})
    assert page.status_code == 200
    for payload in PAYLOADS:
        assert payload not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in page.text
    assert "&lt;svg onload=alert(3)&gt;" in page.text
    assert "<script" not in page.text.lower() and "onerror=" not in page.text.replace("onerror=alert(2)&gt;", "")

    # a reason holding markup is stored as typed and shown as text (the decision and the audit trail)
    token = CSRF.search(page.text).group(1)
    done = client.post(f"/failures/{batch}/decide", data={
        "csrf": token, "action": "reject", "scope": "selected", "row": ["3"],
        "reason": "<b>bold</b><script>alert('reason')</script>"})
    assert done.status_code == 303
    shown = client.get(done.headers["location"])
    assert "<script>alert('reason')" not in shown.text and "&lt;script&gt;alert(&#39;reason&#39;)" in shown.text
    trail = client.get("/audit", params={"action": "failures.reject"})
    assert "<script>alert" not in trail.text and "&lt;script&gt;" in trail.text
    assert 'id="chain"' in trail.text and "Hash chain intact" in trail.text


@pytest.mark.parametrize("path", [
    "/reports/../ledger.db",
    "/reports/%2e%2e/ledger.db",
    "/reports/%2e%2e%2fledger.db",
    "/reports/..%2fledger.db",
    "/reports/2026-11-23/..%2f..%2fledger.db",
    "/reports//etc/passwd",
    "/reports/%2fetc%2fpasswd",
    "/reports/..%5cledger.db",
    "/reports/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/reports/.secret.html",
    "/reports/leak.html",
])
def test_the_data_docs_route_refuses_path_traversal(client, night, path):
    (night.home / "console-outside.html").write_text("outside the reports folder")
    link = night.home / "reports" / "leak.html"
    if not link.is_symlink():
        link.symlink_to(night.home / "console-outside.html")
    (night.home / "reports" / ".secret.html").write_text("hidden")
    sign_in(client, AUDITOR)
    answer = client.get(path)
    assert answer.status_code in (400, 404), (path, answer.status_code)
    assert "SQLite format" not in answer.text and "root:" not in answer.text and "outside the reports" not in answer.text


def test_the_data_docs_are_served_read_only_with_scripts_off(client, night):
    from console_helpers import FEED

    sign_in(client, AUDITOR)
    nights = sorted(p.name for p in (night.home / "reports").iterdir() if p.is_dir())
    page = client.get(f"/reports/{nights[-1]}/{FEED}.html")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "sandbox" in page.headers["content-security-policy"] and "script-src" not in page.headers[
        "content-security-policy"]
    assert client.post(f"/reports/{nights[-1]}/{FEED}.html").status_code in (401, 405)
    batch = client.get(f"/failures/{night.batch_id}")
    assert f'href="/reports/{nights[-1]}/{FEED}.html"' in batch.text


def test_the_password_is_stored_as_an_argon2id_hash(night, app):
    from fundx.console import accounts

    stored = accounts.password_hash(app.state.ledger, STEWARD)
    assert stored != PASSWORDS[STEWARD] and PASSWORDS[STEWARD] not in stored
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert accounts.hasher().verify(stored, PASSWORDS[STEWARD])
    with app.state.ledger.engine.connect() as conn:
        everything = " ".join(str(v) for row in conn.execute(sa.select(accounts.console_accounts)) for v in row)
        trail = " ".join(str(v) for row in conn.execute(sa.text("select details from audit")) for v in row)
    assert PASSWORDS[STEWARD] not in everything and PASSWORDS[STEWARD] not in trail
    with pytest.raises(Exception, match="shorter than 12"):
        accounts.add_account(app.state.ledger, "short-pw", "steward", "short", actor="t")


def test_a_session_ends_at_its_expiry_and_at_sign_out(client, night, app):
    from fundx.console import accounts

    sign_in(client, AUDITOR)
    assert client.get("/").status_code == 200
    with app.state.ledger.engine.begin() as conn:
        conn.execute(accounts.console_sessions.update().where(accounts.console_sessions.c.account == AUDITOR)
                     .values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    assert client.get("/").status_code == 303

    sign_in(client, AUDITOR)
    kept = dict(client.cookies)
    assert client.post("/logout", data={"csrf": csrf_of(client)}).status_code == 303
    for k, v in kept.items():
        client.cookies.set(k, v)
    assert client.get("/").status_code == 303  # the old cookie names no session any more


def test_five_wrong_passwords_lock_an_account(client, night, app):
    from fundx.console import accounts

    accounts.add_account(app.state.ledger, "locked-out", "auditor", "a-long-enough-passphrase", actor="t")
    for _ in range(accounts.MAX_FAILURES):
        assert sign_in(client, "locked-out", "wrong-passphrase-xx").status_code == 401
    assert sign_in(client, "locked-out", "a-long-enough-passphrase").status_code == 401


def test_no_identity_number_reaches_a_steward_without_unmasking_nor_the_logs(client, night, app, caplog):
    from fundx.ledger.schema import audit

    assert night.ids, "the sandbox sent identity numbers"
    sign_in(client, STEWARD)
    batch = night.batch_id
    seen = []
    for path in ("/", "/failures", f"/failures/{batch}", f"/failures/{batch}?rule=gender.allowed_values",
                 f"/failures/{batch}?page=2", "/audit", f"/failures/{batch}/rows/1/unmask"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        seen.append(answer.text)
        assert leaked(answer.text, night.ids) == [], path
    assert "********" in seen[2]  # masked, and shown

    # a reason shaped like an identity number is refused before anything is shown or audited
    some_id = sorted(night.ids)[0]
    token = csrf_of(client)
    refused = client.post(f"/failures/{batch}/rows/1/unmask", data={"csrf": token, "reason": f"check {some_id} now"})
    assert refused.status_code == 400 and "identity number" in refused.text and some_id not in refused.text
    form = {"csrf": token, "action": "release", "scope": "selected", "row": ["2"], "reason": f"it is {some_id}"}
    refused = client.post(f"/failures/{batch}/decide", data=form)
    assert refused.status_code == 400 and "identity number" in refused.text and some_id not in refused.text
    assert client.post(f"/failures/{batch}/rows/1/unmask", data={"csrf": token, "reason": "short"}).status_code == 400

    shown = client.post(f"/failures/{batch}/rows/1/unmask",
                        data={"csrf": token, "reason": "agency asked us to confirm the person, ticket 77"})
    assert shown.status_code == 200 and shown.headers["cache-control"] == "no-store"
    (value,) = leaked(shown.text, night.ids) or [None]
    assert value is not None, "the unmasked page shows the whole identity number"
    with app.state.ledger.engine.connect() as conn:
        last = conn.execute(audit.select().where(audit.c.action == "failures.unmask")).mappings().all()
    assert len(last) == 1 and last[0]["actor"] == STEWARD and last[0]["subject"] == batch
    assert '"row":1' in last[0]["details"] and "ticket 77" in last[0]["details"] and value not in last[0]["details"]
    # it is shown once: nothing after shows it again
    for path in (f"/failures/{batch}", "/audit", "/"):
        assert leaked(client.get(path).text, night.ids) == [], path
    assert leaked(caplog.text, night.ids) == [] and PASSWORDS[STEWARD] not in caplog.text
    for payload in PAYLOADS:
        assert payload not in caplog.text


# --- issue 16: the sign-in lock under concurrency, the per-address throttle, decisions on rows 0 and below ---


def _refusals(ledger, name: str) -> list[dict]:
    """The details of the audited refused sign-ins of ``name``, oldest first."""
    import json

    from fundx.ledger.schema import audit

    with ledger.engine.connect() as conn:
        found = conn.execute(sa.select(audit.c.details).where(
            audit.c.action == "console.login_refused", audit.c.subject == name).order_by(audit.c.seq)).scalars()
        return [json.loads(d) for d in found]


def test_fifty_concurrent_wrong_passwords_lock_the_account_and_only_five_are_checked(ledger):
    """The race of issue 16 (30 parallel attempts signed in after 29 failures; bursts of 40 checked 160
    guesses): 50 threads guess at once against a real SQLite, then PostgreSQL, ledger. Each attempt is
    counted before its password is checked, in one UPDATE that decides the lock, so five passwords are
    checked, 45 attempts find the account locked, and then even the right password is refused."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from fundx.console import accounts
    from fundx.ledger.schema import metadata

    metadata.create_all(ledger.engine)  # the console's tables, if the ledger was made before they were imported
    name, right = "raced", "the-right-passphrase-9"
    accounts.add_account(ledger, name, "steward", right, actor="t")
    together = Barrier(50)

    def guess(i: int):
        together.wait(timeout=120)  # all 50 leave the barrier at once
        return accounts.authenticate(ledger, name, f"wrong-guess-number-{i:02d}")

    with ThreadPoolExecutor(50) as pool:
        assert list(pool.map(guess, range(50))) == [None] * 50
    assert accounts.authenticate(ledger, name, right) is None  # locked: the right password is refused too
    refused = _refusals(ledger, name)
    assert refused[-1] == {"locked": True, "attempt": None, "locked_now": False}
    checked = [r for r in refused[:-1] if not r["locked"]]  # the attempts whose password was checked
    assert len(refused) == 51 and len(checked) == accounts.MAX_FAILURES
    assert sorted(r["attempt"] for r in checked) == list(range(1, accounts.MAX_FAILURES + 1))
    assert [r["locked_now"] for r in checked].count(True) == 1
    with ledger.engine.connect() as conn:
        until = conn.execute(sa.select(accounts.console_accounts.c.locked_until).where(
            accounts.console_accounts.c.name == name)).scalar_one()
    assert until > datetime.now(UTC) + accounts.LOCKOUT - timedelta(minutes=5)  # not extended, not shortened

    # when the lock has run out the right password signs in, and the count starts again
    with ledger.transaction() as conn:
        conn.execute(accounts.console_accounts.update().where(accounts.console_accounts.c.name == name).values(
            locked_until=datetime.now(UTC) - timedelta(seconds=1)))
    signed_in = accounts.authenticate(ledger, name, right)
    assert signed_in is not None and signed_in.role == "steward"
    assert accounts.authenticate(ledger, name, "wrong-again-passphrase") is None
    assert _refusals(ledger, name)[-1] == {"locked": False, "attempt": 1, "locked_now": False}
    # an unknown name is refused, counted nowhere and audited nowhere
    assert accounts.authenticate(ledger, "nobody-at-all", right) is None and _refusals(ledger, "nobody-at-all") == []


def test_sign_in_attempts_from_one_address_are_throttled_with_retry_after(night):
    """Password spraying from one address across accounts (each under its own five-failure lock): after
    the address's attempts the form answers 429 with a Retry-After before any password is checked,
    even the right one; another address is not held up, and sign-ins that succeed use up nothing."""
    from fundx.console import accounts
    from fundx.console.app import create_app
    from fundx.console.settings import ConsoleSettings
    from fundx.ledger import Ledger

    ledger = Ledger.from_settings()
    app = create_app(ledger, home=night.home, settings=ConsoleSettings(login_attempts=3, login_window_seconds=600))
    for n in (1, 2):
        accounts.add_account(ledger, f"sprayed-{n}", "auditor", f"sprayed-passphrase-{n}", actor="t")
    with client_for(app, follow_redirects=False, client=("203.0.113.7", 40000)) as attacker:
        for name in ("sprayed-1", "sprayed-2", "sprayed-1"):
            assert sign_in(attacker, name, "a-guessed-passphrase").status_code == 401
        held = sign_in(attacker, "sprayed-2", "sprayed-passphrase-2")
        assert held.status_code == 429 and "Too many sign-in attempts" in held.text
        assert 590 <= int(held.headers["retry-after"]) <= 600
        assert "fundx_console=" not in held.headers.get("set-cookie", "") and "sprayed-passphrase" not in held.text
        assert sign_in(attacker, "sprayed-1", "another-guess-here").status_code == 429
    # three passwords were checked, never the fourth and fifth: the accounts' own counts say so
    assert [r["attempt"] for r in _refusals(ledger, "sprayed-1")] == [1, 2]
    assert [r["attempt"] for r in _refusals(ledger, "sprayed-2")] == [1]
    with client_for(app, follow_redirects=False, client=("198.51.100.9", 40000)) as steward:
        for _ in range(5):
            assert sign_in(steward, "sprayed-2", "sprayed-passphrase-2").status_code == 303
            steward.cookies.clear()
        assert sign_in(steward, "sprayed-2", "one-wrong-passphrase").status_code == 401


def test_the_sign_in_throttle_forgets_the_least_recently_seen_address_and_lets_a_wait_through():
    from fundx.console.throttle import Throttle

    now = [1000.0]
    throttle = Throttle(2, 60, 100, clock=lambda: now[0])
    assert throttle.take("a") is None and throttle.take("a") is None
    assert throttle.take("a") == 60
    now[0] += 59.5
    assert throttle.take("a") == pytest.approx(0.5)
    now[0] += 0.5
    assert throttle.take("a") is None  # both attempts left the window
    assert throttle.take("a") is None and throttle.take("a") is not None
    throttle.give_back("a")  # a sign-in that succeeded
    assert throttle.take("a") is None and throttle.take("a") is not None
    for i in range(1000):  # bounded memory: the least recently seen go first
        throttle.take(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle) == 100 and throttle.take("a") is None  # "a" was forgotten with its attempts


#: row selections a steward's form (or a forged one) may carry that name no row of the batch
HOSTILE_ROWS = (["0"], ["-1"], ["1", "0"], ["-5"], ["0-3"], ["+1"], ["1_0"], ["1.0"], ["١"], ["2e3"],
                ["99999999999999999999"], ["330106195001011234"], ["1-99999999"], [","])


def test_decisions_naming_rows_0_and_below_or_past_the_batch_are_refused_by_console_and_cli(client, night, app):
    """Issue 16: the console took rows 0 and -1, which became "released" deliveries of 0 rows while
    the real rows stayed undecided. Both front doors now parse with quarantine.parse_rows, and
    quarantine.decide refuses any row < 1 or > the batch's count, and an empty selection, before
    recording anything."""
    from typer.testing import CliRunner

    from fundx.cli import app as cli
    from fundx.core.errors import DecisionError
    from fundx.exchange import quarantine

    ledger, batch = app.state.ledger, night.batch_id
    before = quarantine.decisions_of(ledger, batch_id=batch)
    past = str(night.quarantined + 1)
    sign_in(client, STEWARD)
    token = csrf_of(client, f"/failures/{batch}")
    for rows in (*HOSTILE_ROWS, [past], ["1", past]):
        answer = client.post(f"/failures/{batch}/decide", data={
            "csrf": token, "action": "release", "scope": "selected", "row": rows,
            "reason": "agency confirmed the rows by phone"})
        assert answer.status_code == 400, rows
        assert "row" in answer.text and "330106195001011234" not in answer.text, rows
    refused = client.post(f"/failures/{batch}/decide", data={
        "csrf": token, "action": "reject", "scope": "selected", "row": ["0"], "reason": "not real rows at all"})
    assert refused.status_code == 400 and "&#39;0&#39; is not a row number from 1" in refused.text

    runner = CliRunner()
    old = os.umask(0o022)
    try:
        for text in ("0", "-1", "0,1", "-3-2", "0-3", past, f"1-{past}", "", ",", "330106195001011234"):
            done = runner.invoke(cli, ["failures", "release", batch, f"--rows={text}", "--reason",
                                       "agency confirmed the rows by phone", "--account", STEWARD],
                                 input=PASSWORDS[STEWARD] + "\n")
            assert done.exit_code == 1 and "error:" in done.output, (text, done.output)
            assert "330106195001011234" not in done.output
    finally:
        os.umask(old)
    for rows in ([0], [-1], [], [1, night.quarantined + 1], ["1"]):
        with pytest.raises(DecisionError):
            quarantine.decide(ledger, batch, "release", rows=rows, reason="agency confirmed by phone", actor="t")
    assert quarantine.decisions_of(ledger, batch_id=batch) == before
