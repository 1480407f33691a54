"""Identity numbers for matching people and businesses across agencies.

Two national standards:

- GB 11643 resident identity numbers (18 characters: 6-digit area code, 8-digit birth date,
  3-digit sequence whose last digit is odd for men, and an ISO 7064 MOD 11-2 check character).
- GB 32100 unified social credit codes (USCC, 18 characters: registration authority, entity type,
  6-digit area code, the 9-character GB 11714 organization code with its own check character, and
  a MOD 31 check character).

And what comes with them: the national table of GB/T 2260 area codes with their years (an identity
number is valid wherever it was first issued, under a code since retired too), the upgrade of a
first-generation 15-digit number (GB 11643-1999), and the one form personal names are compared in
(a minority name's middle dot arrives in several code points).

Scalar functions validate and mask single values; the ``make_*`` builders produce millions of valid
numbers at once with numpy for the sandbox generator. Everything here is pure (the area table is
read once from python-stdnum's data).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import TYPE_CHECKING, overload

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

# --- GB 11643 resident identity numbers -------------------------------------------------------

ID_WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"  # indexed by (weighted sum mod 11)

_ID_WEIGHTS_NP = np.array(ID_WEIGHTS, dtype=np.int64)
_ID_CHECK_ASCII = np.frombuffer(ID_CHECK_CHARS.encode("ascii"), dtype=np.uint8)


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


# --- GB 11714 organization codes and GB 32100 unified social credit codes --------------------

ORG_WEIGHTS: tuple[int, ...] = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_WEIGHTS_NP = np.array(ORG_WEIGHTS, dtype=np.int64)
_ORG_CHECK = "0123456789X0"  # index 11 - (sum mod 11): 10 -> X, 11 -> 0
_ORG_VALUES = {c: i for i, c in enumerate("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")}

USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS: tuple[int, ...] = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC_VALUES = {c: i for i, c in enumerate(USCC_CHARS)}
_USCC_WEIGHTS_NP = np.array(USCC_WEIGHTS, dtype=np.int64)
_USCC_ASCII = np.frombuffer(USCC_CHARS.encode("ascii"), dtype=np.uint8)


def org_code_check_char(first8: str) -> str:
    """The GB 11714 check character of an organization code's first 8 characters (digits, A-Z)."""
    if len(first8) != 8 or any(c not in _ORG_VALUES for c in first8):
        raise ValueError("an organization code's first 8 characters must be digits or A-Z")
    total = sum(_ORG_VALUES[c] * w for c, w in zip(first8, ORG_WEIGHTS))
    return _ORG_CHECK[11 - total % 11]


def is_valid_org_code(s: object) -> bool:
    """Whether s is a 9-character GB 11714 organization code with the right check character."""
    if not isinstance(s, str) or len(s) != 9:
        return False
    try:
        return org_code_check_char(s[:8]) == s[8]
    except ValueError:
        return False


def uscc_check_char(first17: str) -> str:
    """The GB 32100 MOD 31 check character that completes a credit code's first 17 characters."""
    if len(first17) != 17 or any(c not in _USCC_VALUES for c in first17):
        raise ValueError("a credit code's first 17 characters must come from " + USCC_CHARS)
    total = sum(_USCC_VALUES[c] * w for c, w in zip(first17, USCC_WEIGHTS))
    return USCC_CHARS[(31 - total % 31) % 31]


def is_valid_uscc(s: object, *, check_org_code: bool = False) -> bool:
    """Whether s is an 18-character unified social credit code with the right check character.

    With check_org_code, characters 9-17 must also be a valid GB 11714 organization code (true of
    codes issued to organizations; some registries' codes for individual businesses are not).
    """
    if not isinstance(s, str) or len(s) != 18:
        return False
    try:
        if uscc_check_char(s[:17]) != s[17]:
            return False
    except ValueError:
        return False
    return is_valid_org_code(s[8:17]) if check_org_code else True


# --- vectorised builders ----------------------------------------------------------------------


@overload
def _put_digits(out: np.ndarray, col: int, values: np.ndarray, width: int, weights: tuple[int, ...]) -> np.ndarray: ...
@overload
def _put_digits(out: np.ndarray, col: int, values: np.ndarray, width: int, weights: None = None) -> None: ...
def _put_digits(
    out: np.ndarray, col: int, values: np.ndarray, width: int, weights: tuple[int, ...] | None = None
) -> np.ndarray | None:
    """Write non-negative integers as zero-padded ASCII digits into out[:, col:col+width].

    With weights (one per output column of the whole row), also returns the digits' weighted sum.
    """
    v = np.asarray(values)
    v = v.astype(np.int32 if v.size == 0 or int(v.max(initial=0)) < 2**31 else np.int64)
    total = np.zeros(v.shape[0], dtype=np.int32) if weights is not None else None
    for k in range(width - 1, -1, -1):
        v, digit = np.divmod(v, 10)
        d8 = digit.astype(np.uint8)
        out[:, col + k] = d8 + 48
        if total is not None and weights is not None:
            total += d8 * np.int32(weights[col + k])
    return total


def civil_from_days(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Year, month and day of days since 1970-01-01 (integer arithmetic; numpy's casts are slow)."""
    z = np.asarray(days, dtype=np.int64) + 719468
    era = np.floor_divide(z, 146097)
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    return year, month, day


def _yyyymmdd(birth: np.ndarray) -> np.ndarray:
    """Birth dates (datetime64 or yyyymmdd integers) as yyyymmdd integers."""
    birth = np.asarray(birth)
    if np.issubdtype(birth.dtype, np.datetime64):
        year, month, day = civil_from_days(birth.astype("datetime64[D]").astype(np.int64))
        return year * 10000 + month * 100 + day
    return birth.astype(np.int64)


def id_check_ascii(digits17: np.ndarray) -> np.ndarray:
    """MOD 11-2 check characters (ASCII codes) for rows of 17 ASCII digits (uint8 matrix N x 17)."""
    total = np.zeros(digits17.shape[0], dtype=np.int64)
    for k in range(17):
        total += (digits17[:, k].astype(np.int64) - 48) * ID_WEIGHTS[k]
    return _ID_CHECK_ASCII[total % 11]


def make_id_matrix(area: np.ndarray, birth: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """Valid identity numbers as an N x 18 uint8 matrix of ASCII codes (the fast form).

    area: 6-digit area codes; birth: datetime64 dates or yyyymmdd integers; seq: 0-999, whose
    parity is the gender (odd = male).
    """
    area = np.asarray(area, dtype=np.int64)
    n = area.shape[0]
    out = np.empty((n, 18), dtype=np.uint8)
    total = _put_digits(out, 0, area, 6, ID_WEIGHTS)
    total += _put_digits(out, 6, _yyyymmdd(birth), 8, ID_WEIGHTS)
    total += _put_digits(out, 14, np.asarray(seq, dtype=np.int64), 3, ID_WEIGHTS)
    out[:, 17] = _ID_CHECK_ASCII[total % 11]
    return out


def make_ids(area: np.ndarray, birth: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """Valid identity numbers as a numpy unicode array (dtype '<U18'); see make_id_matrix."""
    return make_id_matrix(area, birth, seq).reshape(-1).view("S18").astype("U18")


def org_check_ascii(body8: np.ndarray) -> np.ndarray:
    """GB 11714 check characters (ASCII codes) for rows of 8 ASCII digits (uint8 matrix N x 8)."""
    total = np.zeros(body8.shape[0], dtype=np.int64)
    for k in range(8):
        total += (body8[:, k].astype(np.int64) - 48) * ORG_WEIGHTS[k]
    return np.frombuffer(_ORG_CHECK.encode("ascii"), dtype=np.uint8)[11 - total % 11]


def uscc_check_ascii(first17: np.ndarray) -> np.ndarray:
    """MOD 31 check characters (ASCII codes) for rows of 17 credit-code characters (uint8 N x 17)."""
    lut = np.full(256, -1, dtype=np.int16)
    lut[_USCC_ASCII] = np.arange(31)
    total = np.zeros(first17.shape[0], dtype=np.int32)
    for k in range(17):
        values = lut[first17[:, k]]
        if (values < 0).any():
            raise ValueError("credit code characters outside " + USCC_CHARS)
        total += values.astype(np.int32) * USCC_WEIGHTS[k]
    return _USCC_ASCII[(31 - total % 31) % 31]


def make_uscc_matrix(kind: np.ndarray, area: np.ndarray, org_body: np.ndarray) -> np.ndarray:
    """Valid credit codes of market-regulation registrations (first char 9) as an N x 18 uint8 matrix.

    kind: entity type 1 (enterprise), 2 (individual business) or 3 (farmers' cooperative);
    area: 6-digit area codes; org_body: 0-99,999,999, the organization code's 8 digits.
    """
    area = np.asarray(area, dtype=np.int64)
    n = area.shape[0]
    out = np.empty((n, 18), dtype=np.uint8)
    out[:, 0] = ord("9")
    _put_digits(out, 1, np.asarray(kind, dtype=np.int64), 1)
    _put_digits(out, 2, area, 6)
    _put_digits(out, 8, np.asarray(org_body, dtype=np.int64), 8)
    out[:, 16] = org_check_ascii(out[:, 8:16])
    out[:, 17] = uscc_check_ascii(out[:, :17])
    return out


def make_usccs(kind: np.ndarray, area: np.ndarray, org_body: np.ndarray) -> np.ndarray:
    """Valid credit codes as a numpy unicode array (dtype '<U18'); see make_uscc_matrix."""
    return make_uscc_matrix(kind, area, org_body).reshape(-1).view("S18").astype("U18")


# --- area codes (GB/T 2260) -------------------------------------------------------------------
# An identity number's first six digits are the county-level code of the place that first issued
# it (usually the birth place). They never change when a person moves, and a code retired by a later
# merger (杭州 330103 下城区, 1983-2021) stays on the numbers issued under it: so a number is valid
# wherever it was issued, and a city's residents carry codes of every province.

#: Where the national table comes from: python-stdnum's GB/T 2260 data (``stdnum/cn/loc.dat``, the
#: county codes from 1980 on, each with the years it was in use).
AREA_TABLE_SOURCE = "python-stdnum cn/loc (GB/T 2260 county-level codes since 1980, with their years)"

#: County-level codes in use that the table lacks (the Ministry of Civil Affairs' code lists): Hangzhou's
#: districts created in 2021 from 下城区, 江干区 and 余杭区, whose end (or change) the table does record.
#: A code found missing goes here until python-stdnum has it (tests/test_identity.py checks every
#: shipped city file's codes against the table).
AREA_CODES_ADDED: dict[int, tuple[str, str, int]] = {  # code -> (province, name, first year in use)
    330113: ("浙江省", "临平区", 2021),
    330114: ("浙江省", "钱塘区", 2021),
}

#: Residence permits for Hong Kong, Macao and Taiwan residents (港澳台居民居住证, 2018) carry GB 11643
#: numbers under these province-level codes, which are in no county list.
RESIDENCE_PERMIT_AREAS: dict[int, str] = {810000: "香港", 820000: "澳门", 830000: "台湾"}

_YEARS = re.compile(r"^\[(\d{4})?-(\d{4})?\](.*)$")


@dataclass(frozen=True)
class AreaCode:
    """One county-level code of GB/T 2260: its province, its names and the years it was in use.

    ``first``/``last`` are None where the code was in use before the table begins (1980) or still is.
    """

    code: int
    province: str
    names: tuple[str, ...]
    first: int | None
    last: int | None

    def in_use(self, year: int) -> bool:
        """Whether the code was in use in ``year``."""
        return (self.first is None or self.first <= year) and (self.last is None or year <= self.last)


def _parse_county(text: str) -> tuple[tuple[str, ...], int | None, int | None]:
    """``[1983-2013]东陵区,[2014-]浑南区`` -> (names, first year, last year)."""
    names: list[str] = []
    firsts: list[int | None] = []
    lasts: list[int | None] = []
    for part in text.split(","):
        m = _YEARS.match(part.strip())
        if m is None:
            names.append(part.strip())
            firsts.append(None)
            lasts.append(None)
        else:
            names.append(m.group(3))
            firsts.append(int(m.group(1)) if m.group(1) else None)
            lasts.append(int(m.group(2)) if m.group(2) else None)
    first = None if None in firsts else min(f for f in firsts if f is not None)
    last = None if None in lasts else max(t for t in lasts if t is not None)
    return tuple(names), first, last


@lru_cache(maxsize=1)
def area_table() -> dict[int, AreaCode]:
    """The county-level codes of GB/T 2260 that have ever been in use, by code (read once).

    From python-stdnum's table (:data:`AREA_TABLE_SOURCE`) and :data:`AREA_CODES_ADDED`, without the
    province codes (``xx0000``)
    and without the prefecture codes (``xxxx00``) that have county codes under them: no office
    issues numbers under those. A prefecture-level city without counties issues under its own
    ``xxxx00`` code (东莞 441900, 中山 442000, 嘉峪关 620200), which stays.
    """
    from stdnum import numdb

    codes: dict[int, tuple[str, str]] = {}

    def walk(prefixes: list, head: str, province: str) -> None:
        for length, low, high, props, children in prefixes:
            for value in range(int(low), int(high) + 1):
                part = head + str(value).zfill(length)
                prov = props.get("province", province)
                if len(part) == 6:
                    codes[int(part)] = (prov, props.get("county", ""))
                walk(children, part, prov)

    walk(numdb.get("cn/loc").prefixes, "", "")
    under = {c // 100 for c in codes if c % 100}
    table: dict[int, AreaCode] = {}
    for code, (province, county) in codes.items():
        if code % 10000 == 0 or (code % 100 == 0 and code // 100 in under):
            continue
        names, first, last = _parse_county(county)
        table[code] = AreaCode(code, province, names, first, last)
    for code, (province, name, since) in AREA_CODES_ADDED.items():
        table.setdefault(code, AreaCode(code, province, (name,), since, None))
    return dict(sorted(table.items()))


@lru_cache(maxsize=1)
def _known_lookup() -> np.ndarray:
    """A bool per 6-digit code (index = code): a county-level code that has existed, or a residence permit's."""
    known = np.zeros(1_000_000, dtype=bool)
    known[np.fromiter(area_table(), dtype=np.int64)] = True
    known[list(RESIDENCE_PERMIT_AREAS)] = True
    return known


def known_areas(codes: np.ndarray) -> np.ndarray:
    """Whether each 6-digit area code (integers; -1 for none) has existed in GB/T 2260 (vectorised)."""
    codes = np.asarray(codes, dtype=np.int64)
    inside = (codes >= 0) & (codes < 1_000_000)
    return inside & _known_lookup()[np.where(inside, codes, 0)]


def is_known_area_code(code: object) -> bool:
    """Whether a 6-digit area code (int or text) is one of :func:`known_areas`."""
    text = str(code)
    return len(text) == 6 and text.isascii() and text.isdigit() and bool(_known_lookup()[int(text)])


# --- first-generation (15-digit) numbers -------------------------------------------------------


def upgrade_id15(s: str) -> str:
    """The 18-character number of a first-generation 15-digit one (GB 11643-1999: area code, "19"
    and the 6-digit birth date, the sequence, then the MOD 11-2 check character)."""
    if not isinstance(s, str) or len(s) != 15 or not s.isascii() or not s.isdigit():
        raise ValueError("a first-generation identity number is 15 ASCII digits")
    first17 = s[:6] + "19" + s[6:]
    return first17 + id_check_char(first17)


def upgrade15_rows(values: object) -> tuple[np.ndarray, np.ndarray]:
    """The rows holding 15 ASCII digits, upgraded as :func:`upgrade_id15` does, all at once:
    (positions, N x 18 uint8 matrix of the new numbers)."""
    pos, mat = fixed_width_rows(values, 15)
    if len(pos):
        digits = (mat - np.uint8(48) <= 9).all(axis=1)  # wraps around below '0'
        pos, mat = pos[digits], mat[digits]
    out = np.empty((len(pos), 18), dtype=np.uint8)
    out[:, :6] = mat[:, :6]
    out[:, 6:8] = np.frombuffer(b"19", dtype=np.uint8)
    out[:, 8:17] = mat[:, 6:15]
    if len(pos):
        out[:, 17] = id_check_ascii(out[:, :17])
    return pos, out


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


# --- vectorised checks (pandas/Arrow columns, no per-row Python) ---------------------------------


def _arrow_text(values: object) -> pa.Array:
    """A text column (pandas str/object Series, numpy or Arrow array) as one Arrow large_string array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = values
    if not isinstance(arr, (pa.Array, pa.ChunkedArray)):
        try:
            arr = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # mixed objects (numbers next to text): Arrow will not guess, so look at each as text
            import pandas as pd

            series = pd.Series(values)
            arr = pa.array(series.where(series.isna(), series.astype(str)), type=pa.large_string(), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), pa.large_string())
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(pc.cast(arr, pa.string()), pa.large_string())
    return arr.cast(pa.large_string()) if not pa.types.is_large_string(arr.type) else arr


def fixed_width_rows(values: object, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows whose text is exactly ``width`` bytes long: (positions, N x width uint8 matrix)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = _arrow_text(values)
    lengths = pc.binary_length(arr).fill_null(-1).to_numpy()
    positions = np.flatnonzero(lengths == width)
    if len(positions) == 0:
        return positions, np.empty((0, width), dtype=np.uint8)
    picked = arr.take(pa.array(positions)) if len(positions) != len(arr) else arr
    offsets = np.frombuffer(picked.buffers()[1], dtype=np.int64)[picked.offset: picked.offset + len(picked) + 1]
    data = np.frombuffer(picked.buffers()[2], dtype=np.uint8)
    start = int(offsets[0])
    if not (np.diff(offsets) == width).all():  # pragma: no cover - lengths were selected above
        raise ValueError("rows of unequal width")
    return positions, data[start: start + width * len(positions)].reshape(len(positions), width)


_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def real_dates(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Whether (year, month, day) are days of the calendar (integer arrays, element-wise)."""
    month_ok = (month >= 1) & (month <= 12)
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    last = _DAYS_IN_MONTH[np.where(month_ok, month, 0)] + ((month == 2) & leap)
    return month_ok & (day >= 1) & (day <= last)


def days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of (year, month, day) (the inverse of civil_from_days)."""
    y = np.asarray(year, dtype=np.int64) - (np.asarray(month) <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    m = np.asarray(month, dtype=np.int64)
    doy = (153 * np.where(m > 2, m - 3, m + 9) + 2) // 5 + np.asarray(day, dtype=np.int64) - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


_DIGIT_PLACES = np.array([1000, 100, 10, 1], dtype=np.int64)


@dataclass(frozen=True)
class IdColumn:
    """What a column of identity numbers holds, row by row (all arrays of the column's length).

    ``shaped``: 17 ASCII digits and a digit or X; ``valid``: shaped, not starting with 0, a real
    birth date (year >= 1850) and the right MOD 11-2 check character; ``birth``: days since
    1970-01-01 of the embedded birth date where valid, else ``NO_DAY``; ``area``: the 6-digit area
    code where shaped, else -1.
    """

    shaped: np.ndarray
    valid: np.ndarray
    birth: np.ndarray
    area: np.ndarray


NO_DAY = np.iinfo(np.int64).min


def id_column(values: object) -> IdColumn:
    """Identity numbers checked all at once (GB 11643); strict like is_valid_id."""
    n = len(values)  # type: ignore[arg-type]
    shaped = np.zeros(n, dtype=bool)
    valid = np.zeros(n, dtype=bool)
    birth = np.full(n, NO_DAY, dtype=np.int64)
    area = np.full(n, -1, dtype=np.int64)
    pos, mat = fixed_width_rows(values, 18)
    if len(pos):
        digits = mat[:, :17] - np.uint8(48)  # wraps around below '0', so > 9 means not a digit
        last = mat[:, 17]
        ok_shape = (digits <= 9).all(axis=1) & (((last >= 48) & (last <= 57)) | (last == 88))
        d = digits.astype(np.int64)
        year = d[:, 6:10] @ _DIGIT_PLACES
        month = d[:, 10] * 10 + d[:, 11]
        day = d[:, 12] * 10 + d[:, 13]
        date_ok = real_dates(year, month, day) & (year >= 1850)
        check_ok = _ID_CHECK_ASCII[(d @ _ID_WEIGHTS_NP) % 11] == last
        good = ok_shape & date_ok & check_ok & (mat[:, 0] != 48)
        shaped[pos] = ok_shape
        valid[pos] = good
        area[pos[ok_shape]] = (d[ok_shape, :6] @ np.array([100000, 10000, 1000, 100, 10, 1], dtype=np.int64))
        birth[pos[good]] = days_from_civil(year[good], month[good], day[good])
    return IdColumn(shaped, valid, birth, area)


def uscc_column(values: object) -> np.ndarray:
    """Whether each value is a unified social credit code with the right MOD 31 check character."""
    n = len(values)  # type: ignore[arg-type]
    out = np.zeros(n, dtype=bool)
    pos, mat = fixed_width_rows(values, 18)
    if len(pos):
        lut = np.full(256, -1, dtype=np.int64)
        lut[_USCC_ASCII] = np.arange(31)
        vals = lut[mat]
        ok = (vals >= 0).all(axis=1)
        total = np.where(vals[:, :17] < 0, 0, vals[:, :17]) @ _USCC_WEIGHTS_NP
        ok &= _USCC_ASCII[(31 - total % 31) % 31] == mat[:, 17]
        out[pos] = ok
    return out
