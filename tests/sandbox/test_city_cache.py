"""The run's cities (conftest's ``city_of``, behind ``sandbox_factory``; testkit.cached_city): a city is generated
once per (people, seed, as_of) in a test run, and every caller gets a copy that is the freshly generated city,
frame for frame and byte for byte (the golden test's fingerprints: columns, dtypes, row order, every value), and
its own: what one test changes in its copy, the next copy does not show."""

from __future__ import annotations

import json

from test_generator_golden import fingerprint

from sandbox.city import DEFAULT_AS_OF, DEFAULT_SEED, generate_city

PEOPLE, SEED = 1500, 42


def _prints(city) -> dict[str, str]:
    out = {f"city/{name}": fingerprint(frame) for name, frame in city.feeds.items()}
    out |= {f"office/{name}": fingerprint(frame) for name, frame in city.office.items()}
    out |= {name: fingerprint(getattr(city, name)) for name in ("roll", "contributions", "subsidies")}
    out["truths"] = json.dumps(city.truths, ensure_ascii=False, default=str)
    out["city"] = repr((city.people, city.seed, city.as_of))
    return out


def test_a_cached_city_is_the_generated_one_and_every_copy_is_its_own(city_of):
    fresh = _prints(generate_city(PEOPLE, seed=SEED))
    first = city_of(PEOPLE, SEED)
    assert _prints(first) == fresh and len(fresh) > 15
    first.feeds["police.deaths"].iloc[0, 0] = "changed"  # what a test or a sandbox may do to its copy
    first.feeds["extra"] = first.roll
    first.truths.clear()
    second = city_of(PEOPLE, SEED)
    assert second is not first and _prints(second) == fresh


def test_the_defaults_are_the_generators(city_of):
    assert _prints(city_of(300)) == _prints(generate_city(300, seed=DEFAULT_SEED, as_of=DEFAULT_AS_OF))
    assert _prints(city_of(300, 7)) != _prints(city_of(300))
