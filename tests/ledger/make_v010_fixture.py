"""Make the committed fixtures of a ledger written by fundx 0.1.0 (tests/ledger/fixtures/v010-ledger.*).

Run it with fundx 0.1.0's code first on the path, from the root of a checkout of the current code:

    git worktree add /tmp/v010 v0.1.0      # or: mkdir /tmp/v010 && git archive v0.1.0 | tar -x -C /tmp/v010
    PYTHONPATH=/tmp/v010 .venv/bin/python tests/ledger/make_v010_fixture.py /tmp/v010

(PostgreSQL on 127.0.0.1:5432, or FUNDX_TEST_PG_URL, and ``pg_dump`` on the PATH; about two minutes.)
It refuses to run unless ``fundx`` is imported from the checkout given. With 0.1.0's code it runs what
an exchange of that release did, on the sandbox agencies of a small synthetic city: a night in which
one agency fails (a breach), the stages' acknowledgements, a steward's decisions (one row released,
one rejected), a second night that recovers the feed and hands the released row over, the matching
stage's orders, and a console account with a session, so that every table of the ledger has rows.
Then:

- ``v010-ledger.db``: the SQLite ledger (its WAL folded in, vacuumed);
- ``v010-ledger.pg.sql``: the same rows in a PostgreSQL database whose tables fundx 0.1.0 made
  (``Ledger(url)`` of that release), copied table by table through 0.1.0's metadata, the sequences set
  past the copied ids, dumped by ``pg_dump --inserts`` (its psql-only ``\\restrict`` lines left out, so
  that any client can run the file).

Synthetic data only: pseudonymous tokens and masked identity numbers, as the ledger always holds.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from datetime import date, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parent / "fixtures"
PG_ADMIN_URL = os.environ.get("FUNDX_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# the second night pulls October 2026 onwards, rows the sandbox has (its city stands on 2026-11-01): the
# event latency of a feed pulled before (pull_figures) is measured over them
NIGHTS = ("2026-10-01T00:00:00+08:00", "2026-11-23T00:00:00+08:00")
PEOPLE = 1500


def main(checkout: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="fundx-v010-fixture-"))
    os.environ.update({
        "FUNDX_HOME": str(work / "home"), "FUNDX_SANDBOX_HOME": str(work / "agencies"),
        "PREFECT_HOME": str(work / "prefect"), "PREFECT_LOGGING_LEVEL": "CRITICAL",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "FUNDX_RETRY_BASE_DELAY": "0.01", "FUNDX_RETRY_MAX_DELAY": "1", "FUNDX_HTTP_READ_TIMEOUT": "2",
        "FUNDX_STEWARD": "steward-wang",
    })
    for name in ("FUNDX_LEDGER_URL", "FUNDX_NOTIFY", "PREFECT_API_URL", "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"):
        os.environ.pop(name, None)
    import fundx

    if not Path(fundx.__file__).resolve().is_relative_to(checkout.resolve()):
        sys.exit(f"fundx is imported from {Path(fundx.__file__).parent}, not from {checkout}: "
                 f"run with PYTHONPATH={checkout}")
    try:
        ledger_db = night_on_the_sandbox(work)
        OUT.mkdir(exist_ok=True)
        sqlite_fixture(ledger_db, OUT / "v010-ledger.db")
        postgres_fixture(OUT / "v010-ledger.db", OUT / "v010-ledger.pg.sql")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for path in sorted(OUT.glob("v010-ledger.*")):
        print(f"{path}: {path.stat().st_size:,} bytes")


def night_on_the_sandbox(work: Path) -> Path:
    """What an exchange of fundx 0.1.0 did over two nights; returns its SQLite ledger."""
    from fundx.errors import NightFailed
    from fundx.handoff import record_acks
    from fundx.keys import init_keys
    from fundx.settings import reload_settings

    from fundx import quarantine
    from fundx.console import accounts  # its tables join the ledger's metadata, as the console's did
    from fundx.ledger import Ledger
    from fundx.stage import Stage, stages_with_inboxes
    from sandbox.agencies import Sandbox

    os.environ["FUNDX_KEYS_DIR"] = str(init_keys(work / "pki").dir)
    reload_settings()

    def receive() -> None:
        for stage in stages_with_inboxes():
            Stage(stage).receive()
        record_acks()

    from flows.exchange import nightly_exchange
    from matching.run import run_matching

    with Sandbox(work / "agencies", people=PEOPLE, faults={"civil_affairs": ["expired_token"]}) as sb:
        os.environ.update(sb.env)
        reload_settings()
        try:
            nightly_exchange(end=NIGHTS[0])
        except NightFailed:
            pass  # civil_affairs' token was refused: a failed pull, and a breach
        receive()
        ledger = Ledger.from_settings()
        kept = [q for q in quarantine.batches(ledger) if q.quarantined >= 2]
        if not kept:
            sys.exit("the night quarantined no batch with two rows: no decision to record")
        quarantine.decide(ledger, kept[0].batch_id, "release", rows=[1], actor="steward-wang",
                          reason="the agency confirmed the record by phone, ticket 4411")
        quarantine.decide(ledger, kept[0].batch_id, "reject", rows=[2], actor="steward-wang",
                          reason="the agency withdrew the record, ticket 4412")
        sb.set_faults("civil_affairs", [])
        nightly_exchange(end=NIGHTS[1])  # civil_affairs recovers; the released row is handed over
        receive()
        run_matching(date.fromisoformat(NIGHTS[1][:10]))
    account = accounts.add_account(ledger, "steward.li", "steward", "a-long-test-passphrase-1", actor="admin")
    assert accounts.authenticate(ledger, account.name, "a-long-test-passphrase-1") is not None
    accounts.open_session(ledger, account, lifetime=timedelta(hours=8))
    from fundx.ledger import metadata

    with ledger.engine.connect() as conn:
        import sqlalchemy as sa

        empty = [t.name for t in metadata.sorted_tables
                 if not conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()]
        pending = conn.execute(sa.text("SELECT count(*) FROM decisions WHERE status = 'pending'")).scalar()
    if empty or pending:
        sys.exit(f"tables left empty: {empty}; release decisions still pending: {pending}")
    assert ledger.verify_audit().ok
    ledger.dispose()
    return work / "home" / "ledger.db"


def sqlite_fixture(ledger_db: Path, target: Path) -> None:
    """The ledger in one file: its WAL folded in, free pages dropped."""
    target.unlink(missing_ok=True)
    with sqlite3.connect(ledger_db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM INTO ?", (str(target),))
    with sqlite3.connect(target) as conn:  # a fixture opened by tests needs no WAL files beside it
        conn.execute("PRAGMA journal_mode=DELETE")


def postgres_fixture(source_db: Path, target: Path) -> None:
    """The SQLite ledger's rows in tables fundx 0.1.0 made on PostgreSQL, dumped as plain SQL."""
    import sqlalchemy as sa

    from fundx.ledger import Ledger, metadata

    name = f"fundx_v010_fixture_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        pg = Ledger(url)  # 0.1.0 makes its tables (the console's too: imported above) and the audit head
        lite = sa.create_engine(f"sqlite:///{source_db}")
        with lite.connect() as src, pg.engine.begin() as dst:
            dst.execute(sa.text("DELETE FROM audit_head"))
            for table in metadata.sorted_tables:
                rows = [dict(r) for r in src.execute(table.select().order_by(*table.primary_key.columns)).mappings()]
                if rows:
                    dst.execute(table.insert(), rows)
                for column in table.primary_key.columns:
                    if column.autoincrement is True:  # serial ids: the next insert goes past the copied ones
                        dst.execute(sa.text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                            f"(SELECT coalesce(max({column.name}), 0) + 1 FROM {table.name}), false)"))
        lite.dispose()
        assert pg.verify_audit().ok
        pg.dispose()
        dump = subprocess.run(
            ["pg_dump", "--inserts", "--no-owner", "--no-privileges", "--dbname",
             sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)],
            capture_output=True, text=True, check=True, timeout=120).stdout
        lines = [line for line in dump.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))]
        target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
