"""Retention read from the contracts' slaProperties: every live contract states one per kind of data, a
contract without one keeps that kind, and a malformed one is an error naming the file and the key."""

from __future__ import annotations

import pytest

from contracts import contract_names, load_contract
from contracts.retention import KINDS, Period, retention_of
from fundx.core.errors import ConfigurationError
from fundx.core.timeutil import aware

#: the contracts that state their retention (a contract added without one keeps its data: see the next test)
STATED = ("civil_affairs.deaths", "health_commission.hospital_deaths", "justice.prisoners",
          "market_regulation.businesses", "medical_insurance.bills", "police.deaths", "religious_affairs.deaths",
          "tax_bureau.wage_income")


def test_every_contract_reads_with_or_without_a_retention() -> None:
    assert set(STATED) <= set(contract_names())
    for feed in contract_names():
        retention_of(load_contract(feed))


@pytest.mark.parametrize("feed", STATED)
def test_the_contracts_state_each_retention(feed: str) -> None:
    retention = retention_of(load_contract(feed))
    assert all(retention.of(kind) is not None for kind in KINDS), retention


def _with(items: list[dict], tmp_path):
    import yaml

    from contracts import contract_path

    document = yaml.safe_load(contract_path("police.deaths").read_text(encoding="utf-8"))
    document["slaProperties"] = [p for p in document["slaProperties"] if p["property"] not in KINDS.values()] + items
    path = tmp_path / "police.deaths.odcs.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return load_contract("police.deaths", path=path)


def test_a_contract_without_retention_keeps_everything(tmp_path) -> None:
    retention = retention_of(_with([], tmp_path))
    assert all(retention.of(kind) is None for kind in KINDS)
    partial = retention_of(_with([{"property": "retention", "value": 2, "unit": "y"}], tmp_path))
    assert partial.of("store") == Period(2, "y") and partial.of("sealed") is None


@pytest.mark.parametrize("item, key", [
    ({"property": "retention", "value": 0, "unit": "d"}, "value"),
    ({"property": "retention", "value": "3", "unit": "d"}, "value"),
    ({"property": "retention", "value": 3, "unit": "h"}, "unit"),
    ({"property": "retention", "value": 3}, "unit"),
])
def test_a_malformed_retention_names_the_file_and_key(tmp_path, item, key) -> None:
    with pytest.raises(ConfigurationError, match=rf"police.deaths.odcs.yaml: slaProperties\.\d+\.{key}"):
        retention_of(_with([item], tmp_path))


def test_periods_count_calendar_months_and_years() -> None:
    assert Period(1, "m").cutoff(aware("2026-03-31T10:00:00+08:00")) == aware("2026-02-28T10:00:00+08:00")
    assert Period(1, "y").cutoff(aware("2028-02-29T00:00:00+08:00")) == aware("2027-02-28T00:00:00+08:00")
    assert Period(90, "d").cutoff(aware("2026-11-23T00:00:00+08:00")) == aware("2026-08-25T00:00:00+08:00")
    assert Period(2, "w").cutoff(aware("2026-11-23T00:00:00+08:00")) == aware("2026-11-09T00:00:00+08:00")
    assert str(Period(1, "y")) == "1 year" and str(Period(90, "d")) == "90 days"
