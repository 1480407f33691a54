"""The cases' pages (issue 20, part 6) through FastAPI's TestClient, over a ledger of their own (no night): in Chinese
by default, a case walked from issue to acceptance by two inspectors and a supervisor, the second review refused to
the first reviewer, each step refused to the wrong role or out of its stage with a page that says why, every view and
step audited, and no subject token or identity number on a page."""

from __future__ import annotations

import re

import pytest
from console_helpers import (
    AUDITOR,
    INSPECTOR_A,
    INSPECTOR_B,
    PASSWORDS,
    STEWARD,
    SUBJECTS,
    SUPERVISOR,
    client_for,
    seed_cases,
)

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
#: a checksum-valid identity number a client types into a note
TYPED_ID = "11010519491231002X"


@pytest.fixture
def console(tmp_path, monkeypatch):
    from fundx.console import accounts
    from fundx.console.app import create_app
    from fundx.core.settings import reload_settings
    from fundx.ledger import Ledger

    monkeypatch.setenv("FUNDX_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FUNDX_LEDGER_URL", raising=False)
    monkeypatch.delenv("FUNDX_CONSOLE_SECRET", raising=False)
    reload_settings()
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ids = seed_cases(ledger)
    for name, role in ((STEWARD, "steward"), (AUDITOR, "auditor")):
        accounts.add_account(ledger, name, role, PASSWORDS[name], actor="test-admin")
    app = create_app(ledger, home=tmp_path / "home")
    yield app, ledger, ids
    reload_settings()


def signed_in(app, who: str, lang: str | None = None):
    client = client_for(app, lang=lang, follow_redirects=False)
    token = CSRF.search(client.get("/login").text).group(1)
    answer = client.post("/login", data={"csrf": token, "name": who, "password": PASSWORDS[who], "next": "/"})
    assert answer.status_code == 303, answer.text
    return client, CSRF.search(client.get("/cases").text).group(1)


def step(client, token: str, case: str, **form):
    return client.post(f"/cases/{case}/step", data={"csrf": token, **form})


def audited(ledger, prefix: str = "case.") -> list[tuple[str, str, str]]:
    from fundx.ledger.schema import audit

    with ledger.engine.connect() as conn:
        rows = conn.execute(audit.select().where(audit.c.action.like(prefix + "%")).order_by(audit.c.seq)).mappings()
        return [(r["action"], r["subject"], r["actor"]) for r in rows]


def no_secrets(text: str) -> None:
    assert not any(s in text for s in SUBJECTS), "a subject token on a page"
    assert TYPED_ID not in text
    assert not re.search(r"(?<![0-9])\d{17}[\dXx](?![0-9])", text), "an identity number on a page"


def test_a_case_walks_from_issue_to_acceptance_in_chinese_and_the_first_reviewer_cannot_second_review(console):
    app, ledger, (case, other, _late) = console
    a, ta = signed_in(app, INSPECTOR_A)
    mine = a.get("/cases")
    assert mine.status_code == 200 and '<html lang="zh-CN">' in mine.text and "我的待办" in mine.text
    assert case in mine.text and other in mine.text and "死亡未停发" in mine.text
    no_secrets(mine.text)

    page = a.get(f"/cases/{case}")
    assert "西湖区" in page.text and "330106********123X" in page.text and "12,600.00 元" in page.text
    assert "应移送" in page.text and 'id="take"' in page.text and "已下发" in page.text
    assert "police.deaths" in page.text  # the evidence of the night it was found
    no_secrets(page.text)

    assert step(a, ta, case, step="take").headers["location"] == f"/cases/{case}?done=take"
    done = step(a, ta, case, step="submit", outcome="confirmed", amount="0", note="派出所出具死亡证明，已停发")
    assert done.status_code == 303
    assert step(a, ta, case, step="approve").status_code == 303  # first review (初审)

    refused = step(a, ta, case, step="approve")  # the first reviewer tries the second review (复核)
    assert refused.status_code == 409 and "你已做过初审，复核须由另一账户进行" in refused.text
    refused = step(a, ta, case, step="return", reason="我想退回")
    assert refused.status_code == 409 and "你已做过初审" in refused.text

    b, tb = signed_in(app, INSPECTOR_B)
    assert case in b.get("/cases").text  # the second review waits for B
    assert case not in a.get("/cases").text  # not for A
    early = step(b, tb, case, step="accept")
    assert early.status_code == 403 and "督办主管" in early.text
    assert step(b, tb, case, step="approve").status_code == 303

    s, ts = signed_in(app, SUPERVISOR)
    assert case in s.get("/cases").text
    assert step(s, ts, case, step="take").status_code == 403
    assert step(s, ts, case, step="accept", reason="材料齐全").status_code == 303
    final = s.get(f"/cases/{case}")
    assert '<span class="stage stage-accepted" id="stage">已验收</span>' in final.text
    for who in (INSPECTOR_A, INSPECTOR_B, SUPERVISOR):
        assert f'<td class="who">{who}</td>' in final.text
    assert [a for a, _, _ in audited(ledger) if a not in ("case.listed", "case.viewed")] == [
        "case.take", "case.submit", "case.first_review", "case.refused", "case.refused", "case.refused",
        "case.second_review", "case.refused", "case.accept"]
    actions = audited(ledger)
    assert ("case.viewed", case, INSPECTOR_A) in actions and ("case.listed", "all", SUPERVISOR) in actions
    assert ("case.second_review", case, INSPECTOR_B) in actions and ("case.accept", case, SUPERVISOR) in actions
    again = step(s, ts, case, step="send_back", reason="再看看")
    assert again.status_code == 409 and "已验收" in again.text


def test_readers_read_cases_and_every_step_they_post_is_refused(console):
    app, ledger, (case, _other, _late) = console
    for who in (AUDITOR, STEWARD):
        client, token = signed_in(app, who)
        listing = client.get("/cases")
        assert listing.status_code == 200 and "全部案件" in listing.text and case in listing.text
        page = client.get(f"/cases/{case}")
        assert page.status_code == 200 and 'id="read-only"' in page.text and 'id="take"' not in page.text
        for form in ({"step": "take"}, {"step": "accept"}, {"step": "approve"}):
            refused = step(client, token, case, **form)
            assert refused.status_code == 403, (who, form)
        assert client.post(f"/cases/{case}/step", data={"csrf": "forged", "step": "take"}).status_code == 403
    from matching import orders as mo

    assert mo.get(ledger, case).stage == "issued"
    # the steward pages keep working for a steward
    client, _ = signed_in(app, STEWARD, lang="en")
    assert client.get("/failures").status_code == 200 and client.get("/audit").status_code == 200


def test_the_district_and_overdue_lists_are_audited_and_filter(console):
    app, ledger, (case, other, late) = console
    a, _ = signed_in(app, INSPECTOR_A)
    everywhere = a.get("/cases/district")
    assert everywhere.status_code == 200 and 'id="per-district"' in everywhere.text and "拱墅区" in everywhere.text
    west = a.get("/cases/district", params={"district": "西湖区"})
    assert case in west.text and late in west.text and other not in west.text
    assert a.get("/cases/district", params={"district": "火星区"}).status_code == 404
    overdue = a.get("/cases/overdue")
    assert late in overdue.text and case not in overdue.text and "超期" in overdue.text
    closed = a.get("/cases", params={"stage": "closed"})
    assert closed.status_code == 200 and 'id="no-cases"' in closed.text
    listed = [s for action, s, who in audited(ledger) if action == "case.listed" and who == INSPECTOR_A]
    assert "西湖区" in listed and listed.count("all") >= 3
    for text in (everywhere.text, west.text, overdue.text):
        no_secrets(text)


@pytest.mark.parametrize(("form", "words"), [
    ({"outcome": "nothing"}, "请选择核查结果"),
    ({"outcome": "recovered", "amount": "abc"}, "追回金额须为不小于 0 的数字"),
    ({"outcome": "recovered", "amount": "0"}, "须填写追回金额"),
    ({"outcome": "false-positive", "amount": "5"}, "误报没有追回金额"),
    ({"outcome": "referred", "amount": "0", "referral_to": "police"}, "须填写移送编号"),
    ({"outcome": "referred", "amount": "0", "referral_to": "mars", "referral_no": "X1"}, "公安机关或纪检监察机关"),
    ({"outcome": "confirmed", "note": f"身份证 {TYPED_ID}"}, "形似身份证号"),
    ({"outcome": "confirmed", "note": "长" * 600}, "超过 500 个字符"),
])
def test_an_incomplete_finding_is_refused_in_chinese_without_echoing_an_identity_number(console, form, words):
    app, ledger, (case, _other, _late) = console
    a, ta = signed_in(app, INSPECTOR_A)
    assert step(a, ta, case, step="take").status_code == 303
    refused = step(a, ta, case, step="submit", **form)
    assert refused.status_code == 400 and words in refused.text, refused.text[-3000:]
    no_secrets(refused.text)
    from matching import orders as mo

    assert mo.get(ledger, case).stage == "in_progress"


def test_another_inspector_cannot_submit_a_taken_case_and_a_return_needs_its_reason(console):
    app, _ledger, (case, _other, _late) = console
    a, ta = signed_in(app, INSPECTOR_A)
    b, tb = signed_in(app, INSPECTOR_B)
    assert step(a, ta, case, step="take").status_code == 303
    assert step(b, tb, case, step="take").status_code == 409
    refused = step(b, tb, case, step="submit", outcome="false-positive", amount="0")
    assert refused.status_code == 409 and INSPECTOR_A in refused.text and 'id="not-yours"' in refused.text
    assert step(a, ta, case, step="submit", outcome="referred", amount="0", referral_to="police",
                referral_no="HZ-2026-0042").status_code == 303
    assert step(b, tb, case, step="return").status_code == 400
    assert step(b, tb, case, step="return", reason="移送编号需核对").status_code == 303
    page = a.get(f"/cases/{case}")
    assert "退回重新核查" in page.text and "移送编号需核对" in page.text


def test_english_is_one_switch_away_and_stays_chosen(console):
    app, _ledger, (case, _other, _late) = console
    a, _ = signed_in(app, INSPECTOR_A)
    switched = a.get("/language/en", params={"next": f"/cases/{case}"})
    assert switched.status_code == 303 and switched.headers["location"] == f"/cases/{case}"
    assert "fundx_lang=en" in switched.headers["set-cookie"]
    page = a.get(f"/cases/{case}")
    assert '<html lang="en">' in page.text and "Take the case" in page.text and "接办" not in page.text
    assert a.get("/language/fr").status_code == 404
    assert a.get("/language/en", params={"next": "//evil.example/"}).headers["location"] == "/"
    back = a.get("/language/zh_CN", params={"next": "/cases"})
    assert back.status_code == 303 and "我的待办" in a.get("/cases").text
