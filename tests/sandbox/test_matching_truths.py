"""The generator's truths are exactly the instances of the matching rules (docs/matching.md).

Each rule is written again here as a plain pandas oracle of its definition, applied to what the
matching stage would see: the office's tables as generated, and the feeds without the rows the
contracts quarantine (truths["invalid"]), identity numbers normalised (15-digit ones upgraded where
the contract says so) and messy dates read. Every
oracle must return exactly its truth list: the planted cases, and nothing natural.
"""

from __future__ import annotations

import re
from datetime import date

import numpy as np
import pandas as pd
import pytest

from fundx.core.creditcodes import is_valid_uscc
from fundx.core.identity import normalize_id, upgrade_id15
from sandbox.city import DEFAULT_SEED, City, generate_city
from sandbox.city.feeds import DEATH_FEEDS
from sandbox.city.payments import MIN_VISITS
from sandbox.city.population import OLD_NUMBER_FEEDS

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
EXCLUSIVE = {("basic_pension", "resident_pension"), ("basic_pension", "unemployment"),
             ("resident_pension", "unemployment")}
OVER = 0.20
MIN_PEERS = 30
MIN_PEOPLE = 3


@pytest.fixture(scope="module", params=[(3_000, DEFAULT_SEED), (3_000, 7), (10_000, DEFAULT_SEED), (10_000, 7),
                                        (40_000, DEFAULT_SEED), (40_000, 7)], ids=lambda p: f"{p[0]}-{p[1]}")
def city(request) -> City:
    people, seed = request.param
    return generate_city(people, seed=seed)


# --- what the stage sees ----------------------------------------------------------------------------


def received(city: City, feed: str) -> pd.DataFrame:
    """A feed without its quarantined rows, identity numbers normalised."""
    frame = city.feeds[feed]
    bad = {i["key"] for i in city.truths["invalid"] if i["feed"] == feed}
    frame = frame[~frame[KEYS[feed]].isin(bad)].copy()
    for column in ("id_number", "legal_rep_id_number"):
        if column in frame:
            frame[column] = frame[column].map(normalize_id)
    if feed in OLD_NUMBER_FEEDS:  # the contracts of paper-born registers upgrade 15-digit numbers (upgrade15)
        frame["id_number"] = frame["id_number"].map(
            lambda v: upgrade_id15(v) if isinstance(v, str) and re.fullmatch(r"\d{15}", v) else v)
    return frame


_DATE = re.compile(r"^(\d{4})(?:-|/|年)?(\d{1,2})(?:-|/|月)?(\d{1,2})日?$")


def day(value: object) -> date | None:
    """A date as an agency writes it: ISO, 2026/3/5, 2026年3月5日, 20260305, or a date object."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, date):
        return value
    text = str(value)
    if len(text) == 8 and text.isdigit():
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    m = _DATE.match(text)
    assert m, text
    return date(int(m[1]), int(m[2]), int(m[3]))


def month_no(value: date | str) -> int:
    if isinstance(value, str):
        return int(value[:4]) * 12 + int(value[5:7]) - 1
    return value.year * 12 + value.month - 1


def month_nos(texts: pd.Series) -> pd.Series:
    """month_no of a column of YYYY-MM texts."""
    return texts.str[:4].astype(int) * 12 + texts.str[5:7].astype(int) - 1


def month_text(m: int) -> str:
    return f"{m // 12:04d}-{m % 12 + 1:02d}"


def roll(city: City) -> pd.DataFrame:
    r = city.roll.copy()
    r["pt"] = month_nos(r["paid_through"])
    r["start"] = month_nos(r["start_month"])
    return r


# --- the oracles ----------------------------------------------------------------------------------


def paid_after_death(city: City) -> dict:
    parts = []
    for feed in DEATH_FEEDS:
        f = received(city, feed)
        parts.append(pd.DataFrame({"id_number": f["id_number"], "died": f["death_date"].map(day)}))
    deaths = pd.concat(parts).dropna()
    latest = deaths.groupby("id_number")["died"].max()  # the consolidated date: the latest among the sources
    r = roll(city)
    r = r[r["id_number"].isin(latest.index)].copy()
    r["died"] = r["id_number"].map(latest)
    r["months"] = r["pt"] - r["died"].map(month_no)
    r = r[r["months"] > 0]
    return {i: (g["died"].iloc[0].isoformat(), int(g["months"].max()),
                round(float((g["months"] * g["monthly_amount"]).sum()), 2)) for i, g in r.groupby("id_number")}


def custody_periods(city: City) -> pd.DataFrame:
    """The custody periods the stage sees: in custody (在押: open, or up to a past sentence end) and released
    (刑满释放: up to the sentence end); months after ``since`` up to ``until`` (NaN: open) are inside."""
    j = received(city, "justice.prisoners")
    j = j[j["custody_status"].isin(["在押", "刑满释放"])].copy()
    j["since"] = j["admitted_on"].map(day).map(month_no)
    end = j["sentence_end"].map(day)
    j["until"] = np.where((j["custody_status"] == "刑满释放") | (end < city.as_of), end.map(month_no), np.nan)
    assert j["id_number"].is_unique
    return j[["id_number", "prisoner_id", "custody_status", "since", "until"]]


def inside(frame: pd.DataFrame, months: pd.Series) -> pd.Series:
    return (months > frame["since"]) & (frame["until"].isna() | (months <= frame["until"]))


def paid_in_custody(city: City) -> dict:
    """Months the office's payment ledger paid inside a custody period: {id: (months, amount)}."""
    led = city.office["social_insurance.payments"].merge(custody_periods(city), on="id_number")
    led = led[inside(led, month_nos(led["month"]))]
    return {i: (sorted(set(g["month"])), round(float(g["amount"].sum()), 2)) for i, g in led.groupby("id_number")}


def contributions_in_custody(city: City) -> dict:
    c = city.office["social_insurance.contributions"].merge(custody_periods(city), on="id_number")
    c = c[inside(c, month_nos(c["month"]))]
    return {i: (sorted(set(g["month"])), round(float(g["amount"].sum()), 2)) for i, g in c.groupby("id_number")}


def retired_in_custody(city: City) -> dict:
    """Basic pensions begun inside a custody period, with all the ledger paid on them."""
    r = city.office["social_insurance.benefit_roll"]
    r = r[r["scheme"] == "basic_pension"].merge(custody_periods(city), on="id_number")
    r = r[inside(r, month_nos(r["start_month"]))]
    led = city.office["social_insurance.payments"]
    out = {}
    for i, g in r.groupby("id_number"):
        paid = led[led["entry_id"].isin(g["entry_id"])]
        out[i] = (g["start_month"].min(), int(paid["month"].nunique()), round(float(paid["amount"].sum()), 2))
    return out


def shared_account(city: City) -> dict:
    r = roll(city)
    active = r[r["status"] == "active"]
    people = active.groupby("bank_account")["id_number"].nunique()
    shared = active[active["bank_account"].isin(people.index[people >= MIN_PEOPLE])]
    return {account: (sorted(set(g["id_number"])), round(float(g["monthly_amount"].sum()), 2))
            for account, g in shared.groupby("bank_account")}


def duplicate_receipt(city: City) -> dict:
    r = roll(city)
    active = r[r["status"] == "active"]
    pairs = active.merge(active, on="id_number", suffixes=("_a", "_b"))
    pairs = pairs[pairs["benefit_type_a"] < pairs["benefit_type_b"]]
    pairs = pairs[[(a, b) in EXCLUSIVE for a, b in zip(pairs["benefit_type_a"], pairs["benefit_type_b"])]].copy()
    pairs["overlap"] = (np.minimum(pairs["pt_a"], pairs["pt_b"]) - np.maximum(pairs["start_a"], pairs["start_b"]) + 1)
    pairs = pairs[pairs["overlap"] > 0]
    out = {}
    for p in pairs.itertuples(index=False):
        assert p.id_number not in out  # one pair per person in the sandbox
        smaller = min(p.monthly_amount_a, p.monthly_amount_b)
        out[p.id_number] = ([p.benefit_type_a, p.benefit_type_b], int(p.overlap),
                            {p.benefit_type_a: p.monthly_amount_a, p.benefit_type_b: p.monthly_amount_b},
                            round(p.overlap * smaller, 2))
    return out


def unemployed_contributing(city: City) -> dict:
    r = roll(city)
    u = r[(r["status"] == "active") & (r["benefit_type"] == "unemployment")]
    assert u["id_number"].is_unique
    c = city.contributions.assign(m=month_nos(city.contributions["month"]))
    both = u.merge(c, on="id_number")
    both = both[(both["m"] >= both["start"]) & (both["m"] <= both["pt"])]
    out = {}
    for i, g in both.groupby("id_number"):
        months = sorted(set(g["month"]))
        monthly = float(g["monthly_amount"].iloc[0])
        out[i] = (months, monthly, round(len(months) * monthly, 2))
    return out


def frequent_visits(city: City) -> dict:
    b = received(city, "medical_insurance.bills")
    b = b.assign(m=b["admitted_on"].map(day).map(month_text_of_date))
    visits = b.groupby(["id_number", "m"]).size()
    visits = visits[visits >= MIN_VISITS]
    return {(i, m): int(v) for (i, m), v in visits.items()}


def month_text_of_date(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}"


def bill_ratios(city: City) -> pd.DataFrame:
    """Each received bill in a group of MIN_PEERS or more, with its total over its group's mean."""
    b = received(city, "medical_insurance.bills")
    b = b.assign(setting=np.where(b["discharged_on"].notna(), "inpatient", "outpatient"))
    g = b.groupby(["diagnosis_code", "setting"])["total_amount"]
    b = b.assign(mean=g.transform("mean"), peers=g.transform("size"))
    b = b[b["peers"] >= MIN_PEERS]
    return b.assign(ratio=b["total_amount"] / b["mean"])


def bill_over_mean(city: City) -> dict:
    b = bill_ratios(city)
    b = b[b["total_amount"] > (1 + OVER) * b["mean"]]
    return {p.bill_id: (p.diagnosis_code, p.setting, p.total_amount) for p in b.itertuples(index=False)}


def ended_businesses(city: City) -> pd.DataFrame:
    f = received(city, "market_regulation.businesses")
    f = f[f["status"].isin(["注销", "吊销"])].copy()
    changed = f["changed_at"].str[:10].map(date.fromisoformat)
    f["end"] = [day(d) if s == "注销" else c for s, d, c in zip(f["status"], f["deregistered_on"], changed)]
    return f


def deregistered_subsidised(city: City) -> dict:
    f = ended_businesses(city)
    s = city.subsidies.merge(f[["uscc", "status", "end"]], on="uscc")
    s = s[s["month"].map(month_no) > s["end"].map(month_no)]
    return {u: (g["status"].iloc[0], g["end"].iloc[0].isoformat(), sorted(set(g["month"])),
                round(float(g["amount"].sum()), 2)) for u, g in s.groupby("uscc")}


def deregistered_contributing(city: City) -> dict:
    f = ended_businesses(city)
    c = city.office["social_insurance.contributions"].merge(f[["uscc", "status", "end"]], left_on="employer_uscc",
                                                            right_on="uscc")
    c = c[c["month"].map(month_no) > c["end"].map(month_no)]
    return {u: (g["status"].iloc[0], g["end"].iloc[0].isoformat(), sorted(set(g["month"])),
                round(float(g["amount"].sum()), 2)) for u, g in c.groupby("uscc")}


def contributions_without_wage(city: City, min_months: int = 3, period: int = 3) -> dict:
    """(person, employer) -> (months, amount): months contributed for, due to be declared before as_of's month
    began (all but the last), with no wage of the person declared by the employer in the same quarter."""
    w = received(city, "tax_bureau.wage_income")
    declared = set(zip(w["id_number"], w["employer_uscc"], month_nos(w["income_month"]) // period))
    c = city.office["social_insurance.contributions"].copy()
    c["m"] = month_nos(c["month"])
    c = c[c["m"] < month_no(city.as_of) - 1]
    gap = c[[(i, u, m // period) not in declared for i, u, m in zip(c["id_number"], c["employer_uscc"], c["m"])]]
    return {k: (sorted(set(g["month"])), round(float(g["amount"].sum()), 2))
            for k, g in gap.groupby(["id_number", "employer_uscc"]) if g["m"].nunique() >= min_months}


def lookalikes(city: City, rule: str, field: str = "id_number") -> set[str]:
    found = {str(c[field]) for c in city.truths["lookalikes"] if c["rule"] == rule}
    assert len(found) >= 2, rule
    return found


# --- the tests ----------------------------------------------------------------------------------


def test_paid_after_death(city: City) -> None:
    truth = {t["id_number"]: (t["death_date"], t["months_after_death"], t["amount"])
             for t in city.truths["dead_but_paid"]}
    assert truth and paid_after_death(city) == truth
    for t in city.truths["dead_but_paid"]:
        assert t["amount"] == round(t["months_after_death"] * t["monthly_amount"], 2)


def test_paid_in_custody(city: City) -> None:
    found = paid_in_custody(city)
    released = {t["id_number"]: (t["paid_months"], t["amount"]) for t in city.truths["released_paid"]}
    in_custody = {t["id_number"] for t in city.truths["prisoners_paid"]}
    assert released and in_custody and set(found) == set(released) | in_custody
    assert {i: found[i] for i in released} == released
    for t in city.truths["prisoners_paid"]:  # the roll's months since admission; the ledger keeps its last 12
        assert t["amount"] == round(t["months"] * t["monthly_amount"], 2)
        months, amount = found[t["id_number"]]
        assert 1 <= len(months) <= t["months"] and amount == round(len(months) * t["monthly_amount"], 2)
    assert not lookalikes(city, "paid_in_custody") & set(found)
    # every released prisoner on the roll: the ledger pays nothing inside the custody, but the planted ones
    periods = custody_periods(city)
    assert set(periods.loc[periods["custody_status"] == "刑满释放", "id_number"]) & set(found) == set(released)


def test_contributions_in_custody(city: City) -> None:
    truth = {t["id_number"]: (t["months"], t["amount"]) for t in city.truths["contributed_in_custody"]}
    assert len(truth) >= 2 and contributions_in_custody(city) == truth
    assert not lookalikes(city, "contributions_in_custody") & set(truth)


def test_retired_in_custody(city: City) -> None:
    truth = {t["id_number"]: (t["start_month"], t["months"], t["amount"]) for t in city.truths["retired_in_custody"]}
    assert sum(t["planted"] for t in city.truths["retired_in_custody"]) >= 2 and retired_in_custody(city) == truth
    assert not lookalikes(city, "retired_in_custody") & set(truth)


def test_deregistered_contributing(city: City) -> None:
    truth = {t["uscc"]: (t["status"], t["end_date"], t["months"], t["amount"])
             for t in city.truths["deregistered_contributing"]}
    assert len(truth) >= 2 and deregistered_contributing(city) == truth
    assert all(1 <= len(t["months"]) <= 2 for t in city.truths["deregistered_contributing"])
    assert not lookalikes(city, "deregistered_contributing", "uscc") & set(truth)


def test_contributions_without_wage(city: City) -> None:
    truth = {(t["id_number"], t["employer_uscc"]): (t["months"], t["amount"]) for t in city.truths["no_wage_declared"]}
    assert sum(t["planted"] for t in city.truths["no_wage_declared"]) >= 3
    assert contributions_without_wage(city) == truth
    people = {i for i, _ in truth}
    assert not lookalikes(city, "contributions_without_wage") & people
    # the look-alikes: two months undeclared, and wages declared quarterly, which month by month would be a case
    strict = {i for i, _ in contributions_without_wage(city, period=1)}
    quarterly = {c["id_number"] for c in city.truths["lookalikes"] if c["kind"] == "declared_quarterly"}
    assert quarterly <= strict and not quarterly & people


def test_shared_account(city: City) -> None:
    truth = {t["bank_account"]: (sorted(t["id_numbers"]), t["amount"]) for t in city.truths["shared_accounts"]}
    assert truth and shared_account(city) == truth


def test_duplicate_receipt(city: City) -> None:
    truth = {t["id_number"]: (t["schemes"], t["overlap_months"], t["monthly_amounts"], t["amount"])
             for t in city.truths["duplicate_receipts"]}
    assert len(truth) >= 3 and duplicate_receipt(city) == truth
    for t in city.truths["duplicate_receipts"]:
        assert t["schemes"] == sorted(t["schemes"]) and tuple(t["schemes"]) in EXCLUSIVE and t["overlap_months"] >= 1
    assert (city.roll.groupby(["id_number", "benefit_type"]).size() == 1).all()  # one row per (person, scheme)


def test_unemployed_contributing(city: City) -> None:
    truth = {t["id_number"]: (t["months"], t["monthly_amount"], t["amount"])
             for t in city.truths["unemployed_contributing"]}
    assert len(truth) >= 3 and unemployed_contributing(city) == truth


def test_frequent_visits(city: City) -> None:
    truth = {(t["id_number"], t["month"]): t["visits"] for t in city.truths["frequent_patients"]}
    assert len(truth) >= 3 and frequent_visits(city) == truth
    assert all(MIN_VISITS <= v <= 22 for v in truth.values())


def test_bill_over_mean(city: City) -> None:
    truth = {t["bill_id"]: (t["diagnosis_code"], t["setting"], t["total_amount"]) for t in city.truths["overbilled"]}
    assert len(truth) >= 3 and bill_over_mean(city) == truth
    # with a margin: quarantining other rows would not move a bill across the line
    b = bill_ratios(city)
    planted = b["bill_id"].isin(truth)
    assert b.loc[~planted, "ratio"].max() < 1.16
    assert b.loc[planted, "ratio"].min() > 1.3


def test_deregistered_subsidised(city: City) -> None:
    truth = {t["uscc"]: (t["status"], t["end_date"], t["months"], t["amount"])
             for t in city.truths["subsidised_deregistered"]}
    assert len(truth) >= 3 and deregistered_subsidised(city) == truth
    assert all(1 <= len(t["months"]) <= 6 for t in city.truths["subsidised_deregistered"])


def test_office_tables(city: City) -> None:
    as_of_month = month_no(city.as_of)
    c, s = city.contributions, city.subsidies
    assert list(c.columns) == ["id_number", "employer_uscc", "month", "amount"]
    assert list(s.columns) == ["uscc", "subsidy_type", "month", "amount"]
    for frame in (c, s):
        months = month_nos(frame["month"])
        assert months.between(as_of_month - 12, as_of_month - 1).all()
        assert (frame["amount"] > 0).all() and frame["amount"].dtype == "float64"
    firms = city.feeds["market_regulation.businesses"].set_index("uscc")["status"]
    running = received(city, "market_regulation.businesses").set_index("uscc")["status"]
    # employers are generated businesses (a few codes were then mistyped in the feed: invalid rows)
    mistyped = sum(1 for i in city.truths["invalid"] if i["feed"] == "market_regulation.businesses"
                   and i["kind"] in ("uscc_check", "uscc_truncated"))
    assert all(is_valid_uscc(u) for u in set(c["employer_uscc"]))
    assert len(set(c["employer_uscc"]) - set(firms.index)) <= mistyped
    assert running.reindex(c["employer_uscc"]).dropna().isin(["存续", "在业"]).all()
    planted = {t["uscc"] for t in city.truths["subsidised_deregistered"]}
    natural = s[~s["uscc"].isin(planted)]
    assert len(set(natural["uscc"]) - set(firms.index)) <= mistyped
    assert running.reindex(natural["uscc"]).dropna().isin(["存续", "在业"]).all()
    assert set(s["subsidy_type"]) == {"稳岗返还", "社保补贴", "一次性扩岗补助"}
    r = city.roll
    assert list(r.columns) == ["id_number", "name", "benefit_type", "monthly_amount", "bank_account", "status",
                               "paid_through", "start_month", "months_paid", "paying_district"]
    assert (r["start_month"] <= r["paid_through"]).all()
    assert (r["months_paid"] == month_nos(r["paid_through"]) - month_nos(r["start_month"]) + 1).all()
