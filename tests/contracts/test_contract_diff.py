"""fundx contract diff: each kind of change classified breaking or compatible (docs/contracts-evolution.md),
the verdict against the version numbers, and exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from contracts import contract_path
from contracts.diff import ContractReadError, diff_files, parse_version
from fundx.cli.contract import contract_app

FEED = "police.deaths"
OLD = contract_path(FEED)


def _props(d: dict) -> list[dict]:
    return d["schema"][0]["properties"]


def _col(d: dict, name: str) -> dict:
    return next(p for p in _props(d) if p["name"] == name)


def _custom(d: dict, name: str, prop: str) -> dict:
    return next(c for c in _col(d, name)["customProperties"] if c["property"] == prop)


def _write(tmp_path: Path, change: Callable[[dict], object], version: str | None = None, name: str = "new") -> Path:
    document = yaml.safe_load(OLD.read_text(encoding="utf-8"))
    change(document)
    if version:
        document["version"] = version
    path = tmp_path / f"{name}.odcs.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _add_optional(d: dict) -> None:
    _props(d).append({"name": "remark", "logicalType": "string", "required": False, "classification": "internal",
                      "customProperties": [{"property": "pii", "value": "none"}]})


def _add_required(d: dict) -> None:
    _add_optional(d)
    _props(d)[-1]["required"] = True


def _add_rule(severity: str) -> Callable[[dict], None]:
    def change(d: dict) -> None:
        _col(d, "police_station").setdefault("quality", []).append(
            {"name": "known_station", "type": "library", "metric": "invalidValues", "mustBe": 0, "severity": severity,
             "arguments": {"pattern": "^.+派出所$"}})
    return change


CASES = [
    # (what, the edit, change kind, field, breaking)
    ("field removed", lambda d: _props(d).pop(3), "field removed", "gender", True),
    ("field renamed", lambda d: _col(d, "police_station").update(name="station", physicalName="police_station"),
     "field renamed", "police_station", True),
    ("physical name", lambda d: _col(d, "name").update(physicalName="姓名"), "physical name changed", "name", True),
    ("type changed", lambda d: _col(d, "police_station").update(logicalType="integer", logicalTypeOptions={}),
     "type changed", "police_station", True),
    ("maxLength reduced", lambda d: _col(d, "name")["logicalTypeOptions"].update(maxLength=20), "maxLength reduced", "name", True),
    ("maxLength raised", lambda d: _col(d, "name")["logicalTypeOptions"].update(maxLength=100), "maxLength raised", "name", False),
    ("minLength raised", lambda d: _col(d, "name")["logicalTypeOptions"].update(minLength=2), "minLength raised", "name", True),
    ("pattern added", lambda d: _col(d, "police_station")["logicalTypeOptions"].update(pattern="^.+所$"),
     "pattern added", "police_station", True),
    ("pattern changed", lambda d: _col(d, "cancellation_id")["logicalTypeOptions"].update(pattern="^HK[0-9]+$"),
     "pattern changed", "cancellation_id", True),
    ("pattern removed", lambda d: _col(d, "cancellation_id")["logicalTypeOptions"].pop("pattern"),
     "pattern removed", "cancellation_id", False),
    ("minimum raised", lambda d: _col(d, "death_date")["logicalTypeOptions"].update(minimum="1950-01-01"),
     "minimum raised", "death_date", True),
    ("minimum lowered", lambda d: _col(d, "death_date")["logicalTypeOptions"].update(minimum="1850-01-01"),
     "minimum reduced", "death_date", False),
    ("date format", lambda d: _col(d, "death_date")["logicalTypeOptions"].update(format="yyyy/MM/dd"),
     "format changed", "death_date", True),
    ("required added", lambda d: _col(d, "police_station").update(required=True), "required added", "police_station", True),
    ("required removed", lambda d: _col(d, "name").update(required=False), "required removed", "name", False),
    ("unique added", lambda d: _col(d, "id_number").update(unique=True), "unique added", "id_number", True),
    ("primary key", lambda d: (_col(d, "cancellation_id").update(primaryKey=False),
                               _col(d, "id_number").update(primaryKey=True, primaryKeyPosition=1)),
     "primary key changed", "(contract)", True),
    ("classification", lambda d: _col(d, "name").update(classification="internal"),
     "classification changed", "name", True),
    ("pii", lambda d: _custom(d, "police_station", "pii").update(value="address"), "pii changed", "police_station", True),
    ("enum values removed", lambda d: _col(d, "gender").update(enum=[{"value": "男"}]), "enum values removed", "gender", True),
    ("enum values added", lambda d: _col(d, "gender")["enum"].append({"value": "未知"}), "enum values added", "gender", False),
    ("enum added", lambda d: _col(d, "police_station").update(enum=[{"value": "西湖派出所"}]), "enum added", "police_station", True),
    ("normalisation removed", lambda d: _custom(d, "id_number", "normalise").update(value=["trim"]),
     "normalisation removed", "id_number", True),
    ("normalisation added", lambda d: _custom(d, "police_station", "normalise").update(value=["trim", "halfwidth"]),
     "normalisation added", "police_station", False),
    ("incremental", lambda d: (_col(d, "updated_at")["customProperties"].pop(1),
                               _col(d, "cancelled_on")["customProperties"].append({"property": "incremental", "value": True})),
     "incremental column changed", "(contract)", True),
    ("error rule added", _add_rule("error"), "rule added", "police_station.known_station", True),
    ("warning rule added", _add_rule("warning"), "rule added", "police_station.known_station", False),
    ("rule removed", lambda d: _col(d, "id_number")["quality"].pop(2), "rule removed", "id_number.area_code", False),
    ("rule changed", lambda d: _col(d, "id_number")["quality"][2]["implementation"].update(city="ningbo"),
     "rule changed", "id_number.area_code", True),
    ("rule severity lowered", lambda d: _col(d, "death_date")["quality"][0].update(severity="warning"),
     "rule severity changed", "death_date.not_future", False),
    ("rule description", lambda d: _col(d, "death_date")["quality"][0].update(description="Not after today."),
     "rule description changed", "death_date.not_future", False),
    ("row count relaxed", lambda d: d["schema"][0]["quality"][3]["implementation"].update(maxRatio=6.0),
     "rule relaxed", "row_count", False),
    ("row count narrowed", lambda d: d["schema"][0]["quality"][3]["implementation"].update(minRatio=0.5),
     "rule changed", "row_count", True),
    ("field added optional", _add_optional, "field added", "remark", False),
    ("field added required", _add_required, "required field added", "remark", True),
    ("field description", lambda d: _col(d, "name").update(description="The dead person's name."),
     "description changed", "name", False),
    ("contract description", lambda d: d["description"].update(purpose="Something else."),
     "description changed", "(contract)", False),
    ("batch policy stricter", lambda d: d["customProperties"][0]["value"].update(rejectAboveFailedPercent=5),
     "batch policy stricter", "(contract)", True),
    ("batch policy relaxed", lambda d: d["customProperties"][0]["value"].update(rejectAboveFailedPercent=20),
     "batch policy relaxed", "(contract)", False),
    ("sla changed", lambda d: d["slaProperties"][2].update(value=5), "sla changed", "(contract)", False),
    ("object physical name", lambda d: d["schema"][0].update(physicalName="hukou_v2"),
     "object physical name changed", "(contract)", True),
    ("status", lambda d: d.update(status="deprecated"), "metadata changed", "(contract)", False),
    ("reordered", lambda d: _props(d).insert(0, _props(d).pop(2)), "fields reordered", "(contract)", False),
]


@pytest.mark.parametrize(("what", "change", "kind", "field", "breaking"), CASES, ids=[c[0] for c in CASES])
def test_each_change_is_classified(tmp_path: Path, what: str, change, kind: str, field: str, breaking: bool) -> None:
    diff = diff_files(OLD, _write(tmp_path, change))
    found = [(c.change, c.field, c.breaking) for c in diff.changes]
    assert (kind, field, breaking) in found, found
    assert bool(diff.breaking) == breaking, found  # nothing else changed its verdict
    assert diff.exit_code == (1 if breaking else 0)


def test_no_change_and_the_verdicts(tmp_path: Path) -> None:
    same = diff_files(OLD, OLD)
    assert same.changes == () and same.allowed and same.verdict == "no changes (1.3.0 → 1.3.0)"
    broken = diff_files(OLD, _write(tmp_path, lambda d: _props(d).pop(3), version="1.4.0"))
    assert not broken.allowed and broken.next_major == "2.0.0"
    assert "without a major version bump (1.3.0 → 1.4.0): raise version to 2.0.0" in broken.verdict
    bumped = diff_files(OLD, _write(tmp_path, lambda d: _props(d).pop(3), version="2.0.0"))
    assert bumped.breaking and bumped.allowed and bumped.exit_code == 0 and "allowed by the new major version" in bumped.verdict
    compatible = diff_files(OLD, _write(tmp_path, _add_optional))
    assert compatible.allowed and "none breaking" in compatible.verdict and "raise the minor version" in compatible.verdict
    assert parse_version("v2.1") == (2, 1, 0) and parse_version("10.0.3-rc1") == (10, 0, 3)


def test_an_area_code_check_made_national_is_compatible(tmp_path: Path) -> None:
    """knownAreaCode with a city (the check before issue 17) -> without: every code of GB/T 2260, a wider check."""
    city_bound = _write(tmp_path, lambda d: _col(d, "id_number")["quality"][2]["implementation"].update(city="hangzhou"),
                        name="city_bound")
    widened = diff_files(city_bound, OLD)
    assert [(c.change, c.field, c.breaking) for c in widened.changes] == [("rule relaxed", "id_number.area_code", False)]
    narrowed = diff_files(OLD, city_bound)  # naming a city again would narrow it (and no longer loads)
    assert [(c.change, c.field, c.breaking) for c in narrowed.changes] == [("rule changed", "id_number.area_code", True)]
    other = _write(tmp_path, lambda d: _col(d, "id_number")["quality"][2]["implementation"].update(rule="identityNumber"),
                   name="other")
    assert diff_files(city_bound, other).breaking  # another rule in its place is no relaxation


def test_the_cli_prints_a_table_and_exits_by_the_verdict(tmp_path: Path) -> None:
    runner = CliRunner()
    broken = _write(tmp_path, lambda d: (_props(d).pop(3), _col(d, "name").update(classification="internal"), _add_optional(d)))
    result = runner.invoke(contract_app, ["diff", str(OLD), str(broken)])
    assert result.exit_code == 1, result.output
    for text in ("field removed", "gender", "classification changed", "field added", "remark", "breaking", "compatible",
                 "raise version to 2.0.0"):
        assert text in result.output, text
    as_json = runner.invoke(contract_app, ["diff", str(OLD), str(broken), "--json"])
    assert as_json.exit_code == 1
    data = json.loads(as_json.stdout)
    assert data["breaking"] == 2 and data["compatible"] == 1 and not data["allowed"]
    assert {"change": "field removed", "field": "gender", "detail": "the column is no longer delivered",
            "verdict": "breaking"} in data["changes"]
    bumped = _write(tmp_path, lambda d: _props(d).pop(3), version="2.0.0", name="bumped")
    assert runner.invoke(contract_app, ["diff", str(OLD), str(bumped)]).exit_code == 0
    assert runner.invoke(contract_app, ["diff", str(OLD), str(OLD)]).exit_code == 0


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file"),
    ("schema: [\n", "not valid YAML"),
    ("- a list\n", "not a contract"),
    ("name: police.deaths\nversion: 1.0.0\n", "must hold exactly one object"),
])
def test_unreadable_input_names_the_file(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "broken.odcs.yaml"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ContractReadError, match=message):
        diff_files(OLD, path)
    for args in (["diff", str(OLD), str(path)], ["diff", str(path), str(OLD), "--json"]):
        result = CliRunner().invoke(contract_app, args)
        assert result.exit_code == 2 and "broken.odcs.yaml" in result.output and message in result.output, result.output


def test_a_bad_version_is_unreadable(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda d: None, version="first")
    result = CliRunner().invoke(contract_app, ["diff", str(OLD), str(path)])
    assert result.exit_code == 2 and "version" in result.output and "new.odcs.yaml" in result.output
