"""The REST pull side by side: dlt's rest_api source and fundx's connector paging the sandbox's civil-affairs API
(cursor, 1,000 records a page) into Parquet, each a fresh process, taken in turns against one sandbox server
that serves from this process (bench/pull_bench.py starts it the same way)."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.peers import ROOT, SIDE, peers_python
from bench.peers.checks import child_env, json_line

FEED = "civil_affairs.deaths"


def _city(rows: int):
    import pandas as pd

    from sandbox.city import DEFAULT_AS_OF, DEFAULT_SEED, City, generate_city, generate_feed

    small = generate_city(people=200)
    feeds = dict(small.feeds)
    feeds[FEED] = pd.concat(list(generate_feed(FEED, rows)), ignore_index=True)
    return City(seed=DEFAULT_SEED, people=small.people, as_of=DEFAULT_AS_OF, roll=small.roll, feeds=feeds, truths={})


def run(rows: int, repeats: int) -> dict[str, Any]:
    """Median seconds of each client's pull (timed inside its process, from before the first request until the
    Parquet file is written) and of its whole process; the rows each got, checked against the agency's."""
    from fundx.core.timeutil import Window, aware
    from sandbox.agencies import Sandbox

    print(f"  generating {rows:,} civil-affairs records for the sandbox ...", flush=True)
    city = _city(rows)
    times: dict[str, list[float]] = {"dlt": [], "fundx": []}
    whole: dict[str, list[float]] = {"dlt": [], "fundx": []}
    versions: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="fundx-bench-peers-") as tmp, \
            Sandbox(Path(tmp) / "agencies", city=city) as sandbox:
        window = Window(aware("2020-01-01"), aware(city.as_of))
        start, end = window.start.isoformat(), window.end.isoformat()
        expected = len(sandbox.expected(FEED, window.start, window.end))
        env = child_env(**sandbox.env, FUNDX_HOME=str(Path(tmp) / "home"))
        print(f"  pulling {expected:,} records, {repeats} fresh processes each: dlt rest_api / fundx ...", flush=True)
        for i in range(repeats):
            out = Path(tmp) / f"dlt-{i}"
            began = time.perf_counter()
            done = subprocess.run([str(peers_python()), str(SIDE / "dlt_pull.py"), str(out), "--start", start,
                                   "--end", end], capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600)
            whole["dlt"].append(time.perf_counter() - began)
            got = json_line(done, "dlt pull")
            _same(got["rows"], expected, "dlt")
            times["dlt"].append(got["seconds"])
            versions["dlt"] = got["version"]
            shutil.rmtree(out, ignore_errors=True)
            began = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "bench.peers.fundx_side", "pull", str(Path(tmp) / "fundx.parquet"),
                                   "--start", start, "--end", end], capture_output=True, text=True, env=env, cwd=ROOT,
                                  timeout=3600)
            whole["fundx"].append(time.perf_counter() - began)
            got = json_line(done, "fundx pull")
            _same(got["rows"], expected, "fundx")
            times["fundx"].append(got["seconds"])
    return {"rows": expected, "seconds": {k: round(statistics.median(v), 3) for k, v in times.items()},
            "whole_process_seconds": {k: round(statistics.median(v), 3) for k, v in whole.items()},
            "runs": times, "versions": versions}


def _same(got: int, expected: int, who: str) -> None:
    if got != expected:
        raise SystemExit(f"{who}: pulled {got:,} rows, the agency holds {expected:,}")
