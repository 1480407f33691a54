"""``make serve`` / ``make serve-pg`` / ``make serve-stop``: the exchange unattended on a real Prefect server.

    python -m deployments.run start     # server, work pool, deployments, automations, worker
    python -m deployments.run start --postgres [--workers N]   # the same on PostgreSQL, N workers (2)
    python -m deployments.run status    # what runs, where (exit 1 unless the server and every worker are up)
    python -m deployments.run stop      # the workers, then the server, and whatever they started

``start`` runs, each in the background with its log under ``$FUNDX_HOME/serve/``:

1. ``prefect server start`` on FUNDX_SERVE_HOST:FUNDX_SERVE_PORT (127.0.0.1:4200), its database
   SQLite at ``$PREFECT_HOME/prefect.db`` unless PREFECT_SERVER_DATABASE_CONNECTION_URL says otherwise,
   PREFECT_HOME defaulting to ``$FUNDX_HOME/prefect`` as for the ``fundx`` command; then waits until
   ``/api/health`` answers (about 12 s on a fresh database; at most FUNDX_SERVE_START_TIMEOUT);
2. ``python -m deployments.register`` (work pool ``fundx``, deployments, automations);
3. ``prefect worker start --pool fundx --type process`` (``--workers N`` of them, named
   ``fundx-<host>``, ``fundx-<host>-2``, ...), and waits until the server lists every one online.

With ``--postgres`` (``make serve-pg``) Prefect's own database and the fundx ledger are on a
PostgreSQL server, so that several workers (and machines) share them; before anything starts, both
databases are created if missing (Prefect's with the ``pg_trgm`` extension it needs) and the
ledger's tables are made once:

| variable | default | meaning |
|---|---|---|
| FUNDX_SERVE_PG_URL | postgresql://postgres@127.0.0.1:5432/postgres | the server, the user, and the database to connect to when creating the two below |
| FUNDX_SERVE_PG_PREFECT_DB | fundx_prefect | Prefect's database (the server gets PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://.../fundx_prefect) |
| FUNDX_SERVE_PG_LEDGER_DB | fundx_ledger | the ledger (every worker and flow run gets FUNDX_LEDGER_URL=postgresql+psycopg://.../fundx_ledger) |

A PREFECT_SERVER_DATABASE_CONNECTION_URL or FUNDX_LEDGER_URL already set to a PostgreSQL URL is used
as it is (its database created if missing). Passwords belong in PGPASSWORD or a password file
(~/.pgpass, PGPASSFILE), which both drivers read; one written in a URL is taken out of it and handed
to the processes as PGPASSWORD, so no URL that reaches a log, a state file or a command line holds it.

Every process gets this environment plus FUNDX_HOME and FUNDX_SANDBOX_HOME made absolute and
PREFECT_API_URL pointing at the server: the workers hand it on to each flow-run process, which (in
the repository root, the deployments' working directory) finds the agencies as ``fundx night``
does — FUNDX_* variables first, then the ``exchange.env`` that a running ``fundx sandbox start``
writes under FUNDX_SANDBOX_HOME, read when a feed runs.

Both commands are idempotent: ``start`` with everything up says so (and starts a worker that is
missing); ``stop`` with nothing up too. Pids are in ``$FUNDX_HOME/serve/`` (``server.pid``,
``worker.pid``, ``worker-2.pid``, ...), what ``start`` set up in ``serve/setup.json`` (databases
without passwords, workers); ``stop`` ends each process group and every descendant (flow-run
processes included), TERM first, KILL after 20 s. ``start`` refuses to mix: a server started by
``make serve`` (SQLite) gets no PostgreSQL worker, and the other way round.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from deployments.catalog import WORK_POOL
from deployments.postgres import describe_database, prepare_postgres
from deployments.prefect_server import (
    await_workers,
    healthy,
    online_workers,
    register_deployments,
    spawn_workers,
    start_server,
    wait_healthy,
)
from deployments.processes import ours, read_pid, terminate, terminate_all, write_private
from deployments.serve_setup import LEDGER_VAR, PG_WORKERS, ServeError, Setup, make_target, setup


def _recorded(s: Setup) -> dict | None:
    """What the running ``start`` set up (serve/setup.json), or None."""
    try:
        return json.loads(s.paths.setup.read_text())
    except (OSError, ValueError):
        return None


def _check_same_setup(s: Setup, recorded: dict | None) -> None:
    """A running server keeps its databases: refuse to add workers of another set-up to it."""
    running = recorded or {"postgres": False}  # a server started before setup.json existed: make serve
    wanted = s.described()
    differs = [key for key in ("prefect_database", "ledger") if recorded and recorded.get(key) != wanted[key]]
    if running.get("postgres") != wanted["postgres"] or differs:
        was = "make serve-pg (PostgreSQL)" if running.get("postgres") else "make serve (SQLite)"
        detail = "; ".join(f"{key}: running {recorded.get(key)}, asked for {wanted[key]}" for key in differs) \
            if recorded else ""
        raise ServeError(
            f"a server started by {was} runs for FUNDX_HOME={s.home}{' (' + detail + ')' if detail else ''}; "
            f"its workers and new ones must share one Prefect database and one ledger",
            f"make serve-stop, then {make_target(s)}; or keep using the running one ({was.split(' (', maxsplit=1)[0]})",
        )


def start(s: Setup | None = None, say=print) -> dict:
    """Start what is not running; the state (also written to serve/serve.json)."""
    s = s or setup()
    s.paths.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    server = read_pid(s.paths.server_pid)
    server_up = ours(server)
    if server_up:
        _check_same_setup(s, _recorded(s))
    if s.postgres is not None:
        prepare_postgres(s.postgres, say)
    wanted = list(range(1, s.workers + 1))
    running = {n: pid for n in s.paths.worker_numbers() if ours(pid := read_pid(s.paths.worker_pid_of(n)))}
    for n in s.paths.worker_numbers():  # a worker that died and is not asked for any more: forget it
        if n not in running and n not in wanted:
            s.paths.worker_pid_of(n).unlink(missing_ok=True)
    if server_up and all(n in running for n in wanted) and healthy(s.url):
        names = ", ".join(f"{s.worker_name(n)} (pid {running[n]})" for n in sorted(running))
        say(f"already running: Prefect server {s.url.removesuffix('/api')} (pid {server}), "
            f"{'worker' if len(running) == 1 else 'workers'} {names}; `make serve-stop` stops them. After changing "
            f"deployments/: PREFECT_API_URL={s.url} {Path(sys.executable).parent / 'python'} -m deployments.register")
        _next_steps(s, say)
        return _state(s)
    started: list[tuple[int, Path]] = []
    if server_up:
        wait_healthy(s, server)  # type: ignore[arg-type]
        say(f"Prefect server already running on {s.url.removesuffix('/api')} (pid {server})")
    else:
        if running:  # workers without their server: start them all afresh
            terminate_all(list(running.values()))
            running = {}
        for n in s.paths.worker_numbers():
            s.paths.worker_pid_of(n).unlink(missing_ok=True)
        write_private(s.paths.setup, json.dumps(s.described(), indent=2) + "\n")
        started.append((start_server(s, say), s.paths.server_pid))
    missing = [n for n in wanted if n not in running]
    spawned: dict[int, subprocess.Popen] = {}
    since = time.time()

    def spawn() -> None:  # as soon as the pool exists
        spawned.update(spawn_workers(s, missing, say))

    try:
        register_deployments(s, say, on_pool=spawn if missing else None)
        for n in sorted(running):
            say(f"worker {s.worker_name(n)} already running (pid {running[n]})")
        if missing and not spawned:
            spawn()
        if spawned:
            await_workers(s, spawned, since)
    except BaseException:  # leave nothing half-started behind: the workers started here, then the server
        terminate_all([proc.pid for proc in spawned.values() if proc.poll() is None])
        for n in spawned:
            s.paths.worker_pid_of(n).unlink(missing_ok=True)
        for pid, path in reversed(started):
            terminate(pid)
            path.unlink(missing_ok=True)
        if not server_up:
            s.paths.setup.unlink(missing_ok=True)
        raise
    state = _state(s)
    write_private(s.paths.state, json.dumps(state, indent=2) + "\n")
    _next_steps(s, say)
    return state


def _databases(s: Setup) -> tuple[str, str]:
    """Prefect's database and the ledger, described (as the running set-up recorded them, if it did)."""
    recorded = _recorded(s) or {}
    prefect = recorded.get("prefect_database") or s.described()["prefect_database"]
    ledger = recorded.get("ledger") or s.described()["ledger"]
    return describe_database(prefect), describe_database(ledger)


def _state(s: Setup) -> dict:
    server = read_pid(s.paths.server_pid)
    server_up = ours(server)
    is_healthy = server_up and healthy(s.url)
    online = set(online_workers(s.url)) if is_healthy else set()
    workers = []
    for n in s.paths.worker_numbers() or [1]:
        pid = read_pid(s.paths.worker_pid_of(n))
        up = ours(pid)
        workers.append({"pid": pid if up else None, "name": s.worker_name(n), "pool": WORK_POOL,
                        "online": up and s.worker_name(n) in online, "log": str(s.paths.worker_log_of(n)),
                        **({} if up or pid is None else {"stale_pid": pid})})
    prefect_db, ledger_db = _databases(s)
    recorded = _recorded(s) or {}
    return {
        "api_url": s.url,
        "ui_url": s.url.removesuffix("/api"),
        "server": {"pid": server if server_up else None, "healthy": is_healthy,
                   "log": str(s.paths.server_log), "database": prefect_db},
        "worker": workers[0],
        "workers": workers,
        "postgres": bool(recorded.get("postgres")) if recorded else s.postgres is not None,
        "ledger": ledger_db,
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
    prefect_db, ledger_db = _databases(s)
    say("")
    say(f"Prefect UI: {s.url.removesuffix('/api')}    database: {prefect_db}")
    if s.postgres is not None:
        say(f"ledger: {ledger_db} (every worker's FUNDX_LEDGER_URL)")
    if agencies.is_file():
        say(f"agencies: the running sandbox's {rel(agencies)}")
    else:
        say(f"agencies: the FUNDX_* endpoints of this environment; no sandbox runs under {rel(s.sandbox_home)} "
            f"(start one: {fundx} sandbox start)")
    steps = [(f"export PREFECT_API_URL={s.url}", "")]
    if s.postgres is not None:  # so that `fundx status` and the console read the ledger the workers write
        steps.append((f"export {LEDGER_VAR}={s.postgres.ledger_url}", "the workers' ledger, for fundx commands"))
    several = s.workers > 1
    steps += [
        (f"{prefect} deployment ls", ""),
        (f"{prefect} deployment run 'nightly-exchange/nightly' --watch",
         "a night now, through " + ("one of the workers" if several else "the worker")),
        (f"{prefect} deployment run 'exchange-feed/police.deaths'", "one feed"),
        (f"{fundx} status", "what the ledger recorded"),
        ("make serve-status", "the server and " + ("every worker" if several else "the worker")),
        ("make serve-stop", "stop the " + ("workers" if several else "worker") + " and the server"),
    ]
    width = max(len(cmd) for cmd, _ in steps)
    say("next:")
    for cmd, why in steps:
        say(f"  {cmd:<{width}}  # {why}" if why else f"  {cmd}")
    logs = [s.paths.server_log, *(s.paths.worker_log_of(n) for n in range(1, s.workers + 1))]
    say(f"logs: {', '.join(rel(p) for p in logs)} (the flow runs' lines too); "
        f"each run's own in the UI or `prefect flow-run logs <id>`")


def stop(s: Setup | None = None, say=print) -> list[int]:
    """Stop the workers (all at once), then the server (and everything they started); the pids that were ended."""
    s = s or setup()
    ended: list[int] = []
    workers = [(n, read_pid(s.paths.worker_pid_of(n))) for n in s.paths.worker_numbers()]
    running = [(n, pid) for n, pid in workers if ours(pid)]
    if running:
        ended += terminate_all([pid for _, pid in running])
        for n, pid in running:
            say(f"worker{'' if n == 1 else ' ' + s.worker_name(n)} (pid {pid}) stopped")
    for n, _ in workers:
        s.paths.worker_pid_of(n).unlink(missing_ok=True)
    server = read_pid(s.paths.server_pid)
    if ours(server):
        ended += terminate(server)
        say(f"server (pid {server}) stopped")
    s.paths.server_pid.unlink(missing_ok=True)
    s.paths.state.unlink(missing_ok=True)
    s.paths.setup.unlink(missing_ok=True)
    if not ended:
        say("nothing to stop: no server or worker of `make serve` is running for FUNDX_HOME=" + str(s.home))
    return ended


def status(s: Setup | None = None, say=print, as_json: bool = False) -> int:
    """What runs: the server, every worker (online or not), the databases; 0 if all of it is up."""
    s = s or setup()
    state = _state(s)
    workers = state["workers"]
    up = bool(state["server"]["healthy"] and workers and all(w["pid"] for w in workers))
    if as_json:
        say(json.dumps(state, indent=2))
        return 0 if up else 1
    server = state["server"]
    say(f"server: {'up, ' + state['ui_url'] + ' (pid ' + str(server['pid']) + ')' if server['pid'] else 'not running'}"
        f"{'' if server['healthy'] or not server['pid'] else ' — NOT answering /api/health'}; "
        f"database {server['database']}; log {server['log']}")
    say(f"ledger: {state['ledger']}")
    for w in workers:
        if w["pid"]:
            where = f"{w['name']} on pool {WORK_POOL} (pid {w['pid']}, " + \
                ("online" if w["online"] else "NOT listed online by the server") + ")"
        elif w.get("stale_pid"):
            where = f"{w['name']} NOT running (was pid {w['stale_pid']}; its log says why)"
        else:
            where = "not running"
        say(f"worker: {where}; log {w['log']}")
    return 0 if up else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--json", action="store_true", help="status as JSON")
    parser.add_argument("--postgres", action="store_true",
                        help="start: Prefect's database and the ledger on PostgreSQL (FUNDX_SERVE_PG_URL), "
                             "several workers")
    parser.add_argument("--workers", type=int, metavar="N",
                        help=f"start: process workers on the pool (default {PG_WORKERS} with --postgres, else 1)")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be 1 or more")
    from fundx.core.errors import FundxError
    from fundx.core.settings import private_umask

    private_umask()  # the server, the workers and their flow runs inherit it: Prefect's home, logs, pids private

    try:
        if args.command == "start":
            start(setup(postgres=args.postgres, workers=args.workers))
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
