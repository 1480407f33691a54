"""Great Expectations confirms every batch's split (contracts.evidence): a split GX does not confirm holds the
batch back whole with nothing lost, large batches are confirmed on their failing rows and a sample of the
rest, and Data Docs carry the whole batch's counts."""

from __future__ import annotations

import subprocess
import sys
from datetime import date

import numpy as np
import pandas as pd
import pytest

from contracts import engine, evidence
from contracts.validate import check
from sandbox.city import generate_feed

FEED = "police.deaths"
TODAY = date(2026, 11, 1)


def _rows(n: int, seed: int = 3) -> pd.DataFrame:
    return pd.concat(list(generate_feed(FEED, n, seed=seed)), ignore_index=True)


def test_a_split_gx_does_not_confirm_holds_the_batch_back_and_loses_nothing(monkeypatch) -> None:
    frame = _rows(300)
    frame["gender"] = frame["gender"].astype(object)
    frame.loc[7, "gender"] = "unknown"
    planted = check(FEED, frame, today=TODAY).counts["gender.allowed_values"]  # ours and the generator's
    monkeypatch.setitem(engine.TO_MASK, "allowed_values",
                        lambda frame, rule, parameters: np.ones(len(frame), dtype=bool))  # a broken compiled check
    checked = check(FEED, frame, today=TODAY)
    assert checked.rejected and checked.disputed == {"gender.allowed_values": planted} and planted >= 1
    assert (f"gender.allowed_values: Great Expectations and the compiled check disagree on {planted} row"
            in checked.reject_reason)
    assert len(checked.valid) + len(checked.quarantined) == len(frame)
    assert checked.report["disputed"] == checked.disputed


def test_a_large_batch_is_confirmed_on_its_failures_and_a_sample_and_docs_count_the_whole_batch() -> None:
    frame = _rows(evidence.WHOLE_BELOW * 2)
    checked = check(FEED, frame, today=TODAY)
    assert not checked.rejected and checked.disputed == {}
    by_rule = {item.expectation_config.meta["rule"]: item.result for item in checked.validation_result.results}
    for rule_id, failed in checked.counts.items():
        if rule_id in by_rule and "element_count" in by_rule[rule_id]:
            assert by_rule[rule_id]["element_count"] == len(frame)
            assert by_rule[rule_id]["unexpected_count"] == failed, rule_id
            assert "unexpected_index_list" not in by_rule[rule_id]  # rows of the evidence never reach Data Docs
    assert by_rule["id_number.required"]["unexpected_count"] == checked.counts["id_number.required"] > 0


def test_failing_rows_beyond_the_cap_are_sampled_by_pattern_and_still_confirmed(monkeypatch) -> None:
    monkeypatch.setattr(evidence, "FAILED_CAP", 20)
    monkeypatch.setattr(evidence, "EVERY_PATTERN", 3)
    monkeypatch.setattr(evidence, "WHOLE_BELOW", 100)
    frame = _rows(3000, seed=5)
    frame["name"] = frame["name"].astype(object)
    frame.loc[::40, "name"] = None  # 75 rows without a name: more failing rows than the cap
    checked = check(FEED, frame, today=TODAY)
    assert len(checked.quarantined) > 20 and not checked.rejected and checked.disputed == {}
    found = evidence.of_frame(checked_contract(), *_codes(frame))
    assert found.sampled and len(found.frame) < len(frame)
    assert set(np.unique(found.codes[found.codes != 0])) == set(np.unique(_codes(frame)[1][_codes(frame)[1] != 0]))


def checked_contract():
    from contracts import load_contract

    return load_contract(FEED)


def _codes(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, None]:
    from contracts.normalise import normalise

    contract = checked_contract()
    work, _ = normalise(contract, frame[list(contract.names)])
    work = work.reset_index(drop=True)
    return work, engine.row_codes(contract, work, TODAY).codes, None


def test_checking_without_gx_never_imports_it() -> None:
    code = ("import sys, pandas as pd; from datetime import date; from contracts.validate import check; "
            "from sandbox.city import generate_feed; "
            f"f = pd.concat(list(generate_feed('{FEED}', 500, seed=3)), ignore_index=True); "
            "c = check('police.deaths', f, today=date(2026, 11, 1), gx=False); "
            "print(len(c.quarantined), c.validation_result is None, 'great_expectations' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1:] == ["True", "False"] and int(out[0]) > 0


@pytest.mark.parametrize("size", [0, 5, evidence.SAMPLE_VALID * 3])
def test_the_valid_sample_is_reproducible_and_bounded(size: int) -> None:
    frame = pd.DataFrame({"a": np.arange(size)})
    first, again = evidence.valid_sample(frame, seed=9), evidence.valid_sample(frame, seed=9)
    assert first.equals(again) and len(first) == min(size, evidence.SAMPLE_VALID)
