"""The JSON schema of feed configs (``connectors/feed.schema.json``), for editors.

Generated from :class:`connectors.config.FeedConfig`, never written by hand. A feed config whose
first line is ::

    # yaml-language-server: $schema=../feed.schema.json

gets completion, hover help and red squiggles for unknown keys, missing keys, wrong paging styles
and auth kinds in any editor with the YAML language server (VS Code's YAML extension, Neovim, Helix,
JetBrains). Loading a config (:func:`connectors.load_feed`) stays the authority: it also checks
what a JSON schema cannot say (the config against its contract; a model validator's cross-key
rules such as ``window:`` being required with some paging styles).

``python -m connectors.schema`` writes the file; ``python -m connectors.schema --check`` exits 1
when it is not what the models give (tests/connectors/test_feed_schema.py runs the same check, so a
change to connectors/config.py without regenerating fails the tests with the command to run).
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from connectors import config as feed_config
from connectors.config import FeedConfig

SCHEMA_PATH = Path(__file__).resolve().parent / "feed.schema.json"
SCHEMA_ID = "urn:fundx:schema:feed-config"
COMMAND = "python -m connectors.schema"
#: the first line of a feed config that points editors at the schema (configs live in connectors/feeds/)
MODELINE = "# yaml-language-server: $schema=../feed.schema.json"

__all__ = ["COMMAND", "MODELINE", "SCHEMA_ID", "SCHEMA_PATH", "feed_schema", "main", "models", "reference_fields",
           "render"]


def models(root: type[BaseModel] = FeedConfig) -> dict[str, type[BaseModel]]:
    """Every model reachable from ``root`` through its fields, by class name (the schema's ``$defs`` keys)."""
    found: dict[str, type[BaseModel]] = {}

    def walk(tp: Any) -> Iterator[type[BaseModel]]:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            yield tp
            return
        for arg in typing.get_args(tp):
            yield from walk(arg)

    def visit(model: type[BaseModel]) -> None:
        if model.__name__ in found:
            return
        found[model.__name__] = model
        for field in model.model_fields.values():
            for inner in walk(field.annotation):
                visit(inner)

    visit(root)
    return found


def reference_fields(model: type[BaseModel]) -> frozenset[str]:
    """The keys of ``model`` (as written in YAML: aliases) that must hold a secret reference.

    Found by asking the model itself (a plain value is refused with "must be a reference"), so a
    field that becomes a secret in connectors/config.py is one here without a second list.
    """
    found = set()
    for name, field in model.model_fields.items():
        if field.annotation is not str:
            continue
        key = field.alias or name
        try:
            model.model_validate({key: "plain value"})
        except ValidationError as exc:
            for err in exc.errors(include_input=False, include_url=False):
                if tuple(err.get("loc", ())) == (key,) and "reference" in str(err.get("msg", "")):
                    found.add(key)
    return frozenset(found)


def _reference_pattern() -> str | None:
    pattern = getattr(feed_config, "_REFERENCE", None)
    return getattr(pattern, "pattern", None)


def feed_schema() -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of a feed config, with a title, an ``$id`` and secret-reference patterns."""
    generated = FeedConfig.model_json_schema(mode="validation")
    definitions = generated.get("$defs", {})
    pattern = _reference_pattern()
    if pattern:
        for name, model in models().items():
            target = generated if model is FeedConfig else definitions.get(name)
            if not target:
                continue
            for key in sorted(reference_fields(model)):
                prop = target.get("properties", {}).get(key)
                if prop is not None and prop.get("type") == "string":
                    prop["pattern"] = pattern
                    prop.setdefault("description", "a secret: env:NAME or secret:BLOCK, never the value itself")
    generated.pop("title", None)
    description = generated.pop("description", "")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "fundx feed config (connectors/feeds/<feed>.yaml)",
        "description": (
            f"{description.strip()} Generated from connectors/config.py by `{COMMAND}`; do not edit. "
            "Loading the config (fundx connector check) also checks it against its contract."
        ).strip(),
        **generated,
    }


def render() -> str:
    """The schema file's text: stable key order, two-space indent, a final newline."""
    return json.dumps(feed_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write connectors/feed.schema.json from the config models, or check that it is current."""
    parser = argparse.ArgumentParser(prog=COMMAND, description=main.__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is missing or out of date; write nothing")
    args = parser.parse_args(argv)
    text = render()
    current = SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.is_file() else None
    if args.check:
        if current != text:
            state = "missing" if current is None else "out of date with connectors/config.py"
            print(f"connectors/feed.schema.json is {state}: run `{COMMAND}` and commit the file", file=sys.stderr)
            return 1
        print("connectors/feed.schema.json is current")
        return 0
    if current == text:
        print("connectors/feed.schema.json is current")
        return 0
    SCHEMA_PATH.write_text(text, encoding="utf-8")
    print(f"written connectors/feed.schema.json ({len(models())} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
