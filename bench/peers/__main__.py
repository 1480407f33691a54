"""`make bench-peers`: fundx next to datacontract-cli, pandera-polars and dlt (bench/peers/__init__.py says what).

    python -m bench.peers [--rows 1M] [--quick] [--repeats 3] [--only check|pull] [--out bench/results]

``--quick`` (50k rows, one repeat) is a smoke test of the harness: its figures are not comparable. Prints a
table of seconds and ratios with each goal's PASS/FAIL, and writes ``bench-peers-<when>.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.peers import peers_python, peers_ready

#: (job, peer, where its seconds are, goal: peer/fundx must be above this, or at least it with "ge")
GOALS = (
    ("contract check, whole process", "datacontract-cli", ("check", "whole_process", "datacontract-cli"), 1.0, "gt"),
    ("contract check, warm (read + check)", "datacontract-cli", ("check", "warm", "datacontract-cli"), 1.0, "gt"),
    ("contract check, warm (read + check)", "pandera-polars", ("check", "warm", "pandera-polars"), 0.5, "ge"),
    ("REST pull, cursor paging, to Parquet", "dlt", ("pull", None, "dlt"), 1.0, "gt"),
)


def _rows(text: str) -> int:
    from bench.feeds_bench import parse_rows

    try:
        return parse_rows(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a row count such as 1M or 200k: {text!r}") from None


def goals(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal with both times, the ratio peer/fundx and PASS/FAIL."""
    out = []
    for job, peer, (section, kind, key), floor, how in GOALS:
        if section not in report:
            continue
        seconds = report[section]["seconds"] if kind is None else report[section][kind]["seconds"]
        ratio = seconds[key] / seconds["fundx"] if seconds["fundx"] else None
        ok = ratio is not None and (ratio > floor if how == "gt" else ratio >= floor)
        goal = f"peer/fundx {'>' if how == 'gt' else '>='} {floor:g}"
        out.append({"job": job, "peer": peer, "peer_s": seconds[key], "fundx_s": seconds["fundx"],
                    "ratio": round(ratio, 2) if ratio is not None else None, "goal": goal,
                    "status": "PASS" if ok else "FAIL"})
    return out


def print_table(report: dict[str, Any]) -> None:
    print(f"\n{'job':38} {'peer':17} {'peer s':>8} {'fundx s':>8} {'peer/fundx':>10}  goal")
    for g in report["goals"]:
        print(f"{g['job']:38} {g['peer']:17} {g['peer_s']:8.2f} {g['fundx_s']:8.2f} {g['ratio']:10.2f}  "
              f"{g['goal']}: {g['status']}")
    if "pull" in report:
        whole = report["pull"]["whole_process_seconds"]
        print(f"REST pull, whole processes (imports included): dlt {whole['dlt']:.2f} s, fundx {whole['fundx']:.2f} s")
    if "check" in report:
        bad = [(line["rule"], peer.removesuffix("_same")) for line in report["check"]["verification"]
               for peer, same in line.items() if peer.endswith("_same") and not same]
        print("same failing counts per standard check as fundx: "
              + ("yes, every peer" if not bad else "NO: " + ", ".join(f"{p} on {r}" for r, p in bad)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=_rows, default=None, help="death rows checked and records pulled (1M)")
    parser.add_argument("--quick", action="store_true", help="50k rows, one repeat: a smoke test of the harness")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each measurement, median taken (3)")
    parser.add_argument("--only", choices=("check", "pull"), help="one comparison only")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="folder for the JSON record")
    args = parser.parse_args(argv)
    if not peers_ready():
        print(f"no side environment at {peers_python()}: `make bench-peers` builds it (bench/peers/requirements.txt)",
              file=sys.stderr)
        return 2
    rows = args.rows or (50_000 if args.quick else 1_000_000)
    repeats = args.repeats or (1 if args.quick else 3)
    began = time.perf_counter()
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "quick": args.quick, "rows": rows, "repeats": repeats,
    }
    if args.only in (None, "check"):
        from bench.peers import checks
        from bench.peers.data import FEED, make_data

        print(f"peers, contract check: {rows:,} {FEED} rows, the contract's standard checks (required, unique, "
              "pattern, length, enum)")
        data = make_data(rows)
        with tempfile.TemporaryDirectory(prefix="fundx-bench-peers-") as work:
            report["check"] = {"data": str(data), **checks.run(data, Path(work), repeats)}
    if args.only in (None, "pull"):
        from bench.peers import pull

        print(f"peers, REST pull: {rows:,} civil-affairs records, cursor paging, into Parquet")
        report["pull"] = pull.run(rows, repeats)
    report["goals"] = goals(report)
    print_table(report)
    report["seconds"] = round(time.perf_counter() - began, 1)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench-peers-{report['when'].replace(':', '')}.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"bench-peers took {report['seconds'] / 60:.1f} min; written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
