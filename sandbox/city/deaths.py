"""The four death feeds: who dies, which sources learn of each death, and the rows each source writes.

Civil affairs (cremations), the police (household registrations cancelled), religious venues and
hospitals (death notifications) report the same deaths, each with its own delays and habits. In a
city some deaths are planted: dates 3-40 days apart in two sources (conflicts), a day apart (near
dates), and old people still known to paper registers by their 15-digit number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sandbox.city.draws import distinct_sample, local_seconds, past_days, plant_count
from sandbox.city.feeds import HOSPITAL_DEATHS, Rows
from sandbox.city.population import OLD_NUMBER_BORN_BEFORE, OLD_NUMBER_FEEDS, People
from sandbox.city.text import DAY, date_text, day_number, feed_frame, month_of, pick, serial_keys, time_text, with_nulls

#: the share of deaths that happen in hospital, which the hospital notifies (with the true date)
HOSPITAL_DEATH_SHARE = 0.55
#: the same death reported one day apart by two sources (a death near midnight): this share of the
#: deaths, at least three (the consolidated date is the later one, as for any disagreement)
NEAR_DATE_SHARE = 0.02
#: underlying causes of death (ICD-10) and how often hospitals certify them
CAUSES: tuple[tuple[str, float], ...] = (
    ("I21.9", 14), ("I63.9", 13), ("I61.9", 7), ("I50.9", 6), ("C34.9", 12), ("C16.9", 5), ("C22.0", 5),
    ("J44.1", 9), ("J18.9", 8), ("E11.9", 4), ("N18.5", 3), ("A41.9", 4), ("S06.9", 2), ("G30.9", 3),
)
_CAUSE_P = np.array([c[1] for c in CAUSES]) / sum(c[1] for c in CAUSES)


def civil_rows(rng: np.random.Generator, ppl: People, as_of_days: int, key_start: int,
               death: np.ndarray | None = None) -> Rows:
    """Cremation records: cremated 1-7 days after death, reported 0-3 days after cremation."""
    n = ppl.n
    if death is None:
        reported_day = past_days(rng, as_of_days, n)
        cremation = reported_day - rng.integers(0, 4, n)
        death = cremation - rng.integers(1, 8, n)
    else:
        cremation = death + rng.integers(1, 8, n)
        reported_day = cremation + rng.integers(0, 4, n)
    reported = local_seconds(rng, reported_day)
    no_cremation_date = rng.random(n) < 0.02
    no_home = rng.random(n) < 0.03
    pos = np.flatnonzero(reported < as_of_days * DAY)
    pos = pos[np.argsort(reported[pos], kind="stable")]
    p = ppl.take(pos)
    homes = pick(p.place.funeral_homes, p.district)
    frame = feed_frame("civil_affairs.deaths", {
        "record_id": serial_keys("MZ3301", key_start, len(pos), 10),
        "id_number": p.ids_as_written("civil_affairs.deaths"),
        "name": p.name,
        "gender": p.gender(),
        "death_date": date_text(death[pos]),
        "cremation_date": with_nulls(date_text(cremation[pos]), no_cremation_date[pos]),
        "funeral_home": with_nulls(homes, no_home[pos]),
        "reported_at": time_text(reported[pos]),
    })
    return Rows(frame, pos, {"death": death[pos], **_old_numbers("civil_affairs.deaths", p)})


def _old_numbers(feed: str, p: People) -> dict[str, np.ndarray]:
    """The rows a feed writes with a 15-digit number (``id15``), for the builders' extras."""
    if feed in OLD_NUMBER_FEEDS and p.old_number is not None:
        return {"id15": p.old_number.copy()}
    return {}


def police_rows(rng: np.random.Generator, ppl: People, as_of_days: int, key_start: int,
                death: np.ndarray | None = None, recorded_death: np.ndarray | None = None) -> Rows:
    """Household registrations cancelled for death: cancelled 3-60 days after, updated 0-2 days later."""
    n = ppl.n
    if death is None:
        updated_day = past_days(rng, as_of_days, n)
        cancelled = updated_day - rng.integers(0, 3, n)
        death = cancelled - rng.integers(3, 61, n)
    else:
        cancelled = death + rng.integers(3, 61, n)
        updated_day = cancelled + rng.integers(0, 3, n)
    recorded = death if recorded_death is None else recorded_death
    updated = local_seconds(rng, updated_day)
    station = ppl.district * 3 + rng.integers(0, 3, n)
    no_station = rng.random(n) < 0.02
    pos = np.flatnonzero(updated < as_of_days * DAY)
    pos = pos[np.argsort(updated[pos], kind="stable")]
    p = ppl.take(pos)
    frame = feed_frame("police.deaths", {
        "cancellation_id": serial_keys("HKZX3301", key_start, len(pos), 10),
        "id_number": p.ids(),
        "name": p.name,
        "gender": p.gender(),
        "birth_date": date_text(p.birth),
        "death_date": date_text(recorded[pos]),
        "cancelled_on": date_text(cancelled[pos]),
        "police_station": with_nulls(pick(ppl.place.stations, station[pos]), no_station[pos]),
        "updated_at": time_text(updated[pos]),
    })
    return Rows(frame, pos, {"death": recorded[pos]})


def religious_rows(rng: np.random.Generator, ppl: People, as_of_days: int, key_start: int,
                   death: np.ndarray | None = None, recorded_death: np.ndarray | None = None) -> Rows:
    """Deaths registered by religious venues, 0-20 days after the death."""
    n = ppl.n
    if death is None:
        registered = past_days(rng, as_of_days, n)
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
    frame = feed_frame("religious_affairs.deaths", {
        "record_id": serial_keys("ZJ3301", key_start, len(pos), 10),
        "id_number": p.ids_as_written("religious_affairs.deaths"),
        "name": p.name,
        "gender": p.gender(),
        "death_date": date_text(recorded[pos]),
        "venue": with_nulls(pick(venues, venue[pos]), no_venue[pos]),
        "registered_on": date_text(registered[pos]),
    })
    return Rows(frame, pos, {"death": recorded[pos], **_old_numbers("religious_affairs.deaths", p)})


def hospital_rows(rng: np.random.Generator, ppl: People, as_of_days: int, key_start: int,
                  death: np.ndarray | None = None) -> Rows:
    """Hospital death notifications: certified the day of death or the next, notified 0-3 days later."""
    n = ppl.n
    if death is None:
        notified_day = past_days(rng, as_of_days, n)
        certified = notified_day - rng.integers(0, 4, n)
        death = certified - rng.integers(0, 2, n)
    else:
        certified = death + rng.integers(0, 2, n)
        notified_day = certified + rng.integers(0, 4, n)
    notified = local_seconds(rng, notified_day, 7, 23)
    hospital = ppl.district * 3 + rng.integers(0, 3, n)  # a hospital of the district
    cause = rng.choice(len(CAUSES), n, p=_CAUSE_P)
    no_gender = rng.random(n) < 0.03
    pos = np.flatnonzero(notified < as_of_days * DAY)
    pos = pos[np.argsort(notified[pos], kind="stable")]
    p = ppl.take(pos)
    frame = feed_frame(HOSPITAL_DEATHS, {
        "notice_id": serial_keys("WJ3301", key_start, len(pos), 10),
        "id_number": p.ids(),
        "name": p.name,
        "gender": with_nulls(p.gender(), no_gender[pos]),
        "death_date": date_text(death[pos]),
        "certified_on": date_text(certified[pos]),
        "hospital_code": pick(ppl.place.hospitals, hospital[pos]),
        "cause_code": pick([c[0] for c in CAUSES], cause[pos]),
        "notified_at": time_text(notified[pos]),
    })
    return Rows(frame, pos, {"death": death[pos]})


# --- the deaths of a city ---------------------------------------------------------------------


def draw_deaths(rng: np.random.Generator, age: np.ndarray, as_of_days: int) -> tuple[np.ndarray, np.ndarray]:
    """Who dies in the year before as_of, and the day: more likely the older one is (Gompertz), 1.2 % on average.

    Returns (dead, death_day); the living's death_day is far in the future.
    """
    n = len(age)
    hazard = np.exp(0.1 * (age - 80))
    p_die = np.minimum(hazard * (0.012 * n / hazard.sum()), 0.95)
    dead = rng.random(n) < p_die
    death_day = np.full(n, np.iinfo(np.int64).max // 4, dtype=np.int64)
    death_day[dead] = as_of_days - rng.integers(1, 366, int(dead.sum()))
    return dead, death_day


@dataclass
class Deaths:
    """The city's deaths (index j is the j-th dead person) and what each of the first three sources knows."""

    pos: np.ndarray  # the dead people's positions in the city
    true: np.ndarray  # the day of death
    police: np.ndarray  # the death date the police record (a conflict or near date may be earlier)
    religious: np.ndarray  # the death date the religious venue records
    in_civil: np.ndarray  # bool: the source will know of the death (its report may still be late)
    in_police: np.ndarray
    in_religious: np.ndarray
    conflict: np.ndarray  # deaths with dates 3-40 days apart in two sources
    near: np.ndarray  # deaths with dates a day apart in two sources
    forced_old: np.ndarray  # deaths on the roll given a 15-digit number in the paper registers

    @property
    def count(self) -> int:
        """How many people died."""
        return len(self.pos)

    def month(self) -> np.ndarray:
        """The month of each death (month numbers)."""
        return month_of(self.true)


def draw_death_sources(rng: np.random.Generator, traits: np.random.Generator, ppl: People, dead: np.ndarray,
                       death_day: np.ndarray, on_roll: np.ndarray, as_of_days: int) -> Deaths:
    """Which death sources know of each death, with the conflicts, near dates and old numbers planted.

    ``traits``: the population's newer traits' stream (the near dates, the old numbers). The people
    given 15-digit numbers here are marked in ``ppl.old_number``.
    """
    dead_pos = np.flatnonzero(dead)
    d = len(dead_pos)
    in_police = rng.random(d) < 0.85
    in_civil = rng.random(d) < 0.90
    in_religious = rng.random(d) < 0.08
    true_death = death_day[dead_pos]
    deaths = Deaths(dead_pos, true_death, true_death.copy(), true_death.copy(), in_civil, in_police, in_religious,
                    np.array([], dtype=np.int64), np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    deaths.conflict = _plant_conflicts(rng, deaths)
    deaths.near = _plant_near_dates(traits, deaths, as_of_days)
    deaths.forced_old = _plant_old_numbers(traits, ppl, deaths, on_roll, as_of_days)
    return deaths


def _plant_conflicts(rng: np.random.Generator, deaths: Deaths) -> np.ndarray:
    """Date conflicts: the police or the religious venue wrote a death date 3-40 days too early."""
    in_civil, in_police, in_religious = deaths.in_civil, deaths.in_police, deaths.in_religious
    multi = np.flatnonzero(in_civil.astype(int) + in_police + in_religious >= 2)
    k_conf = min(len(multi), plant_count(deaths.count, 0.05, 4))
    conflict = np.sort(rng.choice(multi, k_conf, replace=False)) if k_conf else np.array([], dtype=np.int64)
    for j in conflict:  # a handful of people: a loop is fine here
        shift = int(rng.integers(3, 41))
        if in_police[j] and (not in_religious[j] or rng.random() < 0.5):
            deaths.police[j] -= shift
        else:
            deaths.religious[j] -= shift
    return conflict


def _plant_near_dates(traits: np.random.Generator, deaths: Deaths, as_of_days: int) -> np.ndarray:
    """The same death one day apart: the police or the religious venue wrote the day before (the
    consolidated date, the later one, stays the true one). Deaths 90 days before as_of at least:
    every source's report of them is in."""
    in_civil, in_police, in_religious = deaths.in_civil, deaths.in_police, deaths.in_religious
    reported = (deaths.true <= as_of_days - 90) & (in_civil.astype(int) + in_police + in_religious >= 2)
    near_pool = np.setdiff1d(np.flatnonzero((in_police | in_religious) & reported), deaths.conflict)
    near = distinct_sample(traits, near_pool, plant_count(deaths.count, NEAR_DATE_SHARE, 3))
    for j in near:
        if in_police[j] and (not in_religious[j] or traits.random() < 0.5):
            deaths.police[j] -= 1
        else:
            deaths.religious[j] -= 1
    return near


def _plant_old_numbers(traits: np.random.Generator, ppl: People, deaths: Deaths, on_roll: np.ndarray,
                       as_of_days: int) -> np.ndarray:
    """Old people who still hold their 15-digit number in paper registers are drawn with the people; a
    few more among the dead on the roll, so that some of the pensions paid after death are theirs."""
    assert ppl.old_number is not None
    dead_pos = deaths.pos
    on_roll_dead = on_roll[dead_pos] & (deaths.in_civil | deaths.in_religious) & (deaths.true <= as_of_days - 60)
    born_before = ppl.birth[dead_pos] < day_number(OLD_NUMBER_BORN_BEFORE)
    forced_old = distinct_sample(traits, np.flatnonzero(on_roll_dead & born_before), 3)
    ppl.old_number[dead_pos[forced_old]] = True
    return forced_old


@dataclass
class DeathReports:
    """The four death feeds' rows, and which of them knows of each death."""

    rows: dict[str, Rows]  # feed -> its rows; pos: the dead person (index into Deaths) of each row
    known: dict[str, np.ndarray]  # feed -> bool per death: the feed has a row of it
    n_known: np.ndarray  # per death: how many of the first three feeds know of it
    n_sources: np.ndarray  # per death: how many of the four feeds know of it

    def keys(self, feed: str) -> np.ndarray:
        """The key of each dead person's row in a feed, None where it has none (read now: before any mistake)."""
        rows = self.rows[feed]
        keys = np.full(len(self.n_known), None, dtype=object)
        keys[rows.pos] = rows.frame.iloc[:, 0].to_numpy(dtype=object)
        return keys


def report_deaths(rng: np.random.Generator, hospital: np.random.Generator, ppl: People, deaths: Deaths,
                  as_of_days: int) -> DeathReports:
    """The rows each death source writes: civil affairs, the police and religious venues from ``rng``;
    the hospitals' notifications from a stream of their own, so the frames before stay as they were
    (about HOSPITAL_DEATH_SHARE of the deaths happen in hospital, which notifies them with the true date)."""
    d, true_death = deaths.count, deaths.true
    dead_people = ppl.take(deaths.pos)
    in_civil, in_police, in_religious = deaths.in_civil, deaths.in_police, deaths.in_religious
    civil = civil_rows(rng, dead_people.take(np.flatnonzero(in_civil)), as_of_days, int(rng.integers(1, 10**6)),
                       death=true_death[in_civil])
    civil.pos = np.flatnonzero(in_civil)[civil.pos]
    police = police_rows(rng, dead_people.take(np.flatnonzero(in_police)), as_of_days, int(rng.integers(1, 10**6)),
                         death=true_death[in_police], recorded_death=deaths.police[in_police])
    police.pos = np.flatnonzero(in_police)[police.pos]
    religious = religious_rows(rng, dead_people.take(np.flatnonzero(in_religious)), as_of_days,
                               int(rng.integers(1, 10**5)), death=true_death[in_religious],
                               recorded_death=deaths.religious[in_religious])
    religious.pos = np.flatnonzero(in_religious)[religious.pos]
    rows = {"civil_affairs.deaths": civil, "police.deaths": police, "religious_affairs.deaths": religious}
    known = {}
    for f, feed_rows in rows.items():
        known[f] = np.zeros(d, dtype=bool)
        known[f][feed_rows.pos] = True
    n_known = sum(k.astype(int) for k in known.values())

    in_hospital = hospital.random(d) < HOSPITAL_DEATH_SHARE
    notified = hospital_rows(hospital, dead_people.take(np.flatnonzero(in_hospital)), as_of_days,
                             int(hospital.integers(1, 10**6)), death=true_death[in_hospital])
    notified.pos = np.flatnonzero(in_hospital)[notified.pos]
    rows[HOSPITAL_DEATHS] = notified
    known[HOSPITAL_DEATHS] = np.zeros(d, dtype=bool)
    known[HOSPITAL_DEATHS][notified.pos] = True
    n_sources = n_known + known[HOSPITAL_DEATHS]  # n_known: the sources the older draws were made with
    return DeathReports(rows, known, np.asarray(n_known), n_sources)
