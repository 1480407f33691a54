"""GB 11643 resident identity numbers, and the one form personal names are compared in.

An identity number has 18 characters: a 6-digit area code (:mod:`fundx.core.areacodes`), an 8-digit
birth date, a 3-digit sequence whose last digit is odd for men, and an ISO 7064 MOD 11-2 check
character. A first-generation 15-digit number (GB 11643-1999) upgrades by a published rule. Log-safe
forms mask all but the first 6 and the last 4 characters, in a value or anywhere in a text. A
minority name's middle dot arrives in several code points: :func:`normalize_name` makes them one.

Scalar and pure: one value at a time. The same checks a whole column at a time, and the builders of
the sandbox generator, are in :mod:`fundx.core.idcolumns`; credit codes in :mod:`fundx.core.creditcodes`.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date

# --- GB 11643 resident identity numbers -------------------------------------------------------

ID_WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"  # indexed by (weighted sum mod 11)


def id_check_char(first17: str) -> str:
    """The MOD 11-2 check character that completes the first 17 digits of an identity number."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError("an identity number's first 17 characters must be ASCII digits")
    total = sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS))
    return ID_CHECK_CHARS[total % 11]


def birth_date_of(id_number: str) -> date:
    """The birth date written in characters 7-14 of an identity number (raises ValueError if none)."""
    if not isinstance(id_number, str) or len(id_number) != 18:
        raise ValueError("not an 18-character identity number")
    text = id_number[6:14]
    if not text.isascii() or not text.isdigit():
        raise ValueError("identity number has no birth date in characters 7-14")
    return date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def is_valid_id(s: object) -> bool:
    """Whether s is a well-formed 18-character identity number: digits, a real birth date, right check char.

    Strict: a lower-case x, full-width digits or surrounding spaces are not valid (see normalize_id).
    """
    if not isinstance(s, str) or len(s) != 18 or not s.isascii():
        return False
    body, check = s[:17], s[17]
    if not body.isdigit() or s[0] == "0":
        return False
    try:
        born = birth_date_of(s)
    except ValueError:
        return False
    if born.year < 1850:
        return False
    return id_check_char(body) == check


def is_male(id_number: str) -> bool:
    """Whether an identity number belongs to a man (17th character odd)."""
    return int(id_number[16]) % 2 == 1


def normalize_id(s: object) -> str | None:
    """An identity number with the harmless messiness removed (spaces, full-width forms, lower-case x).

    Returns None for anything that is not text. Does not try to repair Excel-mangled numbers or
    wrong check characters: the result may still fail is_valid_id.
    """
    if not isinstance(s, str):
        return None
    return unicodedata.normalize("NFKC", s).strip().upper()


_D = "[0-9０-９]"
_SEP = "[ \\-]?"
#: something shaped like an identity number inside any text, ASCII or full-width digits: 18 characters (17
#: digits and a digit or X) or a first-generation 15 digits, whole or grouped as written on forms (area,
#: birth date, sequence: 110105 19491231 002X, 110105-491231-002)
_ID_SHAPED = re.compile(
    rf"(?<![0-9０-９])(?:{_D}{{6}}{_SEP}{_D}{{8}}{_SEP}{_D}{{3}}[0-9０-９XxＸｘ]|{_D}{{6}}{_SEP}{_D}{{6}}{_SEP}{_D}{{3}})"
    r"(?![0-9０-９XxＸｘ])"
)
_LETTER_OR_DIGIT = re.compile(r"[0-9A-Za-z０-９Ａ-Ｚａ-ｚ]")


def first_id_like(text: str, *, isolated: bool = False) -> str | None:
    """The first thing in ``text`` shaped like an identity number (see :func:`mask_id_like`), or None.

    ``isolated``: only one that no letter touches (so that a hexadecimal digest is not taken for one).
    """
    for match in _ID_SHAPED.finditer(text):
        if isolated and (_LETTER_OR_DIGIT.match(text[match.start() - 1:match.start()] or " ")
                         or _LETTER_OR_DIGIT.match(text[match.end():match.end() + 1] or " ")):
            continue
        return match.group()
    return None


def has_id_like(text: str) -> bool:
    """Whether ``text`` holds something shaped like an identity number anywhere (see :func:`mask_id_like`)."""
    return first_id_like(text) is not None


def mask_id_like(text: str) -> str:
    """``text`` with everything shaped like an identity number masked, whatever it sits in (a note, a
    shifted column, a free-text field): 18 characters (17 digits and a digit or X) or 15 digits, ASCII or
    full-width, whole or grouped as on forms; the first 6 and last 4 kept, the rest starred."""

    def masked(match: re.Match[str]) -> str:
        chars = [unicodedata.normalize("NFKC", c).upper() for c in match.group() if c not in " -"]
        return "".join(chars[:6]) + "*" * (len(chars) - 10) + "".join(chars[-4:])

    return _ID_SHAPED.sub(masked, text)


def mask_id(s: object) -> str:
    """A log-safe form of an identity number: first 6 + 8 asterisks + last 4 (110105********123X).

    Never returns the input: anything that is not (after trimming spaces) an 18-character string is
    masked completely, keeping at most its length.
    """
    if s is None:
        return "<none>"
    if not isinstance(s, str):
        return "<invalid>"
    text = s.strip()
    if len(text) == 18:
        return text[:6] + "*" * 8 + text[14:]
    if 0 < len(text) <= 64:
        return "*" * len(text)
    return "<invalid>"


def mask_account(s: object) -> str:
    """A log-safe form of a bank account (card) number: its first 4 and last 4 characters, the rest starred
    (6222***********1234), as matching.pseudonym's ``account_masked``; anything of 10 characters or fewer
    is starred whole."""
    if s is None:
        return "<none>"
    text = str(s).strip()
    if len(text) > 10:
        return text[:4] + "*" * (len(text) - 8) + text[-4:]
    return "*" * len(text) if len(text) <= 64 else "<invalid>"


# --- first-generation (15-digit) numbers -------------------------------------------------------


def upgrade_id15(s: str) -> str:
    """The 18-character number of a first-generation 15-digit one (GB 11643-1999: area code, "19"
    and the 6-digit birth date, the sequence, then the MOD 11-2 check character)."""
    if not isinstance(s, str) or len(s) != 15 or not s.isascii() or not s.isdigit():
        raise ValueError("a first-generation identity number is 15 ASCII digits")
    first17 = s[:6] + "19" + s[6:]
    return first17 + id_check_char(first17)


# --- names --------------------------------------------------------------------------------------

#: The forms the middle dot of a transliterated name (买买提·艾力) arrives in: U+00B7 MIDDLE DOT (the
#: standard; GBK/GB18030 A1A4), U+30FB KATAKANA MIDDLE DOT (what GB 2312 decoders make of A1A4),
#: U+2022 BULLET, U+2027 HYPHENATION POINT, U+FF65 HALFWIDTH KATAKANA MIDDLE DOT, U+318D HANGUL
#: LETTER ARAEA (a Korean input method's dot), U+2219 BULLET OPERATOR, U+22C5 DOT OPERATOR, U+0387
#: GREEK ANO TELEIA, and full stops typed instead (U+FF0E, U+002E).
NAME_DOTS = "\u00b7\u30fb\u2022\u2027\uff65\u318d\u2219\u22c5\u0387\uff0e."
NAME_DOT = "\u00b7"
_DOT_TABLE = str.maketrans(dict.fromkeys(NAME_DOTS, NAME_DOT))


def normalize_name(s: object) -> str | None:
    """A personal name in the one form names are compared in: every middle-dot form as U+00B7 and
    no white space (a register's full-width padding, 王　芳, is not part of the name).

    Only for comparing: what an agency sent is kept as it was. None for anything that is not text.
    """
    if not isinstance(s, str):
        return None
    return "".join(unicodedata.normalize("NFC", s).translate(_DOT_TABLE).split())

