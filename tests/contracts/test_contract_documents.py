"""Each contract is valid ODCS v3 (official model and schema.json); broken contracts are named errors."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from open_data_contract_standard.model import OpenDataContractStandard

from connectors.registry import registry
from contracts import contract_names, contract_path, load_contract
from contracts.rules import contract_rules
from fundx.core.areacodes import is_known_area_code
from fundx.core.city import load_city, shipped_cities
from fundx.core.errors import ConfigurationError

SCHEMA = jsonschema.Draft201909Validator(json.loads(OpenDataContractStandard.json_schema()))


#: every contract of the contracts folder (each feed config names one)
FEEDS = contract_names()


def test_every_feed_has_a_contract() -> None:
    assert contract_names() == sorted(config.contract for config in registry().feeds.values())
    assert registry().broken == {}


@pytest.mark.parametrize("feed", FEEDS)
def test_contract_is_valid_odcs(feed: str) -> None:
    document = yaml.safe_load(contract_path(feed).read_text(encoding="utf-8"))
    OpenDataContractStandard.model_validate(document)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in SCHEMA.iter_errors(document)]
    assert errors == []


def test_the_schema_check_does_catch_mistakes() -> None:
    document = yaml.safe_load(contract_path("police.deaths").read_text(encoding="utf-8"))
    document["schema"][0]["properties"][0]["bogus"] = 1
    document["schema"][0]["properties"][1]["quality"][0]["type"] = "weird"
    assert len(list(SCHEMA.iter_errors(document))) >= 2


@pytest.mark.parametrize("feed", FEEDS)
def test_every_column_is_classified_and_every_contract_has_slas_and_a_policy(feed: str) -> None:
    contract = load_contract(feed)
    raw = contract.raw
    for prop in raw.schema_[0].properties:
        custom = {c.property for c in prop.customProperties or []}
        assert prop.classification and "pii" in custom, (feed, prop.name)
    assert {s.property for s in raw.slaProperties} >= {"frequency", "timeOfAvailability", "latency", "errorRate"}
    assert any(c.property == "batchPolicy" for c in raw.customProperties)
    for column in (c for c in contract.columns if "id_number" in c.name):  # a feed about employers has none
        assert column.pii == "identity_number", (feed, column.name)
    for column in (c for c in contract.columns if "account" in c.name):
        assert column.pii == "bank_account" and column.classification == "restricted", (feed, column.name)


def test_the_cities_area_codes_are_known_to_the_contracts() -> None:
    for city in shipped_cities():
        for d in load_city(city).districts:
            assert all(is_known_area_code(c) for c in (d.code, *d.formerly)), (city, d.code)


def test_no_contract_names_a_city() -> None:
    """The area-code check is national: a contract that still names a city is refused (not widened silently)."""
    for feed in FEEDS:
        text = contract_path(feed).read_text(encoding="utf-8")
        people = any(c.pii == "identity_number" for c in load_contract(feed).columns)  # employer subsidies: none
        assert "city:" not in text and ("knownAreaCode}" in text or not people), feed


def _edit(tmp_path: Path, change) -> Path:
    document = yaml.safe_load(contract_path("police.deaths").read_text(encoding="utf-8"))
    change(document)
    path = tmp_path / "police.deaths.odcs.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def _quality(doc: dict, column: int) -> list:
    return doc["schema"][0]["properties"][column]["quality"]


BROKEN = [
    (lambda d: _quality(d, 1)[1]["implementation"].update(rule="isPrime"),
     "schema.0.properties.1.quality.1.implementation.rule: unknown rule 'isPrime'"),
    (lambda d: _quality(d, 1)[2]["implementation"].update(city="hangzhou"),
     "schema.0.properties.1.quality.2.implementation.city: knownAreaCode is national now"),
    (lambda d: d["schema"][0]["properties"][1]["customProperties"][1].update(value=["upgrade15", "trim"]),
     "schema.0.properties.1.customProperties.normalise: upgrade15 comes after trim and halfwidth"),
    (lambda d: d["schema"][0]["properties"][2]["customProperties"][1].update(value=["trim", "upgrade15"]),
     "schema.0.properties.2.customProperties.normalise: the upgrade15 step is for identity-number columns"),
    (lambda d: _quality(d, 1).append({"name": "q", "type": "sql", "query": "SELECT 1", "mustBe": 0}),
     "schema.0.properties.1.quality.3.type: unsupported quality rule"),
    (lambda d: d["schema"][0]["quality"][1]["implementation"].update(later="died_on"),
     "schema.0.quality.1.implementation.later: names no column of the contract: 'died_on'"),
    (lambda d: d["schema"][0]["properties"][1]["customProperties"][1].update(value=["trim", "guess"]),
     "schema.0.properties.1.customProperties.normalise: must list steps"),
    (lambda d: d["customProperties"][0].update(value={"rejectAboveFailedPercent": 120}),
     "customProperties.0.value.rejectAboveFailedPercent: must be between 0 and 100"),
    (lambda d: _quality(d, 1)[0].pop("name"), "schema.0.properties.1.quality.0.name: is required"),
]


@pytest.mark.parametrize(("change", "message"), BROKEN)
def test_a_broken_contract_names_the_file_and_key(tmp_path: Path, change, message: str) -> None:
    path = _edit(tmp_path, change)
    with pytest.raises(ConfigurationError) as caught:
        contract_rules(load_contract("police.deaths", path=path))
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{path}: ")


def test_a_contract_that_does_not_parse_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "police.deaths.odcs.yaml"
    path.write_text("schema: [\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="police.deaths.odcs.yaml: not valid YAML"):
        load_contract("police.deaths", path=path)
