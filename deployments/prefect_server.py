"""The Prefect server of ``make serve`` and its workers: started in the background, awaited until the
server answers ``/api/health`` and lists every worker online, and the deployments registered in between
(``python -m deployments.register``, its lines shown as they come).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

from deployments.catalog import REPO_ROOT, WORK_POOL
from deployments.postgres import describe_database
from deployments.processes import open_log, spawn, tail, terminate, terminate_all, write_private
from deployments.serve_setup import ServeError, Setup, make_target
from fundx.core.process import alive

# the server ------------------------------------------------------------------------------------


def _headers() -> dict[str, str]:
    """Basic auth when the server asks for it (PREFECT_SERVER_API_AUTH_STRING / PREFECT_API_AUTH_STRING)."""
    auth = os.environ.get("PREFECT_API_AUTH_STRING") or os.environ.get("PREFECT_SERVER_API_AUTH_STRING")
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    return headers


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        # url: the local Prefect server's http(s) API URL from the serve settings (S310 on these two lines)
        request = urllib.request.Request(f"{url}/health", headers=_headers())  # noqa: S310
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def start_server(s: Setup, say) -> int:
    host, port = s.settings.serve_host, s.settings.serve_port
    if not port_free(host, port):
        raise ServeError(
            f"port {port} on {host} is taken by another program (not a server started by `make serve` "
            f"for FUNDX_HOME={s.home})",
            f"stop that program, or use another port: FUNDX_SERVE_PORT={port + 1} {make_target(s)}",
        )
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    proc = spawn(cmd, s.server_env, s.paths.server_log)
    write_private(s.paths.server_pid, f"{proc.pid}\n")
    say(f"starting the Prefect server on {s.url.removesuffix('/api')} (pid {proc.pid}; log {s.paths.server_log}; "
        f"database {describe_database(s.prefect_database)})")
    timeout = s.settings.serve_start_timeout
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            s.paths.server_pid.unlink(missing_ok=True)
            raise ServeError(
                f"the Prefect server exited with code {proc.returncode} while starting; "
                f"the end of {s.paths.server_log}:\n{tail(s.paths.server_log)}",
                f"read {s.paths.server_log}",
            )
        if healthy(s.url, timeout=1.0):
            return proc.pid
        time.sleep(0.3)
    terminate(proc.pid)
    s.paths.server_pid.unlink(missing_ok=True)
    raise ServeError(
        f"the Prefect server did not answer {s.url}/health within {timeout:g} s; the end of "
        f"{s.paths.server_log}:\n{tail(s.paths.server_log)}",
        f"read {s.paths.server_log}; on a slow machine or database raise FUNDX_SERVE_START_TIMEOUT",
    )


def wait_healthy(s: Setup, pid: int) -> None:
    deadline = time.monotonic() + s.settings.serve_start_timeout
    while not healthy(s.url, timeout=1.0):
        if not alive(pid) or time.monotonic() > deadline:
            raise ServeError(
                f"the Prefect server (pid {pid}) does not answer {s.url}/health; see {s.paths.server_log}",
                f"make serve-stop, then {make_target(s)}",
            )
        time.sleep(0.3)


# the workers -----------------------------------------------------------------------------------


def online_workers(url: str, pool: str = WORK_POOL, since: float | None = None) -> list[str]:
    """Names of the pool's workers the server lists as online (with a heartbeat after ``since``)."""
    # url: the local Prefect server's http(s) API URL from the serve settings (S310 on the lines below)
    request = urllib.request.Request(f"{url}/work_pools/{pool}/workers/filter", data=b"{}", method="POST",  # noqa: S310
                                     headers=_headers())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            workers = json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return []
    names = []
    for w in workers:
        beat = w.get("last_heartbeat_time")
        if w.get("status") != "ONLINE" or not beat:
            continue
        if since is not None and datetime.fromisoformat(beat.replace("Z", "+00:00")).timestamp() < since - 1:
            continue
        names.append(w["name"])
    return names


def spawn_workers(s: Setup, numbers: list[int], say) -> dict[int, subprocess.Popen]:
    """Start the workers ``numbers`` (1 is ``worker.pid``/``fundx-<host>``), without waiting for them."""
    procs: dict[int, subprocess.Popen] = {}
    for n in numbers:
        name, log = s.worker_name(n), s.paths.worker_log_of(n)
        cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", WORK_POOL, "--type", "process",
               "--name", name, "--install-policy", "never", "--no-create-pool-if-not-found"]
        proc = spawn(cmd, s.env, log)
        write_private(s.paths.worker_pid_of(n), f"{proc.pid}\n")
        procs[n] = proc
        say(f"starting worker {name} on pool {WORK_POOL!r} (pid {proc.pid}; log {log})")
    return procs


def await_workers(s: Setup, procs: dict[int, subprocess.Popen], since: float) -> list[tuple[int, Path]]:
    """Wait until the server lists every worker of ``procs`` online (heartbeat after ``since``).

    If one fails to come up, all of ``procs`` are stopped again and ServeError names its log."""

    def give_up(error: ServeError) -> ServeError:
        terminate_all([p.pid for p in procs.values()])
        for n in procs:
            s.paths.worker_pid_of(n).unlink(missing_ok=True)
        return error

    waiting = {s.worker_name(n): n for n in procs}
    deadline = time.monotonic() + s.settings.serve_start_timeout
    while time.monotonic() < deadline:
        for n, proc in procs.items():
            if proc.poll() is not None:
                log = s.paths.worker_log_of(n)
                raise give_up(ServeError(
                    f"worker {s.worker_name(n)} exited with code {proc.returncode} while starting; the end of "
                    f"{log}:\n{tail(log)}", f"read {log}"))
        for name in online_workers(s.url, since=since):
            waiting.pop(name, None)
        if not waiting:
            return [(proc.pid, s.paths.worker_pid_of(n)) for n, proc in procs.items()]
        time.sleep(0.5)
    logs = ", ".join(str(s.paths.worker_log_of(n)) for n in waiting.values())
    raise give_up(ServeError(
        f"{'worker' if len(waiting) == 1 else 'workers'} {', '.join(waiting)} did not come online within "
        f"{s.settings.serve_start_timeout:g} s; see {logs}",
        f"read {logs}; on a slow machine raise FUNDX_SERVE_START_TIMEOUT"))


def register_deployments(s: Setup, say, on_pool=None) -> None:
    """``python -m deployments.register``, its lines shown as they come; ``on_pool()`` is called as soon as
    it reports the work pool (so that the workers start while the deployments are registered)."""
    say("registering the work pool, deployments and automations")
    with open_log(s.paths.register_log) as log:
        proc = subprocess.Popen([sys.executable, "-m", "deployments.register"], env=s.env, cwd=REPO_ROOT,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        try:
            for raw in proc.stdout:  # type: ignore[union-attr]
                log.write(raw)
                line = raw.decode(errors="replace").rstrip("\n")
                say("  " + line)
                if on_pool is not None and line.startswith("work pool "):
                    on_pool()
                    on_pool = None
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if code != 0:
        raise ServeError(
            f"registering failed (exit {code}); the end of {s.paths.register_log}:\n"
            f"{tail(s.paths.register_log, 20)}",
            f"read {s.paths.register_log}; fix it, then: {make_target(s)}",
        )
