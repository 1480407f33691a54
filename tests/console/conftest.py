"""Fixtures for the stewards' console: a sandbox, one night of police.deaths with rows spoiled by an
HTML/JS payload (so they are quarantined and shown), a steward and an auditor account.

The night is module-scoped (a run costs seconds): each test module gets its own home and ledger; the agencies
it is pulled from are the session's (one city of 10,000 people, started once).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest
from console_helpers import AUDITOR, END, FEED, ID, PASSWORDS, PAYLOADS, STEWARD


@dataclass
class Night:
    """One night with a quarantined batch, and what the tests need to know of it."""

    home: Path
    batch_id: str
    quarantined: int
    ids: frozenset[str]  # every identity number the agency sent in the window (raw and normalised)
    sandbox: object


def _planting(feed: str, window, **_options):
    """A pull whose first rows carry the payloads in their gender column (an agency's broken export)."""
    from connectors import connector_for
    from fundx.core.digest import content_digest

    pulled = connector_for(feed).extract(window)
    frame = pulled.frame.copy()
    for i, payload in enumerate(PAYLOADS):
        frame.loc[frame.index[i], "gender"] = payload
    return dataclasses.replace(pulled, frame=frame, digest=content_digest(frame))


@pytest.fixture(scope="session")
def console_sandbox(sandbox_factory):
    """The agencies every console module pulls its night from: started once (no test arms a fault at them)."""
    with sandbox_factory("console", people=10_000) as sb:
        yield sb


@pytest.fixture(scope="module")
def night(run_dir, keys_dir, console_sandbox, request):
    """A home of the module's own: the sandbox's police.deaths pulled once, three rows spoiled, two accounts."""
    from fundx.console import accounts
    from fundx.core.settings import reload_settings
    from fundx.core.timeutil import aware
    from fundx.exchange import quarantine
    from fundx.exchange.run import run_feed
    from fundx.ledger import Ledger

    name = request.module.__name__.rsplit(".", 1)[-1]
    base = run_dir / f"console-{name}"
    sb = console_sandbox
    with pytest.MonkeyPatch.context() as mp:
        for key, value in sb.env.items():
            mp.setenv(key, value)
        home = base / "home"
        mp.setenv("FUNDX_HOME", str(home))
        mp.delenv("FUNDX_LEDGER_URL", raising=False)
        mp.setenv("FUNDX_KEYS_DIR", str(keys_dir))
        mp.setenv("FUNDX_STEWARD", "test-admin")
        mp.delenv("FUNDX_CONSOLE_SECRET", raising=False)
        reload_settings()
        try:
            done = run_feed(FEED, end=END, pull=_planting)
            ledger = Ledger.from_settings()
            for account, role in ((STEWARD, "steward"), (AUDITOR, "auditor")):
                accounts.add_account(ledger, account, role, PASSWORDS[account], actor="test-admin")
            raw = sb.expected(FEED, aware("2020-01-01"), aware(END))["id_number"].astype(str)
            kept = quarantine.read_rows(ledger, done.handoff.batch_id)["id_number"].astype(str)
            ids = {v.strip() for v in (*raw, *kept) if ID.search(v.strip())}
            ids |= {v.upper() for v in ids}
            yield Night(home=home, batch_id=done.handoff.batch_id, quarantined=done.quarantined,
                        ids=frozenset(ids), sandbox=sb)
        finally:
            reload_settings()

