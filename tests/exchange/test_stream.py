"""Streamed feeds (fundx.exchange.stream): chunk by chunk, the same batch as a whole pull, nothing at rest in clear.

Against the live sandbox: a streamed run of each transport (a database view read from a server-side
cursor — the bills' and the office's payment ledger's —, a GB18030 CSV drop read block by block, an xlsx drop
and a REST API sliced) delivers the same
batch id, the same READY digest, the same rows to the stage and the same rows to the stewards as the
whole-frame run; keys repeated across chunks are de-duplicated exactly as in a whole pull; a batch
held by its policy goes whole to the stewards, numbered as a whole pull numbers it; the spool is
encrypted (no identity number in it, in any form) and removed, and one a killed run left is removed
by the next run.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from fundx.core.errors import BatchHeld
from fundx.core.settings import reload_settings
from fundx.core.timeutil import Window, aware
from fundx.crypto.keys import KeySettings, KeyStore
from fundx.crypto.opening import open_sealed
from fundx.exchange import quarantine
from fundx.exchange.run import run_feed
from fundx.exchange.runners import LocalRunner
from fundx.exchange.spool import Spool
from fundx.exchange.stream import chunk_frame, extract
from fundx.ledger import Ledger

END = "2026-11-23T00:00:00+08:00"
ID = re.compile(rb"(?<![0-9])[0-9]{17}[0-9X](?![0-9])")
FEEDS = {  # feed: (stage, key, rows per chunk)
    "medical_insurance.bills": ("bill_review", "bill_id", 1000),
    "religious_affairs.deaths": ("death_matching", "record_id", 2),
    "justice.prisoners": ("custody_matching", "prisoner_id", 7),
    "police.deaths": ("death_matching", "cancellation_id", 11),
    # the office's payment ledger, streamed since a province's is tens of millions of rows (docs/capacity.md)
    "social_insurance.payments": ("death_matching", "payment_id", 5000),
}


@pytest.fixture(scope="module")
def sandbox(sandbox_factory):
    with sandbox_factory("stream", people=3000) as sb:
        yield sb


def _use(home: Path, monkeypatch, chunk_rows: int) -> None:
    monkeypatch.setenv("FUNDX_HOME", str(home))
    monkeypatch.setenv("FUNDX_CHUNK_ROWS", str(chunk_rows))
    reload_settings()


def _inbox_rows(home: Path, stage: str, batch_id: str) -> pd.DataFrame:
    key, cert = KeyStore(KeySettings()).stage_keys(stage)[0]
    frames = []
    for path in sorted((home / "inboxes" / stage / batch_id).glob("part-*.p7m")):
        opened = open_sealed(path.read_bytes(), recipient_key=key, recipient_cert=cert,
                             trusted_ca=KeyStore(KeySettings()).ca())
        frames.append(pq.read_table(io.BytesIO(opened.payload)).to_pandas())
    return pd.concat(frames, ignore_index=True)


def _kept(batch_id: str | None) -> pd.DataFrame | None:
    ledger = Ledger.from_settings()
    if not batch_id or not quarantine.batches(ledger, batch_id=batch_id):
        return None
    return quarantine.read_rows(ledger, batch_id)


@pytest.mark.parametrize("feed", list(FEEDS))
def test_a_streamed_run_delivers_the_batch_a_whole_pull_delivers(feed, sandbox, home, monkeypatch, tmp_path):
    stage, key, chunk_rows = FEEDS[feed]
    _use(tmp_path / "whole", monkeypatch, chunk_rows)
    whole = run_feed(feed, end=END, stream=False)
    whole_rows = _inbox_rows(tmp_path / "whole", stage, whole.handoff.batch_id)
    whole_kept = _kept(whole.handoff.batch_id)
    whole_ready = json.loads((tmp_path / "whole" / "inboxes" / stage / whole.handoff.batch_id / "READY").read_text())
    whole_docs = json.loads(next((tmp_path / "whole" / "reports").glob(f"*/{feed}.json")).read_text())

    _use(home, monkeypatch, chunk_rows)
    streamed = run_feed(feed, end=END, stream=True, runner=LocalRunner())
    assert streamed.steps is not None and set(streamed.steps) == {"pull", "normalise", "validate", "seal", "handoff"}
    assert streamed.steps["pull"]["rows"] == streamed.rows and streamed.steps["seal"]["rows"] == streamed.valid
    assert all(s["seconds"] >= 0 and s["peak_rss_bytes"] for s in streamed.steps.values())
    assert (streamed.rows, streamed.valid, streamed.quarantined, streamed.digest, streamed.handoff.batch_id) == (
        whole.rows, whole.valid, whole.quarantined, whole.digest, whole.handoff.batch_id)
    assert streamed.rows > chunk_rows  # several chunks
    ready = json.loads((home / "inboxes" / stage / streamed.handoff.batch_id / "READY").read_text())
    assert (ready["content_digest"], ready["rows"]) == (whole_ready["content_digest"], whole_ready["rows"])
    rows = _inbox_rows(home, stage, streamed.handoff.batch_id)
    pd.testing.assert_frame_equal(rows.sort_values(key, ignore_index=True), whole_rows.sort_values(key, ignore_index=True))
    kept = _kept(streamed.handoff.batch_id)
    if whole_kept is None:
        assert kept is None
    else:
        pd.testing.assert_frame_equal(kept, whole_kept)  # numbered, positioned and ruled the same
    docs = json.loads(next((home / "reports").glob(f"*/{feed}.json")).read_text())
    assert [(r["rule"], r["failed"]) for r in docs["rules"]] == [(r["rule"], r["failed"]) for r in whole_docs["rules"]]
    assert docs["normalisation"] == whole_docs["normalisation"]
    assert (home / "reports").glob(f"*/{feed}.html")
    assert not any((home / "spool").iterdir())  # the spool is gone

    again = run_feed(feed, start="2020-01-01", end=END, stream=True, runner=LocalRunner())
    assert again.handoff.outcome == "already_delivered" and again.steps is not None and "validate" not in again.steps
    assert len(Ledger.from_settings().deliveries(feed)) == 1


def test_keys_repeated_across_chunks_are_deduplicated_as_in_a_whole_pull(sandbox, home, monkeypatch):
    """Rows of one key are collapsed (copies), replaced (a later version by the incremental column) or
    marked as a conflict (two versions of one moment) exactly as in a whole pull, wherever the rows fall."""
    from connectors import connector_for

    connector = connector_for("police.deaths")
    window = Window(aware("2020-01-01"), aware(END))
    frame = connector.extract(window).frame
    contract = connector.contract
    moment = contract.incremental
    repeats = frame.iloc[[0, 1, 2, 3]].copy()
    repeats.loc[repeats.index[0], "gender"] = "女" if repeats.iloc[0]["gender"] != "女" else "男"  # a later correction
    repeats.loc[repeats.index[0], moment] = "2026-11-01T00:00:00+08:00"
    repeats.loc[repeats.index[1], moment] = "2019-01-01T00:00:00+08:00"  # an older version: loses
    repeats.loc[repeats.index[2], "gender"] = "女" if repeats.iloc[2]["gender"] != "女" else "男"  # same moment: a conflict
    rows = pd.concat([frame, repeats, frame.iloc[[5]]], ignore_index=True)  # and one plain replay
    pieces = [rows.iloc[i:i + 7] for i in range(0, len(rows), 7)]
    connector.chunks = lambda window, tally, n: iter(pieces)
    spool = Spool.create(home, "police.deaths")
    try:
        pulled = extract(connector, window, spool, chunk_rows=7)
        whole = connector.shape(rows.copy())
        assert pulled.rows == len(whole) == len(frame) + 1  # the conflict's two versions both stay
        from fundx.core.digest import DEFECT, content_digest

        assert whole[DEFECT].notna().sum() == 2
        assert pulled.digest == content_digest(whole)
        kept = pd.concat([chunk_frame(spool, c) for c in pulled.chunks], ignore_index=True)
        pd.testing.assert_frame_equal(kept, whole)
        assert (pulled.repeats.identical, pulled.repeats.superseded, pulled.repeats.conflicting) == (2, 2, 2)
    finally:
        spool.close()


def test_a_streamed_batch_over_its_policy_is_held_whole_numbered_as_a_whole_pull(sandbox, home, monkeypatch, tmp_path):
    import connectors

    feed = "medical_insurance.bills"
    real = connectors.connector_for

    def spoiled(name, *args, **kwargs):  # the agency's mistake: half the bills with a negative total
        connector = real(name, *args, **kwargs)
        chunks = connector.chunks

        def bad(window, tally, n):
            seen = 0
            for frame in chunks(window, tally, n):
                frame = frame.copy()
                frame.loc[frame.index[: max(0, 2300 - seen)], "total_amount"] = -1
                seen += len(frame)
                yield frame

        connector.chunks = bad
        connector._pull = lambda window, tally: pd.concat(list(bad(window, tally, 10**9)), ignore_index=True)
        return connector

    monkeypatch.setattr(connectors, "connector_for", spoiled)
    held = {}
    for mode, folder in (("whole", tmp_path / "whole"), ("stream", home)):
        _use(folder, monkeypatch, 1000)
        with pytest.raises(BatchHeld, match="held back whole"):
            run_feed(feed, end=END, stream=mode == "stream", runner=LocalRunner())
        (batch,) = quarantine.batches(Ledger.from_settings(), feed=feed)
        assert batch.held and batch.quarantined == batch.pulled
        held[mode] = (batch.batch_id, quarantine.read_rows(Ledger.from_settings(), batch.batch_id))
        assert Ledger.from_settings().deliveries(feed) == []
    assert held["stream"][0] == held["whole"][0]
    pd.testing.assert_frame_equal(held["stream"][1], held["whole"][1])
    assert not any((home / "spool").iterdir())


def test_a_streamed_batch_whose_split_gx_does_not_confirm_is_held_whole(sandbox, home, monkeypatch):
    """GX validates the streamed batch's results once, over every chunk's failing rows and a sample of the
    rest: a compiled check gone wrong (here one that finds every value missing) holds the batch back whole."""
    import numpy as np

    from contracts import engine

    feed = "police.deaths"
    monkeypatch.setitem(engine.TO_MASK, "required", lambda frame, rule, parameters: np.zeros(len(frame), dtype=bool))
    _use(home, monkeypatch, FEEDS[feed][2])
    with pytest.raises(BatchHeld, match="Great Expectations and the compiled check disagree"):
        run_feed(feed, end=END, stream=True, runner=LocalRunner())
    (batch,) = quarantine.batches(Ledger.from_settings(), feed=feed)
    assert batch.held and batch.quarantined == batch.pulled  # nothing lost: every row is with the stewards
    assert Ledger.from_settings().deliveries(feed) == []
    assert not any((home / "spool").iterdir())


class _Watching(LocalRunner):
    """Runs the jobs here, and first looks at every spool file for an identity number in clear."""

    def __init__(self, home: Path, ids: set[bytes]) -> None:
        self.home, self.ids, self.looked = home, ids, 0

    def map(self, fn, jobs):
        for path in (self.home / "spool").rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                self.looked += 1
                assert not ID.search(data), f"an identity number in clear in {path.name}"
                assert not any(i in data for i in self.ids)
        return super().map(fn, jobs)


def test_the_spool_holds_no_record_in_clear_and_a_killed_runs_spool_is_removed(sandbox, home, monkeypatch):
    feed = "police.deaths"
    _use(home, monkeypatch, 11)
    ids = {str(i).encode() for i in sandbox.expected(feed, aware("2020-01-01"), aware(END))["id_number"]}
    ids |= {i.decode().encode("gb18030") for i in ids} | {i.decode().encode("utf-16-le") for i in ids}
    # a spool left by a run that was killed (its process is gone)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=False, capture_output=True,
                          text=True)
    left = Spool.create(home, feed)
    (left.folder / "owner").write_text(dead.stdout.strip())
    left.put("raw-000000", b"rows of a killed run")
    watching = _Watching(home, ids)
    done = run_feed(feed, end=END, stream=True, runner=watching)
    assert done.handoff.outcome == "delivered" and watching.looked >= 4
    assert not left.folder.exists() and not any((home / "spool").iterdir())
    assert os.stat(home / "spool").st_mode & 0o777 == 0o700


def test_spool_files_are_bound_to_their_name_and_key(tmp_path):
    from cryptography.exceptions import InvalidTag

    spool = Spool.create(tmp_path, "police.deaths")
    spool.put("raw-000000", b"110105194912310021")
    assert spool.get("raw-000000") == b"110105194912310021"
    (spool.folder / "raw-000001").write_bytes((spool.folder / "raw-000000").read_bytes())
    with pytest.raises(InvalidTag):  # a file copied under another name does not open
        spool.get("raw-000001")
    with pytest.raises(InvalidTag):
        Spool(spool.folder, bytes(32)).get("raw-000000")
    assert (spool.folder / "raw-000000").stat().st_mode & 0o777 == 0o600
    spool.close()
    assert not spool.folder.exists()


def test_spooled_objects_come_back_equal_their_buffers_sealed_and_bound_to_their_name(tmp_path):
    """A chunk's frame and column hashes are spooled with their buffers outside the pickle: they come back
    equal and writable, nothing of them is in clear in the file, and a file under another name does not open."""
    from cryptography.exceptions import InvalidTag

    spool = Spool.create(tmp_path, "police.deaths")
    frame = pd.concat([pd.DataFrame({"id_number": pd.Series(["110105194912310021", None], dtype="str"),
                                     "n": [1, 2]})] * 3, ignore_index=True)
    hashes = {"id_number": np.arange(6, dtype=np.uint64), "n": np.arange(6, dtype=np.uint64) * 3}
    spool.put_object("raw-000000", frame)
    spool.put_object("hashes-000000", hashes)
    pd.testing.assert_frame_equal(spool.get_object("raw-000000"), frame)
    back = spool.get_object("hashes-000000")
    assert back.keys() == hashes.keys() and all((back[k] == hashes[k]).all() for k in hashes)
    assert all(v.flags.writeable for v in back.values())
    assert b"110105194912310021" not in (spool.folder / "raw-000000").read_bytes()
    (spool.folder / "raw-000001").write_bytes((spool.folder / "raw-000000").read_bytes())
    with pytest.raises(InvalidTag):
        spool.get_object("raw-000001")
    spool.close()


def test_a_streamed_feed_is_checked_and_sealed_on_a_local_dask_cluster(sandbox, home, monkeypatch, tmp_path):
    """The distributed path: chunks checked and parts sealed by two Dask worker processes, the same batch."""
    from fundx.core.digest import content_digest
    from fundx.exchange.dask_runner import DaskRunner

    feed, (stage, _, _) = "medical_insurance.bills", FEEDS["medical_insurance.bills"]
    _use(tmp_path / "local", monkeypatch, 1000)
    local = run_feed(feed, end=END, stream=True, runner=LocalRunner())
    local_kept = _kept(local.handoff.batch_id)
    _use(home, monkeypatch, 1000)
    with DaskRunner(workers=2) as runner:
        done = run_feed(feed, end=END, stream=True, runner=runner)
    assert (done.handoff.outcome, done.handoff.batch_id, done.valid, done.quarantined) == (
        "delivered", local.handoff.batch_id, local.valid, local.quarantined)
    ready = json.loads((home / "inboxes" / stage / done.handoff.batch_id / "READY").read_text())
    rows = _inbox_rows(home, stage, done.handoff.batch_id)
    assert len(rows) == ready["rows"] == done.valid and content_digest(rows) == ready["content_digest"]
    assert ready["parts"] == done.handoff.parts >= 2
    pd.testing.assert_frame_equal(_kept(done.handoff.batch_id), local_kept)
    assert not any((home / "spool").iterdir())


def test_a_streamed_feed_is_checked_and_sealed_by_a_pool_of_processes(sandbox, home, monkeypatch, tmp_path):
    """FUNDX_TASK_RUNNER=processes:2: chunks checked and encoded, parts sealed by two worker processes;
    the same batch as in this process, every chunk's valid rows a part of their own (a piece of a MiB
    or more is not encoded again) or merged with their neighbours when small."""
    from fundx.core.digest import content_digest
    from fundx.exchange import parts
    from fundx.exchange.process_pool import ProcessRunner

    feed, (stage, _, _) = "medical_insurance.bills", FEEDS["medical_insurance.bills"]
    _use(tmp_path / "local", monkeypatch, 1000)
    local = run_feed(feed, end=END, stream=True, runner=LocalRunner())
    local_kept = _kept(local.handoff.batch_id)
    _use(home, monkeypatch, 1000)
    monkeypatch.setattr(parts, "SMALL_PIECE", 1)  # every chunk's piece kept as a part of its own
    done = run_feed(feed, end=END, stream=True, runner=ProcessRunner(2))
    assert (done.handoff.outcome, done.handoff.batch_id, done.valid, done.quarantined) == (
        "delivered", local.handoff.batch_id, local.valid, local.quarantined)
    ready = json.loads((home / "inboxes" / stage / done.handoff.batch_id / "READY").read_text())
    rows = _inbox_rows(home, stage, done.handoff.batch_id)
    assert len(rows) == ready["rows"] == done.valid and content_digest(rows) == ready["content_digest"]
    chunks = -(-(done.valid + done.quarantined) // 1000)
    assert ready["parts"] == done.handoff.parts == chunks
    pd.testing.assert_frame_equal(_kept(done.handoff.batch_id), local_kept)
    assert not any((home / "spool").iterdir())


def test_prefetched_chunks_arrive_in_order_errors_are_raised_in_order_and_an_early_stop_closes_the_reader():
    from fundx.exchange.stream import prefetched

    assert list(prefetched(iter(range(5)))) == [0, 1, 2, 3, 4]
    closed = []

    def failing():
        try:
            yield 1
            yield 2
            raise ValueError("the reader failed")
        finally:
            closed.append("failing")

    got = []
    with pytest.raises(ValueError, match="the reader failed"):
        for item in prefetched(failing()):
            got.append(item)
    assert got == [1, 2] and closed == ["failing"]

    def endless():
        try:
            n = 0
            while True:
                n += 1
                yield n
        finally:
            closed.append("endless")

    for item in prefetched(endless()):
        if item == 3:
            break
    assert closed[-1] == "endless"

