"""Identity numbers and credit codes a whole column at a time: numpy and Arrow, no per-row Python.

The checks read a text column (pandas, numpy or Arrow) as fixed-width byte rows and judge every row
at once, as strictly as the scalar checks of :mod:`fundx.core.identity` and
:mod:`fundx.core.creditcodes`; the ``make_*`` builders write millions of valid numbers at once for
the sandbox generator. Dates are days since 1970-01-01 in integer arithmetic (numpy's date casts are
slow).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, overload

import numpy as np

from fundx.core.creditcodes import ORG_CHECK_CHARS, ORG_WEIGHTS, USCC_CHARS, USCC_WEIGHTS
from fundx.core.identity import ID_CHECK_CHARS, ID_WEIGHTS

if TYPE_CHECKING:
    import pyarrow as pa

_ID_WEIGHTS_NP = np.array(ID_WEIGHTS, dtype=np.int64)
_ID_CHECK_ASCII = np.frombuffer(ID_CHECK_CHARS.encode("ascii"), dtype=np.uint8)
_DIGITS17 = np.full(17, 48, dtype=np.uint8)
_NINES17 = np.full(17, 9, dtype=np.uint8)
_ID_WEIGHTS_ZEROS = 48 * sum(ID_WEIGHTS)  # the weighted sum of seventeen ASCII '0's
_USCC_WEIGHTS_NP = np.array(USCC_WEIGHTS, dtype=np.int64)
_USCC_ASCII = np.frombuffer(USCC_CHARS.encode("ascii"), dtype=np.uint8)


# --- calendar arithmetic ----------------------------------------------------------------------


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


def days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of (year, month, day) (the inverse of civil_from_days)."""
    y = np.asarray(year, dtype=np.int64) - (np.asarray(month) <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    m = np.asarray(month, dtype=np.int64)
    doy = (153 * np.where(m > 2, m - 3, m + 9) + 2) // 5 + np.asarray(day, dtype=np.int64) - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def real_dates(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Whether (year, month, day) are days of the calendar (integer arrays, element-wise)."""
    month_ok = (month >= 1) & (month <= 12)
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    last = _DAYS_IN_MONTH[np.where(month_ok, month, 0)] + ((month == 2) & leap)
    return month_ok & (day >= 1) & (day <= last)


@lru_cache(maxsize=1)
def _month_table() -> tuple[np.ndarray, np.ndarray]:
    """For ``year * 12 + month - 1`` (years 0-9999): days since 1970-01-01 of the month's first day, and its
    length in days — two look-ups instead of the calendar arithmetic on every row."""
    years = np.repeat(np.arange(10000, dtype=np.int64), 12)
    months = np.tile(np.arange(1, 13, dtype=np.int64), 10000)
    first = days_from_civil(years, months, np.ones_like(years))
    leap = ((years % 4 == 0) & (years % 100 != 0)) | (years % 400 == 0)
    length = (_DAYS_IN_MONTH[months] + ((months == 2) & leap)).astype(np.int32)
    return first, length


def calendar_days(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether (year, month, day) are days of the calendar, and their days since 1970-01-01 where they are
    (integer arrays, element-wise; any year outside 0-9999 is not one): ``real_dates`` and ``days_from_civil``
    at once, by table."""
    first, length = _month_table()
    inside = (year >= 0) & (year <= 9999) & (month >= 1) & (month <= 12)
    at = np.where(inside, year * 12 + month - 1, 0)
    ok = inside & (day >= 1) & (day <= length[at])
    return ok, first[at] + day - 1


def ascii_number(mat: np.ndarray, start: int, width: int) -> np.ndarray:
    """The decimal number written in columns ``start:start + width`` of rows of ASCII digits (int32; rows
    with other bytes there get a meaningless number: test their shape first)."""
    out = mat[:, start].astype(np.int32) - 48
    for k in range(start + 1, start + width):
        out *= 10
        out += mat[:, k]
        out -= 48
    return out


# --- text columns as fixed-width bytes -----------------------------------------------------------


def arrow_text(values: object) -> pa.Array:
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

    arr = arrow_text(values)
    lengths = pc.binary_length(arr).fill_null(-1).to_numpy()
    positions = np.flatnonzero(lengths == width)
    if len(positions) == 0:
        return positions, np.empty((0, width), dtype=np.uint8)
    picked = arr.take(pa.array(positions)) if len(positions) != len(arr) else arr
    offsets = np.frombuffer(picked.buffers()[1], dtype=np.int64)[picked.offset: picked.offset + len(picked) + 1]
    data = np.frombuffer(picked.buffers()[2], dtype=np.uint8)
    start = int(offsets[0])
    if int(offsets[-1]) - start != width * len(positions):  # pragma: no cover - lengths were selected above
        raise ValueError("rows of unequal width")
    return positions, data[start: start + width * len(positions)].reshape(len(positions), width)


#: rows of bytes_within's work at a time (its buffers stay in the CPU's cache)
_BLOCK_ROWS = 1 << 15


def bytes_within(mat: np.ndarray, low: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Whether every byte of each row of ``mat`` (N x width uint8) is within its position's range
    ``low[k] .. low[k] + span[k]``. The rows are copied, a block at a time, into whole 8-byte words and tested
    as one flat run of bytes (numpy's element-wise work over short rows, and its ``all(axis=1)``, go row by
    row: several times slower); a row is good where its words of out-of-range marks are all zero."""
    n, width = mat.shape
    lanes = -(-width // 8)
    block = min(n, _BLOCK_ROWS)
    low8 = np.zeros(lanes * 8, dtype=np.uint8)
    span8 = np.zeros(lanes * 8, dtype=np.uint8)  # the padding (0) is within 0 .. 0
    low8[:width], span8[:width] = low, span
    lows, spans = np.tile(low8, block), np.tile(span8, block)
    padded = np.zeros((block, lanes * 8), dtype=np.uint8)
    bad = np.zeros(block * lanes * 8, dtype=bool)
    good = np.empty(n, dtype=bool)
    for first in range(0, n, block):
        rows = min(block, n - first)
        size = rows * lanes * 8
        padded[:rows, :width] = mat[first:first + rows]
        flat = padded.reshape(-1)[:size]
        np.subtract(flat, lows[:size], out=flat)  # a byte below its range wraps around above it
        np.greater(flat, spans[:size], out=bad[:size])
        words = bad[:size].view(np.uint64).reshape(rows, lanes)
        here = good[first:first + rows]
        np.equal(words[:, 0], 0, out=here)
        for k in range(1, lanes):
            here &= words[:, k] == 0
    return good


# --- checks -----------------------------------------------------------------------------------



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


def id_column(values: object, *, rows: tuple[np.ndarray, np.ndarray] | None = None) -> IdColumn:
    """Identity numbers checked all at once (GB 11643); strict like is_valid_id. ``rows``: the column's
    ``fixed_width_rows(values, 18)``, when the caller has them."""
    n = len(values)  # type: ignore[arg-type]
    shaped = np.zeros(n, dtype=bool)
    valid = np.zeros(n, dtype=bool)
    birth = np.full(n, NO_DAY, dtype=np.int64)
    area = np.full(n, -1, dtype=np.int64)
    pos, mat = rows if rows is not None else fixed_width_rows(values, 18)
    if len(pos):
        last = mat[:, 17]
        ok_shape = bytes_within(mat[:, :17], _DIGITS17, _NINES17) & (((last >= 48) & (last <= 57)) | (last == 88))
        # the MOD 11-2 sum in uint16 (exact: at most 255 x 100), column by column; the digits' '0's taken off after
        total = np.zeros(len(pos), dtype=np.uint16)
        for k, weight in enumerate(ID_WEIGHTS):
            total += mat[:, k].astype(np.uint16) * np.uint16(weight)
        check_ok = _ID_CHECK_ASCII[(total.astype(np.int32) - _ID_WEIGHTS_ZEROS) % 11] == last
        year = ascii_number(mat, 6, 4)
        date_ok, days = calendar_days(np.where(ok_shape, year, -1), ascii_number(mat, 10, 2), ascii_number(mat, 12, 2))
        good = ok_shape & date_ok & (year >= 1850) & check_ok & (mat[:, 0] != 48)
        shaped[pos] = ok_shape
        valid[pos] = good
        area[pos[ok_shape]] = ascii_number(mat, 0, 6)[ok_shape]
        birth[pos[good]] = days[good]
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


def upgrade15_rows(values: object) -> tuple[np.ndarray, np.ndarray]:
    """The rows holding 15 ASCII digits, upgraded as :func:`fundx.core.identity.upgrade_id15` does, all at once:
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


# --- builders (the sandbox generator) ---------------------------------------------------------


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
    return np.frombuffer(ORG_CHECK_CHARS.encode("ascii"), dtype=np.uint8)[11 - total % 11]


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

