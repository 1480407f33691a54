"""Table-driven: for every rule a passing and a failing example; each agency quirk normalised or quarantined."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pytest

from contracts.validate import RULES_COLUMN, check
from fundx.core.idcolumns import make_ids, make_usccs

TODAY = date(2026, 11, 1)


def _id(area: int = 330106, born: str = "1950-03-04", seq: int = 123) -> str:
    return str(make_ids(np.array([area]), np.array([born], dtype="datetime64[D]"), np.array([seq]))[0])


GOOD_ID = _id()
WRONG_CHECK = GOOD_ID[:17] + ("0" if GOOD_ID[17] != "0" else "1")
UNKNOWN_AREA_ID = _id(330199)  # shaped and checksummed, under a code GB/T 2260 never had
X_ID = next(i for i in (_id(seq=s) for s in range(1000)) if i.endswith("X"))

BASE: dict[str, dict[str, Any]] = {
    "police.deaths": {
        "cancellation_id": "HKZX33010000000001", "id_number": GOOD_ID, "name": "王伟", "gender": "男",
        "birth_date": "1950-03-04", "death_date": "2026-10-01", "cancelled_on": "2026-10-10",
        "police_station": "杭州市公安局西湖区分局北山派出所", "updated_at": "2026-10-11T09:00:00+08:00",
    },
    "civil_affairs.deaths": {
        "record_id": "MZ33010000000001", "id_number": GOOD_ID, "name": "王伟", "gender": "男",
        "death_date": "2026-10-01", "cremation_date": "2026-10-03", "funeral_home": "杭州市殡仪馆",
        "reported_at": "2026-10-04T09:00:00+08:00",
    },
    "religious_affairs.deaths": {
        "record_id": "ZJ33010000000001", "id_number": GOOD_ID, "name": "王伟", "gender": "男",
        "death_date": "2026-10-01", "venue": "杭州灵隐寺", "registered_on": "2026-10-05",
    },
    "justice.prisoners": {
        "prisoner_id": "ZF33010000000001", "id_number": GOOD_ID, "name": "王伟", "admitted_on": "2024-01-10",
        "sentence_start": "2024-01-01", "sentence_end": "2028-01-01", "custody_status": "在押",
        "prison": "浙江省第一监狱",
    },
    "medical_insurance.bills": {
        "bill_id": "YB3301000000000001", "id_number": GOOD_ID, "patient_name": "王伟",
        "hospital_code": "H33010600123", "diagnosis_code": "I10", "admitted_on": date(2026, 10, 1),
        "discharged_on": date(2026, 10, 5), "total_amount": 1000.0, "fund_amount": 700.0,
        "settled_at": pd.Timestamp("2026-10-06 10:00", tz="Asia/Shanghai"),
    },
    "market_regulation.businesses": {
        "uscc": "91330105027654645R", "name": "杭州东远科技有限公司", "legal_rep_id_number": GOOD_ID,
        "legal_rep_name": "吴霞珍", "status": "注销", "established_on": "2018-03-09",
        "deregistered_on": "2025-01-02", "changed_at": "2025-11-02T13:13:40+08:00",
    },
}
TYPED = {"medical_insurance.bills"}


USCCS = [str(c) for c in make_usccs(np.array([1] * 20), np.array([330105] * 20), np.arange(1000, 1020))]


def frame_of(feed: str, *rows: dict[str, Any]) -> pd.DataFrame:
    """A feed's frame as its connector delivers it (text feeds: pandas str columns); keys differ by row."""
    key = next(iter(BASE[feed]))
    records = []
    for i, row in enumerate(rows or ({},)):
        distinct = USCCS[i] if key == "uscc" else BASE[feed][key][:-3] + f"{i + 1:03d}"
        records.append(BASE[feed] | {key: distinct} | row)
    frame = pd.DataFrame(records, columns=list(BASE[feed]))
    if feed not in TYPED:
        frame = frame.astype("str")
    else:
        for column in ("admitted_on", "discharged_on"):
            frame[column] = frame[column].astype(object)
    return frame


def failed_rules(feed: str, frame: pd.DataFrame, **kw: Any) -> list[str]:
    checked = check(feed, frame, today=TODAY, **kw)
    assert len(checked.valid) + len(checked.quarantined) == len(frame)
    return sorted({r for rules in checked.quarantined[RULES_COLUMN] for r in rules.split(";")})


@pytest.mark.parametrize("feed", sorted(BASE))
def test_the_base_rows_pass(feed: str) -> None:
    checked = check(feed, frame_of(feed), today=TODAY)
    assert (len(checked.valid), len(checked.quarantined), checked.rejected) == (1, 0, False), checked.report


# (feed, change to the base row, the rules it must break). The base row passes every rule.
CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("police.deaths", {"name": None}, ["name.required"]),
    ("police.deaths", {"name": "王" * 51}, ["name.length"]),
    ("police.deaths", {"cancellation_id": "HK0001"}, ["cancellation_id.format"]),
    ("police.deaths", {"gender": "M"}, ["gender.allowed_values"]),
    ("police.deaths", {"id_number": WRONG_CHECK}, ["id_number.valid"]),
    ("police.deaths", {"id_number": "3.301061956100938e+17"}, ["id_number.excel_mangled", "id_number.format"]),
    ("police.deaths", {"id_number": "1.10105E+17"}, ["id_number.excel_mangled", "id_number.format"]),
    ("police.deaths", {"id_number": GOOD_ID[:17]}, ["id_number.format"]),
    ("police.deaths", {"id_number": UNKNOWN_AREA_ID}, ["id_number.area_code"]),
    ("police.deaths", {"id_number": _id(330100)}, ["id_number.area_code"]),  # a prefecture's code, not a county's
    ("police.deaths", {"id_number": GOOD_ID[:6] + GOOD_ID[8:17]}, ["id_number.format"]),  # 15 digits: not upgraded here
    ("police.deaths", {"birth_date": "1950-03-05"}, ["birth_date_matches_id"]),
    ("police.deaths", {"death_date": "1949-12-31"}, ["death_date.range", "death_not_before_birth"][1:]),
    ("police.deaths", {"death_date": "2026-11-02", "cancelled_on": "2026-11-02"},
     ["cancelled_on.not_future", "death_date.not_future"]),
    ("police.deaths", {"death_date": "2026-02-30"}, ["death_date.date"]),
    ("police.deaths", {"death_date": "1899-12-31", "birth_date": "1850-01-01", "id_number": _id(born="1850-01-01")},
     ["death_date.range"]),
    ("police.deaths", {"cancelled_on": "2026-09-30"}, ["cancellation_not_before_death"]),
    ("police.deaths", {"updated_at": "2026-10-11"}, ["updated_at.timestamp"]),
    ("civil_affairs.deaths", {"death_date": "1950-03-03"}, ["death_not_before_birth"]),
    ("civil_affairs.deaths", {"cremation_date": "2026-09-30"}, ["cremation_not_before_death"]),
    ("religious_affairs.deaths", {"registered_on": "2026-09-30"}, ["registration_not_before_death"]),
    ("religious_affairs.deaths", {"death_date": "1950-03-03", "registered_on": "1950-03-04"}, ["death_not_before_birth"]),
    ("justice.prisoners", {"sentence_end": "2023-12-31"}, ["sentence_end_not_before_start"]),
    ("justice.prisoners", {"custody_status": "在逃"}, ["custody_status.allowed_values"]),
    ("justice.prisoners", {"admitted_on": "2026-11-05"}, ["admitted_on.not_future"]),
    ("medical_insurance.bills", {"discharged_on": date(2026, 9, 30)}, ["discharge_not_before_admission"]),
    ("medical_insurance.bills", {"fund_amount": 1000.01}, ["fund_share_within_total"]),
    ("medical_insurance.bills", {"total_amount": -5.0, "fund_amount": -6.0}, ["fund_amount.range", "total_amount.range"]),
    ("medical_insurance.bills", {"diagnosis_code": "i10"}, ["diagnosis_code.format"]),
    ("medical_insurance.bills", {"settled_at": pd.Timestamp("2026-10-06 10:00")}, ["settled_at.timestamp"]),
    ("market_regulation.businesses", {"uscc": "91330105027654645A"}, ["uscc.valid"]),
    ("market_regulation.businesses", {"uscc": "91330105027654645"}, ["uscc.format"]),
    ("market_regulation.businesses", {"deregistered_on": "2018-03-08"}, ["deregistration_not_before_establishment"]),
    ("market_regulation.businesses", {"status": "关闭"}, ["status.allowed_values"]),
    ("market_regulation.businesses", {"legal_rep_id_number": WRONG_CHECK}, ["legal_rep_id_number.valid"]),
]


@pytest.mark.parametrize(("feed", "change", "rules"), CASES, ids=[f"{c[0]}:{'+'.join(c[2])}" for c in CASES])
def test_each_rule_fails_its_example_and_passes_the_base(feed: str, change: dict[str, Any], rules: list[str]) -> None:
    frame = frame_of(feed, {}, change)
    checked = check(feed, frame, today=TODAY)
    assert list(checked.valid.index) == [0]
    assert list(checked.quarantined.index) == [1]
    assert checked.quarantined[RULES_COLUMN].iloc[0].split(";") == sorted(rules, key=_rule_order(feed))


#: numbers issued all over the country, and under codes since retired: data, never a mistake
FROM_ANYWHERE = [110105, 210102, 210112, 340104, 650102, 441900, 330103, 330104, 110103, 810000]


@pytest.mark.parametrize("area", FROM_ANYWHERE)
@pytest.mark.parametrize("feed", ["police.deaths", "civil_affairs.deaths", "medical_insurance.bills"])
def test_a_number_issued_anywhere_is_valid(feed: str, area: int) -> None:
    checked = check(feed, frame_of(feed, {"id_number": _id(area)}), today=TODAY)
    assert len(checked.valid) == 1 and checked.quarantined.empty, checked.report


@pytest.mark.parametrize("feed", ["religious_affairs.deaths", "civil_affairs.deaths"])
def test_first_generation_numbers_are_upgraded_where_the_contract_says(feed: str) -> None:
    old = GOOD_ID[:6] + GOOD_ID[8:17]
    fullwidth = old.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    checked = check(feed, frame_of(feed, {"id_number": old}, {"id_number": f" {fullwidth}　"},
                                   {"id_number": "33010619500304"}), today=TODAY)
    assert checked.valid["id_number"].tolist() == [GOOD_ID, GOOD_ID]
    assert checked.quarantined[RULES_COLUMN].tolist() == ["id_number.format"]  # 14 digits: nothing to upgrade
    assert checked.normalisation.as_dict()["id_number"]["upgrade15"] == 2
    assert GOOD_ID not in str(checked.report) and old not in str(checked.report)


def _rule_order(feed: str):
    from contracts import load_contract
    from contracts.rules import contract_rules

    order = {r.id: i for i, r in enumerate(contract_rules(load_contract(feed)).rules)}
    return lambda rule: order[rule]


def test_duplicate_keys_break_uniqueness() -> None:
    frame = frame_of("police.deaths", {}, {"cancellation_id": "HKZX33010000000001"}, {})
    assert failed_rules("police.deaths", frame) == ["cancellation_id.unique"]
    assert list(check("police.deaths", frame, today=TODAY).valid.index) == [2]


# --- agency quirks: normalised (and then valid) or quarantined ---------------------------------

REPAIRED = [
    ("fullwidth digits", {"id_number": GOOD_ID.translate(str.maketrans("0123456789", "０１２３４５６７８９"))}, "id_number", GOOD_ID),
    ("lower-case x", {"id_number": X_ID[:-1] + "x", "birth_date": "1950-03-04"}, "id_number", X_ID),
    ("trailing spaces", {"id_number": GOOD_ID + "  "}, "id_number", GOOD_ID),
    ("ideographic space", {"name": "\u3000王伟 "}, "name", "王伟"),
    ("date 2021/4/12", {"death_date": "2026/10/1"}, "death_date", "2026-10-01"),
    ("date 2021年4月12日", {"death_date": "2026年10月1日"}, "death_date", "2026-10-01"),
    ("date 20210412", {"death_date": "20261001"}, "death_date", "2026-10-01"),
    ("full-width date digits", {"death_date": "２０２６年１０月１日"}, "death_date", "2026-10-01"),
    ("local time without offset", {"updated_at": "2026-10-11 09:00:00"}, "updated_at", "2026-10-11T09:00:00+08:00"),
]


@pytest.mark.parametrize(("quirk", "change", "column", "clean"), REPAIRED, ids=[r[0] for r in REPAIRED])
def test_harmless_quirks_are_normalised_and_recorded(quirk: str, change: dict[str, Any], column: str, clean: str) -> None:
    checked = check("police.deaths", frame_of("police.deaths", change), today=TODAY)
    assert len(checked.valid) == 1 and len(checked.quarantined) == 0, checked.report
    assert checked.valid[column].iloc[0] == clean
    assert checked.normalisation.total >= 1 and column in checked.normalisation.as_dict()
    assert GOOD_ID not in str(checked.normalisation.as_dict()) and "王伟" not in str(checked.normalisation.as_dict())


@pytest.mark.parametrize("mangled", ["3.301061956100938e+17", "1.10105E+17", " 3.30106195610094E+17 "])
def test_excel_mangled_numbers_are_never_repaired(mangled: str) -> None:
    checked = check("justice.prisoners", frame_of("justice.prisoners", {}, {"id_number": mangled}), today=TODAY)
    assert "id_number.excel_mangled" in checked.quarantined[RULES_COLUMN].iloc[0].split(";")
    assert checked.quarantined["id_number"].iloc[0] == mangled.strip()


def test_an_unreadable_date_is_quarantined_not_guessed() -> None:
    checked = check("religious_affairs.deaths", frame_of("religious_affairs.deaths", {}, {"death_date": "2026.10.1"}),
                    today=TODAY)
    assert checked.quarantined[RULES_COLUMN].iloc[0] == "death_date.date"
    assert checked.quarantined["death_date"].iloc[0] == "2026.10.1"


# --- batch verdicts ---------------------------------------------------------------------------


def test_a_missing_required_column_rejects_the_batch_naming_it() -> None:
    checked = check("police.deaths", frame_of("police.deaths").drop(columns=["death_date"]), today=TODAY)
    assert checked.rejected and checked.reject_reason == "schema break: missing required column(s) death_date"
    assert checked.valid.empty and checked.report["schema_break"]


def test_an_unknown_column_rejects_the_batch() -> None:
    frame = frame_of("police.deaths").assign(address="x")
    checked = check("police.deaths", frame, today=TODAY)
    assert checked.rejected and "column(s) not in the contract address" in checked.reject_reason


def test_a_missing_optional_column_is_not_a_break() -> None:
    checked = check("police.deaths", frame_of("police.deaths").drop(columns=["police_station"]), today=TODAY)
    assert not checked.rejected and len(checked.valid) == 1


def test_too_many_failing_rows_reject_the_batch_but_still_split() -> None:
    frame = frame_of("police.deaths", *[{}] * 49, {"gender": "M"})
    assert not check("police.deaths", frame, today=TODAY).rejected  # 10 % is the limit, not above
    frame.loc[45:49, "gender"] = "M"
    frame.loc[40:44, "gender"] = "M"
    checked = check("police.deaths", frame.iloc[30:50].reset_index(drop=True), today=TODAY)
    assert checked.rejected and "50.0 % of rows (10 of 20) failed, above the contract's 10 %" in checked.reject_reason
    assert len(checked.quarantined) == 10


def test_a_few_failing_rows_of_a_small_batch_are_quarantined_not_held() -> None:
    frame = frame_of("police.deaths", *[{}] * 8, {"gender": "M"}, {"gender": "M"})
    checked = check("police.deaths", frame, today=TODAY)  # 20 %, but 2 rows are below minFailedRows (5)
    assert not checked.rejected and len(checked.quarantined) == 2 and len(checked.valid) == 8


def test_row_count_against_history() -> None:
    frame = frame_of("police.deaths", *[{}] * 10)
    assert not check("police.deaths", frame, history=[12] * 10, today=TODAY).rejected
    assert not check("police.deaths", frame, history=[100] * 3, today=TODAY).rejected  # too little history
    checked = check("police.deaths", frame, history=[100] * 10, today=TODAY)
    assert checked.rejected and checked.reject_reason.startswith("rule row_count failed: 10 rows, expected 25..400")
    assert checked.counts["row_count"] == 1
