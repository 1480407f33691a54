"""The office's accounts and entries over history: the cases of shared_account, duplicate_receipt and
unemployed_contributing that only the office's feeds show (the payment ledger, the account change log,
the roll's stopped entries), and their look-alikes.

Drawn from the accounts' own stream (``[seed, 105]``, sandbox/city/build.py) after everything else, and
planted only in the office's feeds (City.office): City.roll, City.contributions and every agency's feed
stay as they were. Every person planted on is alive, never a prisoner, in no other truth and not a
frequent patient; the contributions read are the ones already drawn (each with its wage declared), so
no case of another rule is made.

Planted (truths, generate_city's docstring):

- ``shared_accounts_history`` (shared_account): two unrelated people paid into one account (the second
  moved onto the first's by the change log), kind ``two_people``; or the second's entry stopped since,
  so only the ledger's months show it (``stopped_member``); or a couple on file and an unrelated third
  person on the couple's account (``couple_and_other``: the exemption spares the couple, not the third);
- ``accounts_taken_over`` (shared_account): a living person's account changed to the account of someone
  who had died (``death``) or was in custody (``custody``) before the change (the Guangdong report's
  修改银行账户 pattern);
- ``duplicate_receipts_ended`` (duplicate_receipt): a second entry on an excluded scheme, paid alongside
  the first for 1-6 months and stopped since (``pensions``: basic and resident pension; ``into_pension``:
  unemployment benefit run on 1-3 months into a pension);
- ``unemployed_contributing_history`` (unemployed_contributing): an unemployment entry, stopped since
  or still paid, paid in months an employer contributed for the person.

Look-alikes (truths["lookalikes"]): spouses on one account (the roll's ``spouse_id_number``), a widow(er)
moved onto the late spouse's account, a person who changed to a new account of their own, unemployment
benefit that ended the month before a pension began, and unemployment benefit that began the month
after the last contribution (the job ended).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from fundx.core import codes
from sandbox.city.draws import RowIndex
from sandbox.city.office import _benefit_amounts
from sandbox.city.office_feeds import ACCOUNT_CHANGES, PAYMENTS, ROLL, _first_day
from sandbox.city.text import DAY, day_number, month_of, time_text

#: the roll feed's column for the spouse the office has on file (配偶公民身份号码)
SPOUSE = "spouse_id_number"


@dataclass
class Pools:
    """Who the accounts' cases may be planted on, per person in the city (positions)."""

    free: np.ndarray  # bool: alive, in no truth, never a prisoner, not a frequent patient
    male: np.ndarray
    birth: np.ndarray  # day numbers
    id_text: np.ndarray  # identity numbers (Python strings)
    names: np.ndarray  # names (Python strings)
    district: np.ndarray  # the district code each lives in (text)
    dead: list[dict] = field(default_factory=list)  # {id_number, death_date, death_month}: stopped in time
    custody: list[dict] = field(default_factory=list)  # {id_number, admitted_on, sentence_end}: clean rows


def _month_text(m: int) -> str:
    return f"{int(m) // 12:04d}-{int(m) % 12 + 1:02d}"


def _months(texts: pd.Series) -> np.ndarray:
    return (texts.str[:4].astype(np.int64) * 12 + texts.str[5:7].astype(np.int64) - 1).to_numpy()


def _stamp(seconds: int) -> str:
    return str(time_text(np.array([seconds])).to_pylist()[0])


class _Office:
    """The office's feeds being planted in: new rows gathered, written back in the feeds' order at the end."""

    def __init__(self, office: dict[str, pd.DataFrame], as_of: date) -> None:
        self.office = office
        self.as_of_days = day_number(as_of)
        self.last_paid = int(month_of(np.array([self.as_of_days]))[0]) - 1
        self.first_ledger = self.last_paid - 11
        roll = office[ROLL].copy()
        if SPOUSE not in roll:
            roll.insert(int(roll.columns.get_loc("name")) + 1, SPOUSE, pd.Series([None] * len(roll), dtype=object))
        self.roll = roll
        self.ledger = office[PAYMENTS].copy()
        # the ledger's rows per entry and per person (its rows are neither added nor moved until write)
        self.ledger_entries = RowIndex(self.ledger["entry_id"].to_numpy(dtype=object))
        self.ledger_people = RowIndex(self.ledger["id_number"].to_numpy(dtype=object))
        self.changes = office[ACCOUNT_CHANGES]
        self.next_entry = 1 + max(int(e[2:]) for e in roll["entry_id"])
        self.next_change = 1 + max([int(c[2:]) for c in self.changes["change_id"]], default=0)
        self.new_entries: list[dict] = []
        self.new_payments: list[dict] = []
        self.new_changes: list[dict] = []
        self.row_of = {i: k for k, i in enumerate(roll["id_number"])}  # a person's (last) roll row

    def row(self, id_number: str) -> pd.Series:
        return self.roll.iloc[self.row_of[id_number]]

    def pay(self, entry_id: str, id_number: str, scheme: str, months: range | list[int], amount: float,
            account: str) -> None:
        number = int(entry_id[2:])
        for m in months:
            if self.first_ledger <= m <= self.last_paid:
                at = (int(_first_day(np.array([m]))[0]) + 9) * DAY + 10 * 3600 + (number * 7919) % 7200
                self.new_payments.append({
                    "payment_id": f"PM{number:08d}{m // 12:04d}{m % 12 + 1:02d}", "entry_id": entry_id,
                    "id_number": id_number, "scheme": scheme, "month": _month_text(m), "amount": float(amount),
                    "bank_account": account, "paid_at": _stamp(at)})

    def add_entry(self, rng: np.random.Generator, pools: Pools, p: int, scheme: str, amount: float, account: str,
                  start: int, through: int) -> str:
        """A new entry for person ``p`` paid from ``start`` through ``through`` (stopped after unless that is
        the last month paid), with its ledger rows."""
        entry_id = f"RE{self.next_entry:010d}"
        self.next_entry += 1
        active = through >= self.last_paid
        if active:
            wrote = (int(_first_day(np.array([through]))[0]) + 9) * DAY + int(rng.integers(10 * 3600, 12 * 3600))
        else:
            day = min(int(_first_day(np.array([through + 1]))[0]) + int(rng.integers(0, 20)), self.as_of_days - 1)
            wrote = day * DAY + int(rng.integers(9 * 3600, 17 * 3600))
        self.new_entries.append({
            "entry_id": entry_id, "id_number": pools.id_text[p], "name": pools.names[p], SPOUSE: None,
            "scheme": scheme, "status": codes.ACTIVE if active else codes.STOPPED,
            "paying_district": pools.district[p], "monthly_amount": float(amount), "bank_account": account,
            "start_month": _month_text(start), "stop_month": None if active else _month_text(through + 1),
            "paid_through": _month_text(through), "updated_at": _stamp(wrote)})
        self.pay(entry_id, pools.id_text[p], scheme, range(start, through + 1), amount, account)
        return entry_id

    def move(self, rng: np.random.Generator, id_number: str, account: str, month: int) -> str:
        """Change a person's (one) entry to ``account`` on one of the first nine days of ``month`` (before the
        10th's payment run): the change log, the roll, the ledger from that month. Returns changed_at."""
        at = self.row_of[id_number]
        entry = self.roll.iloc[at]
        first = int(_first_day(np.array([month]))[0])
        day = min(first + int(rng.integers(0, 9)), self.as_of_days - 1)
        seconds = day * DAY + int(rng.integers(9 * 3600, 17 * 3600))
        changed_at = _stamp(seconds)
        self.new_changes.append({
            "change_id": f"AC{self.next_change:010d}", "entry_id": entry["entry_id"], "id_number": id_number,
            "old_account": entry["bank_account"], "new_account": account, "changed_at": changed_at})
        self.next_change += 1
        self.roll.iloc[at, self.roll.columns.get_loc("bank_account")] = account
        if changed_at > entry["updated_at"]:
            self.roll.iloc[at, self.roll.columns.get_loc("updated_at")] = changed_at
        rows = self.ledger_entries.rows(entry["entry_id"])
        mine = rows[self.ledger["month"].iloc[rows].to_numpy(dtype=object) >= _month_text(month)]
        self.ledger.iloc[mine, self.ledger.columns.get_loc("bank_account")] = account
        return changed_at

    def write(self) -> None:
        """Put the new rows in, each feed in its order, with its columns' types."""
        def merged(frame: pd.DataFrame, rows: list[dict], order: list[str]) -> pd.DataFrame:
            if rows:
                frame = pd.concat([frame.astype(object), pd.DataFrame(rows, columns=list(frame.columns))],
                                  ignore_index=True)
            out = frame.sort_values(order, kind="stable").reset_index(drop=True)
            for column in out.columns:
                if column in ("monthly_amount", "amount"):
                    out[column] = out[column].astype("float64")
                else:
                    out[column] = out[column].astype(object)
            return out

        self.office[ROLL] = merged(self.roll, self.new_entries, ["updated_at", "entry_id"])
        self.office[PAYMENTS] = merged(self.ledger, self.new_payments, ["paid_at", "payment_id"])
        self.office[ACCOUNT_CHANGES] = merged(self.changes, self.new_changes, ["changed_at", "change_id"])


def plant_accounts(rng: np.random.Generator, office: dict[str, pd.DataFrame], pools: Pools,
                   contributions: pd.DataFrame, as_of: date) -> dict:
    """Plant the accounts' cases and look-alikes in ``office`` (in place); the truths (module docstring):
    the four lists and ``lookalikes``."""
    o = _Office(office, as_of)
    roll = o.roll
    entries = roll.groupby("id_number")["scheme"].size()
    changed = set(o.changes["id_number"])
    contributed: dict[str, set[int]] = {}
    for i, m in zip(contributions["id_number"], _months(contributions["month"])):
        contributed.setdefault(i, set()).add(int(m))
    used: set[str] = set()
    free_ids = {pools.id_text[p] for p in np.flatnonzero(pools.free)}
    pos_of = {pools.id_text[p]: int(p) for p in np.flatnonzero(pools.free)}
    start, paid = _months(roll["start_month"]), _months(roll["paid_through"])
    single = roll["id_number"].map(entries).to_numpy() == 1

    def candidates(mask: np.ndarray) -> list[str]:
        ids = roll["id_number"].to_numpy(dtype=object)[mask & single]
        return sorted(i for i in ids if i in free_ids and i not in changed and i not in used)

    def take(pool: list[str], k: int) -> list[str]:
        pool = [i for i in pool if i not in used]
        chosen = [pool[j] for j in sorted(rng.choice(len(pool), min(k, len(pool)), replace=False))] if pool else []
        used.update(chosen)
        return chosen

    def one(pool: list[str]) -> str | None:
        chosen = take(pool, 1)
        return chosen[0] if chosen else None

    active = (roll["status"] == codes.ACTIVE).to_numpy()
    before_ledger = start <= o.first_ledger - 1
    settled = candidates(active & before_ledger)  # active, single entry, paid over the whole ledger
    truths: dict = {"shared_accounts_history": [], "accounts_taken_over": [], "duplicate_receipts_ended": [],
                    "unemployed_contributing_history": []}
    lookalikes: list[dict] = []

    def ledger_paid(id_number: str, account: str) -> tuple[list[str], float]:
        rows = [r for r in o.new_payments if r["id_number"] == id_number and r["bank_account"] == account]
        theirs = o.ledger.iloc[o.ledger_people.rows(id_number)]
        mine = theirs[(theirs["bank_account"] == account).to_numpy()]
        months = sorted({*mine["month"], *(r["month"] for r in rows)})
        return months, round(float(mine["amount"].sum()) + sum(r["amount"] for r in rows), 2)

    # shared_account: two unrelated people on one account; the second moved onto the first's
    for holder in take(settled, 3):
        mover = one(settled)
        if mover is None:
            break
        account = o.row(holder)["bank_account"]
        month = o.first_ledger + 1 + int(rng.integers(0, 10))
        o.move(rng, mover, account, month)
        months, amount = ledger_paid(mover, account)
        truths["shared_accounts_history"].append({"bank_account": account, "kind": "two_people",
                                                  "id_numbers": sorted([holder, mover]), "months": months,
                                                  "amount": amount})
    # ... and one whose entry stopped since: only the ledger's months show the two
    stopped = candidates((roll["status"] == codes.STOPPED).to_numpy() & (paid >= o.first_ledger + 2)
                         & (paid <= o.last_paid - 1) & (start <= o.first_ledger))
    for moved in take(stopped, 2):
        keeper = one(settled)
        if keeper is None:
            break
        account = o.row(keeper)["bank_account"]
        last = int(_months(pd.Series([o.row(moved)["paid_through"]]))[0])
        month = o.first_ledger + 1 + int(rng.integers(0, last - o.first_ledger))
        o.move(rng, moved, account, month)
        months, amount = ledger_paid(moved, account)
        truths["shared_accounts_history"].append({"bank_account": account, "kind": "stopped_member",
                                                  "id_numbers": sorted([keeper, moved]), "months": months,
                                                  "amount": amount})

    # shared_account: an account changed to one whose holder had died or was in custody
    def take_over(former: dict, since: str, event: str, until: str | None) -> None:
        if former["id_number"] not in o.row_of or former["id_number"] in changed:
            return
        since_day = day_number(date.fromisoformat(since))
        end_day = day_number(date.fromisoformat(until)) if until else o.as_of_days
        lo = max(int(month_of(np.array([since_day]))[0]) + 1, o.first_ledger + 1)  # the month after the event
        hi = min(int(month_of(np.array([min(end_day, o.as_of_days)]))[0]) - 1, o.last_paid)  # in custody still
        if lo > hi:
            return
        taker = one(settled)
        if taker is None:
            return
        used.add(former["id_number"])
        account = o.row(former["id_number"])["bank_account"]
        month = lo + int(rng.integers(0, hi - lo + 1))
        changed_at = o.move(rng, taker, account, month)
        months, amount = ledger_paid(taker, account)
        truths["accounts_taken_over"].append({
            "bank_account": account, "id_number": taker, "former_id_number": former["id_number"], "event": event,
            "event_date": since, "changed_at": changed_at, "months": months, "amount": amount})

    dead = [d for d in pools.dead if d["id_number"] not in used]
    for j in sorted(rng.choice(len(dead), min(len(dead), 3), replace=False)) if dead else []:
        take_over(dead[j], dead[j]["death_date"], "death", None)
    held = [c for c in pools.custody if c["id_number"] not in used]
    for j in sorted(rng.choice(len(held), min(len(held), 2), replace=False)) if held else []:
        take_over(held[j], held[j]["admitted_on"], "custody", held[j]["sentence_end"])

    # look-alikes of shared_account: spouses on one account; a widow(er) on the late spouse's account; a
    # change to a new account of one's own
    def spouses(a: str, b: str) -> None:
        for x, y in ((a, b), (b, a)):
            roll.iloc[o.row_of[x], roll.columns.get_loc(SPOUSE)] = y

    # the settled people's sex and birth, to pick a spouse among them without a loop over them all per pick
    settled_at = np.array([pos_of[i] for i in settled], dtype=np.int64)
    settled_male, settled_birth = pools.male[settled_at], pools.birth[settled_at].astype(np.int64)
    settled_index = {i: k for k, i in enumerate(settled)}

    def settled_where(mask: np.ndarray) -> list[str]:
        """The settled people not used yet where ``mask`` holds, in their order."""
        mask = mask.copy()
        mask[[settled_index[i] for i in used if i in settled_index]] = False
        return [settled[k] for k in np.flatnonzero(mask)]

    def partner_for(a: str) -> str | None:
        p = pos_of[a]
        pool = settled_where((settled_male != pools.male[p]) & (np.abs(settled_birth - int(pools.birth[p])) < 8 * 365))
        return take(pool, 1)[0] if pool else None

    for a in take(settled, 3):
        b = partner_for(a)
        if b is None:
            continue
        spouses(a, b)
        o.move(rng, b, o.row(a)["bank_account"], o.first_ledger + 1 + int(rng.integers(0, 10)))
        lookalikes.append({"rule": "shared_account", "kind": "spouses", "bank_account": o.row(a)["bank_account"]})
    for d in [d for d in pools.dead if d["id_number"] not in used and d["id_number"] in o.row_of
              and d["id_number"] not in changed][:2]:
        lo = max(int(month_of(np.array([day_number(date.fromisoformat(d["death_date"]))]))[0]) + 1,
                 o.first_ledger + 1)
        ref = int(np.flatnonzero(pools.id_text == d["id_number"])[0])
        pool = settled_where(settled_male != pools.male[ref])
        if lo > o.last_paid or not pool:
            continue
        (widow,) = take(pool, 1)
        used.add(d["id_number"])
        spouses(widow, d["id_number"])
        account = o.row(d["id_number"])["bank_account"]
        o.move(rng, widow, account, lo + int(rng.integers(0, o.last_paid - lo + 1)))
        lookalikes.append({"rule": "shared_account", "kind": "spouse_after_death", "bank_account": account})
    alone = office[ROLL].groupby("bank_account")["id_number"].nunique()  # as drawn: no account of two yet
    own = o.changes[~o.changes["id_number"].isin(list(used))
                    & (o.changes["new_account"].map(alone) == 1).to_numpy()]
    for k in sorted(rng.choice(len(own), min(3, len(own)), replace=False)) if len(own) else []:
        lookalikes.append({"rule": "shared_account", "kind": "own_new_account",
                           "bank_account": own["new_account"].iloc[k]})

    # duplicate_receipt: a second pension alongside the first for 1-6 months, stopped since (one of them,
    # where the ledger reaches back that far, last year)
    pensioners = candidates(active & before_ledger & roll["scheme"].isin([codes.BASIC_PENSION,
                                                                           codes.RESIDENT_PENSION]).to_numpy())
    last_year = o.last_paid - o.last_paid % 12 - 1  # December of the year before the last month paid
    for n, p_id in enumerate(take(pensioners, 3)):
        first = o.row(p_id)
        other = codes.RESIDENT_PENSION if first["scheme"] == codes.BASIC_PENSION else codes.BASIC_PENSION
        end_hi = last_year if n == 0 and last_year >= o.first_ledger else o.last_paid - 1
        end = o.first_ledger + int(rng.integers(0, end_hi - o.first_ledger + 1))
        begin = end - int(rng.integers(0, 6))
        amount = round(float(_benefit_amounts(rng, np.array([codes.SCHEMES.index(other)]))[0]), 2)
        o.add_entry(rng, pools, pos_of[p_id], other, amount, first["bank_account"], begin, end)
        truths["duplicate_receipts_ended"].append(_dup_truth(o, p_id, "pensions", first, other, amount, begin, end))
    # ... unemployment benefit run on 1-3 months into a pension begun in the ledger's months; look-alike:
    # the benefit ended the month before (switched at the month boundary)
    retired = candidates(active & (start >= o.first_ledger + 1) & (start <= o.last_paid - 1)
                         & roll["scheme"].isin([codes.BASIC_PENSION, codes.RESIDENT_PENSION]).to_numpy())
    retired = [i for i in retired if i not in contributed]
    for n, p_id in enumerate(take(retired, 6)):
        first = o.row(p_id)
        began = int(_months(pd.Series([first["start_month"]]))[0])
        overlap = 0 if n % 2 else min(1 + int(rng.integers(0, 3)), o.last_paid - began)
        end = began - 1 + overlap
        amount = round(float(rng.uniform(1800, 2100)), 2)
        o.add_entry(rng, pools, pos_of[p_id], codes.UNEMPLOYMENT, amount, first["bank_account"],
                    began - 3 - int(rng.integers(0, 10)), end)
        if overlap:
            truths["duplicate_receipts_ended"].append(
                _dup_truth(o, p_id, "into_pension", first, codes.UNEMPLOYMENT, amount, began, end))
        else:
            lookalikes.append({"rule": "duplicate_receipt", "kind": "switched_at_month_boundary", "id_number": p_id})

    # unemployed_contributing: unemployment benefit paid in months an employer contributed; look-alike:
    # the benefit began the month after the last contribution (the job ended)
    workers = sorted(i for i in contributed if i in free_ids and i not in o.row_of and i not in used)
    for p_id in take(workers, 3):
        worked = sorted(contributed[p_id])
        pick = worked[int(rng.integers(0, len(worked)))]
        begin = max(pick - int(rng.integers(0, 3)), o.first_ledger)
        end = min(pick + int(rng.integers(0, 3)), o.last_paid)
        amount = round(float(rng.uniform(1800, 2100)), 2)
        account = _new_account(rng)
        o.add_entry(rng, pools, pos_of[p_id], codes.UNEMPLOYMENT, amount, account, begin, end)
        both = [m for m in worked if begin <= m <= end]
        truths["unemployed_contributing_history"].append({
            "id_number": p_id, "months": [_month_text(m) for m in both], "monthly_amount": amount,
            "amount": round(len(both) * amount, 2), "status": codes.ACTIVE if end >= o.last_paid else codes.STOPPED})
    ended = sorted(i for i in workers if i not in used and max(contributed[i]) <= o.last_paid - 2)
    for p_id in take(ended, 3):
        begin = max(contributed[p_id]) + 1
        end = min(begin + 1 + int(rng.integers(0, 6)), o.last_paid)
        o.add_entry(rng, pools, pos_of[p_id], codes.UNEMPLOYMENT, round(float(rng.uniform(1800, 2100)), 2),
                    _new_account(rng), begin, end)
        lookalikes.append({"rule": "unemployed_contributing", "kind": "benefit_after_job", "id_number": p_id})

    # shared_account: a couple's account with an unrelated third person on it: the exemption spares the
    # couple, not the third
    for a in take(settled, 2):
        b, third = partner_for(a), one(settled)
        if b is None or third is None:
            continue
        spouses(a, b)
        account = o.row(a)["bank_account"]
        o.move(rng, b, account, o.first_ledger + 1 + int(rng.integers(0, 10)))
        o.move(rng, third, account, o.first_ledger + 1 + int(rng.integers(0, 10)))
        months, amount = ledger_paid(third, account)
        truths["shared_accounts_history"].append({"bank_account": account, "kind": "couple_and_other",
                                                  "id_numbers": sorted([a, b, third]), "months": months,
                                                  "amount": amount})

    o.write()
    truths["lookalikes"] = lookalikes
    return truths


def _new_account(rng: np.random.Generator) -> str:
    from sandbox.city.office import _luhn_accounts

    return bytes(_luhn_accounts(rng, 1)[0]).decode("ascii")


def _dup_truth(o: _Office, id_number: str, kind: str, first: pd.Series, other: str, amount: float, begin: int,
               end: int) -> dict:
    months = list(range(max(begin, o.first_ledger), end + 1))
    smaller = min(float(first["monthly_amount"]), amount)
    monthly = dict(sorted({first["scheme"]: float(first["monthly_amount"]), other: amount}.items()))
    return {"id_number": id_number, "kind": kind, "schemes": sorted(monthly), "monthly_amounts": monthly,
            "months": [_month_text(m) for m in months], "amount": round(len(months) * smaller, 2)}
