"""The city the sandbox simulates, as arrays the builders index: its districts, their codes and places.

The city file (fundx/core/cities/) names the districts, their codes today and before a merger or
renaming, and the sandbox's places in each (funeral homes, police stations, venues, prisons).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from fundx.core.areacodes import area_table
from fundx.core.city import City as CityFile
from fundx.core.city import load_city

#: the city the sandbox's agencies are in (fundx/core/cities/<name>.yaml): their contracts' record formats
#: (MZ3301..., H3301...) are Hangzhou's
SANDBOX_CITY = "hangzhou"


@dataclass(frozen=True)
class Place:
    """The sandbox's city, as arrays the builders index: from the city file (fundx/core/cities/)."""

    name: str  # 杭州市
    short: str  # 杭州
    prefix: int  # the city's 4-digit code (3301)
    codes: np.ndarray  # the districts' codes, in the file's order
    weights: np.ndarray  # population shares
    district_names: tuple[str, ...]
    funeral_homes: tuple[str, ...]
    stations: tuple[str, ...]  # three per district, in order (index = district * 3 + k)
    hospitals: tuple[str, ...]  # three per district, in order
    venues: tuple[str, ...]
    prisons: tuple[str, ...]
    womens_prison: str
    own_codes: np.ndarray  # per district: its code, then its former codes; -1 pads
    other_codes: np.ndarray  # per district: the city's other codes; -1 pads
    other_counts: np.ndarray  # per district: how many other codes
    oldest: int  # the city's code in use the longest (for a number no other code fits)
    first: np.ndarray  # first year of each code in use (index = code); 0: before the table
    last: np.ndarray  # last year in use (index = code); 9999: still in use
    national: np.ndarray  # county-level codes outside the city, for numbers first issued elsewhere


def _years() -> tuple[np.ndarray, np.ndarray]:
    first = np.zeros(1_000_000, dtype=np.int16)
    last = np.full(1_000_000, 9999, dtype=np.int16)
    for code, a in area_table().items():
        first[code] = a.first or 0
        last[code] = 9999 if a.last is None else a.last
    return first, last


@lru_cache(maxsize=4)
def load_place(city: str | CityFile = SANDBOX_CITY) -> Place:
    """The sandbox's view of a city file (a shipped name, a path, or a loaded City)."""
    c = load_city(city) if isinstance(city, str) else city
    if not c.has_sandbox:
        raise ValueError(f"{c.source}: the city file has no sandbox part, so the sandbox cannot simulate it")
    ds = c.districts
    sims = [d.sandbox for d in ds if d.sandbox is not None]  # has_sandbox: one per district
    codes = np.array([int(d.code) for d in ds], dtype=np.int64)
    bureau = [f"{c.name}公安局{d.name}分局" if d.name.endswith("区") else f"{d.name}公安局" for d in ds]
    stations = tuple(f"{b}{s}派出所" for b, sim in zip(bureau, sims) for s in sim.police_stations[:3])
    if len(stations) != 3 * len(ds):
        raise ValueError(f"{c.source}: every district needs three police stations for the sandbox")
    areas = np.repeat(codes, 3)
    hospitals = tuple(f"H{a}{(a * 7 + i * 131) % 100000:05d}" for i, a in enumerate(areas.tolist()))
    first, last = _years()
    table = area_table()
    city_codes = [code for code in table if str(code).startswith(c.code) and code % 100 not in (1, 20)]
    owns = [[int(d.code), *(int(f) for f in d.formerly)] for d in ds]
    others = [[x for x in city_codes if x not in own] for own in owns]
    own_codes = np.full((len(ds), max(map(len, owns))), -1, dtype=np.int64)
    other_codes = np.full((len(ds), max(1, *map(len, others))), -1, dtype=np.int64)
    for i, (own, other) in enumerate(zip(owns, others)):
        own_codes[i, :len(own)] = own
        other_codes[i, :len(other)] = other
    national = np.array([code for code in table if not str(code).startswith(c.code) and code % 100 not in (1, 20)],
                        dtype=np.int64)
    return Place(
        name=c.name, short=c.short, prefix=int(c.code), codes=codes,
        weights=np.array([sim.population for sim in sims]) / sum(sim.population for sim in sims),
        district_names=tuple(d.name for d in ds), funeral_homes=tuple(sim.funeral_home for sim in sims),
        stations=stations, hospitals=hospitals, venues=c.venues, prisons=c.prisons, womens_prison=c.womens_prison,
        own_codes=own_codes, other_codes=other_codes, other_counts=np.array([len(o) for o in others]),
        oldest=min(city_codes, key=lambda x: (first[x], -int(last[x]), x)),
        first=first, last=last, national=national)
