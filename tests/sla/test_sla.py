"""Service levels compiled from the contracts, and the pure evaluator, on a fixed clock.

No ledger, no server: facts are written by hand, ``now`` is a constant. The night 2026-10-06 is a
Tuesday and the 6th, so every feed — daily, weekly (Tuesday) and monthly (the 6th) — is due on it.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from datetime import date, datetime, time, timedelta
from functools import cache, lru_cache
from pathlib import Path

import pytest
import yaml
from open_data_contract_standard.model import OpenDataContractStandard

from contracts import contract_names, contract_path, load_contract
from contracts.sla.findings import FeedNight, Finding, NightRun, evaluate, transitions
from contracts.sla.policy import DRIVER_SEVERITY, all_slas, compile_sla, feed_sla
from fundx.core.errors import ConfigurationError
from fundx.core.timeutil import SHANGHAI

NIGHT = date(2026, 10, 6)  # a Tuesday, the 6th: every feed is due
BUDGET = timedelta(hours=4)
SLAS = all_slas()
FEEDS = sorted(SLAS)


def at(hh: int, mm: int = 0, day: date = NIGHT) -> datetime:
    """A moment in Asia/Shanghai on ``day``."""
    return datetime.combine(day, time(hh, mm), tzinfo=SHANGHAI)


MORNING = at(9)  # the monitor's clock: after every deadline (06:00)
EARLY = at(3)  # before every deadline


def fact(feed: str = "police.deaths", night: date = NIGHT, **kw) -> FeedNight:
    """A feed's night that meets every rule, unless ``kw`` says otherwise."""
    values = dict(delivered_at=at(2, 30, night), outcome="pulled", rows=400, quarantined=0,
                  history=[400] * 28, event_lag_days={"p50": 3.0, "p90": 9.0})
    values.update(kw)
    return FeedNight(feed, night, **values)


def judged(findings: list[Finding]) -> dict[str, bool]:
    return {f.rule: f.breached for f in findings}


def breaches(findings: list[Finding]) -> list[tuple[str | None, str]]:
    return [(f.feed, f.rule) for f in findings if f.breached]


# --- compiling the contracts -------------------------------------------------------------------


def _yaml_sla(feed: str) -> dict[str, dict]:
    document = yaml.safe_load(contract_path(feed).read_text(encoding="utf-8"))
    return {item["property"]: item for item in document["slaProperties"]}


def _yaml_row_count(feed: str) -> dict | None:
    """The contract's rowCountVsHistory rule; None for a feed without one (the office's: written in monthly runs)."""
    document = yaml.safe_load(contract_path(feed).read_text(encoding="utf-8"))
    rules = [q for q in document["schema"][0].get("quality", []) if q.get("implementation", {}).get("rule") == "rowCountVsHistory"]
    assert len(rules) <= 1, feed
    return rules[0] if rules else None


@pytest.mark.parametrize("feed", contract_names())
def test_each_contract_compiles_to_the_figures_its_yaml_says(feed: str) -> None:
    sla, props, band = feed_sla(feed), _yaml_sla(feed), _yaml_row_count(feed)
    assert sla.feed == feed and sla.source == f"contracts/{feed}.odcs.yaml"
    assert sla.period == {"d": "day", "w": "week", "m": "month"}[props["frequency"]["unit"]]
    assert sla.schedule == (props["frequency"].get("schedule") if sla.period != "day" else None)
    toa = props["timeOfAvailability"]
    if toa.get("unit") == "d":
        assert (sla.available_time, sla.available_day) == (None, int(toa["value"]))
    else:
        assert sla.available_time.strftime("%H:%M") == toa["value"]
    assert sla.latency == timedelta(days=props["latency"]["value"])
    assert sla.latency_element == props["latency"]["element"].split(".")[-1]
    assert sla.error_rate == props["errorRate"]["value"]
    assert sla.deadline.strftime("%H:%M") == props["deliveryDeadline"]["value"]
    assert sla.event_latency == timedelta(days=props["eventLatency"]["value"])
    assert sla.event_element == props["eventLatency"]["element"].split(".")[-1]
    if band is None:  # no band: the night's row count is not judged (no short or long findings)
        assert sla.row_count is None
    else:
        impl = band["implementation"]
        assert sla.row_count is not None
        assert (sla.row_count.nights, sla.row_count.min_nights, sla.row_count.min_ratio, sla.row_count.max_ratio) == (
            impl["nights"], impl["minNights"], impl["minRatio"], impl["maxRatio"])
        assert sla.row_count.rule == band["name"]
    delivery = DRIVER_SEVERITY[props["deliveryDeadline"]["driver"]]
    assert {r: sla.severity(r) for r in ("missing", "late", "failed")} == dict.fromkeys(("missing", "late", "failed"), delivery)
    assert sla.severity("error_rate") == DRIVER_SEVERITY[props["errorRate"]["driver"]]
    assert sla.severity("event_latency") == DRIVER_SEVERITY[props["eventLatency"]["driver"]]
    if band is not None:
        assert sla.severity("short") == sla.severity("long") == {"error": "critical", "warning": "warning"}[band["severity"]]


# feed -> period, a due night, a night that is not due, the deadline on the due night, severities
COMPILED = [
    ("civil_affairs.deaths", "day", date(2026, 11, 23), None, at(6, 0, date(2026, 11, 23)), "critical"),
    ("police.deaths", "day", date(2026, 11, 24), None, at(6, 0, date(2026, 11, 24)), "critical"),
    ("medical_insurance.bills", "day", date(2026, 11, 23), None, at(6, 0, date(2026, 11, 23)), "warning"),
    ("market_regulation.businesses", "day", date(2026, 11, 23), None, at(6, 0, date(2026, 11, 23)), "warning"),
    ("justice.prisoners", "week", date(2026, 11, 24), date(2026, 11, 23), at(6, 0, date(2026, 11, 24)), "critical"),
    ("religious_affairs.deaths", "month", date(2026, 12, 6), date(2026, 12, 5), at(6, 0, date(2026, 12, 6)), "critical"),
]


@pytest.mark.parametrize(("feed", "period", "due", "not_due", "deadline", "delivery"), COMPILED)
def test_due_nights_deadlines_and_severities(feed, period, due, not_due, deadline, delivery) -> None:
    sla = SLAS[feed]
    assert sla.period == period
    assert sla.due(due) and sla.deadline_at(due) == deadline
    if not_due is not None:
        assert not sla.due(not_due)
    assert sum(sla.due(NIGHT + timedelta(days=k)) for k in range(28)) == {"day": 28, "week": 4, "month": 1}[period]
    assert sla.severity("late") == delivery


def test_slas_are_cached_and_cover_every_contract() -> None:
    assert sorted(all_slas()) == contract_names()
    assert all_slas()["police.deaths"] is feed_sla("police.deaths")
    assert SLAS["medical_insurance.bills"].allowance == timedelta(hours=5, minutes=30)
    assert SLAS["justice.prisoners"].allowance is None


def test_row_count_band_is_the_validators_formula() -> None:
    band = SLAS["police.deaths"].row_count  # 28 nights, at least 7, 0.25 .. 4.0
    assert band.bounds([400] * 6) is None
    assert band.bounds([400] * 7) == (100, 1600)
    assert band.bounds([1] * 100 + [10, 11, 13, 9, 10, 12, 10]) == (0, 4)  # only the last 28 count
    assert band.bounds([3, 5, 7, 9, 11, 13, 15, 2]) == (2, 32)  # median 8: floor 2.0, ceil 32.0


# --- broken contracts --------------------------------------------------------------------------


def _index(doc: dict, name: str) -> int:
    return next(i for i, s in enumerate(doc["slaProperties"]) if s["property"] == name)


def _prop(doc: dict, name: str) -> dict:
    return doc["slaProperties"][_index(doc, name)]


def _drop(doc: dict, name: str) -> None:
    del doc["slaProperties"][_index(doc, name)]


def _row_count_index(doc: dict) -> int:
    return next(i for i, q in enumerate(doc["schema"][0]["quality"])
                if q.get("implementation", {}).get("rule") == "rowCountVsHistory")


# (feed, change, the key the message names given the document, a fragment of the message)
BROKEN = [
    ("police.deaths", lambda d: _drop(d, "deliveryDeadline"), lambda d: "slaProperties", "has no deliveryDeadline"),
    ("police.deaths", lambda d: _drop(d, "eventLatency"), lambda d: "slaProperties", "has no eventLatency"),
    ("police.deaths", lambda d: _drop(d, "errorRate"), lambda d: "slaProperties", "has no errorRate"),
    ("police.deaths", lambda d: _prop(d, "deliveryDeadline").update(value="6 am"),
     lambda d: f"slaProperties.{_index(d, 'deliveryDeadline')}.value", 'must be "HH:MM"'),
    ("police.deaths", lambda d: _prop(d, "deliveryDeadline").update(value=360),  # 6:00 unquoted, as YAML reads it
     lambda d: f"slaProperties.{_index(d, 'deliveryDeadline')}.value", "must be a quoted"),
    ("police.deaths", lambda d: _prop(d, "deliveryDeadline").update(value="01:15"),
     lambda d: f"slaProperties.{_index(d, 'deliveryDeadline')}.value", "not after the time of availability 01:30"),
    ("police.deaths", lambda d: _prop(d, "deliveryDeadline").update(driver="urgent"),
     lambda d: f"slaProperties.{_index(d, 'deliveryDeadline')}.driver", "must be one of regulatory"),
    ("police.deaths", lambda d: _prop(d, "deliveryDeadline").pop("driver"),
     lambda d: f"slaProperties.{_index(d, 'deliveryDeadline')}.driver", "must be one of regulatory"),
    ("police.deaths", lambda d: d["slaProperties"].append(dict(_prop(d, "deliveryDeadline"))),
     lambda d: f"slaProperties.{len(d['slaProperties']) - 1}.property", "deliveryDeadline is listed twice"),
    ("police.deaths", lambda d: _prop(d, "errorRate").update(value=2),
     lambda d: f"slaProperties.{_index(d, 'errorRate')}.value", "between 0 and 1"),
    ("police.deaths", lambda d: _prop(d, "errorRate").update(value="low"),
     lambda d: f"slaProperties.{_index(d, 'errorRate')}.value", "must be a number"),
    ("police.deaths", lambda d: _prop(d, "errorRate").update(unit="ppm"),
     lambda d: f"slaProperties.{_index(d, 'errorRate')}.unit", "takes no unit"),
    ("police.deaths", lambda d: _prop(d, "eventLatency").update(element="police_deaths.died_on"),
     lambda d: f"slaProperties.{_index(d, 'eventLatency')}.element", "names no column"),
    ("police.deaths", lambda d: _prop(d, "eventLatency").update(element="prisons.death_date"),
     lambda d: f"slaProperties.{_index(d, 'eventLatency')}.element", "names no object"),
    ("police.deaths", lambda d: _prop(d, "eventLatency").update(element="police_station"),
     lambda d: f"slaProperties.{_index(d, 'eventLatency')}.element", "not a date or timestamp column"),
    ("police.deaths", lambda d: _prop(d, "eventLatency").pop("element"),
     lambda d: f"slaProperties.{_index(d, 'eventLatency')}.element", "is required"),
    ("police.deaths", lambda d: _prop(d, "eventLatency").update(unit="fortnight"),
     lambda d: f"slaProperties.{_index(d, 'eventLatency')}.unit", "needs a unit"),
    ("police.deaths", lambda d: _prop(d, "latency").update(value=-1),
     lambda d: f"slaProperties.{_index(d, 'latency')}.value", "positive number"),
    ("police.deaths", lambda d: _prop(d, "frequency").update(unit="y"),
     lambda d: f"slaProperties.{_index(d, 'frequency')}.unit", "d, w or m"),
    ("police.deaths", lambda d: _prop(d, "frequency").update(value=2),
     lambda d: f"slaProperties.{_index(d, 'frequency')}.value", "must be 1"),
    ("police.deaths", lambda d: _prop(d, "frequency").update(schedule="0 2 * * 1"),
     lambda d: f"slaProperties.{_index(d, 'frequency')}.schedule", "must fire every day"),
    ("police.deaths", lambda d: _prop(d, "frequency").update(schedule="at two"),
     lambda d: f"slaProperties.{_index(d, 'frequency')}.schedule", "is not a cron expression"),
    ("police.deaths", lambda d: _prop(d, "frequency").update(schedule="0 7 * * *"),
     lambda d: f"slaProperties.{_index(d, 'deliveryDeadline')}.value", "not after the scheduled pull 07:00"),
    ("police.deaths", lambda d: _prop(d, "timeOfAvailability").update(value="25:00"),
     lambda d: f"slaProperties.{_index(d, 'timeOfAvailability')}.value", 'must be "HH:MM"'),
    ("police.deaths", lambda d: d["schema"][0]["quality"][_row_count_index(d)].update(severity="urgent"),
     lambda d: f"schema.0.quality.{_row_count_index(d)}.severity", "sets the severity of short and long"),
    ("justice.prisoners", lambda d: [_prop(d, "frequency").pop(k) for k in ("scheduler", "schedule")],
     lambda d: f"slaProperties.{_index(d, 'frequency')}.schedule", "a weekly feed needs scheduler: cron"),
    ("justice.prisoners", lambda d: _prop(d, "frequency").update(schedule="0 2 * * 1-2"),
     lambda d: f"slaProperties.{_index(d, 'frequency')}.schedule", "names one weekday"),
    ("religious_affairs.deaths", lambda d: _prop(d, "frequency").update(schedule="0 2 3 * *"),
     lambda d: f"slaProperties.{_index(d, 'timeOfAvailability')}.value", "not before the due day"),
    ("religious_affairs.deaths", lambda d: _prop(d, "timeOfAvailability").update(value="fifth"),
     lambda d: f"slaProperties.{_index(d, 'timeOfAvailability')}.value", "a day of the month"),
]


_contract = lru_cache(maxsize=None)(load_contract)


@cache
def _document(feed: str) -> dict:
    return yaml.safe_load(contract_path(feed).read_text(encoding="utf-8"))


@pytest.mark.parametrize(("feed", "change", "key", "fragment"), BROKEN)
def test_a_broken_sla_is_a_configuration_error_naming_file_and_key(feed, change, key, fragment) -> None:
    document = copy.deepcopy(_document(feed))
    change(document)
    where = f"contracts/{feed}.edited.odcs.yaml"
    contract = dataclasses.replace(_contract(feed), raw=OpenDataContractStandard.model_validate(document), source=where)
    with pytest.raises(ConfigurationError) as caught:
        compile_sla(contract)
    message = str(caught.value)
    assert message.startswith(f"{where}: {key(document)}: "), message
    assert fragment in message, message


def test_a_contract_file_without_slas_is_named(tmp_path: Path) -> None:
    document = copy.deepcopy(_document("police.deaths"))
    _drop(document, "deliveryDeadline")
    path = tmp_path / "police.deaths.odcs.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"police\.deaths\.odcs\.yaml: slaProperties: has no deliveryDeadline") as caught:
        compile_sla(load_contract("police.deaths", path=path))
    assert str(caught.value).startswith(str(path)) and "slaProperties" in caught.value.action


# --- each rule: breached, met, not yet judged --------------------------------------------------

MET = {"missing": False, "late": False, "failed": False, "short": False, "long": False, "error_rate": False,
       "event_latency": False}

# (name, the feed's night, now, the rules judged and whether each is breached)
RULES = [
    ("on time", fact(), MORNING, MET),
    ("on time, judged before the deadline", fact(), EARLY, MET),
    ("delivered at the deadline is on time", fact(delivered_at=at(6)), MORNING, MET),
    ("late", fact(delivered_at=at(6, 1)), MORNING, MET | {"late": True}),
    ("missing, before the deadline: not judged", fact(delivered_at=None, outcome="missing", rows=None), EARLY, {}),
    ("missing, at the deadline", fact(delivered_at=None, outcome="missing", rows=None), at(6), {"missing": True}),
    ("missing, after the deadline", fact(delivered_at=None, outcome="missing", rows=None), MORNING, {"missing": True}),
    ("failed, before the deadline", fact(delivered_at=None, outcome="failed", rows=None), EARLY, {"failed": True}),
    ("failed, after the deadline", fact(delivered_at=None, outcome="failed", rows=None), MORNING, {"failed": True}),
    ("short", fact(rows=99), MORNING, MET | {"short": True}),
    ("at the band's floor", fact(rows=100), MORNING, MET),
    ("long", fact(rows=1601), MORNING, MET | {"long": True}),
    ("at the band's ceiling", fact(rows=1600), MORNING, MET),
    ("short, too little history: band not judged", fact(rows=12, history=[400] * 6),
     MORNING, {k: v for k, v in MET.items() if k not in ("short", "long")}),
    ("error rate above", fact(quarantined=9), MORNING, MET | {"error_rate": True}),  # 2.25 % > 2 %
    ("error rate at the limit", fact(quarantined=8), MORNING, MET),  # 2.0 %
    ("held by the batch policy", fact(outcome="held", quarantined=50), MORNING, MET | {"error_rate": True}),
    ("held though few rows failed", fact(outcome="held", quarantined=1), MORNING, MET | {"error_rate": True}),
    ("held for being short: short only", fact(outcome="held", rows=12, quarantined=0), MORNING, MET | {"short": True}),
    ("nothing delivered to rate, zero rows", fact(rows=0, history=[]), MORNING,
     {k: v for k, v in MET.items() if k not in ("short", "long")}),
    ("event latency above", fact(event_lag_days={"p50": 20.0, "p90": 70.5}), MORNING, MET | {"event_latency": True}),
    ("event latency at the limit", fact(event_lag_days={"p90": 70}), MORNING, MET),
    ("event latency not measured", fact(event_lag_days=None), MORNING, {k: v for k, v in MET.items() if k != "event_latency"}),
    ("weekly feed, not its night: no delivery expected", fact("justice.prisoners", date(2026, 10, 5), delivered_at=None,
     outcome="missing", rows=None, event_lag_days=None), at(9, 0, date(2026, 10, 5)), {}),
    ("weekly feed, not its night: an empty pull", fact("justice.prisoners", date(2026, 10, 5), rows=0, event_lag_days=None),
     at(9, 0, date(2026, 10, 5)), {"failed": False, "error_rate": False}),
    ("weekly feed, not its night: a failure still counts", fact("justice.prisoners", date(2026, 10, 5), delivered_at=None,
     outcome="failed", rows=None), at(9, 0, date(2026, 10, 5)), {"failed": True}),
    ("weekly feed, its night: missing", fact("justice.prisoners", delivered_at=None, outcome="missing", rows=None,
     event_lag_days=None), MORNING, {"missing": True}),
    ("monthly feed, its night: late", fact("religious_affairs.deaths", delivered_at=at(7), history=[400] * 3),
     MORNING, MET | {"late": True}),
]


@pytest.mark.parametrize(("name", "night", "now", "expected"), RULES, ids=[r[0] for r in RULES])
def test_each_rule(name, night: FeedNight, now: datetime, expected: dict[str, bool]) -> None:
    findings = evaluate(SLAS, [night], None, now=now, night_budget=BUDGET)
    assert judged(findings) == expected
    sla = SLAS[night.feed]
    for f in findings:
        assert (f.night, f.feed, f.severity) == (night.night, night.feed, sla.severity(f.rule))
        assert f.expected and f.observed


def test_findings_say_what_was_expected_and_observed() -> None:
    findings = {f.rule: f for f in evaluate(SLAS, [fact(delivered_at=at(7, 12), rows=12, quarantined=1,
                                                         event_lag_days={"p90": 80.0})],
                                            None, now=MORNING, night_budget=BUDGET)}
    assert (findings["late"].expected, findings["late"].observed) == ("delivered by 2026-10-06 06:00", "delivered 2026-10-06 07:12")
    assert (findings["short"].expected, findings["short"].observed) == (
        ">= 100 rows (0.25 × median 400 of the last 28 deliveries)", "12 rows")
    assert findings["error_rate"].observed == "8.3 % (1 of 12 rows failed the contract)"
    assert (findings["event_latency"].expected, findings["event_latency"].observed) == (
        "p90 <= 70 d from death_date to arrival", "p90 80 d")


NIGHT_RUNS = [
    ("still running within budget: not judged", NightRun(NIGHT, at(1, 30), None, "running"), at(5), None),
    ("still running past budget", NightRun(NIGHT, at(1, 30), None, "running"), at(5, 31), True),
    ("ended within budget", NightRun(NIGHT, at(1, 30), at(3, 10), "completed"), MORNING, False),
    ("ended at the budget", NightRun(NIGHT, at(1, 30), at(5, 30), "failed"), MORNING, False),
    ("ended after the budget", NightRun(NIGHT, at(1, 30), at(5, 45), "completed"), MORNING, True),
]


@pytest.mark.parametrize(("name", "run", "now", "breached"), NIGHT_RUNS, ids=[r[0] for r in NIGHT_RUNS])
def test_night_slow(name, run: NightRun, now: datetime, breached: bool | None) -> None:
    findings = evaluate(SLAS, [], run, now=now, night_budget=BUDGET)
    assert [(f.feed, f.rule, f.breached, f.severity) for f in findings] == (
        [] if breached is None else [(None, "night_slow", breached, "warning")])


def test_no_night_run_no_night_finding() -> None:
    assert evaluate(SLAS, [], None, now=MORNING, night_budget=BUDGET) == []


def test_the_evaluator_is_pure_and_ordered() -> None:
    nights = [fact(feed, night=NIGHT - timedelta(days=k)) for feed in FEEDS for k in range(3)]
    run = NightRun(NIGHT, at(1, 30), at(2, 40), "completed")
    first = evaluate(SLAS, nights, run, now=MORNING, night_budget=BUDGET)
    shuffled = nights[:]
    random.Random(7).shuffle(shuffled)
    assert evaluate(SLAS, shuffled, [run], now=MORNING, night_budget=BUDGET) == first
    keys = [(f.night, f.feed is None, f.feed or "") for f in first]
    assert keys == sorted(keys) and first[-1].rule == "night_slow"


@pytest.mark.parametrize("bad", [
    lambda: evaluate(SLAS, [fact()], None, now=datetime(2026, 10, 6, 9), night_budget=BUDGET),
    lambda: evaluate(SLAS, [fact("nobody.sends")], None, now=MORNING, night_budget=BUDGET),
    lambda: evaluate(SLAS, [fact(), fact()], None, now=MORNING, night_budget=BUDGET),
    lambda: evaluate(SLAS, [], None, now=MORNING, night_budget=timedelta(0)),
    lambda: fact(outcome="missing"),  # delivered_at set, yet missing
    lambda: fact(delivered_at=None),  # pulled, yet no delivered_at
    lambda: fact(outcome="lost"),
    lambda: fact(delivered_at=datetime(2026, 10, 6, 2, 30)),
])
def test_malformed_facts_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        bad()


def test_nights_may_be_given_as_the_ledgers_text() -> None:
    assert FeedNight("police.deaths", "2026-10-06", None, "missing").night == NIGHT  # type: ignore[arg-type]
    assert NightRun("2026-10-06", at(1, 30), None, "running").night == NIGHT  # type: ignore[arg-type]


# --- the acceptance scenarios: one whole night of six feeds --------------------------------------


def whole_night(**changes: dict) -> list[FeedNight]:
    """Every feed's night 2026-10-06, all well; ``changes`` maps a feed to the fields that differ."""
    out = []
    for feed in FEEDS:
        limit = SLAS[feed].event_latency / timedelta(days=1)
        band = SLAS[feed].row_count
        base = fact(feed, history=[400] * (band.nights if band is not None else 28),
                    event_lag_days={"p50": limit / 4, "p90": limit / 2})
        out.append(dataclasses.replace(base, **changes.get(feed, {})))
    return out


GOOD_RUN = NightRun(NIGHT, at(1, 30), at(3, 5), "completed")

SCENARIOS = [
    ("a late agency", whole_night(**{"police.deaths": {"delivered_at": at(8, 40)}}), GOOD_RUN,
     [("police.deaths", "late")]),
    ("a missing feed", whole_night(**{"civil_affairs.deaths": {"delivered_at": None, "outcome": "missing", "rows": None}}),
     GOOD_RUN, [("civil_affairs.deaths", "missing")]),
    ("a short feed", whole_night(**{"religious_affairs.deaths": {"rows": 12}}), GOOD_RUN,
     [("religious_affairs.deaths", "short")]),
    ("a short feed the batch policy held", whole_night(**{"civil_affairs.deaths": {"rows": 12, "outcome": "held"}}),
     GOOD_RUN, [("civil_affairs.deaths", "short")]),
    ("a failing-contract feed (held)", whole_night(**{"medical_insurance.bills": {"outcome": "held", "quarantined": 90}}),
     GOOD_RUN, [("medical_insurance.bills", "error_rate")]),
    ("a failing-contract feed (schema break: failed)",
     whole_night(**{"justice.prisoners": {"delivered_at": None, "outcome": "failed", "rows": None}}),
     GOOD_RUN, [("justice.prisoners", "failed")]),
    ("a slow night", whole_night(), NightRun(NIGHT, at(1, 30), at(6, 10), "completed"), [(None, "night_slow")]),
]


def test_a_good_night_breaches_nothing() -> None:
    findings = evaluate(SLAS, whole_night(), GOOD_RUN, now=MORNING, night_budget=BUDGET)
    assert breaches(findings) == []
    banded = sum(SLAS[feed].row_count is not None for feed in FEEDS)  # a feed without a band: no short, no long
    assert len(findings) == len(FEEDS) * len(MET) - 2 * (len(FEEDS) - banded) + 1


@pytest.mark.parametrize(("name", "nights", "run", "expected"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_each_acceptance_scenario_is_exactly_one_breach(name, nights, run, expected) -> None:
    findings = evaluate(SLAS, nights, run, now=MORNING, night_budget=BUDGET)
    assert breaches(findings) == expected
    opened, recovered = transitions(set(), findings)
    assert [(f.feed, f.rule) for f in opened] == expected and recovered == []


# --- notify once, recover once ------------------------------------------------------------------


def _run(open_keys: set, findings: list[Finding]) -> tuple[list[Finding], list[Finding], set]:
    opened, recovered = transitions(open_keys, findings)
    keys = (open_keys | {f.key for f in opened}) - {f.key for f in recovered}
    return opened, recovered, keys


def _eval(*nights: FeedNight, run: NightRun | None = None, now: datetime = MORNING) -> list[Finding]:
    return evaluate(SLAS, list(nights), run, now=now, night_budget=BUDGET)


def test_a_breach_opens_once_and_recovers_once() -> None:
    late = _eval(fact(delivered_at=at(8)))
    opened, recovered, keys = _run(set(), late)
    assert [f.key for f in opened] == [(NIGHT, "police.deaths", "late")] and recovered == []
    for _ in range(3):  # the monitor runs again and again: nothing new
        assert _run(keys, late)[:2] == ([], [])
    nxt = NIGHT + timedelta(days=1)
    on_time = _eval(fact(night=nxt, delivered_at=at(2, 40, nxt)), fact(delivered_at=at(8)), now=at(9, 0, nxt))
    opened, recovered, keys = _run(keys, on_time)
    assert opened == []
    assert [(f.key, f.met_on, f.breached) for f in recovered] == [((NIGHT, "police.deaths", "late"), nxt, False)]
    assert keys == set()
    assert _run(keys, on_time)[:2] == ([], [])  # the old night's breach does not reopen


def test_a_breach_that_lasts_several_nights_is_one_breach() -> None:
    keys: set = set()
    announced = []
    for k in range(3):
        night = NIGHT + timedelta(days=k)
        opened, recovered, keys = _run(keys, _eval(fact(night=night, delivered_at=at(8, 0, night)), now=at(9, 0, night)))
        announced += opened
        assert recovered == []
    assert [f.key for f in announced] == [(NIGHT, "police.deaths", "late")]


def test_missing_then_delivered_late_recovers_missing_and_opens_late() -> None:
    missing = fact(delivered_at=None, outcome="missing", rows=None)
    assert _run(set(), _eval(missing, now=EARLY))[:2] == ([], [])  # before the deadline: nothing
    opened, recovered, keys = _run(set(), _eval(missing))
    assert [f.rule for f in opened] == ["missing"] and recovered == []
    opened, recovered, keys = _run(keys, _eval(fact(delivered_at=at(10)), now=at(11)))
    assert [f.rule for f in opened] == ["late"]
    assert [(f.rule, f.night, f.met_on) for f in recovered] == [("missing", NIGHT, NIGHT)]
    assert keys == {(NIGHT, "police.deaths", "late")}


def test_failed_then_rerun_recovers_failed_only() -> None:
    opened, _, keys = _run(set(), _eval(fact(delivered_at=None, outcome="failed", rows=None), now=EARLY))
    assert [f.rule for f in opened] == ["failed"]
    opened, recovered, keys = _run(keys, _eval(fact(delivered_at=at(4)), now=at(4, 5)))
    assert opened == [] and [f.rule for f in recovered] == ["failed"] and keys == set()


def test_a_slow_night_recovers_with_the_next_quick_one() -> None:
    opened, _, keys = _run(set(), _eval(run=NightRun(NIGHT, at(1, 30), None, "running"), now=at(6)))
    assert [f.key for f in opened] == [(NIGHT, None, "night_slow")]
    assert _run(keys, _eval(run=NightRun(NIGHT, at(1, 30), at(6, 30), "completed"), now=at(7)))[:2] == ([], [])
    nxt = NIGHT + timedelta(days=1)
    opened, recovered, keys = _run(keys, _eval(run=NightRun(nxt, at(1, 30, nxt), at(3, 0, nxt), "completed"),
                                               now=at(7, 0, nxt)))
    assert opened == [] and [(f.key, f.met_on) for f in recovered] == [((NIGHT, None, "night_slow"), nxt)]


def test_an_older_night_met_does_not_recover_a_newer_breach() -> None:
    nxt = NIGHT + timedelta(days=1)
    keys = {(nxt, "police.deaths", "short")}
    assert transitions(keys, _eval(fact()))[1] == []


def test_one_call_with_several_nights_goes_by_the_newest() -> None:
    nxt = NIGHT + timedelta(days=1)
    findings = _eval(fact(rows=12), fact(night=nxt, delivered_at=at(2, 30, nxt)), now=at(9, 0, nxt))
    assert transitions(set(), findings) == ([], [])  # short on the 6th, fine on the 7th: nothing to say
    opened, recovered = transitions({(NIGHT, "police.deaths", "short")}, findings)
    assert opened == [] and [f.key for f in recovered] == [(NIGHT, "police.deaths", "short")]
