"""The xlsx benchmark's harness at a tiny size: the sandbox's justice drop pulled, the same sheets read by
calamine (and openpyxl), the goal kept as feeds_bench keeps goals. No timing is asserted: machines are noisy."""

from __future__ import annotations

import json

from bench import xlsx_bench


def test_the_xlsx_pull_and_its_baselines_read_the_same_drop(capsys):
    record = xlsx_bench.run(300, openpyxl=True)
    assert record["files"] == 3 and record["pulled"] == 300
    assert record["rows_read"] >= record["pulled"]  # three snapshots: a prisoner in several
    assert record["pull_s"] > 0 and record["baseline_s"] > 0 and record["openpyxl_s"] > 0
    # the ratio is of unrounded seconds; the record keeps them rounded to the millisecond, which at this size
    # moves their quotient by several per cent: the ratio must lie within what that rounding allows
    pull, base, half = record["pull_s"], record["baseline_s"], 0.0005
    assert (pull - half) / (base + half) - 0.005 <= record["ratio"] <= (pull + half) / max(base - half, 1e-9) + 0.005
    [goal] = record["goals"]
    assert goal["limit"] == 1.5 and goal["pass"] == (record["ratio"] <= 1.5)
    assert json.loads(json.dumps(record)) == record
    assert ("PASS" in capsys.readouterr().out) == goal["pass"]
