"""The national table of GB/T 2260 area codes, with their years: which codes an identity number may carry.

An identity number's first six digits are the county-level code of the place that first issued
it (usually the birth place). They never change when a person moves, and a code retired by a later
merger (杭州 330103 下城区, 1983-2021) stays on the numbers issued under it: so a number is valid
wherever it was issued, and a city's residents carry codes of every province. The table is read
once from python-stdnum's data; a city's own districts (which only route work) are in
:mod:`fundx.core.city`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Where the national table comes from: python-stdnum's GB/T 2260 data (``stdnum/cn/loc.dat``, the
#: county codes from 1980 on, each with the years it was in use).
AREA_TABLE_SOURCE = "python-stdnum cn/loc (GB/T 2260 county-level codes since 1980, with their years)"

#: County-level codes in use that the table lacks (the Ministry of Civil Affairs' code lists): Hangzhou's
#: districts created in 2021 from 下城区, 江干区 and 余杭区, whose end (or change) the table does record.
#: A code found missing goes here until python-stdnum has it (tests/core/test_identity.py checks every
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

