"""Test-wide set-up: a private FUNDX_HOME and PREFECT_HOME per run, and the PostgreSQL server."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest

# Before anything imports prefect: its home, quiet logs, no heartbeats (about 1 s per flow run).
_RUN_DIR = Path(tempfile.mkdtemp(prefix="fundx-tests-"))
os.environ["FUNDX_HOME"] = str(_RUN_DIR / "var")
os.environ["FUNDX_SANDBOX_HOME"] = str(_RUN_DIR / "agencies")
os.environ["PREFECT_HOME"] = str(_RUN_DIR / "prefect")
os.environ.pop("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", None)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("FUNDX_RETRY_BASE_DELAY", "0.01")
os.environ.setdefault("FUNDX_RETRY_MAX_DELAY", "1")

PG_ADMIN_URL = os.environ.get("FUNDX_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def run_dir() -> Path:
    """The folder that holds this test run's FUNDX_HOME, sandbox home and PREFECT_HOME."""
    return _RUN_DIR


def _pg_available() -> str | None:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means: no server to test against
        return f"{type(exc).__name__}"
    return None


@pytest.fixture(scope="session")
def pg_url():
    """A fresh PostgreSQL database on the local server for this test run, dropped afterwards."""
    import sqlalchemy as sa

    problem = _pg_available()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is not reachable in CI ({problem})")
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is not reachable ({problem})")
    name = f"fundx_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path):
    """An empty ledger on SQLite, then on this run's PostgreSQL database."""
    from fundx.ledger import Ledger
    from fundx.ledger.schema import metadata

    url = f"sqlite:///{tmp_path / 'ledger.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    led = Ledger(url)
    yield led
    if request.param == "postgresql":
        metadata.drop_all(led.engine)
    led.dispose()


@pytest.fixture
def receiver():
    """A local webhook receiver on 127.0.0.1; yields (a Notifier posting to it, the notices received)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from fundx.notify import Notifier

    got: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"webhook+http://127.0.0.1:{server.server_port}/hook"
    notifier = Notifier.from_urls([url], timeout=5)
    notifier.url = url  # for tests that configure FUNDX_NOTIFY instead
    yield notifier, got
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _no_handler_on_a_closed_stream():
    """After each test: detach logging handlers left writing to a stream that is closed.

    A command run in-process by Click's CliRunner swaps sys.stderr for a buffer it closes afterwards; a
    handler made meanwhile (Prefect configures its console handler when a flow first runs) keeps that
    buffer, and every later log line through it prints "--- Logging error ---" into whatever output the
    next test captures. A real `fundx` command is one process: this is the tests' own leak."""
    yield
    import logging

    for logger in [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict))]:
        for handler in list(getattr(logger, "handlers", [])):
            stream = getattr(handler, "stream", None)
            if stream is not None and getattr(stream, "closed", False):
                logger.removeHandler(handler)
