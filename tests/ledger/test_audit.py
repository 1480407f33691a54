"""The hash-chained audit trail on SQLite and PostgreSQL: edits, deletions and reorderings are named;
concurrent writers never fork the chain; `fundx audit verify` exits 1 on a broken chain."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from typer.testing import CliRunner

from fundx.ledger import Ledger
from fundx.ledger.audit import GENESIS
from fundx.ledger.schema import audit


def _write(ledger: Ledger, n: int = 6) -> None:
    for i in range(1, n + 1):
        ledger.log_event("test.event", f"batch-{i}", {"rows": i, "feed": "police.deaths"})


def _sql(ledger: Ledger, *statements) -> None:
    with ledger.transaction() as conn:
        for statement in statements:
            conn.execute(statement)


def test_an_untouched_chain_verifies(ledger):
    assert ledger.verify_audit().ok and ledger.verify_audit().entries == 0
    _write(ledger)
    verdict = ledger.verify_audit()
    assert verdict.ok and verdict.entries == verdict.head_seq == 6
    with ledger.engine.connect() as conn:
        first = conn.execute(sa.select(audit.c.prev_hash).where(audit.c.seq == 1)).scalar_one()
    assert first == GENESIS


def test_an_edited_entry_is_named(ledger):
    _write(ledger)
    _sql(ledger, audit.update().where(audit.c.seq == 3).values(details='{"feed":"police.deaths","rows":300}'))
    verdict = ledger.verify_audit()
    assert not verdict.ok and verdict.bad_seq == 3 and "does not match its content" in verdict.problem


def test_an_entry_edited_with_its_hash_recomputed_breaks_the_next_link(ledger):
    from fundx.ledger.audit import entry_hash

    _write(ledger)
    with ledger.engine.connect() as conn:
        row = conn.execute(audit.select().where(audit.c.seq == 3)).mappings().one()
    forged = entry_hash(row["prev_hash"], 3, row["at"], row["actor"], row["action"], row["subject"], "{}")
    _sql(ledger, audit.update().where(audit.c.seq == 3).values(details="{}", hash=forged))
    verdict = ledger.verify_audit()
    assert not verdict.ok and verdict.bad_seq == 4 and "does not chain" in verdict.problem


def test_a_deleted_entry_is_named(ledger):
    _write(ledger)
    _sql(ledger, audit.delete().where(audit.c.seq == 3))
    verdict = ledger.verify_audit()
    assert not verdict.ok and verdict.bad_seq == 4 and "3..3 were deleted" in verdict.problem


def test_a_deleted_last_entry_is_caught_by_the_head(ledger):
    _write(ledger)
    _sql(ledger, audit.delete().where(audit.c.seq == 6))
    verdict = ledger.verify_audit()
    assert not verdict.ok and verdict.bad_seq == 6 and "head records entry 6" in verdict.problem


def test_reordered_entries_are_named(ledger):
    _write(ledger)
    _sql(ledger,
         audit.update().where(audit.c.seq == 2).values(seq=-2),
         audit.update().where(audit.c.seq == 4).values(seq=2),
         audit.update().where(audit.c.seq == -2).values(seq=4))
    verdict = ledger.verify_audit()
    assert not verdict.ok and verdict.bad_seq == 2 and "moved" in verdict.problem


def test_concurrent_writers_never_fork_the_chain(ledger):
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for i in range(15):
                ledger.log_event("test.concurrent", f"{name}-{i}", {"i": i})
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    verdict = ledger.verify_audit()
    assert verdict.ok and verdict.entries == 60 and verdict.head_seq == 60


def test_the_cli_names_the_first_bad_entry_and_exits_1(tmp_path, monkeypatch):
    from fundx.cli import app
    from fundx.core.settings import reload_settings

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("FUNDX_LEDGER_URL", url)
    reload_settings()
    try:
        ledger = Ledger(url)
        _write(ledger, 3)
        runner = CliRunner()
        ok = runner.invoke(app, ["audit", "verify"])
        assert ok.exit_code == 0 and "intact: 3 entries" in ok.output
        _sql(ledger, audit.update().where(audit.c.seq == 2).values(actor="someone else"))
        broken = runner.invoke(app, ["audit", "verify"])
        assert broken.exit_code == 1 and "entry 2" in broken.output
    finally:
        monkeypatch.undo()
        reload_settings()
