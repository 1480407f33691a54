"""The nightly purge after real nights against the sandbox: with the clock moved past each retention, exactly
what the contracts say goes; an unacknowledged batch, an undecided quarantine and the evidence of open orders
stay; the audit trail verifies; the next night and matching deliver and load nothing twice; a dry run
changes nothing; the stores are compacted to one file per table."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from fundx.core.errors import SealError
from fundx.core.timeutil import aware
from fundx.crypto.keys import KeyStore
from fundx.ledger import Ledger
from fundx.ledger.schema import acks, audit, deliveries, orders, quarantines, rule_failures

pytestmark = pytest.mark.prefect

END = "2026-11-23T00:00:00+08:00"
LATER = "2026-11-24T00:00:00+08:00"
NIGHT = aware(END).date()
#: the office's tables in the stores (social_insurance.*: no retention stated, so kept whole)
OFFICE_TABLES = ("roll", "payments", "account_changes", "contributions", "subsidies")
FEEDS = ["police.deaths", "civil_affairs.deaths", "justice.prisoners", "social_insurance.benefit_roll",
         "social_insurance.payments"]
UNANSWERED = "religious_affairs.deaths"  # delivered the next night, never received by its stage


@pytest.fixture(scope="module")
def sandbox(sandbox_factory):
    with sandbox_factory("retention", people=1500) as sb:
        yield sb


def _files(root: Path, pattern: str = "*") -> list[Path]:
    return sorted(p for p in root.rglob(pattern) if p.is_file()) if root.is_dir() else []


def _count(ledger: Ledger, table: sa.Table) -> int:
    with ledger.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def _store_rows(home: Path) -> dict[tuple[str, str], int]:
    from matching.store import Store

    keys = KeyStore(home=home)
    found = {}
    for stage in sorted(p.name for p in (home / "stages").iterdir() if (p / "store").is_dir()):
        store = Store(stage, home=home, keys=keys)
        for table in store.tables():
            data = store.read(table)
            found[(stage, table)] = 0 if data is None else data.num_rows
    return found


def _state(home: Path, ledger: Ledger) -> dict:
    return {
        "inbox parts": len(_files(home / "inboxes", "*.p7m")),
        "received parts": len(_files(home / "stages", "received/*/*.p7m")),
        "receipts": len(_files(home / "stages", "received/*/DONE")),
        "quarantine parts": len(_files(home / "quarantine", "*.p7m")),
        "answer files": len(_files(home / "acks", "*.p7s")),
        "acks": _count(ledger, acks), "rule_failures": _count(ledger, rule_failures),
        "deliveries": _count(ledger, deliveries), "quarantines": _count(ledger, quarantines),
        "store": _store_rows(home),
    }


def _expected_store_after(home: Path, ledger: Ledger) -> dict[tuple[str, str], int]:
    """Rows an open order points at (a subject in any text column): the rows the long purge must keep."""
    from matching.store import Store

    with ledger.engine.connect() as conn:
        subjects = pa.array(sorted(set(conn.execute(
            sa.select(orders.c.subject).where(orders.c.status == "open")).scalars())), pa.string())
    keys = KeyStore(home=home)
    found = {}
    for (stage, table) in _store_rows(home):
        data = Store(stage, home=home, keys=keys).read(table)
        if table in OFFICE_TABLES:  # the office's feeds: their contracts state no retention yet, kept whole
            found[(stage, table)] = data.num_rows
            continue
        held = pa.array([False] * data.num_rows)
        for name in data.column_names:
            if name not in ("batch", "id_masked", "received_at") and pa.types.is_string(data[name].type):
                held = pc.or_(held, pc.fill_null(pc.is_in(data[name], value_set=subjects), False))
        found[(stage, table)] = pc.sum(pc.cast(held, pa.int64())).as_py() or 0
    return found


def test_a_purge_past_the_retention_removes_exactly_what_the_contracts_say(sandbox, home, tmp_path, monkeypatch):
    from flows.exchange import nightly_exchange
    from flows.matching import matching_night
    from fundx.cli import app
    from fundx.core.settings import reload_settings
    from fundx.exchange import quarantine
    from matching.retention import purge

    # one feed's contract states no retention at all: everything of it is kept, and the report says so
    contracts = tmp_path / "contracts"
    shutil.copytree(Path(__file__).parents[2] / "contracts", contracts,
                    ignore=shutil.ignore_patterns("*.py", "released", "infer", "sla", "__pycache__"))
    path = contracts / "justice.prisoners.odcs.yaml"
    path.write_text("".join(line for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
                            if "Retention," not in line and "property: retention," not in line), encoding="utf-8")
    monkeypatch.setenv("FUNDX_CONTRACTS_DIR", str(contracts))
    reload_settings()

    try:
        nightly_exchange(end=END, feeds=FEEDS)
    except Exception:  # noqa: BLE001, S110 - a held feed fails the night; its quarantine is what we want
        pass
    matching_night(night=NIGHT)  # the stages receive and acknowledge, the store loads, orders open
    ledger = Ledger.from_settings()
    held = quarantine.batches(ledger)
    assert len(held) >= 2, "the sandbox's night should quarantine rows of at least two feeds"
    decided, undecided = held[0], held[1]
    quarantine.decide(ledger, decided.batch_id, "reject", reason="wrong rows, checked with the agency",
                      actor="steward-wang")
    try:
        nightly_exchange(end=LATER, feeds=[UNANSWERED])  # delivered, never received: never acknowledged
    except Exception:  # noqa: BLE001, S110
        pass
    unanswered = [d for d in ledger.deliveries(UNANSWERED) if d.status == "ready"]
    assert unanswered and all((home / "inboxes" / d.stage / d.batch_id).is_dir() for d in unanswered)
    assert any(e for e in _audit_actions(ledger) if e == "retention.purged")  # the nights ran their purge

    before = _state(home, ledger)
    assert before["received parts"] and before["answer files"] and before["acks"] and before["rule_failures"]
    assert before["quarantine parts"] and all(before["store"].values())
    acknowledged = max(d.acknowledged_at for d in ledger.deliveries(status=("acknowledged",)))
    decided_at = max(d.decided_at for d in quarantine.decisions_of(ledger))

    # a dry run at the far end changes nothing, not even the audit trail
    entries = len(_audit_actions(ledger))
    dry = purge(now=acknowledged + timedelta(days=5 * 366), dry_run=True)
    assert dry.total() > 0 and _state(home, ledger) == before and len(_audit_actions(ledger)) == entries
    result = CliRunner().invoke(app, ["purge", "--dry-run", "--as-of", "2031-01-01"])
    assert result.exit_code == 0, result.output
    assert "would remove" in result.output and _state(home, ledger) == before

    # 100 days on: only the sealed batches (90 days) of acknowledged feeds with a retention go
    report = purge(now=max(acknowledged, decided_at) + timedelta(days=100))
    after = _state(home, ledger)
    # kept: justice.prisoners' contract here states no retention, nor do the office's (social_insurance.*)
    kept = [d for f in FEEDS if f == "justice.prisoners" or f.startswith("social_insurance.")
            for d in ledger.deliveries(f) if d.status == "acknowledged"]
    prisoners_parts = sum(len(_files(home / "stages" / d.stage / "received" / d.batch_id, "*.p7m")) for d in kept)
    assert prisoners_parts > 0
    assert after["received parts"] == prisoners_parts
    assert report.total("sealed", "received parts") == before["received parts"] - prisoners_parts
    assert after["receipts"] == before["receipts"]  # the stage's proof of each batch stays
    assert after["inbox parts"] == before["inbox parts"]  # the unacknowledged batch stays
    for kept in ("quarantine parts", "answer files", "acks", "rule_failures", "store", "deliveries", "quarantines"):
        assert after[kept] == before[kept], kept
    assert any("justice.prisoners: sealed kept: its contract states no sealedRetention" in n for n in report.notes)

    # five years on: every kind is past its retention
    expected_store = _expected_store_after(home, ledger)
    report = purge(now=acknowledged + timedelta(days=5 * 366))
    after = _state(home, ledger)
    assert not report.problems, report.problems
    assert after["inbox parts"] == before["inbox parts"]  # still unacknowledged: still there
    assert all((home / "inboxes" / d.stage / d.batch_id).is_dir() for d in unanswered)
    assert any(f"batch {unanswered[0].batch_id} kept past its sealedRetention: ready" in n for n in report.notes)
    assert not (home / "quarantine" / "stewards" / decided.batch_id).exists()
    assert (home / "quarantine" / "stewards" / undecided.batch_id).is_dir()  # undecided: kept
    assert report.counts[decided.feed]["quarantine"]["rows"] == decided.quarantined
    with pytest.raises(SealError, match="purged once decided"):
        quarantine.read_rows(ledger, decided.batch_id)
    prisoners_answers = [a for a in ledger.ack_records()  # kept: feeds without an answerRetention
                         if a["feed"] == "justice.prisoners" or a["feed"].startswith("social_insurance.")]
    assert prisoners_answers and after["acks"] == len(prisoners_answers)
    assert after["answer files"] == len(prisoners_answers)
    with ledger.engine.connect() as conn:
        left = set(conn.execute(sa.select(rule_failures.c.feed).distinct()).scalars())
    assert left <= {"justice.prisoners"}
    assert after["deliveries"] == before["deliveries"] and after["quarantines"] == before["quarantines"]
    for (stage, table), n in after["store"].items():
        if stage == "custody_matching" and table == "custody":  # justice.prisoners: kept whole
            assert n == before["store"][(stage, table)]
        else:
            assert n == expected_store[(stage, table)], (stage, table)
    assert sum(after["store"].values()) < sum(before["store"].values())
    assert any(n for n in expected_store.values()), (expected_store, after["store"], before["store"])  # some evidence of open orders is kept
    # compacted: one file per table of batches
    for folder in (p for p in (home / "stages").glob("*/store/*") if p.is_dir()):
        assert len(list(folder.glob("*.enc"))) == 1, folder

    # the audit trail verifies, with the purge's counts in it
    assert CliRunner().invoke(app, ["audit", "verify"]).exit_code == 0
    with ledger.engine.connect() as conn:
        purged = conn.execute(sa.select(audit.c.details).where(audit.c.action == "retention.purged")
                              .order_by(audit.c.seq.desc())).scalars().first()
    assert '"store"' in purged and '"quarantine"' in purged and "justice.prisoners" in purged

    # the next night and matching: nothing delivered or loaded twice, the ledger still knows what was delivered
    batches = {d.batch_id for d in ledger.deliveries()}
    try:
        nightly_exchange(end=END, feeds=FEEDS)
    except Exception:  # noqa: BLE001, S110
        pass
    assert {d.batch_id for d in ledger.deliveries()} == batches
    # only the batch its stage had never taken is loaded now; none of the purged ones comes back
    assert matching_night(night=NIGHT)["loaded"] == {unanswered[0].stage: sum(d.rows for d in unanswered)}
    again = purge(now=acknowledged + timedelta(days=5 * 366))
    # nothing purged before comes up again: only the batch acknowledged since, now past its retention too
    assert {f for f, kinds in again.counts.items() if set(kinds) & {"sealed", "store", "quarantine"}} == {UNANSWERED}
    assert again.counts[UNANSWERED]["sealed"]["received batches"] == len(unanswered)
    assert CliRunner().invoke(app, ["audit", "verify"]).exit_code == 0


def _audit_actions(ledger: Ledger) -> list[str]:
    with ledger.engine.connect() as conn:
        return list(conn.execute(sa.select(audit.c.action).order_by(audit.c.seq)).scalars())


def test_a_failing_purge_does_not_fail_the_night(sandbox, home, monkeypatch, caplog):
    import matching.retention
    from flows.exchange import nightly_exchange

    def broken(**_):
        raise RuntimeError("the store's disk is gone")

    monkeypatch.setattr(matching.retention, "purge", broken)
    outcomes = nightly_exchange(end=END, feeds=["justice.prisoners"])
    assert [o.outcome for o in outcomes] == ["pulled"]
    ledger = Ledger.from_settings()
    assert "retention.purged" not in _audit_actions(ledger) and ledger.verify_audit().ok
