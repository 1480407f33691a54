"""The social-insurance office's system (社保经办) as an agency: its five feeds, with history.

Built from the office's tables as generated (City.roll, .contributions, .subsidies, which stay as they
were) and drawn from the office history's own stream (``[seed, 103]``, sandbox/city/build.py), so no
older frame moves:

- ``social_insurance.benefit_roll``: one row per entry (person and scheme) with its key, the insuring
  office's district, start month, stop month (the first month not paid, for an entry that is not
  active), paid-through month and when the office last wrote it (``updated_at``: the payment run of
  its last paid month, or the day it was stopped or suspended, or its last account change);
- ``social_insurance.payments``: the monthly payment ledger, one row per entry and month paid over the
  months the system keeps online (:data:`LEDGER_MONTHS`), into the account of that month: months paid
  after a death or in custody are there for the planted cases, since their entries were paid through;
- ``social_insurance.contributions`` and ``social_insurance.employer_subsidies``: the tables with keys
  and the time each was paid;
- ``social_insurance.account_changes``: the bank-account change log: the people of a shared account
  moved onto it from an account of their own, and about :data:`CHANGE_RATE` of the entries changed
  to a new account of their own (an entry's old account is one nobody else has).

Planted (:func:`stop_late`): entries stopped in the month of death only after 1-3 more months were
paid: the roll says stopped in time, the ledger shows the overpayment (truths ``stopped_but_overpaid``).

Times are Asia/Shanghai office hours before the city's as-of day, ISO with +08:00.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from fundx.core.codes import ACTIVE
from sandbox.city.draws import within_spans
from sandbox.city.office import _luhn_accounts
from sandbox.city.text import DAY, arrow_text, ascii_matrix, day_number, month_of, month_text, str_column, time_text

ROLL, PAYMENTS, CONTRIBUTIONS, SUBSIDIES, ACCOUNT_CHANGES = OFFICE_FEEDS = (
    "social_insurance.benefit_roll",
    "social_insurance.payments",
    "social_insurance.contributions",
    "social_insurance.employer_subsidies",
    "social_insurance.account_changes",
)
#: months of payments the office's system keeps online (the ledger's history)
LEDGER_MONTHS = 12
#: the share of entries whose account was changed to another of the person's own in the ledger's months
CHANGE_RATE = 0.02


def _months(texts: pd.Series) -> np.ndarray:
    """Month numbers of YYYY-MM texts."""
    return (texts.str[:4].astype(np.int64) * 12 + texts.str[5:7].astype(np.int64) - 1).to_numpy()


def _first_day(months: np.ndarray) -> np.ndarray:
    """Day numbers (since 1970-01-01) of each month's first day."""
    return (np.asarray(months, dtype=np.int64) - 1970 * 12).astype("datetime64[M]").astype("datetime64[D]").astype(
        np.int64)


def _keys(prefix: str, numbers: np.ndarray, width: int) -> pd.Series:
    return str_column(arrow_text(ascii_matrix(len(numbers), prefix, (numbers, width))))


def office_feeds(rng: np.random.Generator, roll: pd.DataFrame, contributions: pd.DataFrame,
                 subsidies: pd.DataFrame, as_of: date) -> dict[str, pd.DataFrame]:
    """The office's five feeds (module docstring), each ordered by (incremental column, key)."""
    as_of_days = day_number(as_of)
    last_paid = int(month_of(np.array([as_of_days]))[0]) - 1
    first_ledger = last_paid - LEDGER_MONTHS + 1
    n = len(roll)
    entry = np.arange(1, n + 1, dtype=np.int64)
    start, paid = _months(roll["start_month"]), _months(roll["paid_through"])
    active = (roll["status"] == ACTIVE).to_numpy()
    account = roll["bank_account"].to_numpy(dtype=object)

    # the account change log: the people of a shared account moved onto it, and a few changes of one's own
    people_of = roll.groupby("bank_account")["id_number"].agg(["nunique", "first"])
    shared = people_of[people_of["nunique"] >= 2]["first"]
    holder = roll["bank_account"].map(shared)
    moved = (holder.notna() & (holder != roll["id_number"])).to_numpy()
    own = ~moved & ~holder.notna().to_numpy() & (rng.random(n) < CHANGE_RATE)
    lo = np.maximum(start + 1, first_ledger)
    changed = (moved | own) & (lo <= paid)
    ch = np.flatnonzero(changed)
    change_month = lo[ch] + (rng.random(len(ch)) * (paid[ch] - lo[ch] + 1)).astype(np.int64)
    change_day = np.minimum(_first_day(change_month) + rng.integers(0, 28, len(ch)), as_of_days - 1)
    change_at = change_day * DAY + rng.integers(9 * 3600, 17 * 3600, len(ch))
    old_account = np.asarray(arrow_text(_luhn_accounts(rng, len(ch))).to_pylist(), dtype=object)
    change_order = np.lexsort((entry[ch], change_at))
    changes = pd.DataFrame({
        "change_id": _keys("AC", np.arange(1, len(ch) + 1), 10),
        "entry_id": _keys("RE", entry[ch][change_order], 10),
        "id_number": roll["id_number"].to_numpy(dtype=object)[ch][change_order],
        "old_account": old_account[change_order],
        "new_account": account[ch][change_order],
        "changed_at": str_column(time_text(change_at[change_order])),
    })
    for column in ("id_number", "old_account", "new_account"):
        changes[column] = changes[column].astype(object)
    switch_month = np.full(n, -1, dtype=np.int64)  # per entry: the month its current account was first used
    switch_month[ch] = change_month
    before = np.full(n, None, dtype=object)
    before[ch] = old_account

    # the roll: when the office last wrote each entry
    run_day = _first_day(paid) + 9  # the payment run: the 10th
    stop_day = np.minimum(_first_day(paid + 1) + rng.integers(0, 20, n), as_of_days - 1)
    wrote = np.where(active, run_day * DAY + rng.integers(10 * 3600, 12 * 3600, n),
                     stop_day * DAY + rng.integers(9 * 3600, 17 * 3600, n))
    has_change = np.zeros(n, dtype=bool)
    has_change[ch] = True
    last_change = np.zeros(n, dtype=np.int64)
    last_change[ch] = change_at
    wrote = np.where(has_change, np.maximum(wrote, last_change), wrote)
    order = np.lexsort((entry, wrote))
    stop = pd.Series(np.asarray(month_text(paid + 1).to_pylist(), dtype=object)).where(~active, None)
    rolled = pd.DataFrame({
        "entry_id": _keys("RE", entry, 10),
        "id_number": roll["id_number"],
        "name": roll["name"],
        "scheme": roll["benefit_type"],
        "status": roll["status"],
        "paying_district": roll["paying_district"],
        "monthly_amount": roll["monthly_amount"],
        "bank_account": roll["bank_account"],
        "start_month": roll["start_month"],
        "stop_month": stop,
        "paid_through": roll["paid_through"],
        "updated_at": str_column(time_text(wrote)),
    }).iloc[order].reset_index(drop=True)

    # the payment ledger: every month paid within the ledger's months, into that month's account
    first = np.maximum(start, first_ledger)
    spans = np.maximum(paid - first + 1, 0)
    row = np.repeat(np.arange(n), spans)
    month = np.repeat(first, spans) + within_spans(spans)
    paid_at = (_first_day(month) + 9) * DAY + 10 * 3600 + (entry[row] * 7919) % 7200
    into = np.where((switch_month[row] >= 0) & (month < switch_month[row]), before[row], account[row])
    ledger_order = np.lexsort((entry[row], paid_at))
    r = row[ledger_order]
    payments = pd.DataFrame({
        "payment_id": str_column(arrow_text(ascii_matrix(len(r), "PM", (entry[r], 8), (month[ledger_order] // 12, 4),
                                                         (month[ledger_order] % 12 + 1, 2)))),
        "entry_id": _keys("RE", entry[r], 10),
        "id_number": roll["id_number"].to_numpy(dtype=object)[r],
        "scheme": roll["benefit_type"].to_numpy(dtype=object)[r],
        "month": str_column(month_text(month[ledger_order])),
        "amount": pd.Series(roll["monthly_amount"].to_numpy(dtype="float64")[r], dtype="float64"),
        "bank_account": into[ledger_order],
        "paid_at": str_column(time_text(paid_at[ledger_order])),
    })
    for column in ("id_number", "scheme", "bank_account"):
        payments[column] = payments[column].astype(object)

    # contributions (collected in the month, 15th-24th) and subsidies (paid on the 25th), with keys
    c_month = _months(contributions["month"])
    c_no = np.arange(1, len(contributions) + 1, dtype=np.int64)
    c_at = (_first_day(c_month) + 14 + c_no % 10) * DAY + 14 * 3600 + (c_no * 7919) % 3600
    c_order = np.lexsort((c_no, c_at))
    contributed = pd.DataFrame({
        "contribution_id": _keys("CT", c_no, 10),
        "id_number": contributions["id_number"],
        "employer_uscc": contributions["employer_uscc"],
        "month": contributions["month"],
        "amount": contributions["amount"],
        "paid_at": str_column(time_text(c_at)),
    }).iloc[c_order].reset_index(drop=True)
    s_month = _months(subsidies["month"])
    s_no = np.arange(1, len(subsidies) + 1, dtype=np.int64)
    s_at = (_first_day(s_month) + 24) * DAY + 15 * 3600 + (s_no * 7919) % 3600
    s_order = np.lexsort((s_no, s_at))
    subsidised = pd.DataFrame({
        "subsidy_id": _keys("ES", s_no, 10),
        "uscc": subsidies["uscc"],
        "subsidy_type": subsidies["subsidy_type"],
        "month": subsidies["month"],
        "amount": subsidies["amount"],
        "paid_at": str_column(time_text(s_at)),
    }).iloc[s_order].reset_index(drop=True)
    return {ROLL: rolled, PAYMENTS: payments, CONTRIBUTIONS: contributed, SUBSIDIES: subsidised,
            ACCOUNT_CHANGES: changes}


def stop_late(rng: np.random.Generator, office: dict[str, pd.DataFrame], candidates: list[dict],
              as_of: date) -> list[dict]:
    """Plant entries stopped late: a dead person's entry that the office stopped from the month after the
    death (the roll says stopped, paid through the death month) only after the ledger had paid 1-3
    months after it. The roll no longer shows it; the payment ledger does (paid_after_death reads it).

    ``candidates``: dead people whose one entry was stopped in the month of their death and whose death
    records reach the stage clean ({id_number, death_date, death_month, known_to}); one in ten of them
    (at least two) are planted. Returns the truths (``stopped_but_overpaid``)."""
    as_of_days = day_number(as_of)
    last_paid = int(month_of(np.array([as_of_days]))[0]) - 1
    roll, payments = office[ROLL], office[PAYMENTS]
    pool = [c for c in candidates if c["death_month"] <= last_paid - 1]
    chosen = sorted(rng.choice(len(pool), min(len(pool), max(2, round(len(pool) * 0.1))), replace=False).tolist()) \
        if pool else []
    truths, added = [], []
    first_row: dict[str, int] = {}  # each person's first roll row (a comparison over the roll per case: n^2)
    for k, i in enumerate(roll["id_number"].tolist()):
        first_row.setdefault(i, k)
    for i in chosen:
        case = pool[i]
        at = first_row[case["id_number"]]
        entry = roll.iloc[at]
        k = 1 + int(rng.integers(0, min(3, last_paid - case["death_month"])))
        months = case["death_month"] + 1 + np.arange(k)
        number = int(entry["entry_id"][2:])
        paid_at = (_first_day(months) + 9) * DAY + 10 * 3600 + (number * 7919) % 7200
        added.append(pd.DataFrame({
            "payment_id": [f"PM{number:08d}{m // 12:04d}{m % 12 + 1:02d}" for m in months],
            "entry_id": entry["entry_id"], "id_number": entry["id_number"], "scheme": entry["scheme"],
            "month": np.asarray(month_text(months).to_pylist(), dtype=object), "amount": float(entry["monthly_amount"]),
            "bank_account": entry["bank_account"],
            "paid_at": np.asarray(time_text(paid_at).to_pylist(), dtype=object)}))
        stopped_on = min(int(_first_day(np.array([months[-1] + 1]))[0]) + int(rng.integers(0, 20)), as_of_days - 1)
        wrote = stopped_on * DAY + int(rng.integers(9 * 3600, 17 * 3600))
        roll.loc[at, "updated_at"] = time_text(np.array([wrote])).to_pylist()[0]
        truths.append({"id_number": case["id_number"], "death_date": case["death_date"], "status": entry["status"],
                       "paid_through": entry["paid_through"], "paid_months": month_text(months).to_pylist(),
                       "months_after_death": k, "monthly_amount": float(entry["monthly_amount"]),
                       "amount": round(k * float(entry["monthly_amount"]), 2), "known_to": case["known_to"]})
    if added:
        ledger = pd.concat([payments, *added], ignore_index=True)
        for column in ("payment_id", "entry_id", "id_number", "scheme", "month", "bank_account", "paid_at"):
            ledger[column] = ledger[column].astype(object)
        office[PAYMENTS] = ledger.sort_values(["paid_at", "payment_id"], kind="stable").reset_index(drop=True)
        office[ROLL] = roll.sort_values(["updated_at", "entry_id"], kind="stable").reset_index(drop=True)
    return truths
