"""The database transport against PostgreSQL: typed values, aware window binds, search_path kept, statement timeout."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest

from connectors import connector_for
from fundx.core.errors import SourceSchemaError, TransientError
from fundx.core.settings import reload_settings
from fundx.core.timeutil import Window, aware
from sandbox.agencies import Sandbox

FEED = "medical_insurance.bills"
pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_sandbox(sandbox_factory, pg_url):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FUNDX_RETRY_BASE_DELAY", "0.01")
        mp.setenv("FUNDX_RETRY_MAX_DELAY", "0.05")
        with sandbox_factory("pg", people=5_000, medical_db_url=pg_url) as sb:
            mp.setenv("FUNDX_MEDICAL_INSURANCE_DB_URL", sb.env["FUNDX_MEDICAL_INSURANCE_DB_URL"])
            reload_settings()
            yield sb
    reload_settings()


def window(sb: Sandbox) -> Window:
    return Window.of("2020-01-01", sb.as_of + timedelta(days=1))


def test_postgres_pull_is_exact_and_typed(pg_sandbox):
    w = window(pg_sandbox)
    pull = connector_for(FEED, reload_settings()).extract(w)
    expected = pg_sandbox.expected(FEED, w.start, w.end)
    assert pull.rows == len(expected) > 0
    assert list(pull.frame["bill_id"]) == list(expected["bill_id"])  # ordered by (settled_at, bill_id)
    first = pull.frame.iloc[0]
    assert isinstance(first["total_amount"], Decimal)
    assert first["settled_at"].tzinfo is not None


def test_postgres_adjacent_windows_partition(pg_sandbox):
    w = window(pg_sandbox)
    split = aware("2026-06-01")
    connector = connector_for(FEED, reload_settings())
    a, b = connector.extract(Window(w.start, split)), connector.extract(Window(split, w.end))
    assert a.rows == len(pg_sandbox.expected(FEED, w.start, split))
    assert b.rows == len(pg_sandbox.expected(FEED, split, w.end))
    assert not set(a.frame["bill_id"]) & set(b.frame["bill_id"])


def test_postgres_statement_timeout_is_transient(pg_sandbox, monkeypatch):
    pg_sandbox.set_faults("medical_insurance", ["slow"])  # pg_sleep(0.2) in the view
    try:
        monkeypatch.setenv("FUNDX_DB_TIMEOUT", "0.05")
        monkeypatch.setenv("FUNDX_RETRY_ATTEMPTS", "2")
        with pytest.raises(TransientError, match="after 2 tries"):
            connector_for(FEED, reload_settings()).extract(window(pg_sandbox))
        monkeypatch.setenv("FUNDX_DB_TIMEOUT", "30")
        assert connector_for(FEED, reload_settings()).extract(window(pg_sandbox)).rows > 0
    finally:
        pg_sandbox.set_faults("medical_insurance", [])


def test_postgres_statement_running_past_the_pull_deadline_is_cancelled(pg_sandbox, monkeypatch):
    """The statement timeout (FUNDX_DB_TIMEOUT) is far off; the pull's deadline cancels the query on the server."""
    import sqlalchemy as sa

    from connectors import build_connector, load_feed
    from fundx.core.errors import DeadlineExceeded

    url = pg_sandbox.env["FUNDX_MEDICAL_INSURANCE_DB_URL"]  # its search_path is the agency's schema
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE OR REPLACE VIEW v_slow_bills AS SELECT * FROM v_settled_bills "
                             "WHERE (SELECT count(*) FROM pg_sleep(60)) > 0"))
    try:
        monkeypatch.setenv("FUNDX_DB_TIMEOUT", "120")
        monkeypatch.setenv("FUNDX_PULL_DEADLINE", "1.5")
        config = load_feed(FEED)
        assert config.database is not None
        slow = config.model_copy(update={"database": config.database.model_copy(update={"relation": "v_slow_bills"})})
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"deadline of 1\.5 s \(FUNDX_PULL_DEADLINE\)"):
            build_connector(slow, reload_settings()).extract(window(pg_sandbox))
        assert time.monotonic() - started < 1.5 + 20  # not the minute the view sleeps (catches a hang)
        with engine.connect() as conn:  # and the server is not still running it
            running = conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%v_slow_bills%' "
                                           "AND state = 'active' AND pid <> pg_backend_pid()")).scalar()
        assert running == 0
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP VIEW IF EXISTS v_slow_bills"))
        engine.dispose()


def test_postgres_renamed_column(pg_sandbox):
    pg_sandbox.set_faults("medical_insurance", ["renamed_column"])
    try:
        with pytest.raises(SourceSchemaError, match="id_number"):
            connector_for(FEED, reload_settings()).extract(window(pg_sandbox))
    finally:
        pg_sandbox.set_faults("medical_insurance", [])
