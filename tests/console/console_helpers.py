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


def client_for(app, **options):
    """FastAPI's TestClient (its import warns that starlette would like httpx2; httpx is what is pinned)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(app, **options)
