"""What changed between two versions of a contract, and whether it breaks the feed.

:func:`diff_files` reads two contract files (each validated as :func:`contracts.load_contract` does)
and lists each :class:`Change` with its classification. The rule of thumb: a change is **breaking**
when a batch the old contract accepted may be refused or quarantined under the new one, or when a
stage receives something different from what it was promised (a column gone, retyped, renamed,
re-keyed or re-classified); it is **compatible** when the new contract accepts at least what the old
one did and delivers the same columns. docs/contracts-evolution.md has the whole table. This module
compares the contract as a whole (name, metadata, batch policy, service levels, columns added,
removed or renamed, the key); :mod:`contracts.changes` how one column or quality rule changed.

A breaking change needs a new major version (``version: x.y.z``, x raised): :attr:`ContractDiff.allowed`.
:mod:`contracts.release` is the release gate built on it (``fundx contract release``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from open_data_contract_standard.model import OpenDataContractStandard
from pydantic import ValidationError

from contracts import Contract, _read, describe_validation, display_path
from contracts.changes import Add, column_changes, custom_values, quality_changes, rule_diff, show
from fundx.core.errors import ConfigurationError

BREAKING, COMPATIBLE = "breaking", "compatible"
CONTRACT = "(contract)"  # the ``field`` of changes to the whole contract

#: contract keys that only document or organise (fundx reads none of them)
_METADATA = ("apiVersion", "status", "domain", "dataProduct", "tenant", "tags", "description", "support", "price",
             "team", "roles", "servers", "authoritativeDefinitions", "contractCreatedTs", "context", "slaDefaultElement")


class ContractReadError(ConfigurationError):
    """A contract file that cannot be read or is not a valid contract; the message names the file."""

    default_action = "fix the named file (ODCS v3) and run again"


@dataclass(frozen=True)
class Change:
    """One difference between two versions of a contract."""

    change: str  # what kind of change: "field removed", "maxLength reduced", ...
    field: str  # the column (or rule id, or CONTRACT)
    detail: str
    breaking: bool

    @property
    def verdict(self) -> str:
        """``breaking`` or ``compatible``."""
        return BREAKING if self.breaking else COMPATIBLE

    def as_dict(self) -> dict[str, Any]:
        """The change as plain data."""
        return {"change": self.change, "field": self.field, "detail": self.detail, "verdict": self.verdict}


@dataclass(frozen=True)
class ContractDiff:
    """Every change between an old and a new contract, and what the new version number allows."""

    old: str  # where the old contract was read from
    new: str
    old_version: str
    new_version: str
    changes: tuple[Change, ...]

    @property
    def breaking(self) -> tuple[Change, ...]:
        """The breaking changes."""
        return tuple(c for c in self.changes if c.breaking)

    @property
    def major_raised(self) -> bool:
        """Whether the new contract's major version is above the old one's."""
        return parse_version(self.new_version)[0] > parse_version(self.old_version)[0]

    @property
    def allowed(self) -> bool:
        """No breaking change, or a new major version."""
        return not self.breaking or self.major_raised

    @property
    def exit_code(self) -> int:
        """0 when allowed, 1 for breaking changes without a new major version."""
        return 0 if self.allowed else 1

    @property
    def next_major(self) -> str:
        """The version a breaking change needs: the old major plus one (2.0.0 after 1.4.2)."""
        return f"{parse_version(self.old_version)[0] + 1}.0.0"

    @property
    def verdict(self) -> str:
        """One line for people."""
        versions = f"{self.old_version} → {self.new_version}"
        if not self.changes:
            return f"no changes ({versions})"
        if not self.breaking:
            hint = "" if parse_version(self.new_version) > parse_version(self.old_version) else "; raise the minor version"
            return f"compatible: {_count(len(self.changes), 'change')}, none breaking ({versions}{hint})"
        if self.major_raised:
            return f"breaking: {_count(len(self.breaking), 'breaking change')}, allowed by the new major version ({versions})"
        return (f"breaking: {_count(len(self.breaking), 'breaking change')} without a major version bump ({versions}): "
                f"raise version to {self.next_major}, or make the changes compatible")

    def as_dict(self) -> dict[str, Any]:
        """The diff as plain data (``fundx contract diff --json``)."""
        return {"old": self.old, "new": self.new, "old_version": self.old_version, "new_version": self.new_version,
                "breaking": len(self.breaking), "compatible": len(self.changes) - len(self.breaking),
                "major_raised": self.major_raised, "allowed": self.allowed, "verdict": self.verdict,
                "changes": [c.as_dict() for c in self.changes]}


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


_VERSION = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-+].*)?$")


def parse_version(version: str) -> tuple[int, int, int]:
    """(major, minor, patch) of ``x.y.z`` (``v`` prefix, missing parts and pre-release tags allowed)."""
    m = _VERSION.match(str(version).strip())
    if not m:
        raise ValueError(f"version {version!r} is not MAJOR.MINOR.PATCH")
    return int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)


# --- reading ---------------------------------------------------------------------------------------


def read_contract(path: Path) -> Contract:
    """A contract file, validated as :func:`contracts.load_contract` does (its ``name`` is its feed); errors
    name the file. Parsed once, with libyaml when it is there (the gate reads every contract twice)."""
    where = display_path(path)
    if not path.is_file():
        raise ContractReadError(f"{where}: no such file")
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)  # noqa: S506 - a safe loader
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ContractReadError(f"{where}: not valid YAML{line}") from None
    if not isinstance(document, dict) or not isinstance(document.get("name"), str) or not document["name"]:
        raise ContractReadError(f"{where}: not a contract (an ODCS v3 mapping with a name)")
    try:
        raw = OpenDataContractStandard.model_validate(document)
    except ValidationError as exc:
        raise ContractReadError(f"{where}: " + "; ".join(describe_validation(exc))) from None
    try:
        contract = _read(raw, document["name"], where)
        parse_version(contract.version)
    except ConfigurationError as exc:
        raise ContractReadError(str(exc)) from None
    except ValueError as exc:
        raise ContractReadError(f"{where}: version: {exc}") from None
    return contract


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def diff_files(old: Path, new: Path) -> ContractDiff:
    """The changes from the contract in ``old`` to the one in ``new``."""
    before, after = read_contract(old), read_contract(new)
    return ContractDiff(before.source, after.source, before.version, after.version, tuple(diff_contracts(before, after)))


# --- comparing ---------------------------------------------------------------------------------------


def _dump(contract: Contract) -> dict[str, Any]:
    return contract.raw.model_dump(by_alias=True, exclude_none=True, mode="json")


def diff_contracts(old: Contract, new: Contract) -> list[Change]:
    """Every change from ``old`` to ``new``, each classified (see the module's docstring)."""
    changes: list[Change] = []

    def add(change: str, where: str, detail: str, breaking: bool) -> None:
        changes.append(Change(change, where, detail, breaking))

    a, b = _dump(old), _dump(new)
    # the contract as a whole
    for key in ("name", "id"):
        if a.get(key) != b.get(key):
            add(f"contract {key} changed", CONTRACT, f"{show(a.get(key))} → {show(b.get(key))}", True)
    for key in _METADATA:
        if a.get(key) != b.get(key):
            add("description changed" if key == "description" else "metadata changed", CONTRACT, key, False)
    _batch_policy(custom_values(a.get("customProperties")).get("batchPolicy"),
                  custom_values(b.get("customProperties")).get("batchPolicy"), add)
    _contract_custom(a.get("customProperties"), b.get("customProperties"), add)
    _sla(a.get("slaProperties") or [], b.get("slaProperties") or [], add)
    extra = set(a) | set(b)
    extra -= {"name", "id", "version", "kind", "schema", "customProperties", "slaProperties", *_METADATA}
    for key in sorted(extra):
        if a.get(key) != b.get(key):
            add("metadata changed", CONTRACT, key, False)

    oa, ob = a["schema"][0], b["schema"][0]
    if oa.get("name") != ob.get("name"):
        add("object renamed", CONTRACT, f"schema.0.name {oa.get('name')} → {ob.get('name')}", True)
    if oa.get("physicalName") != ob.get("physicalName"):
        add("object physical name changed", CONTRACT,
            f"{show(oa.get('physicalName'))} → {show(ob.get('physicalName'))}", True)
    for key in ("description", "businessName", "tags", "authoritativeDefinitions", "dataGranularityDescription"):
        if oa.get(key) != ob.get(key):
            add("description changed", CONTRACT, f"schema.0.{key}", False)

    # the columns
    pa = {p["name"]: p for p in oa.get("properties") or []}
    pb = {p["name"]: p for p in ob.get("properties") or []}
    removed = [n for n in pa if n not in pb]
    added = [n for n in pb if n not in pa]
    renamed: dict[str, str] = {}
    for gone in removed:  # the same agency column under a new logical name
        physical = pa[gone].get("physicalName", gone)
        match = [n for n in added if pb[n].get("physicalName", n) == physical and n not in renamed.values()]
        if len(match) == 1:
            renamed[gone] = match[0]
    for gone in removed:
        if gone in renamed:
            physical = pa[gone].get("physicalName", gone)
            add("field renamed", gone, f"logical name {gone} → {renamed[gone]} (the agency's column {physical})", True)
        else:
            add("field removed", gone, "the column is no longer delivered", True)
    for name in added:
        if name in renamed.values():
            continue
        prop = pb[name]
        if prop.get("required") or prop.get("primaryKey"):
            add("required field added", name, "batches without the column break the schema", True)
        else:
            add("field added", name, "optional", False)
    for name, prop in pa.items():
        if name in pb:
            column_changes(name, prop, pb[name], add)
        elif name in renamed:
            column_changes(renamed[name], prop, pb[renamed[name]], add, skip=("physicalName",))
    common = [n for n in pa if n in pb]
    if common != [n for n in pb if n in pa]:
        add("fields reordered", CONTRACT, "columns are matched by name", False)

    if old.key != new.key:
        add("primary key changed", CONTRACT, f"({', '.join(old.key)}) → ({', '.join(new.key)})", True)
    if old.incremental != new.incremental:
        add("incremental column changed", CONTRACT, f"{show(old.incremental)} → {show(new.incremental)}", True)
    quality_changes(oa.get("quality") or [], ob.get("quality") or [], None, add)
    return changes


def _batch_policy(a: Any, b: Any, add: Add) -> None:
    a, b = (a if isinstance(a, Mapping) else {}), (b if isinstance(b, Mapping) else {})
    if a == b:
        return
    defaults = {"rejectOnSchemaBreak": True, "rejectAboveFailedPercent": 10.0, "minFailedRows": 5}
    for key in sorted(set(a) | set(b) | set(defaults)):
        va, vb = a.get(key, defaults.get(key)), b.get(key, defaults.get(key))
        if va == vb:
            continue
        detail = f"batchPolicy.{key} {show(va)} → {show(vb)}"
        try:
            if key == "rejectOnSchemaBreak":
                stricter = bool(vb) and not bool(va)
            elif key in ("rejectAboveFailedPercent", "minFailedRows"):
                stricter = float(vb) < float(va)  # rejects a batch with fewer failing rows
            else:
                stricter = True
        except (TypeError, ValueError):
            stricter = True
        add("batch policy stricter" if stricter else "batch policy relaxed", CONTRACT, detail, stricter)


def _contract_custom(a: Any, b: Any, add: Add) -> None:
    ca, cb = custom_values(a), custom_values(b)
    for key in sorted((set(ca) | set(cb)) - {"batchPolicy"}):
        if ca.get(key) != cb.get(key):
            add("custom property changed", CONTRACT, f"{key} (not read by fundx)", False)


def _sla(a: list, b: list, add: Add) -> None:
    def key(item: Mapping[str, Any]) -> tuple:
        return (item.get("property"), item.get("element"))

    ia = {key(s): s for s in a}
    ib = {key(s): s for s in b}
    for k in list(ia) + [k for k in ib if k not in ia]:
        if ia.get(k) == ib.get(k):
            continue
        label = k[0] + (f" ({k[1]})" if k[1] else "")
        if k not in ib:
            add("sla removed", CONTRACT, label, False)
        elif k not in ia:
            add("sla added", CONTRACT, label, False)
        else:
            detail = rule_diff(ia[k], ib[k]) or "description"
            add("sla changed", CONTRACT, f"{label}: {detail}", False)
