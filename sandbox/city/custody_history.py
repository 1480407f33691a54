"""Custody over history (issue 19): prisoners paid, contributing or retired during a past or present custody.

Drawn from its own stream (``[seed, 104]``, sandbox/city/build.py) after everything else, so no older
draw moves. It changes the justice bureau's prisoners list (rows appended, clean) and the office's
feeds (City.office: the payment ledger and the roll), never City.roll:

- the office suspends a prisoner's benefits while in custody: the ledger of every released prisoner
  (刑满释放) on the roll pays nothing in the months after the admission month up to the release
  month (the generator's roll paid them through), but the planted ones;
- planted (truths): ``released_paid`` (released prisoners the ledger paid during their past custody:
  paid_in_custody), ``contributed_in_custody`` (people contributing whose employer went on paying
  after they were admitted: contributions_in_custody), and pensions granted while in custody (released
  people whose basic pension began inside the custody: ``retired_in_custody``, which also lists the
  natural instances: prisoners on the roll whose pension began after their admission);
- look-alikes (truths["lookalikes"]): a prisoner released before the ledger's months (paid only after),
  one released whose entry was suspended while inside, one in custody whose entry was suspended on
  admission (the roll says suspended), contributions that stop in the admission month, a pension
  that began in the admission month itself.

Parole (假释) and serving outside prison (暂予监外执行) are not planted either way: the seeds say nothing
of whether they may be paid, and the justice feed has no date on which the person left prison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fundx.core.codes import ACTIVE, BASIC_PENSION, CUSTODY_STATUSES, SUSPENDED
from sandbox.city.draws import member, plant_count
from sandbox.city.office_feeds import CONTRIBUTIONS, PAYMENTS, ROLL, _first_day
from sandbox.city.population import People
from sandbox.city.registers import Prisoners, justice_rows
from sandbox.city.text import DAY, month_of, month_text, time_text

IN_CUSTODY_INDEX, RELEASED_INDEX = 0, 3  # CUSTODY_STATUSES: 在押, 刑满释放


@dataclass
class Ground:
    """What the history's plants draw on: the people, who is still free to plant on, and the dates."""

    rng: np.random.Generator
    ppl: People
    id_text: np.ndarray
    age: np.ndarray
    as_of: date
    as_of_days: int
    this_month: int
    free: np.ndarray  # bool per person: alive, in no truth, no prisoner, no bill, no account change
    pos_of: dict[str, int]
    #: the last pool taken from and its people's positions (Ground.take)
    _pool: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def last_paid(self) -> int:
        return self.this_month - 1

    def take(self, pool: np.ndarray, k: int) -> np.ndarray:
        """Up to k of the pool (positions into it) still free, marked taken; in the pool's order of a draw."""
        people = self._positions(pool)
        order = self.rng.permutation(len(pool))
        chosen = order[self.free[people[order]]][:k]
        self.free[people[chosen]] = False
        return np.sort(chosen).astype(np.int64)

    def _positions(self, pool: np.ndarray) -> np.ndarray:
        """The city positions of a pool's identity numbers, kept for the last pool asked (a pool is taken from
        again and again, one at a time: looking it up each time grows with the square of a city). Known by
        the array itself: a pool is never changed in place (a smaller one is a new array)."""
        if self._pool is not None and self._pool[0] is pool:
            return self._pool[1]
        people = np.array([self.pos_of[i] for i in pool], dtype=np.int64) if len(pool) else np.zeros(0, np.int64)
        self._pool = (pool, people)
        return people


def month_numbers(texts: pd.Series) -> np.ndarray:
    """Month numbers of a column of YYYY-MM texts (Arrow's kernels: a ledger's column in milliseconds)."""
    text = pa.array(texts, type=pa.string())
    year = pc.cast(pc.utf8_slice_codeunits(text, 0, 4), pa.int64())
    month = pc.cast(pc.utf8_slice_codeunits(text, 5, 7), pa.int64())
    return np.asarray(pc.subtract(pc.add(pc.multiply(year, 12), month), 1).to_numpy(zero_copy_only=False),
                      dtype=np.int64)


def _day_in(rng: np.random.Generator, months: np.ndarray) -> np.ndarray:
    """A day in each month (its 1st-28th)."""
    return _first_day(np.asarray(months, dtype=np.int64)) + rng.integers(0, 28, len(months))


def _inside(month: pd.Series, since: pd.Series, until: pd.Series) -> pd.Series:
    """Months after ``since`` up to ``until`` (inclusive; NaN: open)."""
    return (month > since) & (until.isna() | (month <= until))


def plant_custody(g: Ground, justice: pd.DataFrame, office: dict[str, pd.DataFrame], prisoners: Prisoners,
                  invalid_keys: set[str]) -> tuple[pd.DataFrame, dict[str, list[dict]]]:
    """Plant the custody cases (module docstring); returns the prisoners list with the new rows and the truths
    {released_paid, contributed_in_custody, retired_in_custody, lookalikes}. ``office`` changes in place."""
    rng, n = g.rng, g.ppl.n
    roll, contributions = office[ROLL], office[CONTRIBUTIONS]
    per_person = roll.groupby("id_number")["entry_id"].transform("size")
    one = roll[(per_person == 1) & (roll["status"] == ACTIVE)
               & (roll["paid_through"] == month_text(np.array([g.last_paid])).to_pylist()[0])]
    contributing = set(contributions["id_number"].unique())
    one = one[~one["id_number"].isin(contributing)]
    start = month_numbers(one["start_month"])
    ages = g.age[np.array([g.pos_of[i] for i in one["id_number"]], dtype=np.int64)] if len(one) else np.zeros(0)
    ids = one["id_number"].to_numpy(dtype=object)
    old = ids[(start <= g.this_month - 60) & (ages <= 85)]
    recent = ids[(one["scheme"] == BASIC_PENSION).to_numpy() & (start >= g.last_paid - 20) & (start <= g.last_paid - 3)
                 & (ages <= 85)]
    start_of = dict(zip(ids, start))

    rows: list[tuple[str, int, int, int, int]] = []  # (id, status index, sentence start, end, admitted)
    drop: list[tuple[str, int, float]] = []  # ledger months to drop: (id, after this month, up to this one)
    truths: dict[str, list[dict]] = {"released_paid": [], "contributed_in_custody": [], "lookalikes": []}

    def released(who: np.ndarray, admitted: np.ndarray, release: np.ndarray) -> None:
        for i, a, r in zip(who, admitted, release):
            rows.append((str(i), RELEASED_INDEX, int(a) - int(rng.integers(0, 61)), int(r), int(a)))

    # released, paid during the custody (planted), or released before the ledger's months, or suspended inside
    k_paid = plant_count(n, 1 / 3000, 2)
    paid = old[g.take(old, k_paid)]
    before = old[g.take(old, 2)]
    kept_out = old[g.take(old, 2)]
    for who, lo, hi in ((paid, 330, 480), (kept_out, 330, 480), (before, 1000, 1500)):
        admitted = g.as_of_days - rng.integers(lo, hi, len(who))
        release = (g.as_of_days - rng.integers(420, 600, len(who)) if who is before
                   else g.as_of_days - rng.integers(40, 200, len(who)))
        released(who, admitted, release)
        if who is kept_out:
            drop.extend((str(i), int(month_of(np.array([a]))[0]), float(month_of(np.array([r]))[0]))
                        for i, a, r in zip(who, admitted, release))
    # in custody, the entry suspended on admission (the roll says so)
    suspended = old[g.take(old, 2)]
    admitted = g.as_of_days - rng.integers(90, 250, len(suspended))
    for i, a in zip(suspended, admitted):
        rows.append((str(i), IN_CUSTODY_INDEX, int(a) - int(rng.integers(0, 61)),
                     g.as_of_days + int(rng.integers(200, 2000)), int(a)))
        a_month = int(month_of(np.array([a]))[0])
        drop.append((str(i), a_month, np.nan))
        at = roll.index[roll["id_number"] == i][0]
        wrote = (int(a) + int(rng.integers(1, 20))) * DAY + int(rng.integers(9 * 3600, 17 * 3600))
        roll.loc[at, ["status", "paid_through", "stop_month", "updated_at"]] = [
            SUSPENDED, month_text(np.array([a_month])).to_pylist()[0], month_text(np.array([a_month + 1])).to_pylist()[0],
            time_text(np.array([min(wrote, (g.as_of_days - 1) * DAY + 12 * 3600)])).to_pylist()[0]]
    # a pension begun inside the custody (planted), or in the admission month itself (look-alike); released
    # since, the entry paid nothing while inside
    k_retired = plant_count(n, 1 / 5000, 2)
    retired = recent[g.take(recent, k_retired)]
    at_admission = recent[g.take(recent, 2)]
    for who, inside in ((retired, True), (at_admission, False)):
        for i in who:
            s = int(start_of[i])
            a = int(_day_in(rng, np.array([s - int(rng.integers(2, 11)) if inside else s]))[0])
            r = min(int(_day_in(rng, np.array([s + int(rng.integers(1, 3))]))[0]), g.as_of_days - 2)
            released(np.array([i]), np.array([a]), np.array([r]))
            drop.append((str(i), int(month_of(np.array([a]))[0]), float(month_of(np.array([r]))[0])))

    # contributions paid on after the admission (planted), or stopped in the admission month (look-alike)
    c_months = month_numbers(contributions["month"])
    span = pd.DataFrame({"id_number": contributions["id_number"], "m": c_months,
                         "uscc": contributions["employer_uscc"]}).groupby("id_number").agg(
        first=("m", "min"), last=("m", "max"), months=("m", "nunique"), employers=("uscc", "nunique"))
    span = span[span["employers"] == 1]
    on_roll = set(roll["id_number"].unique())
    span = span[~span.index.isin(on_roll)]
    going_on = span[(span["months"] >= 5) & (span["last"] == g.last_paid)]
    stopped = span[(span["months"] >= 2) & (span["last"] <= g.last_paid - 2)]
    k_contrib = plant_count(n, 1 / 3000, 2)
    contributed = going_on.index.to_numpy(dtype=object)[g.take(going_on.index.to_numpy(dtype=object), k_contrib)]
    stop_at = stopped.index.to_numpy(dtype=object)[g.take(stopped.index.to_numpy(dtype=object), 2)]
    for i in contributed:
        a = int(_day_in(rng, np.array([int(span.loc[i, "last"]) - int(rng.integers(2, 4))]))[0])
        rows.append((str(i), IN_CUSTODY_INDEX, a - int(rng.integers(0, 61)), g.as_of_days + int(rng.integers(200, 2000)),
                     a))
    for i in stop_at:
        a = int(_day_in(rng, np.array([int(span.loc[i, "last"])]))[0])
        rows.append((str(i), IN_CUSTODY_INDEX, a - int(rng.integers(0, 61)), g.as_of_days + int(rng.integers(200, 2000)),
                     a))

    # the prisoners list's new rows, the ledger's months dropped (the natural released prisoners' too)
    new = _justice_rows(g, justice, rows) if rows else justice.iloc[:0]
    natural = (prisoners.status == RELEASED_INDEX) & member(g.id_text[prisoners.pos], on_roll)
    drop.extend((str(g.id_text[p]), int(month_of(prisoners.admitted[j:j + 1])[0]), float(month_of(prisoners.end[j:j + 1])[0]))
                for j, p in zip(np.flatnonzero(natural), prisoners.pos[natural]))
    office[PAYMENTS] = _dropmonth_numbers(office[PAYMENTS], drop)
    ledger = office[PAYMENTS]
    # each planted person's rows of the ledger and of the contributions, found in one pass (not one per person)
    planted_paid, planted_contributed = set(paid), set(contributed)
    ledger_rows = _rows_of(ledger["id_number"].to_numpy(dtype=object), planted_paid)
    contribution_rows = _rows_of(contributions["id_number"].to_numpy(dtype=object), planted_contributed)
    none = np.zeros(0, dtype=np.int64)

    key_of = dict(zip(new["id_number"], new["prisoner_id"]))
    for (i, status, _s, end, a) in rows:
        a_month, end_month = int(month_of(np.array([a]))[0]), int(month_of(np.array([end]))[0])
        if i in planted_paid:
            mine = ledger.iloc[ledger_rows.get(i, none)]
            led_month = month_numbers(mine["month"])
            inside = mine[(led_month > a_month) & (led_month <= end_month)]
            truths["released_paid"].append({
                "id_number": i, "prisoner_id": key_of[i], "custody_status": CUSTODY_STATUSES[status],
                "admitted_on": _iso(a), "released_on": _iso(end),
                "paid_months": sorted(set(inside["month"])),
                "amount": round(float(inside["amount"].sum()), 2)})
        elif i in planted_contributed:
            at = contribution_rows.get(i, none)
            c = contributions.iloc[at[c_months[at] > a_month]]
            truths["contributed_in_custody"].append({
                "id_number": i, "prisoner_id": key_of[i], "admitted_on": _iso(a), "months": sorted(set(c["month"])),
                "amount": round(float(c["amount"].sum()), 2)})
    kinds = [("paid_in_custody", "released_before_paid", before), ("paid_in_custody", "released_suspended", kept_out),
             ("paid_in_custody", "suspended_on_admission", suspended),
             ("contributions_in_custody", "contributions_stopped_on_admission", stop_at),
             ("retired_in_custody", "retired_in_admission_month", at_admission)]
    truths["lookalikes"] = [{"rule": rule, "kind": kind, "id_number": str(i), "prisoner_id": key_of[str(i)]}
                            for rule, kind, who in kinds for i in who]
    truths["retired_in_custody"] = _retired(g, justice, new, prisoners, invalid_keys, office, set(retired))
    return pd.concat([justice, new], ignore_index=True), truths


def _rows_of(values: np.ndarray, wanted: set[str]) -> dict[str, np.ndarray]:
    """The row positions of each wanted value, in the rows' order."""
    rows: dict[str, list[int]] = {}
    for r in np.flatnonzero(member(values, wanted)).tolist():
        rows.setdefault(values[r], []).append(r)
    return {v: np.array(r, dtype=np.int64) for v, r in rows.items()}


def _iso(day: int) -> str:
    return str(np.datetime64(int(day), "D"))


def _justice_rows(g: Ground, justice: pd.DataFrame, rows: list[tuple[str, int, int, int, int]]) -> pd.DataFrame:
    """The new prisoners' rows, keyed after the list's highest key."""
    numbers = pd.to_numeric(justice["prisoner_id"].astype(str).str[6:], errors="coerce")
    key_start = int(numbers.max()) + 1 if numbers.notna().any() else 1
    pos = np.array([g.pos_of[r[0]] for r in rows], dtype=np.int64)
    custody = tuple(np.array([r[k] for r in rows], dtype=np.int64) for k in range(1, 5))
    return justice_rows(g.rng, g.ppl.take(pos), g.as_of_days, key_start, custody=custody).frame  # type: ignore[arg-type]


def _dropmonth_numbers(ledger: pd.DataFrame, drop: list[tuple[str, int, float]]) -> pd.DataFrame:
    """The ledger without the months inside the periods given (id, after this month, up to that one; NaN: open)."""
    if not drop:
        return ledger
    periods = pd.DataFrame(drop, columns=["id_number", "since", "until"]).astype({"id_number": object})
    rows = np.flatnonzero(ledger["id_number"].isin(set(periods["id_number"])).to_numpy())
    mine = ledger.iloc[rows]
    m = pd.DataFrame({"id_number": mine["id_number"].to_numpy(dtype=object), "m": month_numbers(mine["month"]),
                      "row": rows}).merge(periods, on="id_number")
    gone = m.loc[_inside(m["m"], m["since"], m["until"]), "row"].unique()
    keep = np.ones(len(ledger), dtype=bool)
    keep[gone] = False
    return ledger[keep].reset_index(drop=True)


def _retired(g: Ground, justice: pd.DataFrame, new: pd.DataFrame, prisoners: Prisoners, invalid_keys: set[str],
             office: dict[str, pd.DataFrame], planted: set[str]) -> list[dict]:
    """Every basic pension begun inside a custody period the stage sees (in custody or released; the rows
    not quarantined), with what the ledger paid on it: the planted ones and the natural ones."""
    periods = []
    visible = ~justice["prisoner_id"].isin(invalid_keys).to_numpy()
    for j in np.flatnonzero((np.isin(prisoners.status, (IN_CUSTODY_INDEX, RELEASED_INDEX))) & visible[:len(prisoners.pos)]):
        until = np.nan if prisoners.status[j] == IN_CUSTODY_INDEX and prisoners.end[j] >= g.as_of_days else \
            float(month_of(prisoners.end[j:j + 1])[0])
        periods.append((str(g.id_text[prisoners.pos[j]]), int(month_of(prisoners.admitted[j:j + 1])[0]), until))
    for r in new.itertuples(index=False):
        a, end = np.datetime64(r.admitted_on, "D").astype(np.int64), np.datetime64(r.sentence_end, "D").astype(np.int64)
        until = np.nan if r.custody_status == CUSTODY_STATUSES[IN_CUSTODY_INDEX] and end >= g.as_of_days else \
            float(month_of(np.array([end]))[0])
        periods.append((str(r.id_number), int(month_of(np.array([a]))[0]), until))
    if not periods:
        return []
    p = pd.DataFrame(periods, columns=["id_number", "since", "until"]).astype({"id_number": object})
    roll, ledger = office[ROLL], office[PAYMENTS]
    e = roll[roll["scheme"] == BASIC_PENSION][["entry_id", "id_number", "start_month"]].merge(p, on="id_number")
    e = e[_inside(pd.Series(month_numbers(e["start_month"]), index=e.index), e["since"], e["until"])]
    out = []
    ledger = ledger[ledger["entry_id"].isin(set(e["entry_id"]))]  # the entries' payments (one pass, not one per person)
    for i, grp in e.groupby("id_number", sort=True):
        paid = ledger[ledger["entry_id"].isin(grp["entry_id"])]
        out.append({"id_number": i, "start_month": sorted(set(grp["start_month"]))[0],
                    "months": int(paid["month"].nunique()), "amount": round(float(paid["amount"].sum()), 2),
                    "planted": i in planted})
    return out
