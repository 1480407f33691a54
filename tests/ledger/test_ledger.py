"""The ledger on SQLite and on the PostgreSQL server: runs, pulls, watermarks that never go back."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from fundx.core.errors import AuthError
from fundx.core.timeutil import UTC, Window, aware
from fundx.ledger import Ledger
from fundx.ledger.runs import night_of


@dataclass(frozen=True)
class FakePull:  # the fields Ledger.record_pull reads from connectors.base.Pull
    feed: str
    window: Window
    rows: int = 10
    bytes: int = 1000
    pages: int = 1
    retries: int = 0
    digest: str = "sha256:00"
    duration_s: float = 0.5


def test_pull_moves_watermark_in_the_same_transaction(ledger):
    run = ledger.start_run("night", "2026-11-23")
    window = Window.of("2026-01-01", "2026-11-23")
    started = aware("2026-11-23T01:30:00")
    ledger.record_pull(run, FakePull("police.deaths", window), started_at=started)
    assert ledger.watermark("police.deaths") == window.end.astimezone(UTC)
    ledger.finish_run(run, feeds=1, failed=0)
    assert ledger.last_runs(1)[0]["outcome"] == "completed"
    (record,) = ledger.pulls_of_run(run)
    assert (record.rows, record.outcome, record.window) == (10, "pulled", window)


def test_watermark_never_moves_backwards(ledger):
    run = ledger.start_run("feed", "2026-11-23")
    late = Window.of("2026-10-01", "2026-11-01")
    early = Window.of("2025-01-01", "2025-02-01")
    ledger.record_pull(run, FakePull("justice.prisoners", late), started_at=aware("2026-11-01"))
    ledger.record_pull(run, FakePull("justice.prisoners", early), started_at=aware("2026-11-01"), backfill=True)
    assert ledger.watermark("justice.prisoners") == late.end
    assert ledger.totals()["justice.prisoners"] == {"pulled": 2, "failed": 0, "rows": 20}


def test_failure_is_recorded_and_leaves_watermark(ledger):
    run = ledger.start_run("night", "2026-11-23")
    ok = Window.of("2026-01-01", "2026-06-01")
    ledger.record_pull(run, FakePull("civil_affairs.deaths", ok), started_at=aware("2026-06-01"))
    error = AuthError("bearer token rejected (401)", feed="civil_affairs.deaths", action="renew FUNDX_CIVIL_AFFAIRS_TOKEN")
    ledger.record_failure(run, "civil_affairs.deaths", Window.of("2026-06-01", "2026-11-23"), error, started_at=aware("2026-11-23"))
    ledger.finish_run(run, feeds=1, failed=1, summary="civil_affairs.deaths (AuthError)")
    assert ledger.watermark("civil_affairs.deaths") == ok.end
    last = ledger.latest_pulls()["civil_affairs.deaths"]
    assert (last.outcome, last.error_type, last.action) == ("failed", "AuthError", "renew FUNDX_CIVIL_AFFAIRS_TOKEN")
    assert last.error_message.startswith("civil_affairs.deaths: bearer token rejected")
    assert ledger.last_runs(1)[0]["outcome"] == "failed"


def test_datetimes_come_back_aware_and_equal(ledger):
    run = ledger.start_run("feed", "2026-11-23")
    window = Window.of("2026-03-01T08:15:30", "2026-03-02T00:00:00")
    ledger.record_pull(run, FakePull("market_regulation.businesses", window), started_at=aware("2026-03-02"))
    mark = ledger.watermark("market_regulation.businesses")
    assert mark.tzinfo is not None and mark == window.end
    assert mark - window.start == timedelta(hours=15, minutes=44, seconds=30)


def test_night_is_the_shanghai_date():
    assert night_of(aware("2026-11-23T01:30:00+08:00")) == "2026-11-23"
    assert night_of(aware("2026-11-22T17:30:00+00:00")) == "2026-11-23"


def test_unusable_url_names_the_setting():
    from fundx.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="FUNDX_LEDGER_URL"):
        Ledger("not a url")
    with pytest.raises(ConfigurationError, match="SQLite or PostgreSQL"):
        Ledger("mysql+pymysql://u@h/db", create=False)


def test_a_feed_is_held_by_one_run_at_a_time(ledger):
    from fundx.core.errors import FeedBusy

    other = Ledger(ledger.url)  # another worker: its own connections (and, on SQLite, its own lock file handle)
    try:
        with ledger.feed_lock("police.deaths"):
            with pytest.raises(FeedBusy, match="another run is exchanging police.deaths"), other.feed_lock("police.deaths"):
                pass
            with other.feed_lock("justice.prisoners"):  # other feeds are free
                pass
        with other.feed_lock("police.deaths"):  # released
            pass
    finally:
        other.dispose()


def test_row_history_counts_whole_nights_batches_only(ledger):
    run = ledger.start_run("night", "2026-11-01")
    day = timedelta(days=1)
    start = aware("2026-11-01T01:30:00+08:00")
    for n, rows in enumerate([40, 0, 50, 60]):  # an empty night of a monthly feed is not a batch
        window = Window(start + n * day, start + (n + 1) * day)
        ledger.record_pull(run, FakePull("justice.prisoners", window, rows=rows), started_at=window.end)
    rerun = Window(start + 4 * day, start + 4 * day + timedelta(hours=1))  # a rerun an hour later
    ledger.record_pull(run, FakePull("justice.prisoners", rerun, rows=5), started_at=rerun.end)
    old = Window(aware("2025-01-01"), aware("2025-06-01"))
    ledger.record_pull(run, FakePull("justice.prisoners", old, rows=900), started_at=old.end, backfill=True)
    held = Window(start + 5 * day, start + 6 * day)
    ledger.record_pull(run, FakePull("justice.prisoners", held, rows=70), started_at=held.end, outcome="held")
    assert ledger.row_history("justice.prisoners", limit=12) == [40, 50, 60, 70]
    assert ledger.row_history("justice.prisoners", limit=2) == [60, 70]
    assert ledger.row_history("police.deaths", limit=12) == []


def test_a_completed_feed_whose_result_prefect_lost_is_told_from_the_ledger(ledger):
    """nightly_exchange: a subflow state handed back without its unpersisted result (MissingResult, seen
    under load) is not a crash of the night: the feed's pull recorded in this run says what it did."""
    from flows.exchange import _outcome_from_ledger

    run = ledger.start_run("night", "2026-11-23")
    window = Window.of("2026-01-01", "2026-11-23")
    ledger.record_pull(run, FakePull("police.deaths", window, rows=42, pages=3), started_at=aware("2026-11-23T01:30:00"))
    told = _outcome_from_ledger(ledger, run, "police.deaths")
    assert (told.feed, told.outcome, told.rows, told.pages, told.digest) == ("police.deaths", "pulled", 42, 3, "sha256:00")
    assert _outcome_from_ledger(ledger, run, "justice.prisoners").outcome == "pulled"  # nothing recorded: rows 0


@contextmanager
def _umask(value: int):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_ledger_and_home_are_private_under_umask_022(tmp_path, monkeypatch):
    """Issue 16: ledger.db was created 0644 from the umask, so other users could read the console's
    password hashes. FUNDX_HOME is made 0700 and the ledger 0600 whatever the umask; SQLite makes its
    -wal and -shm files with the database file's mode."""
    from fundx.core.settings import reload_settings

    home = tmp_path / "new" / "home"
    monkeypatch.setenv("FUNDX_HOME", str(home))
    monkeypatch.delenv("FUNDX_LEDGER_URL", raising=False)
    try:
        with _umask(0o022):
            ledger = Ledger.from_settings(reload_settings())
            ledger.log_event("test.private", "ledger")  # a write: the -wal and -shm files exist now
            files = sorted(p.name for p in home.iterdir())
            assert {"ledger.db", "ledger.db-wal", "ledger.db-shm"} <= set(files)
            assert _mode(home) == 0o700 and {name: _mode(home / name) for name in files} == dict.fromkeys(files, 0o600)
            ledger.dispose()
    finally:
        reload_settings()


def test_a_ledger_and_home_left_open_to_others_are_closed_when_opened(tmp_path, caplog):
    """A home and a ledger made before this fix (0755, 0644 and a 0644 -wal) are closed to their owner
    the next time fundx opens them, with a warning; nothing in them is lost."""
    from fundx.core.settings import prepare_home

    home = tmp_path / "old-home"
    with _umask(0o022):
        home.mkdir(mode=0o755)
        first = Ledger(f"sqlite:///{home / 'ledger.db'}")
        first.log_event("test.before", "ledger")
        first.dispose()
        for path in (home / "ledger.db", home / "ledger.db-wal", home / "ledger.db-shm"):
            if path.exists():
                path.chmod(0o644)
        os.chmod(home, 0o755)  # noqa: S103 - the loose home of an older fundx, to be closed
        prepare_home(home)
        again = Ledger(f"sqlite:///{home / 'ledger.db'}")
    try:
        assert _mode(home) == 0o700
        assert {p.name: _mode(p) for p in home.iterdir() if p.name.startswith("ledger.db")} == {
            p.name: 0o600 for p in home.iterdir() if p.name.startswith("ledger.db")}
        assert "let group or others in (644); it is now 600" in caplog.text
        assert "let group or others in (755); it is now 700" in caplog.text
        assert again.verify_audit().ok and again.verify_audit().head_seq == 1
    finally:
        again.dispose()
