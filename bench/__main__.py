"""`make bench`: speed as ratios against baselines measured in the same run, also written as JSON.

    python -m bench [--rows N] [--only pull|validate|seal|matching] [--roll N] [--deaths N] [--prisoners N]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per feed for the pull and validate benchmarks")
    parser.add_argument("--only", choices=("pull", "validate", "seal", "matching"), help="run one benchmark only")
    parser.add_argument("--roll", type=int, default=10_000_000, help="benefit roll rows for the matching benchmark")
    parser.add_argument("--deaths", type=int, default=1_000_000, help="death rows (three feeds) for the matching benchmark")
    parser.add_argument("--prisoners", type=int, default=200_000, help="custody rows for the matching benchmark")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="folder for the JSON results")
    args = parser.parse_args(argv)

    report: dict = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
    }
    if args.only in (None, "pull"):
        from bench import pull_bench

        print(f"pull: {args.rows:,} rows per transport, time over pandas+pyarrow parsing the same bytes")
        report["pull"] = pull_bench.run(args.rows)
    if args.only in (None, "validate"):
        from bench import validate_bench

        print(f"validate: {args.rows:,} death rows, a third failing: contract check next to plain pandas doing the same checks")
        report["validate"] = validate_bench.run(args.rows)
    if args.only in (None, "seal"):
        from bench import seal_bench

        print("seal: MB/s and peak memory for a 64 MiB part and a 500 MB batch, next to AESGCM on the same bytes")
        report["seal"] = seal_bench.run()
    if args.only in (None, "matching"):
        from bench import matching_bench

        print(f"matching: {args.roll:,} roll rows, {args.deaths:,} death rows, {args.prisoners:,} custody rows: "
              f"death consolidation + two rules next to a plain DuckDB join of the same tables")
        report["matching"] = matching_bench.run(args.roll, args.deaths, args.prisoners)

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench-{report['when'].replace(':', '')}.json"
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
