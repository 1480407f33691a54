"""The nights' figures and trend from a ledger written by hand (three nights, a held batch, a release,
breaches), and the page that shows them."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta

import pytest
from console_helpers import client_for

from fundx.core.timeutil import UTC

FEED = "police.deaths"
NIGHTS = ("2026-11-21", "2026-11-22", "2026-11-23")


@pytest.fixture
def ledger(tmp_path):
    from fundx.console import accounts  # noqa: F401  (its tables)
    from fundx.ledger import Ledger
    from fundx.ledger.schema import breaches, deliveries, pulls, quarantines, runs

    led = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    t0 = datetime(2026, 11, 20, 18, tzinfo=UTC)
    with led.engine.begin() as conn:
        for i, night in enumerate(NIGHTS):
            at = t0 + timedelta(days=i)
            run = conn.execute(runs.insert().values(uid=str(uuid.uuid4()), kind="night", night=night, started_at=at,
                                                    ended_at=at, outcome="completed", feeds=2,
                                                    feeds_failed=0)).inserted_primary_key[0]

            def pull(feed, outcome, rows, *, run=run, at=at):
                return conn.execute(pulls.insert().values(
                    run_id=run, feed=feed, window_start=at - timedelta(days=1), window_end=at, backfill=False,
                    started_at=at, ended_at=at, duration_s=1.0, outcome=outcome, rows=rows,
                    error_type="AuthError" if outcome == "failed" else None)).inserted_primary_key[0]

            def delivered(batch, feed, rows, status, pull_id, *, run=run, at=at):
                conn.execute(deliveries.insert().values(
                    batch_id=batch, feed=feed, stage="death_matching", window_start=at, window_end=at, digest="d",
                    rows=rows, parts=1, status=status, attempts=1, run_id=run, pull_id=pull_id, created_at=at,
                    updated_at=at))

            if night == "2026-11-22":  # held whole
                p = pull(FEED, "held", 50)
                conn.execute(quarantines.insert().values(
                    batch_id=f"b-{night}", feed=FEED, night=night, run_id=run, pull_id=p, window_start=at,
                    window_end=at, digest="d", pulled=50, valid=0, quarantined=50, held=True, reason="too many",
                    parts=1, bytes=1, created_at=at))
                conn.execute(breaches.insert().values(night=night, feed=FEED, rule="error_rate", severity="critical",
                                                      expected="<= 5 %", observed="100 %", status="open", opened_at=at))
            else:
                p = pull(FEED, "pulled", 100)
                conn.execute(quarantines.insert().values(
                    batch_id=f"b-{night}", feed=FEED, night=night, run_id=run, pull_id=p, window_start=at,
                    window_end=at, digest="d", pulled=100, valid=96, quarantined=4, held=False, reason=None,
                    parts=1, bytes=1, created_at=at))
                delivered(f"v-{night}", FEED, 96, "acknowledged" if night == NIGHTS[0] else "ready", p)
            if night == NIGHTS[-1]:
                delivered(f"b-{NIGHTS[1]}-r1", FEED, 50, "ready", None)  # the held batch, released
                pull("justice.prisoners", "failed", None)
                conn.execute(breaches.insert().values(night=night, feed="justice.prisoners", rule="missing",
                                                      severity="critical", expected="a batch", observed="none",
                                                      status="recovered", opened_at=at))
    yield led
    led.dispose()


def test_figures_per_feed_and_night(ledger):
    from fundx.console import nights

    assert nights.nights(ledger) == list(reversed(NIGHTS))
    first, held, last = (nights.night_table(ledger, n, [FEED, "justice.prisoners"]) for n in NIGHTS)
    police = {f.feed: f for f in first}[FEED]
    assert (police.pulled, police.valid, police.quarantined, police.held, police.delivered, police.acknowledged,
            police.sla) == (100, 96, 4, 0, 96, 96, "no breach")
    police = {f.feed: f for f in held}[FEED]
    assert (police.pulled, police.valid, police.held, police.delivered, police.sla) == (50, 0, 50, 0, "breached")
    assert police.batches == [{"batch_id": f"b-{NIGHTS[1]}", "rows": 50, "held": True}]
    by_feed = {f.feed: f for f in last}
    assert (by_feed[FEED].released, by_feed[FEED].delivered) == (50, 96 + 50)
    assert (by_feed["justice.prisoners"].failed, by_feed["justice.prisoners"].sla) == (["AuthError"], "recovered")

    chart = nights.trend(ledger)
    assert [b["night"] for b in chart["bars"]] == list(NIGHTS) and chart["max"] == 100
    tallest = chart["bars"][0]
    assert sum(p["h"] for p in tallest["pieces"]) == pytest.approx(chart["plot_h"], abs=0.5)
    assert [b["open"] for b in chart["bars"]] == [0, 1, 0] and [b["failed"] for b in chart["bars"]] == [0, 0, 1]
    assert nights.trend(ledger, feed="justice.prisoners")["bars"][2]["breaches"] == 1


def test_the_nights_page_draws_the_trend_without_script(ledger, tmp_path):
    from fundx.console import accounts
    from fundx.console.app import create_app

    accounts.add_account(ledger, "wang", "steward", "steward-passphrase-42", actor="t")
    with client_for(create_app(ledger, home=tmp_path), follow_redirects=False) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
        client.post("/login", data={"csrf": token, "name": "wang", "password": "steward-passphrase-42"})
        page = client.get("/")
        assert page.status_code == 200 and "Night of 2026-11-23" in page.text
        assert page.text.count('class="bar-valid"') >= 2 and 'class="bar-held"' in page.text
        assert 'class="mark-open"' in page.text and 'class="mark-failed"' in page.text
        assert "failed: AuthError" in page.text and "<script" not in page.text
        older = client.get(f"/nights/{NIGHTS[1]}")
        assert older.status_code == 200 and 'href="/failures/b-2026-11-22"' in older.text and "breached" in older.text
        assert client.get("/nights/not-a-date").status_code == 404
        assert client.get("/?feed=justice.prisoners").status_code == 200
