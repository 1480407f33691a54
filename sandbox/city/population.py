"""The city's residents: ages, genders, names, and valid identity numbers first issued where and when they were.

Residents are parallel arrays (People). Their district is drawn by population share; their numbers
carry the area code in use where and when each was first issued: many in other provinces, some under
a code their district had before a merger or renaming (docs/agencies.md: The population). The
population's newer traits (numbers first issued elsewhere or under former codes, minority and
rare-character names, 15-digit numbers still in paper registers) come from a stream of their own
(``extra``), so the main stream draws what it always drew.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fundx.core.idcolumns import civil_from_days, make_id_matrix
from sandbox.city.place import Place
from sandbox.city.text import arrow_text, day_number, join, pick

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
#: four bytes in GB18030); the forms the dot takes in each agency's system: messiness.NAME_DOT_FORMS
MINORITY_SHARE = 0.02
RARE_NAME_SHARE = 0.01
MINORITY_GIVEN_MALE = ("买买提", "艾合买提", "阿不都热依木", "吐尔逊", "热合曼", "阿里木", "努尔艾力", "艾力")
MINORITY_GIVEN_FEMALE = ("阿依古丽", "古丽娜尔", "帕提古丽", "热依拉", "迪丽努尔", "米日古丽", "阿依努尔")
MINORITY_FATHER = ("艾力", "吐尔逊", "托合提", "买买提", "阿不都拉", "玉素甫", "司马义", "依明")
RARE_GIVEN = ("堃", "喆", "𠮷", "𬀩", "𫖮")
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


@dataclass
class People:
    """Residents as parallel arrays (index i is one person)."""

    district: np.ndarray  # where they live: index into the city's districts (place.codes)
    birth: np.ndarray  # days since 1970-01-01
    male: np.ndarray  # bool
    id_mat: np.ndarray  # N x 18 uint8, the identity numbers (area code: where first issued)
    name: pa.Array
    place: Place
    old_number: np.ndarray | None = None  # bool: known to paper-born registers by a 15-digit number

    @property
    def n(self) -> int:
        """How many people."""
        return len(self.birth)

    def ids(self) -> pa.Array:
        """The identity numbers as Arrow strings."""
        return arrow_text(self.id_mat)

    def take(self, idx: np.ndarray) -> People:
        """The people at positions idx (repeats allowed)."""
        idx = np.asarray(idx, dtype=np.int64)
        return People(self.district[idx], self.birth[idx], self.male[idx], self.id_mat[idx],
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
        return pc.if_else(pa.array(self.old_number), arrow_text(old).cast(ids.type), ids)

    def gender(self) -> pa.Array:
        """男 or 女, as the identity number's 17th digit says."""
        return pick(("女", "男"), self.male.astype(np.int64))


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
    surname = pick([s[0] for s in SURNAMES], rng.choice(len(SURNAMES), n, p=_SURNAME_P))
    g1m = rng.integers(0, len(GIVEN_MALE), n)
    g1f = rng.integers(0, len(GIVEN_FEMALE), n)
    g2m = rng.integers(0, len(GIVEN_MALE), n)
    g2f = rng.integers(0, len(GIVEN_FEMALE), n)
    pool = list(GIVEN_FEMALE) + list(GIVEN_MALE)
    off = len(GIVEN_FEMALE)
    first = pick(pool, np.where(male, g1m + off, g1f))
    second = pick([*pool, ""], np.where(rng.random(n) < 0.35, len(pool), np.where(male, g2m + off, g2f)))
    names = join(surname, first, second)
    if extra is None:
        return names
    u = extra.random(n)
    minority = u < MINORITY_SHARE
    rare = (u >= MINORITY_SHARE) & (u < MINORITY_SHARE + RARE_NAME_SHARE)
    given = np.where(male, extra.integers(0, len(MINORITY_GIVEN_MALE), n),
                     len(MINORITY_GIVEN_MALE) + extra.integers(0, len(MINORITY_GIVEN_FEMALE), n))
    dotted = join(pick([*MINORITY_GIVEN_MALE, *MINORITY_GIVEN_FEMALE], given), pa.scalar("\u00b7"),
                  pick(MINORITY_FATHER, extra.integers(0, len(MINORITY_FATHER), n)))
    with_rare = join(surname, first, pick(RARE_GIVEN, extra.integers(0, len(RARE_GIVEN), n)))
    return pc.if_else(pa.array(minority), dotted, pc.if_else(pa.array(rare), with_rare, names))


def _issue_years(birth: np.ndarray) -> np.ndarray:
    """The year each number was issued: the birth year, or FIRST_ISSUE_YEAR for people born before."""
    return np.maximum(civil_from_days(birth)[0], FIRST_ISSUE_YEAR)


def _area_codes(extra: np.random.Generator, place: Place, district: np.ndarray, birth: np.ndarray,
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


def make_people(rng: np.random.Generator, n: int, as_of_days: int, profile: str, unique: bool, *,
                place: Place, extra: np.random.Generator, non_local: float = NON_LOCAL_SHARE) -> People:
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
    old_number = (birth < day_number(OLD_NUMBER_BORN_BEFORE)) & (extra.random(n) < OLD_NUMBER_SHARE)
    return People(district, birth, male, id_mat, _names(rng, male, extra), place, old_number)
