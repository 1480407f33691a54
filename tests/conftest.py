"""Test-wide set-up: a private FUNDX_HOME and PREFECT_HOME per run, and the PostgreSQL server."""

from __future__ import annotations

import os
import sys
import tempfile
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

from testkit import Pki, cached_city, make_pki, pg_databases  # noqa: E402  (after the environment above)


@pytest.fixture(scope="session", autouse=True)
def _no_server_or_pool_outlives_the_run():
    """Stops the ephemeral Prefect servers and the kept process pools this process started, at the end of its
    session: Prefect and fundx.exchange.process_pool stop them at interpreter exit, which a pytest-xdist worker
    ended by ``os._exit`` never reaches (a server, and a pool's five workers, were left running, orphaned, after
    runs on two workers)."""
    yield
    server = sys.modules.get("prefect.server.api.server")
    if server is not None:
        for instance in list(server.SubprocessASGIServer._instances.values()):
            instance.stop()
    pools = sys.modules.get("fundx.exchange.process_pool")
    if pools is not None:
        pools._shutdown_pools()


@pytest.fixture(scope="session")
def run_dir() -> Path:
    """The folder that holds this test run's FUNDX_HOME, sandbox home and PREFECT_HOME."""
    return _RUN_DIR


@pytest.fixture(scope="session")
def pg_url():
    """A fresh PostgreSQL database on the local server for this test run, dropped afterwards (skipped
    saying why when there is no server; failed in CI, where there must be one)."""
    with pg_databases() as make:
        yield make()


@pytest.fixture
def new_pg_database():
    """A maker of empty PostgreSQL databases of this test's own (``new_pg_database() -> url``), dropped
    at its end: for tests whose processes make the tables, or that need more than one database."""
    with pg_databases("fundx_t") as make:
        yield make


@pytest.fixture(scope="session")
def pki(run_dir) -> Pki:
    """The run's development PKI (CA, exchange signer, every stage's certificates), made once: RSA keys
    take seconds. Tests that revoke, rotate or re-issue make one of their own with testkit.make_pki."""
    return make_pki(run_dir / "pki")


@pytest.fixture(scope="session")
def keys_dir(pki) -> Path:
    """The run's development PKI's folder, for FUNDX_KEYS_DIR."""
    return pki.dir


@pytest.fixture(scope="session")
def city_of(run_dir):
    """``city_of(people, seed=None, as_of=None)``: the sandbox's city (generate_city), generated once per run for
    each (people, seed, as_of) and a copy of its own for every caller (testkit.cached_city)."""

    def make(people: int, seed: int | None = None, as_of=None):
        return cached_city(run_dir / "cities", people, seed, as_of)

    return make


@pytest.fixture(scope="session")
def sandbox_factory(run_dir, city_of):
    """The one way tests make sandbox agencies: ``with sandbox_factory("night", people=3000) as sb`` starts
    them in a folder of their own under this run's (``agencies-night``) and stops them at the end;
    ``sandbox_factory(...).start()`` for a test that stops them itself. Options are Sandbox's; without
    ``city=`` the agencies serve a copy of the run's city of that size (``city_of``), generated once."""
    from sandbox.agencies import Sandbox

    def make(name: str, **options) -> Sandbox:
        where, n = run_dir / f"agencies-{name}", 1
        while where.exists():
            n += 1
            where = run_dir / f"agencies-{name}-{n}"
        if options.get("city") is None:
            default = Sandbox.__init__.__kwdefaults__["people"]
            options["city"] = city_of(options.pop("people", default), options.pop("seed", None),
                                      options.pop("as_of", None))
        return Sandbox(where, **options)

    return make


@pytest.fixture
def home(request, keys_dir, monkeypatch, tmp_path) -> Path:
    """An exchange home and ledger of the test's own against the module's ``sandbox`` fixture (when it has
    one); the run's PKI; parts of at most 64 KiB (so that the sandbox's feeds make several); FUNDX_STEWARD."""
    from fundx.core.settings import reload_settings

    try:
        sandbox = request.getfixturevalue("sandbox")
    except pytest.FixtureLookupError:  # a module without agencies
        sandbox = None
    for key, value in (sandbox.env.items() if sandbox is not None else ()):
        monkeypatch.setenv(key, value)
    home = tmp_path / "home"
    monkeypatch.setenv("FUNDX_HOME", str(home))
    monkeypatch.delenv("FUNDX_LEDGER_URL", raising=False)
    monkeypatch.setenv("FUNDX_KEYS_DIR", str(keys_dir))
    monkeypatch.setenv("FUNDX_PART_BYTES", str(64 * 1024))
    monkeypatch.setenv("FUNDX_STEWARD", "steward-wang")
    monkeypatch.delenv("FUNDX_TEST_KILL_AT", raising=False)
    reload_settings()
    yield home
    reload_settings()


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
