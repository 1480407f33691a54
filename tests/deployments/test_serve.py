"""`make serve` for real: a Prefect server, the `fundx` process work pool and a worker, started by
`python -m deployments.run start` in a home of its own; the deployments and automations it
registers; a night through the worker against the sandbox agencies (found through the sandbox's
exchange.env, as `fundx night` finds them); one night never twice at once; the automations calling
their webhook; `stop` leaving no process behind.

Everything Prefect runs in subprocesses with their own environment (no PREFECT_* of the test
session's), and the test talks to the server over its REST API, so the session's own Prefect
settings stay as they are for the other tests.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from connectors.registry import registry
from deployments.automations import FEED_SILENT, LATE_OR_CRASHED, NIGHT_OVER_BUDGET
from deployments.catalog import specs
from deployments.processes import descendants, ours, read_pid
from fundx.core.process import alive

pytestmark = [pytest.mark.serve, pytest.mark.prefect]

REPO = Path(__file__).resolve().parents[2]
#: every feed of the feed configs
FEEDS = registry().names


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Hook:
    """The automations' webhook: records every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fundx"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Served:
    """The environment of `make serve` in a home of its own, and what it started."""

    def __init__(self, base: Path, sandbox, hook: Hook) -> None:
        self.home = base / "var"
        self.hook = hook
        self.port = _free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        # none of the session's PREFECT_* or FUNDX_* settings but its quick retries
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FUNDX_"))
               or k in ("FUNDX_RETRY_BASE_DELAY", "FUNDX_RETRY_MAX_DELAY")}
        env.update({
            "FUNDX_HOME": str(self.home),
            # the agencies' endpoints and credentials come only from the sandbox's exchange.env
            "FUNDX_SANDBOX_HOME": str(sandbox.home),
            "FUNDX_SERVE_PORT": str(self.port),
            "FUNDX_AUTOMATION_WEBHOOK": hook.url,
            "FUNDX_NIGHT_BUDGET_MINUTES": "0.17",  # about 10 s, the shortest a proactive trigger takes
            "PREFECT_HOME": str(self.home / "prefect"),
            "PREFECT_LOGGING_LEVEL": "INFO",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        })
        self.env = env
        self.seen: set[int] = set()  # every pid of the server, the worker and their descendants
        self._watching = True
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while self._watching:
            for name in ("server.pid", "worker.pid"):
                pid = read_pid(self.home / "serve" / name)
                if pid and alive(pid):
                    self.seen.update([pid, *descendants(pid)])
            time.sleep(0.2)

    def run(self, *args: str, timeout: float = 150) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "deployments.run", *args], env=self.env, cwd=REPO,
                              check=False, capture_output=True, text=True, timeout=timeout)

    def prefect(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {**self.env, "PREFECT_API_URL": self.api}
        return subprocess.run([sys.executable, "-m", "prefect", *args], env=env, cwd=REPO,
                              check=False, capture_output=True, text=True, timeout=timeout)

    def api_call(self, path: str, body=None, method: str = "POST"):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.api}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        for attempt in range(20):  # SQLite answers 503 while another writer holds it; Prefect's client retries too
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    raw = response.read()
                return json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                if exc.code != 503 or attempt == 19:
                    raise
                time.sleep(0.5)

    def deployments(self) -> dict[str, dict]:
        flows = {f["id"]: f["name"] for f in self.api_call("/flows/filter", {})}
        return {f"{flows[d['flow_id']]}/{d['name']}": d for d in self.api_call("/deployments/filter", {})}

    def flow_run(self, run_id: str) -> dict:
        return self.api_call(f"/flow_runs/{run_id}", method="GET")

    def stop_watching(self) -> None:
        self._watching = False
        self._watcher.join()


def _log_tails(home: Path, lines: int = 25) -> str:
    """The last lines of every log under a serve home (the server's, the workers'), for a start that hung."""
    parts = []
    for log in sorted(home.rglob("*.log")):
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log.relative_to(home)} ({log.stat().st_size} bytes), its end:\n" + "\n".join(text))
    return "\n".join(parts) or f"no log under {home}"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from sandbox.agencies import Sandbox

    base = tmp_path_factory.mktemp("serve")
    hook = Hook()
    sandbox = Sandbox(base / "agencies", people=2000)  # started below, while the server starts
    srv = Served(base, sandbox, hook)
    starting = subprocess.Popen([sys.executable, "-m", "deployments.run", "start"], env=srv.env, cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sandbox.start()
        try:
            out, err = starting.communicate(timeout=150)
        except subprocess.TimeoutExpired as slow:  # say where it stood: what it printed and its logs' ends
            printed = (slow.stdout or b"").decode(errors="replace") if isinstance(slow.stdout, bytes) else slow.stdout
            raise AssertionError(f"`deployments.run start` did not finish within 150 s (exited: {starting.poll()}); "
                                 f"it printed:\n{printed or ''}\n{_log_tails(srv.home)}") from None
        assert starting.returncode == 0, out + err
        srv.start_output = out
        yield srv
    finally:
        if starting.poll() is None:  # a start still under way: let it finish, then stop it all
            try:
                starting.communicate(timeout=150)
            except subprocess.TimeoutExpired:
                starting.kill()
        srv.run("stop", timeout=60)
        srv.stop_watching()
        for pid in srv.seen:  # a safety net: the test below fails if this finds anything
            if ours(pid):
                os.kill(pid, 9)
        sandbox.stop()
        hook.close()


def _emit(srv: Served, event: str, deployment_id: str) -> str:
    """A flow-run event of a run that does not exist, related to ``deployment_id``; the run's resource id."""
    resource = f"prefect.flow-run.{uuid.uuid4()}"
    srv.api_call("/events", [{
        "id": str(uuid.uuid4()), "occurred": datetime.now(UTC).isoformat(), "event": event,
        "resource": {"prefect.resource.id": resource, "prefect.resource.name": "synthetic"},
        "related": [{"prefect.resource.id": f"prefect.deployment.{deployment_id}", "prefect.resource.role": "deployment"}],
        "payload": {},
    }])
    return resource


def test_start_registers_the_deployments_on_the_pool(served):
    assert f"export PREFECT_API_URL={served.api}" in served.start_output
    assert "prefect deployment run 'nightly-exchange/nightly'" in served.start_output
    assert "make serve-stop" in served.start_output

    listed = served.prefect("deployment", "ls")
    assert listed.returncode == 0, listed.stderr
    assert "nightly-exchange/nightly" in listed.stdout

    found = served.deployments()
    assert {"nightly-exchange/nightly", "sla-monitor/hourly", *(f"exchange-feed/{f}" for f in FEEDS)} <= set(found)
    assert set(found) == {spec.full_name for spec in specs()}  # and whatever else the catalog lists
    for name, d in found.items():
        assert d["work_pool_name"] == "fundx", name
        assert d["global_concurrency_limit"]["limit"] == 1, name
        assert d["concurrency_options"]["collision_strategy"] == "CANCEL_NEW", name
        assert d["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
        assert "fundx" in d["tags"]
    nightly = found["nightly-exchange/nightly"]
    assert nightly["entrypoint"] == "flows.exchange.nightly_exchange"
    assert [s["schedule"] for s in nightly["schedules"]] == [
        {"cron": "30 1 * * *", "timezone": "Asia/Shanghai", "day_or": True}]
    for feed in FEEDS:
        d = found[f"exchange-feed/{feed}"]
        assert d["parameters"] == {"feed": feed} and d["schedules"] == []

    pool = served.api_call("/work_pools/fundx", method="GET")
    assert pool["type"] == "process" and pool["concurrency_limit"] == 4

    automations = {a["name"]: a for a in served.api_call("/automations/filter", {})}
    assert {LATE_OR_CRASHED, NIGHT_OVER_BUDGET} <= set(automations)
    silent = {name: a for name, a in automations.items() if name.startswith(FEED_SILENT)}
    assert len(silent) == len(FEEDS) and all(a["trigger"]["posture"] == "Proactive" for a in silent.values())
    assert silent[f"{FEED_SILENT}police.deaths"]["trigger"]["expect"] == ["fundx.feed.delivered"]
    late = automations[LATE_OR_CRASHED]["trigger"]
    assert set(late["expect"]) == {"prefect.flow-run.Late", "prefect.flow-run.Crashed"}
    assert sorted(late["match_related"]["prefect.resource.id"]) == sorted(
        f"prefect.deployment.{d['id']}" for d in found.values())
    budget = automations[NIGHT_OVER_BUDGET]["trigger"]
    assert budget["posture"] == "Proactive" and budget["after"] == ["prefect.flow-run.Running"]
    assert budget["within"] == pytest.approx(10.2)
    assert budget["match_related"]["prefect.resource.id"] == [f"prefect.deployment.{nightly['id']}"]
    for name in (LATE_OR_CRASHED, NIGHT_OVER_BUDGET):
        assert [x["type"] for x in automations[name]["actions"]] == ["call-webhook"]


def test_start_again_says_so(served):
    again = served.run("start")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert served.run("status").returncode == 0


def test_a_night_through_the_worker_and_never_two_at_once(served):
    from fundx.ledger import Ledger

    before = served.deployments()
    automations = {a["name"]: a["updated"] for a in served.api_call("/automations/filter", {})}
    nightly = before["nightly-exchange/nightly"]
    # the automations, with runs that do not exist: a crash, and a night that never ends
    crashed = _emit(served, "prefect.flow-run.Crashed", nightly["id"])
    endless = _emit(served, "prefect.flow-run.Running", nightly["id"])

    env = {**served.env, "PREFECT_API_URL": served.api}
    register = None
    watch = subprocess.Popen([sys.executable, "-m", "prefect", "deployment", "run", "nightly-exchange/nightly",
                              "--watch", "--watch-interval", "1", "--watch-timeout", "150"],
                             env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # while the night runs, a second one is cancelled by the deployment's concurrency limit
        deadline = time.monotonic() + 90
        first = None
        while time.monotonic() < deadline:
            runs = served.api_call("/flow_runs/filter", {"flow_runs": {
                "deployment_id": {"any_": [nightly["id"]]}, "state": {"type": {"any_": ["RUNNING"]}}}})
            if runs:
                first = runs[0]
                break
            time.sleep(0.5)
        assert first is not None, "the night never started running through the worker"
        # registering again while a night runs (after changing the catalog, say) is harmless
        register = subprocess.Popen([sys.executable, "-m", "deployments.register"], env=env, cwd=REPO,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        second = served.api_call(f"/deployments/{nightly['id']}/create_flow_run", {})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and served.flow_run(second["id"])["state"]["type"] not in (
                "CANCELLED", "COMPLETED", "FAILED", "CRASHED"):
            time.sleep(0.5)
        state = served.flow_run(second["id"])["state"]
        assert state["type"] == "CANCELLED", state
        assert "concurrency limit" in (state["message"] or "")

        output, _ = watch.communicate(timeout=160)
        registered, _ = register.communicate(timeout=120)
    finally:
        for proc in (watch, register):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert register.returncode == 0, registered
    after = served.deployments()
    assert {n: d["id"] for n, d in after.items()} == {n: d["id"] for n, d in before.items()}
    assert len(after["nightly-exchange/nightly"]["schedules"]) == 1
    # unchanged automations are left alone: an update would restart the running night's budget
    assert {a["name"]: a["updated"] for a in served.api_call("/automations/filter", {})} == automations
    assert f"automation '{NIGHT_OVER_BUDGET}' unchanged" in registered
    night = served.flow_run(first["id"])
    assert night["state"]["type"] in ("COMPLETED", "FAILED"), output
    # the worker ran it in a process of its own: a flow-run process below the worker
    worker = read_pid(served.home / "serve" / "worker.pid")
    assert len(served.seen - {worker, read_pid(served.home / "serve" / "server.pid")}) >= 1

    ledger = Ledger(f"sqlite:///{served.home / 'ledger.db'}")
    try:
        run = next(r for r in ledger.last_runs(10) if r["kind"] == "night")
        assert run["feeds"] == len(FEEDS)
        pulls = {p.feed: p for p in ledger.pulls_of_run(run["id"])}
        assert set(pulls) == set(FEEDS)
        # every feed reached its agency; a feed fails only when the contract held its batch back
        assert all(p.outcome in ("pulled", "held") for p in pulls.values()), {f: p.outcome for f, p in pulls.items()}
        held = [f for f, p in pulls.items() if p.outcome == "held"]
        assert run["outcome"] == ("failed" if held else "completed")
        assert (night["state"]["type"] == "FAILED") == bool(held), output
        assert sum(p.rows or 0 for p in pulls.values()) > 0
        assert sum(1 for d in ledger.deliveries()) >= 1
    finally:
        ledger.dispose()
    assert any((served.home / "inboxes").iterdir())

    # the automations called their webhook (the night-over-budget one after its ~10 s budget)
    deadline = time.monotonic() + 45
    want = {(LATE_OR_CRASHED, crashed), (NIGHT_OVER_BUDGET, endless)}
    while time.monotonic() < deadline and not want <= {(b["automation"], b["resource"]) for b in served.hook.bodies}:
        time.sleep(0.5)
    got = {(b["automation"], b["resource"]) for b in served.hook.bodies}
    assert want <= got, served.hook.bodies
    for body in served.hook.bodies:
        assert body["schema"] == "fundx.automation/1"
        if body["resource"] in (crashed, endless):
            assert body["deployment"] == "nightly" and body["event"] in ("prefect.flow-run.Crashed",
                                                                         "prefect.flow-run.Running")


def test_stop_leaves_nothing_running(served):
    server = read_pid(served.home / "serve" / "server.pid")
    worker = read_pid(served.home / "serve" / "worker.pid")
    assert alive(server) and alive(worker)
    stopped = served.run("stop", timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert f"worker (pid {worker}) stopped" in stopped.stdout and f"server (pid {server}) stopped" in stopped.stdout
    served.stop_watching()
    assert {server, worker} <= served.seen
    assert [p for p in served.seen if ours(p)] == []  # alive and a Prefect process (not a pid used again)
    assert not (served.home / "serve" / "server.pid").exists()
    again = served.run("stop", timeout=60)
    assert again.returncode == 0 and "nothing to stop" in again.stdout
    assert served.run("status").returncode == 1
