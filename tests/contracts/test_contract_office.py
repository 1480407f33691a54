"""The social-insurance office's contracts (social_insurance.*): their codes are the rules' codes, and what a
real office system sends wrong (a status or scheme code outside the enum, a month that is no month, a
spreadsheet-mangled account, a wrong check character) is quarantined naming the rule, the rest passes."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from contracts import load_contract
from contracts.validate import RULES_COLUMN, check
from fundx.core import codes
from fundx.exchange.quarantine import masked_view
from matching import rules
from sandbox.city import OFFICE_FEEDS, generate_city

TODAY = date(2026, 11, 1)

#: (feed, column) -> the codes it may hold: one place (fundx.core.codes) for the contracts, rules and sandbox
ENUMS = {
    ("social_insurance.benefit_roll", "scheme"): codes.SCHEMES,
    ("social_insurance.benefit_roll", "status"): codes.ROLL_STATUSES,
    ("social_insurance.payments", "scheme"): codes.SCHEMES,
    ("social_insurance.employer_subsidies", "subsidy_type"): codes.SUBSIDY_TYPES,
    ("justice.prisoners", "custody_status"): codes.CUSTODY_STATUSES,
    ("market_regulation.businesses", "status"): codes.BUSINESS_STATUSES,
}


@pytest.fixture(scope="module")
def office() -> dict[str, pd.DataFrame]:
    return generate_city(1500, seed=42).office


@pytest.mark.parametrize("feed,column", sorted(ENUMS))
def test_the_contracts_enums_are_the_codes_the_rules_use(feed: str, column: str) -> None:
    (prop,) = [p for p in load_contract(feed).raw.schema_[0].properties if p.name == column]
    assert tuple(e.value for e in prop.enum) == ENUMS[(feed, column)]


def test_the_rules_take_their_codes_from_the_one_place() -> None:
    params = rules.parse_params(None)
    assert params["paid_in_custody"]["status"] == codes.IN_CUSTODY
    assert params["shared_account"]["active"] == params["duplicate_receipt"]["active"] == codes.ACTIVE
    assert params["unemployed_contributing"]["active"] == codes.ACTIVE
    assert params["unemployed_contributing"]["benefit"] == codes.UNEMPLOYMENT
    assert set(params["deregistered_subsidised"]["ended"]) <= set(codes.BUSINESS_STATUSES)
    assert {s for pair in params["duplicate_receipt"]["exclusive"] for s in pair} <= set(codes.SCHEMES)
    from matching import rules_accounts

    source = Path(rules.__file__).read_text(encoding="utf-8") + Path(rules_accounts.__file__).read_text(encoding="utf-8")
    for literal in (*codes.SCHEMES, *codes.ROLL_STATUSES, *codes.CUSTODY_STATUSES, *codes.BUSINESS_STATUSES):
        assert f"'{literal}'" not in source and f'"{literal}",' not in source and f'"{literal}")' not in source, literal


@pytest.mark.parametrize("feed", OFFICE_FEEDS)
def test_the_generated_office_feeds_pass_their_contracts(feed: str, office: dict[str, pd.DataFrame]) -> None:
    checked = check(feed, office[feed], today=TODAY)
    assert len(office[feed]) > 0 and len(checked.quarantined) == 0 and not checked.rejected, checked.report


#: (feed, column, a value a real office system sends, the rule it must break)
MISTAKES = [
    ("social_insurance.benefit_roll", "status", "暂停", "status.allowed_values"),
    ("social_insurance.benefit_roll", "status", "ACTIVE", "status.allowed_values"),
    ("social_insurance.benefit_roll", "scheme", "城乡居民养老", "scheme.allowed_values"),
    ("social_insurance.benefit_roll", "paid_through", "2026-13", "paid_through.format"),
    ("social_insurance.benefit_roll", "bank_account", "6.22848E+18", "bank_account.format"),
    ("social_insurance.payments", "month", "202610", "month.format"),
    ("social_insurance.payments", "amount", -3800.0, "amount.range"),
    ("social_insurance.contributions", "employer_uscc", "91330106MA2XXXXXX0", "employer_uscc.valid"),
    ("social_insurance.employer_subsidies", "subsidy_type", "其他补贴", "subsidy_type.allowed_values"),
    ("social_insurance.account_changes", "new_account", None, "new_account.required"),
    ("social_insurance.benefit_roll", "spouse_id_number", "330106195001010015", "spouse_id_number.valid"),
]


@pytest.mark.parametrize("feed,column,value,rule", MISTAKES, ids=[f"{m[0].split('.')[1]}-{m[1]}-{m[3]}" for m in MISTAKES])
def test_what_an_office_sends_wrong_is_quarantined_naming_the_rule(feed, column, value, rule, office) -> None:
    frame = office[feed].head(40).copy()
    frame[column] = frame[column].astype(object)
    frame.loc[3, column] = value
    checked = check(feed, frame, today=TODAY)
    assert not checked.rejected and len(checked.valid) == len(frame) - 1, checked.report
    (failed,) = checked.quarantined[RULES_COLUMN].tolist()
    assert rule in failed.split(";"), failed


def test_a_quarantined_account_is_shown_masked(office: dict[str, pd.DataFrame]) -> None:
    frame = office["social_insurance.account_changes"].head(10).copy()
    account = frame.loc[2, "old_account"]
    frame.loc[2, "old_account"] = account + "7"  # twenty digits: no account the office issues
    checked = check("social_insurance.account_changes", frame, today=TODAY)
    held = checked.quarantined.assign(_row=[2]) if "_row" not in checked.quarantined else checked.quarantined
    shown = masked_view(held, "social_insurance.account_changes")
    assert "old_account.format" in shown[RULES_COLUMN].iloc[0]
    text = shown.to_string()
    assert account not in text and frame.loc[2, "id_number"] not in text
    assert shown["old_account"].iloc[0] == account[:4] + "*" * 12 + account[-3:] + "7"


def test_the_roll_names_the_spouse_on_file_optionally_and_masks_it(office: dict[str, pd.DataFrame]) -> None:
    """benefit_roll 1.1.0: spouse_id_number, optional (most entries have none), an identity number like any
    other (checked, normalised, masked when quarantined), kept by the stage as the spouse's token only."""
    contract = load_contract("social_insurance.benefit_roll")
    assert contract.raw.version == "1.1.0"
    (prop,) = [p for p in contract.raw.schema_[0].properties if p.name == "spouse_id_number"]
    assert not prop.required and prop.classification == "restricted"
    roll = office["social_insurance.benefit_roll"]
    on_file = roll[roll["spouse_id_number"].notna()]
    assert 0 < len(on_file) < len(roll) / 10
    frame = on_file.head(4).copy()
    spouse = frame["spouse_id_number"].iloc[1]
    frame.loc[frame.index[1], "spouse_id_number"] = " " + spouse.lower() + " "  # trimmed and upper-cased: passes
    frame.loc[frame.index[2], "spouse_id_number"] = spouse[:-1] + ("0" if spouse[-1] != "0" else "1")
    checked = check("social_insurance.benefit_roll", frame.reset_index(drop=True), today=TODAY)
    assert len(checked.valid) == 3 and spouse in set(checked.valid["spouse_id_number"])
    held = checked.quarantined.assign(_row=[2]) if "_row" not in checked.quarantined else checked.quarantined
    shown = masked_view(held, "social_insurance.benefit_roll")
    assert "spouse_id_number.valid" in shown[RULES_COLUMN].iloc[0]
    assert spouse[:-1] not in shown.to_string()
