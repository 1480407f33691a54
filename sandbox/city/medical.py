"""Bill review's newer cases (issue 19): bills after death or in custody, overlapping stays, visits across a
month boundary, a costly hospital, and the look-alikes each rule must not flag.

Drawn from the medical stream ``[seed, 106]`` after everything else (sandbox/city/build.py): only the bills
frame and the truths change. First the natural data is made to hold no instance of the new rules: a
prisoner's bills admitted while in custody (在押, after the admission day, up to the sentence end) are
removed (an overbilled one stays and is a case), and an inpatient stay that overlaps the person's next one
ends the day that one begins (the stays then touch). Then, each case for people who have no bill yet
(alive, never in custody, in no other truth), so that no other rule sees them:

- ``billed_after_death``: outpatient bills 1-60 days after a death every source reports by the true date;
  look-alike: a bill on the day of death, for deaths two sources report a day apart and for others;
- ``billed_in_custody``: a bill during a 在押 prisoner's custody (after the admission day, within the year the
  bills cover); look-alikes: a bill on the day of admission (the boundary: the day someone is taken into
  custody is not custody yet), for the few admitted this year, and a bill on a released prisoner's
  (刑满释放) day of release;
- ``overlapping_stays``: a second inpatient stay at another hospital admitted during the first; look-alike:
  two stays at two hospitals that touch (the second admitted on the first's discharge day);
- ``frequent_across_months``: 15-18 visits in 30 days across a month boundary, at most 14 in either month;
  look-alike: 14 visits in 30 days. A planted frequent patient whose visits spread over 31 days (fewer than
  15 in any 30) gets one more visit that month;
- ``costly_hospitals``: one hospital's outpatient hypertension (I10) bills at 1.5-1.7 x the typical cost: its
  own raised, and COSTLY_BILLS more (each also a bill_over_mean case: ``overbilled_at_hospital``); look-alike:
  another hospital with a case mix of expensive stays (I63.9, I25.1 inpatient stays, COSTLY_BILLS each or
  CASE_MIX_SHARE of its other bills) at 1.08-1.14 x:
  its bills cost far more than the city's average bill, each diagnosis within the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

from fundx.core.codes import CUSTODY_STATUSES
from sandbox.city.deaths import Deaths
from sandbox.city.draws import local_seconds, member, plant_count
from sandbox.city.payments import _DIAG_COST, _DIAG_P, BILL_SPREAD, DIAGNOSES, MIN_VISITS, FrequentPatients
from sandbox.city.population import People
from sandbox.city.registers import Prisoners
from sandbox.city.text import feed_frame, month_of, pick, serial_keys
from sandbox.city.truths import _iso, _month

BILLS = "medical_insurance.bills"
#: the days before as_of the planted bills fall in (the bills cover the settlements of the last 365 days)
RECENT_DAYS = 330
#: a prisoner's status index (CUSTODY_STATUSES): released (刑满释放)
RELEASED = CUSTODY_STATUSES.index("刑满释放")
#: frequent_visits: the window (days) the visits are counted in
WINDOW_DAYS = 30
#: hospital_over_mean: the bills planted at the costly hospital and per diagnosis at the look-alike
COSTLY_BILLS = 30
COSTLY_LOW, COSTLY_HIGH = 1.5, 1.7
CASE_MIX_LOW, CASE_MIX_HIGH = 1.08, 1.14
#: the look-alike's expensive stays per diagnosis: COSTLY_BILLS, or this share of its other bills if more
CASE_MIX_SHARE = 0.15
_CODES = [d[0] for d in DIAGNOSES]
_I10, _I25, _I63 = _CODES.index("I10"), _CODES.index("I25.1"), _CODES.index("I63.9")


@dataclass
class _New:
    """Bills to add, as parallel lists."""

    person: list[int]
    hospital: list[int]
    diagnosis: list[int]
    admitted: list[int]
    discharged: list[int]  # -1: outpatient
    factor: list[float]  # of the typical cost (NaN: the natural spread)

    def add(self, person: int, hospital: int, diagnosis: int, admitted: int, discharged: int = -1,
            factor: float = float("nan")) -> int:
        """Add a bill; returns its index among the new ones."""
        self.person.append(person)
        self.hospital.append(hospital)
        self.diagnosis.append(diagnosis)
        self.admitted.append(admitted)
        self.discharged.append(discharged)
        self.factor.append(factor)
        return len(self.person) - 1


def _days(values: pd.Series) -> np.ndarray:
    """Day numbers of a column of dates (date objects or ISO texts); -1 where missing or unreadable."""
    d = pd.to_datetime(values, errors="coerce")
    out = (d - pd.Timestamp("1970-01-01")).dt.days
    return out.fillna(-1).to_numpy(dtype=np.int64)


def most_in_window(days: np.ndarray, window: int = WINDOW_DAYS) -> int:
    """The most of these days that fall in any ``window`` consecutive days."""
    d = np.sort(np.asarray(days, dtype=np.int64))
    if len(d) == 0:
        return 0
    return int((np.searchsorted(d, d + window - 1, side="right") - np.arange(len(d))).max())


def plant_medical(rng: np.random.Generator, *, ppl: People, id_text: np.ndarray, frame: pd.DataFrame,
                  person: np.ndarray, key_start: int, invalid_keys: set[str], busy: np.ndarray,
                  prisoners: Prisoners, deaths: Deaths, clean_deaths: list[dict], near_dates: list[dict],
                  frequent: FrequentPatients, overbilled: set[str],
                  prisoner_received: np.ndarray, as_of_days: int) -> tuple[pd.DataFrame, dict, list[dict]]:
    """Plant the cases (see the module's docstring); returns the new bills frame, the truths, the look-alikes."""
    frame = frame.copy()
    bill_ids = frame["bill_id"].astype(str).to_numpy(dtype=object)
    valid = ~member(bill_ids, invalid_keys)
    adm = np.where(valid, _days(frame["admitted_on"]), -1)
    dis = np.where(valid, _days(frame["discharged_on"]), -1)
    truths: dict = {}
    lookalikes: list[dict] = []

    # -- the natural data: no bill in custody, no overlapping stays ------------------------------------------
    in_custody_status = prisoners.status == 0
    custody_of = {int(p): i for i, p in enumerate(prisoners.pos) if in_custody_status[i]}
    drop = np.zeros(len(frame), dtype=bool)
    kept_in_custody: dict[int, list[str]] = {}  # prisoner -> overbilled bills in custody
    for r in np.flatnonzero(valid):
        i = custody_of.get(int(person[r]))
        if i is not None and prisoners.admitted[i] < adm[r] <= prisoners.end[i]:
            if bill_ids[r] in overbilled:  # a case of bill_over_mean: it stays, and is a case of this rule too
                if prisoner_received[i]:
                    kept_in_custody.setdefault(i, []).append(str(bill_ids[r]))
            else:
                drop[r] = True
    stays = np.flatnonzero(valid & (dis >= 0) & ~drop)
    order = stays[np.lexsort((bill_ids[stays].astype(str), adm[stays], person[stays]))]
    new_dis = dis.copy()
    for a, b in pairwise(order):
        if person[a] == person[b] and new_dis[a] > adm[b]:
            new_dis[a] = adm[b]
    changed = np.flatnonzero(new_dis != dis)
    if len(changed):
        col = frame["discharged_on"].to_numpy(dtype=object, copy=True)
        col[changed] = new_dis[changed].astype("datetime64[D]").astype(object)
        frame["discharged_on"] = pd.Series(col, dtype=object, index=frame.index)
    frame = frame[~drop].reset_index(drop=True)
    person, bill_ids, valid, adm = person[~drop], bill_ids[~drop], valid[~drop], adm[~drop]

    # -- who may take a new bill: alive, never in custody, in no truth, no bill yet --------------------------
    free = np.ones(ppl.n, dtype=bool)
    free[busy] = False
    free[deaths.pos] = False
    free[prisoners.pos] = False
    free[person] = False
    pool = rng.permutation(np.flatnonzero(free))
    taken = 0

    def people(k: int) -> np.ndarray:
        nonlocal taken  # a city too small for them all gets fewer
        out = pool[taken:taken + k]
        taken += len(out)
        return out

    new = _New([], [], [], [], [], [])
    n_hosp = len(ppl.place.hospitals)
    last = as_of_days - 1
    small = plant_count(ppl.n, 1 / 4000, 3)

    def any_diag() -> int:
        return int(rng.choice(len(DIAGNOSES), p=_DIAG_P))

    # frequent patients whose visits spread over 31 days: one more visit that month, until 15 fall in 30 days
    visits_of: dict[int, list[int]] = {}
    for r in np.flatnonzero(valid):
        visits_of.setdefault(int(person[r]), []).append(int(adm[r]))
    extra_visits: dict[int, int] = {}
    for p, m in zip(frequent.pos, frequent.month):
        days = list(visits_of.get(int(p), []))
        first = int(np.datetime64(_month(int(m)) + "-01", "D").astype(np.int64))
        end = int(np.datetime64(_month(int(m) + 1) + "-01", "D").astype(np.int64)) - 1
        while most_in_window(np.array(days)) < MIN_VISITS:
            d = np.sort(np.array(days))
            starts = np.arange(first - WINDOW_DAYS + 1, end + 1)
            counts = np.searchsorted(d, starts + WINDOW_DAYS - 1, side="right") - np.searchsorted(d, starts)
            s = int(starts[int(np.argmax(counts))])
            day = int(rng.integers(max(s, first), min(s + WINDOW_DAYS - 1, end, last) + 1))
            new.add(int(p), int(rng.integers(0, n_hosp)), any_diag(), day)
            days.append(day)
            extra_visits[int(p)] = extra_visits.get(int(p), 0) + 1

    # visits across a month boundary (and the look-alike: 14 in 30 days)
    across = []
    this_month = int(month_of(np.array([as_of_days]))[0])
    for k, p in enumerate(people(small + 1)):
        m = this_month - int(rng.integers(2, 11))
        boundary = int(np.datetime64(_month(m + 1) + "-01", "D").astype(np.int64))
        start = boundary - int(rng.integers(10, 21))
        total = 14 if k == small else int(rng.integers(MIN_VISITS, MIN_VISITS + 4))
        before = int(rng.integers(total - 14, 15)) if total > 14 else int(rng.integers(4, 11))
        visit_days = np.concatenate([rng.integers(start, boundary, before),
                                     rng.integers(boundary, start + WINDOW_DAYS, total - before)])
        rows = [new.add(int(p), int(rng.integers(0, n_hosp)), any_diag(), int(d)) for d in visit_days]
        if k == small:
            lookalikes.append({"rule": "frequent_visits", "kind": "14 visits in 30 days", "id_number": id_text[p]})
        else:
            across.append((int(p), rows))

    # bills after death; the look-alikes: a bill on the day of death
    dead_pool = [c for c in clean_deaths if day_of(c["death_date"]) <= last - 2]
    picks = rng.permutation(len(dead_pool))
    after = []
    for j in picks[:small]:
        c = dead_pool[int(j)]
        died = day_of(c["death_date"])
        p = c["pos"]
        rows = [new.add(p, int(rng.integers(0, n_hosp)), any_diag(), died + int(rng.integers(1, min(60, last - died) + 1)))
                for _ in range(int(rng.integers(1, 3)))]
        after.append((c, rows))
    for c in [*near_dates[:2], *(dead_pool[int(j)] for j in picks[small:small + 2])]:
        p = c["pos"]
        new.add(p, int(rng.integers(0, n_hosp)), any_diag(), day_of(c["death_date"]))
        kind = "bill on the day of death, reported a day apart" if "days_apart" in c else "bill on the day of death"
        lookalikes.append({"rule": "bill_after_death", "kind": kind, "id_number": id_text[p]})

    # bills in custody, within the year the bills cover; the look-alikes: a bill on the day of admission (for
    # the few admitted this year) and on the day of release (刑满释放: released in the last 300 days)
    recent = last - RECENT_DAYS
    held = [i for i in range(len(prisoners.pos)) if in_custody_status[i] and prisoner_received[i]
            and i not in kept_in_custody and prisoners.admitted[i] <= last - 2]
    held = [held[int(j)] for j in rng.permutation(len(held))]
    lately = [i for i in held if prisoners.admitted[i] >= recent][:2]
    custody = []
    for i in [i for i in held if i not in lately][:small]:
        since, until = max(int(prisoners.admitted[i]) + 1, recent), int(min(prisoners.end[i], last))
        p = int(prisoners.pos[i])
        custody.append((i, [new.add(p, int(rng.integers(0, n_hosp)), any_diag(), int(rng.integers(since, until + 1)))]))
    released = [i for i in range(len(prisoners.pos)) if prisoners.status[i] == RELEASED and prisoner_received[i]
                and recent <= prisoners.end[i] <= last][:2]
    for i, kind, day in [*((i, "bill on the day of admission to custody", prisoners.admitted[i]) for i in lately),
                         *((i, "bill on the day of release", prisoners.end[i]) for i in released)]:
        p = int(prisoners.pos[i])
        new.add(p, int(rng.integers(0, n_hosp)), any_diag(), int(day))
        lookalikes.append({"rule": "bill_in_custody", "kind": kind, "id_number": id_text[p]})

    # overlapping inpatient stays in two hospitals; the look-alike: two that touch
    overlap = []
    for k, p in enumerate(people(small + 2)):
        h1 = int(rng.integers(0, n_hosp))
        h2 = (h1 + int(rng.integers(1, n_hosp))) % n_hosp
        first_len = int(rng.integers(5, 21))
        a1 = last - int(rng.integers(60, 300))
        a2 = a1 + (first_len if k >= small else int(rng.integers(1, first_len)))
        rows = [new.add(int(p), h1, any_diag(), a1, a1 + first_len),
                new.add(int(p), h2, any_diag(), a2, a2 + int(rng.integers(3, 16)))]
        if k >= small:
            lookalikes.append({"rule": "overlapping_stays", "kind": "two stays that touch (discharged and admitted "
                               "the same day)", "id_number": id_text[p]})
        else:
            overlap.append((int(p), rows))

    # a costly hospital (all its I10 visits: the natural ones raised too), and one whose case mix is costly
    # within the threshold; none in a city without the people for them
    costly, mix = (int(h) for h in rng.choice(n_hosp, 2, replace=False))
    at_mix = int((valid & (frame["hospital_code"].to_numpy(dtype=object) == ppl.place.hospitals[mix])).sum())
    n_mix = max(COSTLY_BILLS, int(np.ceil(CASE_MIX_SHARE * at_mix)))
    raised = np.zeros(0, dtype=np.int64)
    costly_rows: list[int] = []
    mix_rows: list[int] = []
    if taken + COSTLY_BILLS + 2 * n_mix <= len(pool):
        at_costly = (valid & (frame["hospital_code"].to_numpy(dtype=object) == ppl.place.hospitals[costly])
                     & (frame["diagnosis_code"].to_numpy(dtype=object) == "I10") & frame["discharged_on"].isna().to_numpy())
        raised = np.flatnonzero(at_costly & ~member(bill_ids, overbilled))
        if len(raised):
            totals = frame["total_amount"].to_numpy(dtype=float, copy=True)
            funds = frame["fund_amount"].to_numpy(dtype=float, copy=True)
            new_total = np.round(_DIAG_COST[_I10] * 0.03 * rng.uniform(COSTLY_LOW, COSTLY_HIGH, len(raised)) + 20, 2)
            funds[raised] = np.minimum(np.round(new_total * funds[raised] / totals[raised], 2), new_total)
            totals[raised] = new_total
            frame["total_amount"] = totals
            frame["fund_amount"] = funds
        costly_rows = [new.add(int(p), costly, _I10, last - int(rng.integers(1, 300)),
                               factor=float(rng.uniform(COSTLY_LOW, COSTLY_HIGH))) for p in people(COSTLY_BILLS)]
        for diag in (_I63, _I25):  # inpatient stays, one per person
            for p in people(n_mix):
                admitted = last - int(rng.integers(30, 300))
                mix_rows.append(new.add(int(p), mix, diag, admitted, admitted + int(rng.integers(3, 21)),
                                        factor=float(rng.uniform(CASE_MIX_LOW, CASE_MIX_HIGH))))
        lookalikes.append({"rule": "hospital_over_mean", "kind": "costly case mix, each diagnosis within the threshold",
                           "hospital_code": ppl.place.hospitals[mix]})

    # -- the new rows ------------------------------------------------------------------------------------
    added = _frame(rng, ppl, new, key_start, as_of_days)
    new_ids = added["bill_id"].to_numpy(dtype=object)
    top = sorted(mix_rows, key=lambda r: -new.factor[r])[:3]  # the case mix's dearest stays: over, within 20 %
    lookalikes.extend({"rule": "bill_over_mean", "kind": "a stay 8-14 % above its peers' mean",
                       "bill_id": str(new_ids[r])} for r in top)
    fund = added["fund_amount"].to_numpy(dtype=float)
    total = added["total_amount"].to_numpy(dtype=float)
    out = pd.concat([frame, added], ignore_index=True)
    out = out.sort_values(["settled_at", "bill_id"], kind="stable").reset_index(drop=True)
    all_person = np.concatenate([person, np.asarray(new.person, dtype=np.int64)])
    all_valid = np.concatenate([valid, np.ones(len(added), dtype=bool)])
    all_adm = np.concatenate([adm, np.asarray(new.admitted, dtype=np.int64)])
    visits_of_all = _days_by_person(all_person[all_valid], all_adm[all_valid],
                                    np.concatenate([np.asarray(frequent.pos, dtype=np.int64),
                                                    np.array([p for p, _ in across], dtype=np.int64)]))

    def visits(p: int) -> np.ndarray:
        return visits_of_all.get(int(p), np.zeros(0, dtype=np.int64))

    money = lambda rows: round(float(sum(fund[r] for r in rows)), 2)  # noqa: E731
    truths["frequent_extra_visits"] = {id_text[p]: v for p, v in extra_visits.items()}
    truths["most_in_30_days"] = {id_text[p]: most_in_window(visits(int(p))) for p in frequent.pos}
    truths["frequent_across_months"] = [
        {"id_number": id_text[p], "visits": len(rows), "most_in_30_days": most_in_window(visits(p)),
         "first_day": _iso(min(new.admitted[r] for r in rows)), "last_day": _iso(max(new.admitted[r] for r in rows)),
         "per_month": {_month(int(m)): int(c) for m, c in zip(*np.unique(month_of(np.array(visits(p))),
                                                                          return_counts=True))}}
        for p, rows in across]
    truths["overbilled_at_hospital"] = sorted((
        *({"bill_id": str(new_ids[r]), "diagnosis_code": "I10", "setting": "outpatient",
           "total_amount": float(total[r])} for r in costly_rows),
        *({"bill_id": str(bill_ids[r]), "diagnosis_code": "I10", "setting": "outpatient",
           "total_amount": float(frame["total_amount"].iloc[r])} for r in raised)), key=lambda t: t["bill_id"])
    at_costly = ((out["hospital_code"] == ppl.place.hospitals[costly]) & (out["diagnosis_code"] == "I10")
                 & out["discharged_on"].isna() & ~out["bill_id"].astype(str).isin(invalid_keys))
    costly_bills = int(at_costly.sum())  # all its received I10 visits: the overbilled and a new visit's too
    truths["costly_hospitals"] = [{"hospital_code": ppl.place.hospitals[costly], "diagnosis_code": "I10",
                                   "setting": "outpatient", "bills": costly_bills}] if costly_rows else []
    truths["billed_after_death"] = [
        {"id_number": id_text[c["pos"]], "death_date": c["death_date"], "bills": [str(new_ids[r]) for r in rows],
         "amount": money(rows)} for c, rows in after]
    fund_by_id = dict(zip(out["bill_id"].astype(str), out["fund_amount"].astype(float)))
    in_custody = []
    planted_in_custody: list[tuple[int, list[int]]] = [*custody, *((i, []) for i in kept_in_custody)]
    for i, rows in planted_in_custody:
        p = int(prisoners.pos[i])
        ids = [str(new_ids[r]) for r in rows]
        ids += kept_in_custody.get(i, [])
        in_custody.append({"id_number": id_text[p], "prisoner_id": str(prisoners.rows.frame["prisoner_id"].iloc[i]),
                           "admitted_on": _iso(int(prisoners.admitted[i])), "bills": sorted(ids),
                           "amount": round(sum(fund_by_id[b] for b in ids), 2)})
    truths["billed_in_custody"] = in_custody
    truths["overlapping_stays"] = [
        {"id_number": id_text[p], "bills": [str(new_ids[r]) for r in rows],
         "hospitals": [ppl.place.hospitals[new.hospital[r]] for r in rows], "amount": money(rows[1:])}
        for p, rows in overlap]
    truths["natural_stays_shortened"] = int(len(changed))
    truths["natural_custody_bills_removed"] = int(drop.sum())
    return out, truths, lookalikes


def _days_by_person(person: np.ndarray, days: np.ndarray, wanted: np.ndarray) -> dict[int, np.ndarray]:
    """The days of each wanted person's rows, in the rows' order (one pass: a comparison over every row per
    person grows with the square of a city)."""
    rows = np.flatnonzero(np.isin(person, wanted))
    rows = rows[np.argsort(person[rows], kind="stable")]
    people, starts = np.unique(person[rows], return_index=True)
    return {int(p): days[part] for p, part in zip(people, np.split(rows, starts[1:]))}


def day_of(iso: str) -> int:
    return int(np.datetime64(iso, "D").astype(np.int64))


def _frame(rng: np.random.Generator, ppl: People, new: _New, key_start: int, as_of_days: int) -> pd.DataFrame:
    """The new bills as the bureau's rows: costs as bill_rows draws them (or the planted factor of the typical
    cost), the fund's share, settled 0-5 days after the discharge (outpatient: the visit), before as_of."""
    n = len(new.person)
    p = ppl.take(np.asarray(new.person, dtype=np.int64))
    diag = np.asarray(new.diagnosis, dtype=np.int64)
    admitted = np.asarray(new.admitted, dtype=np.int64)
    discharged = np.asarray(new.discharged, dtype=np.int64)
    inpatient = discharged >= 0
    base = np.where(inpatient, _DIAG_COST[diag], _DIAG_COST[diag] * 0.03)
    factor = np.asarray(new.factor, dtype=float)
    natural = rng.uniform(1 - BILL_SPREAD, 1 + BILL_SPREAD, n)
    total = np.round(base * np.where(np.isnan(factor), natural, factor) + 20, 2)
    ratio = np.where(inpatient, rng.uniform(0.55, 0.9, n), rng.uniform(0.3, 0.8, n))
    fund = np.minimum(np.round(total * ratio, 2), total)
    last_day = np.where(inpatient, discharged, admitted)
    settled_day = np.minimum(last_day + rng.integers(0, 6, n), as_of_days - 1)
    settled = local_seconds(rng, settled_day, 7, 21)
    dis = discharged.astype("datetime64[D]").astype(object)
    dis[~inpatient] = None
    return feed_frame(BILLS, {
        "bill_id": serial_keys("YB3301", key_start, n, 12),
        "id_number": p.ids(),
        "patient_name": p.name,
        "hospital_code": pick(ppl.place.hospitals, np.asarray(new.hospital, dtype=np.int64)),
        "diagnosis_code": pick(_CODES, diag),
        "admitted_on": pd.Series(admitted.astype("datetime64[D]").astype(object), dtype=object),
        "discharged_on": pd.Series(dis, dtype=object),
        "total_amount": pd.Series(total, dtype="float64"),
        "fund_amount": pd.Series(fund, dtype="float64"),
        "settled_at": pd.Series(pd.to_datetime(settled, unit="s")).dt.tz_localize("Asia/Shanghai"),
    })


__all__ = ["COSTLY_BILLS", "WINDOW_DAYS", "most_in_window", "plant_medical"]
