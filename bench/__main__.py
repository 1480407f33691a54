"""`make bench`: speed as ratios against baselines measured in the same run, also written as JSON.

    python -m bench [--only pull|validate|seal|matching|ledger|xlsx|feeds|night|province] [--quick]
                    [--rows N] [--roll N] [--deaths N] [--prisoners N]          (pull, validate, matching)
                    [--ledger N]                                                (ledger)
                    [--xlsx N]                                                  (xlsx)
                    [--sizes 1M,10M] [--bills 5M] [--chunk-rows N] [--runner R] [--seed S]   (feeds, night)
                    [--scale F] [--reference-scale F]                           (province)

``ledger`` measures paid-after-death over the office's payment ledger (10M months against 1M deaths,
bench/ledger_bench.py) next to a plain DuckDB join of the same tables. ``xlsx`` pulls justice's
prisoner workbooks next to pandas' calamine reader on the same sheets (bench/xlsx_bench.py). ``feeds`` runs whole feeds
through the streamed pipeline per step next to their baselines (bench/feeds_bench.py), ``night`` a
city-scale night of six feeds through the nightly flow; both print their goals as PASS/FAIL and go
into the JSON record's "feeds" section. ``province`` runs a province's night (10M people's office
feeds, their bills, deaths, prisoners, businesses; then the matching stage) and, for comparison, a
small one of the same generator (bench/province_bench.py; only with ``--only province``: the full size
takes hours to generate). ``--quick`` makes every benchmark small (a smoke test of the
harness, figures not comparable).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BENCHES = ("pull", "validate", "seal", "matching", "ledger", "xlsx", "feeds", "night", "province")


def _sizes(text: str) -> tuple[int, ...]:
    from bench.feeds_bench import parse_rows

    try:
        return tuple(parse_rows(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of row counts such as 1M,10M: {text!r}") from None


def _rows(text: str) -> int:
    from bench.feeds_bench import parse_rows

    try:
        return parse_rows(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a row count such as 5M or 100k: {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=BENCHES, help="run one benchmark only")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes everywhere (50k deaths, 100k bills, a tenth of a night): a smoke test")
    parser.add_argument("--rows", type=_rows, default=None, help="rows per feed for the pull and validate benchmarks (1M)")
    parser.add_argument("--roll", type=_rows, default=None, help="benefit roll rows for the matching benchmark (10M)")
    parser.add_argument("--deaths", type=_rows, default=None, help="death rows (three feeds) for the matching benchmark (1M)")
    parser.add_argument("--prisoners", type=_rows, default=None, help="custody rows for the matching benchmark (200k)")
    parser.add_argument("--ledger", type=_rows, default=None, help="payment-ledger months for the ledger benchmark (10M)")
    parser.add_argument("--xlsx", type=_rows, default=None, help="prisoners for the xlsx benchmark (100k)")
    parser.add_argument("--sizes", type=_sizes, default=None, help="death-feed sizes for the feeds benchmark (1M,10M)")
    parser.add_argument("--bills", type=_rows, default=None, help="bills for the feeds benchmark (5M; 0: none)")
    parser.add_argument("--chunk-rows", type=_rows, default=None,
                        help="FUNDX_CHUNK_ROWS for the streamed runs (default: the pipeline's own)")
    parser.add_argument("--runner", default=None,
                        help="FUNDX_TASK_RUNNER for the streamed runs and the night (default: local, in the process, "
                             "and the smallest death feed once more on processes:N, one worker per core)")
    parser.add_argument("--seed", type=int, default=None, help="generator seed for the feeds and night data")
    parser.add_argument("--scale", type=float, default=None,
                        help="province: the share of a 10M-people province to run (1; --quick: 0.001, against 0.0005)")
    parser.add_argument("--reference-scale", type=float, default=None,
                        help="province: the small night it is compared with (scale / 100, at least 0.0005; 0: none)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="folder for the JSON results")
    args = parser.parse_args(argv)
    quick = args.quick
    rows = args.rows or (50_000 if quick else 1_000_000)
    began = time.perf_counter()

    report: dict = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "quick": quick,
    }
    if args.only in (None, "pull"):
        from bench import pull_bench

        repeats = 1 if quick else 3
        print(f"pull: {rows:,} rows per transport, time over pandas+pyarrow parsing the same bytes; REST pulls next to "
              f"the plain client of the same API (best of {repeats}, goal <= {pull_bench.GOAL_RATIO:g} x)")
        report["pull"] = pull_bench.run(rows, repeats=repeats)
    if args.only in (None, "validate"):
        from bench import validate_bench

        print(f"validate: {rows:,} death rows, a third failing: contract check next to plain pandas doing the same checks")
        report["validate"] = validate_bench.run(rows)
    if args.only in (None, "seal"):
        from bench import seal_bench

        if quick:
            print("seal: MB/s and peak memory for a 16 MiB part and a 64 MiB batch (quick), next to AESGCM on the same bytes")
            report["seal"] = seal_bench.run((16 * 2**20,), batch=64 * 2**20, part=16 * 2**20, repeats=1)
        else:
            print("seal: MB/s and peak memory for a 64 MiB part and a 500 MB batch, next to AESGCM on the same bytes")
            report["seal"] = seal_bench.run()
    if args.only in (None, "matching"):
        from bench import matching_bench

        roll = args.roll or (200_000 if quick else 10_000_000)
        deaths = args.deaths or (20_000 if quick else 1_000_000)
        prisoners = args.prisoners or (4_000 if quick else 200_000)
        print(f"matching: {roll:,} roll rows, {deaths:,} death rows, {prisoners:,} custody rows: "
              f"death consolidation + two rules next to a plain DuckDB join of the same tables")
        report["matching"] = matching_bench.run(roll, deaths, prisoners)
    if args.only in (None, "ledger"):
        from bench import ledger_bench

        ledger = args.ledger or (300_000 if quick else 10_000_000)
        deaths = args.deaths or (30_000 if quick else 1_000_000)
        print(f"ledger: {ledger:,} payment-ledger months against {deaths:,} death rows: paid after death from the "
              f"ledger next to a plain DuckDB join of the same tables (goal <= {ledger_bench.GOAL_RATIO} x)")
        report["ledger"] = ledger_bench.run(ledger, deaths)
    if args.only in (None, "xlsx"):
        from bench import xlsx_bench

        prisoners = args.xlsx or (xlsx_bench.QUICK_PRISONERS if quick else xlsx_bench.DEFAULT_PRISONERS)
        print(f"xlsx: {prisoners:,} prisoners in justice's three xlsx snapshots: the pull next to pandas' calamine "
              f"reader on the same sheets (goal <= {xlsx_bench.GOAL_RATIO} x), openpyxl for the record")
        report["xlsx"] = xlsx_bench.run(prisoners)
    if args.only in (None, "feeds", "night"):
        report["feeds"] = _feeds(args, quick)

    if args.only == "province":  # never in a full `make bench`: hours to generate at full size
        from bench import province_bench

        scale = args.scale or (0.001 if quick else 1.0)
        reference = args.reference_scale if args.reference_scale is not None else max(scale / 100, 0.0005)
        print(f"province: a night of {province_bench.people_of(scale):,} people's feeds through the nightly flow, "
              f"then the matching stage" + (f"; compared with {province_bench.people_of(reference):,} people's"
                                           if reference else ""))
        report["province"] = province_bench.run(scale, reference or None, seed=args.seed, runner=args.runner)
    report["seconds"] = round(time.perf_counter() - began, 1)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench-{report['when'].replace(':', '')}.json"
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"bench took {report['seconds'] / 60:.1f} min; written: {path}")
    return 0


def _feeds(args: argparse.Namespace, quick: bool) -> dict:
    from bench import feeds_bench

    section: dict = {}
    if args.only in (None, "feeds"):
        sizes = args.sizes or (feeds_bench.QUICK_SIZES if quick else feeds_bench.DEFAULT_SIZES)
        bills = args.bills if args.bills is not None else (feeds_bench.QUICK_BILLS if quick else feeds_bench.DEFAULT_BILLS)
        print(f"feeds: {', '.join(f'{n:,}' for n in sizes)} death records (religious affairs' monthly drop)"
              + (f" and {bills:,} bills (medical insurance's database view)" if bills else "")
              + " through the streamed pipeline, per step, next to pyarrow.csv / read_sql, plain pandas checks and AESGCM")
        section.update(feeds_bench.run_feeds(sizes, bills or None, quick=quick, chunk_rows=args.chunk_rows,
                                             runner=args.runner, seed=args.seed))
    if args.only in (None, "night"):
        section["night"] = feeds_bench.run_night(quick=quick, chunk_rows=args.chunk_rows, runner=args.runner,
                                                 seed=args.seed)
    section["goals"] = [*section.get("goals", []), *section.get("night", {}).get("goals", [])]
    if section["goals"]:
        feeds_bench.print_goals(section["goals"])
    return section


if __name__ == "__main__":
    sys.exit(main())
