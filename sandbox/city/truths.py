"""The planted truths, read back from the built frames: exactly the cases the matching stage's rules must find.

Each list is built from the frames as they are before any messiness or invalid row is planted (the
keys are the rows' keys, identity numbers the clean ones), so it is true of them; generate_city's
docstring describes every list.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from sandbox.city.deaths import DeathReports, Deaths
from sandbox.city.feeds import DEATH_FEEDS, HOSPITAL_DEATHS
from sandbox.city.office import BENEFITS, Contributions, DuplicateReceipts, Roll, Subsidies
from sandbox.city.payments import DIAGNOSES, FrequentPatients, Overbilled
from sandbox.city.registers import CUSTODY, Prisoners
from sandbox.city.text import EPOCH, month_of


def _iso(day: int) -> str:
    """ISO text of a day number."""
    return (EPOCH + timedelta(days=int(day))).isoformat()


def _month(m: int) -> str:
    """YYYY-MM of a month number."""
    return f"{int(m) // 12:04d}-{int(m) % 12 + 1:02d}"


class DeathTruths:
    """The truths about deaths: pensions paid after them, the single-source ones, conflicting and near dates."""

    def __init__(self, deaths: Deaths, reports: DeathReports, id_text: np.ndarray) -> None:
        self.deaths, self.reports, self.id_text = deaths, reports, id_text
        self.key_of = {feed: reports.keys(feed) for feed in reports.rows}

    def _known_to(self, j: int) -> list[str]:
        return [f for f in DEATH_FEEDS if self.reports.known[f][j]]

    def dead_but_paid(self, roll: Roll, still_paid: np.ndarray) -> list[dict]:
        """paid_after_death: died before as_of, the roll still active and paid after the death month."""
        deaths, death_month = self.deaths, self.deaths.month()
        dead_roll = roll.index[deaths.pos]
        dbp = []
        for j in still_paid:
            ri = int(dead_roll[j])
            months = int(roll.paid_through[ri] - death_month[j])
            dbp.append({
                "id_number": self.id_text[deaths.pos[j]],
                "death_date": _iso(deaths.true[j]),
                "paid_through": _month(roll.paid_through[ri]),
                "months_after_death": months,
                "monthly_amount": float(roll.amount[ri]),
                "amount": round(months * float(roll.amount[ri]), 2),
                "known_to": {f: self.key_of[f][int(j)] for f in self._known_to(int(j))},
            })
        return dbp

    def single_source(self) -> list[dict]:
        """Deaths known to exactly one of the four death feeds."""
        deaths = self.deaths
        return [
            {"id_number": self.id_text[deaths.pos[j]], "feed": f, "key": self.key_of[f][int(j)],
             "death_date": _iso(deaths.true[j])}
            for j in np.flatnonzero(self.reports.n_sources == 1) for f in self._known_to(int(j))
        ]

    def _recorded(self) -> dict[str, np.ndarray]:
        deaths = self.deaths
        return {"civil_affairs.deaths": deaths.true, "police.deaths": deaths.police,
                "religious_affairs.deaths": deaths.religious, HOSPITAL_DEATHS: deaths.true}

    def date_conflicts(self) -> list[dict]:
        """The same death with dates 3-40 days apart in two feeds."""
        deaths, recorded = self.deaths, self._recorded()
        conflicts = []
        for j in deaths.conflict:
            present = self._known_to(int(j))
            dates = {f: int(recorded[f][j]) for f in present}
            if len(present) >= 2 and len(set(dates.values())) >= 2:
                conflicts.append({
                    "id_number": self.id_text[deaths.pos[j]],
                    "death_date": _iso(deaths.true[j]),
                    "dates": {f: _iso(v) for f, v in dates.items()},
                    "keys": {f: self.key_of[f][int(j)] for f in present},
                    "days_apart": int(max(dates.values()) - min(dates.values())),
                })
        return conflicts

    def near_dates(self) -> list[dict]:
        """The same death a day apart in two feeds: not a conflict."""
        deaths, recorded = self.deaths, self._recorded()
        near_dates = []
        for j in deaths.near:
            present = self._known_to(int(j))
            dates = {f: int(recorded[f][j]) for f in present}
            if len(set(dates.values())) == 2:  # the source that wrote the day before has its row
                near_dates.append({
                    "id_number": self.id_text[deaths.pos[j]], "death_date": _iso(deaths.true[j]),
                    "dates": {f: _iso(v) for f, v in dates.items()},
                    "keys": {f: self.key_of[f][int(j)] for f in present}, "days_apart": 1,
                })
        return near_dates


def prisoners_paid(prisoners: Prisoners, roll: Roll, id_text: np.ndarray, as_of_days: int) -> list[dict]:
    """paid_in_custody: 在押 for at least two months, the roll still active."""
    custody_until = np.where(prisoners.end < as_of_days, month_of(prisoners.end), np.iinfo(np.int64).max // 4)
    found = []
    for i, p in enumerate(prisoners.pos[:len(prisoners.paid)]):
        ri = int(roll.index[p])
        months = int(min(roll.paid_through[ri], custody_until[i]) - month_of(prisoners.admitted[i:i + 1])[0])
        found.append({
            "id_number": id_text[p], "prisoner_id": str(prisoners.rows.frame.iloc[i, 0]),
            "admitted_on": _iso(prisoners.admitted[i]), "custody_status": CUSTODY[0],
            "monthly_amount": float(roll.amount[ri]), "months": months,
            "amount": round(months * float(roll.amount[ri]), 2),
        })
    return found


def shared_accounts(groups: list[np.ndarray], roll: Roll, id_text: np.ndarray) -> list[dict]:
    """shared_account: one bank account receiving the benefits of 3-6 unrelated people."""
    return [
        {"bank_account": roll.account[roll.index[g[0]]].tobytes().decode("ascii"),
         "id_numbers": [id_text[p] for p in g],
         "amount": round(float(roll.amount[roll.index[g]].sum()), 2)}
        for g in groups
    ]


def duplicate_receipts(dups: DuplicateReceipts, roll: Roll, id_text: np.ndarray, last_paid: int) -> list[dict]:
    """duplicate_receipt: a second active entry on a scheme the first excludes."""
    found = []
    for i, p in enumerate(dups.pos):
        ri = int(dups.first[i])
        overlap = int(min(roll.paid_through[ri], last_paid) - max(roll.start[ri], dups.start[i]) + 1)
        monthly = {BENEFITS[roll.benefit[ri]]: float(roll.amount[ri]), BENEFITS[dups.benefit[i]]: float(dups.amount[i])}
        found.append({
            "id_number": id_text[p], "schemes": sorted(monthly), "overlap_months": overlap,
            "monthly_amounts": dict(sorted(monthly.items())), "amount": round(overlap * min(monthly.values()), 2),
        })
    return found


def unemployed_contributing(contributions: Contributions, roll: Roll, id_text: np.ndarray) -> list[dict]:
    """Contributions paid in months of an active unemployment entry."""
    found = []
    for i, p in enumerate(contributions.unemployed):
        per_month = float(roll.amount[roll.index[p]])
        months = int(contributions.unemployed_months[i])
        found.append({
            "id_number": id_text[p],
            "months": [_month(contributions.unemployed_begin[i] + k) for k in range(months)],
            "monthly_amount": per_month, "amount": round(months * per_month, 2),
        })
    return found


def frequent_patients(frequent: FrequentPatients, id_text: np.ndarray) -> list[dict]:
    """frequent_visits: MIN_VISITS-22 bills admitted in one month."""
    return [{"id_number": id_text[p], "month": _month(m), "visits": int(v)}
            for p, m, v in zip(frequent.pos, frequent.month, frequent.visits)]


def overbilled(bills: pd.DataFrame, over: Overbilled) -> list[dict]:
    """bill_over_mean: bills far above their (diagnosis_code, setting) group's mean."""
    bill_ids = bills["bill_id"].to_numpy(dtype=object)
    return [
        {"bill_id": str(bill_ids[b]), "diagnosis_code": DIAGNOSES[over.diagnosis[b]][0],
         "setting": "inpatient" if over.inpatient[b] else "outpatient", "total_amount": float(over.total[b])}
        for b in over.rows
    ]


def subsidised_deregistered(businesses: pd.DataFrame, subsidies: Subsidies) -> list[dict]:
    """deregistered_subsidised: 注销 businesses subsidised in 1-6 months after their deregistration month."""
    s_uscc = businesses["uscc"].to_numpy(dtype=object)
    sd_amount = np.zeros(len(businesses))
    paid = subsidies.business
    after = np.isin(paid, subsidies.deregistered) & (subsidies.month > subsidies.end_month[paid])
    np.add.at(sd_amount, subsidies.business[after], subsidies.amount[after])
    return sorted((
        {"uscc": str(s_uscc[b]), "status": "注销", "end_date": _iso(subsidies.end_day[b]),
         "months": [_month(subsidies.end_month[b] + 1 + k) for k in range(int(k_len))],
         "amount": round(float(sd_amount[b]), 2)}
        for b, k_len in zip(subsidies.deregistered, subsidies.months_after)), key=lambda t: t["uscc"])
