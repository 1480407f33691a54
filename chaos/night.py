"""The chaos night: faults at the agencies, SIGKILLs of the exchange, and the books checked against the truth.

:class:`Chaos` generates a small city with the canary planted in every feed, starts the eight
agencies on loopback and runs the exchange in child processes (:mod:`chaos.child`) over a few
nights (window ends spread over the generated months, the last one the chaos's start), each run with
random fault profiles armed at random agencies and, until the night's share of kills is spent, a
SIGKILL at a random kill point (``FUNDX_TEST_KILL_AT``: the handoff's steps, the pull, the check,
between chunks, inside recovery) or at a random moment. After each run every fault is lifted;
a night ends when a run completes every feed. A pull that an ``empty`` agency answered with nothing
(a valid answer that moves the watermark) is backfilled, as the agency's operator would ask.
Then the stages take their batches and :mod:`chaos.truth` compares what they hold and what the
stewards keep with what the agencies served, and checks the ledger's books; :mod:`chaos.search`
searches every file the exchange, Prefect and the runs left for the canary and the secrets.

Everything printed and recorded is counts, names of feeds, faults and kill points, batch ids and
file names: never a row, an identity number or a secret.
"""

from __future__ import annotations

import base64
import json
import math
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from fundx.core.testpoints import KILL_POINTS  # the points a run may be stopped at

ROOT = Path(__file__).resolve().parents[1]

#: the fault profiles of sandbox/faults.py the night injects (repeat_page and echo_secret are broken
#: agencies for the conformance suite, not faults of a working one)
PROFILES = ("server_errors", "slow", "read_timeout", "reset", "truncated", "page_twice", "rate_limit",
            "renamed_column", "expired_token", "empty", "trickle")
AT_RANDOM = "random_time"
#: the profiles that stop a feed (or empty it) until lifted
PERMANENT = ("renamed_column", "expired_token", "empty", "trickle")
#: the profiles whose firing shows as their feed failing
FAILING = ("renamed_column", "expired_token", "trickle")
MARKER = b"fundx-test-kill-point "
SECRET_NAMES = ("TOKEN", "SECRET", "API_KEY", "PASSWORD")


@dataclass
class Options:
    """What one chaos night does (``python -m chaos --help`` says the same)."""

    seed: int = 20261123
    people: int = 3000
    rows: int = 400  # rows kept per feed at most (the generator's bills and wages are many)
    nights: int = 3
    min_faults: int = 50
    min_kills: int = 20
    prefect_nights: int = 2  # runs of the real nightly flow (the last run is one)
    max_runs: int = 150
    run_timeout: float = 180.0
    workdir: Path | None = None
    record: Path | None = None
    keep: bool = False


@dataclass
class Run:
    """One run of the exchange: its night, mode, faults, kill and end (no data)."""

    number: int
    night: int
    mode: str  # feeds | prefect
    faults: dict[str, list[str]]
    kill: str | None
    killed: bool = False
    exit: int | None = None
    seconds: float = 0.0
    completed: bool = False
    backfills: int = 0
    failed: list[str] = field(default_factory=list)


class Chaos:
    """One chaos night (see the module docstring); :meth:`run` returns the record, :attr:`ok` the verdict."""

    def __init__(self, options: Options, out: TextIO | None = None) -> None:
        self.o = options
        self.out = out or sys.stdout
        self.rng = random.Random(options.seed)
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
        home = Path(os.environ.get("FUNDX_HOME", "var")).resolve()
        self.dir = (options.workdir or home / "chaos" / stamp).resolve()
        self.home, self.prefect, self.agencies = self.dir / "home", self.dir / "prefect", self.dir / "agencies"
        self.logs, self.tmp = self.dir / "logs", self.dir / "tmp"
        self.runs: list[Run] = []
        self.injected: list[tuple[int, str, str]] = []  # (run, agency, fault) that met a run of its feed
        self.fired = 0
        self.kills: dict[str, int] = {}
        self.covered: set[tuple[str, str]] = set()
        self.backfills: list[tuple[str, str, str]] = []
        self.problems: list[str] = []
        self.tokens: set[str] = set()
        self.ok = False

    # -- set-up ---------------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _city(self) -> Any:
        from sandbox.city import generate_city
        from sandbox.city.canary import plant_canary

        city = generate_city(self.o.people, seed=self.o.seed)
        rng = self.rng
        for feed, frame in list(city.feeds.items()):
            if len(frame) > self.o.rows:
                keep = sorted(rng.sample(range(len(frame)), self.o.rows))
                city.feeds[feed] = frame.iloc[keep].reset_index(drop=True)
        self.canary_keys = plant_canary(city)
        return city

    def _environment(self, sandbox: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FUNDX_", "PREFECT_")) or k in ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",)}
        env.update(sandbox.env)
        env.update({
            "FUNDX_HOME": str(self.home), "FUNDX_SANDBOX_HOME": str(self.agencies), "PREFECT_HOME": str(self.prefect),
            "FUNDX_HTTP_READ_TIMEOUT": "1", "FUNDX_RETRY_BASE_DELAY": "0.05", "FUNDX_RETRY_MAX_DELAY": "1",
            # a trickling agency fails its feed in seconds, not the 30 minutes of the default
            "FUNDX_HTTP_REQUEST_DEADLINE": "2", "FUNDX_PULL_DEADLINE": "10",
            "FUNDX_PART_BYTES": str(16 * 1024), "FUNDX_CHUNK_ROWS": "100", "FUNDX_STEWARD": "chaos-steward",
            "PREFECT_LOGGING_LEVEL": "INFO", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": env.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
                                                                       "180"),
            "TMPDIR": str(self.tmp),
        })
        return env

    def _record_tokens(self, sandbox: Any) -> None:
        """Keep every access token an OAuth2 token endpoint hands out: secrets to search for too."""
        for agency in sandbox._rest.values():
            if agency.token_path is None:
                continue
            issue = agency.token

            def recording(request: Any, issue: Any = issue) -> Any:
                reply = issue(request)
                if reply.status == 200:
                    self.tokens.add(json.loads(reply.body)["access_token"])
                return reply

            agency.token = recording

    # -- the night --------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from fundx.crypto.pki import init_keys
        from sandbox.agencies import Sandbox

        for folder in (self.home, self.prefect, self.logs, self.tmp):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        began = time.monotonic()
        city = self._city()
        self._say(f"chaos: a city of {self.o.people} people, at most {self.o.rows} rows per feed, the canary planted "
                  f"in {len(self.canary_keys)} feeds; work folder {self.dir}")
        saved = dict(os.environ)
        sandbox = Sandbox(self.agencies, city=city, stall_seconds=2.0)
        try:
            sandbox.start()
            self._record_tokens(sandbox)
            self.sandbox = sandbox
            self.env = self._environment(sandbox)
            os.environ.clear()
            os.environ.update(self.env)  # the fork server (and the checks below) see the chaos home
            from fundx.core.settings import reload_settings

            settings = reload_settings()
            init_keys(self.home)  # the PKI first: creating it is not one of the steps under test
            self.start = settings.initial_watermark
            final = datetime.now(settings.initial_watermark.tzinfo).replace(microsecond=0)
            as_of = datetime.combine(city.as_of, datetime.min.time(), tzinfo=final.tzinfo)
            n = max(1, self.o.nights)
            self.ends = [as_of - timedelta(days=30 * 6 * (n - 1 - i) // max(1, n - 1)) for i in range(n - 1)] + [final]
            self.ends = sorted(set(self.ends))
            self._nights()
            self._receive()
            result = self._check(sandbox)
        finally:
            sandbox.stop()
            os.environ.clear()
            os.environ.update(saved)
            from fundx.core.settings import reload_settings

            reload_settings()
            _stop_fork_server()
        result["seconds"] = round(time.monotonic() - began, 1)
        self._report(result)
        if not self.o.keep:
            for folder in (self.home, self.prefect, self.agencies, self.logs, self.tmp):
                shutil.rmtree(folder, ignore_errors=True)
        return result

    def _nights(self) -> None:
        feeds = _feeds()
        prefect_left = max(0, self.o.prefect_nights)
        for night, end in enumerate(self.ends):
            last = night == len(self.ends) - 1
            share = (night + 1) / len(self.ends)
            kills_due = math.ceil(self.o.min_kills * share)
            faults_due = math.ceil(self.o.min_faults * share)
            first = True
            while True:
                if len(self.runs) >= self.o.max_runs:
                    self.problems.append(f"night {night + 1} never completed in {self.o.max_runs} runs")
                    return
                chaos = (sum(self.kills.values()) < kills_due or len(self.injected) < faults_due
                         or (last and self._uncovered()))
                prefect = False
                if prefect_left and ((chaos and first and prefect_left > 1) or (not chaos and last)):
                    prefect, prefect_left = True, prefect_left - 1
                faults = self._arm() if chaos else {}
                kill = self._kill_choice(prefect) if chaos else None
                run = self._run(len(self.runs) + 1, night, end, feeds, faults, kill, prefect)
                first = False
                if run.completed and not chaos and not self.backfills:
                    break

    def _uncovered(self) -> list[tuple[str, str]]:
        from sandbox.faults import FAULTS, agency_transports

        transports = {t for ts in agency_transports().values() for t in ts}
        pairs = {(p, t) for p in PROFILES for t in transports if t in FAULTS[p].transports}
        return sorted(pairs - self.covered)

    def _arm(self) -> dict[str, list[str]]:
        """Random faults at 2-5 random agencies, profiles not yet met at a transport first."""
        from sandbox.faults import FAULTS, agency_transports

        armed: dict[str, list[str]] = {}
        wanted = self._uncovered()
        transports = agency_transports()
        for agency in self.rng.sample(sorted(transports), self.rng.randint(2, 5)):
            transport = transports[agency][0]  # an agency of several transports: faults of its first
            fits = [p for p in PROFILES if transport in FAULTS[p].transports]
            fresh = [p for p, t in wanted if t == transport]
            first = self.rng.choice(fresh) if fresh else self.rng.choice(fits)
            chosen = [first]
            transient = [p for p in fits if p not in chosen and p not in PERMANENT]
            if first not in PERMANENT and transient and self.rng.random() < 0.3:
                chosen.append(self.rng.choice(transient))  # a second fault only with a first that lets the feed through
            armed[agency] = chosen
            wanted = [(p, t) for p, t in wanted if not (t == transport and p in chosen)]
        for agency, names in armed.items():
            self.sandbox.set_faults(agency, names)
        return armed

    def _kill_choice(self, prefect: bool) -> str:
        if not prefect and self.rng.random() < 0.3:
            return AT_RANDOM
        return self.rng.choice(KILL_POINTS)

    def _run(self, number: int, night: int, end: datetime, feeds: list[str], faults: dict[str, list[str]],
             kill: str | None, prefect: bool) -> Run:
        run = Run(number, night + 1, "prefect" if prefect else "feeds", faults, kill, backfills=len(self.backfills))
        log = self.logs / f"run-{number:03d}.log"
        tmp = self.tmp / f"run-{number:03d}"
        tmp.mkdir(mode=0o700)
        env = {"TMPDIR": str(tmp)}
        if kill and kill != AT_RANDOM:
            env["FUNDX_TEST_KILL_AT"] = kill
        started, wall = time.monotonic(), datetime.now(end.tzinfo)
        if prefect:
            self._prefect_run(run, log, env, end)
        else:
            order = self.rng.sample(feeds, len(feeds))
            jobs: list[tuple[str, str | None, str | None]] = [*self.backfills, *((f, None, end.isoformat()) for f in order)]
            self._feed_run(run, log, env, jobs)
        run.seconds = round(time.monotonic() - started, 2)
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        run.failed = sorted({line.split()[3] for line in text.splitlines() if line.startswith("chaos-job ")
                             and line.split()[2] == "failed"})
        done = {line.split()[1] for line in text.splitlines() if line.startswith("chaos-job ") and " ok " in line}
        run.completed = not run.killed and run.exit == 0 and (prefect or len(done) == len(self.backfills) + len(feeds))
        if run.killed:
            self.kills[kill or AT_RANDOM] = self.kills.get(kill or AT_RANDOM, 0) + 1
        self._lift(run, text, wall)
        self.runs.append(run)
        armed = "; ".join(f"{a}={','.join(n)}" for a, n in faults.items()) or "no faults"
        what = f"killed at {kill}" if run.killed else ("completed" if run.completed else
                                                        f"ended {run.exit}" + (f" ({', '.join(run.failed)} failed)"
                                                                               if run.failed else ""))
        self._say(f"run {number:3d} night {night + 1} {run.mode:7s} {run.seconds:6.1f} s  {what:40s} {armed}")
        return run

    def _feed_run(self, run: Run, log: Path, env: dict[str, str], jobs: list[tuple[str, str | None, str | None]]) -> None:
        from chaos.child import run_jobs

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["chaos._warm"])
        child = context.Process(target=run_jobs, args=(env, str(log), jobs), name=f"chaos-run-{run.number}")
        child.start()
        delay = None
        if run.kill == AT_RANDOM:
            timed = sorted(r.seconds for r in self.runs if r.mode == "feeds" and r.completed) or [3.0]
            delay = self.rng.uniform(0.05, max(0.5, timed[len(timed) // 2]))
        started = time.monotonic()
        assert child.pid is not None
        while child.exitcode is None:
            elapsed = time.monotonic() - started
            if (delay is not None and elapsed >= delay) or (run.kill and run.kill != AT_RANDOM and _marked(log)):
                os.kill(child.pid, signal.SIGKILL)  # the real thing: no finally, no atexit, no flush
                run.killed = True
                break
            if elapsed > self.o.run_timeout:
                os.kill(child.pid, signal.SIGKILL)
                self.problems.append(f"run {run.number} did not end in {self.o.run_timeout:.0f} s (killed)")
                break
            child.join(0.02)
        child.join()
        run.exit = child.exitcode
        child.close()
        if run.killed and run.exit != -signal.SIGKILL:  # it ended by itself just before the kill
            run.killed = False

    def _prefect_run(self, run: Run, log: Path, env: dict[str, str], end: datetime) -> None:
        command = [sys.executable, "-m", "chaos.child", "--night", "--end", end.isoformat()]
        with open(log, "ab") as sink:
            child = subprocess.Popen(command, cwd=ROOT, env={**self.env, **env}, stdout=sink, stderr=sink,
                                     start_new_session=True)  # its own group: the kill takes Prefect's server too
        started = time.monotonic()
        while child.poll() is None:
            if run.kill and _marked(log):
                os.killpg(child.pid, signal.SIGKILL)
                run.killed = True
                break
            if time.monotonic() - started > self.o.run_timeout:
                os.killpg(child.pid, signal.SIGKILL)
                self.problems.append(f"run {run.number} (Prefect night) did not end in {self.o.run_timeout:.0f} s")
                break
            time.sleep(0.05)
        run.exit = child.wait()
        try:
            os.killpg(child.pid, signal.SIGKILL)  # whatever the night left running (its ephemeral server)
        except ProcessLookupError:
            pass

    def _lift(self, run: Run, log: str, wall: datetime) -> None:
        """After a run: count the faults that met a run of their feed, lift every fault, queue backfills."""
        from connectors.registry import registry
        from fundx.ledger import Ledger
        from sandbox.faults import FAULTS

        done = {line.split()[1] for line in log.splitlines() if line.startswith("chaos-job ") and " ok " in line}
        # a backfill is job number i of a feed run (they go first); a Prefect night runs none
        pending = [b for i, b in enumerate(self.backfills) if run.mode == "prefect" or str(i) not in done]
        reg = registry()
        for agency, names in run.faults.items():
            feeds = [f for f in reg.agencies.get(agency, ()) if f"{f}: pulling" in log]  # the agency's feeds it met
            state = self.sandbox._states[agency]
            for name in names:
                for feed in feeds:
                    self.injected.append((run.number, agency, name))
                    self.covered.add((name, reg.feeds[feed].transport))
                    shot = FAULTS[name].shots and state._shots.get(name, FAULTS[name].shots) < FAULTS[name].shots
                    if shot or (name in FAILING and feed in run.failed):
                        self.fired += 1
            self.sandbox.set_faults(agency, [])
            if "empty" in names and feeds:
                ledger = Ledger.from_settings()
                try:
                    for feed in feeds:
                        for p in ledger.pulls(feed, limit=50):
                            # a backfill that met the empty agency too answered nothing: it goes again
                            if (p.outcome == "pulled" and not p.rows and p.started_at >= wall
                                    and p.window.start < p.window.end):
                                pending.append((feed, p.window.start.isoformat(), p.window.end.isoformat()))
                                self.fired += 1
                finally:
                    ledger.dispose()
        self.backfills = list(dict.fromkeys(pending))

    def _receive(self) -> None:
        """The stages take their batches (``fundx stage receive --all``), the exchange records their answers."""
        log = self.logs / "receive.log"
        with open(log, "ab") as sink:
            done = subprocess.run([sys.executable, "-m", "fundx", "stage", "receive", "--all"], cwd=ROOT,
                                  env={**self.env, "TMPDIR": str(self.tmp)}, stdout=sink, stderr=sink,
                                  timeout=self.o.run_timeout, check=False)
        if done.returncode != 0:
            self.problems.append(f"fundx stage receive --all ended {done.returncode} (a batch refused?)")

    # -- the checks ---------------------------------------------------------------------------------

    def _check(self, sandbox: Any) -> dict[str, Any]:
        from chaos import search as searching
        from chaos import truth
        from fundx.ledger import Ledger
        from sandbox.city.canary import CANARY_ID

        feeds = _feeds()
        ledger = Ledger.from_settings()
        try:
            windows = list(zip([self.start, *self.ends[:-1]], self.ends))
            tallies = truth.tally(sandbox, ledger, self.home, feeds, windows, CANARY_ID, self.canary_keys)
            books = truth.books(ledger, self.home, feeds, self.ends[-1])
        finally:
            ledger.dispose()
        needles = [searching.Needle("canary identity number", CANARY_ID)]
        needles += self._secrets()
        found = searching.search([self.home, self.prefect, self.logs, self.tmp], needles, exclude=[self.agencies])
        return {
            "feeds": [t.as_dict() for t in tallies],
            "totals": {
                "faults_injected": len(self.injected), "faults_fired_observed": self.fired,
                "kills": sum(self.kills.values()), "runs": len(self.runs),
                "prefect_nights": sum(r.mode == "prefect" for r in self.runs),
                "nights": len(self.ends),
                "expected": sum(t.expected for t in tallies), "delivered": sum(t.delivered for t in tallies),
                "quarantined": sum(t.quarantined for t in tallies), "duplicated": sum(t.duplicated for t in tallies),
                "lost": sum(t.lost for t in tallies), "unexpected": sum(t.unexpected for t in tallies),
            },
            "kills_by_point": dict(sorted(self.kills.items())),
            "faults_by_profile": _count(name for _, _, name in self.injected),
            "uncovered_profiles": [f"{p}@{t}" for p, t in self._uncovered()],
            "ledger": {k: v for k, v in asdict(books).items() if k != "problems"},
            "search": {"files": found.files, "bytes": found.bytes, "roots": found.roots,
                       "needles": [n.name for n in needles],
                       "hits": [[str(Path(p).relative_to(self.dir)) if Path(p).is_relative_to(self.dir) else p, name]
                                for p, name in found.hits]},
            "problems": self.problems + books.problems,
            "runs": [asdict(r) for r in self.runs],
        }

    def _secrets(self) -> list[Any]:
        """Every secret the exchange held: the agencies' credentials, database passwords, issued access
        tokens, and the private keys' bodies (expected only in FUNDX_HOME/keys)."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        from chaos.search import Needle

        needles = []
        for name, value in sorted(self.sandbox.env.items()):
            if any(word in name for word in SECRET_NAMES) and value:
                needles.append(Needle(name, value))
            elif "://" in value:
                try:
                    password = make_url(value).password
                except ArgumentError:  # not a database URL: nothing to look for
                    password = None
                if password:
                    needles.append(Needle(f"{name} password", str(password)))
        needles += [Needle(f"police access token {i + 1}", t) for i, t in enumerate(sorted(self.tokens))]
        keys = self.home / "keys"
        for path in sorted(keys.rglob("*.key")):
            data = path.read_bytes()
            if data.startswith(b"-----"):  # PEM: the DER inside
                data = base64.b64decode(b"".join(line for line in data.splitlines() if not line.startswith(b"-----")))
            if len(data) >= 16:  # 32 bytes from the middle of the key (a raw key whole): outside keys/, a leak
                middle = max(0, len(data) // 2 - 16)
                needles.append(Needle(f"private key {path.relative_to(keys)}", data[middle:middle + 32], outside=(keys,)))
        return needles

    # -- the report -----------------------------------------------------------------------------------

    def _report(self, result: dict[str, Any]) -> None:
        t = result["totals"]
        header = f"{'feed':36s} {'expected':>8s} {'delivered':>9s} {'quarantined':>11s} {'duplicated':>10s} {'lost':>5s} " \
                 f"{'batches':>7s}  canary"
        self._say("")
        self._say(header)
        self._say("-" * len(header))
        for f in result["feeds"]:
            self._say(f"{f['feed']:36s} {f['expected']:8d} {f['delivered']:9d} {f['quarantined']:11d} "
                      f"{f['duplicated']:10d} {f['lost']:5d} {f['batches']:7d}  {f['canary']}")
        s, led = result["search"], result["ledger"]
        self._say("")
        self._say("kills by point: " + ", ".join(f"{k} {v}" for k, v in result["kills_by_point"].items()))
        self._say("faults by profile: " + ", ".join(f"{k} {v}" for k, v in result["faults_by_profile"].items()))
        self._say(f"ledger: {led['deliveries']} deliveries ({led['attempts']} attempts, {led['abandoned']} abandoned), "
                  f"{led['acknowledged']} acknowledged, {led['acks']} answers recorded")
        self._say(f"search: {s['files']} files, {s['bytes']:,} bytes under {len(s['roots'])} folders for "
                  f"{len(s['needles'])} needles (the canary and {len(s['needles']) - 1} secrets): {len(s['hits'])} hits")
        for path, name in s["hits"]:
            self._say(f"  FOUND {name} in {path}")
        for problem in result["problems"]:
            self._say(f"  PROBLEM {problem}")
        failures = []
        if t["duplicated"] or t["lost"] or t["unexpected"]:
            failures.append("rows duplicated, lost or unexpected")
        if t["faults_injected"] < self.o.min_faults:
            failures.append(f"only {t['faults_injected']} faults injected (minimum {self.o.min_faults})")
        if t["kills"] < self.o.min_kills:
            failures.append(f"only {t['kills']} kills (minimum {self.o.min_kills})")
        if result["uncovered_profiles"]:
            failures.append("fault profiles never met: " + ", ".join(result["uncovered_profiles"]))
        if s["hits"]:
            failures.append("the canary or a secret found in plain text")
        if result["problems"]:
            failures.append(f"{len(result['problems'])} problems")
        self.ok = not failures
        result["verdict"] = "PASS" if self.ok else "FAIL: " + "; ".join(failures)
        self._say("")
        self._say(f"TOTAL faults injected {t['faults_injected']} (observed firing {t['faults_fired_observed']}), "
                  f"kills {t['kills']}, runs {t['runs']} ({t['prefect_nights']} Prefect nights) over {t['nights']} nights, "
                  f"rows expected {t['expected']}, delivered {t['delivered']}, quarantined {t['quarantined']}, "
                  f"duplicated {t['duplicated']}, lost {t['lost']}; {result['seconds']:.0f} s")
        self._say(result["verdict"])
        record = self.o.record or self.dir / "chaos.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(result, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        self._say(f"record: {record}")


def _feeds() -> list[str]:
    from connectors import feed_names

    return list(feed_names())


def _marked(log: Path) -> bool:
    try:
        with open(log, "rb") as handle:
            return MARKER in handle.read()
    except FileNotFoundError:
        return False


def _count(names: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def _stop_fork_server() -> None:
    """Stop the fork server, so that a later chaos night (another test) starts one with its environment."""
    from multiprocessing import forkserver

    try:
        forkserver._forkserver._stop()  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        pass
