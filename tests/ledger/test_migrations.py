"""The ledger's schema revisions (fundx.ledger.migrations): revision 0001 is the schema fundx 0.1.0 made, a new
ledger is the same as one brought through every revision, and a ledger written by fundx 0.1.0 (the
committed fixtures, made by tests/ledger/make_v010_fixture.py with that release's code) is refused until
`fundx ledger upgrade`, which keeps every row, on SQLite and on PostgreSQL; the exchange then runs on it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from testkit import pg_databases

from connectors.base import Repeats
from fundx.core.settings import reload_settings
from fundx.core.timeutil import Window, aware
from fundx.ledger import Ledger, migrations
from fundx.ledger.revision import LedgerSchemaError, check_schema
from fundx.ledger.schema import SCHEMA_HEAD, SCHEMA_REVISIONS, V010_TABLES, alembic_version, audit, metadata, pulls

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
V010_SQLITE = FIXTURES / "v010-ledger.db"
V010_PG = FIXTURES / "v010-ledger.pg.sql"
#: the rows fundx 0.1.0 wrote into the fixtures, per table (make_v010_fixture.py: two nights, decisions, ...)
V010_ROWS = {"runs": 2, "pulls": 16, "watermarks": 8, "deliveries": 14, "acks": 14, "quarantines": 7,
             "rule_failures": 45, "decisions": 2, "pull_figures": 4, "breaches": 13, "orders": 29, "audit": 102,
             "audit_head": 1, "console_accounts": 1, "console_sessions": 1}
REPEATS = ("repeats_identical", "repeats_superseded", "repeats_conflicting")


# --- databases -----------------------------------------------------------------------------------


@pytest.fixture
def new_database(request, tmp_path) -> Iterator[Callable[[], str]]:
    """Makes empty databases of this test's own: SQLite files, or PostgreSQL databases dropped at the end."""
    if request.param == "sqlite":
        yield lambda: f"sqlite:///{tmp_path / f'fundx_mig_{uuid.uuid4().hex[:10]}.db'}"
        return
    with pg_databases("fundx_mig") as make:
        yield make


BACKENDS = pytest.mark.parametrize("new_database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
                                   indirect=True)


def _v010_ledger(url: str) -> str:
    """The fixture written by fundx 0.1.0, put at ``url`` (a SQLite file, or an empty PostgreSQL database)."""
    if url.startswith("sqlite"):
        path = Path(sa.engine.make_url(url).database or "")
        shutil.copyfile(V010_SQLITE, path)
        path.chmod(0o600)
        return url
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:  # pg_dump's plain SQL, several statements: run by the driver as it is
            raw = conn.connection.dbapi_connection
            assert raw is not None
            raw.cursor().execute(V010_PG.read_text(encoding="utf-8"))
            raw.commit()
    finally:
        engine.dispose()
    return url


def _migrate(url: str, target: str) -> None:
    """Run the revisions up to ``target`` on a database, as fundx.ledger.migrations.upgrade does (its schema lock,
    Alembic's command on that connection), without its recognition of 0.1.0 ledgers or its audit entry."""
    ledger = Ledger(url, create=False)
    try:
        with ledger.schema_lock() as conn:
            command.upgrade(migrations.config(conn), target)
    finally:
        ledger.dispose()


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def _schema(url: str, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every table as the database describes it: columns in order with types, nullability, server defaults
    and autoincrement; the primary key, foreign keys, indexes, unique and check constraints by name."""
    engine = _engine(url)
    try:
        inspector = sa.inspect(engine)
        found: dict[str, Any] = {}
        for table in sorted(set(inspector.get_table_names()) - set(skip)):
            found[table] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"], c.get("default"), c.get("autoincrement"))
                            for c in inspector.get_columns(table)],
                "primary_key": inspector.get_pk_constraint(table),
                "foreign_keys": sorted((f["name"] or "", tuple(f["constrained_columns"]), f["referred_table"],
                                        tuple(f["referred_columns"]), tuple(sorted(f.get("options", {}).items())))
                                       for f in inspector.get_foreign_keys(table)),
                "indexes": sorted((i["name"] or "", tuple(i["column_names"]), bool(i["unique"]))
                                  for i in inspector.get_indexes(table)),
                "unique": sorted((u["name"] or "", tuple(u["column_names"]))
                                 for u in inspector.get_unique_constraints(table)),
                "checks": sorted((c["name"] or "", c["sqltext"]) for c in inspector.get_check_constraints(table)),
            }
        return found
    finally:
        engine.dispose()


def _sqlite_ddl(url: str) -> list[tuple[str, str, str]]:
    """SQLite keeps each table's and index's CREATE statement as it was written."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(  # type: ignore[misc]
                "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
                "AND name != 'alembic_version' ORDER BY name")]
    finally:
        engine.dispose()


def _revision(url: str) -> list[str]:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.select(alembic_version.c.version_num)).scalars())
    finally:
        engine.dispose()


def _rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of revision 0001's tables (fundx 0.1.0's columns), in primary-key order."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return {t.name: [dict(r) for r in conn.execute(t.select().order_by(*t.primary_key.columns)).mappings()]
                    for t in migrations.revision_one().sorted_tables}
    finally:
        engine.dispose()


# --- the revisions and the code agree -------------------------------------------------------------


def test_the_code_names_the_revisions_that_ship_in_the_package():
    scripts = migrations.scripts()
    assert [s.revision for s in reversed(list(scripts.walk_revisions()))] == list(SCHEMA_REVISIONS)
    assert scripts.get_heads() == [SCHEMA_HEAD]
    assert Path(scripts.dir) == ROOT / "fundx" / "ledger" / "migrations"  # found from the package, no alembic.ini
    assert not list(ROOT.glob("alembic.ini"))


def test_every_table_is_in_the_schema_whatever_was_imported():
    """The console's tables were once added to the metadata only when the console was imported; a process
    that imports the ledger alone must know the whole schema (revision 0001 and the head)."""
    code = "from fundx.ledger.schema import metadata; print(' '.join(sorted(metadata.tables)))"
    alone = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    tables = set(alone.stdout.split())
    assert set(V010_ROWS) == set(migrations.revision_one().tables)
    assert tables == set(V010_ROWS) | {"order_versions", "case_events", "stop_instructions", "stop_answers"}  # revisions 0003-0005
    assert set(V010_TABLES) < tables and {"console_accounts", "console_sessions"} <= tables


def test_the_wheel_carries_the_revisions(tmp_path):
    """The revisions work from an installed wheel: setuptools' build_py, the step that fills a wheel, copies
    the package's modules and Alembic's template (pyproject.toml's package-data)."""
    egg = tmp_path / "egg"  # a fresh egg-info: the checkout's own remembers files from earlier builds
    egg.mkdir()
    built = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "--quiet",
                            "egg_info", "--egg-base", str(egg), "build_py", "--build-lib", str(tmp_path)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    shipped = {p.relative_to(tmp_path).as_posix() for p in (tmp_path / "fundx" / "ledger" / "migrations").rglob("*")}
    assert {"__init__.py", "env.py", "script.py.mako", "versions/rev0001_v010_schema.py",
            "versions/rev0002_pull_repeats.py", "versions/rev0003_order_versions.py",
            "versions/rev0004_case_lifecycle.py", "versions/rev0005_stop_instructions.py"} <= {
        name.removeprefix("fundx/ledger/migrations/") for name in shipped}


# --- revision 0001 is fundx 0.1.0's schema; a new ledger is the revisions' head -----------------------


@BACKENDS
def test_revision_one_is_the_schema_fundx_0_1_0_made(new_database):
    by_revision, by_v010 = new_database(), _v010_ledger(new_database())
    _migrate(by_revision, "0001")
    assert _revision(by_revision) == ["0001"]
    assert _schema(by_revision, skip=("alembic_version",)) == _schema(by_v010)
    if by_revision.startswith("sqlite"):  # the very statements 0.1.0's metadata.create_all wrote
        assert _sqlite_ddl(by_revision) == _sqlite_ddl(by_v010)
    # and back: the later revisions' downgrades leave revision 0001's schema again
    _migrate(by_revision, "head")
    ledger = Ledger(by_revision, create=False)
    try:
        with ledger.schema_lock() as conn:
            command.downgrade(migrations.config(conn), "0001")
    finally:
        ledger.dispose()
    assert _schema(by_revision, skip=("alembic_version",)) == _schema(by_v010)


@BACKENDS
def test_a_new_ledger_is_the_same_as_one_brought_through_every_revision(new_database):
    made, migrated = new_database(), new_database()
    Ledger(made).dispose()  # metadata.create_all, stamped at the head
    _migrate(migrated, "head")
    assert _revision(made) == _revision(migrated) == [SCHEMA_HEAD]
    assert _schema(made) == _schema(migrated)
    assert "alembic_version" in _schema(made) and "pulls" in _schema(made)
    engine = _engine(migrated)  # and Alembic's own comparison finds nothing the revisions left out
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        engine.dispose()


@BACKENDS
def test_processes_opening_a_new_ledger_at_once_make_it_once(new_database):
    """Several openers of one new ledger (threads, each with its own engine and connections): the schema
    lock lets one make it and stamp it; the others wait and find it at the head."""
    url = new_database()
    barrier, errors = threading.Barrier(4), []

    def open_it() -> None:
        barrier.wait(timeout=60)
        try:
            Ledger(url).dispose()
        except Exception as exc:  # noqa: BLE001 - collected and shown by the assertion below
            errors.append(repr(exc))

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert _revision(url) == [SCHEMA_HEAD]
    ledger = Ledger(url)
    try:
        assert ledger.verify_audit().ok
    finally:
        ledger.dispose()


# --- a ledger of fundx 0.1.0 ---------------------------------------------------------------------


@BACKENDS
def test_a_v010_ledger_is_refused_then_upgraded_keeping_every_row(new_database):
    url = _v010_ledger(new_database())
    before = _rows(url)
    assert {t: len(rows) for t, rows in before.items()} == V010_ROWS  # rows in every table
    with pytest.raises(LedgerSchemaError, match=r"written by fundx 0\.1\.0 .*run `fundx ledger upgrade`"):
        Ledger(url)
    with pytest.raises(LedgerSchemaError, match="fundx ledger upgrade"):
        check_schema(url)
    assert _rows(url) == before  # refusing changed nothing

    ledger = Ledger(url, create=False)
    try:
        assert migrations.status(ledger).status == "v010"
        done = migrations.upgrade(ledger, actor="operator-zhao")
        assert (done.before, done.after, done.applied, done.adopted, done.made_tables) == (None, SCHEMA_HEAD,
                                                                                          SCHEMA_REVISIONS[1:], True, ())
        after = _rows(url)
        assert {t: len(rows) for t, rows in after.items()} == {**V010_ROWS, "audit": V010_ROWS["audit"] + 1}
        for table, rows in before.items():
            if table != "audit_head":  # the chain's head moved on by the upgrade's entry
                assert after[table][: len(rows)] == rows, table  # every row as it was, column by column
        assert after["audit_head"][0]["seq"] == before["audit_head"][0]["seq"] + 1
        with ledger.engine.connect() as conn:
            assert set(conn.execute(sa.select(*(pulls.c[n] for n in REPEATS)))) == {(0, 0, 0)}
            entry = conn.execute(audit.select().order_by(audit.c.seq.desc()).limit(1)).mappings().one()
        assert (entry["action"], entry["actor"], entry["subject"]) == ("ledger.upgraded", "operator-zhao", "ledger")
        assert '"from":"fundx 0.1.0 (no revision)"' in entry["details"] and f'"to":"{SCHEMA_HEAD}"' in entry["details"]
        verdict = ledger.verify_audit()
        assert verdict.ok, verdict
        again = migrations.upgrade(ledger, actor="operator-zhao")  # idempotent: nothing run, nothing audited
        assert not again.changed and _rows(url) == after
    finally:
        ledger.dispose()
    assert _revision(url) == [SCHEMA_HEAD]
    fresh = new_database()
    Ledger(fresh).dispose()
    assert _schema(url) == _schema(fresh)  # the upgraded ledger is what a new one is
    Ledger(url).dispose()  # and the code opens it


@BACKENDS
def test_a_v010_ledger_without_the_consoles_tables_gets_them(new_database):
    """fundx 0.1.0 made the console's tables only once the console had been imported: a ledger never
    opened by the console lacks them, and its upgrade makes them before stamping it 0001."""
    url = _v010_ledger(new_database())
    engine = _engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE console_sessions"))
        conn.execute(sa.text("DROP TABLE console_accounts"))
    engine.dispose()
    ledger = Ledger(url, create=False)
    try:
        done = migrations.upgrade(ledger, actor="t")
    finally:
        ledger.dispose()
    assert done.made_tables == ("console_accounts", "console_sessions") and done.applied == SCHEMA_REVISIONS[1:]
    fresh = new_database()
    Ledger(fresh).dispose()
    assert _schema(url) == _schema(fresh)


@BACKENDS
def test_two_upgrades_at_once_upgrade_once(new_database):
    url = _v010_ledger(new_database())
    barrier, results, errors = threading.Barrier(2), [], []

    def upgrade() -> None:
        ledger = Ledger(url, create=False)
        barrier.wait(timeout=60)
        try:
            results.append(migrations.upgrade(ledger, actor="t"))
        except Exception as exc:  # noqa: BLE001 - collected and shown by the assertion below
            errors.append(repr(exc))
        finally:
            ledger.dispose()

    threads = [threading.Thread(target=upgrade) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and sorted(r.changed for r in results) == [False, True]
    engine = _engine(url)
    with engine.connect() as conn:
        entries = conn.execute(sa.select(sa.func.count()).where(audit.c.action == "ledger.upgraded")).scalar()
    engine.dispose()
    assert entries == 1


@BACKENDS
def test_a_ledger_ahead_of_the_code_or_not_a_ledger_is_refused(new_database):
    ahead = new_database()
    Ledger(ahead).dispose()
    engine = _engine(ahead)
    with engine.begin() as conn:
        conn.execute(alembic_version.update().values(version_num="0099"))
    engine.dispose()
    with pytest.raises(LedgerSchemaError, match=rf"revision 0099, newer than this fundx knows \(up to {SCHEMA_HEAD}\)"):
        Ledger(ahead)
    ledger = Ledger(ahead, create=False)
    try:
        with pytest.raises(LedgerSchemaError, match="a newer fundx wrote it"):
            migrations.upgrade(ledger, actor="t")
    finally:
        ledger.dispose()
    assert _revision(ahead) == ["0099"]

    other = new_database()  # some of the ledger's table names, no revision: somebody else's database
    engine = _engine(other)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE runs (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    with pytest.raises(LedgerSchemaError, match="not a ledger fundx made"):
        Ledger(other)


# --- the repeats (revision 0002) ------------------------------------------------------------------


@dataclass(frozen=True)
class _Pull:  # the fields Ledger.record_pull reads from connectors.base.Pull
    feed: str
    window: Window
    rows: int = 10
    bytes: int = 1000
    pages: int = 1
    retries: int = 0
    digest: str = "sha256:00"
    duration_s: float = 0.5


@dataclass(frozen=True)
class _PullWithRepeats(_Pull):
    repeats: Repeats | None = None


def test_a_pull_records_its_repeats(ledger):
    run = ledger.start_run("night", "2026-11-23")
    window = Window.of("2026-01-01", "2026-11-23")
    ledger.record_pull(run, _PullWithRepeats("justice.prisoners", window, repeats=Repeats(7, 3, 2)),
                       started_at=aware("2026-11-23T01:00:00"))
    ledger.record_pull(run, _Pull("police.deaths", window), started_at=aware("2026-11-23T01:00:00"))
    ledger.record_pull(run, _PullWithRepeats("civil_affairs.deaths", window, repeats=None),
                       started_at=aware("2026-11-23T01:00:00"))
    found = {p.feed: (p.repeats_identical, p.repeats_superseded, p.repeats_conflicting)
             for p in ledger.pulls_of_run(run)}
    assert found == {"justice.prisoners": (7, 3, 2), "police.deaths": (0, 0, 0), "civil_affairs.deaths": (0, 0, 0)}


# --- the exchange on an upgraded ledger ------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox(sandbox_factory):
    with sandbox_factory("ledger", people=1000, stall_seconds=2.0) as sb:
        yield sb


@BACKENDS
def test_the_exchange_runs_a_feed_on_an_upgraded_v010_ledger(new_database, sandbox, run_dir, monkeypatch, tmp_path):
    from fundx.crypto.pki import init_keys
    from fundx.exchange.run import run_feed

    url = _v010_ledger(new_database())
    ledger = Ledger(url, create=False)
    migrations.upgrade(ledger, actor="t")
    ledger.dispose()
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FUNDX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FUNDX_LEDGER_URL", url)
    monkeypatch.setenv("FUNDX_KEYS_DIR", str(init_keys(run_dir / "pki").dir))  # the run's PKI (made once)
    reload_settings()
    try:
        # justice's overlapping snapshots repeat rows: the pull's repeats land in the new columns
        done = run_feed("justice.prisoners", start="2020-01-01", end="2026-11-23T00:00:00+08:00")
        ledger = Ledger.from_settings()
        try:
            assert done.handoff.outcome == "delivered" and done.rows > 0
            (delivery,) = [d for d in ledger.deliveries("justice.prisoners") if d.batch_id == done.handoff.batch_id]
            assert delivery.status == "ready"
            latest = ledger.latest_pulls()["justice.prisoners"]
            assert latest.id > V010_ROWS["pulls"] and latest.rows == done.rows
            assert done.report is not None
            counted = done.report["repeats"]
            assert (latest.repeats_identical, latest.repeats_superseded, latest.repeats_conflicting) == (
                counted["identical"], counted["superseded"], counted["conflicting"])
            assert sum(counted.values()) > 0
            from typer.testing import CliRunner

            from fundx.cli import app

            shown = CliRunner().invoke(app, ["status", "--json"])  # `fundx status` shows them
            assert shown.exit_code == 0, shown.output
            (justice,) = [f for f in json.loads(shown.output)["feeds"] if f["feed"] == "justice.prisoners"]
            assert justice["last_pull"]["repeats"] == counted
            verdict = ledger.verify_audit()
            assert verdict.ok, verdict
            assert sum(ledger.totals()["justice.prisoners"].values()) > 0
        finally:
            ledger.dispose()
    finally:
        reload_settings()


# --- the command -----------------------------------------------------------------------------------


def _fundx(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The installed `fundx` entry point, as a person runs it."""
    fundx = Path(sys.executable).with_name("fundx")
    return subprocess.run([str(fundx), *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def test_the_command_refuses_an_old_ledger_in_one_line_and_ledger_upgrade_fixes_it(tmp_path):
    url = _v010_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    env = {**os.environ, "FUNDX_HOME": str(tmp_path / "home"), "FUNDX_LEDGER_URL": url, "COLUMNS": "80"}
    env.pop("PREFECT_API_URL", None)
    for args in (("status",), ("pull", "police.deaths"), ("night",), ("failures", "list"), ("audit", "verify"),
                 ("stage", "receive", "--all"), ("matching", "run")):
        refused = _fundx(*args, env=env)
        assert refused.returncode == 1, (args, refused.stdout, refused.stderr)
        assert refused.stdout == "" and "Traceback" not in refused.stderr, args
        (line,) = refused.stderr.splitlines()  # one line, however narrow the terminal
        assert line.startswith("error: the ledger ") and "written by fundx 0.1.0" in line, line
        assert line.endswith("run `fundx ledger upgrade`"), line
    helped = _fundx("status", "--help", env=env)
    assert helped.returncode == 0 and "Usage: fundx status" in helped.stdout
    assert _fundx("feeds", env=env).returncode == 0  # never opens the ledger

    status = _fundx("ledger", "status", env=env)
    assert status.returncode == 1 and "written by fundx 0.1.0" in status.stderr
    assert _rows(url)["audit"] and _revision_or_none(url) is None  # refusing and looking changed nothing

    upgraded = _fundx("ledger", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "upgraded from fundx 0.1.0's schema" in upgraded.stdout and f"to {SCHEMA_HEAD}" in upgraded.stdout
    again = _fundx("ledger", "upgrade", env=env)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert _fundx("ledger", "status", env=env).returncode == 0
    verified = _fundx("audit", "verify", env=env)
    assert verified.returncode == 0 and f"{V010_ROWS['audit'] + 1} entries" in verified.stdout
    assert _fundx("status", env=env).returncode == 0

    engine = _engine(url)  # a newer fundx's revision: refused, saying so
    with engine.begin() as conn:
        conn.execute(alembic_version.update().values(version_num="0099"))
    engine.dispose()
    ahead = _fundx("status", env=env)
    (line,) = ahead.stderr.splitlines()
    assert ahead.returncode == 1 and "newer than this fundx knows" in line and "Traceback" not in ahead.stderr
    assert _fundx("ledger", "upgrade", env=env).returncode == 1


def _revision_or_none(url: str) -> str | None:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(sa.select(alembic_version.c.version_num)).scalar_one_or_none()
    finally:
        engine.dispose()
