"""Invalid rows: agency mistakes no normalisation repairs, planted so that the contracts quarantine them.

About INVALID_RATE of each feed's rows; the feed's kinds of mistakes (invalid_slots) are dealt
round-robin in a seeded random order, and each planted row is recorded with every contract rule it
breaks (sandbox/city/specs.py knows the contracts well enough to name them). Only rows still
``free`` are touched: never a row a planted truth depends on, never a messy one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fundx.core.idcolumns import NO_DAY, civil_from_days, days_from_civil, make_id_matrix
from sandbox.city.messiness import messy_value
from sandbox.city.specs import SPECS, FeedSpec
from sandbox.city.text import arrow_text, date_text, day_number, str_column, to_days

#: Share of a feed's rows planted invalid (at least one row from INVALID_MIN_ROWS rows on).
INVALID_RATE = 0.01
INVALID_MIN_ROWS = 10
#: Kinds that change the identity-number column: recorded in truths["messy"] (value and clean) and
#: truths["invalid_ids"] as well as in truths["invalid"].
UNREPAIRABLE = ("invalid_check", "excel_mangled", "id_old_15_digit", "id_unknown_area", "id_missing")
#: bills: amounts within [0, AMOUNT_MAX], the fund's share not above the total
AMOUNT_MAX = 10_000_000
AMOUNT_PLACEHOLDER = 99_999_999.99  # a legacy system's "unknown amount"
#: area codes that never were county-level codes of GB/T 2260 (typos, a prefecture's or a province's
#: code, nonsense); a number under one is shaped and checksummed right but issued nowhere
UNKNOWN_AREA_CODES = np.array([330199, 330150, 210199, 110199, 440398, 999999, 123456, 330100, 210000],
                              dtype=np.int64)
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
#: a 31-day month -> the 30-day (or February) month whose "31st" (or 29th/30th) a clerk writes instead
_SHORT_MONTH = np.array([0, 2, 2, 4, 4, 6, 6, 6, 9, 9, 11, 11, 11], dtype=np.int64)
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
#: Kinds of invalid rows, for docs/agencies.md and the truths: kind -> what the agency got wrong.
INVALID_KINDS: dict[str, str] = {
    "key_malformed": "the key written with a hyphen by a legacy export (MZ3301-0000012345)",
    "uscc_check": "credit code with a wrong check character",
    "uscc_truncated": "credit code missing its last character",
    "invalid_check": "identity number with a wrong MOD 11-2 check character",
    "excel_mangled": "identity number turned into a number by a spreadsheet (3.30106195610094e+17)",
    "id_old_15_digit": "first-generation 15-digit identity number, in a feed whose contract does not upgrade them",
    "id_unknown_area": ("identity number under an area code that never existed in GB/T 2260 (330199…, 999999…; a "
                        "prefecture's 330100…): right check character, issued nowhere"),
    "id_missing": "identity number left empty",
    "missing": "a required value left empty",
    "too_long": "a text value over its maximum length (a note appended to the name or place)",
    "not_allowed": "a value outside the enumeration (gender 未知, custody 监外执行, status 迁出)",
    "code_malformed": ("hospital code typed with a lower-case h; diagnosis in the clinical edition's long form "
                       "(E11.900)"),
    "month_malformed": "a month written without its hyphen (202607 for 2026-07)",
    "date_impossible": "a day that does not exist (the 31st of a 30-day month, 29/30 February)",
    "year_typo_past": "year typed too far back (2026 -> 1026; the database's dates 2026 -> 1926)",
    "year_typo_future": "year's last two digits swapped into the future (2026 -> 2062)",
    "dates_swapped": "two dates of the row swapped (death and cremation, sentence start and end, ...)",
    "death_before_birth": "death year a century early (2026 -> 1926), before the birth",
    "birth_date_lunar": "birth date written as the lunar-calendar date, 15-50 days off the number's",
    "negative_amounts": "a refund booked with negative amounts (a bill; a wage declaration corrected)",
    "fund_above_total": "fund share above the bill's total; tax above the wage",
    "amount_placeholder": "total (wage) written as the placeholder 99999999.99",
}


def invalid_slots(feed: str) -> list[tuple[str, str]]:
    """Every (kind, column) of invalid row a feed can be given, in a fixed order."""
    spec = SPECS[feed]
    if spec.key_digits:
        slots = [("key_malformed", spec.key)]
    else:
        slots = [("uscc_check", spec.key), ("uscc_truncated", spec.key)]
    slots += [(kind, spec.id_col) for kind in UNREPAIRABLE if not (kind == "id_old_15_digit" and spec.upgrade15)]
    slots += [(kind, c) for c in spec.usccs for kind in ("uscc_check", "uscc_truncated")]
    slots += [("missing", c) for c in spec.required]
    slots += [("too_long", c) for c in spec.lengths]
    slots += [("not_allowed", c) for c in spec.enums]
    slots += [("code_malformed", c) for c in spec.codes]
    slots += [("month_malformed", c) for c in spec.months]
    for column, (_earliest, not_future) in spec.dates.items():
        if not spec.typed:
            slots.append(("date_impossible", column))
        slots.append(("year_typo_past", column))
        if not_future:
            slots.append(("year_typo_future", column))
    slots += [("dates_swapped", later) for _earlier, later in spec.swaps]
    if spec.before_birth:
        slots.append(("death_before_birth", spec.before_birth))
    slots += [("birth_date_lunar", column) for column, _rule in spec.birth_match]
    if spec.typed:
        total, share, _rule = spec.amounts
        slots += [("negative_amounts", total), ("fund_above_total", share), ("amount_placeholder", total)]
    return [slot for slot in slots if slot not in spec.left_out]


def invalid_count(rows: int, rate: float = INVALID_RATE) -> int:
    """How many of a feed's rows are planted invalid: rate of them (rounded down, so a feed never plants
    more than the contracts' 1 % error-rate service level), at least one from INVALID_MIN_ROWS rows."""
    if rows < INVALID_MIN_ROWS:
        return 0
    return max(1, int(rows * rate))


def _get(frame: pd.DataFrame, column: str, rows: np.ndarray) -> np.ndarray:
    """Values of a column at row positions, missing ones as None (an object array)."""
    s = frame[column]
    if s.dtype == object:
        return s.to_numpy()[rows]  # a copy (fancy indexing); missing values are None already
    if pd.api.types.is_float_dtype(s.dtype):
        values = s.to_numpy()[rows]
        out = values.astype(object)
        out[np.isnan(values)] = None
        return out
    return np.asarray(pa.array(s).take(pa.array(rows)).to_pylist(), dtype=object)


def _write(frame: pd.DataFrame, column: str, rows: np.ndarray, values: list) -> None:
    """Write values (None: missing) into a column at row positions: one new column, whatever its size."""
    order = np.argsort(rows, kind="stable")
    rows, values = rows[order], [values[i] for i in order.tolist()]
    old = frame[column]
    if pd.api.types.is_float_dtype(old.dtype):
        new = old.to_numpy(dtype=float, copy=True)
        new[rows] = [np.nan if v is None else v for v in values]
        frame[column] = new
    elif old.dtype == object:
        new = old.to_numpy(dtype=object, copy=True)
        new[rows] = values
        frame[column] = pd.Series(new, index=frame.index, dtype=object)
    else:  # text: Arrow puts the few new values in, in C
        arr = pa.array(old)
        arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
        mask = np.zeros(len(old), dtype=bool)
        mask[rows] = True
        frame[column] = str_column(pc.replace_with_mask(arr, pa.array(mask), pa.array(values, arr.type)))


def _day_values(days: np.ndarray, typed: bool) -> np.ndarray:
    """Days as the feed writes them: ISO text, or date objects (typed); NO_DAY as None."""
    if typed:
        return np.where(days == NO_DAY, np.datetime64("NaT"), days.astype("datetime64[D]")).astype(object)
    text = np.asarray(date_text(np.where(days == NO_DAY, 0, days)).to_pylist(), dtype=object)
    text[days == NO_DAY] = None
    return text


def _id_births(ids: np.ndarray) -> np.ndarray:
    """Birth days written in clean identity numbers."""
    return np.array([f"{v[6:10]}-{v[10:12]}-{v[12:14]}" for v in ids], dtype="datetime64[D]").astype(np.int64)


def _shift_years(days: np.ndarray, years: np.ndarray | int) -> np.ndarray:
    """The same month and day `years` later (29 February becomes the 28th)."""
    y, m, d = civil_from_days(days)
    return days_from_civil(y + years, m, np.where((m == 2) & (d == 29), 28, d))


def _swapped_year(days: np.ndarray) -> np.ndarray:
    """The year with its last two digits swapped (2026 -> 2062)."""
    y = civil_from_days(days)[0]
    return y - y % 100 + (y % 10) * 10 + (y // 10) % 10


def _impossible_dates(days: np.ndarray) -> list[str]:
    """A day after the last of the month (or of the 30-day month next to a 31-day one): 2026-09-31, 2026-02-29."""
    y, m, _d = civil_from_days(days)
    month = np.where(_MONTH_DAYS[m] == 31, _SHORT_MONTH[m], m)
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    day = _MONTH_DAYS[month] + ((month == 2) & leap) + 1
    return [f"{a:04d}-{b:02d}-{c:02d}" for a, b, c in zip(y.tolist(), month.tolist(), day.tolist())]


def _too_long(value: str, maximum: int, note: str) -> str:
    """value with a note appended until it is longer than maximum."""
    text = value + "（" + note
    while len(text) + 1 <= maximum:
        text += note
    return text + "）"


def _eligible(kind: str, column: str, spec: FeedSpec, frame: pd.DataFrame, rows: np.ndarray,
              as_of_days: int) -> np.ndarray:
    """Which of the rows can show the kind of mistake so that the rule it is about breaks."""
    values = _get(frame, column, rows)
    ok = np.array([v is not None for v in values], dtype=bool)
    if kind == "key_malformed" and spec.ordered_by is not None:
        # rows tied on the incremental column are ordered by key: keep them where they are
        col = frame.columns.get_loc(spec.ordered_by)
        t = frame.iloc[:, col]
        here = t.iloc[rows].to_numpy(dtype=object)
        before = t.iloc[np.maximum(rows - 1, 0)].to_numpy(dtype=object)
        after = t.iloc[np.minimum(rows + 1, len(frame) - 1)].to_numpy(dtype=object)
        ok &= ((here != before) | (rows == 0)) & ((here != after) | (rows == len(frame) - 1))
    elif kind == "excel_mangled":
        ok &= np.array([v is not None and v[-1] != "X" for v in values], dtype=bool)
    elif kind in ("missing", "not_allowed") and column in spec.guard:
        ok &= values != spec.guard[column]
    elif kind == "year_typo_future":
        days = to_days(values)
        y_as_of = civil_from_days(np.array([as_of_days]))[0][0]
        ok &= np.where(ok, _swapped_year(np.where(ok, days, 0)) > y_as_of, False)
    elif kind == "dates_swapped":
        earlier = next(e for e, later in spec.swaps if later == column)
        a, b = to_days(_get(frame, earlier, rows)), to_days(values)
        ok &= (a != NO_DAY) & (b != NO_DAY) & (a < b)
    elif kind == "death_before_birth":
        days = to_days(values)
        born = _id_births(_get(frame, spec.id_col, rows))
        shifted = _shift_years(np.where(ok, days, 0), -100)
        ok &= (shifted < born) & (shifted >= day_number(date.fromisoformat(spec.dates[column][0])))
    elif kind in ("negative_amounts", "fund_above_total", "amount_placeholder"):
        ok &= np.array([v is not None for v in _get(frame, spec.amounts[1], rows)], dtype=bool)
    return ok


def _pick_rows(rng: np.random.Generator, free: np.ndarray, count: int,
               eligible: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Up to count free rows the kind can be planted in (a sample is looked at, the whole feed if needed)."""
    pool = np.flatnonzero(free)
    if count <= 0 or len(pool) == 0:
        return np.array([], dtype=np.int64)
    sample = rng.choice(pool, min(len(pool), 8 * count + 32), replace=False)
    chosen = sample[eligible(sample)][:count]
    if len(chosen) < count and len(sample) < len(pool):
        rest = np.setdiff1d(pool, sample)
        more = rest[eligible(rest)]
        chosen = np.concatenate([chosen, rng.permutation(more)[: count - len(chosen)]])
    return np.sort(chosen).astype(np.int64)


#: kinds that change a date column (or two), and kinds that change the amounts of a typed feed
_DATE_KINDS = ("date_impossible", "year_typo_past", "year_typo_future", "death_before_birth", "birth_date_lunar",
               "dates_swapped")
_AMOUNT_KINDS = ("negative_amounts", "fund_above_total", "amount_placeholder")


@dataclass
class _Mistake:
    """One kind of mistake made in some rows: the new values, and what the row rules will read."""

    days: dict[str, np.ndarray]  # every date column's day numbers after the change (NO_DAY: no date)
    changed: dict[str, list] = field(default_factory=dict)  # column -> its new values in the rows
    static: list[str] = field(default_factory=list)  # the rules the kind breaks by itself
    id_valid: bool = True  # the identity number is still valid, so the rules about its birth date apply


def _plant_rows(rng: np.random.Generator, feed: str, spec: FeedSpec, frame: pd.DataFrame, kind: str, column: str,
                rows: np.ndarray, as_of_days: int) -> tuple[list[dict], list[dict], dict[str, list]]:
    """One kind of mistake in the given rows: (invalid records, messy records, {column: new values}).

    The frame is read, not changed: the caller writes the new values, all kinds at once.
    """
    mistake = _Mistake(days={c: to_days(_get(frame, c, rows)) for c in spec.dates})
    born = _id_births(_get(frame, spec.id_col, rows))
    values = _get(frame, column, rows)
    new: list | np.ndarray | None
    if kind in _DATE_KINDS:
        new = _date_mistake(rng, spec, kind, column, mistake)
    elif kind in _AMOUNT_KINDS:
        new = None  # the amounts' columns are changed, not the kind's column
        _amount_mistake(rng, spec, frame, kind, rows, mistake)
    else:
        new = _value_mistake(rng, spec, kind, column, values, born, mistake)
    if new is not None:
        mistake.changed[column] = list(new)

    def now(c: str) -> list:
        """A column's values in these rows after the change."""
        return mistake.changed[c] if c in mistake.changed else _get(frame, c, rows).tolist()

    broken = _rules_broken(spec, mistake, born, now, len(rows), as_of_days)
    keys = now(spec.key)
    invalid = [{"feed": feed, "key": k, "kind": kind, "column": column, "rules": sorted(r)}
               for k, r in zip(keys, broken)]
    messy = []
    if kind in UNREPAIRABLE:
        messy = [{"feed": feed, "key": k, "column": column, "kind": kind, "value": v, "clean": c}
                 for k, v, c in zip(keys, now(column), values.tolist())]
    return invalid, messy, mistake.changed


def _value_mistake(rng: np.random.Generator, spec: FeedSpec, kind: str, column: str, values: np.ndarray,
                   born: np.ndarray, mistake: _Mistake) -> list:
    """A key, credit code, identity number or text value written wrong: the column's new values."""
    n = len(values)
    if kind == "key_malformed":
        k = spec.key_digits
        new = [v[:-k] + "-" + v[-k:] for v in values]
        mistake.static = [f"{column}.format"]
    elif kind == "uscc_check":
        picks = rng.integers(0, len(_USCC_CHARS) - 1, n)
        new = [v[:-1] + _USCC_CHARS.replace(v[-1], "")[p] for v, p in zip(values, picks.tolist())]
        mistake.static = [f"{column}.valid"]
    elif kind == "uscc_truncated":
        new = [v[:-1] for v in values]
        mistake.static = [f"{column}.format"]
    elif kind in ("invalid_check", "excel_mangled"):
        new = [messy_value(kind, v, rng) for v in values]
        mistake.static = ([f"{column}.valid"] if kind == "invalid_check"
                          else [f"{column}.excel_mangled", f"{column}.format"])
        mistake.id_valid = False
    elif kind == "id_old_15_digit":
        new = [v[:6] + v[8:17] for v in values]
        mistake.static, mistake.id_valid = [f"{column}.format"], False
    elif kind == "id_unknown_area":
        area = UNKNOWN_AREA_CODES[rng.integers(0, len(UNKNOWN_AREA_CODES), n)]
        seq = np.array([int(v[14:17]) for v in values], dtype=np.int64)
        new = arrow_text(make_id_matrix(area, born.astype("datetime64[D]"), seq)).to_pylist()
        mistake.static = [f"{column}.area_code"]
    elif kind in ("id_missing", "missing"):
        new = [None] * n
        mistake.static = [f"{column}.required"]
        mistake.id_valid = kind != "id_missing"
        if column in mistake.days:
            mistake.days[column] = np.full(n, NO_DAY, dtype=np.int64)
    elif kind == "too_long":
        maximum, note = spec.lengths[column]
        new = [_too_long(v, maximum, note) for v in values]
        mistake.static = [f"{column}.length"]
    elif kind == "not_allowed":
        new = [spec.enums[column]] * n
        mistake.static = [f"{column}.allowed_values"]
    elif kind == "code_malformed":
        if column == "hospital_code":
            new = ["h" + v[1:] for v in values]
        else:
            new = [v + "00" if "." in v else v + ".x00" for v in values]
        mistake.static = [f"{column}.format"]
    elif kind == "month_malformed":
        new = [v[:4] + v[5:7] for v in values]
        mistake.static = [f"{column}.format"]
    else:
        raise ValueError(f"unknown kind of invalid row {kind!r}")
    return new


def _date_mistake(rng: np.random.Generator, spec: FeedSpec, kind: str, column: str,
                  mistake: _Mistake) -> list | np.ndarray:
    """A date written wrong (or two swapped): the column's new values; the days the rules read follow."""
    days = mistake.days
    n = len(days[column])
    if kind == "date_impossible":
        new: list | np.ndarray = _impossible_dates(days[column])
        days[column] = np.full(n, NO_DAY, dtype=np.int64)
        mistake.static = [f"{column}.date"]
    elif kind == "dates_swapped":
        earlier = next(e for e, later in spec.swaps if later == column)
        days[earlier], days[column] = days[column], days[earlier]
        new = _day_values(days[column], spec.typed)
        mistake.changed[earlier] = list(_day_values(days[earlier], spec.typed))
    else:
        d = days[column]
        if kind == "year_typo_past":
            d = _shift_years(d, -spec.past_years)
        elif kind == "year_typo_future":
            d = _shift_years(d, _swapped_year(d) - civil_from_days(d)[0])
        elif kind == "death_before_birth":
            d = _shift_years(d, -100)
        else:  # birth_date_lunar
            d = d - rng.integers(15, 51, n)
        days[column] = d
        new = _day_values(d, spec.typed)
    return new


def _amount_mistake(rng: np.random.Generator, spec: FeedSpec, frame: pd.DataFrame, kind: str, rows: np.ndarray,
                    mistake: _Mistake) -> None:
    """A typed feed's amounts written wrong: a refund's negative amounts, a share above its total, a placeholder."""
    n = len(rows)
    total_col, fund_col, _rule = spec.amounts
    total = np.array(_get(frame, total_col, rows), dtype=float)
    fund = np.array(_get(frame, fund_col, rows), dtype=float)
    if kind == "negative_amounts":
        total, fund = -total, -fund
    elif kind == "fund_above_total":
        fund = np.round(total * rng.uniform(1.05, 1.5, n), 2)
    else:
        total = np.full(n, AMOUNT_PLACEHOLDER)
    mistake.changed[total_col], mistake.changed[fund_col] = total.tolist(), fund.tolist()


def _rules_broken(spec: FeedSpec, mistake: _Mistake, born: np.ndarray, now: Callable[[str], list], n: int,
                  as_of_days: int) -> list[set[str]]:
    """The rules each row breaks: the kind's own, and every date and amount rule read from the new values."""
    days, id_valid = mistake.days, mistake.id_valid
    broken = [set(mistake.static) for _ in range(n)]

    def mark(mask: np.ndarray, rule: str) -> None:
        for i in np.flatnonzero(mask):
            broken[i].add(rule)

    for c, (earliest, not_future) in spec.dates.items():
        d = days[c]
        has = d != NO_DAY
        mark(has & (d < day_number(date.fromisoformat(earliest))), f"{c}.range")
        if not_future:
            mark(has & (d > as_of_days), f"{c}.not_future")
    for earlier, later, rule in spec.orders:
        a, b = days[earlier], days[later]
        mark((a != NO_DAY) & (b != NO_DAY) & (a > b), rule)
    for c, rule in spec.id_birth:
        mark(id_valid & (days[c] != NO_DAY) & (days[c] < born), rule)
    for c, rule in spec.birth_match:
        mark(id_valid & (days[c] != NO_DAY) & (days[c] != born), rule)
    if spec.typed:
        total_col, fund_col, share_rule = spec.amounts
        total = np.array([np.nan if v is None else v for v in now(total_col)], dtype=float)
        fund = np.array([np.nan if v is None else v for v in now(fund_col)], dtype=float)
        for name, v in ((total_col, total), (fund_col, fund)):
            mark(~np.isnan(v) & ((v < 0) | (v > AMOUNT_MAX)), f"{name}.range")
        mark(~np.isnan(total) & ~np.isnan(fund) & (fund > total), share_rule)
    return broken


def plant_invalid(rng: np.random.Generator, feed: str, frame: pd.DataFrame, free: np.ndarray, as_of_days: int,
                  rate: float = INVALID_RATE) -> tuple[list[dict], list[dict]]:
    """Plant invalid rows in a feed, in place, only in rows still ``free`` (taken out of it).

    invalid_count(len(frame)) rows; the feed's kinds of mistakes are dealt round-robin in a seeded
    random order, so a large feed gets every kind and a small one some. Returns (invalid, messy):
    the truths["invalid"] records, and the truths["messy"] records of the identity-number kinds.
    """
    spec = SPECS[feed]
    count = invalid_count(len(frame), rate)
    if count == 0:
        return [], []
    slots = invalid_slots(feed)
    base, extra = divmod(count, len(slots))
    invalid: list[dict] = []
    messy: list[dict] = []
    writes: dict[str, tuple[list[np.ndarray], list]] = {}
    owed = 0
    for i, s in enumerate(rng.permutation(len(slots)).tolist()):
        kind, column = slots[s]
        want = base + (1 if i < extra else 0) + owed
        rows = _pick_rows(rng, free, want, partial(_eligible, kind, column, spec, frame, as_of_days=as_of_days))
        owed = want - len(rows)  # a kind without enough rows it fits passes its share on
        if len(rows) == 0:
            continue
        free[rows] = False
        got, ids, changed = _plant_rows(rng, feed, spec, frame, kind, column, rows, as_of_days)
        invalid.extend(got)
        messy.extend(ids)
        for c, values in changed.items():
            at, new = writes.setdefault(c, ([], []))
            at.append(rows)
            new.extend(values)
    for c, (at, new) in writes.items():
        _write(frame, c, np.concatenate(at), new)
    return invalid, messy
