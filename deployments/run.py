"""``make serve`` / ``make serve-stop``: the exchange unattended on a real Prefect server.

    python -m deployments.run start     # server, work pool, deployments, automations, worker
    python -m deployments.run status    # what runs, where (exit 1 unless server and worker are up)
    python -m deployments.run stop      # worker, then server, and whatever they started

``start`` runs, each in the background with its log under ``$FUNDX_HOME/serve/``:

1. ``prefect server start`` on FUNDX_SERVE_HOST:FUNDX_SERVE_PORT (127.0.0.1:4200), its database
   SQLite at ``$PREFECT_HOME/prefect.db`` unless PREFECT_SERVER_DATABASE_CONNECTION_URL says otherwise,
   PREFECT_HOME defaulting to ``$FUNDX_HOME/prefect`` as for the ``fundx`` command; then waits until
   ``/api/health`` answers (about 12 s on a fresh database; at most FUNDX_SERVE_START_TIMEOUT);
2. ``python -m deployments.register`` (work pool ``fundx``, deployments, automations);
3. ``prefect worker start --pool fundx --type process``, and waits until the server lists it online.

Every process gets this environment plus FUNDX_HOME and FUNDX_SANDBOX_HOME made absolute and
PREFECT_API_URL pointing at the server: the worker hands it on to each flow-run process, which (in
the repository root, the deployments' working directory) finds the agencies as ``fundx night``
does — FUNDX_* variables first, then the ``exchange.env`` that a running ``fundx sandbox start``
writes under FUNDX_SANDBOX_HOME, read when a feed runs.

Both commands are idempotent: ``start`` with everything up says so; ``stop`` with nothing up too.
Pids are in ``$FUNDX_HOME/serve/{server,worker}.pid``; ``stop`` ends each process group and every
descendant (flow-run processes included), TERM first, KILL after 20 s.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from deployments.catalog import REPO_ROOT, WORK_POOL
from deployments.settings import ServeSettings, serve_settings

STOP_GRACE_SECONDS = 20.0


class ServeError(Exception):
    """``make serve`` could not do what was asked; ``action`` says what to do."""

    def __init__(self, message: str, action: str) -> None:
        super().__init__(message)
        self.action = action


@dataclass(frozen=True)
class Paths:
    dir: Path

    @property
    def server_pid(self) -> Path:
        return self.dir / "server.pid"

    @property
    def worker_pid(self) -> Path:
        return self.dir / "worker.pid"

    @property
    def server_log(self) -> Path:
        return self.dir / "server.log"

    @property
    def worker_log(self) -> Path:
        return self.dir / "worker.log"

    @property
    def register_log(self) -> Path:
        return self.dir / "register.log"

    @property
    def state(self) -> Path:
        return self.dir / "serve.json"


@dataclass(frozen=True)
class Setup:
    settings: ServeSettings
    home: Path
    sandbox_home: Path
    paths: Paths
    env: dict[str, str]  # for the worker and register (PREFECT_API_URL set)

    @property
    def url(self) -> str:
        return self.settings.api_url

    @property
    def server_env(self) -> dict[str, str]:
        env = dict(self.env)
        env.pop("PREFECT_API_URL", None)
        return env

    @property
    def worker_name(self) -> str:
        return f"fundx-{socket.gethostname()}"


def setup() -> Setup:
    """Settings, folders and the children's environment (this process's, completed)."""
    from fundx.settings import reload_settings

    settings = serve_settings()
    fundx = reload_settings()
    env = dict(os.environ)
    env["FUNDX_HOME"] = str(fundx.home)
    env["FUNDX_SANDBOX_HOME"] = str(fundx.sandbox_home)
    env["PREFECT_HOME"] = str(Path(env.get("PREFECT_HOME") or fundx.home / "prefect").expanduser().resolve())
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    if not env.get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY"):  # about a second per flow run; unused
        env.pop("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", None)
    env["PREFECT_API_URL"] = settings.api_url
    if env.get("PREFECT_SERVER_API_AUTH_STRING") and not env.get("PREFECT_API_AUTH_STRING"):
        env["PREFECT_API_AUTH_STRING"] = env["PREFECT_SERVER_API_AUTH_STRING"]  # the server's basic auth
    env["PYTHONUNBUFFERED"] = "1"
    return Setup(settings=settings, home=fundx.home, sandbox_home=fundx.sandbox_home,
                 paths=Paths(fundx.home / "serve"), env=env)


# processes --------------------------------------------------------------------------------------


def _cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def alive(pid: int | None) -> bool:
    """Whether ``pid`` runs and is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def ours(pid: int | None) -> bool:
    """Whether ``pid`` is alive and a Prefect process (not an unrelated process that got the pid again)."""
    if not alive(pid):
        return False
    cmd = _cmdline(pid)  # type: ignore[arg-type]
    return cmd is None or "prefect" in cmd


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int(entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal(pids: list[int], group: int | None, sig: int) -> None:
    if group is not None:
        try:
            os.killpg(group, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def terminate(pid: int, grace: float = STOP_GRACE_SECONDS) -> list[int]:
    """TERM the process group ``pid`` leads and every descendant; KILL what is left after ``grace`` s."""
    everyone = [pid, *descendants(pid)]
    group = pid if _leads_group(pid) else None
    _signal(everyone, group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        everyone += [p for p in descendants(pid) if p not in everyone]  # started while stopping
        if not any(alive(p) for p in everyone):
            break
        time.sleep(0.2)
    else:
        _signal([p for p in everyone if alive(p)], group, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(p) for p in everyone):
            time.sleep(0.1)
    _reap(pid)
    return everyone


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        out.write(f"\n--- {stamp} started by deployments.run: {' '.join(cmd[1:])}\n".encode())
        out.flush()
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=REPO_ROOT, start_new_session=True)


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join("    " + line for line in text)


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
        request = urllib.request.Request(f"{url}/health", headers=_headers())
        with urllib.request.urlopen(request, timeout=timeout) as response:
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


def _start_server(s: Setup, say) -> int:
    host, port = s.settings.serve_host, s.settings.serve_port
    if not port_free(host, port):
        raise ServeError(
            f"port {port} on {host} is taken by another program (not a server started by `make serve` "
            f"for FUNDX_HOME={s.home})",
            f"stop that program, or use another port: FUNDX_SERVE_PORT={port + 1} make serve",
        )
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    proc = _spawn(cmd, s.server_env, s.paths.server_log)
    s.paths.server_pid.write_text(f"{proc.pid}\n")
    say(f"starting the Prefect server on {s.url.removesuffix('/api')} (pid {proc.pid}; log {s.paths.server_log})")
    timeout = s.settings.serve_start_timeout
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            s.paths.server_pid.unlink(missing_ok=True)
            raise ServeError(
                f"the Prefect server exited with code {proc.returncode} while starting; "
                f"the end of {s.paths.server_log}:\n{_tail(s.paths.server_log)}",
                f"read {s.paths.server_log}",
            )
        if healthy(s.url, timeout=1.0):
            return proc.pid
        time.sleep(0.3)
    terminate(proc.pid)
    s.paths.server_pid.unlink(missing_ok=True)
    raise ServeError(
        f"the Prefect server did not answer {s.url}/health within {timeout:g} s; the end of "
        f"{s.paths.server_log}:\n{_tail(s.paths.server_log)}",
        f"read {s.paths.server_log}; on a slow machine or database raise FUNDX_SERVE_START_TIMEOUT",
    )


def _wait_healthy(s: Setup, pid: int) -> None:
    deadline = time.monotonic() + s.settings.serve_start_timeout
    while not healthy(s.url, timeout=1.0):
        if not alive(pid) or time.monotonic() > deadline:
            raise ServeError(
                f"the Prefect server (pid {pid}) does not answer {s.url}/health; see {s.paths.server_log}",
                "make serve-stop, then make serve",
            )
        time.sleep(0.3)


# the worker ------------------------------------------------------------------------------------


def online_workers(url: str, pool: str = WORK_POOL, since: float | None = None) -> list[str]:
    """Names of the pool's workers the server lists as online (with a heartbeat after ``since``)."""
    request = urllib.request.Request(f"{url}/work_pools/{pool}/workers/filter", data=b"{}", method="POST",
                                     headers=_headers())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
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


def _start_worker(s: Setup, say) -> int:
    began = time.time()
    cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", WORK_POOL, "--type", "process",
           "--name", s.worker_name, "--install-policy", "never", "--no-create-pool-if-not-found"]
    proc = _spawn(cmd, s.env, s.paths.worker_log)
    s.paths.worker_pid.write_text(f"{proc.pid}\n")
    say(f"starting worker {s.worker_name} on pool {WORK_POOL!r} (pid {proc.pid}; log {s.paths.worker_log})")
    deadline = time.monotonic() + s.settings.serve_start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            s.paths.worker_pid.unlink(missing_ok=True)
            raise ServeError(
                f"the worker exited with code {proc.returncode} while starting; the end of "
                f"{s.paths.worker_log}:\n{_tail(s.paths.worker_log)}",
                f"read {s.paths.worker_log}",
            )
        if s.worker_name in online_workers(s.url, since=began):
            return proc.pid
        time.sleep(0.5)
    terminate(proc.pid)
    s.paths.worker_pid.unlink(missing_ok=True)
    raise ServeError(
        f"the worker did not come online within {s.settings.serve_start_timeout:g} s; see {s.paths.worker_log}",
        f"read {s.paths.worker_log}",
    )


def _register(s: Setup, say) -> None:
    say("registering the work pool, deployments and automations")
    with open(s.paths.register_log, "ab") as log:
        done = subprocess.run([sys.executable, "-m", "deployments.register"], env=s.env, cwd=REPO_ROOT,
                              stdin=subprocess.DEVNULL, capture_output=True, check=False)
        log.write(done.stdout + done.stderr)
    for line in done.stdout.decode(errors="replace").splitlines():
        say("  " + line)
    if done.returncode != 0:
        raise ServeError(
            f"registering failed (exit {done.returncode}); the end of {s.paths.register_log}:\n"
            f"{_tail(s.paths.register_log, 20)}",
            f"read {s.paths.register_log}; fix it, then: make serve",
        )


# commands --------------------------------------------------------------------------------------


def start(s: Setup | None = None, say=print) -> dict:
    """Start what is not running; the state (also written to serve/serve.json)."""
    s = s or setup()
    s.paths.dir.mkdir(parents=True, exist_ok=True)
    server = read_pid(s.paths.server_pid)
    worker = read_pid(s.paths.worker_pid)
    server_up, worker_up = ours(server), ours(worker)
    if server_up and worker_up and healthy(s.url):
        say(f"already running: Prefect server {s.url.removesuffix('/api')} (pid {server}), worker "
            f"{s.worker_name} (pid {worker}); `make serve-stop` stops them. After changing deployments/: "
            f"PREFECT_API_URL={s.url} {Path(sys.executable).parent / 'python'} -m deployments.register")
        _next_steps(s, say)
        return _state(s)
    started: list[tuple[int, Path]] = []
    if server_up:
        _wait_healthy(s, server)  # type: ignore[arg-type]
        say(f"Prefect server already running on {s.url.removesuffix('/api')} (pid {server})")
    else:
        if worker_up:  # a worker without its server: start both afresh
            terminate(worker)  # type: ignore[arg-type]
            worker_up = False
        s.paths.worker_pid.unlink(missing_ok=True)
        started.append((_start_server(s, say), s.paths.server_pid))
    try:
        _register(s, say)
        if worker_up:
            say(f"worker already running (pid {worker})")
        else:
            started.append((_start_worker(s, say), s.paths.worker_pid))
    except BaseException:
        for pid, path in reversed(started):  # leave nothing half-started behind
            terminate(pid)
            path.unlink(missing_ok=True)
        raise
    state = _state(s)
    s.paths.state.write_text(json.dumps(state, indent=2) + "\n")
    _next_steps(s, say)
    return state


def _database(s: Setup) -> str:
    url = s.env.get("PREFECT_SERVER_DATABASE_CONNECTION_URL") or s.env.get("PREFECT_API_DATABASE_CONNECTION_URL")
    if url:
        return "PostgreSQL" if url.startswith("postgresql") else url.split(":", 1)[0]
    return f"SQLite at {Path(s.env['PREFECT_HOME']) / 'prefect.db'}"


def _state(s: Setup) -> dict:
    server, worker = read_pid(s.paths.server_pid), read_pid(s.paths.worker_pid)
    server_up, worker_up = ours(server), ours(worker)
    return {
        "api_url": s.url,
        "ui_url": s.url.removesuffix("/api"),
        "server": {"pid": server if server_up else None, "healthy": server_up and healthy(s.url),
                   "log": str(s.paths.server_log), "database": _database(s)},
        "worker": {"pid": worker if worker_up else None, "name": s.worker_name, "pool": WORK_POOL,
                   "log": str(s.paths.worker_log)},
        "fundx_home": str(s.home),
        "prefect_home": s.env["PREFECT_HOME"],
        "sandbox_env": str(s.sandbox_home / "exchange.env") if (s.sandbox_home / "exchange.env").is_file() else None,
    }


def _next_steps(s: Setup, say) -> None:
    bin_dir = Path(sys.executable).parent
    here = os.getcwd()

    def rel(path: Path) -> str:
        return os.path.relpath(path) if str(path).startswith(here + os.sep) else str(path)

    prefect, fundx = rel(bin_dir / "prefect"), rel(bin_dir / "fundx")
    agencies = s.sandbox_home / "exchange.env"
    say("")
    say(f"Prefect UI: {s.url.removesuffix('/api')}    database: {_database(s)}")
    if agencies.is_file():
        say(f"agencies: the running sandbox's {rel(agencies)}")
    else:
        say(f"agencies: the FUNDX_* endpoints of this environment; no sandbox runs under {rel(s.sandbox_home)} "
            f"(start one: {fundx} sandbox start)")
    steps = [
        (f"export PREFECT_API_URL={s.url}", ""),
        (f"{prefect} deployment ls", ""),
        (f"{prefect} deployment run 'nightly-exchange/nightly' --watch", "a night now, through the worker"),
        (f"{prefect} deployment run 'exchange-feed/police.deaths'", "one feed"),
        (f"{fundx} status", "what the ledger recorded"),
        ("make serve-stop", "stop the worker and the server"),
    ]
    width = max(len(cmd) for cmd, _ in steps)
    say("next:")
    for cmd, why in steps:
        say(f"  {cmd:<{width}}  # {why}" if why else f"  {cmd}")
    say(f"logs: {rel(s.paths.server_log)}, {rel(s.paths.worker_log)} (the flow runs' lines too); "
        f"each run's own in the UI or `prefect flow-run logs <id>`")


def stop(s: Setup | None = None, say=print) -> list[int]:
    """Stop the worker, then the server (and everything they started); the pids that were ended."""
    s = s or setup()
    ended: list[int] = []
    for role, path in (("worker", s.paths.worker_pid), ("server", s.paths.server_pid)):
        pid = read_pid(path)
        if ours(pid):
            ended += terminate(pid)  # type: ignore[arg-type]
            say(f"{role} (pid {pid}) stopped")
        path.unlink(missing_ok=True)
    s.paths.state.unlink(missing_ok=True)
    if not ended:
        say("nothing to stop: no server or worker of `make serve` is running for FUNDX_HOME=" + str(s.home))
    return ended


def status(s: Setup | None = None, say=print, as_json: bool = False) -> int:
    s = s or setup()
    state = _state(s)
    up = bool(state["server"]["healthy"] and state["worker"]["pid"])
    if as_json:
        say(json.dumps(state, indent=2))
        return 0 if up else 1
    server, worker = state["server"], state["worker"]
    say(f"server: {'up, ' + state['ui_url'] + ' (pid ' + str(server['pid']) + ')' if server['pid'] else 'not running'}"
        f"{'' if server['healthy'] or not server['pid'] else ' — NOT answering /api/health'}; "
        f"database {server['database']}; log {server['log']}")
    say(f"worker: {worker['name'] + ' on pool ' + WORK_POOL + ' (pid ' + str(worker['pid']) + ')' if worker['pid'] else 'not running'}"
        f"; log {worker['log']}")
    return 0 if up else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--json", action="store_true", help="status as JSON")
    args = parser.parse_args(argv)
    from fundx.errors import FundxError

    try:
        if args.command == "start":
            start()
            return 0
        if args.command == "stop":
            stop()
            return 0
        return status(as_json=args.json)
    except ServeError as exc:
        print(f"error: {exc}\nwhat to do: {exc.action}", file=sys.stderr)
        return 1
    except FundxError as exc:
        print(f"error: {exc}\nwhat to do: {exc.action}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
