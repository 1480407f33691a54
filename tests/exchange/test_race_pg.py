"""Races on one PostgreSQL ledger, between OS processes: exactly one delivery per batch, nothing lost.

- processes opening a new ledger at the same moment all find its tables (one creates them);
- two processes run the same feed at the same moment (one FUNDX_HOME, one ledger, the sandbox
  agencies): one delivers, the other is refused by the feed's lock (FeedBusy, recorded) or finds the
  batch delivered already; one READY batch in the inbox, and the stage gets every valid row once;
- below the feed's lock, two processes call ``Ledger.begin_delivery`` for the same batch at the same
  moment, 20 times (new batches and batches abandoned before): the database lets exactly one win;
- two nights started by mistake at the same moment (the nightly flow, each process with its own
  Prefect), of a feed of each transport and stage: still one delivery per batch of every feed of the
  night, and the stages get every valid row once.

Each test has a database of its own on 127.0.0.1:5432 (dropped at the end), which the processes
open for the first time together; the tests skip, saying why, when PostgreSQL is not reachable.
"""

from __future__ import annotations

import io
import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from testkit import ONE_OF_EACH

from connectors.registry import registry
from fundx.core.digest import content_digest
from fundx.core.settings import reload_settings
from fundx.core.timeutil import UTC, Window, aware
from fundx.crypto.keys import KeySettings, KeyStore
from fundx.crypto.opening import open_sealed
from fundx.ledger import Ledger
from fundx.ledger.schema import deliveries
from fundx.stage import Stage

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
END = "2026-11-23T00:00:00+08:00"
FEED, STAGE = "police.deaths", "death_matching"
#: the two nights' feeds -> the stage each delivers to: a feed of each transport and stage (testkit.ONE_OF_EACH;
#: the race is over each feed's lock and its delivery, the same code for every feed)
FEEDS = {feed: registry().stage_of(feed) for feed in ONE_OF_EACH}


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def pg_ledger_url(new_pg_database):
    """A new, empty PostgreSQL database for this test only (no tables: the racing processes make them)."""
    return new_pg_database()


@pytest.fixture(scope="module")
def sandbox(sandbox_factory):
    with sandbox_factory("race", people=3000, stall_seconds=2.0) as sb:
        yield sb


@pytest.fixture
def shared(sandbox, keys_dir, pg_ledger_url, monkeypatch, tmp_path):
    """One FUNDX_HOME and one PostgreSQL ledger for this process and the racing children (which inherit
    the environment), the sandbox's endpoints, the run's PKI and parts of at most 64 KiB."""
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    home = tmp_path / "home"
    monkeypatch.setenv("FUNDX_HOME", str(home))
    monkeypatch.setenv("FUNDX_LEDGER_URL", pg_ledger_url)
    monkeypatch.setenv("FUNDX_KEYS_DIR", str(keys_dir))
    monkeypatch.setenv("FUNDX_PART_BYTES", str(64 * 1024))
    monkeypatch.delenv("FUNDX_TEST_KILL_AT", raising=False)
    reload_settings()
    yield home
    reload_settings()


# --- racing children ---------------------------------------------------------------------------


class Racers:
    """Child processes that each print ``ready`` when set, then wait for ``go`` on stdin: both get it at
    the same moment. Every other line they print is one JSON answer."""

    def __init__(self, code: str, args: list[str], n: int = 2, env: list[dict[str, str]] | None = None,
                 logs: Path | None = None) -> None:
        self.procs = []
        self.logs = logs
        for i in range(n):
            err = open(logs / f"racer-{i}.log", "wb") if logs else subprocess.DEVNULL  # noqa: SIM115 - closed below
            self.procs.append(subprocess.Popen(
                [sys.executable, "-c", code, *args], cwd=ROOT, env={**os.environ, **(env[i] if env else {})},
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err))
            if logs:
                err.close()
        self.buffers = [b""] * n

    def _line(self, i: int, deadline: float) -> str:
        proc = self.procs[i]
        while b"\n" not in self.buffers[i]:
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                if time.monotonic() > deadline or not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    raise AssertionError(f"racer {i} did not answer in time{self._log(i)}")
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"racer {i} ended (exit {proc.wait()}){self._log(i)}")
            self.buffers[i] += chunk
        line, _, self.buffers[i] = self.buffers[i].partition(b"\n")
        return line.decode()

    def _log(self, i: int) -> str:
        if not self.logs:
            return ""
        return ": " + (self.logs / f"racer-{i}.log").read_text(errors="replace")[-3000:]

    def ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        for i in range(len(self.procs)):
            assert self._line(i, deadline) == "ready"

    def go(self, word: str = "go") -> None:
        for proc in self.procs:  # back to back: both start within microseconds
            proc.stdin.write(f"{word}\n".encode())
        for proc in self.procs:
            proc.stdin.flush()

    def answers(self, timeout: float = 180) -> list[dict]:
        deadline = time.monotonic() + timeout
        return [json.loads(self._line(i, deadline)) for i in range(len(self.procs))]

    def close(self) -> None:
        for proc in self.procs:
            try:
                proc.stdin.close()
            except OSError:
                pass
        for i, proc in enumerate(self.procs):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            assert proc.returncode == 0, f"racer {i} exited {proc.returncode}{self._log(i)}"


# --- what the stage holds ----------------------------------------------------------------------


def _store() -> KeyStore:
    return KeyStore(KeySettings())


def _batch_rows(home: Path, stage: str, batch_id: str, keys: KeyStore) -> pd.DataFrame:
    """The rows of one batch the stage received (its parts, opened with the stage's key)."""
    key, cert = keys.stage_keys(stage)[0]
    tables = []
    for path in sorted((home / "stages" / stage / "received" / batch_id).glob("part-*.p7m")):
        opened = open_sealed(path.read_bytes(), recipient_key=key, recipient_cert=cert, trusted_ca=keys.ca(),
                             crl=keys.crl())
        tables.append(pq.read_table(io.BytesIO(opened.payload)))
    assert tables, f"the stage {stage} holds no part of {batch_id}"
    return pa.concat_tables(tables).to_pandas()


def _quarantined_keys(ledger: Ledger, batch_id: str, key: str) -> set[str]:
    from fundx.exchange import quarantine

    if not quarantine.batches(ledger, batch_id=batch_id):
        return set()
    return set(quarantine.read_rows(ledger, batch_id)[key])


def _one_delivery_with_every_row_once(sandbox, home: Path, ledger: Ledger, feed: str, stage: str) -> None:
    """The feed has one delivery (one batch, one attempt, one inbox folder); the stage holds each valid row
    once, and the valid rows plus the quarantined ones are exactly what the agency served."""
    from contracts import load_contract

    (delivery,) = ledger.deliveries(feed)
    assert delivery.attempts == 1 and delivery.status == "acknowledged", delivery
    pulled = [p for p in ledger.pulls(feed) if p.outcome == "pulled" and p.rows]
    assert len(pulled) == 1, pulled
    from fundx.exchange.handoff import batch_id_for

    assert delivery.batch_id == batch_id_for(feed, Window(aware("2020-01-01"), aware(END)), pulled[0].digest)
    received = home / "stages" / stage / "received"
    assert [p.name for p in received.iterdir() if p.name.startswith(feed)] == [delivery.batch_id]
    key = load_contract(feed).key[0]
    rows = _batch_rows(home, stage, delivery.batch_id, _store())
    expected = sandbox.expected(feed, aware("2020-01-01"), aware(END))
    kept = _quarantined_keys(ledger, delivery.batch_id, key)
    assert rows[key].is_unique and not kept & set(rows[key])
    assert len(rows) + len(kept) == len(expected) and set(rows[key]) | kept == set(expected[key])
    assert content_digest(rows) == delivery.digest
    assert ledger.watermark(feed) == aware(END).astimezone(UTC)


def _one_row_per_batch(ledger: Ledger) -> None:
    with ledger.engine.connect() as conn:
        counts = conn.execute(sa.select(deliveries.c.batch_id, sa.func.count()).group_by(deliveries.c.batch_id)).all()
    assert counts and all(n == 1 for _, n in counts), counts


# --- a new ledger opened by several processes at once ------------------------------------------------

OPEN_RACER = r"""
import json, sys
import sqlalchemy as sa
from fundx.ledger import Ledger
print("ready", flush=True)
sys.stdin.readline()
try:
    Ledger(sys.argv[1]).dispose()
    answer = {"opened": True}
except sa.exc.DBAPIError as exc:
    answer = {"opened": False, "error": type(exc).__name__, "message": str(exc).splitlines()[0][:200]}
print(json.dumps(answer), flush=True)
"""


def test_processes_opening_a_new_ledger_at_once_all_find_its_tables(pg_ledger_url, tmp_path):
    racers = Racers(OPEN_RACER, [pg_ledger_url], n=3, logs=tmp_path)
    try:
        racers.ready(timeout=60)
        racers.go()
        answers = racers.answers(timeout=60)
    finally:
        racers.close()
    assert all(a["opened"] for a in answers), answers  # none failed creating a table another just created
    ledger = Ledger(pg_ledger_url, create=False)
    try:
        from fundx.ledger.schema import audit_head

        # the tables a process that imports only fundx.ledger creates, as the racers did (other modules, such
        # as the console's, add tables of their own to the same metadata when a test imports them)
        own = subprocess.run([sys.executable, "-c", "from fundx.ledger.schema import metadata; print(' '.join(metadata.tables))"],
                             capture_output=True, text=True, check=True, timeout=120).stdout.split()
        assert own and set(own) <= set(sa.inspect(ledger.engine).get_table_names())
        with ledger.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(audit_head)).scalar() == 1
        assert ledger.verify_audit().ok
    finally:
        ledger.dispose()


# --- two runs of one feed ------------------------------------------------------------------------

FEED_RACER = r"""
import json, sys
from fundx.core.errors import FeedBusy
from fundx.exchange.run import run_feed
print("ready", flush=True)
sys.stdin.readline()
try:
    done = run_feed(sys.argv[1], end=sys.argv[2])
    answer = {"outcome": done.handoff.outcome, "batch_id": done.handoff.batch_id, "rows": done.rows}
except FeedBusy as exc:
    answer = {"outcome": "busy", "error": str(exc)}
print(json.dumps(answer), flush=True)
"""


def test_two_processes_run_one_feed_at_the_same_moment_and_it_is_delivered_once(sandbox, shared, tmp_path):
    racers = Racers(FEED_RACER, [FEED, END], logs=tmp_path)
    try:
        racers.ready()
        racers.go()
        answers = racers.answers()
    finally:
        racers.close()

    outcomes = sorted(a["outcome"] for a in answers)
    assert outcomes.count("delivered") == 1, answers
    # the other one was refused by the feed's lock, or came after the delivery: the same batch was
    # handed over already, or (the watermark moved) there was nothing new to pull
    assert set(outcomes) - {"delivered"} <= {"busy", "already_delivered", "empty"}, answers
    ledger = Ledger.from_settings()
    try:
        _one_row_per_batch(ledger)
        (delivery,) = ledger.deliveries(FEED)
        assert delivery.status == "ready" and delivery.attempts == 1
        inbox = shared / "inboxes" / STAGE
        assert [p.name for p in inbox.iterdir()] == [delivery.batch_id]
        assert (inbox / delivery.batch_id / "READY").is_file()
        if "busy" in outcomes:  # the refusal is recorded as the feed's failed pull, nothing else
            busy = [p for p in ledger.pulls(FEED) if p.outcome == "failed"]
            assert [p.error_type for p in busy] == ["FeedBusy"]
        assert [r.outcome for r in Stage(STAGE).receive()] == ["received"]
        from fundx.exchange.acks import record_acks

        assert record_acks().settled == 1
        _one_delivery_with_every_row_once(sandbox, shared, ledger, FEED, STAGE)
        assert ledger.verify_audit().ok  # two writers, one unbroken chain
    finally:
        ledger.dispose()


# --- below the feed's lock: begin_delivery ------------------------------------------------------

BEGIN_RACER = r"""
import json, sys
from datetime import datetime, timezone
from fundx.ledger import Ledger
from fundx.core.timeutil import Window
ledger = Ledger(sys.argv[1])
run_id = int(sys.argv[2])
window = Window(datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 2, tzinfo=timezone.utc))
print("ready", flush=True)
for line in sys.stdin:
    batch_id = line.strip()
    try:
        attempt = ledger.begin_delivery(batch_id=batch_id, feed="race.feed", stage="race_stage", window=window,
                                        digest="sha256:" + "0" * 64, rows=1, parts=1, contract_version="1.0.0",
                                        run_id=run_id)
        answer = {"batch_id": batch_id, "attempt": attempt}
    except Exception as exc:
        answer = {"batch_id": batch_id, "error": type(exc).__name__, "message": str(exc)[:200]}
    print(json.dumps(answer), flush=True)
ledger.dispose()
"""

ROUNDS = 20


def test_begin_delivery_for_one_batch_at_the_same_moment_has_exactly_one_winner(pg_ledger_url, tmp_path):
    from fundx.core.timeutil import now

    ledger = Ledger(pg_ledger_url)
    try:
        # the database itself refuses a second row for a batch, whatever the code above it does
        unique = sa.inspect(ledger.engine).get_unique_constraints("deliveries")
        indexes = sa.inspect(ledger.engine).get_indexes("deliveries")
        assert any(u["column_names"] == ["batch_id"] for u in unique) or \
            any(i["unique"] and i["column_names"] == ["batch_id"] for i in indexes)
        run_id = ledger.start_run("feed", "2026-01-01")
        window = Window(aware("2026-01-01T08:00:00+08:00"), aware("2026-01-02T08:00:00+08:00"))
        for n in range(1, ROUNDS, 2):  # every other batch was sealed once and abandoned: the race is for attempt 2
            ledger.begin_delivery(batch_id=f"race-{n}", feed="race.feed", stage="race_stage", window=window,
                                  digest="sha256:" + "0" * 64, rows=1, parts=1, contract_version="1.0.0",
                                  run_id=run_id)
            assert ledger.abandon(f"race-{n}", "a test: abandoned before the race")
        began = now()
        racers = Racers(BEGIN_RACER, [pg_ledger_url, str(run_id)], logs=tmp_path)
        results = []
        try:
            racers.ready(timeout=60)
            for n in range(ROUNDS):
                racers.go(f"race-{n}")
                results.append(racers.answers(timeout=60))
        finally:
            racers.close()

        for n, answers in enumerate(results):
            winners = [a for a in answers if "attempt" in a]
            assert len(winners) == 1, (n, answers)
            assert winners[0]["attempt"] == (2 if n % 2 else 1), (n, answers)
            (loser,) = [a for a in answers if "error" in a]
            # it waited for the winner's commit, then saw the batch being sealed (or hit the unique constraint)
            assert loser["error"] in ("InternalError", "IntegrityError"), (n, answers)
            record = ledger.delivery(f"race-{n}")
            assert (record.status, record.attempts) == ("sealing", 2 if n % 2 else 1)
            assert record.window == window
        _one_row_per_batch(ledger)
        assert len(ledger.deliveries("race.feed")) == ROUNDS
        verdict = ledger.verify_audit()
        assert verdict.ok, verdict
        with ledger.engine.connect() as conn:  # one batch.sealing entry per winner, none for a loser
            from fundx.ledger.schema import audit

            sealed = conn.execute(sa.select(audit.c.subject).where(audit.c.action == "batch.sealing",
                                                                   audit.c.at >= began)).scalars().all()
        assert sorted(sealed) == sorted(f"race-{n}" for n in range(ROUNDS))
    finally:
        ledger.dispose()


# --- two nights at once -----------------------------------------------------------------------

NIGHT_RACER = r"""
import json, sys
from prefect.client.orchestration import get_client
from fundx.core.errors import NightFailed
from flows.exchange import nightly_exchange
with get_client(sync_client=True) as client:  # the Prefect server answers before the race starts
    client.hello()
print("ready", flush=True)
sys.stdin.readline()
try:
    outcomes = [o.__dict__ for o in nightly_exchange(feeds=sys.argv[2].split(","), end=sys.argv[1])]
    answer = {"night": "completed", "feeds": {o["feed"]: [o["outcome"], o["handoff"]] for o in outcomes}}
except NightFailed as exc:
    answer = {"night": "failed", "error": str(exc)[:2000]}
print(json.dumps(answer), flush=True)
"""


@pytest.fixture(scope="module")
def prefect_api() -> str:
    """The Prefect API of this test session (its ephemeral server, started here if no test started it yet)."""
    from prefect.client.orchestration import get_client
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        with get_client(sync_client=True) as client:
            client.hello()
        url = SubprocessASGIServer().api_url
    return url


@pytest.mark.prefect
def test_two_nights_started_by_mistake_deliver_each_batch_once(sandbox, shared, prefect_api, tmp_path):
    # as two `fundx night` (or a night by hand while the scheduled one runs) against one Prefect server,
    # one exchange home and one ledger; the children inherit the rest of the environment
    racers = Racers(NIGHT_RACER, [END, ",".join(FEEDS)], env=[{"PREFECT_API_URL": prefect_api}] * 2, logs=tmp_path)
    try:
        racers.ready(timeout=240)
        racers.go()
        answers = racers.answers(timeout=240)
    finally:
        racers.close()

    ledger = Ledger.from_settings()
    try:
        nights = [r for r in ledger.last_runs(10) if r["kind"] == "night"]
        assert len(nights) == 2 and all(r["feeds"] == len(FEEDS) for r in nights), nights
        _one_row_per_batch(ledger)
        for feed in FEEDS:  # each feed: one delivery; the other night was refused (recorded) or found it done
            assert len(ledger.deliveries(feed)) == 1, feed
            failed = [p for p in ledger.pulls(feed) if p.outcome == "failed"]
            assert all(p.error_type == "FeedBusy" for p in failed), (feed, failed)
        for answer in answers:  # a night fails only because the other one held a feed
            if answer["night"] == "failed":
                assert "FeedBusy" in answer["error"] and "AuthError" not in answer["error"], answer
        for stage in sorted(set(FEEDS.values())):
            inbox = shared / "inboxes" / stage
            names = sorted(p.name for p in inbox.iterdir())
            assert len(names) == sum(1 for s in FEEDS.values() if s == stage), names
            assert all(r.outcome == "received" for r in Stage(stage).receive())
        from fundx.exchange.acks import record_acks

        record_acks()
        for feed, stage in FEEDS.items():
            _one_delivery_with_every_row_once(sandbox, shared, ledger, feed, stage)
        assert ledger.verify_audit().ok
    finally:
        ledger.dispose()
