"""The social-insurance office's own data: the benefit roll, employers' contributions and employer subsidies.

The roll pays pensions and benefits, one row per (person, scheme); its cases are planted as the city
is built: pensions still paid after death or in custody, accounts shared by unrelated people, a
second entry on a scheme the first excludes, the unemployed whose employer still contributes, and
deregistered businesses still subsidised. Everything drawn after the first truths (the
contributions, the subsidies and their cases) comes from the office's stream, so the older frames
stay as they were.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from fundx.core.codes import ROLL_STATUSES, SCHEMES, SUBSIDY_TYPES
from fundx.core.idcolumns import NO_DAY
from sandbox.city.deaths import Deaths
from sandbox.city.draws import distinct_sample, plant_count, within_spans
from sandbox.city.place import Place
from sandbox.city.population import People
from sandbox.city.registers import Prisoners
from sandbox.city.text import arrow_text, ascii_matrix, month_of, month_text, pick, str_column, to_days

BENEFITS: tuple[str, ...] = SCHEMES
#: for the first three schemes (BENEFITS index 0-2), the two others each excludes (duplicate_receipt)
_EXCLUSIVE_PARTNER = np.array([[1, 2], [0, 2], [0, 1]], dtype=np.int64)
#: the employer's share of a monthly social-insurance contribution (basic pension), of the wage
CONTRIBUTION_RATE = 0.16
SUBSIDIES: tuple[str, ...] = SUBSIDY_TYPES
#: the office's own tables (City.roll, City.contributions, City.subsidies) and their columns
ROLL_COLUMNS = ("id_number", "name", "benefit_type", "monthly_amount", "bank_account", "status", "paid_through",
                "start_month", "months_paid", "paying_district")
CONTRIBUTION_COLUMNS = ("id_number", "employer_uscc", "month", "amount")
SUBSIDY_COLUMNS = ("uscc", "subsidy_type", "month", "amount")
BANK_PREFIXES = np.array([6222, 6217, 6228, 6212, 6213, 6214, 6227, 6230, 6216, 6226], dtype=np.int64)


def no_rows(columns: tuple[str, ...]) -> pd.DataFrame:
    """An empty office table: text columns, and amount as float."""
    return pd.DataFrame({c: pd.Series(dtype="float64" if c == "amount" else "str") for c in columns})


def _luhn_accounts(rng: np.random.Generator, n: int) -> np.ndarray:
    """19-digit bank card numbers (N x 19 uint8): a bank prefix, 14 random digits, a Luhn digit."""
    body = ascii_matrix(n, (BANK_PREFIXES[rng.integers(0, len(BANK_PREFIXES), n)], 4),
                        (rng.integers(0, 10**7, n), 7), (rng.integers(0, 10**7, n), 7))
    digits = body.astype(np.int64) - 48
    total = np.zeros(n, dtype=np.int64)
    for i in range(18):
        d = digits[:, i]
        if (17 - i) % 2 == 0:  # from the right, every other digit starting with the last is doubled
            d = d * 2
            d = np.where(d > 9, d - 9, d)
        total += d
    out = np.empty((n, 19), dtype=np.uint8)
    out[:, :18] = body
    out[:, 18] = ((10 - total % 10) % 10).astype(np.uint8) + 48
    return out


def _benefit_amounts(rng: np.random.Generator, benefit: np.ndarray) -> np.ndarray:
    """Monthly amounts for entries on the schemes given (BENEFITS indexes), unrounded."""
    r = len(benefit)
    return np.select(
        [benefit == 0, benefit == 1, benefit == 2, benefit == 3],
        [np.clip(rng.lognormal(np.log(3800), 0.3, r), 1800, 12000), rng.uniform(230, 600, r),
         rng.uniform(1800, 2100, r), rng.uniform(600, 1500, r)],
        rng.uniform(800, 2200, r))


# --- the benefit roll ---------------------------------------------------------------------------


@dataclass
class Roll:
    """The roll's first entries, one per person on it (index i is the i-th entry), as they are drawn and
    then changed by the deaths, the prisoners and the shared accounts."""

    on: np.ndarray  # bool per person in the city: on the roll
    pos: np.ndarray  # each entry's person (position in the city)
    benefit: np.ndarray  # BENEFITS index
    amount: np.ndarray  # monthly amount
    start: np.ndarray  # first month paid (month number)
    status: np.ndarray  # 0 active, 1 suspended, 2 stopped
    paid_through: np.ndarray  # last month paid
    account: np.ndarray  # N x 19 uint8 bank card numbers
    index: np.ndarray  # per person in the city: their entry, -1 if not on the roll

    def active(self) -> np.ndarray:
        """bool per person in the city: their entry is active."""
        first_active = np.zeros(len(self.on), dtype=bool)
        first_active[self.pos] = self.status == 0
        return first_active

    def scheme(self) -> np.ndarray:
        """Per person in the city: their entry's BENEFITS index, -1 if not on the roll."""
        scheme = np.full(len(self.on), -1, dtype=np.int64)
        scheme[self.pos] = self.benefit
        return scheme


def draw_roll(rng: np.random.Generator, ppl: People, age: np.ndarray, last_paid: int) -> Roll:
    """The benefit roll: most of the people of pension age, a few younger ones on other schemes."""
    n = ppl.n
    female_retire = ~ppl.male & (age >= 55)
    pension_age = (age >= 60) | female_retire
    on_roll = np.where(pension_age, rng.random(n) < 0.85, rng.random(n) < 0.065)
    roll_pos = np.flatnonzero(on_roll)
    r = len(roll_pos)
    young = ~pension_age[roll_pos]
    benefit = np.where(rng.random(r) < 0.68, 0, 1)
    benefit = np.where(young, rng.choice([2, 3, 4], r, p=[0.6, 0.15, 0.25]), benefit)
    amount = np.round(_benefit_amounts(rng, benefit), 2)
    birth_month = month_of(ppl.birth[roll_pos])
    retire_years = np.where(ppl.male[roll_pos] | (benefit == 1), 60, 55)
    start = np.where(benefit <= 1, birth_month + retire_years * 12,
                     np.where(benefit == 2, last_paid - rng.integers(0, 24, r), last_paid - rng.integers(0, 240, r)))
    start = np.clip(start, 1995 * 12, last_paid)
    status = np.zeros(r, dtype=np.int64)
    paid_through = np.full(r, last_paid, dtype=np.int64)
    u = rng.random(r)
    status[u < 0.01] = 1
    status[(u >= 0.01) & (u < 0.03)] = 2
    paid_through[status == 1] = last_paid - rng.integers(1, 13, int((status == 1).sum()))
    paid_through[status == 2] = last_paid - rng.integers(1, 37, int((status == 2).sum()))
    account = _luhn_accounts(rng, r)
    roll_index = np.full(n, -1, dtype=np.int64)
    roll_index[roll_pos] = np.arange(r)
    return Roll(on_roll, roll_pos, benefit, amount, start, status, paid_through, account, roll_index)


def stop_the_dead(rng: np.random.Generator, roll: Roll, deaths: Deaths, n_known: np.ndarray,
                  last_paid: int) -> np.ndarray:
    """Dead people on the roll: mostly stopped in the month of death; a few still paid (planted), some of
    them holders of 15-digit numbers. Returns the still-paid deaths (indexes into ``deaths``)."""
    death_month = deaths.month()
    dead_roll = roll.index[deaths.pos]
    candidates = np.flatnonzero((dead_roll >= 0) & (n_known >= 1) & (death_month <= last_paid - 1))
    k_dbp = min(len(candidates), plant_count(deaths.count, 0.10, 4))
    still_paid = np.sort(rng.choice(candidates, k_dbp, replace=False))
    still_paid = np.union1d(still_paid, np.intersect1d(deaths.forced_old, candidates))
    for_stop = np.flatnonzero(dead_roll >= 0)
    roll.status[dead_roll[for_stop]] = 2
    roll.paid_through[dead_roll[for_stop]] = np.minimum(roll.paid_through[dead_roll[for_stop]], death_month[for_stop])
    roll.status[dead_roll[still_paid]] = 0
    roll.paid_through[dead_roll[still_paid]] = last_paid
    return still_paid


def suspend_in_custody(roll: Roll, prisoners: Prisoners, last_paid: int) -> None:
    """Prisoners on the roll who are in custody: suspended from the month of admission, but the planted
    ones, who are still paid."""
    in_custody_roll = (prisoners.status == 0) & (roll.index[prisoners.pos] >= 0) & ~prisoners.planted()
    ri = roll.index[prisoners.pos[in_custody_roll]]
    roll.status[ri] = np.where(roll.status[ri] == 2, 2, 1)
    roll.paid_through[ri] = np.minimum(roll.paid_through[ri], month_of(prisoners.admitted[in_custody_roll]))
    ri = roll.index[prisoners.paid]
    roll.status[ri] = 0
    roll.paid_through[ri] = last_paid


def share_accounts(rng: np.random.Generator, roll: Roll, busy: np.ndarray) -> list[np.ndarray]:
    """Shared accounts: 3-6 unrelated, living, active people's benefits paid into one account (none of
    them ``busy``). Returns the groups (sorted positions in the city)."""
    pool = np.flatnonzero(roll.on & ~busy)
    pool = pool[roll.status[roll.index[pool]] == 0]
    sizes = rng.integers(3, 7, plant_count(len(roll.pos), 1 / 2500, 3))
    sizes = sizes[np.cumsum(sizes) <= len(pool)]
    chosen = pool[rng.choice(len(pool), int(sizes.sum()), replace=False)]
    groups = [np.sort(g) for g in np.split(chosen, np.cumsum(sizes)[:-1])] if len(sizes) else []
    for g in groups:
        roll.account[roll.index[g]] = roll.account[roll.index[g[0]]]
    return groups


@dataclass
class DuplicateReceipts:
    """The planted second entries: each on a scheme the person's first entry excludes, begun lately."""

    pos: np.ndarray  # the people (positions in the city)
    first: np.ndarray  # their first entries (Roll index)
    benefit: np.ndarray  # the second entry's BENEFITS index
    amount: np.ndarray
    start: np.ndarray


def draw_duplicate_receipts(rng: np.random.Generator, roll: Roll, taken: np.ndarray,
                            last_paid: int) -> DuplicateReceipts:
    """Duplicate receipts: a second, active entry on a scheme the first one (active, not ``taken``) excludes."""
    scheme = roll.scheme()
    dup_pos = distinct_sample(rng, np.flatnonzero(roll.active() & ~taken & (scheme >= 0) & (scheme <= 2)),
                              plant_count(len(roll.pos), 1 / 1200, 3))
    k_dup = len(dup_pos)
    dup_first = roll.index[dup_pos]
    dup_benefit = _EXCLUSIVE_PARTNER[roll.benefit[dup_first], rng.integers(0, 2, k_dup)]
    dup_amount = np.round(_benefit_amounts(rng, dup_benefit), 2)
    dup_start = np.maximum(last_paid - rng.integers(0, 36, k_dup), 1995 * 12)
    return DuplicateReceipts(dup_pos, dup_first, dup_benefit, dup_amount, dup_start)


@dataclass
class Entries:
    """The roll's rows: the first entries, then the duplicate receipts' second ones (not yet in the roll's order)."""

    person: np.ndarray
    benefit: np.ndarray
    amount: np.ndarray
    account: np.ndarray
    status: np.ndarray
    paid_through: np.ndarray
    start: np.ndarray


def roll_entries(roll: Roll, dups: DuplicateReceipts, last_paid: int) -> Entries:
    """Every entry of the roll: one per (person, scheme)."""
    k_dup = len(dups.pos)
    return Entries(
        person=np.concatenate([roll.pos, dups.pos]),
        benefit=np.concatenate([roll.benefit, dups.benefit]),
        amount=np.concatenate([roll.amount, dups.amount]),
        account=np.concatenate([roll.account, roll.account[dups.first]]),
        status=np.concatenate([roll.status, np.zeros(k_dup, dtype=np.int64)]),
        paid_through=np.concatenate([roll.paid_through, np.full(k_dup, last_paid, dtype=np.int64)]),
        start=np.concatenate([roll.start, dups.start]),
    )


def roll_frame(entries: Entries, first_entries: int, ppl: People, ids: pa.Array, place: Place) -> pd.DataFrame:
    """The roll (ROLL_COLUMNS, months as YYYY-MM): one row per (person, scheme), a person's rows together,
    the first entry (of the ``first_entries``) before the second."""
    row_person, row_start, row_paid = entries.person, entries.start, entries.paid_through
    row_order = np.lexsort((np.arange(len(row_person)) >= first_entries, row_person))
    ro = pa.array(row_order)
    return pd.DataFrame({
        "id_number": str_column(ids.take(pa.array(row_person[row_order]))),
        "name": str_column(ppl.name.take(pa.array(row_person[row_order]))),
        "benefit_type": str_column(pick(BENEFITS, entries.benefit).take(ro)),
        "monthly_amount": pd.Series(entries.amount[row_order], dtype="float64"),
        "bank_account": str_column(arrow_text(entries.account[row_order])),
        "status": str_column(pick(ROLL_STATUSES, entries.status).take(ro)),
        "paid_through": str_column(month_text(row_paid[row_order])),
        "start_month": str_column(month_text(row_start[row_order])),
        "months_paid": pd.Series(np.maximum(row_paid - row_start + 1, 1)[row_order], dtype="int64"),
        # the district whose office pays the entry (where the person lives; orders are routed there)
        "paying_district": str_column(arrow_text(ascii_matrix(len(row_order),
                                                              (place.codes[ppl.district[row_person[row_order]]], 6)))),
    })


def pick_unemployed_contributing(rng: np.random.Generator, roll: Roll, taken: np.ndarray) -> np.ndarray:
    """The planted unemployed who contribute: an active unemployment entry (not ``taken``), whose employer
    pays for some of its months (draw_contributions). Returns their positions in the city."""
    return distinct_sample(rng, np.flatnonzero(roll.active() & ~taken & (roll.scheme() == 2)),
                           plant_count(int((roll.benefit == 2).sum()), 0.03, 3))


# --- contributions and subsidies ----------------------------------------------------------------


@dataclass
class Contributions:
    """Employers' monthly contributions: the frame, and its rows' parts before the frame's order (``order``)."""

    frame: pd.DataFrame
    person: np.ndarray
    month: np.ndarray
    amount: np.ndarray
    employer: np.ndarray  # index of the employer among the businesses
    order: np.ndarray  # the frame's rows: positions in the arrays above
    unemployed: np.ndarray  # the planted unemployed contributing (positions in the city)
    unemployed_begin: np.ndarray  # the first month their employer contributes for
    unemployed_months: np.ndarray  # how many months it does


def draw_contributions(rng: np.random.Generator, ppl: People, ids: pa.Array, employable: np.ndarray, roll: Roll,
                       entries: Entries, unemployed: np.ndarray, businesses: pd.DataFrame,
                       first_month: int) -> Contributions:
    """Contributions over the 12 months from ``first_month``: half the ``employable`` people (bool per
    person), over some or all of the months (an unemployment entry ends them before it starts), and
    the planted unemployed's employers over 1-6 months of their entry. Employers are running businesses."""
    bus_status = businesses["status"].to_numpy(dtype=object)
    running = np.flatnonzero(np.isin(bus_status, ("存续", "在业")))
    employers = running if len(running) else np.arange(len(businesses))
    person, month, amount, employer = _employees(rng, ppl.n, employable, entries, employers, first_month)
    uc_begin, uc_len, uc_amount, uc_employer = _unemployed_employers(rng, roll, unemployed, employers, first_month)
    c_person = np.concatenate([person, np.repeat(unemployed, uc_len)])
    c_month = np.concatenate([month, np.repeat(uc_begin, uc_len) + within_spans(uc_len)])
    c_amount = np.concatenate([amount, np.repeat(uc_amount, uc_len)])
    c_employer = np.concatenate([employer, np.repeat(uc_employer, uc_len)])
    c_order = np.lexsort((c_person, c_month))
    bus_uscc = pa.array(businesses["uscc"])
    frame = pd.DataFrame({
        "id_number": str_column(ids.take(pa.array(c_person[c_order]))),
        "employer_uscc": str_column(bus_uscc.take(pa.array(c_employer[c_order]))),
        "month": str_column(month_text(c_month[c_order])),
        "amount": pd.Series(c_amount[c_order], dtype="float64"),
    })
    return Contributions(frame, c_person, c_month, c_amount, c_employer, c_order, unemployed, uc_begin, uc_len)


def _employees(rng: np.random.Generator, n: int, employable: np.ndarray, entries: Entries, employers: np.ndarray,
               first_month: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The contributions for employees: (person, month, amount, employer) per contribution."""
    cp = np.flatnonzero(employable & (rng.random(n) < 0.5))
    k_cp = len(cp)
    first_off = np.where(rng.random(k_cp) < 0.8, 0, rng.integers(1, 12, k_cp))
    last_off = np.where(rng.random(k_cp) < 0.85, 11,
                        first_off + (rng.random(k_cp) * (12 - first_off)).astype(np.int64))
    unemployed_from = np.full(n, np.iinfo(np.int64).max // 4, dtype=np.int64)
    on_dole = entries.benefit == 2
    np.minimum.at(unemployed_from, entries.person[on_dole], entries.start[on_dole])
    last_off = np.minimum(last_off, unemployed_from[cp] - 1 - first_month)
    spans = np.maximum(last_off - first_off + 1, 0)
    wage = np.clip(rng.lognormal(np.log(7000), 0.45, k_cp), 2490, 36000)
    c_person = np.repeat(cp, spans)
    c_month = first_month + np.repeat(first_off, spans) + within_spans(spans)
    c_amount = np.repeat(np.round(wage * CONTRIBUTION_RATE, 2), spans)
    c_employer = np.repeat(employers[rng.integers(0, len(employers), k_cp)], spans)
    return c_person, c_month, c_amount, c_employer


def _unemployed_employers(rng: np.random.Generator, roll: Roll, unemployed: np.ndarray, employers: np.ndarray,
                          first_month: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each planted unemployed: the first month an employer contributes in their entry, for how many
    months (1-6, within the entry and the 12 months), the monthly amount and the employer."""
    uc_row = roll.index[unemployed]
    lo = np.maximum(roll.start[uc_row], first_month)
    room = roll.paid_through[uc_row] - lo + 1
    uc_len = 1 + (rng.random(len(unemployed)) * np.minimum(6, room)).astype(np.int64)
    uc_begin = lo + (rng.random(len(unemployed)) * (room - uc_len + 1)).astype(np.int64)
    uc_wage = np.clip(rng.lognormal(np.log(7000), 0.45, len(unemployed)), 2490, 36000)
    uc_employer = employers[rng.integers(0, len(employers), len(unemployed))]
    return uc_begin, uc_len, np.round(uc_wage * CONTRIBUTION_RATE, 2), uc_employer


@dataclass
class Subsidies:
    """Employer subsidies: the frame, and its rows' parts before the frame's order."""

    frame: pd.DataFrame
    business: np.ndarray  # index among the businesses
    month: np.ndarray
    amount: np.ndarray
    deregistered: np.ndarray  # the planted deregistered businesses still subsidised (indexes)
    months_after: np.ndarray  # for how many months after the one they closed in
    end_day: np.ndarray  # per business: its deregistration day, NO_DAY if none
    end_month: np.ndarray  # per business: its deregistration month (the last paid month if none)


def draw_subsidies(rng: np.random.Generator, businesses: pd.DataFrame, first_month: int, last_paid: int) -> Subsidies:
    """Employer subsidies: a third of the running businesses, 1-4 of them in the 12 months from
    ``first_month``; a few deregistered ones (planted) keep receiving them for 1-6 months after the
    month they closed."""
    k_bus = len(businesses)
    bus_status = businesses["status"].to_numpy(dtype=object)
    sub = np.flatnonzero(np.isin(bus_status, ("存续", "在业")) & (rng.random(k_bus) < 0.3))
    s_bus = np.repeat(sub, rng.integers(1, 5, len(sub)))
    s_month = first_month + rng.integers(0, 12, len(s_bus))
    dereg_day = np.full(k_bus, NO_DAY, dtype=np.int64)
    gone = np.flatnonzero(bus_status == "注销")
    dereg_day[gone] = to_days(businesses["deregistered_on"].to_numpy(dtype=object)[gone])
    dereg_month = np.where(dereg_day == NO_DAY, last_paid, month_of(np.where(dereg_day == NO_DAY, 0, dereg_day)))
    sd_rows = distinct_sample(rng, gone[dereg_month[gone] < last_paid], plant_count(k_bus, 0.01, 3))
    sd_len = 1 + (rng.random(len(sd_rows)) * np.minimum(6, last_paid - dereg_month[sd_rows])).astype(np.int64)
    s_bus = np.concatenate([s_bus, np.repeat(sd_rows, sd_len)])
    s_month = np.concatenate([s_month, np.repeat(dereg_month[sd_rows] + 1, sd_len) + within_spans(sd_len)])
    s_type = rng.choice(len(SUBSIDIES), len(s_bus), p=[0.5, 0.35, 0.15])
    s_amount = np.round(np.select([s_type == 0, s_type == 1], [rng.uniform(2000, 80000, len(s_bus)),
                                                             rng.uniform(500, 6000, len(s_bus))], 1500.0), 2)
    s_order = np.lexsort((s_bus, s_month))
    bus_uscc = pa.array(businesses["uscc"])
    frame = pd.DataFrame({
        "uscc": str_column(bus_uscc.take(pa.array(s_bus[s_order]))),
        "subsidy_type": str_column(pick(SUBSIDIES, s_type[s_order])),
        "month": str_column(month_text(s_month[s_order])),
        "amount": pd.Series(s_amount[s_order], dtype="float64"),
    })
    return Subsidies(frame, s_bus, s_month, s_amount, sd_rows, sd_len, dereg_day, dereg_month)
