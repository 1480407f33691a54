"""What changed between two versions of a contract, and whether it breaks the feed: the release gate.

:func:`diff_files` reads two contract files (each validated as :func:`contracts.load_contract` does)
and lists each :class:`Change` with its classification. The rule of thumb: a change is **breaking**
when a batch the old contract accepted may be refused or quarantined under the new one, or when a
stage receives something different from what it was promised (a column gone, retyped, renamed,
re-keyed or re-classified); it is **compatible** when the new contract accepts at least what the old
one did and delivers the same columns. docs/contracts-evolution.md has the whole table.

A breaking change needs a new major version (``version: x.y.z``, x raised): :attr:`ContractDiff.allowed`.
``contracts/released/<feed>.odcs.yaml`` is the last released copy of each live feed's contract; the
CI test (tests/contracts/test_contract_released.py) diffs every contract against it, and
:func:`release` copies a contract there only when the gate allows it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from open_data_contract_standard.model import OpenDataContractStandard
from pydantic import ValidationError

from contracts import CONTRACTS_DIR, Contract, _read, contract_path, describe_validation, display_path
from fundx.core.errors import ConfigurationError, FundxError
from fundx.core.settings import get_settings

RELEASED_DIR = CONTRACTS_DIR / "released"
BREAKING, COMPATIBLE = "breaking", "compatible"
CONTRACT = "(contract)"  # the ``field`` of changes to the whole contract

#: options whose larger value accepts less (and whose smaller value accepts more)
_UPPER_BOUNDS = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
_LOWER_BOUNDS = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
#: type changes that accept every value the old type did and deliver it the same way
_WIDENINGS = {("integer", "number")}
#: column keys that only document (fundx reads none of them)
_DOCUMENTATION = ("description", "businessName", "tags", "examples", "authoritativeDefinitions", "synonyms",
                  "criticalDataElement", "physicalType", "id", "deprecated")
#: column keys compared on their own below
_COMPARED = ("name", "physicalName", "logicalType", "logicalTypeOptions", "required", "unique", "primaryKey",
             "primaryKeyPosition", "classification", "enum", "customProperties", "quality")
#: custom properties of a column that fundx reads, compared on their own
_FUNDX_CUSTOM = ("pii", "normalise", "incremental")
#: contract keys that only document or organise (fundx reads none of them)
_METADATA = ("apiVersion", "status", "domain", "dataProduct", "tenant", "tags", "description", "support", "price",
             "team", "roles", "servers", "authoritativeDefinitions", "contractCreatedTs", "context", "slaDefaultElement")


class ContractReadError(ConfigurationError):
    """A contract file that cannot be read or is not a valid contract; the message names the file."""

    default_action = "fix the named file (ODCS v3) and run again"


class ReleaseRefused(FundxError):
    """The current contract may not be released (a breaking change without a new major version, review marks)."""

    default_action = "raise the major version for a breaking change, or make the change compatible"


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


def _custom(items: Any) -> dict[Any, Any]:
    return {c.get("property"): c.get("value") for c in items or [] if isinstance(c, Mapping) and c.get("property")}


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if value is None:
        return "(none)"
    return str(value).lower() if isinstance(value, bool) else str(value)


def diff_contracts(old: Contract, new: Contract) -> list[Change]:
    """Every change from ``old`` to ``new``, each classified (see the module's docstring)."""
    changes: list[Change] = []

    def add(change: str, where: str, detail: str, breaking: bool) -> None:
        changes.append(Change(change, where, detail, breaking))

    a, b = _dump(old), _dump(new)
    # the contract as a whole
    for key in ("name", "id"):
        if a.get(key) != b.get(key):
            add(f"contract {key} changed", CONTRACT, f"{_show(a.get(key))} → {_show(b.get(key))}", True)
    for key in _METADATA:
        if a.get(key) != b.get(key):
            add("description changed" if key == "description" else "metadata changed", CONTRACT, key, False)
    _batch_policy(_custom(a.get("customProperties")).get("batchPolicy"),
                  _custom(b.get("customProperties")).get("batchPolicy"), add)
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
            f"{_show(oa.get('physicalName'))} → {_show(ob.get('physicalName'))}", True)
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
            _property(name, prop, pb[name], add)
        elif name in renamed:
            _property(renamed[name], prop, pb[renamed[name]], add, skip=("physicalName",))
    common = [n for n in pa if n in pb]
    if common != [n for n in pb if n in pa]:
        add("fields reordered", CONTRACT, "columns are matched by name", False)

    if old.key != new.key:
        add("primary key changed", CONTRACT, f"({', '.join(old.key)}) → ({', '.join(new.key)})", True)
    if old.incremental != new.incremental:
        add("incremental column changed", CONTRACT, f"{_show(old.incremental)} → {_show(new.incremental)}", True)
    _quality(oa.get("quality") or [], ob.get("quality") or [], None, add)
    return changes


def _property(name: str, p: dict[str, Any], q: dict[str, Any], add, *, skip: tuple[str, ...] = ()) -> None:
    if "physicalName" not in skip and p.get("physicalName", name) != q.get("physicalName", name):
        add("physical name changed", name, f"{p.get('physicalName', name)} → {q.get('physicalName', name)}", True)
    ta, tb = p.get("logicalType", "string"), q.get("logicalType", "string")
    if ta != tb:
        if (ta, tb) in _WIDENINGS:
            add("type widened", name, f"{ta} → {tb}", False)
        else:
            add("type changed", name, f"{ta} → {tb}", True)
    else:
        _options(name, p.get("logicalTypeOptions") or {}, q.get("logicalTypeOptions") or {}, add)
    ra, rb = bool(p.get("required") or p.get("primaryKey")), bool(q.get("required") or q.get("primaryKey"))
    if ra != rb:
        add("required added" if rb else "required removed", name,
            "empty values are now refused" if rb else "empty values are now accepted", rb)
    ua, ub = bool(p.get("unique") or p.get("primaryKey")), bool(q.get("unique") or q.get("primaryKey"))
    if ua != ub:
        add("unique added" if ub else "unique removed", name,
            "repeated values are now refused" if ub else "repeated values are now accepted", ub)
    if p.get("classification") != q.get("classification"):
        add("classification changed", name, f"{_show(p.get('classification'))} → {_show(q.get('classification'))}", True)
    _enum(name, p.get("enum"), q.get("enum"), add)
    ca, cb = _custom(p.get("customProperties")), _custom(q.get("customProperties"))
    if ca.get("pii", "none") != cb.get("pii", "none"):
        add("pii changed", name, f"{_show(ca.get('pii', 'none'))} → {_show(cb.get('pii', 'none'))}", True)
    sa, sb = list(ca.get("normalise") or []), list(cb.get("normalise") or [])
    if sa != sb:
        gone = [s for s in sa if s not in sb]
        if gone:
            add("normalisation removed", name, f"{_show(sa)} → {_show(sb)}: values it repaired now fail", True)
        else:
            add("normalisation added", name, f"{_show(sa)} → {_show(sb)}", False)
    for key in sorted((set(ca) | set(cb)) - set(_FUNDX_CUSTOM)):
        if ca.get(key) != cb.get(key):
            add("custom property changed", name, f"{key} (not read by fundx)", False)
    for key in _DOCUMENTATION:
        if p.get(key) != q.get(key):
            add("description changed", name, key, False)
    for key in sorted((set(p) | set(q)) - set(_COMPARED) - set(_DOCUMENTATION)):
        if p.get(key) != q.get(key):
            add("property changed", name, f"{key} (not read by fundx)", False)
    _quality(p.get("quality") or [], q.get("quality") or [], name, add)


def _options(name: str, a: Mapping[str, Any], b: Mapping[str, Any], add) -> None:
    for key in list(a) + [k for k in b if k not in a]:
        va, vb = a.get(key), b.get(key)
        if va == vb:
            continue
        detail = f"{key} {_show(va)} → {_show(vb)}"
        if key in _UPPER_BOUNDS or key in _LOWER_BOUNDS:
            upper = key in _UPPER_BOUNDS
            if va is None:
                add(f"{key} added", name, detail, True)
            elif vb is None:
                add(f"{key} removed", name, detail, False)
            else:
                try:
                    narrower = (vb < va) if upper else (vb > va)
                except TypeError:  # a number next to a date text: cannot tell
                    add(f"{key} changed", name, detail, True)
                    continue
                word = ("reduced" if vb < va else "raised")
                add(f"{key} {word}", name, detail, narrower)
        elif va is None:
            add(f"{key} added", name, detail, True)
        elif vb is None:
            add(f"{key} removed", name, detail, False)
        else:
            add(f"{key} changed", name, detail, True)


def _enum(name: str, a: list | None, b: list | None, add) -> None:
    va = [e.get("value") for e in a or []]
    vb = [e.get("value") for e in b or []]
    if va == vb:
        return
    if not va:
        add("enum added", name, f"only {_show(vb)}", True)
    elif not vb:
        add("enum removed", name, f"was {_show(va)}", False)
    else:
        gone = [v for v in va if v not in vb]
        new = [v for v in vb if v not in va]
        if gone:
            add("enum values removed", name, _show(gone), True)
        if new:
            add("enum values added", name, _show(new), False)
        if not gone and not new:
            add("enum reordered", name, "same values", False)


def _severity(rule: Mapping[str, Any]) -> str:
    return str(rule.get("severity") or "error").lower()  # fundx checks every rule: no severity is error


def _quality(a: list, b: list, column: str | None, add) -> None:
    def rid(rule: Mapping[str, Any], i: int) -> str:
        name = rule.get("name") or f"quality.{i}"
        return f"{column}.{name}" if column else name

    ra = {rid(r, i): r for i, r in enumerate(a)}
    rb = {rid(r, i): r for i, r in enumerate(b)}
    for key, rule in ra.items():
        if key not in rb:
            add("rule removed", key, _rule_text(rule), False)
    for key, rule in rb.items():
        if key not in ra:
            severe = _severity(rule) == "error"
            add("rule added", key, f"{_rule_text(rule)}, severity {_severity(rule)}", severe)
            continue
        old = ra[key]
        if old == rule:
            continue
        strip = ("description",)
        core_a = {k: v for k, v in old.items() if k not in strip}
        core_b = {k: v for k, v in rule.items() if k not in strip}
        if core_a == core_b:
            add("rule description changed", key, "description", False)
            continue
        sev_a, sev_b = _severity(old), _severity(rule)
        rest_a = {k: v for k, v in core_a.items() if k != "severity"}
        rest_b = {k: v for k, v in core_b.items() if k != "severity"}
        if rest_a == rest_b:
            add("rule severity changed", key, f"{sev_a} → {sev_b}", sev_b == "error")
        elif _row_count_relaxed(old, rule):
            add("rule relaxed", key, _row_count_detail(old, rule), False)
        elif _area_code_widened(old, rule):
            add("rule relaxed", key, "knownAreaCode: the city's codes → every code of GB/T 2260 (national)", False)
        else:
            add("rule changed", key, _rule_diff(old, rule), sev_b == "error")


def _rule_text(rule: Mapping[str, Any]) -> str:
    impl = rule.get("implementation")
    what = impl.get("rule") if isinstance(impl, Mapping) else None
    return str(what or rule.get("metric") or rule.get("rule") or rule.get("type") or "rule")


def _rule_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    parts = []
    for key in list(a) + [k for k in b if k not in a]:
        if key == "description" or a.get(key) == b.get(key):
            continue
        va, vb = a.get(key), b.get(key)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            parts += [f"{key}.{k} {_show(va.get(k))} → {_show(vb.get(k))}" for k in list(va) + [k for k in vb if k not in va]
                      if va.get(k) != vb.get(k)]
        else:
            parts.append(f"{key} {_show(va)} → {_show(vb)}")
    return "; ".join(parts)


_ROW_COUNT_WIDER = {"minRatio": -1, "maxRatio": 1}  # lower minRatio and higher maxRatio accept more


def _row_count_relaxed(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    ia, ib = a.get("implementation"), b.get("implementation")
    if not (isinstance(ia, Mapping) and isinstance(ib, Mapping)) or ia.get("rule") != "rowCountVsHistory" or ib.get("rule") != "rowCountVsHistory":
        return False
    if {k: v for k, v in a.items() if k not in ("implementation", "description")} != {
            k: v for k, v in b.items() if k not in ("implementation", "description")}:
        return False
    for key in set(ia) | set(ib):
        if ia.get(key) == ib.get(key):
            continue
        direction = _ROW_COUNT_WIDER.get(key)
        try:
            if direction is None or (float(ib[key]) - float(ia[key])) * direction < 0:
                return False
        except (KeyError, TypeError, ValueError):
            return False
    return True


def _area_code_widened(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """A knownAreaCode rule that named a city and no longer does: the national table holds every city's codes."""
    ia, ib = a.get("implementation"), b.get("implementation")
    if not (isinstance(ia, Mapping) and isinstance(ib, Mapping)):
        return False
    if ia.get("rule") != "knownAreaCode" or ib.get("rule") != "knownAreaCode" or "city" not in ia or "city" in ib:
        return False
    rest = ("implementation", "description")
    return ({k: v for k, v in ia.items() if k != "city"} == dict(ib)
            and {k: v for k, v in a.items() if k not in rest} == {k: v for k, v in b.items() if k not in rest})


def _row_count_detail(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    return _rule_diff(a, b)


def _batch_policy(a: Any, b: Any, add) -> None:
    a, b = (a if isinstance(a, Mapping) else {}), (b if isinstance(b, Mapping) else {})
    if a == b:
        return
    defaults = {"rejectOnSchemaBreak": True, "rejectAboveFailedPercent": 10.0, "minFailedRows": 5}
    for key in sorted(set(a) | set(b) | set(defaults)):
        va, vb = a.get(key, defaults.get(key)), b.get(key, defaults.get(key))
        if va == vb:
            continue
        detail = f"batchPolicy.{key} {_show(va)} → {_show(vb)}"
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


def _contract_custom(a: Any, b: Any, add) -> None:
    ca, cb = _custom(a), _custom(b)
    for key in sorted((set(ca) | set(cb)) - {"batchPolicy"}):
        if ca.get(key) != cb.get(key):
            add("custom property changed", CONTRACT, f"{key} (not read by fundx)", False)


def _sla(a: list, b: list, add) -> None:
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
            detail = _rule_diff(ia[k], ib[k]) or "description"
            add("sla changed", CONTRACT, f"{label}: {detail}", False)


# --- releases ----------------------------------------------------------------------------------------


def released_path(feed: str, released_dir: Path | None = None) -> Path:
    """Where the last released copy of ``feed``'s contract lives."""
    return (released_dir or _released_dir()) / f"{feed}.odcs.yaml"


def _released_dir() -> Path:
    """contracts/released, or released/ inside FUNDX_CONTRACTS_DIR when that is set."""
    moved = get_settings().contracts_dir
    return moved / "released" if moved is not None else RELEASED_DIR


@dataclass(frozen=True)
class ReleaseCheck:
    """A feed's current contract against its last released copy (``diff`` is None: never released)."""

    feed: str
    current: Path
    released: Path
    diff: ContractDiff | None
    review: tuple[str, ...] = field(default=())  # columns (or "(contract)") still marked reviewNeeded

    @property
    def is_new(self) -> bool:
        """No released copy yet: a new feed."""
        return self.diff is None

    @property
    def allowed(self) -> bool:
        """Whether the gate lets the current contract stand (new feeds: yes)."""
        return self.diff is None or self.diff.allowed

    @property
    def identical(self) -> bool:
        """The current contract is byte for byte its released copy."""
        return self.released.is_file() and self.current.read_bytes() == self.released.read_bytes()


def _review_marks(contract: Contract) -> tuple[str, ...]:
    raw = contract.raw
    marked = [CONTRACT] if _truthy(_custom_of(raw.customProperties).get("reviewNeeded")) else []
    for prop in contract.schema_object.properties or []:
        if prop.name and _truthy(_custom_of(prop.customProperties).get("reviewNeeded")):
            marked.append(prop.name)
    return tuple(marked)


def _custom_of(items: Any) -> dict[str, Any]:
    return {c.property: c.value for c in items or [] if c.property}


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "yes", "1"))


def check_release(feed: str, *, contracts_dir: Path | None = None, released_dir: Path | None = None) -> ReleaseCheck:
    """The gate for one feed: its contract diffed against its released copy (none: a new feed, no check)."""
    current = contracts_dir / f"{feed}.odcs.yaml" if contracts_dir else contract_path(feed)
    released = released_path(feed, released_dir)
    contract = read_contract(current)
    if contract.feed != feed:
        raise ContractReadError(f"{display_path(current)}: name: must be the feed's name {feed!r}")
    review = _review_marks(contract)
    if not released.is_file():
        return ReleaseCheck(feed, current, released, None, review)
    return ReleaseCheck(feed, current, released, diff_files(released, current), review)


def release(feed: str, *, contracts_dir: Path | None = None, released_dir: Path | None = None) -> ReleaseCheck:
    """Copy ``feed``'s current contract to its released copy, when the gate allows it.

    Refused (:class:`ReleaseRefused`) for breaking changes without a new major version and for a
    contract still marked ``reviewNeeded`` (a draft of ``fundx contract infer``). A contract whose
    rules do not compile is a :class:`ContractReadError`.
    """
    from contracts.rules import contract_rules

    check = check_release(feed, contracts_dir=contracts_dir, released_dir=released_dir)
    try:
        contract_rules(read_contract(check.current))
    except ConfigurationError as exc:
        raise ContractReadError(str(exc)) from None
    where = display_path(check.current)
    if check.review:
        raise ReleaseRefused(f"{where}: still marked reviewNeeded: {', '.join(check.review)}", feed=feed,
                             action="review each marked item (see the comment at the top), remove its reviewNeeded "
                                    "mark, and release again")
    if check.diff is not None and not check.diff.allowed:
        listed = "; ".join(f"{c.change} {c.field}" for c in check.diff.breaking)
        raise ReleaseRefused(f"{where}: {check.diff.verdict} [{listed}]", feed=feed,
                             action=f"set version: {check.diff.next_major} in {where} if the break is agreed with "
                                    "the agency and the stages, or make the changes compatible")
    if not check.identical:
        check.released.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(check.current, check.released)
    return check
