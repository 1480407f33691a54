"""Employers over history (issue 19): contributions under an ended business, contributions with no wage declared.

Drawn from the history's stream (``[seed, 104]``) after the custody plants. It appends clean rows to the
office's contributions (City.office; City.contributions stays as it was) and to the tax bureau's wage
declarations:

- ``deregistered_contributing``: ended businesses (注销 / 吊销, their registry row reaching the stage as
  it is) under whose code contributions are paid for 1-2 months after the month they ended, for a
  person who has no other contribution and no entry on the roll (as every person planted here); look-alike: contributions up to the month it ended;
- ``no_wage_declared`` (contributions_without_wage): a person contributed for by one employer for 3-6
  months, none of them declared to the tax bureau (挂靠); look-alikes: 2 such months only, and a wage
  declared quarterly (under the last month of each quarter, three months' pay) for two quarters of
  contributions. Since the employers declare about WAGE_DECLARED_SHARE of their contributions'
  months (sandbox/city/payments.py) and the contracts quarantine some declarations, natural instances
  exist: the list holds them too (``planted`` false), computed from what the stage sees.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from fundx.core.codes import BUSINESS_ENDED
from sandbox.city.custody_history import Ground, month_numbers
from sandbox.city.draws import member, plant_count
from sandbox.city.office import CONTRIBUTION_RATE
from sandbox.city.office_feeds import CONTRIBUTIONS, ROLL, _first_day, _keys
from sandbox.city.payments import wage_rows
from sandbox.city.text import DAY, month_text, time_text

#: contributions_without_wage: months with no wage declared, per person and employer, from which it is a case
MIN_MONTHS = 3
#: a wage declared in any month of the same period of this many calendar months covers a month (the quarter)
PERIOD_MONTHS = 3


def plant_employers(g: Ground, office: dict[str, pd.DataFrame], businesses: pd.DataFrame, wages: pd.DataFrame,
                    wage_person: np.ndarray, touched_businesses: set[str], invalid_wages: set[str],
                    subsidised: set[str], running: np.ndarray) -> tuple[pd.DataFrame, dict[str, list[dict]]]:
    """Plant the employer cases (module docstring): the wage declarations with the new rows, and the truths
    {deregistered_contributing, no_wage_declared, lookalikes}. ``office`` changes in place."""
    rng, n = g.rng, g.ppl.n
    first_month = g.this_month - 12
    contributions = office[CONTRIBUTIONS]
    busy = set(contributions["id_number"].unique()) | set(office[ROLL]["id_number"].unique())  # no contributor, no one on the roll
    age_ok = (g.age >= 20) & (g.age < 58)
    pool = np.array([i for i in g.id_text[np.flatnonzero(g.free & age_ok)] if i not in busy], dtype=object)
    added: list[tuple[str, str, int, float]] = []  # (id, uscc, month, amount)
    declared: list[tuple[str, str, int, float]] = []  # wage rows: (id, uscc, month, wage)
    lookalikes: list[dict] = []

    def contribute(who: str, uscc: str, months: np.ndarray) -> float:
        wage = float(np.clip(rng.lognormal(np.log(7000), 0.45), 2490, 36000))
        amount = round(wage * CONTRIBUTION_RATE, 2)
        added.extend((who, uscc, int(m), amount) for m in months)
        return wage

    # ended businesses still contributing after the month they ended, or only up to it
    frame = businesses[businesses["status"].isin(BUSINESS_ENDED) & ~businesses["uscc"].isin(touched_businesses)
                       & ~businesses["uscc"].isin(subsidised)]
    end = pd.to_datetime(frame["deregistered_on"].where(frame["deregistered_on"].notna(), frame["changed_at"].str[:10]))
    end_month = (end.dt.year * 12 + end.dt.month - 1).to_numpy()
    ok = (end_month >= first_month + 1) & (end_month <= g.last_paid - 1)
    ended_uscc, ended_month = frame["uscc"].to_numpy(dtype=object)[ok], end_month[ok]
    ended_status, ended_day = frame["status"].to_numpy(dtype=object)[ok], end.dt.date.to_numpy(dtype=object)[ok]
    order = rng.permutation(len(ended_uscc))
    k_dereg = plant_count(n, 1 / 4000, 2)
    dereg_truths = []
    for rank, b in enumerate(order[:k_dereg + 2]):
        person = pool[g.take(pool, 1)]
        if not len(person):
            break
        e = int(ended_month[b])
        if rank < k_dereg:
            months = e + 1 + np.arange(int(rng.integers(1, 3)))
            months = months[months <= g.last_paid]
            contribute(str(person[0]), str(ended_uscc[b]), months)
            dereg_truths.append({"uscc": str(ended_uscc[b]), "status": str(ended_status[b]),
                                 "end_date": ended_day[b].isoformat(), "id_number": str(person[0]),
                                 "months": month_text(months).to_pylist()})
        else:
            contribute(str(person[0]), str(ended_uscc[b]), np.array([e - 1, e]))
            lookalikes.append({"rule": "deregistered_contributing", "kind": "contributions_until_end",
                               "uscc": str(ended_uscc[b]), "id_number": str(person[0])})

    # contributions with no wage declared: 3-6 months (planted), 2 months, or declared quarterly
    def employer() -> str:
        return str(running[int(rng.integers(0, len(running)))])

    if not len(running):  # a city too small to have a running business
        pool = pool[:0]
    planted_no_wage = {str(i) for i in pool[g.take(pool, plant_count(n, 1 / 2000, 3))]}
    for who in sorted(planted_no_wage):
        length = int(rng.integers(MIN_MONTHS, 7))
        begin = first_month + int(rng.integers(0, g.last_paid - length - first_month + 1))
        contribute(who, employer(), begin + np.arange(length))
    for who in pool[g.take(pool, 2)]:
        begin = first_month + int(rng.integers(0, g.last_paid - 2 - first_month + 1))
        contribute(str(who), employer(), begin + np.arange(2))
        lookalikes.append({"rule": "contributions_without_wage", "kind": "two_months_undeclared", "id_number": str(who)})
    quarters = [q for q in range(first_month // 3, g.last_paid // 3 + 1) if q * 3 >= first_month and q * 3 + 2 < g.last_paid]
    for who in pool[g.take(pool, 2 if len(quarters) >= 2 else 0)]:
        q0 = quarters[int(rng.integers(0, len(quarters) - 1))]
        uscc = employer()
        wage = contribute(str(who), uscc, q0 * 3 + np.arange(6))
        declared.extend((str(who), uscc, q * 3 + 2, round(wage * 3, 2)) for q in (q0, q0 + 1))
        lookalikes.append({"rule": "contributions_without_wage", "kind": "declared_quarterly", "id_number": str(who)})

    office[CONTRIBUTIONS] = _append_contributions(contributions, added)
    wages, person_of = _append_wages(g, wages, list(g.id_text[wage_person]), declared)
    truths = {"deregistered_contributing": _dereg_amounts(dereg_truths, office[CONTRIBUTIONS]),
              "no_wage_declared": _no_wage(g, office[CONTRIBUTIONS], wages, person_of, invalid_wages, planted_no_wage),
              "lookalikes": lookalikes}
    for t in truths["deregistered_contributing"]:  # the people contributed for: named, so no later plant takes them
        t["id_numbers"] = [t.pop("id_number")]
    return wages, truths


def _append_contributions(contributions: pd.DataFrame, added: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    """The office's contributions with the rows added, keyed after the last, ordered by the time paid."""
    if not added:
        return contributions
    months = np.array([a[2] for a in added], dtype=np.int64)
    numbers = np.arange(len(contributions) + 1, len(contributions) + 1 + len(added), dtype=np.int64)
    paid_at = (_first_day(months) + 14 + numbers % 10) * DAY + 14 * 3600 + (numbers * 7919) % 3600
    new = pd.DataFrame({
        "contribution_id": _keys("CT", numbers, 10), "id_number": [a[0] for a in added],
        "employer_uscc": [a[1] for a in added], "month": month_text(months).to_pylist(),
        "amount": pd.Series([a[3] for a in added], dtype="float64"), "paid_at": time_text(paid_at).to_pylist()})
    frame = pd.concat([contributions, new], ignore_index=True)
    for column in ("contribution_id", "id_number", "employer_uscc", "month", "paid_at"):
        frame[column] = frame[column].astype(object)
    return frame.sort_values(["paid_at", "contribution_id"], kind="stable").reset_index(drop=True)


def _append_wages(g: Ground, wages: pd.DataFrame, person_of: list[str],
                  declared: list[tuple[str, str, int, float]]) -> tuple[pd.DataFrame, list[str]]:
    """The wage declarations with the rows given (all filed before as_of), keyed after the highest key and in
    the bureau's order, and the person of each row (``person_of``: of the rows before)."""
    if not declared:
        return wages, person_of
    numbers = pd.to_numeric(wages["declaration_id"].astype(str).str[6:], errors="coerce")
    key_start = int(numbers.max()) + 1 if numbers.notna().any() else 1
    pos = np.array([g.pos_of[d[0]] for d in declared], dtype=np.int64)
    rows = wage_rows(g.rng, g.ppl.take(pos), g.as_of_days, key_start, months=np.array([d[2] for d in declared]),
                     employers=pa.array([d[1] for d in declared]), base=np.array([d[3] for d in declared]))
    assert len(rows.pos) == len(declared)
    frame = pd.concat([wages, rows.frame], ignore_index=True)
    person = person_of + [declared[int(k)][0] for k in rows.pos]
    order = frame.sort_values(["declared_at", "declaration_id"], kind="stable").index.to_numpy()  # as the bureau pages
    return frame.take(order).reset_index(drop=True), [person[k] for k in order]


def _dereg_amounts(truths: list[dict], contributions: pd.DataFrame) -> list[dict]:
    """Each planted ended business with the contributions paid under it after the month it ended."""
    # the planted businesses' rows first, in one pass: a comparison over every row per business grows with n^2
    contributions = contributions[member(contributions["employer_uscc"].to_numpy(dtype=object), {t["uscc"] for t in truths})]
    for t in truths:
        c = contributions[(contributions["employer_uscc"] == t["uscc"]) & contributions["month"].isin(t["months"])]
        t["amount"] = round(float(c["amount"].sum()), 2)
    return sorted(truths, key=lambda t: t["uscc"])


def _no_wage(g: Ground, contributions: pd.DataFrame, wages: pd.DataFrame, person_of: list[str],
             invalid_wages: set[str], planted: set[str]) -> list[dict]:
    """Every (person, employer) with MIN_MONTHS or more months contributed for and no wage declared by the
    employer in the same quarter, among the months whose declarations were due before as_of (all but the
    last): from the declarations the stage sees (the quarantined ones left out)."""
    w = pd.DataFrame({"id_number": np.asarray(person_of, dtype=object),
                      "employer_uscc": wages["employer_uscc"].to_numpy(dtype=object),
                      "key": wages["declaration_id"].to_numpy(dtype=object)})
    seen = ~w["key"].isin(invalid_wages)
    w = w[seen].assign(period=month_numbers(wages.loc[seen.to_numpy(), "income_month"].astype(str)) // PERIOD_MONTHS)
    c = contributions.assign(m=month_numbers(contributions["month"]))
    c = c[c["m"] < g.last_paid]
    c = c.assign(period=c["m"] // PERIOD_MONTHS).merge(
        w[["id_number", "employer_uscc", "period"]].drop_duplicates().astype(
            {"id_number": c["id_number"].dtype, "employer_uscc": c["employer_uscc"].dtype, "period": c["m"].dtype}),
        how="left",
        indicator=True,
        on=["id_number", "employer_uscc", "period"])
    gap = c[c["_merge"] == "left_only"]
    out = []
    for (i, uscc), grp in gap.groupby(["id_number", "employer_uscc"], sort=True):
        if grp["m"].nunique() >= MIN_MONTHS:
            out.append({"id_number": str(i), "employer_uscc": str(uscc), "months": sorted(set(grp["month"])),
                        "amount": round(float(grp["amount"].sum()), 2), "planted": str(i) in planted})
    return out
