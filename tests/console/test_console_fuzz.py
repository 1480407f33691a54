"""The console under abuse (issue 22, part 5): every route and form, fuzzed with hypothesis.

Each request is what a hostile or clumsy client sends: path segments that are traversals, NULs,
10,000 characters, markup or identity numbers; query strings with pages below 1, past any batch, not
numbers at all; forms with missing, repeated, oversized and forged fields; anonymous, as an auditor and
as a steward. Whatever comes in, the console answers below 500 — a refusal is a 4xx (or the sign-in
redirect), never a traceback — and no identity number reaches a response or the logs: neither the
batch's own rows (only the audited unmask shows one, and it is not fuzzed into success here) nor one
the client put in its own input, which is echoed masked if at all.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

import pytest
from console_helpers import (
    AUDITOR,
    INSPECTOR_A,
    PASSWORDS,
    STEWARD,
    SUBJECTS,
    SUPERVISOR,
    client_for,
    leaked,
    seed_cases,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
#: the statuses a refusal may have; a success is 200, a redirect 303 (sign-in, after a decision) or 307
#: (Starlette's trailing slash)
FINE = {200, 303, 307, 400, 401, 403, 404, 405, 409, 413, 422, 429}
#: synthetic, checksum-valid identity numbers a client types into fields (never the batch's)
TYPED_IDS = ("11010519491231002X", "330106196501010016", "210102195806150037")

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "0", "-1", "1e9", "99999999999999999999", "../../etc/passwd", "..%2f..%2fkeys",
                     "%00", "\x00", "<script>alert(1)</script>", "' OR 1=1 --", "𠀋𡈽", "x" * 10_000,
                     *TYPED_IDS, f"ticket {TYPED_IDS[0]}"]),
)


@pytest.fixture(scope="module")
def app(night):
    from fundx.console.app import create_app
    from fundx.ledger import Ledger

    ledger = Ledger.from_settings()
    made = create_app(ledger, home=night.home)
    made.state.cases = seed_cases(ledger)  # the cases' pages and steps (issue 20, part 6)
    return made


def _client(app, who: str | None):
    """A client signed in as ``who`` (None: anonymous), and its form token."""
    client = client_for(app, follow_redirects=False)
    if who is None:
        return client, "no-token"
    form = client.get("/login")
    token = CSRF.search(form.text).group(1)
    answer = client.post("/login", data={"csrf": token, "name": who, "password": PASSWORDS[who], "next": "/"})
    assert answer.status_code == 303, answer.text
    page = client.get("/")
    return client, CSRF.search(page.text).group(1)


@pytest.fixture(scope="module")
def clients(app):
    """Anonymous, auditor, steward, inspector and supervisor clients, signed in once for the module (sign-ins are
    throttled)."""
    made = {who: _client(app, who) for who in (None, AUDITOR, STEWARD, INSPECTOR_A, SUPERVISOR)}
    yield made
    for client, _ in made.values():
        client.close()


def _check(answer, night, where: str) -> None:
    assert answer.status_code in FINE, f"{where}: {answer.status_code} {answer.text[:300]}"
    body = answer.text
    assert leaked(body, night.ids) == [], f"{where}: a row's identity number in the response"
    assert leaked(body, TYPED_IDS) == [], f"{where}: a typed identity number echoed unmasked"
    assert "Traceback" not in body, where
    assert not any(s in body for s in SUBJECTS), f"{where}: a case's subject token in the response"


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def _no_trace(logs, night) -> None:
    """Nothing the console logged holds an identity number or a password (the test client's own request
    lines, logger "httpx", are this test's; the console's server runs without an access log)."""
    text = "\n".join(r.getMessage() for r in logs.records if not r.name.startswith(("httpx", "httpcore")))
    assert leaked(text, night.ids) == [] and leaked(text, TYPED_IDS) == []
    assert all(p not in text for p in PASSWORDS.values())


@FUZZ
@given(who=st.sampled_from([None, AUDITOR, STEWARD, INSPECTOR_A, SUPERVISOR]), segment=hostile_text, page=hostile_text,
       rule=hostile_text,
       route=st.sampled_from(["/nights/{x}", "/failures/{x}", "/failures/{batch}?page={page}&rule={rule}",
                              "/failures/{batch}/rows/{x}/unmask", "/reports/{x}", "/failures?feed={x}",
                              "/audit?page={page}", "/login?next={x}", "/{x}",
                              "/cases?stage={x}", "/cases/district?district={x}&stage={page}", "/cases/overdue?stage={x}",
                              "/cases/{x}", "/cases/{case}?done={x}", "/cases/{x}/step", "/language/{x}?next={page}",
                              "/language/en?next={x}"]))
def test_every_page_answers_hostile_paths_and_queries_below_500_without_a_trace(clients, night, app, logs, who,
                                                                                 segment, page, rule, route):
    client, _ = clients[who]
    path = route.format(x=quote(segment, safe=""), batch=night.batch_id, page=quote(page, safe=""),
                        rule=quote(rule, safe=""), case=app.state.cases[0])
    _check(client.get(path), night, f"GET {route} as {who}")
    _no_trace(logs, night)


@FUZZ
@given(who=st.sampled_from([None, AUDITOR, STEWARD, INSPECTOR_A, SUPERVISOR]), forged=st.booleans(),
       case=st.one_of(st.sampled_from([0, 1, 2]), hostile_text),
       step=st.one_of(st.sampled_from(["take", "submit", "approve", "return", "accept", "send_back"]), hostile_text),
       outcome=st.one_of(st.sampled_from(["confirmed", "false-positive", "recovered", "referred"]), hostile_text),
       amount=st.one_of(st.sampled_from(["0", "12.5", "-1", "nan", "inf", "1e400", "1,000"]), hostile_text),
       referral_to=st.one_of(st.sampled_from(["police", "discipline", ""]), hostile_text),
       referral_no=hostile_text, text=hostile_text)
def test_hostile_case_steps_get_a_4xx_or_a_step_the_lifecycle_allows(clients, night, app, logs, who, forged, case,
                                                                      step, outcome, amount, referral_to, referral_no,
                                                                      text):
    from matching import lifecycle as lc
    from matching import orders as mo

    client, token = clients[who]
    order_id = app.state.cases[case] if isinstance(case, int) else case
    before = mo.get(app.state.ledger, order_id) if isinstance(case, int) else None
    answer = client.post(f"/cases/{quote(order_id, safe='')}/step",
                         data={"csrf": "forged" if forged else token, "step": step, "outcome": outcome,
                               "amount": amount, "referral_to": referral_to, "referral_no": referral_no,
                               "note": text, "reason": text})
    _check(answer, night, f"POST case step as {who}")
    if answer.status_code == 303 and who is not None:
        assert answer.headers["location"] == f"/cases/{order_id}?done={step}", answer.headers["location"]
        assert not forged and who in (INSPECTOR_A, SUPERVISOR)
        after = mo.get(app.state.ledger, order_id)
        assert before is not None and after is not None and after.stage != before.stage
        assert lc.events(app.state.ledger, order_id)[-1]["actor"] == who
    elif before is not None:
        assert mo.get(app.state.ledger, order_id).stage == before.stage, "a refused step changed the case"
    _no_trace(logs, night)


row_numbers = st.lists(st.one_of(st.integers(-10, 12).map(str), st.integers(-10**12, 10**12).map(str),
                                  st.sampled_from(["1-3", "3-1", "1,2", "2-", "-", "1-99999999"]), hostile_text),
                       max_size=5)


@FUZZ
@given(action=st.one_of(st.sampled_from(["release", "reject"]), hostile_text),
       scope=st.one_of(st.sampled_from(["selected", "rule", "all"]), hostile_text), rows=row_numbers,
       rule=st.one_of(st.sampled_from(["gender.allowed_values", "id_number.valid", "no.such_rule"]), hostile_text),
       reason=st.one_of(st.sampled_from(["agency confirmed the values are right, ticket 12"]), hostile_text))
def test_a_steward_s_hostile_decisions_get_a_4xx_and_an_accepted_one_names_real_rows(clients, night, app, logs,
                                                                                      action, scope, rows, rule,
                                                                                      reason):
    from fundx.exchange import quarantine

    client, token = clients[STEWARD]
    before = quarantine.decisions_of(app.state.ledger, batch_id=night.batch_id)
    answer = client.post(f"/failures/{night.batch_id}/decide",
                         data={"csrf": token, "action": action, "scope": scope, "row": rows, "rule": rule,
                               "reason": reason})
    _check(answer, night, "POST decide")
    after = quarantine.decisions_of(app.state.ledger, batch_id=night.batch_id)
    if answer.status_code != 303:
        assert len(after) == len(before), "a refused decision recorded one"
    for made in after[len(before):]:  # an accepted decision names real rows of the batch, 1 and above
        assert all(1 <= r <= night.quarantined for r in made.rows), made.rows
        assert not any(i in made.reason for i in TYPED_IDS)
    _no_trace(logs, night)


@FUZZ
@given(who=st.sampled_from([None, AUDITOR, STEWARD]), forged=st.booleans(), rows=row_numbers)
def test_decisions_without_a_steward_s_session_and_token_are_refused_and_record_nothing(clients, night, app, logs,
                                                                                       who, forged, rows):
    from fundx.exchange import quarantine

    if who == STEWARD and not forged:
        forged = True  # the steward with the right token is the test above
    client, token = clients[who]
    before = quarantine.decisions_of(app.state.ledger, batch_id=night.batch_id)
    answer = client.post(f"/failures/{night.batch_id}/decide",
                         data={"csrf": "forged" if forged else token, "action": "release", "scope": "selected",
                               "row": rows, "reason": "agency confirmed the values are right, ticket 12"})
    _check(answer, night, f"POST decide as {who}")
    assert answer.status_code in (303, 400, 401, 403), answer.status_code
    if answer.status_code == 303:
        assert answer.headers["location"].startswith("/login"), "only the sign-in redirect"
    assert len(quarantine.decisions_of(app.state.ledger, batch_id=night.batch_id)) == len(before)
    _no_trace(logs, night)


@FUZZ
@given(who=st.sampled_from([None, AUDITOR, STEWARD]), forged=st.booleans(), row=hostile_text,
       reason=st.one_of(st.sampled_from(["", "short", "x" * 10_000, f"check {TYPED_IDS[1]} please"]),
                        st.text(max_size=9)))
def test_unmask_refuses_hostile_rows_and_reasons_without_showing_anything(clients, night, logs, who, forged, row,
                                                                          reason):
    client, token = clients[who]
    answer = client.post(f"/failures/{night.batch_id}/rows/{quote(row, safe='')}/unmask",
                         data={"csrf": "forged" if forged else token, "reason": reason})
    _check(answer, night, f"POST unmask as {who}")
    assert answer.status_code != 200, "a reason too short, too long or holding an identity number unmasked a row"
    _no_trace(logs, night)


@FUZZ
@given(name=hostile_text, password=hostile_text, nxt=hostile_text, forged=st.booleans())
def test_sign_in_refuses_hostile_forms_and_never_redirects_off_site(app, night, logs, name, password, nxt, forged):
    with client_for(app, follow_redirects=False, client=(f"198.51.100.{len(name) % 250}", 1)) as client:
        form = client.get("/login")
        token = CSRF.search(form.text).group(1)
        answer = client.post("/login", data={"csrf": "forged" if forged else token, "name": name,
                                             "password": password, "next": nxt})
        _check(answer, night, "POST login")
        if answer.status_code == 303:
            target = answer.headers["location"]
            assert target.startswith("/") and not target.startswith("//"), target
    _no_trace(logs, night)


def test_oversized_and_malformed_bodies_get_a_4xx(clients, night, logs):
    client, token = clients[STEWARD]
    big = {"csrf": token, "action": "release", "scope": "selected", "row": ["1"] * 50_000, "reason": "x" * 20}
    answers = [
        client.post(f"/failures/{night.batch_id}/decide", data=big),
        client.post(f"/failures/{night.batch_id}/decide", content=b"\xff\xfe\x00garbage",
                    headers={"content-type": "application/x-www-form-urlencoded"}),
        client.post(f"/failures/{night.batch_id}/decide", content=b"--x\r\nbroken multipart",
                    headers={"content-type": "multipart/form-data; boundary=x"}),
        client.post(f"/failures/{night.batch_id}/decide", json={"csrf": token, "action": "release"}),
        client.post("/logout", data={"csrf": "forged"}),
    ]
    for number, answer in enumerate(answers):
        _check(answer, night, f"body {number}")
        assert 400 <= answer.status_code < 500 or answer.status_code == 303, (number, answer.status_code)
    _no_trace(logs, night)
