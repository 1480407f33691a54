"""One feed streamed in chunks without a city, for benchmarks: memory stays bounded by one chunk."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date

import numpy as np
import pandas as pd

from fundx.core.city import City as CityFile
from sandbox.city.deaths import civil_rows, hospital_rows, police_rows, religious_rows
from sandbox.city.feeds import DEFAULT_AS_OF, DEFAULT_SEED, FEEDS, HOSPITAL_DEATHS, WAGE_INCOME, Rows
from sandbox.city.invalid import plant_invalid
from sandbox.city.messiness import first_generation, mess_up, write_name_forms
from sandbox.city.payments import bill_rows, wage_rows
from sandbox.city.place import SANDBOX_CITY, load_place
from sandbox.city.population import make_people
from sandbox.city.registers import business_rows, justice_rows
from sandbox.city.text import day_number

#: each feed's people: their age profile (population._ages), and the builder of its rows
_PROFILES: dict[str, str] = {
    "civil_affairs.deaths": "dying", "police.deaths": "dying", "religious_affairs.deaths": "dying",
    "justice.prisoners": "adult", "medical_insurance.bills": "city", "market_regulation.businesses": "adult",
    HOSPITAL_DEATHS: "dying", WAGE_INCOME: "adult",
}
_BUILDERS: dict[str, Callable[..., Rows]] = {
    "civil_affairs.deaths": civil_rows, "police.deaths": police_rows,
    "religious_affairs.deaths": religious_rows, "justice.prisoners": justice_rows,
    "medical_insurance.bills": bill_rows, "market_regulation.businesses": business_rows,
    HOSPITAL_DEATHS: hospital_rows, WAGE_INCOME: wage_rows,
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
    A = day_number(as_of)
    feed_no = FEEDS.index(feed)
    place = load_place(city)
    for chunk_no, start in enumerate(range(0, rows, chunk_rows)):
        n = min(chunk_rows, rows - start)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, feed_no, chunk_no])))
        extra = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, feed_no, chunk_no, 102])))
        ppl = make_people(rng, n, A, _PROFILES[feed], unique=False, place=place, extra=extra)
        built = _BUILDERS[feed](rng, ppl, A, start + 1)
        free = np.ones(len(built.frame), dtype=bool)
        write_name_forms(extra, feed, built.frame)
        first_generation(feed, built.frame, built.extra.get("id15"), free)
        mess_up(rng, feed, built.frame, free)
        planted, _ids = plant_invalid(rng, feed, built.frame, free, A)
        if invalid is not None:
            invalid.extend(planted)
        yield built.frame
