"""Data contracts: one ODCS v3 YAML per feed, loaded into the shape the exchange uses.

``contracts/<feed>.odcs.yaml`` is validated with the official ODCS pydantic model
(open-data-contract-standard), then read into a :class:`Contract`: the columns in contract order,
their physical names (the agency's own headers, e.g. Chinese ones), the primary key and the
incremental column. The model itself stays available as ``Contract.raw`` for the compilers.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from open_data_contract_standard.model import OpenDataContractStandard, SchemaObject, SchemaProperty
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from fundx.core.errors import ConfigurationError
from fundx.core.settings import get_settings

#: the shipped contracts; FUNDX_CONTRACTS_DIR points the exchange at another folder (:func:`contracts_dir`)
CONTRACTS_DIR = Path(__file__).resolve().parent
_ROOT = CONTRACTS_DIR.parent


@dataclass(frozen=True)
class Column:
    """One column of a feed: its logical name, the agency's name for it, and how it is classified."""

    name: str
    physical_name: str
    logical_type: str
    required: bool
    primary_key: bool
    classification: str | None
    pii: str | None


@dataclass(frozen=True, eq=False)
class Contract:
    """What a feed's rows look like, read from its ODCS contract."""

    feed: str
    version: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    incremental: str | None
    raw: OpenDataContractStandard
    source: str = ""  # the file it was read from, as messages name it

    @property
    def schema_object(self) -> SchemaObject:
        """The contract's one schema object (reading the contract checked there is exactly one)."""
        if not self.raw.schema_:
            raise ConfigurationError(f"contract of {self.feed}: has no schema object")
        return self.raw.schema_[0]

    @cached_property
    def names(self) -> tuple[str, ...]:
        """The logical column names, in contract order."""
        return tuple(c.name for c in self.columns)

    @cached_property
    def physical_to_logical(self) -> dict[str, str]:
        """The agency's column names mapped to the contract's logical names."""
        return {c.physical_name: c.name for c in self.columns}

    @cached_property
    def by_name(self) -> dict[str, Column]:
        """The columns by logical name."""
        return {c.name: c for c in self.columns}

    @cached_property
    def required(self) -> tuple[str, ...]:
        """Logical names of the required columns (a source without one of them is a schema error)."""
        return tuple(c.name for c in self.columns if c.required or c.primary_key)

    def column(self, name: str) -> Column:
        """The column with this logical name."""
        return self.by_name[name]


def contracts_dir() -> Path:
    """The folder of the contracts: FUNDX_CONTRACTS_DIR, else the shipped contracts/."""
    return get_settings().contracts_dir or CONTRACTS_DIR


def contract_path(feed: str) -> Path:
    """Where the contract of ``feed`` lives."""
    return contracts_dir() / f"{feed}.odcs.yaml"


def contract_names() -> list[str]:
    """Every feed that has a contract, sorted."""
    return sorted(p.name[: -len(".odcs.yaml")] for p in contracts_dir().glob("*.odcs.yaml"))


def display_path(path: Path) -> str:
    """A path as people read it in messages: relative to the repository when it is inside it."""
    try:
        return path.resolve().relative_to(_ROOT).as_posix()
    except ValueError:
        return str(path)


def describe_validation(error: ValidationError, *, union_tags: Mapping[str, Collection[str]] | None = None) -> list[str]:
    """Pydantic errors as ``key.path: message`` lines, never showing the offending values.

    ``union_tags`` maps a tagged union's field name to its tag values, which pydantic puts into the
    error location (``paging.cursor.page_size``) and a person does not write (``paging.page_size``).
    A validator's message that starts with ``key: `` names a key below the location.
    """
    union_tags = union_tags or {}
    lines = []
    for err in error.errors(include_input=False, include_url=False):
        parts: list[str] = []
        loc = err.get("loc", ())
        for i, part in enumerate(loc):
            if i and part in union_tags.get(str(loc[i - 1]), ()):
                continue  # the tag right after a union field
            parts.append(str(part))
        message = _message(err)
        nested = _NESTED_KEY.match(message) if err.get("type") == "value_error" else None
        if nested:
            parts.append(nested.group(1))
            message = nested.group(2)
        lines.append(f"{'.'.join(parts) or '(top level)'}: {message}")
    return lines


_NESTED_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*): (.+)$", re.S)


def _message(err: ErrorDetails) -> str:
    kind, ctx = err.get("type", ""), err.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()), "?")
        return f"must be {op} {bound}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '?')}"
    if kind == "union_tag_invalid":
        field = str(ctx.get("discriminator", "kind")).strip("'")
        return f"unknown {field} {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return f"needs a {str(ctx.get('discriminator', 'kind')).strip(chr(39))} key"
    if kind == "value_error":
        return str(ctx.get("error", err.get("msg", "invalid")))
    return str(err.get("msg", "invalid"))


def load_contract(feed: str, *, path: Path | None = None) -> Contract:
    """The contract of ``feed``, validated; errors name the file and the key."""
    path = path or contract_path(feed)
    where = display_path(path)
    if not path.is_file():
        known = ", ".join(contract_names()) or "none"
        raise ConfigurationError(
            f"{where}: no contract for feed {feed!r} (known: {known})",
            action=f"write {where} (ODCS v3)",
        )
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigurationError(f"{where}: not valid YAML{line}") from None
    if not isinstance(document, dict):
        raise ConfigurationError(f"{where}: must be a mapping (an ODCS v3 document)")
    try:
        raw = OpenDataContractStandard.model_validate(document)
    except ValidationError as exc:
        raise ConfigurationError(f"{where}: " + "; ".join(describe_validation(exc))) from None
    return _read(raw, feed, where)


def _read(raw: OpenDataContractStandard, feed: str, where: str) -> Contract:
    def fail(key: str, message: str) -> ConfigurationError:
        return ConfigurationError(f"{where}: {key}: {message}")

    if raw.name != feed:
        raise fail("name", f"must be the feed's name {feed!r}")
    if not raw.version:
        raise fail("version", "is required")
    if not raw.schema_ or len(raw.schema_) != 1:
        raise fail("schema", "must hold exactly one object (the feed's rows)")
    properties = raw.schema_[0].properties or []
    if not properties:
        raise fail("schema.0.properties", "must list the feed's columns")
    columns, keyed, incremental = [], [], []
    seen_names: set[str] = set()
    seen_physical: set[str] = set()
    for i, prop in enumerate(properties):
        key = f"schema.0.properties.{i}"
        if not prop.name:
            raise fail(f"{key}.name", "is required")
        if prop.name in seen_names:
            raise fail(f"{key}.name", f"column {prop.name!r} is listed twice")
        physical = prop.physicalName or prop.name
        if physical in seen_physical:
            raise fail(f"{key}.physicalName", f"physical name of {prop.name!r} is used twice")
        seen_names.add(prop.name)
        seen_physical.add(physical)
        custom = _custom(prop)
        column = Column(
            name=prop.name,
            physical_name=physical,
            logical_type=prop.logicalType or "string",
            required=bool(prop.required),
            primary_key=bool(prop.primaryKey),
            classification=prop.classification,
            pii=None if custom.get("pii") in (None, "none") else str(custom["pii"]),
        )
        columns.append(column)
        if column.primary_key:
            keyed.append((prop.primaryKeyPosition or 0, i, column.name))
        if _truthy(custom.get("incremental")):
            incremental.append(column.name)
    if not keyed:
        raise fail("schema.0.properties", "no column has primaryKey: true")
    if len(incremental) > 1:
        raise fail("schema.0.properties", f"only one column may be incremental, found {incremental}")
    return Contract(
        feed=feed,
        version=raw.version,
        columns=tuple(columns),
        key=tuple(name for _, _, name in sorted(keyed)),
        incremental=incremental[0] if incremental else None,
        raw=raw,
        source=where,
    )


def _custom(prop: SchemaProperty) -> dict[str, Any]:
    return {c.property: c.value for c in (prop.customProperties or []) if c.property}


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "yes", "1"))
