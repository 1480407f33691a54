"""The SLA monitor on the ledger (SQLite and PostgreSQL), with a controllable clock and a real local
webhook: a late agency, a missing feed, a short feed, a failing-contract feed and a slow night each
open exactly one breach and send one notice; recovery sends one more; checking again sends nothing."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta

import pytest

from contracts.sla.policy import all_slas
from fundx.core.timeutil import SHANGHAI, UTC
from fundx.ledger import Ledger
from fundx.ledger.schema import pulls, quarantines, runs
from fundx.notify import Notifier
from fundx.sla import monitor

NIGHT = date(2026, 11, 20)  # a Friday, not the 6th: only the daily feeds are due
HISTORY = 100


def _local(night: date, hh: int, mm: int = 0) -> datetime:
    return datetime(night.year, night.month, night.day, hh, mm, tzinfo=SHANGHAI)


def _night(ledger: Ledger, night: date, *, skip: tuple[str, ...] = (), at: dict | None = None,
           rows: dict | None = None, failing: dict | None = None, ended: datetime | None = None) -> None:
    """A night as the ledger would hold it: the run (01:30 to ``ended``) and one pull per feed."""
    at, rows, failing = at or {}, rows or {}, failing or {}
    with ledger.transaction() as conn:
        run_id = conn.execute(runs.insert().values(
            uid=str(uuid.uuid4()), kind="night", night=night.isoformat(), started_at=_local(night, 1, 30),
            ended_at=ended or _local(night, 2, 10), outcome="completed", feeds=6, feeds_failed=0)).inserted_primary_key[0]
        for feed in sorted(all_slas()):
            if feed in skip:
                continue
            done = at.get(feed, _local(night, 2, 0))
            n = rows.get(feed, HISTORY)
            pull_id = conn.execute(pulls.insert().values(
                run_id=run_id, feed=feed, window_start=_local(night, 1, 30) - timedelta(days=1),
                window_end=_local(night, 1, 30), backfill=False, started_at=done - timedelta(minutes=1), ended_at=done,
                duration_s=60.0, outcome="pulled", rows=n, bytes=1000, pages=1, retries=0, digest="sha256:00",
            )).inserted_primary_key[0]
            if feed in failing:
                conn.execute(quarantines.insert().values(
                    batch_id=f"{feed}-{night}-{pull_id}", feed=feed, night=night.isoformat(), run_id=run_id,
                    pull_id=pull_id, window_start=_local(night, 0, 0), window_end=_local(night, 1, 0), digest="sha256:00",
                    pulled=n, valid=n - failing[feed], quarantined=failing[feed], held=False, parts=1, bytes=1,
                    created_at=datetime.now(UTC)))


def _history(ledger: Ledger, nights: int = 8) -> None:
    for back in range(nights, 0, -1):
        _night(ledger, NIGHT - timedelta(days=back))


def _check(ledger, notifier, now, night=NIGHT):
    return monitor.check(ledger, night=night, now=now, notifier=notifier, emit=False)


SCENARIOS = {
    "late agency": (dict(at={"police.deaths": _local(NIGHT, 7, 10)}), ("police.deaths", "late")),
    "missing feed": (dict(skip=("civil_affairs.deaths",)), ("civil_affairs.deaths", "missing")),
    "short feed": (dict(rows={"police.deaths": 12}), ("police.deaths", "short")),
    "failing contract": (dict(failing={"medical_insurance.bills": 10}), ("medical_insurance.bills", "error_rate")),
    "slow night": (dict(ended=_local(NIGHT, 4, 0)), ("", "night_slow")),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_kind_of_trouble_opens_one_breach_and_one_notice_then_recovers_once(ledger, receiver, scenario):
    notifier, got = receiver
    facts, (feed, rule) = SCENARIOS[scenario]
    _history(ledger)
    _night(ledger, NIGHT, **facts)

    first = _check(ledger, notifier, _local(NIGHT, 8, 0))
    assert [(f.feed or "", f.rule) for f in first.opened] == [(feed, rule)], first.breached
    (recorded,) = monitor.open_breaches(ledger)
    assert (recorded["feed"], recorded["rule"], recorded["night"]) == (feed, rule, NIGHT.isoformat())
    assert [(n["kind"], n["feed"], n["rule"]) for n in got] == [("breach", feed or "night", rule)]
    assert recorded["notified_at"] is not None

    again = _check(ledger, notifier, _local(NIGHT, 9, 0))  # the same night judged again: nothing new
    assert again.opened == [] and len(got) == 1

    following = NIGHT + timedelta(days=1)  # a good night: the breach recovers, one more notice
    _night(ledger, following)
    recovered = _check(ledger, notifier, _local(following, 8, 0), night=following)
    assert [(f.feed or "", f.rule) for f in recovered.recovered] == [(feed, rule)]
    assert [(n["kind"], n["feed"], n["rule"]) for n in got] == [("breach", feed or "night", rule),
                                                                ("recovered", feed or "night", rule)]
    assert monitor.open_breaches(ledger) == []
    assert _check(ledger, notifier, _local(following, 9, 0), night=following).recovered == [] and len(got) == 2
    assert ledger.verify_audit().ok


def test_a_missing_feed_is_not_judged_before_its_deadline(ledger, receiver):
    notifier, got = receiver
    _history(ledger)
    _night(ledger, NIGHT, skip=("civil_affairs.deaths",))
    early = _check(ledger, notifier, _local(NIGHT, 5, 0))
    assert early.opened == [] and got == []
    assert not any(f.feed == "civil_affairs.deaths" and f.rule == "missing" for f in early.findings)


def test_a_notice_no_channel_took_is_sent_by_the_next_check(ledger, receiver):
    notifier, got = receiver
    _history(ledger)
    _night(ledger, NIGHT, rows={"police.deaths": 12})
    down = Notifier.from_urls(["webhook+http://127.0.0.1:9/nowhere"], timeout=0.5)
    first = _check(ledger, down, _local(NIGHT, 8, 0))
    assert len(first.opened) == 1 and (first.notices_sent, first.notices_failed) == (0, 1)
    assert monitor.open_breaches(ledger)[0]["notified_at"] is None
    later = _check(ledger, notifier, _local(NIGHT, 9, 0))
    assert later.opened == [] and later.notices_sent == 1 and len(got) == 1
