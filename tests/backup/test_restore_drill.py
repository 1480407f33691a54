"""The restore drill: nights against the sandbox, a backup, more nights, the ledger lost, a restore — and the
next night sends nothing twice and loses nothing. On SQLite and on PostgreSQL.

The backup is taken after the first night on purpose: the second night's batches (acknowledged by one
stage, still waiting in the inbox of another, partly quarantined) are only in what the stages answered
and in the originals' batch.json; the restored ledger learns them from there. Without that reconciling,
the next night would pull the second night's windows again and the stages would hold those rows twice.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from fundx.core.errors import WrongRecipientError
from fundx.core.timeutil import UTC, aware
from fundx.crypto.keys import KeySettings, KeyStore
from fundx.crypto.opening import open_sealed
from fundx.exchange.acks import record_acks
from fundx.exchange.run import run_feed
from fundx.ledger import Ledger
from fundx.stage import Stage

#: (feed, its stage): a REST feed and a database view, whole batches (their originals are kept)
FEEDS = (("police.deaths", "death_matching"), ("medical_insurance.bills", "bill_review"))
NIGHTS = ("2026-05-01T00:00:00+08:00", "2026-08-01T00:00:00+08:00", "2026-11-23T00:00:00+08:00")
START = aware("2020-01-01")


@pytest.fixture(scope="module")
def sandbox(sandbox_factory):
    with sandbox_factory("restore", people=3000) as sb:
        yield sb


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, home, monkeypatch):
    """The ledger's URL for this drill: SQLite under the home, or an empty PostgreSQL database of its own."""
    from fundx.core.settings import reload_settings

    if request.param == "sqlite":
        return None
    url = request.getfixturevalue("new_pg_database")()
    monkeypatch.setenv("FUNDX_LEDGER_URL", url)
    reload_settings()
    return url


def _night(end: str, *, receive: tuple[str, ...]) -> None:
    for feed, _stage in FEEDS:
        run_feed(feed, end=end)
    for stage in receive:
        Stage(stage).receive()


def _lose_the_ledger(home: Path, url: str | None) -> None:
    if url is None:
        for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
            (home / name).unlink(missing_ok=True)
        return
    from fundx.ledger.schema import alembic_version, metadata

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        metadata.drop_all(conn)
        alembic_version.drop(conn, checkfirst=True)
    engine.dispose()


def _received(home: Path, stage: str, keys: KeyStore, feed: str) -> pd.DataFrame:
    key, cert = keys.stage_keys(stage)[0]
    tables = []
    for path in sorted((home / "stages" / stage / "received").glob(f"{feed}-*/part-*.p7m")):
        opened = open_sealed(path.read_bytes(), recipient_key=key, recipient_cert=cert, trusted_ca=keys.ca(),
                             crl=keys.crl())
        tables.append(pq.read_table(io.BytesIO(opened.payload)))
    return pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame()


def _quarantined(ledger: Ledger, feed: str) -> list[pd.DataFrame]:
    from fundx.exchange import quarantine

    return [quarantine.read_rows(ledger, q.batch_id) for q in quarantine.batches(ledger) if q.feed == feed]


def test_restore_drill_the_next_night_sends_nothing_twice_and_loses_nothing(sandbox, home, backend, tmp_path):
    from contracts import load_contract
    from fundx.backup.archive import create, verify
    from fundx.backup.restore import restore

    keys = KeyStore(KeySettings())
    _night(NIGHTS[0], receive=("death_matching", "bill_review"))
    record_acks()
    made = create()
    assert verify(made.path).files == made.files
    listed = [e["path"] for e in json.loads((made.path / "MANIFEST.json").read_text())["files"]]
    # PostgreSQL: a pg_dump of the same snapshot too, where pg_dump is installed (verify reads its contents)
    assert ("ledger.pgdump" in listed) == (backend is not None and shutil.which("pg_dump") is not None)

    # the second night: death_matching takes its batch (and answers), bill_review does not yet
    _night(NIGHTS[1], receive=("death_matching",))
    before = Ledger.from_settings()
    second = {d.batch_id: d for d in before.deliveries() if d.window.end == aware(NIGHTS[1]).astimezone(UTC)}
    assert {d.feed for d in second.values()} == {f for f, _ in FEEDS}
    watermarks = before.watermarks()
    before.dispose()
    originals = home / "backups" / "originals"
    assert all((originals / b / "batch.json").is_file() for b in second)
    # look-alikes that prove nothing: a run's originals that never committed, a forged answer
    (originals / "police.deaths-20260801T000000-20261101T000000-0123456789ab").mkdir()
    forged = home / "acks" / "death_matching" / "police.deaths-20260801T000000-20261101T000000-0123456789ab.received.p7s"
    forged.write_bytes(b"not a signed answer")

    _lose_the_ledger(home, backend)
    with pytest.raises(Exception, match="ledger exists already"):  # the refusal needs a ledger there: make one
        Ledger(backend or f"sqlite:///{home / 'ledger.db'}").dispose()
        restore(made.path, home, ledger_url=backend)
    _lose_the_ledger(home, backend)
    done = restore(made.path, home, ledger_url=backend)
    assert sorted(done.reconciled.delivered) == sorted(second)
    assert done.kept >= 1  # the quarantine on disk is newer than the backup's and was kept as it was

    ledger = Ledger.from_settings()
    restored = ledger.watermarks()
    assert restored == watermarks  # every feed continues where the stages' knowledge ends
    by_id = {d.batch_id: d for d in ledger.deliveries()}
    assert by_id[next(b for b in second if b.startswith("police."))].status == "acknowledged"
    assert by_id[next(b for b in second if b.startswith("medical_"))].status == "ready"  # still in its inbox
    assert "police.deaths-20260801T000000-20261101T000000-0123456789ab" not in by_id

    # the next night, and every stage takes what is there
    _night(NIGHTS[2], receive=("death_matching", "bill_review"))
    record_acks()
    for feed, stage in FEEDS:
        key = load_contract(feed).key[0]
        got = _received(home, stage, keys, feed)
        kept = _quarantined(ledger, feed)
        held = pd.concat([got[[key]], *(k[[key]] for k in kept)]) if kept else got[[key]]
        expected = sandbox.expected(feed, START, aware(NIGHTS[2]))
        assert held[key].is_unique, f"{feed}: rows delivered or quarantined twice"
        assert set(held[key]) == set(expected[key]), f"{feed}: rows lost"
    assert all(d.status == "acknowledged" for d in ledger.deliveries())
    assert ledger.verify_audit().ok
    with ledger.engine.connect() as conn:
        from fundx.ledger.schema import audit

        actions = [r.action for r in conn.execute(sa.select(audit.c.action))]
    assert "backup.restored" in actions and actions.count("backup.reconciled") >= len(second)
    ledger.dispose()


def test_a_backup_opens_only_with_the_backup_key_and_every_file_counts(sandbox, home, tmp_path):
    from fundx.backup.archive import BackupError, create, verify

    done = run_feed(FEEDS[1][0], end=NIGHTS[0])  # streamed (stream: true), partly quarantined
    assert done.quarantined > 0
    # its originals: every pulled row, as pulled, sealed to the backup key only
    backup_key = KeyStore().stage_keys("backup")
    folder = home / "backups" / "originals" / done.handoff.batch_id
    tables = []
    for part in sorted(folder.glob("part-*.p7m")):
        data = part.read_bytes()
        opened = open_sealed(data, recipient_key=backup_key[0][0], recipient_cert=backup_key[0][1],
                             trusted_ca=KeyStore().ca(), expect={"recipient": "backup", "batch_id": done.handoff.batch_id})
        tables.append(pq.read_table(io.BytesIO(opened.payload)))
        stewards = KeyStore().stage_keys("stewards")[0]
        with pytest.raises(WrongRecipientError):
            open_sealed(data, recipient_key=stewards[0], recipient_cert=stewards[1], trusted_ca=KeyStore().ca())
    pulled = pa.concat_tables(tables).to_pandas()
    assert len(pulled) == done.rows and pulled["bill_id"].is_unique
    assert json.loads((folder / "batch.json").read_text())["quarantined"] == done.quarantined
    made = create()
    manifest = json.loads((made.path / "MANIFEST.json").read_text())
    names = [e["path"] for e in manifest["files"]]
    assert "ledger.db" in names and "keys/ca.pem" in names and "keys/stages/backup.pem" in names
    assert any(n.startswith("quarantine/stewards/") for n in names)
    assert not any(n.endswith(".key") for n in names)  # public parts only
    for path in made.path.rglob("*.p7m"):
        assert b"SQLite format 3" not in path.read_bytes()  # sealed, not a copy in the clear
    assert verify(made.path).backup_id == made.path.name

    # a stage's key is not the backup key
    stewards_only = KeyStore(KeySettings(dir=KeyStore().paths.dir,
                                         stage_keys={"backup": [str(KeyStore().paths.stage_key("stewards"))]}))
    with pytest.raises(Exception, match="no matching certificate|not sealed to this backup key"):
        verify(made.path, stewards_only)

    broken = tmp_path / "broken"
    shutil.copytree(made.path, broken)
    first = sorted((broken / "sealed").glob("*.p7m"))[-1]
    first.unlink()
    with pytest.raises(BackupError, match="missing"):
        verify(broken)
    shutil.rmtree(broken)
    shutil.copytree(made.path, broken)
    part = sorted((broken / "sealed").glob("*.p7m"))[0]
    data = bytearray(part.read_bytes())
    data[-40] ^= 1
    part.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="SHA-256 differs"):
        verify(broken)
