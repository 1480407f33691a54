"""The registers of people in custody and of firms: the justice bureau's prisoners, the market regulator's businesses.

In a city a few pensioners are planted among the prisoners (paid in custody: admitted at least two
months before as_of); businesses are represented by living adults of the city.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fundx.core.codes import BUSINESS_STATUSES, CUSTODY_STATUSES
from fundx.core.idcolumns import make_uscc_matrix
from sandbox.city.draws import local_seconds, past_days, plant_count
from sandbox.city.feeds import Rows
from sandbox.city.population import People
from sandbox.city.text import (
    arrow_text,
    date_text,
    day_number,
    feed_frame,
    join,
    pick,
    serial_keys,
    time_text,
    with_nulls,
)

CUSTODY = CUSTODY_STATUSES
BUSINESS_WORDS = tuple("华鑫恒达顺通泰丰瑞祥宏兴盛和信安嘉德源隆昌东方天宇新明润永康中诚汇博远")
INDUSTRIES = ("科技", "贸易", "餐饮管理", "建筑工程", "电子商务", "物流", "服装", "机械制造", "文化传媒",
              "网络技术", "食品", "装饰工程")
SHOPS = ("小吃店", "便利店", "五金店", "理发店", "服装店", "水果店", "面馆", "汽车修理部")
CROPS = ("茶叶", "蔬菜", "水果", "竹笋", "蜂业", "苗木")
BUSINESS_STATUS = BUSINESS_STATUSES


def custody_draw(rng: np.random.Generator, n: int, as_of_days: int,
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


def justice_rows(rng: np.random.Generator, ppl: People, as_of_days: int, key_start: int,
                 custody: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None) -> Rows:
    """The prisoners list: sentence period, admission day, custody status and prison."""
    n = ppl.n
    status, start, end, admitted = custody if custody is not None else custody_draw(rng, n, as_of_days)
    prisons = ppl.place.prisons
    prison = pick([*prisons, ppl.place.womens_prison],
                  np.where(ppl.male, rng.integers(0, len(prisons), n), len(prisons)))
    no_prison = rng.random(n) < 0.02
    pos = np.arange(n)
    frame = feed_frame("justice.prisoners", {
        "prisoner_id": serial_keys("ZF3301", key_start, n, 10),
        "id_number": ppl.ids(),
        "name": ppl.name,
        "admitted_on": date_text(admitted),
        "sentence_start": date_text(start),
        "sentence_end": date_text(end),
        "custody_status": pick(CUSTODY, status),
        "prison": with_nulls(prison, no_prison),
    })
    return Rows(frame, pos, {"status": status, "admitted": admitted})


def business_rows(rng: np.random.Generator, ppl: People, as_of_days: int, key_start: int) -> Rows:
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
    brand = join(pick(BUSINESS_WORDS, w1), pick(BUSINESS_WORDS, w2))
    dname = pick(place.district_names, district)
    company = join(pa.scalar(place.short), brand, pick(INDUSTRIES, rng.integers(0, len(INDUSTRIES), n)),
                   pa.scalar("有限公司"))
    shop = join(pa.scalar(place.name), dname, brand, pick(SHOPS, rng.integers(0, len(SHOPS), n)))
    coop = join(pa.scalar(place.name), dname, brand, pick(CROPS, rng.integers(0, len(CROPS), n)),
                pa.scalar("专业合作社"))
    name = pc.if_else(pa.array(kind == 1), company, pc.if_else(pa.array(kind == 2), shop, coop))
    status = rng.choice(len(BUSINESS_STATUS), n, p=[0.55, 0.25, 0.13, 0.07])
    established = rng.integers(day_number(date(1995, 1, 1)), as_of_days - 400, n)
    changed_day = past_days(rng, as_of_days, n)
    changed = local_seconds(rng, changed_day, 8, 18)
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
    frame = feed_frame("market_regulation.businesses", {
        "uscc": arrow_text(uscc[order]),
        "name": name.take(pa.array(order)),
        "legal_rep_id_number": arrow_text(ppl.id_mat[order]),
        "legal_rep_name": ppl.name.take(pa.array(order)),
        "status": pick(BUSINESS_STATUS, status[order]),
        "established_on": date_text(established[order]),
        "deregistered_on": with_nulls(date_text(deregistered[order]), status[order] != 2),
        "changed_at": time_text(changed[order]),
    })
    return Rows(frame, order)


# --- the prisoners and businesses of a city ----------------------------------------------------


@dataclass
class Prisoners:
    """The city's prisoners (index i is the i-th row of the prisoners list): the first ``len(paid)`` are
    the pensioners planted as paid in custody."""

    pos: np.ndarray  # their positions in the city
    paid: np.ndarray  # the planted pensioners' positions in the city (the first rows)
    status: np.ndarray  # CUSTODY index
    start: np.ndarray  # sentence start (day number)
    end: np.ndarray  # sentence end
    admitted: np.ndarray  # admission day
    rows: Rows  # the justice bureau's rows; pos: the person in the city

    def planted(self) -> np.ndarray:
        """bool per prisoner: a pensioner planted as paid in custody."""
        return np.arange(len(self.pos)) < len(self.paid)


def draw_prisoners(rng: np.random.Generator, ppl: People, age: np.ndarray, alive: np.ndarray, on_roll: np.ndarray,
                   as_of_days: int) -> Prisoners:
    """Prisoners: some pensioners (a few of whom are planted as still paid in custody), mostly younger adults."""
    n = ppl.n
    k_pris = plant_count(n, 0.003, 6)
    k_paid = min(plant_count(n, 0.0004, 3), k_pris)
    roll_alive = np.flatnonzero(on_roll & alive & (age <= 85))
    paid_in_custody = np.sort(rng.choice(roll_alive, min(k_paid, len(roll_alive)), replace=False))
    eligible = alive & (age >= 18) & (age <= 75)
    eligible[paid_in_custody] = False
    others_pool = np.flatnonzero(eligible)
    others = np.sort(rng.choice(others_pool, min(k_pris - len(paid_in_custody), len(others_pool)), replace=False))
    prisoner_pos = np.concatenate([paid_in_custody, others])
    forced = np.concatenate([np.zeros(len(paid_in_custody), dtype=np.int64),
                             rng.choice(len(CUSTODY), len(others), p=[0.70, 0.10, 0.08, 0.12])])
    custody = custody_draw(rng, len(prisoner_pos), as_of_days, status=forced)
    # The planted ones were admitted at least two months ago, so they were paid in custody.
    late = np.maximum(custody[3] - (as_of_days - 62), 0) * (np.arange(len(prisoner_pos)) < len(paid_in_custody))
    custody = (custody[0], custody[1] - late, custody[2] - late, custody[3] - late)
    justice = justice_rows(rng, ppl.take(prisoner_pos), as_of_days, int(rng.integers(1, 10**6)), custody=custody)
    justice.pos = prisoner_pos[justice.pos]
    return Prisoners(prisoner_pos, paid_in_custody, *custody, rows=justice)


def draw_businesses(rng: np.random.Generator, ppl: People, age: np.ndarray, alive: np.ndarray,
                    as_of_days: int) -> tuple[Rows, np.ndarray]:
    """Businesses, one for every 20 people, represented by living adults: (their rows, the representatives'
    positions in the city, one per business before the rows' order: rows.pos maps a row to its business)."""
    k_bus = max(1, ppl.n // 20)
    reps_pool = np.flatnonzero(alive & (age >= 22) & (age <= 80))
    reps = rng.choice(reps_pool, k_bus, replace=len(reps_pool) < k_bus)
    business = business_rows(rng, ppl.take(reps), as_of_days, int(rng.integers(1, 10**6)))
    return business, reps
