"""The exchange's side of the purge on SQLite and PostgreSQL: the stages' answers (files, then ledger rows)
and the per-rule failure counts of a feed whose contract sets answerRetention go once past it; a feed
without one, and an answer that names no feed, keep theirs; a dry run changes nothing; the purge is one
audit entry and the trail verifies."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from contracts.retention import KINDS, Period, Retention
from fundx.exchange import quarantine
from fundx.exchange import retention as purging
from fundx.ledger.database import utc_now
from fundx.ledger.schema import acks, audit, rule_failures

KEPT = "justice.prisoners"
GOES = "police.deaths"


def _answers(ledger, home) -> None:
    for n, (feed, stage) in enumerate([(GOES, "death_matching"), (GOES, "death_matching"), (KEPT, "custody_matching"),
                                       (None, "death_matching")]):
        name = f"b{n}.received.p7s"
        (home / "acks" / stage).mkdir(parents=True, exist_ok=True)
        (home / "acks" / stage / name).write_bytes(b"signed")
        ledger.record_ack(stage=stage, file=name, file_sha256="0" * 64, outcome="received" if feed else "invalid",
                          batch_id=None, feed=feed)
    with ledger.transaction() as conn:
        for feed in (GOES, KEPT):
            quarantine.record_rule_failures(conn, batch_id=f"{feed}-b", feed=feed, night="2026-11-23", report={
                "rows": 10, "rules": [{"rule": "id_valid", "failed": 2}, {"rule": "row_count", "failed": 0}]})


def _count(ledger, table, **where) -> int:
    query = sa.select(sa.func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with ledger.engine.connect() as conn:
        return conn.execute(query).scalar_one()


def test_answers_past_their_retention_go_and_the_others_stay(ledger, tmp_path) -> None:
    home = tmp_path / "home"
    _answers(ledger, home)
    periods = {GOES: Retention(GOES, dict.fromkeys(KINDS) | {"answers": Period(1, "y")}),
               KEPT: Retention(KEPT, dict.fromkeys(KINDS))}
    later = utc_now() + timedelta(days=400)

    dry = purging.new_report(now=later, dry_run=True)
    purging.purge_exchange(ledger, dry, periods, home=home)
    purging.record(ledger, dry)
    assert dry.counts == {GOES: {"answers": {"files": 2, "ledger rows": 2, "rule failure rows": 1}}}
    assert _count(ledger, acks) == 4 and _count(ledger, rule_failures) == 2 and _count(ledger, audit) == 4
    assert len(list((home / "acks").rglob("*.p7s"))) == 4

    soon = purging.new_report(now=utc_now() + timedelta(days=300))  # within the year: nothing goes
    purging.purge_exchange(ledger, soon, periods, home=home)
    purging.record(ledger, soon)
    assert soon.counts == {} and _count(ledger, acks) == 4

    report = purging.new_report(now=later)
    purging.purge_exchange(ledger, report, periods, home=home)
    purging.record(ledger, report)
    assert report.counts == dry.counts
    assert _count(ledger, acks, feed=GOES) == 0 and _count(ledger, acks, feed=KEPT) == 1
    assert _count(ledger, acks) == 2  # the answer naming no feed stays, and the report says so
    assert any("name no feed" in n for n in report.notes)
    assert _count(ledger, rule_failures, feed=GOES) == 0 and _count(ledger, rule_failures, feed=KEPT) == 1
    assert sorted(p.name for p in (home / "acks").rglob("*.p7s")) == ["b2.received.p7s", "b3.received.p7s"]
    with ledger.engine.connect() as conn:
        actions = list(conn.execute(sa.select(audit.c.action).order_by(audit.c.seq)).scalars())
    assert actions[-2:] == ["retention.purged", "retention.purged"] and actions.count("retention.purged") == 2
    assert ledger.verify_audit().ok
