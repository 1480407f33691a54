"""What one value of a sample is: empty or not, a date in which form, an identity number, a code's shape.

The recognisers of :mod:`contracts.infer.columns` look at one stripped text value at a time; a
format is recognised when at least :data:`FORMAT_SHARE` of a column's non-empty values fit it. A
pattern made here is a shape of character classes and lengths, never a value's characters.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from fundx.core.identity import is_valid_id, normalize_id, upgrade_id15

#: the share of a column's non-empty values a format must fit to be recognised (a sample may hold
#: a few broken values: those are counted in the column's review note, never shown)
FORMAT_SHARE = 0.9
#: ... and for identity numbers, which agencies' samples often hold Excel-mangled or mistyped
ID_SHARE = 0.8

ID_PATTERN = "^[0-9]{17}[0-9X]$"
USCC_PATTERN = "^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$"
MOBILE_PATTERN = "^1[3-9][0-9]{9}$"
PHONE_PATTERN = "^(?:1[3-9][0-9]{9}|0[0-9]{2,3}-?[0-9]{7,8})$"

_DATE_FORMS: dict[str, re.Pattern[str]] = {
    "yyyy-MM-dd": re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"),
    "yyyy-M-d": re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$"),
    "yyyy/M/d": re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$"),
    "yyyy年M月d日": re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日$"),
}
_COMPACT_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")  # only with a date-like header


def is_empty(v: Any) -> bool:
    """Whether a value counts as empty: None, NaN, or text of white space only."""
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, str) and not v.strip()


def as_text(v: Any) -> str:
    """A value as the text the recognisers look at (NFKC, stripped; typed values as str)."""
    if isinstance(v, str):
        return unicodedata.normalize("NFKC", v).strip()
    return str(v)


def _real_date(y: str, m: str, d: str) -> date | None:
    try:
        return date(int(y), int(m), int(d))
    except ValueError:
        return None


def date_form(text: str, compact: bool) -> tuple[str, date] | None:
    """The form a date is written in and its day (``yyyyMMdd`` only when ``compact``), or None."""
    for name, regex in _DATE_FORMS.items():
        m = regex.match(text)
        if m:
            day = _real_date(*m.groups())
            return (name, day) if day else None
    if compact:
        m = _COMPACT_DATE.match(text)
        if m:
            day = _real_date(*m.groups())
            return ("yyyyMMdd", day) if day and 1850 <= day.year <= 2100 else None
    return None


def share(values: Sequence[Any], test: Callable[[Any], bool]) -> tuple[int, float]:
    """How many ``values`` pass ``test``, and their share of all."""
    hits = sum(1 for v in values if test(v))
    return hits, hits / len(values) if values else 0.0


def shape_pattern(texts: Sequence[str]) -> str | None:
    """A regex of character-class runs that every value fits (HKZX330100000001 -> ^[A-Z]{4}[0-9]{12}$).

    Only for ASCII codes of letters and digits (with - or _ between runs); the pattern holds classes
    and lengths, never a value's characters.
    """
    def runs(text: str) -> list[tuple[str, int]] | None:
        out: list[tuple[str, int]] = []
        for ch in text:
            if "0" <= ch <= "9":
                cls = "[0-9]"
            elif "A" <= ch <= "Z":
                cls = "[A-Z]"
            elif "a" <= ch <= "z":
                cls = "[a-z]"
            elif ch in "-_":
                cls = re.escape(ch) if ch == "-" else "_"
            else:
                return None
            if out and out[-1][0] == cls:
                out[-1] = (cls, out[-1][1] + 1)
            else:
                out.append((cls, 1))
        return out

    shapes = [runs(t) for t in texts]
    if not shapes or any(s is None for s in shapes):
        return None
    first = [cls for cls, _ in shapes[0]]  # type: ignore[union-attr]
    if any([cls for cls, _ in s] != first for s in shapes):  # type: ignore[union-attr]
        return None
    parts = []
    for i, cls in enumerate(first):
        lengths = [s[i][1] for s in shapes]  # type: ignore[index]
        lo, hi = min(lengths), max(lengths)
        if cls in ("_", r"\-"):
            parts.append(cls if lo == hi == 1 else f"{cls}{{{lo},{hi}}}" if lo != hi else f"{cls}{{{lo}}}")
        else:
            parts.append(f"{cls}{{{lo}}}" if lo == hi else f"{cls}{{{lo},{hi}}}")
    if len(parts) > 8:
        return None
    return "^" + "".join(parts) + "$"


def round_length(n: int) -> int:
    """A round maxLength above a column's longest value ``n``."""
    for bound in (10, 20, 50, 100, 200, 500, 1000, 2000, 5000):
        if n <= bound // 2 or (bound >= 50 and n <= bound * 0.8):
            return bound
    return max(n * 2, 10000)


def plural(n: int, word: str) -> str:
    """``n`` and ``word``, with an s when ``n`` is not 1 (1 value, 2 values)."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def upgraded(text: str) -> str:
    """An identity number as the contract's normalisation would leave it (a 15-digit one upgraded)."""
    t = normalize_id(text) or ""
    return upgrade_id15(t) if len(t) == 15 and t.isascii() and t.isdigit() else t


def id_form(text: str) -> int | None:
    """18 for a valid identity number, 15 for a first-generation one that upgrades to a valid one, else None."""
    t = normalize_id(text) or ""
    if is_valid_id(t):
        return 18
    return 15 if len(t) == 15 and is_valid_id(upgraded(t)) else None
