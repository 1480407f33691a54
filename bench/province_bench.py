"""A province-scale night: every feed of a synthetic province through the nightly flow, then the matching stage.

The province is the sandbox's own city (``sandbox.city.generate_city``) at ``PROVINCE_PEOPLE`` x ``scale``
people: the social-insurance office's five feeds for them (benefit roll, payment ledger over
:data:`sandbox.city.office_feeds.LEDGER_MONTHS` months, contributions, employer subsidies, account changes),
a year of their settled bills (about 1.5 a person: 15M at full scale), the deaths three sources
report, the prisoners' list (xlsx drop), the business registry, the hospitals' death notifications
and the tax bureau's wage declarations — with the generator's planted truths, so that the matching
stage's suspects can be scored (``matching.evaluate``). The city is generated once in a child process
and cached under the bench data folder (``bench/data/province-<people>-s<seed>-<version>/``: one Parquet
file per feed, ``truth.json``) with its generation time and peak.

The night, in a child process (``python -m bench.province_bench --child-night``), as a deployment runs it:
the sandbox agencies (another child) serve the frames on loopback; ``flows.exchange.nightly_exchange``
over every feed (end 2026-11-23 00:00 Asia/Shanghai), then ``flows.matching.matching_night`` for
that night. Wall time from the exchange's call to the matching's end (Prefect's ephemeral server
started before the clock). Memory: the night process's VmHWM for the exchange and, reset, for the
matching; and the process tree (the night process and every descendant of it — Prefect's server, a
process pool's workers) sampled from /proc every half second by the parent: the largest sum of
resident memory seen, and the sum of each process's own peak (VmHWM) — the bound the goal uses. The
sandbox agencies are the agencies' side, not the exchange's: not counted.

"Same in kind" (:func:`compare`): a small night of the same generator (``--reference-scale``, 1/100 by
default) through the same path; for each feed rows pulled = the rows its agency holds for the night
(every row generated, but for the drop files delivered after it: :func:`held_for_night`), valid + quarantined =
pulled, quarantined = the rows the generator planted invalid among them (at both sizes), the quarantined share within
1 percentage point of the small night's (where both have 1,000 rows or more); for each rule the
suspects' precision and recall equal to the small night's (and 1.0). Goals printed as PASS/FAIL and
recorded: the night <= 10 minutes, peak <= 2 GB, same in kind.

    python -m bench --only province [--scale 0.01] [--reference-scale 0.001] [--quick]
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import scale_data

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20
PROVINCE_PEOPLE = 10_000_000
GOAL_NIGHT_S = 600.0
GOAL_PEAK_BYTES = 2_000_000_000
#: the quarantined share of a feed may differ from the small night's by this much (percentage points)
SHARE_TOLERANCE = 1.0
END = "2026-11-23T00:00:00+08:00"
NIGHT = "2026-11-23"
RESULT = "BENCH-RESULT "
TRUTH = "truth.json"
INITIAL_WATERMARK = "2000-01-01T00:00:00+08:00"
#: a night of fewer people is mostly fixed costs: no estimate for the whole province from it
MIN_PEOPLE_TO_EXTRAPOLATE = 50_000


# --- the data: a city of the province's size, cached ---------------------------------------------------


def people_of(scale: float) -> int:
    return max(2_000, int(round(PROVINCE_PEOPLE * scale)))


def _folder(people: int, seed: int) -> Path:
    return scale_data._ignored(scale_data.data_dir()) / f"province-{people}-s{seed}-{scale_data.version()}"


def build(people: int, seed: int, folder: Path) -> dict[str, Any]:
    """Generate the city and write its frames (Parquet, one per feed) and truths; rows per feed."""
    from sandbox.city import generate_city

    shutil.rmtree(folder, ignore_errors=True)
    (folder / "frames").mkdir(parents=True)
    began = time.perf_counter()
    city = generate_city(people, seed=seed)
    generated = time.perf_counter() - began
    rows: dict[str, int] = {}
    for feed, frame in {**city.feeds, **city.office}.items():
        frame.to_parquet(folder / "frames" / f"{feed}.parquet", index=False)
        rows[feed] = len(frame)
    city.roll.to_parquet(folder / "roll.parquet", index=False)
    city.write_truth(folder / TRUTH)
    return {"people": people, "seed": seed, "as_of": city.as_of.isoformat(), "rows": rows,
            "office": sorted(city.office), "generate_s": round(generated, 2),
            "written_s": round(time.perf_counter() - began, 2)}


def ensure(people: int, seed: int, quiet: bool = False) -> tuple[Path, dict[str, Any]]:
    """The cached city of ``people``, made now in a child process (its time and peak recorded) if missing."""
    folder = _folder(people, seed)
    manifest = folder / scale_data.MANIFEST
    if manifest.is_file():
        found = json.loads(manifest.read_text(encoding="utf-8"))
        return folder, {**found, "cached": True}
    if not quiet:
        print(f"  generating a province of {people:,} people (cached under {folder.parent}) ...", flush=True)
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench.province_bench", "--child-build",
                           json.dumps({"people": people, "seed": seed, "folder": str(folder)})],
                          cwd=ROOT, capture_output=True, text=True)
    result = _result(done, "generating the province")
    made = {**result["made"], "generation_peak_MiB": _mib(result["peak_bytes"]),
            "generation_wall_s": round(time.perf_counter() - began, 1)}
    manifest.write_text(json.dumps(made, indent=1), encoding="utf-8")
    return folder, {**made, "cached": False}


def _result(done: subprocess.CompletedProcess, what: str) -> dict[str, Any]:
    for line in reversed(done.stdout.splitlines()):
        if done.returncode == 0 and line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
    raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


def _mib(n: float | int | None) -> float | None:
    return None if n is None else round(n / MIB, 1)


# --- memory of a process tree ------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc/<pid>/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except (OSError, ValueError):
                pass
    return found


def _kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


class TreeMemory:
    """Samples a process tree every ``every`` seconds: the largest summed RSS seen, each process's own VmHWM."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid, self.every = pid, every
        self.max_sum_rss = 0
        self.hwm: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = _descendants(self.pid)
            self.max_sum_rss = max(self.max_sum_rss, sum(_kib(p, "VmRSS") for p in pids))
            for p in pids:
                self.hwm[p] = max(self.hwm.get(p, 0), _kib(p, "VmHWM"))
            self._stop.wait(self.every)

    def record(self) -> dict[str, Any]:
        others = sorted((v for p, v in self.hwm.items() if p != self.pid), reverse=True)
        return {"tree_max_sum_rss_MiB": _mib(self.max_sum_rss), "tree_sum_of_peaks_MiB": _mib(sum(self.hwm.values())),
                "descendants_peaks_MiB": [_mib(v) for v in others], "processes_seen": len(self.hwm)}


# --- one night --------------------------------------------------------------------------------------


def night(scale: float, *, seed: int | None = None, runner: str | None = None, verbose: bool = True) -> dict[str, Any]:
    """Generate (or find) the province at ``scale`` and run its night; the record."""
    from bench.feeds_bench import Agencies, _keys, clean_env
    from sandbox.city import DEFAULT_SEED

    seed = DEFAULT_SEED if seed is None else seed
    people = people_of(scale)
    folder, made = ensure(people, seed, quiet=not verbose)
    record: dict[str, Any] = {"scale": scale, "people": people, "generated": made}
    if verbose:
        how = "cached" if made.get("cached") else "made now"
        print(f"province x{scale:g}: {people:,} people, {sum(made['rows'].values()):,} rows over "
              f"{len(made['rows'])} feeds ({how}: generated in {made['generate_s']:.0f} s, peak "
              f"{made.get('generation_peak_MiB') or 0:,.0f} MiB)")
    frames = {p.stem: str(p) for p in sorted((folder / "frames").glob("*.parquet"))}
    with tempfile.TemporaryDirectory(prefix="fundx-province-bench-") as tmp_name:
        tmp = Path(tmp_name)
        keys_dir = _keys(tmp)
        spec = {"seed": seed, "as_of": made["as_of"], "home": str(tmp / "agencies"), "frames": frames,
                "people": people, "office": made["office"], "roll": str(folder / "roll.parquet")}
        agencies_env = {**clean_env(tmp / "sandbox", keys_dir, None)}
        with Agencies(spec, agencies_env, tmp / "sandbox.log", argv=[
                sys.executable, "-m", "bench.province_bench", "--child-sandbox", json.dumps(spec)]) as agencies:
            record["sandbox_start_s"] = round(agencies.seconds, 1)
            # the province's first night takes every feed's whole history (the office's roll has entries last
            # written before the default initial watermark, 2020): every generated row is in the window, but for
            # the files an agency delivers after the night (held_for_night)
            env = {**clean_env(tmp / "night", keys_dir, None, runner), **agencies.env, "FUNDX_STEWARD": "bench",
                   "FUNDX_INITIAL_WATERMARK": INITIAL_WATERMARK,
                   # the matching's DuckDB limit, as the caller set it (else the setting's default)
                   **{k: os.environ[k] for k in ("FUNDX_MATCHING_MEMORY",) if k in os.environ}}
            child = {"truths": str(folder / TRUTH), "end": END, "night": NIGHT}
            proc = subprocess.Popen([sys.executable, "-m", "bench.province_bench", "--child-night", json.dumps(child)],
                                    cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            with TreeMemory(proc.pid) as tree:
                out, err = proc.communicate(timeout=6 * 3600)
            done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
            ran = _result(done, f"the province night x{scale:g}")
    record.update(ran)
    record["memory"] = {**tree.record(), "night_process_peak_MiB": _mib(ran["peak_bytes"])}
    record["expected"] = expected(made["rows"], json.loads((folder / TRUTH).read_text(encoding="utf-8")),
                                  held_for_night(frames, made["as_of"]))
    if verbose:
        print_night(record)
    return record


def held_for_night(frames: dict[str, str], as_of: str) -> dict[str, set[str]]:
    """Per file-drop feed, the keys of the rows its agency has delivered by the night's end (:data:`END`): the
    files' own plan (sandbox.drops). The religious-affairs bureau files a row by its month of registration, and a
    row whose date it cannot read (or a typo past as-of) in the as-of month's file, delivered on the 1st of the
    month after: after this night (two such rows at 1,000,000 people). The other feeds hold every row by then."""
    from datetime import date, datetime

    import pandas as pd

    from sandbox.drops import FileDrop
    from sandbox.faults import FaultState
    from sandbox.simulated import simulated_feeds

    held: dict[str, set[str]] = {}
    end = datetime.fromisoformat(END)
    with tempfile.TemporaryDirectory(prefix="fundx-province-plan-") as tmp:
        for feed, sim in simulated_feeds().items():
            if feed not in frames or sim.transport != "filedrop":
                continue
            frame = pd.read_parquet(frames[feed])
            # planned as the agencies plan them (now: the clock, a delivery is never later than it)
            drop = (sim.entry.drop or FileDrop)(Path(tmp) / feed, frame, date.fromisoformat(as_of),
                                                FaultState(sim.agency), feed=feed)
            rows = drop.expected(datetime.fromisoformat(INITIAL_WATERMARK), end)
            held[feed] = set(rows[drop.schema.key].astype(str))
    return held


def expected(rows: dict[str, int], truths: dict[str, Any], held: dict[str, set[str]] | None = None) -> dict[str, Any]:
    """Per feed: rows generated, rows the agency holds for the night (``held``: the keys of a feed whose agency
    delivers some rows later; else every row) and rows planted invalid among them (the truths' ``invalid``)."""
    held = held or {}
    invalid: dict[str, int] = {}
    for item in truths.get("invalid", []):
        keys = held.get(item["feed"])
        if keys is None or str(item.get("key")) in keys:
            invalid[item["feed"]] = invalid.get(item["feed"], 0) + 1
    return {f: {"generated": n, "rows": len(held[f]) if f in held else n, "planted_invalid": invalid.get(f, 0)}
            for f, n in sorted(rows.items())}


def print_night(r: dict[str, Any]) -> None:
    m = r["memory"]
    print(f"  night: exchange {r['exchange_s']:.1f} s + matching {r['matching_s']:.1f} s = {r['wall_s']:.1f} s "
          f"(Prefect's server first, {r['warmup_s']:.1f} s; runner {r['runner']}); night process peak "
          f"{m['night_process_peak_MiB']:,.0f} MiB (exchange {_mib(r['exchange_peak_bytes']):,.0f}, matching "
          f"{_mib(r['matching_peak_bytes']):,.0f}); with its descendants: sum of peaks {m['tree_sum_of_peaks_MiB']:,.0f} "
          f"MiB, largest sum of RSS seen {m['tree_max_sum_rss_MiB']:,.0f} MiB" + (f"; ended {r['error']}" if r["error"] else ""))
    print(f"  {'feed':<40}{'outcome':<9}{'held':>11}{'pulled':>11}{'valid':>11}{'quarant.':>9}{'planted':>8}"
          f"{'seconds':>9}")
    for f in r["feeds"]:
        e = r["expected"].get(f["feed"], {})
        print(f"  {f['feed']:<40}{f['outcome']:<9}{e.get('rows', 0):>11,}{f['rows']:>11,}{f['valid']:>11,}"
              f"{f['quarantined']:>9,}{e.get('planted_invalid', 0):>8,}{f['seconds']:>9.1f}")
    print(f"  {'rule':<28}{'planted':>9}{'found':>9}{'precision':>10}{'recall':>8}{'look-alikes flagged':>21}")
    for s in r["scores"]:
        print(f"  {s['rule']:<28}{s['planted']:>9,}{s['found']:>9,}{_p(s['precision']):>10}{_p(s['recall']):>8}"
              f"{s['lookalikes_flagged']:>14} of {s['lookalikes']}")


def _p(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


# --- same in kind --------------------------------------------------------------------------------------


def _share(q: int, rows: int) -> float:
    return 100.0 * q / rows if rows else 0.0


def compare(big: dict[str, Any], small: dict[str, Any]) -> dict[str, Any]:
    """Per feed and per rule, whether the large night's results are the small night's in kind (module docstring)."""
    feeds, problems = [], []
    small_feeds = {f["feed"]: f for f in small["feeds"]}
    for f in big["feeds"]:
        name, s = f["feed"], small_feeds.get(f["feed"])
        generated = big["expected"].get(name, {}).get("rows")
        share, small_share = _share(f["quarantined"], f["rows"]), (
            _share(s["quarantined"], s["rows"]) if s else None)
        row = {"feed": name, "generated": generated, "pulled": f["rows"], "valid": f["valid"],
               "quarantined": f["quarantined"], "share_pct": round(share, 3),
               "small_share_pct": None if small_share is None else round(small_share, 3),
               "pulled_all": f["rows"] == generated, "adds_up": f["valid"] + f["quarantined"] == f["rows"],
               "as_planted": f["quarantined"] == big["expected"].get(name, {}).get("planted_invalid"),
               "share_ok": small_share is not None and abs(share - small_share) <= SHARE_TOLERANCE}
        if s is not None:
            row["small_pulled_all"] = s["rows"] == small["expected"].get(name, {}).get("rows")
            row["small_as_planted"] = s["quarantined"] == small["expected"].get(name, {}).get("planted_invalid")
        feeds.append(row)
        # the share is a check only where the feed has rows enough for 1 % to be more than a row or two
        if min(f["rows"], s["rows"] if s else 0) < 1_000:
            row["share_ok"] = None
        for check in ("pulled_all", "adds_up", "as_planted", "share_ok", "small_pulled_all", "small_as_planted"):
            if row.get(check) is False:
                problems.append(f"{name}: {check}")
    rules = []
    small_scores = {s["rule"]: s for s in small["scores"]}
    for s in big["scores"]:
        t = small_scores.get(s["rule"], {})
        same = (s["precision"], s["recall"]) == (t.get("precision"), t.get("recall"))
        perfect = s["precision"] in (None, 1.0) and s["recall"] in (None, 1.0) and not s["lookalikes_flagged"]
        rules.append({"rule": s["rule"], "planted": s["planted"], "found": s["found"], "precision": s["precision"],
                      "recall": s["recall"], "small_precision": t.get("precision"), "small_recall": t.get("recall"),
                      "same": same, "perfect": perfect})
        if not same:
            problems.append(f"{s['rule']}: precision/recall {s['precision']}/{s['recall']} against the small "
                            f"night's {t.get('precision')}/{t.get('recall')}")
        if not perfect:
            problems.append(f"{s['rule']}: not every planted case found, or a wrong one flagged")
    return {"feeds": feeds, "rules": rules, "problems": problems, "same": not problems}


def print_compare(c: dict[str, Any], big: float, small: float) -> None:
    print(f"same in kind: x{big:g} against x{small:g}")
    print(f"  {'feed':<40}{'held':>11}{'pulled':>11}{'all':>5}{'adds up':>8}{'quarantined':>12}{'as planted':>11}"
          f"{'%':>7}{'small %':>9}")
    for f in c["feeds"]:
        was = "-" if f["small_share_pct"] is None else f"{f['small_share_pct']:.2f}"
        print(f"  {f['feed']:<40}{f['generated'] or 0:>11,}{f['pulled']:>11,}{_yn(f['pulled_all']):>5}"
              f"{_yn(f['adds_up']):>8}{f['quarantined']:>12,}{_yn(f['as_planted']):>11}{f['share_pct']:>7.2f}{was:>9}")
    print(f"  {'rule':<28}{'planted':>9}{'found':>9}{'P/R':>11}{'small P/R':>11}")
    for r in c["rules"]:
        print(f"  {r['rule']:<28}{r['planted']:>9,}{r['found']:>9,}{_p(r['precision']) + '/' + _p(r['recall']):>11}"
              f"{_p(r['small_precision']) + '/' + _p(r['small_recall']):>11}")
    print("  " + ("no row lost or added, every rule as in the small night" if c["same"] else
                  "DIFFERENT: " + "; ".join(c["problems"][:10])))


def _yn(flag: bool) -> str:
    return "yes" if flag else "NO"


# --- extrapolation to the full province ------------------------------------------------------------------


def extrapolate(small: dict[str, Any], big: dict[str, Any], to_scale: float = 1.0) -> dict[str, Any]:
    """Each feed's seconds, the matching's seconds and each peak, linear in the people from two nights
    (fixed cost + cost per person, fitted through both) and taken to ``to_scale``; an estimate, not a run."""
    def line(a: float, b: float) -> float:
        x0, x1 = small["people"], big["people"]
        slope = max(0.0, (b - a) / (x1 - x0)) if x1 != x0 else 0.0  # noise never makes a cost shrink
        return round(b + slope * (people_of(to_scale) - x1), 1)

    small_feeds = {f["feed"]: f for f in small["feeds"]}
    feeds = {f["feed"]: line(small_feeds[f["feed"]]["seconds"], f["seconds"]) for f in big["feeds"]
             if f["feed"] in small_feeds}
    rows = {f["feed"]: int(round(f["rows"] * to_scale / big["scale"])) for f in big["feeds"]}
    out: dict[str, Any] = {"scale": to_scale, "people": people_of(to_scale), "from_people": [small["people"], big["people"]],
           "feeds_s": feeds, "rows": rows,
           "exchange_s": line(small["exchange_s"], big["exchange_s"]),
           "matching_s": line(small["matching_s"], big["matching_s"]),
           "exchange_peak_MiB": line(_mib(small["exchange_peak_bytes"]) or 0, _mib(big["exchange_peak_bytes"]) or 0),
           "matching_peak_MiB": line(_mib(small["matching_peak_bytes"]) or 0, _mib(big["matching_peak_bytes"]) or 0),
           "tree_sum_of_peaks_MiB": line(small["memory"]["tree_sum_of_peaks_MiB"], big["memory"]["tree_sum_of_peaks_MiB"]),
           "generate_s": line(small["generated"]["generate_s"], big["generated"]["generate_s"])}
    out["night_s"] = round(out["exchange_s"] + out["matching_s"], 1)
    return out


def print_extrapolation(e: dict[str, Any]) -> None:
    print(f"estimate for x{e['scale']:g} ({e['people']:,} people), linear through the nights of "
          f"{e['from_people'][0]:,} and {e['from_people'][1]:,} people — an extrapolation, not a run:")
    slow = sorted(e["feeds_s"].items(), key=lambda kv: -kv[1])[:5]
    print(f"  exchange {e['exchange_s']:,.0f} s (slowest feeds: "
          + ", ".join(f"{f} {v:,.0f} s for {e['rows'][f]:,} rows" for f, v in slow) + ")")
    print(f"  matching {e['matching_s']:,.0f} s; night {e['night_s']:,.0f} s = {e['night_s'] / 60:,.1f} min "
          f"(goal {GOAL_NIGHT_S / 60:g})")
    print(f"  peak: exchange {e['exchange_peak_MiB']:,.0f} MiB, matching {e['matching_peak_MiB']:,.0f} MiB, "
          f"night process + descendants {e['tree_sum_of_peaks_MiB']:,.0f} MiB (goal {GOAL_PEAK_BYTES / MIB:,.0f})")
    print(f"  generating the province (not the night): {e['generate_s']:,.0f} s, linear; about 8.7 KB a person in memory: 85 GB")


# --- the bench -----------------------------------------------------------------------------------------


def goals(big: dict[str, Any], same: dict[str, Any] | None) -> list[dict[str, Any]]:
    from bench.feeds_bench import _goal

    label = "province night" if big["scale"] == 1 else f"province night x{big['scale']:g} (goal is for x1)"
    peak = big["memory"]["tree_sum_of_peaks_MiB"] * MIB / 1e9
    found = [_goal(f"{label} <= {GOAL_NIGHT_S / 60:g} minutes", round(big["wall_s"] / 60, 2), GOAL_NIGHT_S / 60,
                   "min", big["pulled"]),
             _goal(f"{label}: peak memory (night process + descendants) <= 2 GB", round(peak, 2),
                   GOAL_PEAK_BYTES / 1e9, "GB", big["pulled"])]
    if same is not None:
        found.append({"goal": f"{label}: same results in kind as the small night (differences)",
                      "measured": len(same["problems"]), "limit": 0, "unit": "", "rows": big["pulled"],
                      "of_limit": None, "pass": same["same"]})
    return found


def run(scale: float = 1.0, reference: float | None = 0.01, *, seed: int | None = None, runner: str | None = None,
        verbose: bool = True) -> dict[str, Any]:
    """The province night at ``scale`` and, for the comparison, at ``reference`` x scale; bench's "province" section."""
    began = time.perf_counter()
    result: dict[str, Any] = {"scale": scale, "reference_scale": reference, "province_people": PROVINCE_PEOPLE}
    big = night(scale, seed=seed, runner=runner, verbose=verbose)
    result["night"] = big
    same = None
    if reference:
        small = night(reference, seed=seed, runner=runner, verbose=verbose)
        result["reference"] = small
        same = compare(big, small)
        result["same_in_kind"] = same
        if verbose:
            print_compare(same, scale, reference)
        if scale < 1 and big["people"] >= MIN_PEOPLE_TO_EXTRAPOLATE:
            result["estimate"] = extrapolate(small, big)
            if verbose:
                print_extrapolation(result["estimate"])
        elif scale < 1 and verbose:
            print(f"no estimate for the whole province: below {MIN_PEOPLE_TO_EXTRAPOLATE:,} people the fixed costs "
                  f"(imports, Prefect, a chunk's checks) are most of the time: run --scale 0.01 or more")
    result["goals"] = goals(big, same)
    result["total_s"] = round(time.perf_counter() - began, 1)
    if verbose:
        from bench.feeds_bench import print_goals

        print_goals(result["goals"])
    return result


# --- child processes ------------------------------------------------------------------------------------


def _child_build(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.feedrun import vm_hwm

    made = build(int(spec["people"]), int(spec["seed"]), Path(spec["folder"]))
    return {"made": made, "peak_bytes": vm_hwm()}


def _child_night(spec: dict[str, Any]) -> dict[str, Any]:
    """The nightly flow over every feed, then the matching night; scored against the truths."""
    from datetime import date

    from bench.feedrun import _chunk_rows, _night_feeds, reset_hwm, vm_hwm
    from fundx.core.settings import reload_settings

    reload_settings()
    began = time.perf_counter()
    from prefect import flow

    @flow(name="bench-warm-up", persist_result=False)
    def warm_up() -> int:
        return 1

    warm_up()  # Prefect's ephemeral server: a deployment has its server running already
    from flows.exchange import nightly_exchange
    from flows.matching import matching_night
    from fundx.core.errors import NightFailed
    from fundx.crypto.keys import KeyStore
    from fundx.ledger import Ledger
    from matching import evaluate, orders

    warmup = time.perf_counter() - began
    marks = MemoryMarks()
    for name in ("fundx.matching", "fundx.stage"):
        logging.getLogger(name).addHandler(marks)
        logging.getLogger(name).setLevel(logging.INFO)
    began = time.perf_counter()
    error = None
    outcomes: dict[str, Any] = {}
    try:
        outcomes = {o.feed: o for o in nightly_exchange(end=spec["end"])}
    except NightFailed as exc:
        error = type(exc).__name__
    exchange_s = time.perf_counter() - began
    exchange_peak = vm_hwm()
    reset_hwm()
    began = marks.began = time.perf_counter()
    summary = matching_night(night=date.fromisoformat(spec["night"]))
    matching_s = time.perf_counter() - began
    matching_peak = vm_hwm()
    ledger = Ledger.from_settings()
    feeds = _night_feeds(ledger)
    for f in feeds:
        o = outcomes.get(f["feed"])
        f["valid"], f["quarantined"] = (o.valid, o.quarantined) if o is not None else (0, f["rows"])
    truths = json.loads(Path(spec["truths"]).read_text(encoding="utf-8"))
    made = orders.orders(ledger, night=date.fromisoformat(spec["night"]))
    scores = evaluate.score([(o.rule, o.subject) for o in made], truths, KeyStore().match_key())
    return {"wall_s": round(exchange_s + matching_s, 2), "exchange_s": round(exchange_s, 2),
            "matching_s": round(matching_s, 2), "warmup_s": round(warmup, 2), "error": error,
            "exchange_peak_bytes": exchange_peak, "matching_peak_bytes": matching_peak,
            "peak_bytes": max(exchange_peak, matching_peak), "feeds": feeds, "pulled": sum(f["rows"] for f in feeds),
            "loaded": summary.get("loaded"), "orders_new": summary.get("orders_new"),
            "scores": [{"rule": s.rule, "planted": s.planted, "found": s.found, "true_positive": s.true_positive,
                        "precision": s.precision, "recall": s.recall, "lookalikes": s.lookalikes,
                        "lookalikes_flagged": s.lookalikes_flagged} for s in scores],
            "matching_marks": marks.marks,
            "chunk_rows": _chunk_rows(), "runner": os.environ.get("FUNDX_TASK_RUNNER") or "local"}


class MemoryMarks(logging.Handler):
    """The matching's own log lines (counts, feeds and batch ids only) with the process's memory at each:
    where in the matching night the memory goes (receive, each batch loaded, the rules)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.began = time.perf_counter()
        self.marks: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        from bench.feedrun import vm_hwm, vm_rss

        self.marks.append({"s": round(time.perf_counter() - self.began, 2), "logger": record.name,
                           "what": record.getMessage()[:160], "rss_MiB": _mib(vm_rss()), "hwm_MiB": _mib(vm_hwm())})


def _child_sandbox(spec: dict[str, Any]) -> None:
    """The sandbox agencies serving the cached province until stdin closes; their endpoints printed first."""
    from datetime import date

    import pandas as pd

    from bench.feedrun import READY
    from sandbox.agencies import Sandbox
    from sandbox.city import DEFAULT_AS_OF, City

    began = time.perf_counter()
    frames = {name: pd.read_parquet(path) for name, path in spec["frames"].items()}
    office = {f: frames.pop(f) for f in spec["office"]}
    city = City(seed=int(spec["seed"]), people=int(spec["people"]), as_of=date.fromisoformat(
        spec.get("as_of") or DEFAULT_AS_OF.isoformat()), roll=pd.read_parquet(spec["roll"]), feeds=frames,
        truths={}, office=office)
    with Sandbox(Path(spec["home"]), city=city) as sandbox:
        print(READY + json.dumps({"env": dict(sandbox.env), "seconds": time.perf_counter() - began}), flush=True)
        sys.stdin.read()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "--child-build":
        print(RESULT + json.dumps(_child_build(json.loads(args[1]))), flush=True)
        return 0
    if len(args) == 2 and args[0] == "--child-night":
        result = _child_night(json.loads(args[1]))
        print(RESULT + json.dumps(result), flush=True)
        return 0
    if len(args) == 2 and args[0] == "--child-sandbox":
        _child_sandbox(json.loads(args[1]))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
