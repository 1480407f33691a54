"""The medical-insurance bills contract (1.3.1) promises bill review what its rules read: the hospital, the
discharge day of an inpatient stay and what the fund paid (docs/matching.md: the amount at risk of every bill
rule). A bill without its hospital, or whose fund share is above its total, is quarantined naming the rule."""

from __future__ import annotations

import pytest

import connectors
from contracts import load_contract
from contracts.release import check_release
from contracts.validate import RULES_COLUMN, check
from matching import load, rules
from sandbox.city import generate_city

FEED = "medical_insurance.bills"


def test_the_contract_describes_and_requires_what_bill_review_reads() -> None:
    contract = load_contract(FEED)
    props = {p.name: p for p in contract.raw.schema_[0].properties}
    assert (props["hospital_code"].required, props["fund_amount"].required, props["discharged_on"].required) == (
        True, True, False)
    for name in ("hospital_code", "discharged_on", "fund_amount"):
        assert props[name].description, name  # what the stage uses it for, stated in the contract
    assert "统筹" in props["fund_amount"].description and "amount at risk" in props["fund_amount"].description
    assert contract.raw.version == "1.3.1"
    check_ = check_release(FEED)
    assert check_.diff.allowed and not check_.diff.breaking  # descriptions only: compatible, no major bump


def test_the_stage_keeps_the_hospital_the_discharge_and_the_fund_share() -> None:
    """Every store column of ``bills`` comes from a contract column; the three the newer rules read are kept."""
    config = connectors.load_feed(FEED)
    assert config.matching is not None
    columns = {p.name for p in load_contract(FEED).raw.schema_[0].properties}
    sources = {c: (s if isinstance(s, str) else s.not_null) for c, s in config.matching.columns.items()}
    assert set(sources.values()) <= columns
    assert {sources[c] for c in ("hospital_code", "discharged_on", "fund_amount")} == {
        "hospital_code", "discharged_on", "fund_amount"}
    table, sql, _vault = load.feed_sql(FEED)
    kept = set(rules.EMPTY["bills"].replace(",", " ").split()[::2]) - {"received_at"}
    assert table == "bills" and all(f'AS "{c}"' in sql or f"AS {c}" in sql for c in kept)


@pytest.mark.parametrize("column,value,rule", [("fund_amount", "over", "fund_share_within_total"),
                                               ("hospital_code", None, "hospital_code.required"),
                                               ("hospital_code", "H99", "hospital_code.format")])
def test_a_bill_bill_review_cannot_use_is_quarantined(column: str, value: object, rule: str) -> None:
    frame = generate_city(1500, seed=42).feeds[FEED].head(30).copy()
    if value == "over":
        value = float(frame["total_amount"].iloc[3]) + 1
    frame.loc[frame.index[3], column] = value
    checked = check(FEED, frame)
    got = dict(zip(checked.quarantined["bill_id"], checked.quarantined[RULES_COLUMN]))
    assert got == {frame["bill_id"].iloc[3]: rule}
