"""Real agencies' harmless messiness: how each writes names, the old 15-digit numbers, and the quirks a repair undoes.

A little of every text feed is messy the way real agencies' data is (full-width digits, a lower-case
x, trailing spaces, dates written the Chinese way, ...): the contracts' normalisation repairs all of
it. Messiness never touches a row a planted truth depends on (the rows still ``free``), except the
first-generation numbers, which are a trait of an old person's record, not a clerk's mistake.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fundx.core.identity import ID_CHECK_CHARS, upgrade_id15
from sandbox.city.feeds import FEEDS, HOSPITAL_DEATHS, WAGE_INCOME
from sandbox.city.specs import SPECS
from sandbox.city.text import str_column

#: per feed: the dot forms its rows carry (the roll and the police write U+00B7) and the share of
#: two-character names a paper register pads with a full-width space (王　芳)
NAME_DOT_FORMS: dict[str, tuple[str, ...]] = {
    "civil_affairs.deaths": ("\u00b7", "\u2022"),
    "religious_affairs.deaths": ("\u30fb", "\u00b7", "\uff0e"),
    "health_commission.hospital_deaths": ("\u00b7", "\u2027", "\uff65"),
    "medical_insurance.bills": ("\u00b7", "\u318d"),
    "tax_bureau.wage_income": ("\u00b7", "."),
}
PADDED_NAME_SHARE = {"religious_affairs.deaths": 0.3, "civil_affairs.deaths": 0.05}
MESSY_KINDS_ID = ("fullwidth_digits", "lowercase_x", "trailing_space")
MESSY_KINDS_DATE = ("date_slash", "date_chinese", "date_compact")
MESSY_RATE = 0.004
_FULLWIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")
_MESS_COLUMNS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # feed -> (key column, identity-number column, date columns that may be written oddly)
    "civil_affairs.deaths": ("record_id", "id_number", ()),
    "police.deaths": ("cancellation_id", "id_number", ()),
    "religious_affairs.deaths": ("record_id", "id_number", ("death_date", "registered_on")),
    "justice.prisoners": ("prisoner_id", "id_number", ("admitted_on", "sentence_start", "sentence_end")),
    "market_regulation.businesses": ("uscc", "legal_rep_id_number", ()),
    HOSPITAL_DEATHS: ("notice_id", "id_number", ()),
    WAGE_INCOME: ("declaration_id", "id_number", ()),
}
#: the personal-name column of each feed
NAME_COLUMNS: dict[str, str] = {feed: {"medical_insurance.bills": "patient_name",
                                       "market_regulation.businesses": "legal_rep_name"}.get(feed, "name")
                                for feed in FEEDS}
#: the messy kind of a first-generation number in a feed that upgrades them (a trait of an old person's
#: record, not a clerk's mistake: it may be in any row, a planted truth's too)
OLD_NUMBER_KIND = "id_first_generation"


def write_name_forms(rng: np.random.Generator, feed: str, frame: pd.DataFrame) -> None:
    """Write the names the way a feed's system does, in place: the middle dot in the feed's forms
    (NAME_DOT_FORMS) and, in paper registers, two-character names padded with a full-width space."""
    forms, pad = NAME_DOT_FORMS.get(feed, ()), PADDED_NAME_SHARE.get(feed, 0.0)
    column = NAME_COLUMNS[feed]
    if (not forms and not pad) or len(frame) == 0:
        return
    arr = pa.array(frame[column])
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    n = len(arr)
    if forms:
        dotted = pc.fill_null(pc.match_substring(arr, "\u00b7"), False).to_numpy(zero_copy_only=False)
        choice = rng.integers(0, len(forms), n)
        for k, form in enumerate(forms):
            if form != "\u00b7" and (dotted & (choice == k)).any():
                arr = pc.if_else(pa.array(dotted & (choice == k)), pc.replace_substring(arr, "\u00b7", form), arr)
    if pad:
        two = pc.fill_null(pc.equal(pc.utf8_length(arr), 2), False).to_numpy(zero_copy_only=False)
        padded = pc.binary_join_element_wise(pc.utf8_slice_codeunits(arr, 0, 1), pc.utf8_slice_codeunits(arr, 1, 2),
                                             pa.scalar("\u3000", arr.type))
        arr = pc.if_else(pa.array(two & (rng.random(n) < pad)), padded, arr)
    frame[column] = str_column(arr)


def first_generation(feed: str, frame: pd.DataFrame, rows: np.ndarray | None, free: np.ndarray) -> list[dict]:
    """The messy records of the rows a feed writes with a 15-digit number (taken out of ``free``: no
    other messiness or mistake goes on top of them)."""
    if rows is None or not rows.any():
        return []
    at = np.flatnonzero(rows)
    free[at] = False
    key, column = SPECS[feed].key, SPECS[feed].id_col
    values = frame[column].to_numpy(dtype=object)[at]
    keys = frame[key].to_numpy(dtype=object)[at]
    return [{"feed": feed, "key": k, "column": column, "kind": OLD_NUMBER_KIND, "value": v, "clean": upgrade_id15(v)}
            for k, v in zip(keys.tolist(), values.tolist())]


def messy_value(kind: str, value: str, rng: np.random.Generator) -> str:
    """value written the way a careless clerk or a spreadsheet would write it."""
    if kind == "fullwidth_digits":
        return value.translate(_FULLWIDTH)
    if kind == "lowercase_x":
        return value[:-1] + "x"
    if kind == "trailing_space":
        return value + " " * int(rng.integers(1, 3))
    if kind == "invalid_check":
        wrong = [c for c in ID_CHECK_CHARS if c != value[-1]]
        return value[:-1] + wrong[int(rng.integers(0, len(wrong)))]
    if kind == "excel_mangled":
        return str(float(int(value)))  # what Excel keeps of an 18-digit number: 15 significant digits
    y, m, d = int(value[:4]), int(value[5:7]), int(value[8:10])
    if kind == "date_slash":
        return f"{y}/{m}/{d}"
    if kind == "date_chinese":
        return f"{y}年{m}月{d}日"
    if kind == "date_compact":
        return f"{y:04d}{m:02d}{d:02d}"
    raise ValueError(f"unknown kind of messiness {kind!r}")


def mess_up(rng: np.random.Generator, feed: str, frame: pd.DataFrame, free: np.ndarray,
            rate: float = MESSY_RATE) -> list[dict[str, str]]:
    """Make a few rows of a text feed messy (repairable quirks), in place; returns what was changed.

    Only rows still ``free`` are touched (not those a planted truth depends on); the rows made
    messy are taken out of ``free``.
    """
    if feed not in _MESS_COLUMNS or len(frame) == 0:
        return []
    key_col, id_col, date_cols = _MESS_COLUMNS[feed]
    n = len(frame)
    kinds = list(MESSY_KINDS_ID)
    if date_cols:
        kinds += list(MESSY_KINDS_DATE)
    last = np.asarray(pc.utf8_slice_codeunits(pa.array(frame[id_col]), -1).to_numpy(zero_copy_only=False))
    changes: list[dict[str, str]] = []
    # At least one row of each kind, even in a small feed: the contracts' repairs need examples.
    per_kind = max(1, int(round(rate * n))) if n >= 5 else 0
    for kind in kinds:
        eligible = free.copy()
        if kind == "lowercase_x":
            eligible &= last == "X"
        rows = np.flatnonzero(eligible)
        if len(rows) == 0 or per_kind == 0:
            continue
        rows = np.sort(rng.choice(rows, min(per_kind, len(rows)), replace=False))
        free[rows] = False
        column = date_cols[int(rng.integers(0, len(date_cols)))] if kind.startswith("date_") else id_col
        col_idx = frame.columns.get_loc(column)
        clean = frame.iloc[rows, col_idx].tolist()
        messy = [messy_value(kind, v, rng) for v in clean]
        frame.iloc[rows, col_idx] = messy
        keys = frame.iloc[rows, frame.columns.get_loc(key_col)].tolist()
        changes.extend({"feed": feed, "key": k, "column": column, "kind": kind, "value": m, "clean": c}
                       for k, m, c in zip(keys, messy, clean))
    return changes
