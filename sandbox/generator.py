"""The sandbox's synthetic city: seeded people, their benefit roll and the eight agency feeds about them.

One call, ``generate_city(people, seed, as_of)``, builds a city from its file (fundx/core/cities/: Hangzhou
by default) whose residents have valid GB 11643 identity numbers, many first issued in other
provinces or under codes since retired, some still in 15-digit form in paper registers, names with
a minority name's middle dot or rare characters (docs/agencies.md: The population), the
social-insurance office's own data (benefit roll, contributions,
employer subsidies), and the rows each agency holds about them (deaths, prisoners, bills,
businesses, hospital death notifications, wage income), with a little of real agencies' messiness, about 1 % of rows with mistakes no repair
can fix (which the data contracts quarantine), and a set of planted, known truths (pensions paid
after death, benefits paid in custody, shared bank accounts, ...): exactly the cases the matching
stage's rules must find. ``generate_feed`` streams one feed's rows without
a city, in chunks, for benchmarks.

Everything is vectorised numpy and deterministic: the same (people, seed, as_of) gives identical
frames. No real personal data: names, numbers and events are drawn at random. The office's own data
(contributions, employer subsidies), the cases of the rules added with them and the bills' spread
are drawn from a second stream (SeedSequence([seed, 99])), so the frames built before stay as they were;
the hospital death notifications from a third ([seed, 100]) and the wage income from a fourth
([seed, 101]), rows, messiness and invalid rows alike, so the first six feeds stay as they were too;
the population's newer traits from a fifth ([seed, 102]).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fundx.core.areacodes import area_table
from fundx.core.city import City as CityFile
from fundx.core.city import load_city
from fundx.core.idcolumns import NO_DAY, civil_from_days, days_from_civil, make_id_matrix, make_uscc_matrix
from fundx.core.identity import ID_CHECK_CHARS, is_valid_id, upgrade_id15
from sandbox.schema import feed_schema

DEFAULT_SEED = 20261123
DEFAULT_AS_OF = date(2026, 11, 1)
FEEDS: tuple[str, ...] = (
    "civil_affairs.deaths",
    "religious_affairs.deaths",
    "police.deaths",
    "justice.prisoners",
    "medical_insurance.bills",
    "market_regulation.businesses",
    "health_commission.hospital_deaths",
    "tax_bureau.wage_income",
)
HOSPITAL_DEATHS = "health_commission.hospital_deaths"
WAGE_INCOME = "tax_bureau.wage_income"
#: the share of the contributions' (person, month)s whose employer also declares the wage to the tax bureau
WAGE_DECLARED_SHARE = 0.92
DEATH_FEEDS: tuple[str, ...] = ("civil_affairs.deaths", "police.deaths", "religious_affairs.deaths", HOSPITAL_DEATHS)
#: the share of deaths that happen in hospital, which the hospital notifies (with the true date)
HOSPITAL_DEATH_SHARE = 0.55

#: the city the sandbox's agencies are in (fundx/core/cities/<name>.yaml): their contracts' record formats
#: (MZ3301..., H3301...) are Hangzhou's
SANDBOX_CITY = "hangzhou"
#: the share of residents whose identity numbers were first issued in another province (they keep
#: that area code for life: pensioners who moved to their children, migrant workers, ...)
NON_LOCAL_SHARE = 0.30
#: local residents whose numbers carry a code their district had before a merger or renaming
#: (330103 下城区 for people of today's 拱墅区), where that code was in use when the number was issued
FORMER_CODE_SHARE = 0.5
#: the first year identity numbers were issued (trial issue 1984, nationwide from 1985): a person
#: born before got the codes of that year
FIRST_ISSUE_YEAR = 1985
#: the feeds that may send first-generation 15-digit numbers (their contracts declare upgrade15):
#: paper-born registers; people born before OLD_NUMBER_BORN_BEFORE appear there with their
#: 15-digit number with probability OLD_NUMBER_SHARE
OLD_NUMBER_FEEDS: tuple[str, ...] = ("civil_affairs.deaths", "religious_affairs.deaths")
OLD_NUMBER_BORN_BEFORE = date(1950, 1, 1)
OLD_NUMBER_SHARE = 0.2
#: names: ethnic-minority names written with a middle dot (a share of the residents), given names
#: with a rare character (outside GB 2312: 堃 and 喆 are in GBK; 𠮷, 𬀩 and 𫖮 are CJK Extension B/E,
#: four bytes in GB18030), and the forms the dot takes in each agency's system
MINORITY_SHARE = 0.02
RARE_NAME_SHARE = 0.01
MINORITY_GIVEN_MALE = ("买买提", "艾合买提", "阿不都热依木", "吐尔逊", "热合曼", "阿里木", "努尔艾力", "艾力")
MINORITY_GIVEN_FEMALE = ("阿依古丽", "古丽娜尔", "帕提古丽", "热依拉", "迪丽努尔", "米日古丽", "阿依努尔")
MINORITY_FATHER = ("艾力", "吐尔逊", "托合提", "买买提", "阿不都拉", "玉素甫", "司马义", "依明")
RARE_GIVEN = ("堃", "喆", "𠮷", "𬀩", "𫖮")
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
#: the same death reported one day apart by two sources (a death near midnight): this share of the
#: deaths, at least three (the consolidated date is the later one, as for any disagreement)
NEAR_DATE_SHARE = 0.02


@dataclass(frozen=True)
class _Place:
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
def _place(city: str | CityFile = SANDBOX_CITY) -> _Place:
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
    return _Place(
        name=c.name, short=c.short, prefix=int(c.code), codes=codes,
        weights=np.array([sim.population for sim in sims]) / sum(sim.population for sim in sims),
        district_names=tuple(d.name for d in ds), funeral_homes=tuple(sim.funeral_home for sim in sims),
        stations=stations, hospitals=hospitals, venues=c.venues, prisons=c.prisons, womens_prison=c.womens_prison,
        own_codes=own_codes, other_codes=other_codes, other_counts=np.array([len(o) for o in others]),
        oldest=min(city_codes, key=lambda x: (first[x], -int(last[x]), x)),
        first=first, last=last, national=national)


# Surnames with their approximate share of the population (per cent).
SURNAMES: tuple[tuple[str, float], ...] = (
    ("王", 7.1), ("李", 7.0), ("张", 6.7), ("刘", 5.4), ("陈", 4.5), ("杨", 3.1), ("黄", 2.1),
    ("赵", 2.0), ("吴", 2.0), ("周", 1.9), ("徐", 1.7), ("孙", 1.5), ("马", 1.4), ("朱", 1.3),
    ("胡", 1.3), ("郭", 1.1), ("何", 1.1), ("林", 1.0), ("高", 1.0), ("罗", 0.9), ("郑", 0.8),
    ("梁", 0.8), ("谢", 0.6), ("宋", 0.6), ("唐", 0.6), ("许", 0.5), ("韩", 0.5), ("冯", 0.5),
    ("邓", 0.5), ("曹", 0.5), ("彭", 0.5), ("曾", 0.4), ("肖", 0.4), ("田", 0.4), ("董", 0.4),
    ("袁", 0.4), ("潘", 0.4), ("于", 0.4), ("蒋", 0.4), ("蔡", 0.4), ("余", 0.3), ("杜", 0.3),
    ("叶", 0.3), ("程", 0.3), ("沈", 0.3), ("钱", 0.2), ("金", 0.2), ("楼", 0.05), ("欧阳", 0.05),
    ("诸葛", 0.01),
)
_SURNAME_P = np.array([s[1] for s in SURNAMES]) / sum(s[1] for s in SURNAMES)
GIVEN_MALE = tuple("伟强磊军勇杰涛明超斌刚平辉鹏华建国文志海波宇浩俊峰林东成亮金荣根福德晨毅")
GIVEN_FEMALE = tuple("芳娟敏静丽艳霞燕玲红英华梅兰秀萍琳婷雪慧洁莉云凤珍琴佳怡欣彤")

BENEFITS: tuple[str, ...] = ("basic_pension", "resident_pension", "unemployment", "survivor", "disability")
#: for the first three schemes (BENEFITS index 0-2), the two others each excludes (duplicate_receipt)
_EXCLUSIVE_PARTNER = np.array([[1, 2], [0, 2], [0, 1]], dtype=np.int64)
#: the employer's share of a monthly social-insurance contribution (basic pension), of the wage
CONTRIBUTION_RATE = 0.16
SUBSIDIES: tuple[str, ...] = ("稳岗返还", "社保补贴", "一次性扩岗补助")
#: frequent_visits: bills admitted in one month from which a person is a frequent patient (planted: 15-22)
MIN_VISITS = 15
#: the office's own tables (City.roll, City.contributions, City.subsidies) and their columns
ROLL_COLUMNS = ("id_number", "name", "benefit_type", "monthly_amount", "bank_account", "status", "paid_through",
                "start_month", "months_paid", "paying_district")
CONTRIBUTION_COLUMNS = ("id_number", "employer_uscc", "month", "amount")
SUBSIDY_COLUMNS = ("uscc", "subsidy_type", "month", "amount")
BANK_PREFIXES = np.array([6222, 6217, 6228, 6212, 6213, 6214, 6227, 6230, 6216, 6226], dtype=np.int64)

CUSTODY = ("在押", "假释", "暂予监外执行", "刑满释放")
# ICD-10 codes with a typical inpatient cost (yuan) and how often they are seen.
DIAGNOSES: tuple[tuple[str, float, float], ...] = (
    ("I10", 6000, 14), ("E11.9", 7000, 12), ("J18.9", 9000, 8), ("I25.1", 15000, 6),
    ("I63.9", 20000, 5), ("J44.9", 11000, 6), ("K29.7", 4000, 8), ("M54.5", 5000, 7),
    ("N18.9", 18000, 3), ("C34.9", 45000, 2), ("C16.9", 40000, 1.5), ("I50.9", 16000, 3),
    ("J06.9", 2000, 10), ("K80.2", 14000, 2.5), ("S72.0", 35000, 1.5), ("H25.9", 8000, 4),
    ("E78.5", 3000, 6), ("Z51.1", 12000, 2), ("F32.9", 5000, 1.5), ("R50.9", 3000, 2),
)
_DIAG_P = np.array([d[2] for d in DIAGNOSES]) / sum(d[2] for d in DIAGNOSES)
_DIAG_COST = np.array([d[1] for d in DIAGNOSES])
#: a bill's total is its typical cost times uniform(1 - BILL_SPREAD, 1 + BILL_SPREAD), plus 20: even the
#: highest natural bill stays well under 1.2 x its (diagnosis, setting) group's mean (bill_over_mean)
BILL_SPREAD = 0.10
#: planted overbilled bills: the typical cost times uniform(OVERBILLED_LOW, OVERBILLED_HIGH), plus 20
OVERBILLED_LOW, OVERBILLED_HIGH = 1.6, 3.0
BUSINESS_WORDS = tuple("华鑫恒达顺通泰丰瑞祥宏兴盛和信安嘉德源隆昌东方天宇新明润永康中诚汇博远")
INDUSTRIES = ("科技", "贸易", "餐饮管理", "建筑工程", "电子商务", "物流", "服装", "机械制造", "文化传媒",
              "网络技术", "食品", "装饰工程")
SHOPS = ("小吃店", "便利店", "五金店", "理发店", "服装店", "水果店", "面馆", "汽车修理部")
CROPS = ("茶叶", "蔬菜", "水果", "竹笋", "蜂业", "苗木")
BUSINESS_STATUS = ("存续", "在业", "注销", "吊销")

#: underlying causes of death (ICD-10) and how often hospitals certify them
CAUSES: tuple[tuple[str, float], ...] = (
    ("I21.9", 14), ("I63.9", 13), ("I61.9", 7), ("I50.9", 6), ("C34.9", 12), ("C16.9", 5), ("C22.0", 5),
    ("J44.1", 9), ("J18.9", 8), ("E11.9", 4), ("N18.5", 3), ("A41.9", 4), ("S06.9", 2), ("G30.9", 3),
)
_CAUSE_P = np.array([c[1] for c in CAUSES]) / sum(c[1] for c in CAUSES)

MESSY_KINDS_ID = ("fullwidth_digits", "lowercase_x", "trailing_space")
MESSY_KINDS_DATE = ("date_slash", "date_chinese", "date_compact")
MESSY_RATE = 0.004

_DAY = 86_400
_EPOCH = date(1970, 1, 1)


# --- text building (fixed-width ASCII straight into Arrow; Python strings only where needed) -----


def _days(d: date) -> int:
    """Days since 1970-01-01 of a date."""
    return (d - _EPOCH).days


def _fixed(n: int, *parts: str | tuple[np.ndarray, int]) -> np.ndarray:
    """An N x W uint8 matrix of ASCII text from literal parts and (integers, width) zero-padded parts."""
    width = sum(len(p) if isinstance(p, str) else p[1] for p in parts)
    out = np.empty((n, width), dtype=np.uint8)
    col = 0
    for p in parts:
        if isinstance(p, str):
            out[:, col:col + len(p)] = np.frombuffer(p.encode("ascii"), dtype=np.uint8)
            col += len(p)
        else:
            v, w = np.asarray(p[0], dtype=np.int64), p[1]
            for k in range(w - 1, -1, -1):
                v, digit = np.divmod(v, 10)
                out[:, col + k] = digit.astype(np.uint8) + 48
            col += w
    return out


def _arrow(mat: np.ndarray) -> pa.Array:
    """Arrow strings from an N x W uint8 ASCII matrix, without making Python objects."""
    n, w = mat.shape
    data = pa.py_buffer(np.ascontiguousarray(mat).reshape(-1))
    if w * n < 2**31 - 1:
        offsets = np.arange(0, w * (n + 1), w, dtype=np.int32)
        return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), data)
    offsets = np.arange(0, w * (n + 1), w, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), data)


def _date_text(days: np.ndarray) -> pa.Array:
    """ISO dates (2026-10-12) from days since 1970-01-01."""
    y, m, d = civil_from_days(days)
    return _arrow(_fixed(len(y), (y, 4), "-", (m, 2), "-", (d, 2)))


def _time_text(seconds: np.ndarray) -> pa.Array:
    """ISO 8601 timestamps with +08:00 from Shanghai wall-clock seconds since 1970-01-01."""
    seconds = np.asarray(seconds, dtype=np.int64)
    y, m, d = civil_from_days(seconds // _DAY)
    s = seconds % _DAY
    return _arrow(_fixed(len(y), (y, 4), "-", (m, 2), "-", (d, 2), "T", (s // 3600, 2), ":",
                         (s // 60 % 60, 2), ":", (s % 60, 2), "+08:00"))


def _month_text(months: np.ndarray) -> pa.Array:
    """YYYY-MM from month numbers (year * 12 + month - 1)."""
    months = np.asarray(months, dtype=np.int64)
    return _arrow(_fixed(len(months), (months // 12, 4), "-", (months % 12 + 1, 2)))


def _pick(options: tuple[str, ...] | list[str], idx: np.ndarray) -> pa.Array:
    """Arrow strings options[idx]."""
    return pa.array(list(options), pa.string()).take(pa.array(np.asarray(idx, dtype=np.int64)))


def _join(*arrays: pa.Array) -> pa.Array:
    """Element-wise concatenation of Arrow string arrays."""
    return pc.binary_join_element_wise(*arrays, "")


def _with_nulls(arr: pa.Array, null: np.ndarray) -> pa.Array:
    """arr with nulls where null is True."""
    return pc.if_else(pa.array(null), pa.scalar(None, arr.type), arr)


def _str(arr: pa.Array) -> pd.Series:
    """A pandas 3 'str' column from Arrow strings."""
    return pd.Series(arr, dtype="str")


def _frame(feed: str, columns: dict[str, object]) -> pd.DataFrame:
    """A feed's frame with exactly the contract's columns, in contract order."""
    order = feed_schema(feed).columns
    if set(order) != set(columns):
        raise ValueError(f"{feed}: generated columns {sorted(columns)} differ from the contract's {order}")
    data = {c: (_str(columns[c]) if isinstance(columns[c], (pa.Array, pa.ChunkedArray)) else columns[c])
            for c in order}
    return pd.DataFrame(data)


def _keys(prefix: str, start: int, n: int, width: int) -> pa.Array:
    """Unique keys prefix + zero-padded (start, start+1, ...)."""
    return _arrow(_fixed(n, prefix, (np.arange(start, start + n, dtype=np.int64), width)))


def _local_seconds(rng: np.random.Generator, days: np.ndarray, start_hour: int = 8, end_hour: int = 19) -> np.ndarray:
    """Wall-clock seconds on the given days, at random office-hours times."""
    return np.asarray(days, dtype=np.int64) * _DAY + rng.integers(start_hour * 3600, end_hour * 3600, len(days))


# --- people -----------------------------------------------------------------------------------


@dataclass
class _People:
    """Residents as parallel arrays (index i is one person)."""

    district: np.ndarray  # where they live: index into the city's districts (place.codes)
    birth: np.ndarray  # days since 1970-01-01
    male: np.ndarray  # bool
    id_mat: np.ndarray  # N x 18 uint8, the identity numbers (area code: where first issued)
    name: pa.Array
    place: _Place
    old_number: np.ndarray | None = None  # bool: known to paper-born registers by a 15-digit number

    @property
    def n(self) -> int:
        """How many people."""
        return len(self.birth)

    def ids(self) -> pa.Array:
        """The identity numbers as Arrow strings."""
        return _arrow(self.id_mat)

    def take(self, idx: np.ndarray) -> _People:
        """The people at positions idx (repeats allowed)."""
        idx = np.asarray(idx, dtype=np.int64)
        return _People(self.district[idx], self.birth[idx], self.male[idx], self.id_mat[idx],
                       self.name.take(pa.array(idx)), self.place,
                       None if self.old_number is None else self.old_number[idx])

    def area(self) -> np.ndarray:
        """The area codes of the identity numbers (where each was first issued)."""
        return (self.id_mat[:, :6].astype(np.int64) - 48) @ np.array([100000, 10000, 1000, 100, 10, 1])

    def ids_as_written(self, feed: str) -> pa.Array:
        """The identity numbers as a feed writes them: paper-born registers write the 15-digit
        first-generation number of the people who still hold one."""
        ids = self.ids()
        if feed not in OLD_NUMBER_FEEDS or self.old_number is None or not self.old_number.any():
            return ids
        old = np.concatenate([self.id_mat[:, :6], self.id_mat[:, 8:17]], axis=1)
        return pc.if_else(pa.array(self.old_number), _arrow(old).cast(ids.type), ids)

    def gender(self) -> pa.Array:
        """男 or 女, as the identity number's 17th digit says."""
        return _pick(("女", "男"), self.male.astype(np.int64))


def _ages(rng: np.random.Generator, n: int, profile: str) -> np.ndarray:
    """Ages in years (floats) for a population profile: city (many pensioners), dying, adult."""
    if profile == "city":
        old = rng.random(n) < 0.55
        young_age = 18 + 42 * rng.random(n)
        old_age = 60 + 40 * rng.beta(1.3, 2.5, n)
        return np.where(old, old_age, young_age)
    if profile == "dying":
        return np.minimum(30 + 70 * rng.beta(4, 1.5, n), 104.5)
    if profile == "adult":
        return 18 + 52 * rng.beta(2, 3, n)
    raise ValueError(f"unknown age profile {profile!r}")


def _names(rng: np.random.Generator, male: np.ndarray, extra: np.random.Generator | None = None) -> pa.Array:
    """Chinese names: a surname by frequency and one or two given characters fitting the gender.

    With ``extra`` (a stream of its own, so ``rng`` draws what it always drew): MINORITY_SHARE of
    the names are transliterated names with a middle dot (U+00B7: 买买提·艾力), and RARE_NAME_SHARE
    of the others end with a character outside GB 2312 (堃, 喆, 𠮷, ...).
    """
    n = len(male)
    surname = _pick([s[0] for s in SURNAMES], rng.choice(len(SURNAMES), n, p=_SURNAME_P))
    g1m = rng.integers(0, len(GIVEN_MALE), n)
    g1f = rng.integers(0, len(GIVEN_FEMALE), n)
    g2m = rng.integers(0, len(GIVEN_MALE), n)
    g2f = rng.integers(0, len(GIVEN_FEMALE), n)
    pool = list(GIVEN_FEMALE) + list(GIVEN_MALE)
    off = len(GIVEN_FEMALE)
    first = _pick(pool, np.where(male, g1m + off, g1f))
    second = _pick([*pool, ""], np.where(rng.random(n) < 0.35, len(pool), np.where(male, g2m + off, g2f)))
    names = _join(surname, first, second)
    if extra is None:
        return names
    u = extra.random(n)
    minority = u < MINORITY_SHARE
    rare = (u >= MINORITY_SHARE) & (u < MINORITY_SHARE + RARE_NAME_SHARE)
    given = np.where(male, extra.integers(0, len(MINORITY_GIVEN_MALE), n),
                     len(MINORITY_GIVEN_MALE) + extra.integers(0, len(MINORITY_GIVEN_FEMALE), n))
    dotted = _join(_pick([*MINORITY_GIVEN_MALE, *MINORITY_GIVEN_FEMALE], given), pa.scalar("\u00b7"),
                   _pick(MINORITY_FATHER, extra.integers(0, len(MINORITY_FATHER), n)))
    with_rare = _join(surname, first, _pick(RARE_GIVEN, extra.integers(0, len(RARE_GIVEN), n)))
    return pc.if_else(pa.array(minority), dotted, pc.if_else(pa.array(rare), with_rare, names))


def _issue_years(birth: np.ndarray) -> np.ndarray:
    """The year each number was issued: the birth year, or FIRST_ISSUE_YEAR for people born before."""
    return np.maximum(civil_from_days(birth)[0], FIRST_ISSUE_YEAR)


def _area_codes(extra: np.random.Generator, place: _Place, district: np.ndarray, birth: np.ndarray,
                non_local: float) -> np.ndarray:
    """The area code on each resident's number: a code in use where and when it was issued.

    ``non_local`` of them were issued in another province (a county drawn from the national table);
    the others in the city: their district's code, a code it had before (FORMER_CODE_SHARE of them,
    where one was in use then), or, where neither was in use yet (钱塘区 dates from 2021), the code
    of another part of the city in use then.
    """
    n = len(district)
    year = _issue_years(birth)[:, None]

    def in_use(codes: np.ndarray) -> np.ndarray:
        safe = np.where(codes < 0, 0, codes)
        return (codes >= 0) & (place.first[safe] <= year) & (year <= place.last[safe])

    own = place.own_codes[district]  # n x (1 + former codes)
    own_ok = in_use(own)
    former_ok = own_ok.copy()
    former_ok[:, 0] = False
    has_former = former_ok.any(axis=1)
    picked_former = own[np.arange(n), np.argmax(former_ok, axis=1)]
    draws = (extra.random((n, 8)) * place.other_counts[district][:, None]).astype(np.int64)
    others = place.other_codes[district[:, None], draws]
    others_ok = in_use(others)
    picked_other = np.where(others_ok.any(axis=1), others[np.arange(n), np.argmax(others_ok, axis=1)], place.oldest)
    use_former = has_former & ((extra.random(n) < FORMER_CODE_SHARE) | ~own_ok[:, 0])
    out = np.where(use_former, picked_former, np.where(own_ok[:, 0], own[:, 0], picked_other))
    # non-local: counties of every province, drawn until one was in use in the year of issue
    away = np.flatnonzero(extra.random(n) < non_local)
    if len(away):
        tries = place.national[extra.integers(0, len(place.national), (len(away), 12))]
        ok = (place.first[tries] <= year[away]) & (year[away] <= place.last[tries])
        chosen = tries[np.arange(len(away)), np.argmax(ok, axis=1)]
        out[away] = np.where(ok.any(axis=1), chosen, out[away])
    return out


def _make_people(rng: np.random.Generator, n: int, as_of_days: int, profile: str, unique: bool, *,
                 place: _Place, extra: np.random.Generator, non_local: float = NON_LOCAL_SHARE) -> _People:
    """n residents of the city with valid identity numbers (unique ones when asked).

    ``extra``: the stream the population's newer traits are drawn from (numbers first issued
    elsewhere or under former codes, minority and rare-character names, 15-digit numbers still in
    paper registers), so ``rng`` draws what it always drew.
    """
    district = rng.choice(len(place.codes), n, p=place.weights)
    age = _ages(rng, n, profile)
    birth = as_of_days - np.ceil(age * 365.2425).astype(np.int64)
    male = rng.random(n) < 0.5
    seq = rng.integers(0, 500, n) * 2 + male
    area = _area_codes(extra, place, district, birth, non_local)
    if unique:
        for _ in range(100):
            key = (area * 100_000 + (birth + 40_000)) * 1000 + seq
            order = np.argsort(key, kind="stable")
            sorted_key = key[order]
            dup = np.zeros(n, dtype=bool)
            dup[order[1:][sorted_key[1:] == sorted_key[:-1]]] = True
            if not dup.any():
                break
            seq[dup] = extra.integers(0, 500, int(dup.sum())) * 2 + male[dup]  # extra: rng draws the same whatever the codes
        else:  # pragma: no cover - needs more people than area codes x days x sequences
            raise ValueError("could not draw unique identity numbers")
    id_mat = make_id_matrix(area, birth.astype("datetime64[D]"), seq)
    old_number = (birth < _days(OLD_NUMBER_BORN_BEFORE)) & (extra.random(n) < OLD_NUMBER_SHARE)
    return _People(district, birth, male, id_mat, _names(rng, male, extra), place, old_number)


# --- feed builders (shared by generate_city and generate_feed) ---------------------------------
# Each takes the people the rows are about and returns (frame, pos): pos[i] is the person of row i.
# Rows come ordered by (incremental column, key); keys are unique from key_start on.


@dataclass
class _Rows:
    """One feed's rows and, for each row, the position of its person in the people given."""

    frame: pd.DataFrame
    pos: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def _past_days(rng: np.random.Generator, as_of_days: int, n: int) -> np.ndarray:
    """Days uniformly in the 365 days before as_of."""
    return as_of_days - rng.integers(1, 366, n)


def _civil_rows(rng: np.random.Generator, ppl: _People, as_of_days: int, key_start: int,
                death: np.ndarray | None = None) -> _Rows:
    """Cremation records: cremated 1-7 days after death, reported 0-3 days after cremation."""
    n = ppl.n
    if death is None:
        reported_day = _past_days(rng, as_of_days, n)
        cremation = reported_day - rng.integers(0, 4, n)
        death = cremation - rng.integers(1, 8, n)
    else:
        cremation = death + rng.integers(1, 8, n)
        reported_day = cremation + rng.integers(0, 4, n)
    reported = _local_seconds(rng, reported_day)
    no_cremation_date = rng.random(n) < 0.02
    no_home = rng.random(n) < 0.03
    pos = np.flatnonzero(reported < as_of_days * _DAY)
    pos = pos[np.argsort(reported[pos], kind="stable")]
    p = ppl.take(pos)
    homes = _pick(p.place.funeral_homes, p.district)
    frame = _frame("civil_affairs.deaths", {
        "record_id": _keys("MZ3301", key_start, len(pos), 10),
        "id_number": p.ids_as_written("civil_affairs.deaths"),
        "name": p.name,
        "gender": p.gender(),
        "death_date": _date_text(death[pos]),
        "cremation_date": _with_nulls(_date_text(cremation[pos]), no_cremation_date[pos]),
        "funeral_home": _with_nulls(homes, no_home[pos]),
        "reported_at": _time_text(reported[pos]),
    })
    return _Rows(frame, pos, {"death": death[pos], **_old_numbers("civil_affairs.deaths", p)})


def _old_numbers(feed: str, p: _People) -> dict[str, np.ndarray]:
    """The rows a feed writes with a 15-digit number (``id15``), for the builders' extras."""
    if feed in OLD_NUMBER_FEEDS and p.old_number is not None:
        return {"id15": p.old_number.copy()}
    return {}


def _police_rows(rng: np.random.Generator, ppl: _People, as_of_days: int, key_start: int,
                 death: np.ndarray | None = None, recorded_death: np.ndarray | None = None) -> _Rows:
    """Household registrations cancelled for death: cancelled 3-60 days after, updated 0-2 days later."""
    n = ppl.n
    if death is None:
        updated_day = _past_days(rng, as_of_days, n)
        cancelled = updated_day - rng.integers(0, 3, n)
        death = cancelled - rng.integers(3, 61, n)
    else:
        cancelled = death + rng.integers(3, 61, n)
        updated_day = cancelled + rng.integers(0, 3, n)
    recorded = death if recorded_death is None else recorded_death
    updated = _local_seconds(rng, updated_day)
    station = ppl.district * 3 + rng.integers(0, 3, n)
    no_station = rng.random(n) < 0.02
    pos = np.flatnonzero(updated < as_of_days * _DAY)
    pos = pos[np.argsort(updated[pos], kind="stable")]
    p = ppl.take(pos)
    frame = _frame("police.deaths", {
        "cancellation_id": _keys("HKZX3301", key_start, len(pos), 10),
        "id_number": p.ids(),
        "name": p.name,
        "gender": p.gender(),
        "birth_date": _date_text(p.birth),
        "death_date": _date_text(recorded[pos]),
        "cancelled_on": _date_text(cancelled[pos]),
        "police_station": _with_nulls(_pick(ppl.place.stations, station[pos]), no_station[pos]),
        "updated_at": _time_text(updated[pos]),
    })
    return _Rows(frame, pos, {"death": recorded[pos]})


def _religious_rows(rng: np.random.Generator, ppl: _People, as_of_days: int, key_start: int,
                    death: np.ndarray | None = None, recorded_death: np.ndarray | None = None) -> _Rows:
    """Deaths registered by religious venues, 0-20 days after the death."""
    n = ppl.n
    if death is None:
        registered = _past_days(rng, as_of_days, n)
        death = registered - rng.integers(0, 21, n)
    else:
        registered = death + rng.integers(0, 21, n)
    recorded = death if recorded_death is None else recorded_death
    no_venue = rng.random(n) < 0.05
    venues = ppl.place.venues
    venue = rng.integers(0, len(venues), n)
    pos = np.flatnonzero(registered < as_of_days)
    pos = pos[np.argsort(registered[pos], kind="stable")]
    p = ppl.take(pos)
    frame = _frame("religious_affairs.deaths", {
        "record_id": _keys("ZJ3301", key_start, len(pos), 10),
        "id_number": p.ids_as_written("religious_affairs.deaths"),
        "name": p.name,
        "gender": p.gender(),
        "death_date": _date_text(recorded[pos]),
        "venue": _with_nulls(_pick(venues, venue[pos]), no_venue[pos]),
        "registered_on": _date_text(registered[pos]),
    })
    return _Rows(frame, pos, {"death": recorded[pos], **_old_numbers("religious_affairs.deaths", p)})


def _hospital_rows(rng: np.random.Generator, ppl: _People, as_of_days: int, key_start: int,
                   death: np.ndarray | None = None) -> _Rows:
    """Hospital death notifications: certified the day of death or the next, notified 0-3 days later."""
    n = ppl.n
    if death is None:
        notified_day = _past_days(rng, as_of_days, n)
        certified = notified_day - rng.integers(0, 4, n)
        death = certified - rng.integers(0, 2, n)
    else:
        certified = death + rng.integers(0, 2, n)
        notified_day = certified + rng.integers(0, 4, n)
    notified = _local_seconds(rng, notified_day, 7, 23)
    hospital = ppl.district * 3 + rng.integers(0, 3, n)  # a hospital of the district
    cause = rng.choice(len(CAUSES), n, p=_CAUSE_P)
    no_gender = rng.random(n) < 0.03
    pos = np.flatnonzero(notified < as_of_days * _DAY)
    pos = pos[np.argsort(notified[pos], kind="stable")]
    p = ppl.take(pos)
    frame = _frame(HOSPITAL_DEATHS, {
        "notice_id": _keys("WJ3301", key_start, len(pos), 10),
        "id_number": p.ids(),
        "name": p.name,
        "gender": _with_nulls(p.gender(), no_gender[pos]),
        "death_date": _date_text(death[pos]),
        "certified_on": _date_text(certified[pos]),
        "hospital_code": _pick(ppl.place.hospitals, hospital[pos]),
        "cause_code": _pick([c[0] for c in CAUSES], cause[pos]),
        "notified_at": _time_text(notified[pos]),
    })
    return _Rows(frame, pos, {"death": death[pos]})


def _income_tax(wage: np.ndarray) -> np.ndarray:
    """A month's individual income tax withheld on a wage: after social insurance (10.5 %) and the
    5,000 yuan deduction, by the monthly brackets."""
    taxable = np.maximum(wage * 0.895 - 5000, 0)
    bounds = np.array([3000, 12000, 25000, 35000, 55000, 80000])
    rate = np.array([0.03, 0.10, 0.20, 0.25, 0.30, 0.35, 0.45])
    quick = np.array([0, 210, 1410, 2660, 4410, 7160, 15160])
    b = np.searchsorted(bounds, taxable, "left")
    return np.round(np.maximum(taxable * rate[b] - quick[b], 0), 2)


def _wage_rows(rng: np.random.Generator, ppl: _People, as_of_days: int, key_start: int,
               months: np.ndarray | None = None, employers: pa.Array | None = None,
               base: np.ndarray | None = None) -> _Rows:
    """Wage declarations, one per (person, month) given: the wage is the contribution base (``base``)
    or a little above it, the tax withheld on it, filed by the employer in the first half of the next
    month (declarations not yet filed on as_of are not there)."""
    n = ppl.n
    if months is None:
        months = _month_of(np.array([as_of_days]))[0] - rng.integers(2, 14, n)  # all filed before as_of
    if employers is None:
        body = rng.integers(0, 100_000_000, n)
        employers = _arrow(make_uscc_matrix(np.ones(n, dtype=np.int64), ppl.place.codes[ppl.district], body))
    if base is None:
        base = np.clip(rng.lognormal(np.log(7000), 0.45, n), 2490, 36000)
    months = np.asarray(months, dtype=np.int64)
    wage = np.round(base * np.where(rng.random(n) < 0.6, 1.0, rng.uniform(1.0, 1.25, n)), 2)
    tax = _income_tax(wage)
    next_month = days_from_civil((months + 1) // 12, (months + 1) % 12 + 1, np.ones_like(months))
    declared = _local_seconds(rng, next_month + rng.integers(0, 15, n), 8, 22)
    pos = np.flatnonzero(declared < as_of_days * _DAY)
    pos = pos[np.argsort(declared[pos], kind="stable")]
    p = ppl.take(pos)
    frame = _frame(WAGE_INCOME, {
        "declaration_id": _keys("SB3301", key_start, len(pos), 12),
        "id_number": p.ids(),
        "name": p.name,
        "employer_uscc": employers.take(pa.array(pos)),
        "income_month": _month_text(months[pos]),
        "wage_amount": pd.Series(wage[pos], dtype="float64"),
        "tax_amount": pd.Series(tax[pos], dtype="float64"),
        "declared_at": _time_text(declared[pos]),
    })
    return _Rows(frame, pos)


def _custody_draw(rng: np.random.Generator, n: int, as_of_days: int,
                  status: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Custody status index, sentence start and end, and admission day for n prisoners."""
    if status is None:
        status = rng.choice(len(CUSTODY), n, p=[0.70, 0.10, 0.08, 0.12])
    years = 1 + np.minimum(rng.exponential(3.0, n), 14)
    length = np.round(years * 365.25).astype(np.int64)
    released = status == 3
    start_free = as_of_days - rng.integers(30, 3000, n)
    end_free = np.maximum(start_free + length, as_of_days + rng.integers(30, 400, n))
    end_released = as_of_days - rng.integers(1, 300, n)
    start = np.where(released, end_released - length, start_free)
    end = np.where(released, end_released, end_free)
    admitted = np.minimum(start + rng.integers(0, 61, n), as_of_days - 1)
    admitted = np.minimum(admitted, end - 1)
    return status, start, end, admitted


def _justice_rows(rng: np.random.Generator, ppl: _People, as_of_days: int, key_start: int,
                  custody: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None) -> _Rows:
    """The prisoners list: sentence period, admission day, custody status and prison."""
    n = ppl.n
    status, start, end, admitted = custody if custody is not None else _custody_draw(rng, n, as_of_days)
    prisons = ppl.place.prisons
    prison = _pick([*prisons, ppl.place.womens_prison],
                   np.where(ppl.male, rng.integers(0, len(prisons), n), len(prisons)))
    no_prison = rng.random(n) < 0.02
    pos = np.arange(n)
    frame = _frame("justice.prisoners", {
        "prisoner_id": _keys("ZF3301", key_start, n, 10),
        "id_number": ppl.ids(),
        "name": ppl.name,
        "admitted_on": _date_text(admitted),
        "sentence_start": _date_text(start),
        "sentence_end": _date_text(end),
        "custody_status": _pick(CUSTODY, status),
        "prison": _with_nulls(prison, no_prison),
    })
    return _Rows(frame, pos, {"status": status, "admitted": admitted})


def _bill_rows(rng: np.random.Generator, ppl: _People, as_of_days: int, key_start: int,
               last_day: np.ndarray | None = None, spread: np.random.Generator | None = None,
               visit_days: np.ndarray | None = None) -> _Rows:
    """Settled bills, one per person given (repeat people for more): outpatient or inpatient.

    last_day (per person): no admission after it (the day of death), rows past it are dropped.
    Totals are the diagnosis's typical cost (3 % of it for an outpatient visit) times
    uniform(1 - BILL_SPREAD, 1 + BILL_SPREAD), plus 20: no bill is far from its peers' mean.
    spread: the generator that draws that factor (generate_city's own stream for its new draws;
    ``rng`` then still draws what it drew before, so the other columns stay as they were).
    visit_days (per person): outpatient visits admitted on these days, settled 0-5 days later.
    """
    n = ppl.n
    settled_day = _past_days(rng, as_of_days, n)
    inpatient = rng.random(n) < 0.35
    stay = np.where(inpatient, 1 + np.minimum(rng.exponential(7, n), 60).astype(np.int64), 0)
    lag = rng.integers(0, 6, n)
    discharged = settled_day - lag
    if visit_days is not None:
        inpatient[:] = False
        stay[:] = 0
        discharged = np.asarray(visit_days, dtype=np.int64)
        settled_day = np.minimum(discharged + lag, as_of_days - 1)
    admitted = discharged - stay
    diag = rng.choice(len(DIAGNOSES), n, p=_DIAG_P)
    base = np.where(inpatient, _DIAG_COST[diag], _DIAG_COST[diag] * 0.03)
    if spread is None:
        factor = rng.uniform(1 - BILL_SPREAD, 1 + BILL_SPREAD, n)
    else:
        rng.lognormal(0.0, 0.5, n)  # the draw the main stream always made here
        factor = spread.uniform(1 - BILL_SPREAD, 1 + BILL_SPREAD, n)
    total = np.round(base * factor + 20, 2)
    ratio = np.where(inpatient, rng.uniform(0.55, 0.9, n), rng.uniform(0.3, 0.8, n))
    fund = np.minimum(np.round(total * ratio, 2), total)
    settled = _local_seconds(rng, settled_day, 7, 21)
    hospitals = ppl.place.hospitals
    hospital = rng.integers(0, len(hospitals), n)
    keep = np.ones(n, dtype=bool) if last_day is None else admitted <= last_day
    pos = np.flatnonzero(keep)
    pos = pos[np.argsort(settled[pos], kind="stable")]
    p = ppl.take(pos)
    dis = discharged[pos].astype("datetime64[D]").astype(object)
    dis[~inpatient[pos]] = None  # outpatient visits have no discharge
    settled_at = pd.Series(pd.to_datetime(settled[pos], unit="s")).dt.tz_localize("Asia/Shanghai")
    frame = _frame("medical_insurance.bills", {
        "bill_id": _keys("YB3301", key_start, len(pos), 12),
        "id_number": p.ids(),
        "patient_name": p.name,
        "hospital_code": _pick(hospitals, hospital[pos]),
        "diagnosis_code": _pick([d[0] for d in DIAGNOSES], diag[pos]),
        "admitted_on": pd.Series(admitted[pos].astype("datetime64[D]").astype(object), dtype=object),
        "discharged_on": pd.Series(dis, dtype=object),
        "total_amount": pd.Series(total[pos], dtype="float64"),
        "fund_amount": pd.Series(fund[pos], dtype="float64"),
        "settled_at": settled_at,
    })
    return _Rows(frame, pos)


def _business_rows(rng: np.random.Generator, ppl: _People, as_of_days: int, key_start: int) -> _Rows:
    """Registered businesses, one per legal representative given, with valid credit codes."""
    n = ppl.n
    kind = rng.choice([1, 2, 3], n, p=[0.70, 0.25, 0.05])
    place = ppl.place
    district = np.where(rng.random(n) < 0.7, ppl.district, rng.choice(len(place.codes), n, p=place.weights))
    # Organization codes: distinct 8-digit bodies (key_start keeps chunks apart), shuffled.
    body = (np.arange(key_start, key_start + n, dtype=np.int64) * 7_919 + 10_000_019) % 100_000_000
    uscc = make_uscc_matrix(kind, place.codes[district], body)
    w1 = rng.integers(0, len(BUSINESS_WORDS), n)
    w2 = rng.integers(0, len(BUSINESS_WORDS), n)
    brand = _join(_pick(BUSINESS_WORDS, w1), _pick(BUSINESS_WORDS, w2))
    dname = _pick(place.district_names, district)
    company = _join(pa.scalar(place.short), brand, _pick(INDUSTRIES, rng.integers(0, len(INDUSTRIES), n)),
                    pa.scalar("有限公司"))
    shop = _join(pa.scalar(place.name), dname, brand, _pick(SHOPS, rng.integers(0, len(SHOPS), n)))
    coop = _join(pa.scalar(place.name), dname, brand, _pick(CROPS, rng.integers(0, len(CROPS), n)),
                 pa.scalar("专业合作社"))
    name = pc.if_else(pa.array(kind == 1), company, pc.if_else(pa.array(kind == 2), shop, coop))
    status = rng.choice(len(BUSINESS_STATUS), n, p=[0.55, 0.25, 0.13, 0.07])
    established = rng.integers(_days(date(1995, 1, 1)), as_of_days - 400, n)
    changed_day = _past_days(rng, as_of_days, n)
    changed = _local_seconds(rng, changed_day, 8, 18)
    deregistered = np.maximum(changed_day - rng.integers(0, 11, n), established + 1)
    # Credit codes are not sequential: ties in changed_at are broken by the code. Its first 16
    # characters are digits and already unique (they hold the organization code's body).
    leading = np.zeros(n, dtype=np.int64)
    for k in range(16):
        leading = leading * 10 + (uscc[:, k] - 48)
    order = np.argsort(changed, kind="stable")
    tied = np.flatnonzero(changed[order][1:] == changed[order][:-1])
    if len(tied):
        order = np.lexsort((leading, changed))
    frame = _frame("market_regulation.businesses", {
        "uscc": _arrow(uscc[order]),
        "name": name.take(pa.array(order)),
        "legal_rep_id_number": _arrow(ppl.id_mat[order]),
        "legal_rep_name": ppl.name.take(pa.array(order)),
        "status": _pick(BUSINESS_STATUS, status[order]),
        "established_on": _date_text(established[order]),
        "deregistered_on": _with_nulls(_date_text(deregistered[order]), status[order] != 2),
        "changed_at": _time_text(changed[order]),
    })
    return _Rows(frame, order)


# --- messiness --------------------------------------------------------------------------------

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


def _name_forms(rng: np.random.Generator, feed: str, frame: pd.DataFrame) -> None:
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
    frame[column] = _str(arr)


def _first_generation(feed: str, frame: pd.DataFrame, rows: np.ndarray | None, free: np.ndarray) -> list[dict]:
    """The messy records of the rows a feed writes with a 15-digit number (taken out of ``free``: no
    other messiness or mistake goes on top of them)."""
    if rows is None or not rows.any():
        return []
    at = np.flatnonzero(rows)
    free[at] = False
    key, column = _SPECS[feed].key, _SPECS[feed].id_col
    values = frame[column].to_numpy(dtype=object)[at]
    keys = frame[key].to_numpy(dtype=object)[at]
    return [{"feed": feed, "key": k, "column": column, "kind": OLD_NUMBER_KIND, "value": v, "clean": upgrade_id15(v)}
            for k, v in zip(keys.tolist(), values.tolist())]


def _messy_value(kind: str, value: str, rng: np.random.Generator) -> str:
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


def _mess_up(rng: np.random.Generator, feed: str, frame: pd.DataFrame, free: np.ndarray,
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
        messy = [_messy_value(kind, v, rng) for v in clean]
        frame.iloc[rows, col_idx] = messy
        keys = frame.iloc[rows, frame.columns.get_loc(key_col)].tolist()
        changes.extend({"feed": feed, "key": k, "column": column, "kind": kind, "value": m, "clean": c}
                       for k, m, c in zip(keys, messy, clean))
    return changes


# --- invalid rows -----------------------------------------------------------------------------
# Agency mistakes that no normalisation repairs: the contract quarantines every such row. The
# generator knows each feed's contract well enough (_SPECS) to name every rule a planted row breaks;
# tests/contracts/test_contract_city.py holds that knowledge against the contracts' validator.

#: Share of a feed's rows planted invalid (at least one row from INVALID_MIN_ROWS rows on).
INVALID_RATE = 0.01
INVALID_MIN_ROWS = 10
#: Kinds that change the identity-number column: recorded in truths["messy"] (value and clean) and
#: truths["invalid_ids"] as well as in truths["invalid"].
UNREPAIRABLE = ("invalid_check", "excel_mangled", "id_old_15_digit", "id_unknown_area", "id_missing")

_KEY_MISSING = ("a row without its key cannot be named, paged (market keyset) or deduplicated: the "
                "connectors keep one row per key (connectors/base.py deduplicate), so keyless rows collapse")
_KEY_REPEATED = ("the connectors keep one row per key before the contract sees a batch (replayed pages, "
                 "justice's overlapping snapshots; connectors/base.py deduplicate), so a repeated key "
                 "never reaches the check")
_INCREMENTAL = ("the agency windows and pages by this column (the REST index parses it, the database "
                "view filters on it): a row without a readable value is never served")
_COMPARED = ("the sandbox's database tests (tests/sandbox/test_agencies.py _bills_equal) compare bill ids and "
             "totals with ==, which a missing value never passes; the database carries NULL, so plant it "
             "once that comparison treats missing values as equal")
_TYPED_DATE = ("the settlement database types the column (date; the generated frame holds date "
               "objects): a value that is not a date cannot be stored")
#: Row rules no planted row breaks, per feed, and why (every other row rule is planted).
NOT_PLANTED: dict[str, dict[str, str]] = {
    "civil_affairs.deaths": {
        "record_id.required": _KEY_MISSING, "record_id.unique": _KEY_REPEATED,
        "reported_at.required": _INCREMENTAL, "reported_at.timestamp": _INCREMENTAL,
    },
    "religious_affairs.deaths": {
        "record_id.required": _KEY_MISSING, "record_id.unique": _KEY_REPEATED,
    },
    "police.deaths": {
        "cancellation_id.required": _KEY_MISSING, "cancellation_id.unique": _KEY_REPEATED,
        "updated_at.required": _INCREMENTAL, "updated_at.timestamp": _INCREMENTAL,
    },
    "justice.prisoners": {
        "prisoner_id.required": _KEY_MISSING, "prisoner_id.unique": _KEY_REPEATED,
    },
    "medical_insurance.bills": {
        "bill_id.required": _KEY_MISSING,
        "bill_id.unique": _KEY_REPEATED + "; setl_id is also the table's PRIMARY KEY",
        "settled_at.required": _INCREMENTAL, "settled_at.timestamp": _INCREMENTAL,
        "admitted_on.date": _TYPED_DATE, "discharged_on.date": _TYPED_DATE,
        "id_number.required": _COMPARED, "total_amount.required": _COMPARED,
    },
    "market_regulation.businesses": {
        "uscc.required": _KEY_MISSING, "uscc.unique": _KEY_REPEATED,
        "changed_at.required": _INCREMENTAL, "changed_at.timestamp": _INCREMENTAL,
    },
    HOSPITAL_DEATHS: {
        "notice_id.required": _KEY_MISSING, "notice_id.unique": _KEY_REPEATED,
        "notified_at.required": _INCREMENTAL, "notified_at.timestamp": _INCREMENTAL,
    },
    WAGE_INCOME: {
        "declaration_id.required": _KEY_MISSING,
        "declaration_id.unique": _KEY_REPEATED + "; sbxh is also the table's PRIMARY KEY",
        "declared_at.required": _INCREMENTAL, "declared_at.timestamp": _INCREMENTAL,
    },
}


@dataclass(frozen=True)
class _Spec:
    """What the generator knows of a feed's contract: enough to plant mistakes and name the rules they break."""

    key: str
    key_digits: int  # digits after the key's prefix; 0: a credit code (its own kinds)
    id_col: str
    required: tuple[str, ...]  # required columns besides key, identity number and incremental column
    lengths: dict[str, tuple[int, str]]  # column -> (maximum length, the note an over-long value carries)
    dates: dict[str, tuple[str, bool]]  # date column -> (earliest day allowed, not after as_of)
    orders: tuple[tuple[str, str, str], ...] = ()  # (earlier column, later column, rule)
    swaps: tuple[tuple[str, str], ...] = ()  # date pairs a clerk swaps
    id_birth: tuple[tuple[str, str], ...] = ()  # (date column, rule): not before the id's birth date
    birth_match: tuple[tuple[str, str], ...] = ()  # (date column, rule): equals the id's birth date
    before_birth: str | None = None  # the death date a century typo can put before the birth
    enums: dict[str, str] = field(default_factory=dict)  # column -> a value outside its enumeration
    guard: dict[str, str] = field(default_factory=dict)  # column -> a value whose rows keep it (others depend on it)
    codes: tuple[str, ...] = ()  # coded columns (a pattern) a clerk mistypes
    ordered_by: str | None = None  # text incremental column: rows tied on it keep their keys' order
    typed: bool = False  # dates as date objects and amounts as numbers (the database feeds)
    amounts: tuple[str, str, str] = ("total_amount", "fund_amount", "fund_share_within_total")  # typed: (total,
    # the share of it that may not exceed it, the rule that says so)
    usccs: tuple[str, ...] = ()  # credit-code columns besides the key (a check character or the last one wrong)
    months: tuple[str, ...] = ()  # YYYY-MM columns a clerk writes without the hyphen
    past_years: int = 1000  # how far back a year typo goes (2026 -> 1026; typed dates 2026 -> 1926)
    left_out: tuple[tuple[str, str], ...] = ()  # (kind, column) not planted in this feed (see NOT_PLANTED)
    upgrade15: bool = False  # the contract upgrades 15-digit numbers (a 15-digit number is no mistake here)


_PERSON_NOTE = "家属代为申报，身份证件遗失，姓名以户籍登记为准；"
_PLACE_NOTE = "地址：杭州市西湖区文三路一百号附三号，联系电话：0571-88888888，工作时间周一至周五；"
_FIRM_NOTE = "经营范围：技术开发、技术服务、技术咨询、成果转让、软件销售、信息系统集成服务；"
_NAME = (50, _PERSON_NOTE)
_PLACE = (100, _PLACE_NOTE)

_SPECS: dict[str, _Spec] = {
    "civil_affairs.deaths": _Spec(
        key="record_id", key_digits=10, id_col="id_number", ordered_by="reported_at", upgrade15=True,
        required=("name", "death_date"),
        lengths={"name": _NAME, "funeral_home": _PLACE},
        enums={"gender": "未知"},
        dates={"death_date": ("1900-01-01", True), "cremation_date": ("1900-01-01", True)},
        orders=(("death_date", "cremation_date", "cremation_not_before_death"),),
        swaps=(("death_date", "cremation_date"),),
        id_birth=(("death_date", "death_not_before_birth"),),
        before_birth="death_date",
    ),
    "religious_affairs.deaths": _Spec(
        key="record_id", key_digits=10, id_col="id_number", upgrade15=True,
        required=("name", "death_date", "registered_on"),
        lengths={"name": _NAME, "venue": _PLACE},
        enums={"gender": "未知"},
        dates={"death_date": ("1900-01-01", True), "registered_on": ("1900-01-01", True)},
        orders=(("death_date", "registered_on", "registration_not_before_death"),),
        swaps=(("death_date", "registered_on"),),
        id_birth=(("death_date", "death_not_before_birth"),),
        before_birth="death_date",
    ),
    "police.deaths": _Spec(
        key="cancellation_id", key_digits=10, id_col="id_number", ordered_by="updated_at",
        required=("name", "birth_date", "death_date", "cancelled_on"),
        lengths={"name": _NAME, "police_station": _PLACE},
        enums={"gender": "未知"},
        dates={"birth_date": ("1850-01-01", False), "death_date": ("1900-01-01", True),
               "cancelled_on": ("1900-01-01", True)},
        orders=(("birth_date", "death_date", "death_not_before_birth"),
                ("death_date", "cancelled_on", "cancellation_not_before_death")),
        swaps=(("death_date", "cancelled_on"),),
        birth_match=(("birth_date", "birth_date_matches_id"),),
        before_birth="death_date",
    ),
    "justice.prisoners": _Spec(
        key="prisoner_id", key_digits=10, id_col="id_number",
        required=("name", "admitted_on", "sentence_start", "sentence_end", "custody_status"),
        lengths={"name": _NAME, "prison": _PLACE},
        enums={"custody_status": "监外执行"},
        dates={"admitted_on": ("1950-01-01", True), "sentence_start": ("1950-01-01", True),
               "sentence_end": ("1950-01-01", False)},
        orders=(("sentence_start", "sentence_end", "sentence_end_not_before_start"),),
        swaps=(("sentence_start", "sentence_end"),),
    ),
    "medical_insurance.bills": _Spec(
        key="bill_id", key_digits=12, id_col="id_number",
        required=("patient_name", "hospital_code", "diagnosis_code", "admitted_on", "total_amount", "fund_amount"),
        lengths={"patient_name": _NAME},
        codes=("hospital_code", "diagnosis_code"),
        dates={"admitted_on": ("2000-01-01", True), "discharged_on": ("2000-01-01", True)},
        orders=(("admitted_on", "discharged_on", "discharge_not_before_admission"),),
        swaps=(("admitted_on", "discharged_on"),),
        typed=True, past_years=100,
        left_out=(("id_missing", "id_number"), ("missing", "total_amount")),
    ),
    "market_regulation.businesses": _Spec(
        key="uscc", key_digits=0, id_col="legal_rep_id_number",
        required=("name", "legal_rep_name", "status", "established_on"),
        lengths={"name": (200, _FIRM_NOTE), "legal_rep_name": _NAME},
        enums={"status": "迁出"},
        guard={"status": "注销"},  # a deregistered business keeps its status: its deregistration date depends on it
        dates={"established_on": ("1949-10-01", True), "deregistered_on": ("1949-10-01", True)},
        orders=(("established_on", "deregistered_on", "deregistration_not_before_establishment"),),
        swaps=(("established_on", "deregistered_on"),),
    ),
    HOSPITAL_DEATHS: _Spec(
        key="notice_id", key_digits=10, id_col="id_number", ordered_by="notified_at",
        required=("name", "death_date", "certified_on", "hospital_code", "cause_code"),
        lengths={"name": _NAME},
        enums={"gender": "未知"},
        codes=("hospital_code", "cause_code"),
        dates={"death_date": ("1900-01-01", True), "certified_on": ("1900-01-01", True)},
        orders=(("death_date", "certified_on", "certificate_not_before_death"),),
        swaps=(("death_date", "certified_on"),),
        id_birth=(("death_date", "death_not_before_birth"),),
        before_birth="death_date",
    ),
    WAGE_INCOME: _Spec(
        key="declaration_id", key_digits=12, id_col="id_number", ordered_by="declared_at",
        required=("name", "employer_uscc", "income_month", "wage_amount", "tax_amount"),
        lengths={"name": _NAME},
        dates={},
        usccs=("employer_uscc",),
        months=("income_month",),
        typed=True, amounts=("wage_amount", "tax_amount", "tax_within_wage"),
    ),
}
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
    spec = _SPECS[feed]
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
        frame[column] = _str(pc.replace_with_mask(arr, pa.array(mask), pa.array(values, arr.type)))


def _to_days(values: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of clean ISO texts or date objects; NO_DAY where missing."""
    return np.array(["NaT" if v is None else v for v in values], dtype="datetime64[D]").astype(np.int64)


def _day_values(days: np.ndarray, typed: bool) -> np.ndarray:
    """Days as the feed writes them: ISO text, or date objects (typed); NO_DAY as None."""
    if typed:
        return np.where(days == NO_DAY, np.datetime64("NaT"), days.astype("datetime64[D]")).astype(object)
    text = np.asarray(_date_text(np.where(days == NO_DAY, 0, days)).to_pylist(), dtype=object)
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


def _eligible(kind: str, column: str, spec: _Spec, frame: pd.DataFrame, rows: np.ndarray,
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
        days = _to_days(values)
        y_as_of = civil_from_days(np.array([as_of_days]))[0][0]
        ok &= np.where(ok, _swapped_year(np.where(ok, days, 0)) > y_as_of, False)
    elif kind == "dates_swapped":
        earlier = next(e for e, later in spec.swaps if later == column)
        a, b = _to_days(_get(frame, earlier, rows)), _to_days(values)
        ok &= (a != NO_DAY) & (b != NO_DAY) & (a < b)
    elif kind == "death_before_birth":
        days = _to_days(values)
        born = _id_births(_get(frame, spec.id_col, rows))
        shifted = _shift_years(np.where(ok, days, 0), -100)
        ok &= (shifted < born) & (shifted >= _days(date.fromisoformat(spec.dates[column][0])))
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


def _plant_rows(rng: np.random.Generator, feed: str, spec: _Spec, frame: pd.DataFrame, kind: str, column: str,
                rows: np.ndarray, as_of_days: int) -> tuple[list[dict], list[dict], dict[str, list]]:
    """One kind of mistake in the given rows: (invalid records, messy records, {column: new values}).

    The frame is read, not changed: the caller writes the new values, all kinds at once.
    """
    n = len(rows)
    changed: dict[str, list] = {}
    days = {c: _to_days(_get(frame, c, rows)) for c in spec.dates}
    ids = _get(frame, spec.id_col, rows)
    born = _id_births(ids)
    id_valid = True
    static: list[str] = []
    values = _get(frame, column, rows)
    new: np.ndarray | list | None = None
    if kind == "key_malformed":
        k = spec.key_digits
        new = [v[:-k] + "-" + v[-k:] for v in values]
        static = [f"{column}.format"]
    elif kind == "uscc_check":
        picks = rng.integers(0, len(_USCC_CHARS) - 1, n)
        new = [v[:-1] + _USCC_CHARS.replace(v[-1], "")[p] for v, p in zip(values, picks.tolist())]
        static = [f"{column}.valid"]
    elif kind == "uscc_truncated":
        new = [v[:-1] for v in values]
        static = [f"{column}.format"]
    elif kind in ("invalid_check", "excel_mangled"):
        new = [_messy_value(kind, v, rng) for v in values]
        static = [f"{column}.valid"] if kind == "invalid_check" else [f"{column}.excel_mangled", f"{column}.format"]
        id_valid = False
    elif kind == "id_old_15_digit":
        new = [v[:6] + v[8:17] for v in values]
        static, id_valid = [f"{column}.format"], False
    elif kind == "id_unknown_area":
        area = UNKNOWN_AREA_CODES[rng.integers(0, len(UNKNOWN_AREA_CODES), n)]
        seq = np.array([int(v[14:17]) for v in values], dtype=np.int64)
        new = _arrow(make_id_matrix(area, born.astype("datetime64[D]"), seq)).to_pylist()
        static = [f"{column}.area_code"]
    elif kind in ("id_missing", "missing"):
        new = [None] * n
        static = [f"{column}.required"]
        id_valid = kind != "id_missing"
        if column in days:
            days[column] = np.full(n, NO_DAY, dtype=np.int64)
    elif kind == "too_long":
        maximum, note = spec.lengths[column]
        new = [_too_long(v, maximum, note) for v in values]
        static = [f"{column}.length"]
    elif kind == "not_allowed":
        new = [spec.enums[column]] * n
        static = [f"{column}.allowed_values"]
    elif kind == "code_malformed":
        if column == "hospital_code":
            new = ["h" + v[1:] for v in values]
        else:
            new = [v + "00" if "." in v else v + ".x00" for v in values]
        static = [f"{column}.format"]
    elif kind == "month_malformed":
        new = [v[:4] + v[5:7] for v in values]
        static = [f"{column}.format"]
    elif kind == "date_impossible":
        new = _impossible_dates(days[column])
        days[column] = np.full(n, NO_DAY, dtype=np.int64)
        static = [f"{column}.date"]
    elif kind in ("year_typo_past", "year_typo_future", "death_before_birth", "birth_date_lunar"):
        d = days[column]
        if kind == "year_typo_past":
            d = _shift_years(d, -spec.past_years)
        elif kind == "year_typo_future":
            d = _shift_years(d, _swapped_year(d) - civil_from_days(d)[0])
        elif kind == "death_before_birth":
            d = _shift_years(d, -100)
        else:
            d = d - rng.integers(15, 51, n)
        days[column] = d
        new = _day_values(d, spec.typed)
    elif kind == "dates_swapped":
        earlier = next(e for e, later in spec.swaps if later == column)
        days[earlier], days[column] = days[column], days[earlier]
        new = _day_values(days[column], spec.typed)
        changed[earlier] = list(_day_values(days[earlier], spec.typed))
    elif kind in ("negative_amounts", "fund_above_total", "amount_placeholder"):
        total_col, fund_col, _rule = spec.amounts
        total = np.array(_get(frame, total_col, rows), dtype=float)
        fund = np.array(_get(frame, fund_col, rows), dtype=float)
        if kind == "negative_amounts":
            total, fund = -total, -fund
        elif kind == "fund_above_total":
            fund = np.round(total * rng.uniform(1.05, 1.5, n), 2)
        else:
            total = np.full(n, AMOUNT_PLACEHOLDER)
        changed[total_col], changed[fund_col] = total.tolist(), fund.tolist()
    else:
        raise ValueError(f"unknown kind of invalid row {kind!r}")
    if new is not None:
        changed[column] = list(new)

    def now(c: str) -> list:
        """A column's values in these rows after the change."""
        return changed[c] if c in changed else _get(frame, c, rows).tolist()

    # the rules each row breaks: the kind's own, and every date and amount rule read from the new values
    broken = [set(static) for _ in range(n)]

    def mark(mask: np.ndarray, rule: str) -> None:
        for i in np.flatnonzero(mask):
            broken[i].add(rule)

    for c, (earliest, not_future) in spec.dates.items():
        d = days[c]
        has = d != NO_DAY
        mark(has & (d < _days(date.fromisoformat(earliest))), f"{c}.range")
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

    keys = now(spec.key)
    invalid = [{"feed": feed, "key": k, "kind": kind, "column": column, "rules": sorted(r)}
               for k, r in zip(keys, broken)]
    messy = []
    if kind in UNREPAIRABLE:
        messy = [{"feed": feed, "key": k, "column": column, "kind": kind, "value": v, "clean": c}
                 for k, v, c in zip(keys, now(column), values.tolist())]
    return invalid, messy, changed


def _plant_invalid(rng: np.random.Generator, feed: str, frame: pd.DataFrame, free: np.ndarray, as_of_days: int,
                   rate: float = INVALID_RATE) -> tuple[list[dict], list[dict]]:
    """Plant invalid rows in a feed, in place, only in rows still ``free`` (taken out of it).

    invalid_count(len(frame)) rows; the feed's kinds of mistakes are dealt round-robin in a seeded
    random order, so a large feed gets every kind and a small one some. Returns (invalid, messy):
    the truths["invalid"] records, and the truths["messy"] records of the identity-number kinds.
    """
    spec = _SPECS[feed]
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


# --- the city ---------------------------------------------------------------------------------

#: feeds added after the first six draw their rows, messiness and invalid rows in generate_city from
#: streams of their own (hospital deaths SeedSequence([seed, 100]), wage income [seed, 101]), so
#: that the first six stay as they were


def _no_rows(columns: tuple[str, ...]) -> pd.DataFrame:
    """An empty office table: text columns, and amount as float."""
    return pd.DataFrame({c: pd.Series(dtype="float64" if c == "amount" else "str") for c in columns})


@dataclass
class City:
    """A generated city: the office's data (benefit roll, contributions, employer subsidies), every
    agency's rows, and the truths planted in them."""

    seed: int
    people: int
    as_of: date
    roll: pd.DataFrame
    feeds: dict[str, pd.DataFrame]
    truths: dict
    contributions: pd.DataFrame = field(default_factory=lambda: _no_rows(CONTRIBUTION_COLUMNS))
    subsidies: pd.DataFrame = field(default_factory=lambda: _no_rows(SUBSIDY_COLUMNS))

    def write_truth(self, path: Path) -> None:
        """Write the truths as JSON (UTF-8, Chinese kept readable)."""
        Path(path).write_text(json.dumps(self.truths, ensure_ascii=False, indent=1), encoding="utf-8")


def _month_of(days: np.ndarray) -> np.ndarray:
    """Month numbers (year * 12 + month - 1) of days since 1970-01-01."""
    y, m, _d = civil_from_days(days)
    return y * 12 + m - 1


def _luhn_accounts(rng: np.random.Generator, n: int) -> np.ndarray:
    """19-digit bank card numbers (N x 19 uint8): a bank prefix, 14 random digits, a Luhn digit."""
    body = _fixed(n, (BANK_PREFIXES[rng.integers(0, len(BANK_PREFIXES), n)], 4),
                  (rng.integers(0, 10**7, n), 7), (rng.integers(0, 10**7, n), 7))
    digits = body.astype(np.int64) - 48
    total = np.zeros(n, dtype=np.int64)
    for i in range(18):
        d = digits[:, i]
        if (17 - i) % 2 == 0:  # from the right, every other digit starting with the last is doubled
            d = d * 2
            d = np.where(d > 9, d - 9, d)
        total += d
    out = np.empty((n, 19), dtype=np.uint8)
    out[:, :18] = body
    out[:, 18] = ((10 - total % 10) % 10).astype(np.uint8) + 48
    return out


def _count(n: int, rate: float, minimum: int) -> int:
    """How many of something to plant: rate of n, but at least minimum so small cities have examples."""
    return max(minimum, int(round(n * rate)))


def _sample(rng: np.random.Generator, pool: np.ndarray, k: int) -> np.ndarray:
    """Up to k distinct members of pool, sorted (none from an empty pool)."""
    k = min(k, len(pool))
    if k <= 0:
        return np.array([], dtype=np.int64)
    return np.sort(rng.choice(pool, k, replace=False)).astype(np.int64)


def _within(spans: np.ndarray) -> np.ndarray:
    """0, 1, ..., span - 1 for each span, one after the other."""
    spans = np.asarray(spans, dtype=np.int64)
    return np.arange(int(spans.sum()), dtype=np.int64) - np.repeat(np.cumsum(spans) - spans, spans)


def _benefit_amounts(rng: np.random.Generator, benefit: np.ndarray) -> np.ndarray:
    """Monthly amounts for entries on the schemes given (BENEFITS indexes), unrounded."""
    r = len(benefit)
    return np.select(
        [benefit == 0, benefit == 1, benefit == 2, benefit == 3],
        [np.clip(rng.lognormal(np.log(3800), 0.3, r), 1800, 12000), rng.uniform(230, 600, r),
         rng.uniform(1800, 2100, r), rng.uniform(600, 1500, r)],
        rng.uniform(800, 2200, r))


def generate_city(people: int = 10_000, seed: int = DEFAULT_SEED, as_of: date = DEFAULT_AS_OF, *,
                  city: str | CityFile = SANDBOX_CITY, non_local_share: float = NON_LOCAL_SHARE) -> City:
    """Build the synthetic city for a seed: the office's data, the eight feeds, and the planted truths.

    The office's data: ``roll`` (one row per person and scheme: ROLL_COLUMNS, months as YYYY-MM),
    ``contributions`` (employers' monthly contributions for employees, the 12 months before as_of's
    month: CONTRIBUTION_COLUMNS) and ``subsidies`` (employer subsidies: SUBSIDY_COLUMNS).

    ``truths`` (JSON-serialisable; identity numbers are the clean ones). The first eight lists are
    exactly the instances of the eight matching rules of docs/matching.md in the data the matching
    stage sees (the invalid rows quarantined, identity numbers normalised): planted, none natural.

    - ``dead_but_paid`` (paid_after_death): died before as_of, roll still active and paid after the
      death month; each with death_date, paid_through, months_after_death, monthly_amount, amount
      (months_after_death x monthly_amount) and ``known_to`` {feed: key} (at least one of the first
      three death feeds has the person, and the hospital when it notified the death; the latest date
      among the feeds is the true one).
    - ``prisoners_paid`` (paid_in_custody): 在押 for at least two months, roll still active
      (prisoner_id, admitted_on, monthly_amount; months = paid_through - admission month, capped at
      the sentence end's month if it is past; amount = months x monthly_amount).
    - ``shared_accounts`` (shared_account): one bank account receiving the benefits of 3-6 unrelated
      people (bank_account, id_numbers, amount: their monthly amounts summed).
    - ``duplicate_receipts`` (duplicate_receipt): a second active entry on a scheme the first
      excludes (id_number, schemes sorted, overlap_months of the two [start_month, paid_through],
      monthly_amounts {scheme: amount}, amount = overlap_months x the smaller monthly amount).
    - ``unemployed_contributing``: contributions paid in months of an active unemployment entry
      (id_number, months, monthly_amount, amount = len(months) x monthly_amount).
    - ``frequent_patients`` (frequent_visits): MIN_VISITS-22 bills admitted in one month (id_number,
      month, visits: all the person's bills admitted that month).
    - ``overbilled`` (bill_over_mean): bills at 1.6-3 x their diagnosis's typical cost, more than
      20 % above their (diagnosis_code, setting) group's mean (bill_id, diagnosis_code, setting
      inpatient|outpatient, total_amount).
    - ``subsidised_deregistered`` (deregistered_subsidised): 注销 businesses subsidised in 1-6 months
      after their deregistration month (uscc, status, end_date, months, amount: those subsidies summed).
    - ``single_source_deaths``: deaths known to exactly one of the four death feeds (DEATH_FEEDS, the
      hospital's notifications included: a death known to civil affairs and a hospital has two).
    - ``date_conflicts``: the same death with death dates 3-40 days apart in two feeds
      (dates and keys per feed, the hospital's too when it notified the death, always with the
      true date; the true death_date, days_apart).
    - ``near_dates``: the same death reported one day apart by two sources (the same fields,
      days_apart 1): not a conflict, the later date is the true one.
    - ``messy``: every cell made messy {feed, key, column, kind, value, clean}: the repairable quirks,
      the first-generation 15-digit numbers of paper-born registers (kind OLD_NUMBER_KIND: a trait of
      an old person's record, so possibly in a row a truth depends on) and the identity numbers no
      repair can make valid (kinds UNREPAIRABLE; value None when left empty); ``invalid_ids``: those
      unrepairable ones.
    - ``invalid``: every row planted invalid (about INVALID_RATE of each feed, see invalid_count):
      {feed, key (the row's key as it is in the frame), kind (INVALID_KINDS), column, rules (the
      sorted ids of every contract rule the row breaks, checked on as_of)}. Rules never planted, and
      why: NOT_PLANTED.
    - ``counts``: rows per feed, and roll (rows), deaths, prisoners, businesses, contributions,
      subsidies, issued_elsewhere (residents whose number was first issued outside the city),
      former_codes (locals under a code their district no longer uses), first_generation_rows,
      minority_names; ``deaths_unknown_to_any_source`` (to none of the four death feeds).

    ``city``: the city file (a shipped name, a path or a loaded fundx.core.city.City) the residents live
    in; ``non_local_share``: the share of them whose numbers were first issued in other provinces.

    Each list holds exactly what is in the frames, and no other row of the roll and feeds is an
    instance of its category. Messiness (but the first-generation numbers) and invalid rows never
    touch a row that a truth depends on, and no row is both messy and invalid.
    """
    if people < 1:
        raise ValueError("a city needs at least one person")
    rng = np.random.Generator(np.random.PCG64(seed))
    # Everything added since the first truths (the office's data, the other rules' cases, the bills'
    # spread) is drawn from a stream of its own, so that the older frames stay as they were.
    rng2 = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 99])))
    A = _days(as_of)
    this_month = _month_of(np.array([A]))[0]
    last_paid = this_month - 1
    # The population's newer traits (numbers first issued elsewhere or under former codes, minority
    # and rare-character names, 15-digit numbers, deaths reported a day apart) from a fifth stream.
    rng5 = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 102])))
    if not 0 <= non_local_share <= 1:
        raise ValueError("non_local_share is a share: between 0 and 1")
    place = _place(city)
    ppl = _make_people(rng, people, A, "city", unique=True, place=place, extra=rng5, non_local=non_local_share)
    assert ppl.old_number is not None
    n = people
    age = (A - ppl.birth) / 365.2425
    ids = ppl.ids()
    id_text = np.asarray(ids.to_numpy(zero_copy_only=False), dtype=object)

    # Deaths in the year before as_of, more likely the older one is (Gompertz), 1.2 % on average.
    hazard = np.exp(0.1 * (age - 80))
    p_die = np.minimum(hazard * (0.012 * n / hazard.sum()), 0.95)
    dead = rng.random(n) < p_die
    death_day = np.full(n, np.iinfo(np.int64).max // 4, dtype=np.int64)
    death_day[dead] = A - rng.integers(1, 366, int(dead.sum()))

    # The benefit roll.
    female_retire = ~ppl.male & (age >= 55)
    pension_age = (age >= 60) | female_retire
    on_roll = np.where(pension_age, rng.random(n) < 0.85, rng.random(n) < 0.065)
    roll_pos = np.flatnonzero(on_roll)
    r = len(roll_pos)
    young = ~pension_age[roll_pos]
    benefit = np.where(rng.random(r) < 0.68, 0, 1)
    benefit = np.where(young, rng.choice([2, 3, 4], r, p=[0.6, 0.15, 0.25]), benefit)
    amount = np.round(_benefit_amounts(rng, benefit), 2)
    birth_month = _month_of(ppl.birth[roll_pos])
    retire_years = np.where(ppl.male[roll_pos] | (benefit == 1), 60, 55)
    start = np.where(benefit <= 1, birth_month + retire_years * 12,
                     np.where(benefit == 2, last_paid - rng.integers(0, 24, r), last_paid - rng.integers(0, 240, r)))
    start = np.clip(start, 1995 * 12, last_paid)
    status = np.zeros(r, dtype=np.int64)  # 0 active, 1 suspended, 2 stopped
    paid_through = np.full(r, last_paid, dtype=np.int64)
    u = rng.random(r)
    status[u < 0.01] = 1
    status[(u >= 0.01) & (u < 0.03)] = 2
    paid_through[status == 1] = last_paid - rng.integers(1, 13, int((status == 1).sum()))
    paid_through[status == 2] = last_paid - rng.integers(1, 37, int((status == 2).sum()))
    account = _luhn_accounts(rng, r)
    roll_index = np.full(n, -1, dtype=np.int64)
    roll_index[roll_pos] = np.arange(r)

    # Which death sources know of each death (decided now, reports may still be late).
    dead_pos = np.flatnonzero(dead)
    d = len(dead_pos)
    in_police = rng.random(d) < 0.85
    in_civil = rng.random(d) < 0.90
    in_religious = rng.random(d) < 0.08
    true_death = death_day[dead_pos]
    police_death = true_death.copy()
    religious_death = true_death.copy()

    # Date conflicts: the police or the religious venue wrote a death date 3-40 days too early.
    multi = np.flatnonzero(in_civil.astype(int) + in_police + in_religious >= 2)
    k_conf = min(len(multi), _count(d, 0.05, 4))
    conflict = np.sort(rng.choice(multi, k_conf, replace=False)) if k_conf else np.array([], dtype=np.int64)
    for j in conflict:  # a handful of people: a loop is fine here
        shift = int(rng.integers(3, 41))
        if in_police[j] and (not in_religious[j] or rng.random() < 0.5):
            police_death[j] -= shift
        else:
            religious_death[j] -= shift
    # The same death one day apart: the police or the religious venue wrote the day before (the
    # consolidated date, the later one, stays the true one).
    # (deaths 90 days before as_of at least: every source's report of them is in)
    reported = (true_death <= A - 90) & (in_civil.astype(int) + in_police + in_religious >= 2)
    near_pool = np.setdiff1d(np.flatnonzero((in_police | in_religious) & reported), conflict)
    near = _sample(rng5, near_pool, _count(d, NEAR_DATE_SHARE, 3))
    for j in near:
        if in_police[j] and (not in_religious[j] or rng5.random() < 0.5):
            police_death[j] -= 1
        else:
            religious_death[j] -= 1
    # Old people who still hold their 15-digit number in paper registers: drawn with the people; a few
    # more among the dead on the roll, so that some of the pensions paid after death are theirs.
    on_roll_dead = on_roll[dead_pos] & (in_civil | in_religious) & (true_death <= A - 60)
    born_before = ppl.birth[dead_pos] < _days(OLD_NUMBER_BORN_BEFORE)
    forced_old = _sample(rng5, np.flatnonzero(on_roll_dead & born_before), 3)
    ppl.old_number[dead_pos[forced_old]] = True

    dead_people = ppl.take(dead_pos)
    civil = _civil_rows(rng, dead_people.take(np.flatnonzero(in_civil)), A, int(rng.integers(1, 10**6)),
                        death=true_death[in_civil])
    civil.pos = np.flatnonzero(in_civil)[civil.pos]
    police = _police_rows(rng, dead_people.take(np.flatnonzero(in_police)), A, int(rng.integers(1, 10**6)),
                          death=true_death[in_police], recorded_death=police_death[in_police])
    police.pos = np.flatnonzero(in_police)[police.pos]
    religious = _religious_rows(rng, dead_people.take(np.flatnonzero(in_religious)), A,
                                int(rng.integers(1, 10**5)), death=true_death[in_religious],
                                recorded_death=religious_death[in_religious])
    religious.pos = np.flatnonzero(in_religious)[religious.pos]
    death_rows = {"civil_affairs.deaths": civil, "police.deaths": police, "religious_affairs.deaths": religious}
    known = {}
    for f, rows in death_rows.items():
        known[f] = np.zeros(d, dtype=bool)
        known[f][rows.pos] = True
    n_known = sum(k.astype(int) for k in known.values())

    # Hospital death notifications, from a stream of their own (the frames above stay as they were):
    # about HOSPITAL_DEATH_SHARE of the deaths happen in hospital, which notifies them with the true date.
    rng3 = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 100])))
    in_hospital = rng3.random(d) < HOSPITAL_DEATH_SHARE
    hospital = _hospital_rows(rng3, dead_people.take(np.flatnonzero(in_hospital)), A, int(rng3.integers(1, 10**6)),
                              death=true_death[in_hospital])
    hospital.pos = np.flatnonzero(in_hospital)[hospital.pos]
    death_rows[HOSPITAL_DEATHS] = hospital
    known[HOSPITAL_DEATHS] = np.zeros(d, dtype=bool)
    known[HOSPITAL_DEATHS][hospital.pos] = True
    n_sources = n_known + known[HOSPITAL_DEATHS]  # n_known: the sources the older draws below were made with

    # Dead people on the roll: mostly stopped in the month of death; a few still paid (planted).
    death_month = _month_of(true_death)
    dead_roll = roll_index[dead_pos]
    candidates = np.flatnonzero((dead_roll >= 0) & (n_known >= 1) & (death_month <= last_paid - 1))
    k_dbp = min(len(candidates), _count(d, 0.10, 4))
    still_paid = np.sort(rng.choice(candidates, k_dbp, replace=False))
    still_paid = np.union1d(still_paid, np.intersect1d(forced_old, candidates))  # some holders of 15-digit numbers
    for_stop = np.flatnonzero(dead_roll >= 0)
    status[dead_roll[for_stop]] = 2
    paid_through[dead_roll[for_stop]] = np.minimum(paid_through[dead_roll[for_stop]], death_month[for_stop])
    status[dead_roll[still_paid]] = 0
    paid_through[dead_roll[still_paid]] = last_paid

    # Prisoners: some pensioners (a few of whom are still paid in custody), mostly younger adults.
    alive = ~dead
    k_pris = _count(n, 0.003, 6)
    k_paid = min(_count(n, 0.0004, 3), k_pris)
    roll_alive = np.flatnonzero(on_roll & alive & (age <= 85))
    paid_in_custody = np.sort(rng.choice(roll_alive, min(k_paid, len(roll_alive)), replace=False))
    eligible = alive & (age >= 18) & (age <= 75)
    eligible[paid_in_custody] = False
    others_pool = np.flatnonzero(eligible)
    others = np.sort(rng.choice(others_pool, min(k_pris - len(paid_in_custody), len(others_pool)), replace=False))
    prisoner_pos = np.concatenate([paid_in_custody, others])
    forced = np.concatenate([np.zeros(len(paid_in_custody), dtype=np.int64),
                             rng.choice(len(CUSTODY), len(others), p=[0.70, 0.10, 0.08, 0.12])])
    custody = _custody_draw(rng, len(prisoner_pos), A, status=forced)
    # The planted ones were admitted at least two months ago, so they were paid in custody.
    late = np.maximum(custody[3] - (A - 62), 0) * (np.arange(len(prisoner_pos)) < len(paid_in_custody))
    custody = (custody[0], custody[1] - late, custody[2] - late, custody[3] - late)
    justice = _justice_rows(rng, ppl.take(prisoner_pos), A, int(rng.integers(1, 10**6)), custody=custody)
    justice.pos = prisoner_pos[justice.pos]
    c_status, _c_start, _c_end, c_admitted = custody
    # Other prisoners on the roll who are in custody: suspended from the month of admission.
    planted = np.arange(len(prisoner_pos)) < len(paid_in_custody)
    in_custody_roll = (c_status == 0) & (roll_index[prisoner_pos] >= 0) & ~planted
    ri = roll_index[prisoner_pos[in_custody_roll]]
    status[ri] = np.where(status[ri] == 2, 2, 1)
    paid_through[ri] = np.minimum(paid_through[ri], _month_of(c_admitted[in_custody_roll]))
    ri = roll_index[paid_in_custody]
    status[ri] = 0
    paid_through[ri] = last_paid

    # Shared accounts: 3-6 unrelated, living, active people's benefits paid into one account.
    busy = np.zeros(n, dtype=bool)
    busy[dead_pos] = True
    busy[prisoner_pos] = True
    pool = np.flatnonzero(on_roll & ~busy)
    pool = pool[status[roll_index[pool]] == 0]
    sizes = rng.integers(3, 7, _count(r, 1 / 2500, 3))
    sizes = sizes[np.cumsum(sizes) <= len(pool)]
    chosen = pool[rng.choice(len(pool), int(sizes.sum()), replace=False)]
    groups = [np.sort(g) for g in np.split(chosen, np.cumsum(sizes)[:-1])] if len(sizes) else []
    for g in groups:
        account[roll_index[g]] = account[roll_index[g[0]]]


    # Bills: about 1.5 a year per person, more for the old; none after death.
    rate = np.exp(0.025 * (age - 50))
    per_person = rng.poisson(rate * 1.5 * n / rate.sum())
    bill_people = np.repeat(np.arange(n), per_person)
    rng.shuffle(bill_people)
    bill_key = int(rng.integers(1, 10**6))
    bills = _bill_rows(rng, ppl.take(bill_people), A, bill_key, last_day=death_day[bill_people], spread=rng2)

    # Businesses: one for every 20 people, represented by living adults.
    k_bus = max(1, n // 20)
    reps_pool = np.flatnonzero(alive & (age >= 22) & (age <= 80))
    reps = rng.choice(reps_pool, k_bus, replace=len(reps_pool) < k_bus)
    business = _business_rows(rng, ppl.take(reps), A, int(rng.integers(1, 10**6)))

    # --- the office's own data and the cases of the other rules (all drawn from rng2) ---
    start = np.minimum(start, paid_through)  # an entry stopped before it began: paid its one month
    w0 = this_month - 12  # contributions and subsidies: the 12 months before as_of's month
    taken = np.zeros(n, dtype=bool)  # people a truth already depends on
    taken[dead_pos] = True
    taken[prisoner_pos] = True
    for g in groups:
        taken[g] = True
    first_active = np.zeros(n, dtype=bool)
    first_active[roll_pos] = status == 0
    scheme = np.full(n, -1, dtype=np.int64)
    scheme[roll_pos] = benefit

    # Duplicate receipts: a second, active entry on a scheme the first one excludes, begun lately.
    dup_pos = _sample(rng2, np.flatnonzero(first_active & ~taken & (scheme >= 0) & (scheme <= 2)),
                      _count(r, 1 / 1200, 3))
    k_dup = len(dup_pos)
    taken[dup_pos] = True
    dup_first = roll_index[dup_pos]
    dup_benefit = _EXCLUSIVE_PARTNER[benefit[dup_first], rng2.integers(0, 2, k_dup)]
    dup_amount = np.round(_benefit_amounts(rng2, dup_benefit), 2)
    dup_start = np.maximum(last_paid - rng2.integers(0, 36, k_dup), 1995 * 12)

    # The roll: one row per (person, scheme), a person's rows together.
    row_person = np.concatenate([roll_pos, dup_pos])
    row_benefit = np.concatenate([benefit, dup_benefit])
    row_amount = np.concatenate([amount, dup_amount])
    row_account = np.concatenate([account, account[dup_first]])
    row_status = np.concatenate([status, np.zeros(k_dup, dtype=np.int64)])
    row_paid = np.concatenate([paid_through, np.full(k_dup, last_paid, dtype=np.int64)])
    row_start = np.concatenate([start, dup_start])
    row_order = np.lexsort((np.arange(len(row_person)) >= r, row_person))
    ro = pa.array(row_order)
    roll = pd.DataFrame({
        "id_number": _str(ids.take(pa.array(row_person[row_order]))),
        "name": _str(ppl.name.take(pa.array(row_person[row_order]))),
        "benefit_type": _str(_pick(BENEFITS, row_benefit).take(ro)),
        "monthly_amount": pd.Series(row_amount[row_order], dtype="float64"),
        "bank_account": _str(_arrow(row_account[row_order])),
        "status": _str(_pick(("active", "suspended", "stopped"), row_status).take(ro)),
        "paid_through": _str(_month_text(row_paid[row_order])),
        "start_month": _str(_month_text(row_start[row_order])),
        "months_paid": pd.Series(np.maximum(row_paid - row_start + 1, 1)[row_order], dtype="int64"),
        # the district whose office pays the entry (where the person lives; orders are routed there)
        "paying_district": _str(_arrow(_fixed(len(row_order), (place.codes[ppl.district[row_person[row_order]]], 6)))),
    })

    # Unemployed but contributing: an active unemployment entry, and an employer paying for some of its months.
    uc_pos = _sample(rng2, np.flatnonzero(first_active & ~taken & (scheme == 2)),
                     _count(int((benefit == 2).sum()), 0.03, 3))
    taken[uc_pos] = True

    # Contributions: half the living people of working age, over some or all of the 12 months; an
    # unemployment entry ends them before it starts.
    bus_frame = business.frame
    bus_uscc = pa.array(bus_frame["uscc"])
    bus_status = bus_frame["status"].to_numpy(dtype=object)
    running = np.flatnonzero(np.isin(bus_status, ("存续", "在业")))
    employers = running if len(running) else np.arange(k_bus)
    in_prison = np.zeros(n, dtype=bool)
    in_prison[prisoner_pos] = True
    cp = np.flatnonzero(alive & (age >= 18) & (age < 60) & ~in_prison & (rng2.random(n) < 0.5))
    k_cp = len(cp)
    first_off = np.where(rng2.random(k_cp) < 0.8, 0, rng2.integers(1, 12, k_cp))
    last_off = np.where(rng2.random(k_cp) < 0.85, 11,
                        first_off + (rng2.random(k_cp) * (12 - first_off)).astype(np.int64))
    unemployed_from = np.full(n, np.iinfo(np.int64).max // 4, dtype=np.int64)
    on_dole = row_benefit == 2
    np.minimum.at(unemployed_from, row_person[on_dole], row_start[on_dole])
    last_off = np.minimum(last_off, unemployed_from[cp] - 1 - w0)
    spans = np.maximum(last_off - first_off + 1, 0)
    wage = np.clip(rng2.lognormal(np.log(7000), 0.45, k_cp), 2490, 36000)
    c_person = np.repeat(cp, spans)
    c_month = w0 + np.repeat(first_off, spans) + _within(spans)
    c_amount = np.repeat(np.round(wage * CONTRIBUTION_RATE, 2), spans)
    c_employer = np.repeat(employers[rng2.integers(0, len(employers), k_cp)], spans)
    uc_row = roll_index[uc_pos]
    lo = np.maximum(start[uc_row], w0)
    room = paid_through[uc_row] - lo + 1
    uc_len = 1 + (rng2.random(len(uc_pos)) * np.minimum(6, room)).astype(np.int64)
    uc_begin = lo + (rng2.random(len(uc_pos)) * (room - uc_len + 1)).astype(np.int64)
    uc_wage = np.clip(rng2.lognormal(np.log(7000), 0.45, len(uc_pos)), 2490, 36000)
    c_person = np.concatenate([c_person, np.repeat(uc_pos, uc_len)])
    c_month = np.concatenate([c_month, np.repeat(uc_begin, uc_len) + _within(uc_len)])
    c_amount = np.concatenate([c_amount, np.repeat(np.round(uc_wage * CONTRIBUTION_RATE, 2), uc_len)])
    uc_employer = employers[rng2.integers(0, len(employers), len(uc_pos))]
    c_employer = np.concatenate([c_employer, np.repeat(uc_employer, uc_len)])
    c_order = np.lexsort((c_person, c_month))
    contributions = pd.DataFrame({
        "id_number": _str(ids.take(pa.array(c_person[c_order]))),
        "employer_uscc": _str(bus_uscc.take(pa.array(c_employer[c_order]))),
        "month": _str(_month_text(c_month[c_order])),
        "amount": pd.Series(c_amount[c_order], dtype="float64"),
    })

    # Wage income declared to the tax bureau (a stream of its own): the employers that contribute
    # for a person mostly also declare the wage of that month, at the contribution base or above it.
    rng4 = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 101])))
    declared = np.flatnonzero(rng4.random(len(c_order)) < WAGE_DECLARED_SHARE)
    w_rows = c_order[declared]
    wages = _wage_rows(rng4, ppl.take(c_person[w_rows]), A, int(rng4.integers(1, 10**6)), months=c_month[w_rows],
                       employers=bus_uscc.take(pa.array(c_employer[w_rows])),
                       base=c_amount[w_rows] / CONTRIBUTION_RATE)
    wage_person = c_person[w_rows][wages.pos]

    # Employer subsidies: a third of the running businesses, 1-4 of them in the 12 months; a few
    # deregistered ones (planted) keep receiving them for 1-6 months after the month they closed.
    sub = np.flatnonzero(np.isin(bus_status, ("存续", "在业")) & (rng2.random(k_bus) < 0.3))
    s_bus = np.repeat(sub, rng2.integers(1, 5, len(sub)))
    s_month = w0 + rng2.integers(0, 12, len(s_bus))
    dereg_day = np.full(k_bus, NO_DAY, dtype=np.int64)
    gone = np.flatnonzero(bus_status == "注销")
    dereg_day[gone] = _to_days(bus_frame["deregistered_on"].to_numpy(dtype=object)[gone])
    dereg_month = np.where(dereg_day == NO_DAY, last_paid, _month_of(np.where(dereg_day == NO_DAY, 0, dereg_day)))
    sd_rows = _sample(rng2, gone[dereg_month[gone] < last_paid], _count(k_bus, 0.01, 3))
    sd_len = 1 + (rng2.random(len(sd_rows)) * np.minimum(6, last_paid - dereg_month[sd_rows])).astype(np.int64)
    s_bus = np.concatenate([s_bus, np.repeat(sd_rows, sd_len)])
    s_month = np.concatenate([s_month, np.repeat(dereg_month[sd_rows] + 1, sd_len) + _within(sd_len)])
    s_type = rng2.choice(len(SUBSIDIES), len(s_bus), p=[0.5, 0.35, 0.15])
    s_amount = np.round(np.select([s_type == 0, s_type == 1], [rng2.uniform(2000, 80000, len(s_bus)),
                                                             rng2.uniform(500, 6000, len(s_bus))], 1500.0), 2)
    s_order = np.lexsort((s_bus, s_month))
    subsidies = pd.DataFrame({
        "uscc": _str(bus_uscc.take(pa.array(s_bus[s_order]))),
        "subsidy_type": _str(_pick(SUBSIDIES, s_type[s_order])),
        "month": _str(_month_text(s_month[s_order])),
        "amount": pd.Series(s_amount[s_order], dtype="float64"),
    })

    # Frequent patients: 15-22 bills admitted in one month (outpatient visits added to their own bills).
    bill_person = bill_people[bills.pos]
    bill_month = _month_of(_to_days(bills.frame["admitted_on"].to_numpy(dtype=object)))
    fp_pos = _sample(rng2, np.flatnonzero(alive & ~taken), _count(n, 1 / 2500, 3))
    taken[fp_pos] = True
    fp_month = this_month - rng2.integers(2, 12, len(fp_pos))
    own = np.array([int(((bill_person == p) & (bill_month == m)).sum()) for p, m in zip(fp_pos, fp_month)],
                   dtype=np.int64)
    fp_visits = np.maximum(rng2.integers(MIN_VISITS, MIN_VISITS + 8, len(fp_pos)), own + 1)
    fp_extra = fp_visits - own
    first_day = days_from_civil(fp_month // 12, fp_month % 12 + 1, np.ones_like(fp_month))
    month_days = days_from_civil((fp_month + 1) // 12, (fp_month + 1) % 12 + 1, np.ones_like(fp_month)) - first_day
    fp_rep = np.repeat(fp_pos, fp_extra)
    visit = (np.repeat(first_day, fp_extra)
             + (rng2.random(len(fp_rep)) * np.repeat(month_days, fp_extra)).astype(np.int64))
    visits = _bill_rows(rng2, ppl.take(fp_rep), A, bill_key + len(bills.frame), visit_days=visit)
    bill_frame = pd.concat([bills.frame, visits.frame], ignore_index=True)
    bill_order = bill_frame.sort_values(["settled_at", "bill_id"], kind="stable").index.to_numpy()
    bill_frame = bill_frame.take(bill_order).reset_index(drop=True)
    bill_person = np.concatenate([bill_person, fp_rep[visits.pos]])[bill_order]

    # Overbilled: about 0.3 % of the bills at 1.6-3 times the typical cost, in groups of 50 bills or more
    # and at most 2 (or 1 %) of a group, so that each stays far above its group's mean.
    diag_idx = pd.Categorical(bill_frame["diagnosis_code"], categories=[d[0] for d in DIAGNOSES]).codes.astype(np.int64)
    inpatient = bill_frame["discharged_on"].notna().to_numpy()
    group = diag_idx * 2 + inpatient
    size = np.bincount(group, minlength=2 * len(DIAGNOSES))
    candidates = rng2.permutation(np.flatnonzero((size[group] >= 50) & ~np.isin(bill_person, fp_pos)))
    rank = pd.Series(group[candidates]).groupby(group[candidates]).cumcount().to_numpy()
    candidates = candidates[rank < np.maximum(2, size // 100)[group[candidates]]]
    over = np.sort(candidates[:_count(len(bill_frame), 0.003, 3)])
    typical = _DIAG_COST[diag_idx[over]] * np.where(inpatient[over], 1.0, 0.03)
    total = bill_frame["total_amount"].to_numpy(dtype=float, copy=True)
    fund = bill_frame["fund_amount"].to_numpy(dtype=float, copy=True)
    new_total = np.round(typical * rng2.uniform(OVERBILLED_LOW, OVERBILLED_HIGH, len(over)) + 20, 2)
    fund[over] = np.minimum(np.round(new_total * fund[over] / total[over], 2), new_total)
    total[over] = new_total
    bill_frame["total_amount"] = total
    bill_frame["fund_amount"] = fund
    bills = _Rows(bill_frame, np.arange(len(bill_frame)))

    # --- truths (read back from what was built, so they are true of the frames) ---
    key_of: dict[str, np.ndarray] = {}
    for f, rows in death_rows.items():
        key_of[f] = np.full(d, None, dtype=object)
        key_of[f][rows.pos] = rows.frame.iloc[:, 0].to_numpy(dtype=object)

    def death_key(feed: str, j: int) -> str | None:
        """The key of dead person j's row in a death feed, if that feed has one."""
        return key_of[feed][j]

    def iso(day: int) -> str:
        """ISO text of a day number."""
        return (_EPOCH + timedelta(days=int(day))).isoformat()

    def month(m: int) -> str:
        """YYYY-MM of a month number."""
        return f"{int(m) // 12:04d}-{int(m) % 12 + 1:02d}"

    truths: dict = {"city": place.name, "seed": seed, "people": people, "as_of": as_of.isoformat()}
    dbp = []
    for j in still_paid:
        ri = int(dead_roll[j])
        dbp.append({
            "id_number": id_text[dead_pos[j]],
            "death_date": iso(true_death[j]),
            "paid_through": month(paid_through[ri]),
            "months_after_death": int(paid_through[ri] - death_month[j]),
            "monthly_amount": float(amount[ri]),
            "amount": round(int(paid_through[ri] - death_month[j]) * float(amount[ri]), 2),
            "known_to": {f: death_key(f, int(j)) for f in DEATH_FEEDS if known[f][j]},
        })
    truths["dead_but_paid"] = dbp
    custody_until = np.where(_c_end < A, _month_of(_c_end), np.iinfo(np.int64).max // 4)
    prisoners = []
    for i, p in enumerate(prisoner_pos[:len(paid_in_custody)]):
        ri = int(roll_index[p])
        months = int(min(paid_through[ri], custody_until[i]) - _month_of(c_admitted[i:i + 1])[0])
        prisoners.append({
            "id_number": id_text[p], "prisoner_id": str(justice.frame.iloc[i, 0]),
            "admitted_on": iso(c_admitted[i]), "custody_status": CUSTODY[0],
            "monthly_amount": float(amount[ri]), "months": months, "amount": round(months * float(amount[ri]), 2),
        })
    truths["prisoners_paid"] = prisoners
    truths["shared_accounts"] = [
        {"bank_account": account[roll_index[g[0]]].tobytes().decode("ascii"),
         "id_numbers": [id_text[p] for p in g],
         "amount": round(float(amount[roll_index[g]].sum()), 2)}
        for g in groups
    ]
    truths["single_source_deaths"] = [
        {"id_number": id_text[dead_pos[j]], "feed": f, "key": death_key(f, int(j)), "death_date": iso(true_death[j])}
        for j in np.flatnonzero(n_sources == 1) for f in DEATH_FEEDS if known[f][j]
    ]
    recorded = {"civil_affairs.deaths": true_death, "police.deaths": police_death,
                "religious_affairs.deaths": religious_death, HOSPITAL_DEATHS: true_death}
    conflicts = []
    for j in conflict:
        present = [f for f in DEATH_FEEDS if known[f][j]]
        dates = {f: int(recorded[f][j]) for f in present}
        if len(present) >= 2 and len(set(dates.values())) >= 2:
            conflicts.append({
                "id_number": id_text[dead_pos[j]],
                "death_date": iso(true_death[j]),
                "dates": {f: iso(v) for f, v in dates.items()},
                "keys": {f: death_key(f, int(j)) for f in present},
                "days_apart": int(max(dates.values()) - min(dates.values())),
            })
    truths["date_conflicts"] = conflicts
    near_dates = []
    for j in near:
        present = [f for f in DEATH_FEEDS if known[f][j]]
        dates = {f: int(recorded[f][j]) for f in present}
        if len(set(dates.values())) == 2:  # the source that wrote the day before has its row
            near_dates.append({
                "id_number": id_text[dead_pos[j]], "death_date": iso(true_death[j]),
                "dates": {f: iso(v) for f, v in dates.items()},
                "keys": {f: death_key(f, int(j)) for f in present}, "days_apart": 1,
            })
    truths["near_dates"] = near_dates
    truths["deaths_unknown_to_any_source"] = int((n_sources == 0).sum())
    duplicates = []
    for i, p in enumerate(dup_pos):
        ri = int(dup_first[i])
        overlap = int(min(paid_through[ri], last_paid) - max(start[ri], dup_start[i]) + 1)
        monthly = {BENEFITS[benefit[ri]]: float(amount[ri]), BENEFITS[dup_benefit[i]]: float(dup_amount[i])}
        duplicates.append({
            "id_number": id_text[p], "schemes": sorted(monthly), "overlap_months": overlap,
            "monthly_amounts": dict(sorted(monthly.items())), "amount": round(overlap * min(monthly.values()), 2),
        })
    truths["duplicate_receipts"] = duplicates
    contributing = []
    for i, p in enumerate(uc_pos):
        per_month = float(amount[roll_index[p]])
        contributing.append({
            "id_number": id_text[p], "months": [month(uc_begin[i] + k) for k in range(int(uc_len[i]))],
            "monthly_amount": per_month, "amount": round(int(uc_len[i]) * per_month, 2),
        })
    truths["unemployed_contributing"] = contributing
    truths["frequent_patients"] = [
        {"id_number": id_text[p], "month": month(m), "visits": int(v)} for p, m, v in zip(fp_pos, fp_month, fp_visits)
    ]
    bill_ids = bill_frame["bill_id"].to_numpy(dtype=object)
    truths["overbilled"] = [
        {"bill_id": str(bill_ids[b]), "diagnosis_code": DIAGNOSES[diag_idx[b]][0],
         "setting": "inpatient" if inpatient[b] else "outpatient", "total_amount": float(total[b])}
        for b in over
    ]
    s_uscc = bus_frame["uscc"].to_numpy(dtype=object)
    sd_amount = np.zeros(k_bus)
    after = np.isin(s_bus, sd_rows) & (s_month > dereg_month[s_bus])
    np.add.at(sd_amount, s_bus[after], s_amount[after])
    truths["subsidised_deregistered"] = sorted((
        {"uscc": str(s_uscc[b]), "status": "注销", "end_date": iso(dereg_day[b]),
         "months": [month(dereg_month[b] + 1 + k) for k in range(int(k_len))], "amount": round(float(sd_amount[b]), 2)}
        for b, k_len in zip(sd_rows, sd_len)), key=lambda t: t["uscc"])

    # Messiness last, and never in rows a truth depends on.
    truth_people = np.zeros(n, dtype=bool)
    truth_people[dead_pos[still_paid]] = True
    truth_people[dead_pos[conflict]] = True
    truth_people[dead_pos[near]] = True
    truth_people[dead_pos[n_known == 1]] = True
    truth_people[paid_in_custody] = True
    for g in groups:
        truth_people[g] = True
    truth_people[dup_pos] = True
    truth_people[uc_pos] = True
    truth_people[fp_pos] = True  # every bill of theirs: the count per month must stay as planted
    bill_rows_kept = truth_people[bill_person]
    bill_rows_kept[over] = True
    business_rows_kept = truth_people[reps[business.pos]]
    business_rows_kept[sd_rows] = True
    # The older feeds keep the protection they were drawn with (a death known to one of them and to
    # a hospital stays protected there); the hospital's rows also spare the deaths only it knows.
    hospital_people = truth_people.copy()
    hospital_people[dead_pos[n_sources == 1]] = True
    feeds = {
        "civil_affairs.deaths": (civil.frame, truth_people[dead_pos[civil.pos]]),
        "religious_affairs.deaths": (religious.frame, truth_people[dead_pos[religious.pos]]),
        "police.deaths": (police.frame, truth_people[dead_pos[police.pos]]),
        "justice.prisoners": (justice.frame, truth_people[justice.pos]),
        "medical_insurance.bills": (bill_frame, bill_rows_kept),
        "market_regulation.businesses": (business.frame, business_rows_kept),
        HOSPITAL_DEATHS: (hospital.frame, hospital_people[dead_pos[hospital.pos]]),
        WAGE_INCOME: (wages.frame, hospital_people[wage_person]),
    }
    messy: list[dict[str, str]] = []
    invalid: list[dict] = []
    old_rows = {"civil_affairs.deaths": civil.extra.get("id15"), "religious_affairs.deaths": religious.extra.get("id15")}
    for feed in FEEDS:
        frame, protected = feeds[feed]
        free = np.ones(len(frame), dtype=bool) if protected is None else ~protected
        stream = {HOSPITAL_DEATHS: rng3, WAGE_INCOME: rng4}.get(feed, rng)  # the older feeds' draws stay as they were
        _name_forms(rng5, feed, frame)
        messy.extend(_first_generation(feed, frame, old_rows.get(feed), free))
        messy.extend(_mess_up(stream, feed, frame, free))
        bad, bad_ids = _plant_invalid(stream, feed, frame, free, A)
        messy.extend(bad_ids)
        invalid.extend(bad)
    truths["messy"] = messy
    truths["invalid_ids"] = [m for m in messy if m["kind"] in UNREPAIRABLE]
    truths["invalid"] = invalid
    areas = ppl.area()
    in_city = areas // 100 == place.prefix
    truths["counts"] = {f: len(feeds[f][0]) for f in FEEDS} | {
        "roll": len(roll), "deaths": d, "prisoners": len(prisoner_pos), "businesses": k_bus,
        "contributions": len(contributions), "subsidies": len(subsidies),
        "issued_elsewhere": int((~in_city).sum()), "former_codes": int((in_city & ~np.isin(areas, place.codes)).sum()),
        "first_generation_rows": sum(1 for m in messy if m["kind"] == OLD_NUMBER_KIND),
        "minority_names": int(pc.sum(pc.match_substring(ppl.name, "\u00b7")).as_py() or 0)}
    return City(seed=seed, people=people, as_of=as_of, roll=roll,
                feeds={f: feeds[f][0] for f in FEEDS}, truths=truths,
                contributions=contributions, subsidies=subsidies)


# --- one feed, streamed -----------------------------------------------------------------------

_PROFILES: dict[str, str] = {
    "civil_affairs.deaths": "dying", "police.deaths": "dying", "religious_affairs.deaths": "dying",
    "justice.prisoners": "adult", "medical_insurance.bills": "city", "market_regulation.businesses": "adult",
    HOSPITAL_DEATHS: "dying", WAGE_INCOME: "adult",
}
_BUILDERS: dict[str, Callable[..., _Rows]] = {
    "civil_affairs.deaths": _civil_rows, "police.deaths": _police_rows,
    "religious_affairs.deaths": _religious_rows, "justice.prisoners": _justice_rows,
    "medical_insurance.bills": _bill_rows, "market_regulation.businesses": _business_rows,
    HOSPITAL_DEATHS: _hospital_rows, WAGE_INCOME: _wage_rows,
}


def generate_feed(feed: str, rows: int, seed: int = DEFAULT_SEED, as_of: date = DEFAULT_AS_OF,
                  chunk_rows: int = 1_000_000, invalid: list[dict] | None = None, *,
                  city: str | CityFile = SANDBOX_CITY) -> Iterator[pd.DataFrame]:
    """Stream `rows` rows of one feed in chunks of at most chunk_rows, without building a city.

    For benchmarks: memory stays bounded by one chunk. Each chunk is ordered by (incremental column,
    key) and keys are unique across all chunks; the same arguments give the same chunks. Text feeds
    carry the usual messiness, and every feed invalid rows, at the usual rates (per chunk; not
    recorded, except that the invalid rows' records are appended to ``invalid`` when one is given).
    """
    if feed not in _BUILDERS:
        raise ValueError(f"unknown feed {feed!r}; feeds are {', '.join(FEEDS)}")
    if chunk_rows < 1 or rows < 0:
        raise ValueError("rows must be >= 0 and chunk_rows >= 1")
    A = _days(as_of)
    feed_no = FEEDS.index(feed)
    place = _place(city)
    for chunk_no, start in enumerate(range(0, rows, chunk_rows)):
        n = min(chunk_rows, rows - start)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, feed_no, chunk_no])))
        extra = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, feed_no, chunk_no, 102])))
        ppl = _make_people(rng, n, A, _PROFILES[feed], unique=False, place=place, extra=extra)
        built = _BUILDERS[feed](rng, ppl, A, start + 1)
        free = np.ones(len(built.frame), dtype=bool)
        _name_forms(extra, feed, built.frame)
        _first_generation(feed, built.frame, built.extra.get("id15"), free)
        _mess_up(rng, feed, built.frame, free)
        planted, _ids = _plant_invalid(rng, feed, built.frame, free, A)
        if invalid is not None:
            invalid.extend(planted)
        yield built.frame


#: The canary: a synthetic, checksum-valid identity number (西湖区, born 1950-01-01) that no generated
#: person has. The chaos night (``python -m chaos``) plants it in one row of every feed and then searches
#: every file the exchange wrote for it: a hit is personal data at rest in plain text.
CANARY_ID = "330106195001019997"


def plant_canary(city: City, id_number: str = CANARY_ID) -> dict[str, str]:
    """Give one row of every feed the identity number ``id_number``; returns {feed: the row's key}.

    The row is a real one (so the canary travels as any row does: pulled, checked, sealed, handed to
    the stage or quarantined): the first whose key is neither planted invalid nor messy and whose
    own identity number is valid; a birth-date column is set to the canary's, so that the row stays
    consistent. The truths are not updated: a city with a canary is for the chaos night, not for the
    matching stage's truths. A ValueError names a feed with no such row (generate more people).
    """
    if not is_valid_id(id_number):
        raise ValueError("the canary must be a valid 18-character identity number")
    born = f"{id_number[6:10]}-{id_number[10:12]}-{id_number[12:14]}"
    touched = {(m["feed"], str(m["key"])) for m in [*city.truths.get("invalid", []), *city.truths.get("messy", [])]}
    planted: dict[str, str] = {}
    for feed, frame in city.feeds.items():
        schema = feed_schema(feed)
        key, column = schema.key, schema.identity
        if column is None:
            continue  # a feed without identity numbers holds no canary
        for position in range(len(frame)):
            row = frame.iloc[position]
            if (feed, str(row[key])) in touched or not is_valid_id(row[column]):
                continue
            frame.iloc[position, frame.columns.get_loc(column)] = id_number
            if "birth_date" in frame.columns:
                frame.iloc[position, frame.columns.get_loc("birth_date")] = born
            planted[feed] = str(row[key])
            break
        else:
            raise ValueError(f"{feed}: no clean row to plant the canary in ({len(frame)} rows); generate more people")
    return planted
