"""Money paid about people: the medical-insurance bills and the wages employers declare to the tax bureau.

In a city, frequent patients (15-22 bills admitted in one month) and overbilled bills (1.6-3 x their
diagnosis's typical cost) are planted among the bills; the wages follow the office's contributions
(sandbox/city/office.py), from a stream of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from fundx.core.idcolumns import days_from_civil, make_uscc_matrix
from sandbox.city.draws import distinct_sample, local_seconds, past_days, plant_count
from sandbox.city.feeds import WAGE_INCOME, Rows
from sandbox.city.population import People
from sandbox.city.text import DAY, arrow_text, feed_frame, month_of, month_text, pick, serial_keys, time_text, to_days

# ICD-10 codes with a typical inpatient cost (yuan) and how often they are seen.
DIAGNOSES: tuple[tuple[str, float, float], ...] = (
    ("I10", 6000, 14), ("E11.9", 7000, 12), ("J18.9", 9000, 8), ("I25.1", 15000, 6),
    ("I63.9", 20000, 5), ("J44.9", 11000, 6), ("K29.7", 4000, 8), ("M54.5", 5000, 7),
    ("N18.9", 18000, 3), ("C34.9", 45000, 2), ("C16.9", 40000, 1.5), ("I50.9", 16000, 3),
    ("J06.9", 2000, 10), ("K80.2", 14000, 2.5), ("S72.0", 35000, 1.5), ("H25.9", 8000, 4),
    ("E78.5", 3000, 6), ("Z51.1", 12000, 2), ("F32.9", 5000, 1.5), ("R50.9", 3000, 2),
)
_DIAG_P = np.array([d[2] for d in DIAGNOSES]) / sum(d[2] for d in DIAGNOSES)
_DIAG_COST = np.array([d[1] for d in DIAGNOSES])
#: a bill's total is its typical cost times uniform(1 - BILL_SPREAD, 1 + BILL_SPREAD), plus 20: even the
#: highest natural bill stays well under 1.2 x its (diagnosis, setting) group's mean (bill_over_mean)
BILL_SPREAD = 0.10
#: planted overbilled bills: the typical cost times uniform(OVERBILLED_LOW, OVERBILLED_HIGH), plus 20
OVERBILLED_LOW, OVERBILLED_HIGH = 1.6, 3.0
#: frequent_visits: bills admitted in one month from which a person is a frequent patient (planted: 15-22)
MIN_VISITS = 15
#: the share of the contributions' (person, month)s whose employer also declares the wage to the tax bureau
WAGE_DECLARED_SHARE = 0.92


def bill_rows(rng: np.random.Generator, ppl: People, as_of_days: int, key_start: int,
              last_day: np.ndarray | None = None, spread: np.random.Generator | None = None,
              visit_days: np.ndarray | None = None) -> Rows:
    """Settled bills, one per person given (repeat people for more): outpatient or inpatient.

    last_day (per person): no admission after it (the day of death), rows past it are dropped.
    Totals are the diagnosis's typical cost (3 % of it for an outpatient visit) times
    uniform(1 - BILL_SPREAD, 1 + BILL_SPREAD), plus 20: no bill is far from its peers' mean.
    spread: the generator that draws that factor (generate_city's own stream for its new draws;
    ``rng`` then still draws what it drew before, so the other columns stay as they were).
    visit_days (per person): outpatient visits admitted on these days, settled 0-5 days later.
    """
    n = ppl.n
    settled_day = past_days(rng, as_of_days, n)
    inpatient = rng.random(n) < 0.35
    stay = np.where(inpatient, 1 + np.minimum(rng.exponential(7, n), 60).astype(np.int64), 0)
    lag = rng.integers(0, 6, n)
    discharged = settled_day - lag
    if visit_days is not None:
        inpatient[:] = False
        stay[:] = 0
        discharged = np.asarray(visit_days, dtype=np.int64)
        settled_day = np.minimum(discharged + lag, as_of_days - 1)
    admitted = discharged - stay
    diag = rng.choice(len(DIAGNOSES), n, p=_DIAG_P)
    base = np.where(inpatient, _DIAG_COST[diag], _DIAG_COST[diag] * 0.03)
    if spread is None:
        factor = rng.uniform(1 - BILL_SPREAD, 1 + BILL_SPREAD, n)
    else:
        rng.lognormal(0.0, 0.5, n)  # the draw the main stream always made here
        factor = spread.uniform(1 - BILL_SPREAD, 1 + BILL_SPREAD, n)
    total = np.round(base * factor + 20, 2)
    ratio = np.where(inpatient, rng.uniform(0.55, 0.9, n), rng.uniform(0.3, 0.8, n))
    fund = np.minimum(np.round(total * ratio, 2), total)
    settled = local_seconds(rng, settled_day, 7, 21)
    hospitals = ppl.place.hospitals
    hospital = rng.integers(0, len(hospitals), n)
    keep = np.ones(n, dtype=bool) if last_day is None else admitted <= last_day
    pos = np.flatnonzero(keep)
    pos = pos[np.argsort(settled[pos], kind="stable")]
    p = ppl.take(pos)
    dis = discharged[pos].astype("datetime64[D]").astype(object)
    dis[~inpatient[pos]] = None  # outpatient visits have no discharge
    settled_at = pd.Series(pd.to_datetime(settled[pos], unit="s")).dt.tz_localize("Asia/Shanghai")
    frame = feed_frame("medical_insurance.bills", {
        "bill_id": serial_keys("YB3301", key_start, len(pos), 12),
        "id_number": p.ids(),
        "patient_name": p.name,
        "hospital_code": pick(hospitals, hospital[pos]),
        "diagnosis_code": pick([d[0] for d in DIAGNOSES], diag[pos]),
        "admitted_on": pd.Series(admitted[pos].astype("datetime64[D]").astype(object), dtype=object),
        "discharged_on": pd.Series(dis, dtype=object),
        "total_amount": pd.Series(total[pos], dtype="float64"),
        "fund_amount": pd.Series(fund[pos], dtype="float64"),
        "settled_at": settled_at,
    })
    return Rows(frame, pos)


def _income_tax(wage: np.ndarray) -> np.ndarray:
    """A month's individual income tax withheld on a wage: after social insurance (10.5 %) and the
    5,000 yuan deduction, by the monthly brackets."""
    taxable = np.maximum(wage * 0.895 - 5000, 0)
    bounds = np.array([3000, 12000, 25000, 35000, 55000, 80000])
    rate = np.array([0.03, 0.10, 0.20, 0.25, 0.30, 0.35, 0.45])
    quick = np.array([0, 210, 1410, 2660, 4410, 7160, 15160])
    b = np.searchsorted(bounds, taxable, "left")
    return np.round(np.maximum(taxable * rate[b] - quick[b], 0), 2)


def wage_rows(rng: np.random.Generator, ppl: People, as_of_days: int, key_start: int,
              months: np.ndarray | None = None, employers: pa.Array | None = None,
              base: np.ndarray | None = None) -> Rows:
    """Wage declarations, one per (person, month) given: the wage is the contribution base (``base``)
    or a little above it, the tax withheld on it, filed by the employer in the first half of the next
    month (declarations not yet filed on as_of are not there)."""
    n = ppl.n
    if months is None:
        months = month_of(np.array([as_of_days]))[0] - rng.integers(2, 14, n)  # all filed before as_of
    if employers is None:
        body = rng.integers(0, 100_000_000, n)
        employers = arrow_text(make_uscc_matrix(np.ones(n, dtype=np.int64), ppl.place.codes[ppl.district], body))
    if base is None:
        base = np.clip(rng.lognormal(np.log(7000), 0.45, n), 2490, 36000)
    months = np.asarray(months, dtype=np.int64)
    wage = np.round(base * np.where(rng.random(n) < 0.6, 1.0, rng.uniform(1.0, 1.25, n)), 2)
    tax = _income_tax(wage)
    next_month = days_from_civil((months + 1) // 12, (months + 1) % 12 + 1, np.ones_like(months))
    declared = local_seconds(rng, next_month + rng.integers(0, 15, n), 8, 22)
    pos = np.flatnonzero(declared < as_of_days * DAY)
    pos = pos[np.argsort(declared[pos], kind="stable")]
    p = ppl.take(pos)
    frame = feed_frame(WAGE_INCOME, {
        "declaration_id": serial_keys("SB3301", key_start, len(pos), 12),
        "id_number": p.ids(),
        "name": p.name,
        "employer_uscc": employers.take(pa.array(pos)),
        "income_month": month_text(months[pos]),
        "wage_amount": pd.Series(wage[pos], dtype="float64"),
        "tax_amount": pd.Series(tax[pos], dtype="float64"),
        "declared_at": time_text(declared[pos]),
    })
    return Rows(frame, pos)


# --- the bills and wages of a city -------------------------------------------------------------


@dataclass
class Bills:
    """A city's bills: the frame, and the person (position in the city) of each row."""

    frame: pd.DataFrame
    person: np.ndarray
    key_start: int  # the first bill's key number (the frequent patients' visits are numbered after the bills)


def draw_bills(rng: np.random.Generator, spread: np.random.Generator, ppl: People, age: np.ndarray,
               death_day: np.ndarray, as_of_days: int) -> Bills:
    """Bills: about 1.5 a year per person, more for the old; none after death. ``spread``: the stream
    that draws the totals' spread (see bill_rows)."""
    n = ppl.n
    rate = np.exp(0.025 * (age - 50))
    per_person = rng.poisson(rate * 1.5 * n / rate.sum())
    bill_people = np.repeat(np.arange(n), per_person)
    rng.shuffle(bill_people)
    bill_key = int(rng.integers(1, 10**6))
    bills = bill_rows(rng, ppl.take(bill_people), as_of_days, bill_key, last_day=death_day[bill_people], spread=spread)
    return Bills(bills.frame, bill_people[bills.pos], bill_key)


@dataclass
class FrequentPatients:
    """The planted frequent patients: each with MIN_VISITS-22 bills admitted in one month."""

    pos: np.ndarray  # positions in the city
    month: np.ndarray  # the month (month number)
    visits: np.ndarray  # all the person's bills admitted that month


def add_frequent_patients(rng: np.random.Generator, ppl: People, bills: Bills, pool: np.ndarray, this_month: int,
                          as_of_days: int) -> FrequentPatients:
    """Frequent patients among ``pool`` (bool per person): outpatient visits added to their own bills,
    up to 15-22 bills admitted in one month; ``bills`` gets the visits, in settlement order."""
    bill_month = month_of(to_days(bills.frame["admitted_on"].to_numpy(dtype=object)))
    fp_pos = distinct_sample(rng, np.flatnonzero(pool), plant_count(ppl.n, 1 / 2500, 3))
    fp_month = this_month - rng.integers(2, 12, len(fp_pos))
    # each one's own bills admitted in that month (fp_pos is sorted and distinct: one pass over the bills)
    theirs = np.flatnonzero(np.isin(bills.person, fp_pos))
    who = np.searchsorted(fp_pos, bills.person[theirs])
    own = np.bincount(who[bill_month[theirs] == fp_month[who]], minlength=len(fp_pos)).astype(np.int64)
    fp_visits = np.maximum(rng.integers(MIN_VISITS, MIN_VISITS + 8, len(fp_pos)), own + 1)
    fp_extra = fp_visits - own
    first_day = days_from_civil(fp_month // 12, fp_month % 12 + 1, np.ones_like(fp_month))
    month_days = days_from_civil((fp_month + 1) // 12, (fp_month + 1) % 12 + 1, np.ones_like(fp_month)) - first_day
    fp_rep = np.repeat(fp_pos, fp_extra)
    visit = (np.repeat(first_day, fp_extra)
             + (rng.random(len(fp_rep)) * np.repeat(month_days, fp_extra)).astype(np.int64))
    visits = bill_rows(rng, ppl.take(fp_rep), as_of_days, bills.key_start + len(bills.frame), visit_days=visit)
    bill_frame = pd.concat([bills.frame, visits.frame], ignore_index=True)
    bill_order = bill_frame.sort_values(["settled_at", "bill_id"], kind="stable").index.to_numpy()
    bills.frame = bill_frame.take(bill_order).reset_index(drop=True)
    bills.person = np.concatenate([bills.person, fp_rep[visits.pos]])[bill_order]
    return FrequentPatients(fp_pos, fp_month, fp_visits)


@dataclass
class Overbilled:
    """The planted overbilled bills (row positions), with every bill's diagnosis, setting and total."""

    rows: np.ndarray
    diagnosis: np.ndarray  # DIAGNOSES index per bill
    inpatient: np.ndarray  # bool per bill
    total: np.ndarray  # total per bill, the overbilled ones' new totals in


def overbill(rng: np.random.Generator, bills: Bills, frequent: np.ndarray) -> Overbilled:
    """Overbill about 0.3 % of the bills at 1.6-3 times the typical cost, in place, none of a frequent
    patient's: in groups of 50 bills or more and at most 2 (or 1 %) of a group, so that each stays
    far above its group's mean."""
    bill_frame = bills.frame
    diag_idx = pd.Categorical(bill_frame["diagnosis_code"], categories=[d[0] for d in DIAGNOSES]).codes.astype(np.int64)
    inpatient = bill_frame["discharged_on"].notna().to_numpy()
    group = diag_idx * 2 + inpatient
    size = np.bincount(group, minlength=2 * len(DIAGNOSES))
    candidates = rng.permutation(np.flatnonzero((size[group] >= 50) & ~np.isin(bills.person, frequent)))
    rank = pd.Series(group[candidates]).groupby(group[candidates]).cumcount().to_numpy()
    candidates = candidates[rank < np.maximum(2, size // 100)[group[candidates]]]
    over = np.sort(candidates[:plant_count(len(bill_frame), 0.003, 3)])
    typical = _DIAG_COST[diag_idx[over]] * np.where(inpatient[over], 1.0, 0.03)
    total = bill_frame["total_amount"].to_numpy(dtype=float, copy=True)
    fund = bill_frame["fund_amount"].to_numpy(dtype=float, copy=True)
    new_total = np.round(typical * rng.uniform(OVERBILLED_LOW, OVERBILLED_HIGH, len(over)) + 20, 2)
    fund[over] = np.minimum(np.round(new_total * fund[over] / total[over], 2), new_total)
    total[over] = new_total
    bill_frame["total_amount"] = total
    bill_frame["fund_amount"] = fund
    return Overbilled(over, diag_idx, inpatient, total)


def declare_wages(rng: np.random.Generator, ppl: People, person: np.ndarray, month: np.ndarray, base: np.ndarray,
                  employer: np.ndarray, uscc: pa.Array, as_of_days: int) -> tuple[Rows, np.ndarray]:
    """Wage income declared to the tax bureau, from a stream of its own: the employers that contribute for
    a person mostly also declare the wage of that month, at the contribution base or above it.

    One contribution per (person, month, base, employer) given, in the contributions' order; ``employer``
    indexes ``uscc``, the businesses' credit codes. Returns (the rows, the person of each row).
    """
    declared = np.flatnonzero(rng.random(len(person)) < WAGE_DECLARED_SHARE)
    wages = wage_rows(rng, ppl.take(person[declared]), as_of_days, int(rng.integers(1, 10**6)),
                      months=month[declared], employers=uscc.take(pa.array(employer[declared])), base=base[declared])
    return wages, person[declared][wages.pos]
