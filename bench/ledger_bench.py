"""Paid after death from the payment ledger: ``ledger`` payment months against the deaths, next to a plain DuckDB join.

The matching stage finds money paid after a death in the office's monthly payment ledger (the store's
``payments`` table, one row per entry and month paid: docs/matching.md). This measures that rule at a
province's scale: 10,000,000 ledger months (about 830,000 entries paid for the twelve months the
office keeps online) against 1,000,000 death rows over three feeds.

The inputs are those of bench/matching_bench.py (the same roll, deaths and custody, made by the same
code), with the roll sized so that its entries' last twelve paid months make ``ledger`` rows; the
ledger is then expanded from the roll: an entry is paid every month from the later of its start and the
ledger's first month through its paid-through month, into its account, on the 15th. The store is as a
night finds it: the earlier months compacted by the last purge (one row per key), then this month's
payment run, a batch loaded since (``Inputs.parts``), whose keys replace theirs. The planted
suspects are matching_bench's: 3 % of the dead on the roll still paid; an entry stopped at a death was
paid through the month of death and not after it, so matching must find exactly the planted ones.

Cases, each in a Python process of its own on inputs read into its memory (not timed), best of
``repeats``, alternating:
- plain: DuckDB joining payments with deaths on ``person``, every joined row materialised to Arrow
  (nothing deduplicated, consolidated, filtered or aggregated);
- matching: ``rules.prepare`` (latest row per key of every table, the death consolidation) and the
  ``paid_after_death`` rule, materialised to Arrow.
Goal (issue 19): matching within 2 x the plain join measured in the same run.

    python -m bench.ledger_bench [--ledger N] [--deaths N] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bench import matching_bench as mb

GOAL_RATIO = 2.0
#: months of payments the office keeps online (sandbox/city/office_feeds.LEDGER_MONTHS)
LEDGER_MONTHS = 12
TABLES = ("roll", "deaths", "custody", "payments")
RULE = "paid_after_death"
PLAIN = ("SELECT p.*, d.feed, d.record_key AS death_key, d.death_date, d.received_at AS death_received_at "
         "FROM payments_in p JOIN deaths_in d ON p.person = d.person")
#: ledger rows per roll entry on these inputs (stopped and suspended entries paid fewer months): to size the roll
ROWS_PER_ENTRY = 8.5


def payments_of(roll: pa.Table, seed: int = 20261123) -> pa.Table:
    """The payment ledger of a roll (matching_bench's shapes): one row per entry and month paid in the last
    LEDGER_MONTHS months up to its paid-through month, in the store's ``payments`` columns."""
    first = mb.CURRENT - LEDGER_MONTHS + 1
    start = roll.column("start_month").to_numpy()
    paid = roll.column("paid_through").to_numpy()
    lo = np.maximum(start, first)
    count = np.clip(paid - lo + 1, 0, None).astype(np.int64)
    entry = np.repeat(np.arange(roll.num_rows), count)
    ends = np.cumsum(count)
    month = (lo[entry] + np.arange(len(entry)) - np.repeat(ends - count, count)).astype(np.int32)
    # the store as the night finds it: the months before this one compacted (one row per key), then this
    # month's payment run, the batch loaded since
    order = np.argsort(month == mb.CURRENT, kind="stable")
    entry, month = entry[order], month[order]
    take = pa.array(entry)
    rng = np.random.default_rng(seed)
    # paid on the 15th of the month, 0-3 days later on a holiday; received the night after the payment run
    paid_on = (month.astype(np.int64) - 1970 * 12).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    paid_on += 14 + rng.integers(0, 4, len(entry))
    batch, received = mb._batches(np.zeros(len(entry), np.int64), paid_on + 1, ("social_insurance.payments",))
    return pa.table({
        "record_key": mb._keys("PM", order + 1),
        "entry_key": roll.column("record_key").take(take),
        "person": roll.column("person").take(take), "id_masked": roll.column("id_masked").take(take),
        "area": roll.column("area").take(take), "benefit_type": roll.column("benefit_type").take(take),
        "month": pa.array(month, pa.int32()), "amount": roll.column("monthly_amount").take(take),
        "account": roll.column("account").take(take), "account_masked": roll.column("account_masked").take(take),
        "paid_on": mb._dates(paid_on), "batch": batch.dictionary_encode(), "received_at": received,
    })


def parts(tables: dict[str, pa.Table]) -> dict[str, list[int]]:
    """The parts of each table as the night finds them (matching.rules.Inputs.parts, each one row per key):
    the payments before this month's run, compacted, then the run, a batch loaded since (pessimistic: a purge
    after the run's night would have compacted it too); the roll compacted by last night's purge. The deaths
    and the custody rows, which carry records delivered again, are deduplicated whole."""
    payments = tables["payments"]
    run = pc.sum(pc.equal(payments["month"], mb.CURRENT)).as_py()
    return {"payments": [payments.num_rows - run, run], "roll": [tables["roll"].num_rows]}


def make_inputs(ledger: int, deaths: int, seed: int = 20261123) -> tuple[dict[str, pa.Table], dict[str, int]]:
    """The roll, deaths, custody and payment ledger, and the suspects planted (paid after death)."""
    roll = max(2_000, round(ledger / ROWS_PER_ENTRY))
    tables, planted = mb.make_inputs(roll, deaths, max(100, deaths // 50), seed=seed)
    tables["payments"] = payments_of(tables["roll"], seed)
    return tables, {RULE: planted[RULE]}


def run(ledger: int = 10_000_000, deaths: int = 1_000_000, *, repeats: int = 3, verbose: bool = True) -> dict[str, Any]:
    """Time the plain join and the rule (best of ``repeats``, alternating, each in its own process)."""
    with tempfile.TemporaryDirectory(prefix="fundx-ledger-bench-") as tmp:
        made = _child({"mode": "make", "folder": tmp, "ledger": ledger, "deaths": deaths})
        plain: list[dict[str, Any]] = []
        matching: list[dict[str, Any]] = []
        for _ in range(repeats):
            plain.append(_child({"mode": "plain", "folder": tmp}))
            matching.append(_child({"mode": "matching", "folder": tmp}))
    best_plain = min(plain, key=lambda r: r["seconds"])
    best = min(matching, key=lambda r: r["seconds"])
    ratio = best["seconds"] / best_plain["seconds"]
    result = {
        "ledger_rows": made["rows"]["payments"], "roll_rows": made["rows"]["roll"], "death_rows": made["rows"]["deaths"],
        "inputs_MiB": round(made["inputs_MiB"], 1), "make_inputs_seconds": round(made["seconds"], 1),
        "repeats": repeats, "plain_seconds": round(best_plain["seconds"], 3),
        "plain_runs": [round(r["seconds"], 3) for r in plain], "plain_rows": best_plain["rows"],
        "plain_peak_MiB": round(max(r["peak_MiB"] for r in plain)),
        "matching_seconds": round(best["seconds"], 3), "matching_runs": [round(r["seconds"], 3) for r in matching],
        "matching_peak_MiB": round(max(r["peak_MiB"] for r in matching)), "ratio": round(ratio, 2),
        "suspects": best["suspects"], "planted": made["planted"],
        "found_planted": best["suspects"] == made["planted"][RULE], "goal_ratio": GOAL_RATIO,
        "goal_met": ratio <= GOAL_RATIO,
    }
    if verbose:
        _print(result)
    return result


def _print(r: dict[str, Any]) -> None:
    runs = lambda xs: ", ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    print(f"  inputs: {r['ledger_rows']:,} ledger months of {r['roll_rows']:,} entries, {r['death_rows']:,} death "
          f"rows; {r['inputs_MiB']:,.0f} MiB in Arrow (made in {r['make_inputs_seconds']:.0f} s, not timed); best of "
          f"{r['repeats']}, every run in its own process")
    print(f"  plain join (payments x deaths on person -> Arrow, {r['plain_rows']:,} rows): {r['plain_seconds']:.2f} s "
          f"(runs {runs(r['plain_runs'])}), peak {r['plain_peak_MiB']:,} MiB")
    found = "all found" if r["found_planted"] else "NOT THE PLANTED ONES"
    print(f"  matching (prepare + {RULE} from the ledger -> Arrow): {r['matching_seconds']:.2f} s "
          f"(runs {runs(r['matching_runs'])}), peak {r['matching_peak_MiB']:,} MiB; suspects {r['suspects']:,} "
          f"(planted {r['planted'][RULE]:,}: {found})")
    print(f"  goal <= {GOAL_RATIO} x the plain join: {r['ratio']:.2f} x {'PASS' if r['goal_met'] else 'FAIL'}")


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "bench.ledger_bench", "--child", json.dumps(spec)], cwd=mb.ROOT,
                          capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise RuntimeError(f"ledger bench child {spec['mode']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _make(spec: dict[str, Any]) -> dict[str, Any]:
    began = time.perf_counter()
    tables, planted = make_inputs(spec["ledger"], spec["deaths"])
    seconds = time.perf_counter() - began
    for name in TABLES:
        table = tables[name]
        with pa.OSFile(str(Path(spec["folder"]) / f"{name}.arrow"), "wb") as sink, \
                pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=1 << 20)
    return {"planted": planted, "seconds": seconds, "rows": {n: t.num_rows for n, t in tables.items()},
            "inputs_MiB": sum(t.nbytes for t in tables.values()) / mb.MIB}


def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    import duckdb

    from matching import rules

    folder = Path(spec["folder"])
    tables = {}
    for name in TABLES:
        with pa.OSFile(str(folder / f"{name}.arrow"), "rb") as source:
            tables[name] = pa.ipc.open_file(source).read_all()
    out: dict[str, Any] = {}
    con = duckdb.connect()
    began, cpu = time.perf_counter(), mb._cpu()
    if spec["mode"] == "plain":
        for name in ("payments", "deaths"):
            con.register(f"{name}_in", tables[name])
        out["rows"] = con.sql(PLAIN).to_arrow_table().num_rows
    else:
        params = rules.parse_params(None)
        rules.prepare(con, rules.Inputs(dict(tables), parts(tables)), params)
        out["suspects"] = rules.run_rules(con, params, mb.NIGHT, rules=[RULE]).num_rows
    out["seconds"], out["cpu_seconds"] = time.perf_counter() - began, mb._cpu() - cpu
    con.close()
    return {**out, "peak_MiB": mb._status("VmHWM") / mb.MIB}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", type=int, default=10_000_000, help="payment-ledger months (rows)")
    parser.add_argument("--deaths", type=int, default=1_000_000, help="death rows over the three feeds")
    parser.add_argument("--repeats", type=int, default=3, help="runs of plain and matching (the best counts)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(_make(spec) if spec["mode"] == "make" else _measure(spec)))
        return 0
    print(f"ledger: {args.ledger:,} payment-ledger months against {args.deaths:,} death rows")
    run(args.ledger, args.deaths, repeats=args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
