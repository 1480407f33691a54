"""connectors/feed.schema.json, the feed configs' JSON schema for editors: current with the models,
and every feed config valid against it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from connectors import FEEDS_DIR, feed_names
from connectors import schema as feed_schema_module
from connectors.schema import COMMAND, MODELINE, SCHEMA_ID, SCHEMA_PATH, feed_schema, render

REGENERATE = f"connectors/feed.schema.json is out of date with connectors/config.py: run `.venv/bin/{COMMAND}` and commit it"


def _validator():
    jsonschema = pytest.importorskip("jsonschema", reason="the jsonschema package is not installed in this venv")
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _messages(validator, document) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}" for e in validator.iter_errors(document)]


def test_the_schema_file_is_current():
    assert SCHEMA_PATH.is_file(), REGENERATE
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render(), REGENERATE


def test_the_schema_is_titled_and_identified():
    schema = feed_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID and schema["title"].startswith("fundx feed config")
    assert schema["additionalProperties"] is False
    assert {"feed", "agency", "contract", "stage", "transport"} <= set(schema["required"])
    auth = schema["$defs"]["BearerAuth"]["properties"]["token"]
    assert auth["pattern"].startswith("^(env:")  # secrets must be references, in the editor too


def test_the_modeline_points_from_the_feeds_folder_to_the_schema():
    assert MODELINE == "# yaml-language-server: $schema=../feed.schema.json"
    relative = MODELINE.split("$schema=", 1)[1]
    assert (FEEDS_DIR / relative).resolve() == SCHEMA_PATH.resolve()


def test_check_and_write(tmp_path, monkeypatch, capsys):
    target = tmp_path / "feed.schema.json"
    monkeypatch.setattr(feed_schema_module, "SCHEMA_PATH", target)
    assert feed_schema_module.main(["--check"]) == 1
    assert f"missing: run `{COMMAND}`" in capsys.readouterr().err
    assert feed_schema_module.main([]) == 0 and target.read_text(encoding="utf-8") == render()
    assert feed_schema_module.main(["--check"]) == 0
    target.write_text(render().replace('"minLength": 1', '"minLength": 2', 1), encoding="utf-8")
    assert feed_schema_module.main(["--check"]) == 1
    assert f"out of date with connectors/config.py: run `{COMMAND}`" in capsys.readouterr().err


@pytest.mark.parametrize("feed", feed_names())
def test_every_feed_config_is_valid_against_the_json_schema(feed):
    validator = _validator()
    document = yaml.safe_load((FEEDS_DIR / f"{feed}.yaml").read_text(encoding="utf-8"))
    assert _messages(validator, document) == []


def _police() -> dict:
    return yaml.safe_load((FEEDS_DIR / "police.deaths.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize(("change", "where"), [
    (lambda d: d.update(colour="blue"), "(top level)"),
    (lambda d: d["rest"]["auth"].update(client_secret="hunter2-literal"), "rest"),
    (lambda d: d["rest"]["paging"].update(style="offset"), "rest"),
    (lambda d: d["rest"].pop("base_url"), "rest"),
    (lambda d: d.update(transport="ftp"), "transport"),
    (lambda d: d.update(feed="Police.Deaths"), "feed"),
])
def test_the_json_schema_refuses_what_the_models_refuse(change, where):
    validator = _validator()
    document = copy.deepcopy(_police())
    change(document)
    messages = _messages(validator, document)
    assert messages and any(m.startswith(f"{where}:") for m in messages), messages


def test_a_scaffolded_config_is_flagged_until_filled(tmp_path):
    from onboarding.scaffold import scaffold

    validator = _validator()
    path = scaffold("health_commission.hospital_deaths", "database", stage="death_matching", root=tmp_path)[0]
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert {m.split(":")[0] for m in _messages(validator, document)} >= {"title", "database"}
    document.update(title="Hospital death notifications (医院死亡通知)")
    document["database"].update(relation="v_deaths", incremental_column="notified_at", order_by=["notified_at", "record_id"])
    assert _messages(validator, document) == []
    assert Path(path).read_text(encoding="utf-8").startswith(MODELINE + "\n")
