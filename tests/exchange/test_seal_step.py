"""A streamed run's seal step (fundx.exchange.chunks, fundx.exchange.parts, fundx.exchange.originals).

Against the live sandbox: the originals each chunk's job encodes while it holds the chunk are exactly
the pulled rows the originals' own encoding gives (rows a later version replaces dropped, the transport's
own columns kept), and when a chunk's would not encode there the originals' step encodes them itself;
the stewards' rows of many chunks are gathered into few parts, numbered across chunks.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fundx.core.settings import reload_settings
from fundx.exchange import chunks, originals, quarantine
from fundx.exchange.run import run_feed
from fundx.exchange.runners import LocalRunner
from fundx.ledger import Ledger

END = "2026-11-23T00:00:00+08:00"
DROP = "religious_affairs.deaths"  # a GB18030 drop: its chunks carry the file each row came in
BILLS = "medical_insurance.bills"  # a database view, partly quarantined


@pytest.fixture(scope="module")
def sandbox(sandbox_factory):
    with sandbox_factory("seal-step", people=3000) as sb:
        yield sb


def _use(monkeypatch, chunk_rows: int) -> None:
    monkeypatch.setenv("FUNDX_CHUNK_ROWS", str(chunk_rows))
    reload_settings()


def _tables(payloads) -> list[pa.Table]:
    return [pq.read_table(io.BytesIO(p)) for p in payloads]


@pytest.mark.parametrize(("feed", "chunk_rows"), [(DROP, 1), (BILLS, 300)])
def test_the_originals_encoded_by_the_chunks_jobs_are_the_pulled_rows(feed, chunk_rows, sandbox, home, monkeypatch):
    _use(monkeypatch, chunk_rows)
    real = originals.keep
    compared = []

    def keep(pulled, batch_id, keys, **kwargs):
        encoded = kwargs.get("encoded")
        assert encoded is not None  # every chunk's job encoded its rows
        count, given = encoded[0], list(encoded[1])
        own_count, own = originals._payloads(pulled, 64 * 1024)  # the originals' own encoding, from the spool
        mine, theirs = _tables(given), _tables(own)
        assert count == own_count == len(pulled.chunks) == len(mine)
        assert all(a.equals(b) for a, b in zip(mine, theirs, strict=True))
        compared.append((count, sum(t.num_rows for t in mine)))
        return real(pulled, batch_id, keys, **{**kwargs, "encoded": (count, iter(given))})

    monkeypatch.setattr(originals, "keep", keep)
    done = run_feed(feed, end=END, stream=True, runner=LocalRunner())
    ((count, rows),) = compared
    assert done.handoff.outcome == "delivered" and rows == done.rows and count > 1
    assert len(list((home / "backups" / "originals" / done.handoff.batch_id).glob("part-*.p7m"))) == count


def test_a_chunk_whose_originals_do_not_encode_in_its_job_is_encoded_by_the_originals_step(sandbox, home, monkeypatch):
    _use(monkeypatch, 300)
    seen = []
    monkeypatch.setattr(chunks, "_encode_original", lambda job, raw, number: None)
    real = originals._payloads
    monkeypatch.setattr(originals, "_payloads", lambda pulled, part_bytes: seen.append(1) or real(pulled, part_bytes))
    done = run_feed(BILLS, end=END, stream=True, runner=LocalRunner())
    assert done.handoff.outcome == "delivered" and seen == [1]
    folder = home / "backups" / "originals" / done.handoff.batch_id
    assert (folder / "batch.json").is_file() and list(folder.glob("part-*.p7m"))


def test_the_stewards_rows_of_many_chunks_are_gathered_into_few_parts(sandbox, home, monkeypatch):
    _use(monkeypatch, 300)
    done = run_feed(BILLS, end=END, stream=True, runner=LocalRunner())
    assert done.quarantined > 1 and done.rows > 3 * 300
    ledger = Ledger.from_settings()
    (batch,) = quarantine.batches(ledger, batch_id=done.handoff.batch_id)
    parts = list((home / "quarantine" / quarantine.STEWARDS / done.handoff.batch_id).glob("*.p7m"))
    assert len(parts) == batch.parts == 1  # a part per chunk with failing rows before: as many as those rows here
    rows = quarantine.read_rows(ledger, done.handoff.batch_id)
    assert len(rows) == done.quarantined and list(rows[quarantine.ROW]) == list(range(1, done.quarantined + 1))


def _without_backup(keys_dir, tmp_path):
    """A copy of the run's key folder without the backup stage's certificates."""
    import shutil

    folder = tmp_path / "keys-no-backup"
    shutil.copytree(keys_dir, folder)
    for path in (folder / "stages").glob("backup*"):
        path.unlink()
    return folder


def test_whether_a_backup_certificate_is_expected_is_read_from_the_settings_without_side_effects(
        keys_dir, tmp_path, monkeypatch):
    for name in ("FUNDX_KEYS_DIR", "FUNDX_KEYS_STAGE_CERTS", "FUNDX_KEYS_CA", "FUNDX_KEYS_EXCHANGE_CERT",
                 "FUNDX_KEYS_EXCHANGE_KEY"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("FUNDX_HOME", str(home))
    reload_settings()
    try:
        # no keys anywhere: the handoff will create a development PKI (with a backup certificate); none made here
        assert originals.backup_certificate_expected()
        assert not (home / "keys").exists()
        monkeypatch.setenv("FUNDX_KEYS_DIR", str(keys_dir))
        assert originals.backup_certificate_expected()
        monkeypatch.setenv("FUNDX_KEYS_DIR", str(_without_backup(keys_dir, tmp_path)))
        assert not originals.backup_certificate_expected()
        monkeypatch.setenv("FUNDX_KEYS_STAGE_CERTS", '{"backup": "%s"}' % (keys_dir / "stages" / "backup.pem"))
        assert originals.backup_certificate_expected()
        # a development PKI under FUNDX_HOME without a backup certificate
        monkeypatch.delenv("FUNDX_KEYS_STAGE_CERTS")
        monkeypatch.delenv("FUNDX_KEYS_DIR")
        _without_backup(keys_dir, home).rename(home / "keys")
        assert not originals.backup_certificate_expected()
    finally:
        reload_settings()


@pytest.mark.parametrize("backup", [True, False])
def test_the_chunks_jobs_encode_the_originals_only_where_a_backup_certificate_is_configured(
        backup, sandbox, home, keys_dir, tmp_path, monkeypatch):
    _use(monkeypatch, 300)
    if not backup:
        monkeypatch.setenv("FUNDX_KEYS_DIR", str(_without_backup(keys_dir, tmp_path)))
        reload_settings()
    jobs, encoded = [], []
    real_check, real_encode = chunks.check_chunk, chunks._encode_original
    monkeypatch.setattr(chunks, "_encode_original", lambda job, raw, number: encoded.append(1) or real_encode(job, raw, number))
    from fundx.exchange import spooled

    monkeypatch.setattr(spooled, "check_chunk", lambda job: jobs.append(job.originals) or real_check(job))
    done = run_feed(BILLS, end=END, stream=True, runner=LocalRunner())
    assert done.handoff.outcome == "delivered" and len(jobs) > 1
    assert jobs == [backup] * len(jobs)
    assert len(encoded) == (len(jobs) if backup else 0)
    parts = list((home / "backups" / "originals" / done.handoff.batch_id).glob("part-*.p7m"))
    assert len(parts) == (len(jobs) if backup else 0)
