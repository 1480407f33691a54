"""Tests for the synthetic city: contract columns, determinism, valid numbers, and planted truths."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from fundx.core.areacodes import is_known_area_code
from fundx.core.city import load_city
from fundx.core.creditcodes import is_valid_uscc
from fundx.core.identity import birth_date_of, is_male, is_valid_id, normalize_id, normalize_name, upgrade_id15
from fundx.core.timeutil import SHANGHAI
from sandbox.city import DEFAULT_AS_OF, FEEDS, City, generate_city, generate_feed
from sandbox.city.feeds import DEATH_FEEDS
from sandbox.city.invalid import INVALID_KINDS, INVALID_RATE, UNREPAIRABLE, invalid_count, invalid_slots
from sandbox.city.messiness import NAME_COLUMNS, NAME_DOT_FORMS, OLD_NUMBER_KIND
from sandbox.city.population import MINORITY_FATHER, MINORITY_GIVEN_FEMALE, MINORITY_GIVEN_MALE, OLD_NUMBER_FEEDS
from sandbox.city.specs import NOT_PLANTED

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
KEYS = {
    "civil_affairs.deaths": "record_id",
    "religious_affairs.deaths": "record_id",
    "police.deaths": "cancellation_id",
    "justice.prisoners": "prisoner_id",
    "medical_insurance.bills": "bill_id",
    "market_regulation.businesses": "uscc",
    "health_commission.hospital_deaths": "notice_id",
    "tax_bureau.wage_income": "declaration_id",
}
ID_COLUMN = {f: ("legal_rep_id_number" if f == "market_regulation.businesses" else "id_number") for f in FEEDS}
INCREMENTAL = {
    "civil_affairs.deaths": "reported_at",
    "police.deaths": "updated_at",
    "market_regulation.businesses": "changed_at",
    "health_commission.hospital_deaths": "notified_at",
    "tax_bureau.wage_income": "declared_at",
}
TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+08:00$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
AS_OF_START = datetime(DEFAULT_AS_OF.year, DEFAULT_AS_OF.month, DEFAULT_AS_OF.day, tzinfo=SHANGHAI)


def contract_columns(feed: str) -> list[str]:
    doc = yaml.safe_load((CONTRACTS / f"{feed}.odcs.yaml").read_text(encoding="utf-8"))
    return [p["name"] for p in doc["schema"][0]["properties"]]


@pytest.fixture(scope="module")
def city() -> City:
    return generate_city()


def messy_cells(city: City, kinds: tuple[str, ...] | None = None) -> set[tuple[str, str, str]]:
    return {(m["feed"], m["key"], m["column"]) for m in city.truths["messy"] if kinds is None or m["kind"] in kinds}


def invalid_keys(city: City, feed: str) -> set[str]:
    """Keys of the rows planted invalid in a feed."""
    return {i["key"] for i in city.truths["invalid"] if i["feed"] == feed}


def valid_rows(city: City, feed: str) -> pd.DataFrame:
    """A feed without the rows planted invalid: what the invariants below hold for."""
    frame = city.feeds[feed]
    return frame[~frame[KEYS[feed]].isin(invalid_keys(city, feed))]


def row_of(frame: pd.DataFrame, key_col: str, key: str) -> pd.Series:
    hits = frame[frame[key_col] == key]
    assert len(hits) == 1, (key_col, key)
    return hits.iloc[0]


# --- shape ------------------------------------------------------------------------------------


def test_feeds_have_the_contract_columns_in_order(city: City) -> None:
    assert tuple(city.feeds) == FEEDS
    for feed, frame in city.feeds.items():
        assert list(frame.columns) == contract_columns(feed), feed
        assert len(frame) > 0, feed


def test_roll_columns(city: City) -> None:
    assert list(city.roll.columns) == ["id_number", "name", "benefit_type", "monthly_amount", "bank_account",
                                       "status", "paid_through", "start_month", "months_paid", "paying_district"]
    roll = city.roll
    assert not roll.duplicated(["id_number", "benefit_type"]).any()  # one row per (person, scheme)
    twice = set(roll.loc[roll["id_number"].duplicated(), "id_number"])
    assert twice == {t["id_number"] for t in city.truths["duplicate_receipts"]}
    assert roll["start_month"].str.fullmatch(r"\d{4}-(0[1-9]|1[0-2])").all()
    assert (roll["start_month"] <= roll["paid_through"]).all()
    assert set(roll["benefit_type"]) == {"basic_pension", "resident_pension", "unemployment", "survivor", "disability"}
    assert set(roll["status"]) == {"active", "suspended", "stopped"}
    assert roll["bank_account"].str.fullmatch(r"6\d{18}").all()
    assert roll["paid_through"].str.fullmatch(r"\d{4}-(0[1-9]|1[0-2])").all()
    assert (roll["months_paid"] >= 1).all() and (roll["monthly_amount"] > 0).all()
    assert (roll["paid_through"] <= "2026-10").all()
    # every entry is paid by one of the city's districts, wherever the person's number was issued
    assert set(roll["paying_district"]) == {d.code for d in load_city("hangzhou").districts}


def test_bank_accounts_pass_luhn(city: City) -> None:
    for account in city.roll["bank_account"].head(500):
        digits = [int(c) for c in account][::-1]
        total = sum(d if i % 2 == 0 else (2 * d - 9 if 2 * d > 9 else 2 * d) for i, d in enumerate(digits))
        assert total % 10 == 0


def test_keys_unique(city: City) -> None:
    for feed, frame in city.feeds.items():
        assert frame[KEYS[feed]].is_unique, feed
        assert frame[KEYS[feed]].notna().all(), feed


def test_text_feeds_hold_strings_or_missing(city: City) -> None:
    for feed, frame in city.feeds.items():
        if feed == "medical_insurance.bills":
            continue
        for column in frame.columns:
            if feed == "tax_bureau.wage_income" and column in ("wage_amount", "tax_amount"):
                assert frame[column].dtype == "float64"  # the database keeps amounts as numbers
                continue
            assert str(frame[column].dtype) == "str", (feed, column)
            assert all(isinstance(v, str) for v in frame[column].dropna()), (feed, column)


def test_incremental_timestamps_within_the_year_before_as_of(city: City) -> None:
    for feed, column in INCREMENTAL.items():
        values = city.feeds[feed][column]
        assert values.str.fullmatch(TS.pattern).all(), feed
        moments = pd.to_datetime(values, format="ISO8601")
        assert moments.max() < pd.Timestamp(AS_OF_START), feed
        assert moments.min() >= pd.Timestamp(AS_OF_START - timedelta(days=365)), feed
        # ordered by (incremental column, key), as the agencies page them
        frame = city.feeds[feed]
        assert frame.equals(frame.sort_values([column, KEYS[feed]], ignore_index=True)), feed


def test_wage_income_follows_the_contributions(city: City) -> None:
    wages = valid_rows(city, "tax_bureau.wage_income").copy()
    wages["id_number"] = wages["id_number"].map(normalize_id)
    c = city.office["social_insurance.contributions"]  # City.contributions and the cases planted over history
    paid = set(zip(c["id_number"], c["employer_uscc"], c["month"]))
    declared = set(zip(wages["id_number"], wages["employer_uscc"], wages["income_month"]))
    assert declared <= paid  # every valid declaration is of a person, employer and month contributed for
    filed = pd.to_datetime(wages["declared_at"], format="ISO8601")
    assert (filed.dt.strftime("%Y-%m") > wages["income_month"]).all()  # filed after the month it is for
    assert 0.6 < len(declared) / len(paid) < 0.95  # most, not all, of the contributed months
    assert ((wages["tax_amount"] >= 0) & (wages["tax_amount"] <= wages["wage_amount"])).all()
    assert (wages["wage_amount"] >= 2490).all() and (wages["tax_amount"] > 0).any()


def test_hospitals_notify_about_half_the_deaths_with_the_true_date(city: City) -> None:
    hospital = cleaned(city, "health_commission.hospital_deaths")
    assert 0.4 < len(hospital) / city.truths["counts"]["deaths"] < 0.7
    conflicted = {t["id_number"]: t["death_date"] for t in city.truths["date_conflicts"]}
    for t in city.truths["date_conflicts"]:
        if "health_commission.hospital_deaths" in t["dates"]:
            assert t["dates"]["health_commission.hospital_deaths"] == t["death_date"]
    assert conflicted


def test_bills_are_typed_for_the_database(city: City) -> None:
    every = city.feeds["medical_insurance.bills"]
    for column in ("admitted_on", "discharged_on"):  # planted rows too: typed, or missing
        assert all(v is None or type(v) is date for v in every[column]), column
    assert every["total_amount"].dtype == "float64" and every["fund_amount"].dtype == "float64"
    assert str(every["settled_at"].dt.tz) == "Asia/Shanghai" and every["settled_at"].notna().all()
    bills = valid_rows(city, "medical_insurance.bills")
    assert all(type(v) is date for v in bills["admitted_on"])
    discharged = [v for v in bills["discharged_on"] if v is not None]
    assert discharged and all(type(v) is date for v in discharged)
    assert str(bills["settled_at"].dt.tz) == "Asia/Shanghai"
    assert bills["settled_at"].max() < pd.Timestamp(AS_OF_START)
    assert bills["settled_at"].min() >= pd.Timestamp(AS_OF_START - timedelta(days=365))
    assert (bills["fund_amount"] <= bills["total_amount"]).all() and (bills["fund_amount"] > 0).all()
    assert np.allclose(bills["total_amount"], bills["total_amount"].round(2))
    assert bills["diagnosis_code"].str.fullmatch(r"[A-Z]\d{2}(\.\d)?").all()
    for admitted, discharged_on, settled in bills[["admitted_on", "discharged_on", "settled_at"]].head(2000).itertuples(index=False):
        assert discharged_on is None or admitted <= discharged_on
        assert admitted <= settled.date()
    assert 1.2 < len(every) / city.people < 1.8


def test_businesses(city: City) -> None:
    assert len(city.feeds["market_regulation.businesses"]) == city.people // 20
    firms = valid_rows(city, "market_regulation.businesses")
    assert all(is_valid_uscc(c, check_org_code=True) for c in firms["uscc"])
    assert firms["uscc"].str[1].isin(["1", "2", "3"]).all()
    assert firms["uscc"].str[2:6].eq("3301").all()
    assert set(firms["status"]) == {"存续", "在业", "注销", "吊销"}
    gone = firms["status"] == "注销"
    assert firms.loc[gone, "deregistered_on"].notna().all()
    assert firms.loc[~gone, "deregistered_on"].isna().all()
    reps = firms["legal_rep_id_number"].map(normalize_id)
    assert reps.map(is_valid_id).all() and reps.str[:6].map(is_known_area_code).all()
    assert 0.15 < (~reps.str.startswith("3301")).mean() < 0.45  # many representatives were born elsewhere


# --- identity numbers -------------------------------------------------------------------------


def test_identity_numbers_valid_except_the_planted_messy_ones(city: City) -> None:
    messy = messy_cells(city)
    unrepairable = messy_cells(city, UNREPAIRABLE)
    unknown_area = messy_cells(city, ("id_unknown_area",))
    first_generation = messy_cells(city, (OLD_NUMBER_KIND,))
    assert all(is_valid_id(v) for v in city.roll["id_number"])
    for feed, frame in city.feeds.items():
        col = ID_COLUMN[feed]
        for key, value in zip(frame[KEYS[feed]], frame[col]):
            if (feed, key, col) in unknown_area:  # checksummed right, under a code that never existed
                assert is_valid_id(value) and not is_known_area_code(value[:6]), (feed, key)
            elif (feed, key, col) in unrepairable:
                assert not is_valid_id(normalize_id(value)), (feed, key)
            elif (feed, key, col) in first_generation:
                assert feed in OLD_NUMBER_FEEDS and re.fullmatch(r"\d{15}", value), (feed, key)
                assert is_valid_id(upgrade_id15(value)), (feed, key)
            elif (feed, key, col) in messy:
                assert not is_valid_id(value) and is_valid_id(normalize_id(value)), (feed, key)
            else:
                assert is_valid_id(value) and is_known_area_code(value[:6]), (feed, key)


def test_numbers_were_first_issued_all_over_the_country(city: City) -> None:
    """A real city's residents: 30 % hold numbers of other provinces, locals some of their district's
    former codes; every code is one GB/T 2260 has had, in use when the number was issued."""
    from fundx.core.areacodes import area_table

    numbers = city.roll.drop_duplicates("id_number")["id_number"]
    areas = numbers.str[:6]
    outside = ~areas.str.startswith("3301")
    assert 0.25 < outside.mean() < 0.35
    assert areas[outside].str[:2].nunique() >= 25  # nearly every province
    assert areas.map(is_known_area_code).all()
    table = area_table()
    for number in numbers.head(2000):
        issued = max(birth_date_of(number).year, 1985)
        assert table[int(number[:6])].in_use(issued), number
    current = {d.code for d in load_city("hangzhou").districts}
    local = areas[~outside]
    assert 0.2 < (~local.isin(current)).mean() < 0.8  # retired codes: 330103 下城区, 330121 萧山县, ...
    assert {"330103", "330104"} <= set(local)
    assert 0.25 < city.truths["counts"]["issued_elsewhere"] / city.people < 0.35


def test_first_generation_numbers_are_old_peoples_in_paper_registers(city: City) -> None:
    old = [m for m in city.truths["messy"] if m["kind"] == OLD_NUMBER_KIND]
    assert len(old) >= 5 and {m["feed"] for m in old} <= set(OLD_NUMBER_FEEDS)
    for m in old:
        assert m["clean"] == upgrade_id15(m["value"]) and birth_date_of(m["clean"]).year < 1950
    # some pensions paid after death are people the civil or religious register knows by a 15-digit number
    assert {m["clean"] for m in old} & {t["id_number"] for t in city.truths["dead_but_paid"]}


def test_names_as_the_agencies_write_them(city: City) -> None:
    roll = set(city.roll["name"])
    assert sum("\u00b7" in n for n in roll) > 0.01 * len(roll)  # minority names, the standard dot in the roll
    assert any(any(ord(c) > 0xFFFF for c in n) for n in roll)  # a character four bytes long in GB18030
    dots = set()
    for feed, frame in city.feeds.items():
        for name in frame[NAME_COLUMNS[feed]].dropna():
            dots |= {c for c in name if c in "\u00b7\u30fb\u2022\u2027\uff65\u318d\uff0e."}
            name.encode("gb18030")  # every name is writable in a GB18030 file
    assert len(dots) >= 3
    for feed, forms in NAME_DOT_FORMS.items():  # each system's forms, in a larger sample of its rows
        names = pd.concat(list(generate_feed(feed, 20_000, seed=3)))[NAME_COLUMNS[feed]].dropna()
        assert {c for n in names for c in n if c in "\u00b7\u30fb\u2022\u2027\uff65\u318d\uff0e."} == set(forms), feed
    religious = pd.concat(list(generate_feed("religious_affairs.deaths", 2000, seed=3)))["name"].dropna()
    assert religious.str.fullmatch(".\u3000.").any()  # 王　芳: a paper register pads two-character names
    # each form is the same name once the dot is normalised (the roll's form)
    minority = {f"{g}\u00b7{f}" for g in (*MINORITY_GIVEN_MALE, *MINORITY_GIVEN_FEMALE) for f in MINORITY_FATHER}
    assert {n for n in roll if "\u00b7" in n} <= minority
    for feed, frame in city.feeds.items():
        seen = {normalize_name(n) for n in frame[NAME_COLUMNS[feed]].dropna() if len(n) <= 50}
        assert {n for n in seen if "\u00b7" in n} <= minority, feed
        assert not {n for n in seen if any(c in n for c in "\u30fb\u2022\u2027\uff65\u318d\uff0e.\u3000 ")}, feed


def test_near_dates(city: City) -> None:
    deaths = deaths_by_id(city)
    assert len(city.truths["near_dates"]) >= 3
    for t in city.truths["near_dates"]:
        written = {feed: date.fromisoformat(d) for feed, (_k, d) in deaths[t["id_number"]].items() if d}
        assert {f: d.isoformat() for f, d in written.items()} == t["dates"]
        assert (max(written.values()) - min(written.values())).days == 1 == t["days_apart"]
        assert max(written.values()).isoformat() == t["death_date"]


def test_gender_and_birth_date_agree_with_the_number(city: City) -> None:
    for feed in DEATH_FEEDS:
        frame = valid_rows(city, feed)
        for value, gender in zip(frame["id_number"], frame["gender"]):
            if is_valid_id(value) and isinstance(gender, str):
                assert gender == ("男" if is_male(value) else "女")
    police = valid_rows(city, "police.deaths")
    for value, born in zip(police["id_number"], police["birth_date"]):
        if is_valid_id(value):
            assert born == birth_date_of(value).isoformat()
    justice = city.feeds["justice.prisoners"]
    women = justice["prison"] == "浙江省女子监狱"
    assert all(not is_male(v) for v in justice.loc[women, "id_number"] if is_valid_id(v))


def test_ages_skew_old(city: City) -> None:
    ages = np.array([(DEFAULT_AS_OF - birth_date_of(v)).days / 365.25 for v in city.roll["id_number"]])
    assert ages.min() >= 18 and ages.max() <= 101
    assert np.median(ages) > 60


# --- planted truths ---------------------------------------------------------------------------

CATEGORIES = ("dead_but_paid", "prisoners_paid", "shared_accounts", "single_source_deaths", "date_conflicts", "near_dates",
              "duplicate_receipts", "unemployed_contributing", "frequent_patients", "overbilled",
              "subsidised_deregistered", "messy", "invalid_ids", "invalid")


def test_every_truth_category_has_several(city: City) -> None:
    for category in CATEGORIES:
        assert len(city.truths[category]) >= 3, category
    kinds = {m["kind"] for m in city.truths["messy"]}
    id_kinds = {i["kind"] for i in city.truths["invalid"] if i["kind"] in UNREPAIRABLE}
    assert id_kinds >= set(UNREPAIRABLE) - {"id_missing"}  # the bills have every one but a missing number
    assert kinds == {"fullwidth_digits", "lowercase_x", "trailing_space", "date_slash", "date_chinese",
                     "date_compact", OLD_NUMBER_KIND} | id_kinds
    assert city.truths["counts"]["medical_insurance.bills"] == len(city.feeds["medical_insurance.bills"])


def cleaned(city: City, feed: str) -> pd.DataFrame:
    """A feed as it was before the messiness: the ground truth's view of the rows."""
    frame = city.feeds[feed].copy()
    key = KEYS[feed]
    for m in city.truths["messy"]:
        if m["feed"] == feed:
            frame.loc[frame[key] == m["key"], m["column"]] = m["clean"]
    return frame


def deaths_by_id(city: City) -> dict[str, dict[str, tuple[str, str | None]]]:
    """id number -> feed -> (key, death_date), from the cleaned feeds (no death date where the row was
    planted invalid in another column than the identity number: its dates are not to be trusted)."""
    out: dict[str, dict[str, tuple[str, str | None]]] = {}
    for feed in DEATH_FEEDS:
        frame = cleaned(city, feed)
        untrusted = {i["key"] for i in city.truths["invalid"] if i["feed"] == feed and i["kind"] not in UNREPAIRABLE}
        for key, value, died in zip(frame[KEYS[feed]], frame["id_number"], frame["death_date"]):
            assert is_valid_id(value)
            out.setdefault(value, {})[feed] = (key, None if key in untrusted else died)
    return out


def month_of(iso_date: str) -> str:
    return iso_date[:7]


def test_dead_but_paid_is_true_and_complete(city: City) -> None:
    roll = city.roll.set_index("id_number")
    deaths = deaths_by_id(city)
    planted = {t["id_number"] for t in city.truths["dead_but_paid"]}
    for t in city.truths["dead_but_paid"]:
        row = roll.loc[t["id_number"]]
        assert row["status"] == "active"
        assert row["paid_through"] > month_of(t["death_date"])
        assert t["known_to"], t
        for feed, key in t["known_to"].items():
            assert deaths[t["id_number"]][feed][0] == key
    # Nothing else in the feeds looks like a pension paid after death.
    found = set()
    for id_number, seen in deaths.items():
        if id_number in roll.index:
            row = roll.loc[id_number]
            dates = [month_of(d) for _k, d in seen.values() if d is not None]
            if dates and row["status"] == "active" and row["paid_through"] > min(dates):
                found.add(id_number)
    assert found == planted


def test_prisoners_paid_is_true(city: City) -> None:
    # the office's roll as the stage sees it (City.office: the look-alikes suspended on admission are there)
    roll = city.office["social_insurance.benefit_roll"].set_index("id_number")
    justice = city.feeds["justice.prisoners"]
    for t in city.truths["prisoners_paid"]:
        row = row_of(justice, "prisoner_id", t["prisoner_id"])
        assert row["id_number"] == t["id_number"] and row["custody_status"] == "在押"
        assert row["admitted_on"] == t["admitted_on"] < (DEFAULT_AS_OF - timedelta(days=60)).isoformat()
        assert roll.loc[t["id_number"], "status"] == "active"
    held = justice[justice["custody_status"] == "在押"]["id_number"].map(normalize_id)
    active = set(roll.index[roll["status"] == "active"])
    assert set(held) & active == {t["id_number"] for t in city.truths["prisoners_paid"]}


def test_shared_accounts_are_true_and_complete(city: City) -> None:
    holders = city.roll.groupby("bank_account")["id_number"].apply(sorted)
    shared = holders[holders.map(len) >= 3]
    truth = {t["bank_account"]: sorted(t["id_numbers"]) for t in city.truths["shared_accounts"]}
    assert dict(shared) == truth
    for ids in truth.values():
        assert len(set(ids)) == len(ids) >= 3


def test_single_source_deaths(city: City) -> None:
    deaths = deaths_by_id(city)
    truth = {t["id_number"]: t for t in city.truths["single_source_deaths"]}
    assert set(truth) == {i for i, seen in deaths.items() if len(seen) == 1}
    for id_number, t in truth.items():
        assert list(deaths[id_number]) == [t["feed"]]
        assert deaths[id_number][t["feed"]][0] == t["key"]
    assert len({t["feed"] for t in truth.values()}) >= 2


def test_date_conflicts(city: City) -> None:
    deaths = deaths_by_id(city)
    for t in city.truths["date_conflicts"]:
        seen = deaths[t["id_number"]]
        assert set(seen) == set(t["dates"]) and len(seen) >= 2
        written = {feed: date.fromisoformat(d) for feed, (_k, d) in seen.items()}
        assert {f: d.isoformat() for f, d in written.items()} == t["dates"]
        apart = (max(written.values()) - min(written.values())).days
        assert apart == t["days_apart"] and 3 <= apart <= 40
        assert t["death_date"] in t["dates"].values()


def test_messy_rows_are_what_the_truths_say(city: City) -> None:
    for m in city.truths["messy"]:
        frame = city.feeds[m["feed"]]
        row = row_of(frame, KEYS[m["feed"]], m["key"])
        if m["value"] is None:
            assert m["kind"] == "id_missing" and pd.isna(row[m["column"]]) and is_valid_id(m["clean"])
            continue
        assert row[m["column"]] == m["value"] != m["clean"]
        if m["kind"] == "excel_mangled":
            assert re.fullmatch(r"\d\.\d+e\+17", m["value"])
            assert float(m["value"]) == float(int(m["clean"]))
        if m["kind"].startswith("date_"):
            assert m["feed"] in ("religious_affairs.deaths", "justice.prisoners")
            assert ISO_DATE.fullmatch(m["clean"])
        if m["kind"] == "id_old_15_digit":
            assert re.fullmatch(r"\d{15}", m["value"]) and m["value"] == m["clean"][:6] + m["clean"][8:17]
        if m["kind"] == "id_unknown_area":
            assert m["value"][6:17] == m["clean"][6:17] and not is_known_area_code(m["value"][:6])
        if m["kind"] == OLD_NUMBER_KIND:
            assert m["feed"] in OLD_NUMBER_FEEDS and upgrade_id15(m["value"]) == m["clean"]
    assert {i["kind"] for i in city.truths["invalid_ids"]} <= set(UNREPAIRABLE)
    assert city.truths["invalid_ids"] == [m for m in city.truths["messy"] if m["kind"] in UNREPAIRABLE]


def test_death_rates_and_sources(city: City) -> None:
    counts = city.truths["counts"]
    assert 0.008 < counts["deaths"] / city.people < 0.016
    assert 0.8 < counts["civil_affairs.deaths"] / counts["deaths"] < 0.97
    assert 0.7 < counts["police.deaths"] / counts["deaths"] < 0.95
    assert counts["religious_affairs.deaths"] / counts["deaths"] < 0.2
    assert 0.002 <= counts["justice.prisoners"] / city.people <= 0.005


def test_cremation_follows_death(city: City) -> None:
    civil = valid_rows(city, "civil_affairs.deaths")
    both = civil.dropna(subset=["cremation_date"])
    lag = pd.to_datetime(both["cremation_date"]) - pd.to_datetime(both["death_date"])
    assert lag.dt.days.between(1, 7).all()


def test_truths_are_json(city: City, tmp_path: Path) -> None:
    path = tmp_path / "truth.json"
    city.write_truth(path)
    assert json.loads(path.read_text(encoding="utf-8")) == city.truths


# --- determinism and speed --------------------------------------------------------------------


def test_deterministic() -> None:
    a, b = generate_city(3000, seed=7), generate_city(3000, seed=7)
    pd.testing.assert_frame_equal(a.roll, b.roll)
    for feed in FEEDS:
        pd.testing.assert_frame_equal(a.feeds[feed], b.feeds[feed])
    assert a.truths == b.truths
    c = generate_city(3000, seed=8)
    assert not a.roll["id_number"].equals(c.roll["id_number"])


def test_small_city_does_not_fail() -> None:
    for people in (1, 50, 400):
        city = generate_city(people, seed=3)
        assert city.people == people


# --- one feed, streamed -----------------------------------------------------------------------


@pytest.mark.parametrize("feed", FEEDS)
def test_generate_feed_chunks(feed: str) -> None:
    chunks = list(generate_feed(feed, 2500, seed=5, chunk_rows=1000))
    assert [len(c) for c in chunks] == [1000, 1000, 500]
    whole = pd.concat(chunks, ignore_index=True)
    assert list(whole.columns) == contract_columns(feed)
    assert whole[KEYS[feed]].is_unique
    def valid(v: object) -> bool:
        text = normalize_id(v) or ""
        if feed in OLD_NUMBER_FEEDS and re.fullmatch(r"\d{15}", text):
            text = upgrade_id15(text)  # what the contract's upgrade15 does
        return is_valid_id(text) and is_known_area_code(text[:6])

    assert whole[ID_COLUMN[feed]].map(valid).mean() > 0.98
    again = pd.concat(generate_feed(feed, 2500, seed=5, chunk_rows=1000), ignore_index=True)
    pd.testing.assert_frame_equal(whole, again)
    if feed in INCREMENTAL:
        moments = pd.to_datetime(whole[INCREMENTAL[feed]], format="ISO8601")
        assert moments.max() < pd.Timestamp(AS_OF_START)
        assert moments.min() >= pd.Timestamp(AS_OF_START - timedelta(days=365))


def test_generate_feed_edge_cases() -> None:
    assert list(generate_feed("police.deaths", 0)) == []
    with pytest.raises(ValueError):
        next(generate_feed("no.such_feed", 10))


# --- invalid rows -------------------------------------------------------------------------------


def test_invalid_truths_name_rows_of_the_frames(city: City) -> None:
    seen = set()
    for i in city.truths["invalid"]:
        assert set(i) == {"feed", "key", "kind", "column", "rules"}
        assert i["kind"] in INVALID_KINDS and (i["kind"], i["column"]) in invalid_slots(i["feed"])
        assert i["rules"] == sorted(set(i["rules"])) and i["rules"], i
        assert not set(i["rules"]) & set(NOT_PLANTED[i["feed"]]), i
        assert (i["feed"], i["key"]) not in seen
        seen.add((i["feed"], i["key"]))
        row_of(city.feeds[i["feed"]], KEYS[i["feed"]], i["key"])
    for feed, reasons in NOT_PLANTED.items():
        assert feed in FEEDS and all(isinstance(r, str) and len(r) > 20 for r in reasons.values())


def test_invalid_share_per_feed_within_bounds() -> None:
    for people in (400, 10_000, 60_000):
        city = generate_city(people, seed=13)
        for feed, frame in city.feeds.items():
            added = {"justice.prisoners": "history_prisoner_rows", "tax_bureau.wage_income": "history_wage_rows"}
            n = len(frame) - city.truths["counts"].get(added.get(feed, ""), 0)  # clean rows planted after them
            if feed == "medical_insurance.bills":  # planted among the bills drawn before the medical plants
                n = city.truths["counts"]["bills_before_medical_plants"]
            planted = len(invalid_keys(city, feed))
            assert planted == invalid_count(n), (people, feed)
            if n < 10:
                assert planted == 0, (people, feed)
            elif n < 100:
                assert planted == 1, (people, feed)
            else:
                assert planted <= 0.03 * n, (people, feed)
            if n >= 1000:
                assert abs(planted / n - INVALID_RATE) < 0.001, (people, feed)


def test_demo_city_has_invalid_rows_in_every_feed(city: City) -> None:
    """fundx demo's city (10,000 people): every feed shows at least one quarantined row."""
    for feed in FEEDS:
        assert invalid_keys(city, feed), feed


def test_invalid_kinds_are_dealt_round_robin(city: City) -> None:
    for feed in FEEDS:
        counts: dict[tuple[str, str], int] = dict.fromkeys(invalid_slots(feed), 0)
        for i in city.truths["invalid"]:
            if i["feed"] == feed:
                counts[(i["kind"], i["column"])] += 1
        assert max(counts.values()) - min(counts.values()) <= 1, feed
    bills = {(i["kind"], i["column"]) for i in city.truths["invalid"] if i["feed"] == "medical_insurance.bills"}
    assert bills == set(invalid_slots("medical_insurance.bills"))  # a large feed gets every kind


def test_invalid_rows_spare_the_truths_and_the_messy_rows(city: City) -> None:
    truth_keys = {(f, k) for t in city.truths["dead_but_paid"] for f, k in t["known_to"].items()}
    truth_keys |= {("justice.prisoners", t["prisoner_id"]) for t in city.truths["prisoners_paid"]}
    truth_keys |= {(t["feed"], t["key"]) for t in city.truths["single_source_deaths"]}
    truth_keys |= {(f, k) for t in city.truths["date_conflicts"] for f, k in t["keys"].items()}
    truth_keys |= {("medical_insurance.bills", t["bill_id"]) for t in city.truths["overbilled"]}
    truth_keys |= {("market_regulation.businesses", t["uscc"]) for t in city.truths["subsidised_deregistered"]}
    truth_ids = {t["id_number"] for c in ("dead_but_paid", "prisoners_paid", "single_source_deaths",
                                           "date_conflicts", "duplicate_receipts", "unemployed_contributing",
                                           "frequent_patients") for t in city.truths[c]}
    truth_ids |= {i for t in city.truths["shared_accounts"] for i in t["id_numbers"]}
    repairable = {(m["feed"], m["key"]) for m in city.truths["messy"] if m["kind"] not in UNREPAIRABLE}
    planted = {(i["feed"], i["key"]) for i in city.truths["invalid"]}
    assert planted and not planted & truth_keys and not planted & repairable
    clean_ids = {(m["feed"], m["key"]): m["clean"] for m in city.truths["messy"] if m["kind"] in UNREPAIRABLE}
    for feed, key in planted:
        row = row_of(city.feeds[feed], KEYS[feed], key)
        assert clean_ids.get((feed, key), row[ID_COLUMN[feed]]) not in truth_ids, (feed, key)


def test_invalid_rows_are_deterministic() -> None:
    a, b, c = generate_city(3000, seed=7), generate_city(3000, seed=7), generate_city(3000, seed=8)
    assert a.truths["invalid"] and a.truths["invalid"] == b.truths["invalid"]
    assert a.truths["invalid"] != c.truths["invalid"]


def test_generate_feed_plants_invalid_rows_at_the_same_rate() -> None:
    for feed in FEEDS:
        invalid: list[dict] = []
        whole = pd.concat(list(generate_feed(feed, 2500, seed=5, chunk_rows=1000, invalid=invalid)), ignore_index=True)
        assert len(invalid) == 2 * invalid_count(1000) + invalid_count(500), feed
        assert {i["key"] for i in invalid} <= set(whole[KEYS[feed]]), feed
        again: list[dict] = []
        list(generate_feed(feed, 2500, seed=5, chunk_rows=1000, invalid=again))
        assert again == invalid


def test_the_agencies_doc_lists_every_kind_of_invalid_row() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "agencies.md").read_text(encoding="utf-8")
    section = doc.split("## Invalid rows the sandbox plants", 1)[1].split("\n## ", 1)[0]
    assert not [kind for kind in INVALID_KINDS if f"`{kind}`" not in section]
