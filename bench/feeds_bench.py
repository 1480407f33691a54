"""Whole feeds through the streamed pipeline, per step, next to baselines measured in the same run.

For each feed and size — death records as the religious-affairs monthly drop (1M and 10M rows by
default) and settled bills from the medical security bureau's database view (5M) — one child process
runs ``fundx.exchange.run.run_feed(feed, stream=True)`` (bench/feedrun.py) and reports each step's seconds,
rows and peak memory (pull, normalise, validate, seal, handoff) and its own peak (VmHWM). Each
baseline runs in a child process of its own on the same data:

- pull: the same files decoded from GB18030 and read by pyarrow.csv into pandas / the same SQLite view
  read by pandas.read_sql in chunks;
- normalise + validate: the contract's rules as plain vectorised pandas on the same rows;
- seal: the same rows written as Parquet by pyarrow, encrypted with AES-256-GCM in 1 MiB chunks and
  written to durable files, twice (the exchange seals each row as the backup's original and for its
  recipient); and, for the record, AES-256-GCM alone over as many bytes as the seal step sealed.

The city-scale night (:func:`run_night`) runs six feeds (three death sources of 50k, 20k prisoners,
2M bills, 100k businesses) through the nightly flow against the sandbox agencies, and times it.

Goals are printed as ratios with PASS/FAIL (and recorded), never asserted:
- each step of each feed (pull, normalise + validate, seal) <= 1.5 x its baseline, in one process (issue 21;
  the xlsx pull's goal is bench/xlsx_bench.py's);
- a 1M-row feed end to end <= 2 x the sum of its baselines;
- peak memory <= 1 GB for the 10M-row feed;
- a city-scale night <= 5 minutes.

Generated data is cached (bench/scale_data.py); its generation time is reported apart from the runs.

    python -m bench --only feeds [--sizes 1M,10M] [--bills 5M] [--quick]
    python -m bench --only night [--quick]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import scale_data
from bench.feedrun import READY, RESULT, STEPS

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20
DEATHS = scale_data.DEATHS
BILLS = scale_data.BILLS
DEFAULT_SIZES = (1_000_000, 10_000_000)
DEFAULT_BILLS = 5_000_000
QUICK_SIZES = (50_000,)
QUICK_BILLS = 100_000
QUICK_NIGHT = scale_data.night_sizes(5_000, 2_000, 200_000, 10_000)
GOAL_RATIO = 2.0
GOAL_PEAK_BYTES = 1_000_000_000  # 1 GB (issue 21)
GOAL_STEP_RATIO = 1.5  # each step against its same-run baseline, one process (issue 21)
GOAL_NIGHT_S = 300.0
TRANSPORT = {DEATHS: "file drop, monthly GB18030 CSV", BILLS: "database view (SQLite, read through ADBC)"}
#: each measured step and the baseline it is compared with (normalise and validate share one)
BASELINE_OF = {"pull": "pull", "normalise": "checks", "validate": "checks", "seal": "seal"}


def parse_rows(text: str) -> int:
    """``50k``, ``1M``, ``2.5M``, ``1000000`` -> rows."""
    text = text.strip().replace("_", "").replace(",", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:].lower(), 1)
    number = text[:-1] if scale != 1 else text
    return int(round(float(number) * scale))


def rows_label(rows: int) -> str:
    if rows >= 1_000_000 and rows % 100_000 == 0:
        return f"{rows / 1_000_000:g}M"
    if rows >= 1_000 and rows % 1_000 == 0:
        return f"{rows // 1_000}k"
    return str(rows)


# --- child processes --------------------------------------------------------------------------------


def clean_env(tmp: Path, keys_dir: Path, chunk_rows: int | None, runner: str | None = None) -> dict[str, str]:
    """The environment of a measured child: no FUNDX_* or PREFECT_* of the caller's, a home of its own."""
    tmp.mkdir(parents=True, exist_ok=True)  # Prefect makes its home, not the folders above it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FUNDX_", "PREFECT_"))}
    env.update({
        "FUNDX_HOME": str(tmp / "home"),
        "FUNDX_SANDBOX_HOME": str(tmp / "no-sandbox"),  # never a running sandbox's exchange.env
        "FUNDX_KEYS_DIR": str(keys_dir),
        "PREFECT_HOME": str(tmp / "prefect"),
        "PREFECT_LOGGING_LEVEL": "CRITICAL",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PYTHONUNBUFFERED": "1",
    })
    if chunk_rows:
        env["FUNDX_CHUNK_ROWS"] = str(chunk_rows)
    if runner:
        env["FUNDX_TASK_RUNNER"] = runner
    return env


def child(spec: dict, env: dict[str, str], *, timeout: float = 3600) -> dict[str, Any]:
    """Run ``python -m bench.feedrun SPEC`` and return its result; its failure names the mode and its stderr's end."""
    done = subprocess.run([sys.executable, "-m", "bench.feedrun", json.dumps(spec)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    for line in reversed(done.stdout.splitlines()):
        if done.returncode == 0 and line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
    raise RuntimeError(f"bench child {spec['mode']} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


def source_env(feed: str, dataset: scale_data.Dataset) -> dict[str, str]:
    """The agency's endpoint for the exchange: the drop folder or the database URL."""
    if feed == DEATHS:
        return {"FUNDX_RELIGIOUS_AFFAIRS_DROP": dataset.path}
    return {"FUNDX_MEDICAL_INSURANCE_DB_URL": dataset.url}


# --- one feed -----------------------------------------------------------------------------------------


def measure(feed: str, dataset: scale_data.Dataset, *, tmp: Path, keys_dir: Path, end: str,
            chunk_rows: int | None = None, runner: str | None = None, warm: bool = True,
            verbose: bool = True, baselines: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The streamed run of one feed and its three baselines, each in a child process; one record.

    ``warm``: warm the contract check up on a few hundred rows before the clock starts (imports and
    first use are a process's cost, not the rows'); without it they fall into the first validate step."""
    work = tmp / f"{feed}-{dataset.rows}"
    env = {**clean_env(work, keys_dir, chunk_rows, runner), **source_env(feed, dataset)}
    base = {"feed": feed, "source": dataset.path, "end": end}
    try:
        run = child({**base, "mode": "feed", "warm": warm}, env)
    finally:
        shutil.rmtree(work / "home", ignore_errors=True)  # the sealed parts (GBs at 10M rows)
    if baselines is None:  # given: the same data's baselines measured for another runner's run
        baselines = {
            "pull": child({**base, "mode": "parse"}, env),
            "checks": child({**base, "mode": "checks"}, env),
            "seal": child({**base, "mode": "seal"}, env),
            "cipher": child({**base, "mode": "aesgcm", "bytes": int(run.get("sealed_bytes") or 0)}, env),
        }
    shutil.rmtree(work, ignore_errors=True)
    record = summarise(feed, dataset.rows, run, baselines)
    record["raw_baselines"] = baselines
    record["dataset"] = {k: v for k, v in dataset.as_dict().items() if k != "extra"}
    if verbose:
        print_feed(record)
    return record


def _mib(n: float | int | None) -> float | None:
    return None if n is None else round(n / MIB, 1)


def summarise(feed: str, rows: int, run: dict[str, Any], baselines: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One feed's record: each step with rows/s and peak, the baselines, their ratios, end to end."""
    steps: dict[str, dict[str, Any]] = {}
    for name in STEPS:
        got = (run.get("steps") or {}).get(name)
        if got is None:
            continue
        seconds = float(got.get("seconds") or 0.0)
        step_rows = int(got.get("rows") or 0)
        steps[name] = {"seconds": round(seconds, 3), "rows": step_rows,
                       "rows_per_s": round(step_rows / seconds) if seconds > 0 else None,
                       "peak_MiB": _mib(got.get("peak_rss_bytes"))}
    base: dict[str, dict[str, Any]] = {}
    for name, got in baselines.items():
        base[name] = {"what": got.get("what"), "seconds": round(float(got["seconds"]), 3),
                      "peak_MiB": _mib(got.get("peak_bytes")),
                      **{k: got[k] for k in ("rows", "bytes", "failed", "chunks") if k in got}}
    ratios: dict[str, float | None] = {}
    for name, which in (("pull", "pull"), ("normalise+validate", "checks"), ("seal", "seal")):
        mine = ("normalise", "validate") if which == "checks" else (name,)
        ours = sum(steps[s]["seconds"] for s in mine if s in steps)
        theirs = base.get(which, {}).get("seconds")
        ratios[name] = round(ours / theirs, 2) if theirs else None
    wall = float(run.get("wall_s") or 0.0)
    total_base = sum(b["seconds"] for name, b in base.items() if name in BASELINE_OF.values())  # not the cipher alone
    return {
        "feed": feed, "transport": TRANSPORT.get(feed), "rows": rows,
        "pulled": run.get("rows"), "valid": run.get("valid"), "quarantined": run.get("quarantined"),
        "outcome": run.get("outcome"), "parts": run.get("parts"), "sealed_bytes": run.get("sealed_bytes"),
        "chunk_rows": run.get("chunk_rows"), "runner": run.get("runner") or "local",
        "steps": steps,
        "steps_total_s": round(sum(s["seconds"] for s in steps.values()), 3),
        "end_to_end_s": round(wall, 3),
        "end_to_end_rows_per_s": round(rows / wall) if wall > 0 else None,
        "warmup_s": round(float(run.get("warmup_s") or 0.0), 3),
        "peak_MiB": _mib(run.get("peak_bytes")),
        "workers_peak_MiB": [_mib(b) for b in run.get("worker_peak_bytes") or []],
        "peak_with_workers_MiB": _mib(run.get("peak_with_workers_bytes")),
        "run_peak_MiB": _mib(run.get("run_peak_bytes")),
        "baselines": base,
        "baseline_total_s": round(total_base, 3),
        "ratios": ratios,
        "ratio_end_to_end": round(wall / total_base, 2) if total_base else None,
    }


def print_feed(r: dict[str, Any]) -> None:
    print(f"{r['feed']}, {r['rows']:,} rows ({r['transport']}; chunks of {_n(r['chunk_rows'])} rows, "
          f"runner {r['runner']}): {r['pulled']:,} pulled, {r['valid']:,} valid, {r['quarantined']:,} quarantined, "
          f"{r['parts']} sealed parts, {r['sealed_bytes'] / 1e6:,.0f} MB sealed")
    print(f"  {'step':<12}{'seconds':>9}{'rows/s':>12}{'peak MiB':>10} | {'baseline':<21}{'seconds':>9}"
          f"{'peak MiB':>10}{'ratio':>10}")
    names = {"pull": "pull", "normalise": "normalise+validate", "seal": "seal"}
    for name in STEPS:
        s = r["steps"].get(name)
        if s is None:
            continue
        line = f"  {name:<12}{s['seconds']:>9.2f}{_n(s['rows_per_s']):>12}{_n(s['peak_MiB']):>10} | "
        which = BASELINE_OF.get(name)
        if which and name != "validate":
            b = r["baselines"][which]
            ratio = r["ratios"][names[name]]
            line += f"{b['what']:<21}{b['seconds']:>9.2f}{_n(b['peak_MiB']):>10}{_ratio(ratio):>10}"
            if which == "checks":
                line += "  (normalise + validate)"
            elif name == "pull" and ratio is not None:
                line += f"  (goal <= {GOAL_STEP_RATIO:g}x: {'PASS' if ratio <= GOAL_STEP_RATIO else 'FAIL'})"
        elif name == "validate":
            line += "  (with normalise)"
        print(line.rstrip())
    print(f"  {'end to end':<12}{r['end_to_end_s']:>9.2f}{_n(r['end_to_end_rows_per_s']):>12}{_n(r['peak_MiB']):>10} | "
          f"{'sum of baselines':<21}{r['baseline_total_s']:>9.2f}{'':>10}{_ratio(r['ratio_end_to_end']):>10}")
    print(f"  (steps add up to {r['steps_total_s']:.2f} s; warm-up before the run, not counted: {r['warmup_s']:.1f} s)")
    if r.get("workers_peak_MiB"):
        print(f"  ({len(r['workers_peak_MiB'])} worker processes, peaks {', '.join(f'{p:,.0f}' for p in r['workers_peak_MiB'])}"
              f" MiB; with this process {_n(r['peak_with_workers_MiB'])} MiB; per-step peaks are this process's)")


def _n(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if isinstance(value, (int, float)) else str(value)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x" if value < 100 else f"{value:,.0f}x"


# --- capacity and goals ----------------------------------------------------------------------------


def capacity(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per feed: seconds and peak at each size, the cost per million rows, and a straight-line fit
    (fixed + per-million) when there are two sizes or more; per step, seconds per million rows."""
    out: dict[str, Any] = {}
    records = [r for r in records if not r.get("parallel_rerun")]  # the same size again on a process pool
    for feed in dict.fromkeys(r["feed"] for r in records):
        mine = sorted((r for r in records if r["feed"] == feed), key=lambda r: r["rows"])
        points = [{"rows": r["rows"], "seconds": r["end_to_end_s"], "peak_MiB": r["peak_MiB"],
                   "s_per_million": round(r["end_to_end_s"] / (r["rows"] / 1e6), 2) if r["rows"] else None}
                  for r in mine]
        entry: dict[str, Any] = {"points": points}
        largest = mine[-1]
        entry["step_s_per_million"] = {name: round(s["seconds"] / (largest["rows"] / 1e6), 3)
                                       for name, s in largest["steps"].items()}
        if len({p["rows"] for p in points}) >= 2:
            entry["seconds_fit"] = _fit([p["rows"] / 1e6 for p in points], [p["seconds"] for p in points])
            peaks = [p["peak_MiB"] for p in points]
            if all(p is not None for p in peaks):
                entry["peak_MiB_fit"] = _fit([p["rows"] / 1e6 for p in points], peaks)
        out[feed] = entry
    return out


def _fit(x: list[float], y: list[float]) -> dict[str, float]:
    """Least squares y = fixed + per_million * x (x in millions of rows)."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sxx if sxx else 0.0
    return {"fixed": round(my - slope * mx, 2), "per_million": round(slope, 3)}


def print_capacity(cap: dict[str, Any]) -> None:
    print("capacity: how seconds and peak memory grow with rows")
    print(f"  {'feed':<28}{'rows':>12}{'seconds':>10}{'s per M':>9}{'peak MiB':>10}")
    for feed, entry in cap.items():
        for p in entry["points"]:
            print(f"  {feed:<28}{p['rows']:>12,}{p['seconds']:>10.1f}{_n(p['s_per_million']):>9}{_n(p['peak_MiB']):>10}")
        if "seconds_fit" in entry:
            s = entry["seconds_fit"]
            line = f"    fit: seconds = {s['fixed']:.1f} + {s['per_million']:.2f} per million rows"
            if "peak_MiB_fit" in entry:
                m = entry["peak_MiB_fit"]
                line += f"; peak MiB = {m['fixed']:.0f} + {m['per_million']:.1f} per million rows"
            print(line)
        steps = ", ".join(f"{k} {v:.2f}" for k, v in entry["step_s_per_million"].items())
        print(f"    seconds per million rows by step (largest run): {steps}")


def goals(records: list[dict[str, Any]], night: dict[str, Any] | None, *, quick: bool = False) -> list[dict[str, Any]]:
    """The three goals as measured figure, limit, ratio to the limit and PASS/FAIL (never asserted)."""
    out: list[dict[str, Any]] = []
    every = sorted((r for r in records if r["feed"] == DEATHS), key=lambda r: r["rows"])
    deaths = [r for r in every if not r.get("parallel_rerun")]
    one_m = next((r for r in deaths if r["rows"] == 1_000_000), deaths[0] if quick and deaths else None)
    if one_m is not None:
        for r in [one_m, *(r for r in every if r not in deaths and r["rows"] == one_m["rows"])]:
            if r.get("ratio_end_to_end") is not None:
                out.append(_goal(f"{rows_label(r['rows'])}-row feed end to end <= {GOAL_RATIO:g} x the sum of its "
                                 f"baselines ({r.get('runner') or 'local'})", r["ratio_end_to_end"], GOAL_RATIO, "x",
                                 r["rows"]))
    for r in records:  # every step of every feed, one process (a pool's rerun is for the record)
        if r.get("parallel_rerun") or (r.get("runner") or "local") != "local":
            continue
        for step, ratio in (r.get("ratios") or {}).items():
            which = "checks" if step == "normalise+validate" else step
            what = (r.get("baselines") or {}).get(which, {}).get("what") or "its baseline"
            if ratio is not None:
                out.append(_goal(f"{step} of {r['feed']} ({rows_label(r['rows'])}) <= {GOAL_STEP_RATIO:g} x {what}",
                                 ratio, GOAL_STEP_RATIO, "x", r["rows"]))
    ten_m = next((r for r in deaths if r["rows"] == 10_000_000), deaths[-1] if quick and deaths else None)
    if ten_m is not None and ten_m.get("peak_MiB") is not None:  # the child's whole peak, warm-up included
        out.append(_goal(f"peak memory of the {rows_label(ten_m['rows'])}-row feed <= {GOAL_PEAK_BYTES / 1e9:g} GB",
                         round(ten_m["peak_MiB"] * MIB / 1e9, 2), GOAL_PEAK_BYTES / 1e9, "GB", ten_m["rows"]))
    if night is not None and night.get("wall_s") is not None:
        label = "quick night" if quick else "city-scale night of six feeds"
        out.append(_goal(f"{label} <= {GOAL_NIGHT_S / 60:g} minutes", round(night["wall_s"] / 60, 2),
                         GOAL_NIGHT_S / 60, "min", night.get("rows")))
    return out


def _goal(name: str, measured: float, limit: float, unit: str, rows: int | None) -> dict[str, Any]:
    return {"goal": name, "measured": measured, "limit": limit, "unit": unit, "rows": rows,
            "of_limit": round(measured / limit, 2) if limit else None, "pass": bool(measured <= limit)}


def print_goals(found: list[dict[str, Any]]) -> None:
    print("goals (measured / limit):")
    for g in found:
        verdict = "PASS" if g["pass"] else "FAIL"
        ratio = "" if g.get("of_limit") is None else f"= {g['of_limit']:.2f}"
        print(f"  {g['goal']:<66} {g['measured']:>7g} {g['unit']:<3} / {g['limit']:g} {g['unit']:<3} {ratio:<6} {verdict}")


# --- the runs -------------------------------------------------------------------------------------------


def _keys(tmp: Path) -> Path:
    from fundx.crypto.pki import init_keys

    return init_keys(tmp / "pki").dir


def _now_iso() -> str:
    from fundx.core.timeutil import SHANGHAI

    return datetime.now(SHANGHAI).isoformat(timespec="seconds")


def run_feeds(sizes: tuple[int, ...] = DEFAULT_SIZES, bills: int | None = DEFAULT_BILLS, *, quick: bool = False,
              chunk_rows: int | None = None, runner: str | None = None, seed: int | None = None,
              verbose: bool = True) -> dict[str, Any]:
    """Generate (or find) the data, then measure each feed and size; the record of bench's "feeds" section."""
    began = time.perf_counter()
    datasets: list[tuple[str, scale_data.Dataset]] = []
    generation_began = time.perf_counter()
    for rows in sizes:
        datasets.append((DEATHS, scale_data.ensure("deaths", rows, seed=seed, quiet=not verbose)))
    if bills:
        datasets.append((BILLS, scale_data.ensure("bills", bills, seed=seed, quiet=not verbose)))
    generation = {f"{d.kind}-{d.rows}": _generation(d) for _, d in datasets}
    generation_s = time.perf_counter() - generation_began
    if verbose:
        _print_generation(generation)
    result: dict[str, Any] = {"quick": quick, "generation": generation, "generation_s": round(generation_s, 2)}
    records: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fundx-feeds-bench-") as tmp_name:
        tmp = Path(tmp_name)
        keys_dir = _keys(tmp)
        end = _now_iso()
        for feed, dataset in datasets:
            try:
                records.append(measure(feed, dataset, tmp=tmp, keys_dir=keys_dir, end=end, chunk_rows=chunk_rows,
                                       runner=runner, verbose=verbose))
            except (RuntimeError, subprocess.TimeoutExpired) as exc:  # one feed failing keeps the others' figures
                failed.append({"feed": feed, "rows": dataset.rows, "error": str(exc)[-1500:]})
                if verbose:
                    print(f"{feed}, {dataset.rows:,} rows: FAILED — {_last_line(str(exc))}")
        # The smallest death feed again on a pool of worker processes (FUNDX_TASK_RUNNER=processes:N, one per
        # core): chunks checked and encoded in parallel, against the same baselines.
        pool = parallel_runner() if runner is None else None
        first = next((r for r in records if r["feed"] == DEATHS), None)
        if pool and first is not None:
            dataset = next(d for f, d in datasets if f == DEATHS and d.rows == first["rows"])
            try:
                again = measure(DEATHS, dataset, tmp=tmp, keys_dir=keys_dir, end=end, chunk_rows=chunk_rows,
                                runner=pool, verbose=verbose, baselines=first["raw_baselines"])
                records.append({**again, "parallel_rerun": True})
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                failed.append({"feed": DEATHS, "rows": dataset.rows, "runner": pool, "error": str(exc)[-1500:]})
                if verbose:
                    print(f"{DEATHS}, {dataset.rows:,} rows, runner {pool}: FAILED — {_last_line(str(exc))}")
    for r in records:
        r.pop("raw_baselines", None)
    result["runs"] = records
    result["failed"] = failed
    result["capacity"] = capacity(records)
    result["goals"] = goals(records, None, quick=quick)
    result["measured_s"] = round(time.perf_counter() - began - generation_s, 1)
    if verbose:
        print_capacity(result["capacity"])
    return result


def parallel_runner() -> str | None:
    """``processes:N`` with one worker per core (at most 4), or None on a machine of one core."""
    cores = os.cpu_count() or 1
    return f"processes:{min(cores, 4)}" if cores >= 2 else None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _generation(d: scale_data.Dataset) -> dict[str, Any]:
    return {"rows": d.rows, "cached": d.cached, "generated_s": d.generated_s, "bytes": d.bytes, "files": d.files,
            "chunks": d.chunks, "max_chunk_rows": d.max_chunk_rows,
            "generation_peak_MiB": _mib(d.generation_peak_bytes), "path": d.path}


def _print_generation(generation: dict[str, Any]) -> None:
    for name, g in generation.items():
        how = "cached" if g["cached"] else "made now"
        peak = f", peak {g['generation_peak_MiB']:,.0f} MiB" if g["generation_peak_MiB"] else ""
        print(f"  data {name}: {how} (generation took {g['generated_s']:.0f} s in {g['chunks']} chunks of at most "
              f"{g['max_chunk_rows']:,} rows{peak}; {g['bytes'] / 1e6:,.0f} MB)")


def run_night(sizes: dict[str, int] | None = None, *, quick: bool = False, chunk_rows: int | None = None,
              runner: str | None = None, seed: int | None = None, verbose: bool = True) -> dict[str, Any]:
    """The night's six feeds through the nightly flow against the sandbox agencies; its wall time."""
    from sandbox.city import DEFAULT_SEED

    sizes = dict(sizes or (QUICK_NIGHT if quick else scale_data.CITY_NIGHT))
    seed = DEFAULT_SEED if seed is None else seed
    began = time.perf_counter()
    frames = scale_data.ensure("night", sizes=sizes, seed=seed, quiet=not verbose)
    bills = scale_data.ensure("bills", sizes[BILLS], seed=seed, quiet=not verbose)
    generation = {"night-frames": _generation(frames), f"bills-{bills.rows}": _generation(bills)}
    if verbose:
        print(f"night: {', '.join(f'{f} {rows_label(n)}' for f, n in sizes.items())}")
        _print_generation(generation)
    result: dict[str, Any] = {"quick": quick, "sizes": sizes, "rows": sum(sizes.values()), "generation": generation}
    with tempfile.TemporaryDirectory(prefix="fundx-night-bench-") as tmp_name:
        tmp = Path(tmp_name)
        keys_dir = _keys(tmp)
        spec = {"mode": "sandbox", "seed": seed, "home": str(tmp / "agencies"),
                "frames": {f: str(Path(frames.path) / f"{f}.parquet") for f in scale_data.NIGHT_FRAMES},
                "override": {"FUNDX_MEDICAL_INSURANCE_DB_URL": bills.url}}
        with Agencies(spec, clean_env(tmp / "sandbox", keys_dir, None), tmp / "sandbox.log") as agencies:
            result["sandbox_start_s"] = round(agencies.seconds, 1)
            env = {**clean_env(tmp / "night", keys_dir, chunk_rows, runner), **agencies.env}
            try:
                night = child({"mode": "night", "feeds": list(scale_data.NIGHT_FEEDS), "end": _now_iso()}, env)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                result["failed"] = str(exc)[-1500:]
                if verbose:
                    print(f"night: FAILED — {_last_line(str(exc))}")
                return result
    result.update({k: night[k] for k in ("wall_s", "warmup_s", "error", "feeds", "chunk_rows", "runner")})
    result["wall_s"] = round(night["wall_s"], 2)
    result["peak_MiB"] = _mib(night.get("peak_bytes"))
    result["pulled"] = sum(f["rows"] for f in night["feeds"])
    result["goals"] = goals([], result, quick=quick)
    result["total_s"] = round(time.perf_counter() - began, 1)
    if verbose:
        print_night(result)
    return result


class Agencies:
    """The sandbox agencies serving the night's frames, in a child process of their own."""

    def __init__(self, spec: dict, env: dict[str, str], log: Path, argv: list[str] | None = None) -> None:
        self.spec, self.base_env, self.log = spec, env, log
        #: the child's command line (default: bench.feedrun's sandbox mode)
        self.argv = argv or [sys.executable, "-m", "bench.feedrun", json.dumps(spec)]
        self.env: dict[str, str] = {}
        self.seconds = 0.0
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Agencies:
        self._log = self.log.open("w")
        self.proc = subprocess.Popen(self.argv, cwd=ROOT,
                                     env=self.base_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(READY):
                ready = json.loads(line[len(READY):])
                self.env, self.seconds = ready["env"], ready["seconds"]
                return self
        self.__exit__()
        raise RuntimeError(f"the sandbox agencies did not start:\n{self.log.read_text()[-3000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        self._log.close()


def print_night(r: dict[str, Any]) -> None:
    streamed = [f["feed"] for f in r["feeds"] if f.get("streamed")]
    how = f"streamed as configured: {', '.join(streamed) or 'none'}; runner {r['runner']}"
    print(f"night: {r['pulled']:,} rows in {r['wall_s']:.1f} s ({how}; Prefect's server started first in "
          f"{r['warmup_s']:.1f} s, agencies in {r['sandbox_start_s']:.1f} s); peak {r['peak_MiB']:,.0f} MiB"
          + (f"; ended {r['error']}" if r["error"] else ""))
    print(f"  {'feed':<30}{'outcome':<10}{'rows':>12}{'seconds':>10}{'of which pull':>15}  streamed")
    for f in r["feeds"]:
        print(f"  {f['feed']:<30}{f['outcome'] + (' ' + f['error_type'] if f['error_type'] else ''):<10}"
              f"{f['rows']:>12,}{(f['seconds'] or 0):>10.1f}{(f['pull_s'] or 0):>15.1f}  "
              f"{'yes' if f.get('streamed') else 'no'}")


# --- the record as the tables of docs/capacity.md ------------------------------------------------------


def markdown(section: dict[str, Any]) -> str:
    """The "feeds" section of a bench record as the Markdown tables of docs/capacity.md."""
    out: list[str] = []
    for r in section.get("runs", []):
        runner = "" if (r.get("runner") or "local") == "local" else f", runner {r['runner']}"
        out += [f"### {r['feed']}, {r['rows']:,} rows ({r['transport']}{runner})", "",
                "| step | seconds | rows/s | peak MiB | baseline | seconds | peak MiB | ratio |",
                "|---|---:|---:|---:|---|---:|---:|---:|"]
        for name in STEPS:
            s = r["steps"].get(name)
            if s is None:
                continue
            cells = [name, f"{s['seconds']:.2f}", _n(s["rows_per_s"]), _n(s["peak_MiB"])]
            which = BASELINE_OF.get(name)
            if which and name != "validate":
                b = r["baselines"][which]
                label = b["what"] + (" (normalise + validate)" if which == "checks" else "")
                ratio = r["ratios"]["normalise+validate" if which == "checks" else name]
                cells += [label, f"{b['seconds']:.2f}", _n(b["peak_MiB"]), _ratio(ratio)]
            else:
                cells += ["", "", "", ""]
            out.append("| " + " | ".join(cells) + " |")
        out.append(f"| **end to end** | {r['end_to_end_s']:.2f} | {_n(r['end_to_end_rows_per_s'])} | "
                   f"{_n(r['peak_MiB'])} | sum of baselines | {r['baseline_total_s']:.2f} | | "
                   f"{_ratio(r['ratio_end_to_end'])} |")
        out.append("")
    night = section.get("night")
    if night and night.get("feeds"):
        out += ["### The night", "", "| feed | rows | seconds | of which pull | streamed |", "|---|---:|---:|---:|---|"]
        for f in night["feeds"]:
            out.append(f"| {f['feed']} | {f['rows']:,} | {f['seconds']:.1f} | {f['pull_s']:.1f} | "
                       f"{'yes' if f.get('streamed') else 'no'} |")
        out += [f"| **the night** | {night['pulled']:,} | **{night['wall_s']:.1f}** | | |", ""]
    if section.get("capacity"):
        out += ["### Growth", "", "| feed | rows | seconds | s per million rows | peak MiB |", "|---|---:|---:|---:|---:|"]
        for feed, entry in section["capacity"].items():
            for p in entry["points"]:
                out.append(f"| {feed} | {p['rows']:,} | {p['seconds']:.1f} | {_n(p['s_per_million'])} | "
                           f"{_n(p['peak_MiB'])} |")
        out.append("")
    if section.get("goals"):
        out += ["| goal | measured | limit | verdict |", "|---|---:|---:|---|"]
        for g in section["goals"]:
            out.append(f"| {g['goal']} | {g['measured']:g} {g['unit']} | {g['limit']:g} {g['unit']} | "
                       f"{'PASS' if g['pass'] else 'FAIL'} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.feeds_bench",
                                     description="print a bench record's feeds section as Markdown tables")
    parser.add_argument("record", type=Path, help="bench/results/bench-<when>.json")
    args = parser.parse_args()
    print(markdown(json.loads(args.record.read_text(encoding="utf-8")).get("feeds", {})))
