"""What the console tests share: the feed, the payloads planted in it, the accounts, leak checks."""

from __future__ import annotations

import re
import warnings

FEED, STAGE = "police.deaths", "death_matching"
END = "2026-11-23T00:00:00+08:00"
NEXT_END = "2026-11-24T00:00:00+08:00"
#: planted into the gender column of the first rows: the contract's allowed-values rule fails, and the
#: console shows the value (a broken rule looks at it) — it must arrive as text, never as markup
PAYLOADS = ("<script>alert(1)</script>", '"><img src=x onerror=alert(2)>', "<svg onload=alert(3)>")
STEWARD, AUDITOR = "wang", "auditor-li"
PASSWORDS = {STEWARD: "steward-passphrase-42", AUDITOR: "auditor-passphrase-42"}
ID = re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])")


def leaked(text: str, ids) -> list[str]:
    """The identity numbers of ``ids`` that occur in ``text``."""
    return sorted(i for i in ids if i in text)


def client_for(app, lang: str | None = "en", **options):
    """FastAPI's TestClient (its import warns that starlette would like httpx2; httpx is what is pinned), with the
    language cookie of ``lang`` (the language switch's; None: none, i.e. the console's default, zh_CN). The tests
    written before the console spoke Chinese read its English."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    client = TestClient(app, **options)
    if lang is not None:
        client.cookies.set("fundx_lang", lang)
    return client


# --- cases (issue 20, part 6) ------------------------------------------------------------------------------------

INSPECTOR_A, INSPECTOR_B, SUPERVISOR = "inspector-zhang", "inspector-liu", "supervisor-chen"
PASSWORDS.update({INSPECTOR_A: "inspector-a-passphrase-42", INSPECTOR_B: "inspector-b-passphrase-42",
                  SUPERVISOR: "supervisor-passphrase-42"})
CASE_ACCOUNTS = ((INSPECTOR_A, "inspector"), (INSPECTOR_B, "inspector"), (SUPERVISOR, "supervisor"))
#: the subjects' tokens (a person's HMAC token in hex): never on a page or in a log
SUBJECTS = ("5f1e" * 8, "a07c" * 8, "93d2" * 8)


def seed_cases(ledger, *, accounts_too: bool = True) -> list[str]:
    """Three cases in the ledger — a death paid on (西湖区, above the pension referral threshold), a prisoner
    paid (拱墅区), and one found long ago and overdue (西湖区) — and the case accounts; their order ids."""
    import json
    from datetime import date, timedelta

    import pandas as pd

    from fundx.console import accounts
    from matching import lifecycle as lc
    from matching import orders as mo

    if accounts_too:
        for name, role in CASE_ACCOUNTS:
            accounts.add_account(ledger, name, role, PASSWORDS[name], actor="test-admin")
    today = date.today()
    rows = [
        {"rule": "paid_after_death", "subject": SUBJECTS[0], "id_masked": "330106********123X", "area": "330106",
         "amount_at_risk": 12600.0, "months": 3,
         "detail": json.dumps({"sources": {"police.deaths": {"died": "2026-08"}}, "paid_months": ["2026-09", "2026-10",
                                                                                                 "2026-11"]})},
        {"rule": "paid_in_custody", "subject": SUBJECTS[1], "id_masked": "330105********4521", "area": "330105",
         "amount_at_risk": 4200.0, "months": 1,
         "detail": json.dumps({"custody": "2026-10", "benefits": ["pension"], "paid_months": ["2026-11"]})},
    ]
    made = mo.record(ledger, today - timedelta(days=1), pd.DataFrame(rows, columns=list(mo.COLUMNS)),
                     due_days=lc.DUE_DAYS)
    old = [{"rule": "paid_after_death", "subject": SUBJECTS[2], "id_masked": "330106********0018", "area": "330106",
            "amount_at_risk": 2100.0, "months": 1, "detail": json.dumps({"sources": {"police.deaths": {}}})}]
    late = mo.record(ledger, today - timedelta(days=40), pd.DataFrame(old, columns=list(mo.COLUMNS)),
                     due_days=lc.DUE_DAYS)
    return [o.order_id for o in made] + [o.order_id for o in late]


def served_console(home, env: dict[str, str]):
    """`fundx console` on a free loopback port for the browser tests, its output in ``home``/console.log: a
    generator for a module fixture (yields the base URL and the log's path, stops the server after)."""
    import socket
    import subprocess
    import sys
    import time

    import httpx
    import pytest

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = home / "console.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "fundx", "console", "--port", str(port)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**env, "FUNDX_HOME": str(home)})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/login", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"fundx console did not start: {log_path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)
    yield base, log_path
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
