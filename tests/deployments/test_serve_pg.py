"""`make serve-pg` for real: `python -m deployments.run start --postgres` in a home of its own, with
Prefect's database and the ledger in two new PostgreSQL databases (dropped at the end); two process
workers online on the one `fundx` pool (asked through Prefect's client); one feed's deployment run
through a worker, its rows in the PostgreSQL ledger and its flow run in Prefect's PostgreSQL database
(no SQLite file made anywhere); `status` naming both workers; `stop` ending all of it.

And, quickly: an unreachable server or an unknown user is an error naming the setting and the
address; a password written in a URL is handed to the processes as PGPASSWORD, never kept in a URL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from testkit import PG_ADMIN_URL, need_pg

from deployments.processes import descendants, ours, read_pid
from deployments.serve_setup import ServeError, pg_databases
from fundx.core.process import alive

REPO = Path(__file__).resolve().parents[2]
FEED, STAGE = "justice.prisoners", "custody_matching"  # the sandbox's smallest feed that has rows


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env(**extra: str) -> dict[str, str]:
    """None of the session's PREFECT_* or FUNDX_* settings but its quick retries; then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FUNDX_", "PG"))
           or k in ("FUNDX_RETRY_BASE_DELAY", "FUNDX_RETRY_MAX_DELAY")}
    env.update(extra)
    return env


def _run(env: dict[str, str], *args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deployments.run", *args], env=env, cwd=REPO,
                          check=False, capture_output=True, text=True, timeout=timeout)


# --- quick: errors and passwords -------------------------------------------------------------------


def test_an_unreachable_server_is_named_with_its_setting_and_nothing_starts(tmp_path):
    port = _free_port()  # nothing listens there
    env = _clean_env(FUNDX_HOME=str(tmp_path / "var"), FUNDX_SERVE_PORT=str(_free_port()),
                     FUNDX_SERVE_PG_URL=f"postgresql://postgres@127.0.0.1:{port}/postgres")
    done = _run(env, "start", "--postgres", timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"PostgreSQL at 127.0.0.1:{port} is not reachable" in done.stderr
    assert "FUNDX_SERVE_PG_URL" in done.stderr and "what to do: start PostgreSQL on" in done.stderr
    assert not (tmp_path / "var" / "serve" / "server.pid").exists()


@pytest.mark.postgres
def test_an_unknown_user_is_named_with_its_setting(tmp_path):
    need_pg()
    env = _clean_env(FUNDX_HOME=str(tmp_path / "var"), FUNDX_SERVE_PORT=str(_free_port()),
                     FUNDX_SERVE_PG_URL="postgresql://fundx_no_such_role@127.0.0.1:5432/postgres")
    done = _run(env, "start", "--postgres", timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "fundx_no_such_role" in done.stderr and "FUNDX_SERVE_PG_URL" in done.stderr
    assert "what to do:" in done.stderr
    assert not (tmp_path / "var" / "serve" / "server.pid").exists()


def test_a_password_in_a_url_goes_to_pgpassword_and_into_no_url(monkeypatch, tmp_path):
    from deployments.serve_setup import setup
    from fundx.core.settings import reload_settings

    secret = "s3cret-Pa55"
    pg = pg_databases({"FUNDX_SERVE_PG_URL": f"postgresql://fundx:{secret}@db.example:5433/postgres",
                       "FUNDX_SERVE_PG_LEDGER_DB": "fundx_ledger_b"})
    assert pg.prefect_url == "postgresql+asyncpg://fundx@db.example:5433/fundx_prefect"
    assert pg.ledger_url == "postgresql+psycopg://fundx@db.example:5433/fundx_ledger_b"
    assert pg.password == secret and secret not in repr(pg)

    for key in [k for k in os.environ if k.startswith(("PREFECT_SERVER_DATABASE", "PREFECT_API_DATABASE", "PG"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("FUNDX_HOME", str(tmp_path / "var"))
    monkeypatch.setenv("FUNDX_SERVE_PG_URL", f"postgresql://fundx:{secret}@db.example:5433/postgres")
    monkeypatch.delenv("FUNDX_LEDGER_URL", raising=False)
    try:
        s = setup(postgres=True)
        assert s.workers == 2 and setup(postgres=True, workers=3).workers == 3
        assert s.env["PGPASSWORD"] == s.server_env["PGPASSWORD"] == secret
        assert s.env["FUNDX_LEDGER_URL"] == "postgresql+psycopg://fundx@db.example:5433/fundx_ledger"
        assert s.server_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == \
            "postgresql+asyncpg://fundx@db.example:5433/fundx_prefect"
        assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in s.env  # the workers use the API, not its database
        leaks = {k for k, v in {**s.env, **s.server_env}.items() if secret in v and k != "PGPASSWORD"}
        assert leaks == set()
        assert secret not in repr(s.described())
    finally:
        monkeypatch.undo()
        reload_settings()

    with pytest.raises(ServeError, match="different passwords"):
        pg_databases({"FUNDX_SERVE_PG_URL": "postgresql://a:one@h/postgres",
                      "FUNDX_LEDGER_URL": "postgresql+psycopg://a:two@h/ledger"})
    with pytest.raises(ServeError, match="FUNDX_LEDGER_URL names a sqlite database") as wrong:
        pg_databases({"FUNDX_LEDGER_URL": "sqlite:////tmp/ledger.db"})
    assert "unset FUNDX_LEDGER_URL" in wrong.value.action
    with pytest.raises(ServeError, match="FUNDX_SERVE_PG_PREFECT_DB"):
        pg_databases({"FUNDX_SERVE_PG_PREFECT_DB": 'x"; DROP DATABASE y; --'})


# --- make serve-pg for real ------------------------------------------------------------------------


class Watcher:
    """Every pid of the server, the workers and their descendants (flow-run processes), while it runs."""

    def __init__(self, serve_dir: Path) -> None:
        self.dir = serve_dir
        self.seen: set[int] = set()
        self._on = True
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while self._on:
            for path in self.dir.glob("*.pid"):
                pid = read_pid(path)
                if pid and alive(pid):
                    self.seen.update([pid, *descendants(pid)])
            time.sleep(0.2)

    def stop(self) -> None:
        self._on = False
        self._thread.join()


@pytest.mark.serve
@pytest.mark.prefect
@pytest.mark.postgres
def test_serve_pg_runs_two_workers_on_postgresql_and_a_feed_lands_in_the_postgresql_ledger(tmp_path):
    need_pg()
    from sandbox.agencies import Sandbox

    suffix = uuid.uuid4().hex[:10]
    prefect_db, ledger_db = f"fundx_test_prefect_{suffix}", f"fundx_test_ledger_{suffix}"
    server = sa.engine.make_url(PG_ADMIN_URL)
    home = tmp_path / "var"
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = _clean_env(
        FUNDX_HOME=str(home), FUNDX_SANDBOX_HOME=str(tmp_path / "agencies"), FUNDX_SERVE_PORT=str(port),
        FUNDX_SERVE_PG_URL=server.set(drivername="postgresql").render_as_string(hide_password=False),
        FUNDX_SERVE_PG_PREFECT_DB=prefect_db, FUNDX_SERVE_PG_LEDGER_DB=ledger_db,
        PREFECT_HOME=str(home / "prefect"), PREFECT_LOGGING_LEVEL="INFO", PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    sandbox = Sandbox(tmp_path / "agencies", people=2000)
    watcher = Watcher(home / "serve")
    began = time.monotonic()
    errors = tmp_path / "start.err"
    with open(errors, "w") as err_file:
        starting = subprocess.Popen([sys.executable, "-m", "deployments.run", "start", "--postgres"], env=env,
                                    cwd=REPO, stdout=subprocess.PIPE, stderr=err_file, text=True)
    printed: list[str] = []
    registered = threading.Event()

    def read() -> None:  # start's lines as they come: the feed's deployment is there before start ends
        for line in starting.stdout:
            printed.append(line)
            if line.strip().startswith(f"deployment exchange-feed/{FEED} "):
                registered.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    flow_run_id = None
    try:
        sandbox.start()  # while the server starts
        while not registered.wait(0.5) and starting.poll() is None:
            pass
        if registered.is_set():  # a run asked for while the rest registers: a worker takes it once it is up
            flow_run_id = _run_feed_deployment(api)
        starting.wait(timeout=150)
        reader.join(timeout=10)
        out = "".join(printed)
        assert starting.returncode == 0, out + errors.read_text()
        started_in = time.monotonic() - began
        assert f"Prefect's database: PostgreSQL database {prefect_db} on {server.host}:{server.port}" in out
        assert f"the ledger: PostgreSQL database {ledger_db}" in out and out.count("(created)") == 2
        ledger_url = f"postgresql+psycopg://{server.username}@{server.host}:{server.port}/{ledger_db}"
        assert f"export FUNDX_LEDGER_URL={ledger_url}" in out

        assert flow_run_id is not None  # the checks below run while it does
        names = _online_workers(api)
        assert len(names) >= 2 and len(set(names)) == len(names), names
        status = _run(env, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        lines = [line for line in status.stdout.splitlines() if line.startswith("worker: ")]
        assert len(lines) == 2 and all("online" in line and "NOT" not in line for line in lines), status.stdout
        assert f"database PostgreSQL database {prefect_db}" in status.stdout
        assert f"ledger: PostgreSQL database {ledger_db}" in status.stdout

        state = _wait_final(api, flow_run_id)
        assert state == "COMPLETED", (state, _logs(home))
        _the_feed_is_in_the_postgresql_ledger(admin, ledger_db)
        # Prefect's own records are in its PostgreSQL database
        engine = sa.create_engine(server.set(database=prefect_db), poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                found = conn.execute(sa.text("SELECT state_type FROM flow_run WHERE id = :id"),
                                     {"id": flow_run_id}).scalar()
                trgm = conn.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")).scalar()
        finally:
            engine.dispose()
        assert found == "COMPLETED" and trgm == 1
        assert not (home / "ledger.db").exists() and not (home / "prefect" / "prefect.db").exists()
        assert (home / "inboxes" / STAGE).is_dir() and len(list((home / "inboxes" / STAGE).iterdir())) == 1

        servers = read_pid(home / "serve" / "server.pid")
        workers = [read_pid(home / "serve" / name) for name in ("worker.pid", "worker-2.pid")]
        stopped = _run(env, "stop", timeout=90)
        assert stopped.returncode == 0, stopped.stderr
        assert f"server (pid {servers}) stopped" in stopped.stdout
        assert f"worker (pid {workers[0]}) stopped" in stopped.stdout
        assert f"worker fundx-{socket.gethostname()}-2 (pid {workers[1]}) stopped" in stopped.stdout
        watcher.stop()
        assert {servers, *workers} <= watcher.seen
        assert [p for p in watcher.seen if ours(p)] == []  # nothing of it left running
        assert _run(env, "status").returncode == 1
        print(f"serve-pg: started in {started_in:.0f} s, whole test {time.monotonic() - began:.0f} s")
    finally:
        if starting.poll() is None:
            starting.kill()
            starting.wait()
        _run(env, "stop", timeout=90)
        watcher.stop()
        for pid in watcher.seen:  # a safety net: the test above fails if this finds anything
            if ours(pid):
                os.kill(pid, 9)
        sandbox.stop()
        with admin.connect() as conn:
            for name in (prefect_db, ledger_db):
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _client(api: str):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    class Client:
        def __enter__(self):
            self._settings = temporary_settings({PREFECT_API_URL: api})
            self._settings.__enter__()
            self._client = get_client(sync_client=True)
            return self._client.__enter__()

        def __exit__(self, *exc):
            try:
                self._client.__exit__(*exc)
            finally:
                self._settings.__exit__(*exc)

    return Client()


def _online_workers(api: str) -> list[str]:
    """The names of the fundx pool's ONLINE workers, as Prefect's client reads them."""
    with _client(api) as client:
        workers = client.read_workers_for_work_pool("fundx")
    return [w.name for w in workers if str(getattr(w.status, "value", w.status)).upper() == "ONLINE"]


def _run_feed_deployment(api: str) -> str:
    with _client(api) as client:
        deployment = client.read_deployment_by_name(f"exchange-feed/{FEED}")
        run = client.create_flow_run_from_deployment(deployment.id)
    return str(run.id)


def _wait_final(api: str, flow_run_id: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    state = None
    with _client(api) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(flow_run_id).state
            if state is not None and state.is_final():
                return state.type.value
            time.sleep(0.5)
    return f"not final after {timeout:g} s: {state.type.value if state else None}"


def _logs(home: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted((home / "serve").glob("worker*.log")))


def _the_feed_is_in_the_postgresql_ledger(admin, ledger_db: str) -> None:
    url = admin.url.set(database=ledger_db)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            runs = conn.execute(sa.text("SELECT kind, outcome FROM runs")).all()
            pulls = conn.execute(sa.text("SELECT feed, outcome, rows FROM pulls")).all()
            delivered = conn.execute(sa.text("SELECT feed, stage, status, rows FROM deliveries")).all()
            audited = conn.execute(sa.text("SELECT count(*) FROM audit")).scalar()
    finally:
        engine.dispose()
    assert [tuple(r) for r in runs] == [("feed", "completed")]
    ((feed, outcome, rows),) = pulls
    assert (feed, outcome) == (FEED, "pulled") and rows > 0
    ((feed, stage, status, valid),) = delivered
    assert (feed, stage, status) == (FEED, STAGE, "ready") and 0 < valid <= rows
    assert audited >= 3
