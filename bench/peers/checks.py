"""The contract check side by side: datacontract-cli and fundx whole process, datacontract-cli, pandera-polars and
fundx warm, on bench/peers/data.py's Parquet file; and whether each peer finds the failures fundx finds."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.peers import ROOT, SIDE, peers_python
from bench.peers.data import FEED, TODAY, standard_rules, write_checks


def json_line(done: subprocess.CompletedProcess[str], what: str) -> dict[str, Any]:
    if done.returncode != 0:
        raise SystemExit(f"{what} failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _side(script: str, *args: str, timeout: float = 3600) -> dict[str, Any]:
    done = subprocess.run([str(peers_python()), str(SIDE / script), *args], capture_output=True, text=True,
                          timeout=timeout, env=child_env(), cwd=ROOT)
    return json_line(done, script)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child: the caller's less its virtual environment's marks, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    return {**env, **extra}


def whole_process(data: Path, contract: Path, work: Path, repeats: int) -> dict[str, Any]:
    """``datacontract test`` and ``fundx contract check`` on the same file, each a fresh process, taken in turns;
    median seconds and the counts each reported."""
    datacontract = peers_python().parent / "datacontract"
    fundx = Path(sys.executable).parent / "fundx"
    home = work / "fundx-home"
    times: dict[str, list[float]] = {"datacontract-cli": [], "fundx": []}
    fundx_report: dict[str, Any] = {}
    result = work / "datacontract-run.json"
    for _ in range(repeats):
        began = time.perf_counter()
        done = subprocess.run([str(datacontract), "test", str(contract), "--server", "local", "--output-format",
                               "json", "--output", str(result)], capture_output=True, text=True, env=child_env(),
                              cwd=work, timeout=3600)
        times["datacontract-cli"].append(time.perf_counter() - began)
        if done.returncode not in (0, 1) or not result.is_file():
            raise SystemExit(f"datacontract test failed (exit {done.returncode}): {done.stdout[-2000:]}")
        began = time.perf_counter()
        done = subprocess.run([str(fundx), "contract", "check", FEED, str(data), "--today", TODAY, "--json"],
                              capture_output=True, text=True, env=child_env(FUNDX_HOME=str(home)), cwd=work, timeout=3600)
        times["fundx"].append(time.perf_counter() - began)
        if done.returncode not in (0, 1):
            raise SystemExit(f"fundx contract check failed (exit {done.returncode}): {done.stderr[-2000:]}")
        fundx_report = json.loads(done.stdout)
    peer_counts = _side("datacontract_check.py", str(contract), "--counts", str(result))["counts"]
    return {"seconds": {k: _median(v) for k, v in times.items()}, "runs": times,
            "counts": {"datacontract-cli": peer_counts,
                       "fundx": {r["rule"]: r["failed"] for r in fundx_report["rules"]}},
            "fundx_rows": fundx_report["rows"], "fundx_quarantined": fundx_report["quarantined"]}


def warm(data: Path, contract: Path, checks: Path, repeats: int) -> dict[str, Any]:
    """Read + check in a warm process: datacontract-cli's Python API, pandera-polars, fundx without GX."""
    found = {
        "datacontract-cli": _side("datacontract_check.py", str(contract), "--repeats", str(repeats)),
        "pandera-polars": _side("pandera_check.py", str(checks), "--repeats", str(repeats)),
    }
    done = subprocess.run([sys.executable, "-m", "bench.peers.fundx_side", "warm", str(data), "--repeats",
                           str(repeats)], capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=3600)
    found["fundx"] = json_line(done, "fundx warm")
    if found["pandera-polars"].get("unmapped"):  # a failure of a check the spec did not ask for: the schema is wrong
        raise SystemExit(f"pandera reported failures of unknown checks: {found['pandera-polars']['unmapped']}")
    return {"seconds": {k: _median(v["seconds"]) for k, v in found.items()},
            "runs": {k: v["seconds"] for k, v in found.items()},
            "counts": {k: v["counts"] for k, v in found.items()},
            "versions": {k: " on ".join(filter(None, (v.get("version"), v.get("engine")))) for k, v in found.items()
                         if v.get("version")}}


def extra_copies(data: Path, column: str) -> int:
    """Rows beyond the first of each value that occurs more than once: what datacontract-cli's duplicate_count
    counts, where fundx and pandera count every row of such a value."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    values = pq.read_table(data, columns=[column]).column(0).drop_null()
    return len(values) - len(pc.unique(values))


def verify(data: Path, counts: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per standard rule: fundx's failing rows and each peer's, and whether they are the same failures. A
    unique rule is the same for datacontract-cli when its duplicate count equals the extra copies in the data
    and fundx's count equals the rows of the values that occur more than once."""
    fundx = counts["fundx"]
    rows = []
    for rule in standard_rules():
        rid = rule["rule"]
        line: dict[str, Any] = {"rule": rid, "kind": rule["kind"], "fundx": fundx.get(rid)}
        for peer in (p for p in counts if p != "fundx"):
            got = counts[peer].get(rid)
            line[peer] = got
            if rule["kind"] == "unique" and peer == "datacontract-cli":
                copies = extra_copies(data, rule["column"])
                line[f"{peer}_same"] = got == copies and (fundx.get(rid) == 0) == (copies == 0)
                line[f"{peer}_note"] = "counts the extra copies of a repeated value (fundx: every row of it)"
            else:
                line[f"{peer}_same"] = got == fundx.get(rid)
        rows.append(line)
    return rows


def run(data: Path, work: Path, repeats: int) -> dict[str, Any]:
    """Both comparisons of the contract check and the verification of the counts."""
    checks, contract = write_checks(data, work)
    print(f"  whole process, {repeats} fresh processes each: datacontract test / fundx contract check ...", flush=True)
    whole = whole_process(data, contract, work, repeats)
    print(f"  warm (read + check), median of {repeats} after a warm-up: datacontract-cli API, pandera-polars, "
          "fundx check(gx=False) ...", flush=True)
    warmed = warm(data, contract, checks, repeats)
    counts = {"fundx": warmed["counts"]["fundx"], "datacontract-cli": whole["counts"]["datacontract-cli"],
              "pandera-polars": warmed["counts"]["pandera-polars"]}
    if whole["counts"]["fundx"] != warmed["counts"]["fundx"]:
        raise SystemExit("fundx contract check and check(gx=False) found different failures: "
                         + json.dumps({"cli": whole["counts"]["fundx"], "warm": warmed["counts"]["fundx"]}))
    if warmed["counts"]["datacontract-cli"] != whole["counts"]["datacontract-cli"]:
        raise SystemExit("datacontract-cli's API and its command found different failures")
    return {"whole_process": whole, "warm": warmed, "verification": verify(data, counts)}


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)
