"""The database transport's Arrow path (connectors/arrowdb.py, ADBC) hands on exactly the frames of the row
path (SQLAlchemy tuples): same chunks, dtypes and Python values, same digest and de-duplication — over the
sandbox's bills in SQLite and PostgreSQL, and over SQLite's dynamic typing, where it gives way to the row path."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from connectors import arrowdb, connector_for
from connectors.base import Tally
from fundx.core.errors import DataError
from fundx.core.retry import Retrier
from fundx.core.settings import reload_settings
from fundx.core.timeutil import Window, aware
from sandbox.city import generate_feed
from sandbox.faults import FaultState
from sandbox.medical_db import MedicalDB

FEED = "medical_insurance.bills"
WINDOW = Window(aware("2000-01-01"), aware("2030-01-01"))

pytestmark = pytest.mark.skipif(arrowdb.driver("sqlite") is None, reason="adbc-driver-sqlite is not installed")


def frames(arrow: bool, size: int) -> list[pd.DataFrame]:
    settings = reload_settings()
    connector = connector_for(FEED, settings)
    connector.arrow = arrow
    return list(connector._stream(WINDOW, Tally(retry=Retrier.for_pull(settings, feed=FEED)), size))


GAVE_WAY = "the Arrow read gave way to the row path"


def assert_same_frames(size: int, caplog: pytest.LogCaptureFixture | None = None, *, arrow: bool = True
                       ) -> list[pd.DataFrame]:
    """The Arrow path's chunks are the row path's; with ``caplog``: the Arrow path built them (``arrow``) or
    gave way to the row path."""
    if caplog is not None:
        caplog.clear()
        caplog.set_level(logging.INFO, logger="fundx.connectors.database")
    new = frames(True, size)
    if caplog is not None:
        assert (GAVE_WAY in caplog.text) is not arrow, caplog.text
    old = frames(False, size)
    assert [len(f) for f in new] == [len(f) for f in old]
    for a, b in zip(new, old, strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        for name in a.columns:  # the values' own Python types too (Decimal, date, int, str)
            assert [type(v) for v in a[name].astype(object)] == [type(v) for v in b[name].astype(object)], name
    return new


def assert_same_pull() -> None:
    settings = reload_settings()
    new = connector_for(FEED, settings)
    old = connector_for(FEED, settings)
    old.arrow = False
    a, b = new.extract(WINDOW), old.extract(WINDOW)
    assert (a.rows, a.digest, a.pages, str(a.repeats)) == (b.rows, b.digest, b.pages, str(b.repeats))
    pd.testing.assert_frame_equal(a.frame, b.frame, check_exact=True)


@pytest.fixture(scope="module")
def bills() -> pd.DataFrame:
    return pd.concat(list(generate_feed(FEED, 3_000)), ignore_index=True)


@pytest.fixture
def sqlite_bills(tmp_path, monkeypatch, bills):
    db = MedicalDB(tmp_path, bills, FaultState("medical_insurance"))
    db.load()
    monkeypatch.setenv("FUNDX_MEDICAL_INSURANCE_DB_URL", db.url)
    yield db
    db.close()
    monkeypatch.undo()
    reload_settings()


def test_sqlite_sandbox_bills_are_the_row_paths_frames(sqlite_bills, monkeypatch, caplog):
    monkeypatch.setattr(arrowdb, "SQLITE_BATCH_ROWS", 700)  # several driver batches per chunk, split across chunks
    chunks = assert_same_frames(1_000, caplog)
    assert len(chunks) == 3 and chunks[0]["total_amount"].dtype == "float64"
    assert_same_pull()


@pytest.mark.postgres
def test_postgres_sandbox_bills_are_the_row_paths_frames(tmp_path, monkeypatch, bills, new_pg_database, caplog):
    if arrowdb.driver("postgresql") is None:
        pytest.skip("adbc-driver-postgresql is not installed")
    db = MedicalDB(tmp_path, bills, FaultState("medical_insurance"), url=new_pg_database())
    db.load()
    try:
        monkeypatch.setenv("FUNDX_MEDICAL_INSURANCE_DB_URL", db.url)  # search_path in its options
        chunks = assert_same_frames(1_000, caplog)
        first = chunks[0].iloc[0]
        assert type(first["total_amount"]).__name__ == "Decimal" and first["settled_at"].tzinfo is not None
        assert_same_pull()
    finally:
        db.close()
        reload_settings()


# --- SQLite's dynamic typing: the same frames, or the row path -------------------------------------------


@pytest.fixture
def view(tmp_path, monkeypatch):
    """``view(rows, amount_type)``: a bills table (amounts of the given declared type, '' for none) and its view."""
    path = tmp_path / "bills.db"
    monkeypatch.setenv("FUNDX_MEDICAL_INSURANCE_DB_URL", f"sqlite:///{path}")
    monkeypatch.setenv("FUNDX_RETRY_ATTEMPTS", "1")

    def make(rows: list[tuple], amount_type: str = "") -> Path:
        with sqlite3.connect(path) as conn:
            conn.execute("DROP VIEW IF EXISTS v_settled_bills")
            conn.execute("DROP TABLE IF EXISTS bills")
            conn.execute("CREATE TABLE bills (bill_id TEXT, id_number TEXT, patient_name TEXT, hospital_code TEXT, "
                         f"diagnosis_code TEXT, admitted_on TEXT, discharged_on TEXT, total_amount {amount_type}, "
                         f"fund_amount {amount_type}, settled_at TEXT)")
            conn.executemany("INSERT INTO bills VALUES (?, '33010519500101123X', '李四', 'H3301', 'J18.9', '2026-04-01', "
                             "?, ?, 100, ?)", rows)
            conn.execute("CREATE VIEW v_settled_bills AS SELECT * FROM bills")
        return path

    yield make
    monkeypatch.undo()
    reload_settings()


def bill(i: int, total, discharged=None) -> tuple:
    return (f"B{i:05d}", discharged, total, f"2026-04-02 09:{i // 60 % 60:02d}:{i % 60:02d}")


@pytest.mark.parametrize("amount_type", ["", "NUMERIC(14,2)", "REAL", "INTEGER"])
@pytest.mark.parametrize("totals", [
    [150, 200],  # integers only: int64 in the row path's frame
    [150, 200.5, 300],  # mixed in one chunk: float64
    [150, 150, 150, 150, 150, 150, 200.5],  # integers first, a real in a later driver batch
    [150.5, None, 200],
    [None, None],  # nothing: object Nones
], ids=["integers", "mixed", "real-later", "null", "all-null"])
def test_sqlite_numbers_of_any_storage_are_the_row_paths(view, monkeypatch, amount_type, totals):
    monkeypatch.setattr(arrowdb, "SQLITE_BATCH_ROWS", 2)
    view([bill(i, t) for i, t in enumerate(totals)], amount_type)
    assert_same_frames(3)
    assert_same_frames(50)


def test_sqlite_text_after_empty_batches_is_the_row_paths(view, monkeypatch, caplog):
    """The driver types a column NULL in its first batch as int64 and then fails on text: the row path reads."""
    monkeypatch.setattr(arrowdb, "SQLITE_BATCH_ROWS", 2)
    view([bill(i, 100.5, None if i < 4 else "2026-04-03") for i in range(6)])
    assert_same_frames(3, caplog, arrow=False)
    assert_same_frames(50)


@pytest.mark.parametrize("total", ["1,200.00", "150.50", b"\x00\x01"], ids=["text", "numeric-text", "blob"])
def test_sqlite_text_in_a_number_column_goes_the_row_path(view, monkeypatch, caplog, total):
    """The row path hands such values on as they are (the check names them): the Arrow path would turn
    the numbers beside them into text, so it gives way."""
    monkeypatch.setattr(arrowdb, "SQLITE_BATCH_ROWS", 2)
    view([bill(0, 200.0), bill(1, total), bill(2, 150)])
    assert_same_frames(50, caplog, arrow=False)
    if total != "150.50":
        with pytest.raises(DataError, match="column total_amount of v_settled_bills holds 1 value"):
            connector_for(FEED, reload_settings()).extract(WINDOW)


def test_sqlite_a_blob_in_a_text_column_goes_the_row_path(view, caplog):
    view([bill(0, 200.0), (b"\xff\x00", None, 150, "2026-04-02 10:00:00")])
    assert_same_frames(50, caplog, arrow=False)


def test_without_the_driver_the_row_path_reads(view, monkeypatch):
    view([bill(i, 100.5) for i in range(3)])
    monkeypatch.setattr(arrowdb, "DRIVERS", {})
    assert arrowdb.driver("sqlite") is None
    assert len(frames(True, 50)[0]) == 3


def test_sqlite_query_flags_only_columns_without_a_telling_affinity():
    columns = [arrowdb.Column("a", "a", False, "TEXT"), arrowdb.Column("b", "b", True, "NUMERIC"),
               arrowdb.Column("c", "c", True, "BLOB"), arrowdb.Column("d", None, False, "BLOB"),
               arrowdb.Column("e", "e", False, "NUMERIC")]
    sql = arrowdb.select_sql(columns, "v", None, "a", ["a"], lambda n: f'"{n}"', "sqlite")
    assert "typeof(\"c\")" in sql and "typeof(\"e\")" in sql and "typeof(\"a\")" not in sql
    assert "NULL AS \"d\"" in sql and sql.endswith('ORDER BY "a"')
    assert [arrowdb.affinity(t) for t in ("INT", "varchar(10)", "", "double", "NUMERIC(14,2)", "DATE")] == [
        "INTEGER", "TEXT", "BLOB", "REAL", "NUMERIC", "NUMERIC"]


def test_libpq_uri_keeps_the_options_spaces_and_adds_the_connect_timeout():
    from sqlalchemy.engine import make_url

    url = make_url("postgresql+psycopg://u:p%40ss@db:5432/x?options=-csearch_path%3Dm%20-c%20statement_timeout%3D5000")
    uri = arrowdb.libpq_uri(url, 2.4)
    assert uri == ("postgresql://u:p%40ss@db:5432/x?options=-csearch_path%3Dm%20-c%20statement_timeout%3D5000"
                   "&connect_timeout=2")


def test_an_arrow_read_failing_part_way_is_read_again_by_the_row_path(view, monkeypatch):
    """Chunks already handed on cannot be taken back: the read fails as transient, and the retry (the whole
    pull's, or the streamed pull's from scratch) reads rows."""
    view([bill(i, 100.5) for i in range(6)])
    real = arrowdb.frame
    built = []

    def failing_second(*args, **kwargs):
        built.append(1)
        if len(built) == 2:
            raise OSError("the driver failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(arrowdb, "frame", failing_second)
    monkeypatch.setenv("FUNDX_RETRY_ATTEMPTS", "2")
    settings = reload_settings()
    connector = connector_for(FEED, settings)
    connector.config = connector.config.model_copy(update={"chunk_size": 2})
    pull = connector.extract(WINDOW)
    assert (pull.rows, pull.retries, len(built)) == (6, 1, 2)
    old = connector_for(FEED, settings)
    old.arrow = False
    assert pull.digest == old.extract(WINDOW).digest
