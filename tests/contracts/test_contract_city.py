"""On a generated city: the quarantined rows are exactly the generator's planted invalid rows, each
breaking exactly the rules its truth names, also after the agencies' transports; every row rule of
every contract is planted somewhere; and no identity number reaches the report or the Data Docs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from contracts import load_contract
from contracts.docs import write_site
from contracts.rules import contract_rules
from contracts.validate import RULE_SEPARATOR, RULES_COLUMN, Checked, check
from sandbox.city import DEFAULT_AS_OF, FEEDS, City, generate_city, generate_feed
from sandbox.city.invalid import UNREPAIRABLE, invalid_count, invalid_slots
from sandbox.city.specs import NOT_PLANTED

#: a city whose bills hold every kind of invalid row; its small feeds (religious affairs: ~25 rows)
#: hold a few kinds, so the streamed samples below carry every kind of every feed
PEOPLE = 20_000
SAMPLE_ROWS = 3_000


@pytest.fixture(scope="module")
def city() -> City:
    return generate_city(PEOPLE, seed=42)


@pytest.fixture(scope="module")
def checked(city: City) -> dict[str, Checked]:
    return {feed: check(feed, frame, today=DEFAULT_AS_OF) for feed, frame in city.feeds.items()}


@pytest.fixture(scope="module")
def samples() -> dict[str, tuple[pd.DataFrame, list[dict], Checked]]:
    """Per feed: SAMPLE_ROWS streamed rows, their planted invalid rows, and the check."""
    out = {}
    for feed in FEEDS:
        invalid: list[dict] = []
        frame = pd.concat(list(generate_feed(feed, SAMPLE_ROWS, seed=5, invalid=invalid)), ignore_index=True)
        out[feed] = (frame, invalid, check(feed, frame, today=DEFAULT_AS_OF))
    return out


def _row_rules(feed: str) -> set[str]:
    """The contract's row rules the generator's frames can break: the structural ones (row_shape,
    key_conflict) are found by the transports while they read (tests/connectors, tests/connectors/test_hostile_input.py)."""
    return {r.id for r in contract_rules(load_contract(feed)).row_rules if not r.structural}


def _assert_exactly_the_planted(feed: str, frame: pd.DataFrame, invalid: list[dict], checked: Checked) -> None:
    key = load_contract(feed).key[0]
    planted = {i["key"]: i for i in invalid}
    assert len(planted) == len(invalid), "planted keys repeat"
    quarantined = dict(zip(checked.quarantined[key], checked.quarantined[RULES_COLUMN]))
    assert set(quarantined) == set(planted)
    wrong = {k: (planted[k]["kind"], planted[k]["rules"], sorted(quarantined[k].split(RULE_SEPARATOR)))
             for k in planted if sorted(quarantined[k].split(RULE_SEPARATOR)) != planted[k]["rules"]}
    assert not wrong, wrong
    assert len(checked.valid) + len(quarantined) == len(frame)
    assert not checked.rejected, checked.reject_reason


@pytest.mark.parametrize("feed", FEEDS)
def test_quarantined_rows_are_exactly_the_planted_invalid_rows(city: City, checked: dict[str, Checked],
                                                                feed: str) -> None:
    invalid = [i for i in city.truths["invalid"] if i["feed"] == feed]
    # the bills: planted among the rows drawn before the medical stream's plants (sandbox/city/medical.py)
    drawn = city.truths["counts"]["bills_before_medical_plants"] if feed == "medical_insurance.bills" else None
    assert len(invalid) == invalid_count(drawn or len(city.feeds[feed]))
    _assert_exactly_the_planted(feed, city.feeds[feed], invalid, checked[feed])


@pytest.mark.parametrize("feed", FEEDS)
def test_streamed_rows_quarantine_exactly_their_planted_invalid_rows(samples, feed: str) -> None:
    frame, invalid, checked = samples[feed]
    _assert_exactly_the_planted(feed, frame, invalid, checked)


def test_every_row_rule_of_every_contract_is_planted(city: City, samples) -> None:
    for feed in FEEDS:
        rules = _row_rules(feed)
        assert set(NOT_PLANTED[feed]) <= rules, feed  # the exceptions name real rules
        in_city = {r for i in city.truths["invalid"] if i["feed"] == feed for r in i["rules"]}
        in_sample = {r for i in samples[feed][1] for r in i["rules"]}
        assert in_sample == rules - set(NOT_PLANTED[feed]), feed
        assert in_city <= in_sample, feed
        # a feed with a row for each kind has every kind (the bills of this city; every sample)
        kinds = {(i["kind"], i["column"]) for i in city.truths["invalid"] if i["feed"] == feed}
        if invalid_count(len(city.feeds[feed])) >= len(invalid_slots(feed)):
            assert kinds == set(invalid_slots(feed)) and in_city == in_sample, feed
        assert {(i["kind"], i["column"]) for i in samples[feed][1]} == set(invalid_slots(feed)), feed
    assert invalid_count(len(city.feeds["medical_insurance.bills"])) >= len(invalid_slots("medical_insurance.bills"))


def test_identity_number_cells_are_recorded_with_their_clean_value(city: City, checked: dict[str, Checked]) -> None:
    invalid = {(i["feed"], i["key"]): i for i in city.truths["invalid"]}
    quarantined = {feed: set(c.quarantined[load_contract(feed).key[0]]) for feed, c in checked.items()}
    id_kinds = {i["kind"] for i in invalid.values() if i["kind"] in UNREPAIRABLE}
    assert {m["kind"] for m in city.truths["invalid_ids"]} == id_kinds
    for m in city.truths["invalid_ids"]:
        truth = invalid[(m["feed"], m["key"])]
        assert (truth["kind"], truth["column"]) == (m["kind"], m["column"])
        assert m["key"] in quarantined[m["feed"]]


def test_repairable_quirks_are_normalised_not_quarantined(city: City, checked: dict[str, Checked]) -> None:
    repaired = 0
    for m in city.truths["messy"]:
        if m["kind"] in UNREPAIRABLE:
            continue
        valid = checked[m["feed"]].valid
        row = valid[valid[load_contract(m["feed"]).key[0]] == m["key"]]
        assert len(row) == 1 and row[m["column"]].iloc[0] == m["clean"], m["kind"]
        repaired += 1
    assert repaired >= 10


def _identity_numbers(city: City) -> set[str]:
    numbers = set(city.roll["id_number"])
    for m in city.truths["messy"]:
        if "id" in m["column"]:
            numbers |= {v.strip() for v in (m["value"], m["clean"]) if v is not None}
    for frame in city.feeds.values():
        for column in ("id_number", "legal_rep_id_number"):
            if column in frame:
                numbers |= {str(v).strip() for v in frame[column].dropna()}
    return {n for n in numbers if len(n) >= 15}


def _leaked(numbers: set[str], text: str) -> list[str]:
    """The numbers that occur in text (looked for in its runs of number-like characters)."""
    runs = re.findall(r"[0-9A-Za-z.+\-\uff10-\uff19\uff38\uff58]{15,}", text)
    widths = {len(n) for n in numbers}
    found = {run[i:i + width] for run in runs for width in widths for i in range(len(run) - width + 1)}
    return sorted(numbers & found)


def test_no_identity_number_in_the_report_or_the_data_docs(city: City, checked: dict[str, Checked],
                                                           tmp_path: Path) -> None:
    numbers = _identity_numbers(city)
    reports = json.dumps([c.report for c in checked.values()], ensure_ascii=False, default=str)
    assert not _leaked(numbers, reports)
    index = write_site(tmp_path / "reports" / "2026-11-01", checked.values())
    pages = list(index.parent.glob("*.html"))
    assert {p.name for p in pages} == {"index.html"} | {f"{feed}.html" for feed in FEEDS}
    text = "".join(p.read_text(encoding="utf-8") for p in pages)
    assert "id_number.valid" in text and "%" in text
    assert not _leaked(numbers, text)
    names = set(city.roll["name"])
    assert not [n for n in names if len(n) >= 3 and f">{n}<" in text]


def test_every_kind_survives_each_agency_transport(samples, tmp_path) -> None:
    """The streamed rows served by the sandbox agencies (REST, CSV, xlsx, SQLite) and pulled by the
    connectors: every row arrives, and the quarantine is still exactly the planted rows and rules."""
    from datetime import date, timedelta

    from connectors import connector_for
    from fundx.core.settings import reload_settings
    from fundx.core.timeutil import Window
    from sandbox.agencies import Sandbox
    from sandbox.city import DEFAULT_SEED

    small = generate_city(50, seed=1)
    feeds = {feed: samples[feed][0] for feed in FEEDS}
    city = City(seed=DEFAULT_SEED, people=small.people, as_of=DEFAULT_AS_OF, roll=small.roll, feeds=feeds, truths={})
    window = Window.of("2020-01-01", date.today() + timedelta(days=2))  # the as-of month's drop is delivered now
    with pytest.MonkeyPatch.context() as mp, Sandbox(tmp_path / "agencies", city=city) as sb:
        for name, value in sb.env.items():
            mp.setenv(name, value)
        settings = reload_settings()
        for feed in FEEDS:
            pulled = connector_for(feed, settings).extract(window)
            assert pulled.rows == len(feeds[feed]), feed
            _assert_exactly_the_planted(feed, pulled.frame, samples[feed][1],
                                        check(feed, pulled.frame, today=DEFAULT_AS_OF))
    reload_settings()
