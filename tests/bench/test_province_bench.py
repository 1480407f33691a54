"""The province bench's judgement without running a night: same in kind, its goals, the estimate, the tree's memory."""

from __future__ import annotations

import copy
import subprocess
import sys
import time

from bench import province_bench as pb


def _night(people: int, scale: float, rows: int, quarantined: int, found: int, *, seconds: float = 10.0) -> dict:
    feeds = [{"feed": "medical_insurance.bills", "outcome": "pulled", "rows": rows, "valid": rows - quarantined,
              "quarantined": quarantined, "seconds": seconds},
             {"feed": "social_insurance.payments", "outcome": "pulled", "rows": 5 * rows, "valid": 5 * rows,
              "quarantined": 0, "seconds": 2 * seconds}]
    return {"scale": scale, "people": people, "pulled": 6 * rows, "feeds": feeds,
            "expected": {"medical_insurance.bills": {"rows": rows, "planted_invalid": quarantined},
                         "social_insurance.payments": {"rows": 5 * rows, "planted_invalid": 0}},
            "scores": [{"rule": "bill_after_death", "planted": found, "found": found, "precision": 1.0, "recall": 1.0,
                        "lookalikes": 2, "lookalikes_flagged": 0}],
            "wall_s": 3 * seconds, "exchange_s": 2 * seconds, "matching_s": seconds,
            "exchange_peak_bytes": 600 * pb.MIB, "matching_peak_bytes": (800 + people // 1000) * pb.MIB,
            "memory": {"tree_sum_of_peaks_MiB": 1100.0 + people / 1000},
            "generated": {"generate_s": people / 10_000}}


def test_a_night_like_the_small_one_is_the_same_in_kind():
    big, small = _night(200_000, 0.02, 300_000, 3_000, 50), _night(100_000, 0.01, 150_000, 1_500, 25)
    same = pb.compare(big, small)
    assert same["same"] and not same["problems"]
    assert [f["share_pct"] for f in same["feeds"]] == [1.0, 0.0]


def test_a_row_lost_a_quarantine_not_planted_or_a_case_missed_is_named():
    small = _night(100_000, 0.01, 150_000, 1_500, 25)
    lost = _night(200_000, 0.02, 300_000, 3_000, 50)
    lost["feeds"][0]["rows"] -= 1
    lost["feeds"][0]["valid"] -= 1
    assert pb.compare(lost, small)["problems"] == ["medical_insurance.bills: pulled_all"]
    extra = _night(200_000, 0.02, 300_000, 3_000, 50)
    extra["feeds"][1]["quarantined"], extra["feeds"][1]["valid"] = 10, extra["feeds"][1]["valid"] - 10
    assert pb.compare(extra, small)["problems"] == ["social_insurance.payments: as_planted"]
    missed = copy.deepcopy(_night(200_000, 0.02, 300_000, 3_000, 50))
    missed["scores"][0].update(found=49, recall=0.98)
    problems = pb.compare(missed, small)["problems"]
    assert len(problems) == 2 and all(p.startswith("bill_after_death: ") for p in problems)


def test_goals_and_the_estimate_for_the_whole_province():
    big, small = _night(200_000, 0.02, 300_000, 3_000, 50), _night(100_000, 0.01, 150_000, 1_500, 25)
    goals = pb.goals(big, pb.compare(big, small))
    assert [g["pass"] for g in goals] == [True, True, True]  # 0.5 min, 1,300 MiB, the same in kind
    assert goals[1]["measured"] == round(1300.0 * pb.MIB / 1e9, 2) and "x0.02 (goal is for x1)" in goals[0]["goal"]
    big["memory"]["tree_sum_of_peaks_MiB"] = 2000.0  # 2.10 GB: over
    assert [g["pass"] for g in pb.goals(big, None)] == [True, False]
    estimate = pb.extrapolate(small, big)
    assert estimate["people"] == 10_000_000
    assert estimate["matching_peak_MiB"] == 800 + 10_000  # linear in people through both nights
    assert estimate["rows"]["social_insurance.payments"] == 5 * 300_000 * 50


def test_the_tree_is_sampled_with_its_children():
    child = ("import subprocess, sys, time; "
             "p = subprocess.Popen([sys.executable, '-c', 'b = bytearray(80 * 2**20); import time; time.sleep(1.5)']); "
             "time.sleep(1.8); p.wait()")
    proc = subprocess.Popen([sys.executable, "-c", child])
    with pb.TreeMemory(proc.pid, every=0.1) as tree:
        proc.wait()
        time.sleep(0.1)
    record = tree.record()
    assert record["processes_seen"] >= 2
    assert max(record["descendants_peaks_MiB"]) >= 80
    assert record["tree_sum_of_peaks_MiB"] >= 80
