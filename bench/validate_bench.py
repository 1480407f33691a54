"""Contract validation speed: check() (normalise + GX + split) next to plain vectorised pandas.

On 1,000,000 police death rows of which about a third are made to fail (wrong check characters,
Excel-mangled numbers, deaths before birth or in the future, birth dates that disagree with the
identity number, unknown genders, missing names), both paths normalise, check every rule of the
contract and split valid from failing rows; the pandas path must find exactly the same rows.

    python -c "from bench import validate_bench; print(validate_bench.run(1_000_000))"
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

FEED = "police.deaths"
TODAY = date(2026, 11, 1)


def _rows(rows: int, seed: int = 7) -> pd.DataFrame:
    """``rows`` police death rows, about a third broken in one of several ways."""
    from sandbox.city import generate_feed

    frame = pd.concat(list(generate_feed(FEED, rows, seed=seed)), ignore_index=True)
    rng = np.random.default_rng(seed)
    broken = np.flatnonzero(rng.random(rows) < 1 / 3)
    how = rng.integers(0, 6, len(broken))
    ids = frame["id_number"].to_numpy(dtype=object)
    # the generator's own planted rows (about 1 %) may lack an id or hold a short one: break only whole ids
    whole = np.array([isinstance(v, str) and len(v) == 18 and v[:17].isdigit() for v in ids])
    broken = broken[whole[broken]]
    how = rng.integers(0, 6, len(broken))
    wrong_check = broken[how == 0]
    ids[wrong_check] = [v[:17] + ("0" if v[17:] != "0" else "1") for v in ids[wrong_check]]
    mangled = broken[how == 1]
    ids[mangled] = [f"{float(v[:17] + '0'):.15e}" for v in ids[mangled]]
    frame["id_number"] = pd.Series(ids, dtype="str")
    death = frame["death_date"].to_numpy(dtype=object)
    death[broken[how == 2]] = "1901-01-01"  # before any birth in the feed
    death[broken[how == 3]] = "2031-05-05"  # in the future
    frame["death_date"] = pd.Series(death, dtype="str")
    born = frame["birth_date"].to_numpy(dtype=object)
    born[broken[how == 4]] = "1930-02-02"
    frame["birth_date"] = pd.Series(born, dtype="str")
    name = frame["name"].to_numpy(dtype=object)
    name[broken[how == 5]] = None
    frame["name"] = pd.Series(name, dtype="str")
    return frame


def pandas_failures(frame: pd.DataFrame, today: date = TODAY, feed: str = FEED) -> pd.Series:
    """The same rules as the contract, written as plain vectorised pandas: rows -> failed rule ids.

    Any feed's contract (``feed``); the feed benchmark (bench/feeds_bench.py) uses it as its baseline.
    """
    from contracts import load_contract
    from contracts.checks import EXCEL_MANGLED, date_days, is_timestamp, matches, present
    from contracts.normalise import normalise
    from contracts.rules import contract_rules
    from fundx.core.areacodes import known_areas  # not contracts.compile's: it imports GX
    from fundx.core.idcolumns import NO_DAY, id_column

    contract = load_contract(feed)
    frame, _ = normalise(contract, frame)
    today_day = int(np.datetime64(today.isoformat(), "D").astype(np.int64))
    masks: dict[str, np.ndarray] = {}
    days: dict[str, np.ndarray] = {}
    ids_cache: dict[str, Any] = {}

    def day(col: str) -> np.ndarray:
        if col not in days:
            days[col] = date_days(frame[col])
        return days[col]

    def ids(col: str) -> Any:
        if col not in ids_cache:
            ids_cache[col] = id_column(frame[col])
        return ids_cache[col]

    for rule in contract_rules(contract).row_rules:
        if rule.structural:  # row shape and key conflicts: found by the transport while it reads, not checked here
            continue
        # the rule's column, its values and which are present (a rule without a column uses none of them)
        col: Any = rule.columns[0] if rule.columns else None
        s: Any = frame[col] if col else None
        there: Any = present(s) if s is not None else None
        if rule.kind == "required":
            ok = there
        elif rule.kind == "unique":
            ok = ~s.duplicated(keep=False).to_numpy() | ~there
        elif rule.kind == "pattern":
            ok = matches(s, rule.params["regex"]) | ~there
        elif rule.kind == "length":
            n = s.str.len().to_numpy(dtype=float, na_value=np.nan)
            ok = ~there | (((rule.params["min"] is None) | (n >= (rule.params["min"] or 0)))
                           & ((rule.params["max"] is None) | (n <= (rule.params["max"] or np.inf))))
        elif rule.kind == "allowed_values":
            ok = s.isin(rule.params["values"]).to_numpy() | ~there
        elif rule.kind == "date":
            ok = ~there | (day(col) != NO_DAY)
        elif rule.kind == "range" and rule.params.get("dates", True):
            d = day(col)
            low = np.datetime64(rule.params["min"], "D").astype(np.int64) if rule.params["min"] else None
            high = np.datetime64(rule.params["max"], "D").astype(np.int64) if rule.params.get("max") else None
            ok = (d == NO_DAY) | ((d >= low if low is not None else True) & (d <= high if high is not None else True))
        elif rule.kind == "range":  # a number: missing values pass, as in GX
            x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            low, high = rule.params["min"], rule.params.get("max")
            ok = np.isnan(x) | ((x >= low if low is not None else True) & (x <= high if high is not None else True))
        elif rule.kind == "not_greater_than":  # column <= than; rows missing either pass
            a = pd.to_numeric(frame[rule.columns[0]], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            b = pd.to_numeric(frame[rule.columns[1]], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            ok = np.isnan(a) | np.isnan(b) | (a <= b)
        elif rule.kind == "credit_code":
            from contracts.engine import USCC_SHAPE
            from fundx.core.idcolumns import uscc_column

            ok = ~matches(s, USCC_SHAPE) | uscc_column(s)
        elif rule.kind == "not_future":
            d = day(col)
            ok = (d == NO_DAY) | (d <= today_day)
        elif rule.kind == "timestamp":
            ok = ~there | is_timestamp(s)
        elif rule.kind == "excel_mangled":
            ok = ~matches(s, EXCEL_MANGLED)
        elif rule.kind == "identity_number":
            ok = ~ids(col).shaped | ids(col).valid
        elif rule.kind == "area_code":
            ok = ~ids(col).shaped | known_areas(ids(col).area)
        elif rule.kind == "birth_date_matches_id":
            i, b = ids(rule.columns[0]), day(rule.columns[1])
            ok = ~i.valid | (b == NO_DAY) | (i.birth == b)
        elif rule.kind == "not_before_id_birth":
            i, d = ids(rule.columns[0]), day(rule.columns[1])
            ok = ~i.valid | (d == NO_DAY) | (d >= i.birth)
        elif rule.kind == "date_order":
            a, b = day(rule.columns[0]), day(rule.columns[1])
            ok = (a == NO_DAY) | (b == NO_DAY) | (a <= b)
        else:  # pragma: no cover - a kind this feed does not use
            raise ValueError(rule.kind)
        masks[rule.id] = ~np.asarray(ok, dtype=bool)
    names = list(masks)
    codes = np.zeros(len(frame), dtype=np.int64)
    for i, name in enumerate(names):
        codes |= masks[name].astype(np.int64) << i
    failed = codes != 0
    distinct, inverse = np.unique(codes[failed], return_inverse=True)
    labels = np.array([";".join(n for i, n in enumerate(names) if int(c) >> i & 1) for c in distinct], dtype=object)
    return pd.Series(labels[inverse], index=frame.index[failed], dtype="str")


def run(rows: int = 1_000_000) -> dict[str, Any]:
    """Time check() and the pandas baseline on the same rows; returns seconds and their ratio."""
    from contracts.validate import check

    frame = _rows(rows)
    check(FEED, frame.head(1000), today=TODAY)  # GX import and first-use costs are not the batch's
    pandas_failures(frame.head(1000), TODAY)  # nor the contract's loading
    start = time.perf_counter()
    checked = check(FEED, frame, today=TODAY)
    gx_seconds = time.perf_counter() - start
    start = time.perf_counter()
    baseline = pandas_failures(frame, TODAY)
    pandas_seconds = time.perf_counter() - start
    same = baseline.index.equals(checked.quarantined.index) and bool(
        (baseline.to_numpy() == checked.quarantined["_rules"].to_numpy()).all())
    result = {
        "rows": rows,
        "failed_rows": len(checked.quarantined),
        "failed_share": round(len(checked.quarantined) / rows, 3),
        "check_seconds": round(gx_seconds, 2),
        "pandas_seconds": round(pandas_seconds, 2),
        "ratio": round(gx_seconds / pandas_seconds, 2),
        "same_rows_and_rules": same,
    }
    print(f"  validate {rows:,} rows, {result['failed_share']:.0%} failing: check() {gx_seconds:.2f} s, "
          f"pandas {pandas_seconds:.2f} s, ratio {result['ratio']:.2f}x (goal <= 1.5x); same split: {same}")
    return result
