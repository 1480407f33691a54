"""The matching benchmark at a tiny size: it runs end to end (each case in its own process), reports every
figure and finds exactly the suspects it planted. No timing is asserted: machines are noisy."""

from __future__ import annotations

import pyarrow as pa

from bench import matching_bench
from matching import rules


def test_inputs_have_the_store_shapes():
    tables, planted = matching_bench.make_inputs(5_000, 600, 120)
    assert (tables["roll"].num_rows, tables["deaths"].num_rows, tables["custody"].num_rows) == (5_000, 600, 120)
    for name, table in tables.items():
        declared = [c.strip().split()[0] for c in rules.EMPTY[name].split(",")]
        assert set(declared) <= set(table.column_names), name
        assert table.schema.field("person").type == pa.binary()
        assert {len(v) for v in table.column("person").to_pylist()} == {16}
    assert set(tables["deaths"].column("feed").to_pylist()) == {f for f, _ in matching_bench.DEATH_FEEDS}
    assert set(tables["custody"].column("custody_status").to_pylist()) == set(matching_bench.CUSTODY)
    assert all(n > 0 for n in planted.values())


def test_tiny_run_reports_every_figure_and_finds_the_planted_suspects():
    result = matching_bench.run(20_000, 2_000, 400, repeats=1, verbose=False)
    for key in ("plain_seconds", "matching_seconds", "ratio", "plain_peak_MiB", "matching_peak_MiB",
                "all_rules_seconds", "all_rules_peak_MiB", "suspects", "planted", "goal_met", "person_type"):
        assert key in result, key
    assert result["person_type"] == "BLOB"
    assert result["plain_rows"] > 0 and result["matching_peak_MiB"] > 0
    assert result["suspects"] == result["planted"] and result["found_planted"]
    assert all(n > 0 for n in result["suspects"].values())
    assert {"paid_after_death", "paid_in_custody", "shared_account", "duplicate_receipt"} <= set(result["all_rules_suspects"])


def test_ledger_bench_runs_end_to_end_and_finds_the_planted_suspects():
    from bench import ledger_bench

    tables, planted = ledger_bench.make_inputs(60_000, 6_000)
    payments = tables["payments"]
    declared = [c.strip().split()[0] for c in rules.EMPTY["payments"].split(",")]
    assert set(declared) <= set(payments.column_names)
    parts = ledger_bench.parts(tables)["payments"]
    assert sum(parts) == payments.num_rows and min(parts) > 0
    # one row per key in each part, as the store promises
    keys = payments["record_key"].to_pylist()
    assert len(set(keys[:parts[0]])) == parts[0] and len(set(keys[parts[0]:])) == parts[1]
    result = ledger_bench.run(60_000, 6_000, repeats=1, verbose=False)
    assert result["found_planted"] and result["suspects"] == planted["paid_after_death"] > 0
    for key in ("plain_seconds", "matching_seconds", "ratio", "goal_met", "ledger_rows", "matching_peak_MiB"):
        assert key in result, key
