"""The engine-neutral rules of a contract: what each row and each batch must satisfy.

A contract (ODCS v3) is read into three things, none of which knows Great Expectations:

- :class:`Rule` s: one per check, with a stable id that names it in quarantine, ledger and reports
  (``id_number.valid``, ``death_date.not_future``, ``death_not_before_birth``);
- the declared normalisation of each column (:class:`Normalisation`);
- the :class:`BatchPolicy` (when a whole batch is rejected instead of quarantining rows).

Where the rules come from in the contract:

============================================  =====================================================
ODCS construct                                rule kind (rule id)
============================================  =====================================================
``required: true`` / ``primaryKey: true``     ``required`` (``<col>.required``)
``unique: true``                              ``unique`` (``<col>.unique``)
``logicalTypeOptions.pattern``                ``pattern`` (``<col>.format``)
``logicalTypeOptions.minLength/maxLength``    ``length`` (``<col>.length``)
``enum``                                      ``allowed_values`` (``<col>.allowed_values``)
``logicalType: date``                         ``date`` (``<col>.date``), plus ``range`` from
                                              ``logicalTypeOptions.minimum/maximum``
``logicalType: timestamp``                    ``timestamp`` (``<col>.timestamp``)
``logicalType: number/integer`` min/max       ``range`` (``<col>.range``)
``quality`` type ``library``                  nullValues / duplicateValues / invalidValues
                                              (``arguments.validValues`` or ``arguments.pattern``)
                                              with ``mustBe: 0``
``quality`` type ``custom``, engine ``fundx``  ``implementation.rule``: notExcelMangled,
                                              identityNumber, knownAreaCode (national), creditCode,
                                              notFuture, birthDateMatchesId, dateOrder,
                                              notBeforeIdBirth, notGreaterThan, rowCountVsHistory
============================================  =====================================================

Two structural rules hold for every contract without being declared: ``row_shape`` (a file's row
has as many fields as its header: a row that has more or fewer is never parsed into the columns) and
``key_conflict`` (two different rows under one record key, which no incremental value orders, are a
conflict for the stewards, never collapsed silently). The transport finds them while it reads
(:mod:`connectors.base`, :mod:`connectors.dropcsv`) and marks the row in its ``_defect`` column
(:data:`fundx.core.digest.DEFECT`);
the check quarantines the row under that rule. They are not compiled to Great Expectations.

fundx settings live in ``customProperties``: ``pii`` and ``normalise`` on columns (steps ``trim``,
``halfwidth``, ``upperX``, ``date``, and ``upgrade15`` on identity-number columns of feeds that may send
first-generation 15-digit numbers), ``batchPolicy`` on the contract
(``rejectOnSchemaBreak``, ``rejectAboveFailedPercent``, ``minFailedRows``: the share counts from
that many failing rows on). Anything else in a quality rule (type
``sql``, another engine, an unknown rule) is a ConfigurationError naming the file and key: a
contract is never half-checked.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contracts import Contract, contract_path, display_path
from fundx.core.errors import ConfigurationError

NORMALISE_STEPS = ("trim", "halfwidth", "upperX", "date", "upgrade15")
#: the implicit step of a timestamp column with ``logicalTypeOptions.defaultTimezone``: ``zone:Asia/Shanghai``
ZONE_STEP = "zone:"
ROW_KINDS = (
    "required", "unique", "pattern", "length", "allowed_values", "range", "date", "timestamp",
    "not_future", "excel_mangled", "identity_number", "area_code", "credit_code",
    "birth_date_matches_id", "date_order", "not_before_id_birth", "not_greater_than",
)
BATCH_KINDS = ("row_count",)
#: rules every contract has, found by the transport while it reads (never compiled to GX)
STRUCTURAL_KINDS = ("row_shape", "key_conflict")
ROW_SHAPE = "row_shape"
KEY_CONFLICT = "key_conflict"


@dataclass(frozen=True)
class Rule:
    """One check of a contract: an id people read, a kind the compilers know, columns and parameters."""

    id: str
    kind: str
    columns: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    description: str = ""
    key: str = ""  # where the rule comes from in the contract (schema.0.properties.1.quality.0)

    @property
    def scope(self) -> str:
        """``row`` (failing rows are quarantined) or ``batch`` (a failure rejects the whole batch)."""
        return "batch" if self.kind in BATCH_KINDS else "row"

    @property
    def structural(self) -> bool:
        """Found by the transport while it reads (:data:`STRUCTURAL_KINDS`), not by the contract's check."""
        return self.kind in STRUCTURAL_KINDS


@dataclass(frozen=True)
class Normalisation:
    """The declared normalisation of one text column, in order."""

    column: str
    steps: tuple[str, ...]


@dataclass(frozen=True)
class BatchPolicy:
    """When a batch is held back whole: a schema break, or more than this share of rows failing."""

    reject_on_schema_break: bool = True
    reject_above_failed_percent: float = 10.0
    #: the share applies from this many failing rows on (2 bad rows of 15 are rows to look at, not a broken batch)
    min_failed_rows: int = 5


@dataclass(frozen=True)
class ContractRules:
    """Everything a contract asks of a batch, engine-neutral."""

    feed: str
    version: str
    rules: tuple[Rule, ...]
    normalisation: tuple[Normalisation, ...]
    policy: BatchPolicy

    @property
    def row_rules(self) -> tuple[Rule, ...]:
        """The rules whose failures quarantine rows."""
        return tuple(r for r in self.rules if r.scope == "row")

    @property
    def batch_rules(self) -> tuple[Rule, ...]:
        """The rules whose failures reject the batch."""
        return tuple(r for r in self.rules if r.scope == "batch")


_FUNDX_RULES = {
    "notExcelMangled": "excel_mangled", "identityNumber": "identity_number", "knownAreaCode": "area_code",
    "creditCode": "credit_code", "notFuture": "not_future", "birthDateMatchesId": "birth_date_matches_id",
    "dateOrder": "date_order", "notBeforeIdBirth": "not_before_id_birth", "notGreaterThan": "not_greater_than",
    "rowCountVsHistory": "row_count",
}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@lru_cache(maxsize=64)
def contract_rules(contract: Contract) -> ContractRules:
    """The rules, normalisation and batch policy of a contract; errors name the file and the key."""
    where = contract.source or display_path(contract_path(contract.feed))

    def fail(key: str, message: str) -> ConfigurationError:
        return ConfigurationError(f"{where}: {key}: {message}", feed=None)

    raw = contract.raw
    obj = contract.schema_object
    columns = set(contract.names)
    rules: list[Rule] = []
    normalisation: list[Normalisation] = []

    def need_column(key: str, name: object) -> str:
        if not isinstance(name, str) or name not in columns:
            raise fail(key, f"names no column of the contract: {name!r}")
        return name

    def quality_rules(items: list, base: str, column: str | None) -> None:
        for j, q in enumerate(items or []):
            key = f"{base}.quality.{j}"
            name = q.name
            if not name or not _NAME.match(name):
                raise fail(f"{key}.name", "is required: lower_case_with_underscores, it names the rule in reports")
            rule_id = f"{column}.{name}" if column else name
            if rule_id in STRUCTURAL_KINDS:
                raise fail(f"{key}.name", f"{rule_id} is a rule every contract has already; give yours another name")
            text = q.description or ""
            if q.type == "library":
                metric = q.metric or q.rule
                if q.mustBe != 0:
                    raise fail(key, "library rules are checked row by row: use mustBe: 0")
                if column is None:
                    raise fail(f"{key}.metric", f"{metric!r} belongs on a column")
                args = q.arguments or {}
                if metric in ("nullValues", "missingValues"):
                    rules.append(Rule(rule_id, "required", (column,), {}, text, key))
                elif metric == "duplicateValues":
                    rules.append(Rule(rule_id, "unique", (column,), {}, text, key))
                elif metric == "invalidValues" and "validValues" in args:
                    rules.append(Rule(rule_id, "allowed_values", (column,), {"values": list(args["validValues"])}, text, key))
                elif metric == "invalidValues" and "pattern" in args:
                    rules.append(Rule(rule_id, "pattern", (column,), {"regex": _anchored(str(args["pattern"]))}, text, key))
                else:
                    raise fail(f"{key}.metric", f"unsupported library metric {metric!r} (nullValues, missingValues, duplicateValues, invalidValues)")
                continue
            if q.type != "custom" or q.engine != "fundx":
                raise fail(f"{key}.type", f"unsupported quality rule (type {q.type!r}, engine {q.engine!r}); use type custom with engine fundx")
            impl = q.implementation if isinstance(q.implementation, dict) else {}
            kind = _FUNDX_RULES.get(str(impl.get("rule")))
            if kind is None:
                raise fail(f"{key}.implementation.rule", f"unknown rule {impl.get('rule')!r} (known: {', '.join(_FUNDX_RULES)})")
            ikey = f"{key}.implementation"
            if kind in ("excel_mangled", "identity_number", "credit_code", "not_future"):
                if column is None:
                    raise fail(ikey, f"{impl['rule']} belongs on a column")
                rules.append(Rule(rule_id, kind, (column,), {}, text, key))
            elif kind == "area_code":
                if column is None:
                    raise fail(ikey, f"{impl['rule']} belongs on a column")
                if "city" in impl:
                    # the check became national: a contract that still names a city means a narrower
                    # check than it gets, so it is refused rather than silently widened
                    raise fail(f"{ikey}.city", "knownAreaCode is national now (every county-level code of GB/T 2260, "
                               "retired ones too): a number issued outside the city is valid. Remove city; the "
                               "deployment's city (FUNDX_CITY) only routes work to its districts")
                rules.append(Rule(rule_id, kind, (column,), {}, text, key))
            elif kind == "date_order":
                earlier = need_column(f"{ikey}.earlier", impl.get("earlier"))
                later = need_column(f"{ikey}.later", impl.get("later"))
                rules.append(Rule(rule_id, kind, (earlier, later), {}, text, key))
            elif kind in ("birth_date_matches_id", "not_before_id_birth"):
                id_col = need_column(f"{ikey}.idNumber", impl.get("idNumber"))
                col = need_column(f"{ikey}.column", impl.get("column"))
                rules.append(Rule(rule_id, kind, (id_col, col), {}, text, key))
            elif kind == "not_greater_than":
                col = need_column(f"{ikey}.column", impl.get("column"))
                than = need_column(f"{ikey}.than", impl.get("than"))
                rules.append(Rule(rule_id, kind, (col, than), {}, text, key))
            elif kind == "row_count":
                params = {"nights": int(impl.get("nights", 28)), "min_nights": int(impl.get("minNights", 7)),
                          "min_ratio": float(impl.get("minRatio", 0.25)), "max_ratio": float(impl.get("maxRatio", 4.0))}
                if not 0 <= params["min_ratio"] <= 1 <= params["max_ratio"]:
                    raise fail(ikey, "needs 0 <= minRatio <= 1 <= maxRatio")
                rules.append(Rule(rule_id, kind, (), params, text, key))

    for i, prop in enumerate(obj.properties or []):
        base = f"schema.0.properties.{i}"
        col = prop.name
        if col is None:  # reading the contract already refused a column without a name
            raise fail(f"{base}.name", "is required")
        opts = prop.logicalTypeOptions or {}
        if prop.required or prop.primaryKey:
            rules.append(Rule(f"{col}.required", "required", (col,), {}, "A value is required.", f"{base}.required"))
        if prop.unique or prop.primaryKey:
            rules.append(Rule(f"{col}.unique", "unique", (col,), {}, "No two rows share a value.", f"{base}.unique"))
        if "pattern" in opts:
            rules.append(Rule(f"{col}.format", "pattern", (col,), {"regex": _anchored(str(opts["pattern"]))},
                              "The value has the declared format.", f"{base}.logicalTypeOptions.pattern"))
        if "minLength" in opts or "maxLength" in opts:
            rules.append(Rule(f"{col}.length", "length", (col,), {"min": opts.get("minLength"), "max": opts.get("maxLength")},
                              "The value's length is within bounds.", f"{base}.logicalTypeOptions"))
        if prop.enum:
            rules.append(Rule(f"{col}.allowed_values", "allowed_values", (col,), {"values": [e.value for e in prop.enum]},
                              "The value is one of the enumeration.", f"{base}.enum"))
        if prop.logicalType == "date":
            rules.append(Rule(f"{col}.date", "date", (col,), {}, "A real calendar date.", f"{base}.logicalType"))
        if prop.logicalType == "timestamp":
            rules.append(Rule(f"{col}.timestamp", "timestamp", (col,), {}, "A moment with a time zone.", f"{base}.logicalType"))
        if prop.logicalType in ("date", "number", "integer") and ("minimum" in opts or "maximum" in opts):
            rules.append(Rule(f"{col}.range", "range", (col,), {"min": opts.get("minimum"), "max": opts.get("maximum"),
                              "dates": prop.logicalType == "date"}, "The value is within the declared range.",
                              f"{base}.logicalTypeOptions"))
        quality_rules(prop.quality or [], base, col)
        custom = {c.property: c.value for c in (prop.customProperties or []) if c.property}
        steps = custom.get("normalise")
        if steps is not None:
            if not isinstance(steps, list) or any(s not in NORMALISE_STEPS for s in steps):
                raise fail(f"{base}.customProperties.normalise", f"must list steps from {', '.join(NORMALISE_STEPS)}")
            if "date" in steps and prop.logicalType != "date":
                raise fail(f"{base}.customProperties.normalise", "the date step is for date columns")
            if "upgrade15" in steps and custom.get("pii") != "identity_number":
                raise fail(f"{base}.customProperties.normalise", "the upgrade15 step is for identity-number columns "
                           "(pii: identity_number)")
            if "upgrade15" in steps and any(s in ("trim", "halfwidth") for s in steps[steps.index("upgrade15"):]):
                raise fail(f"{base}.customProperties.normalise", "upgrade15 comes after trim and halfwidth "
                           "(it upgrades 15 ASCII digits)")
        steps = list(steps or [])
        if prop.logicalType == "timestamp" and opts.get("defaultTimezone"):
            # ODCS: a timestamp without an offset is in defaultTimezone (a database's local-time text)
            zone = str(opts["defaultTimezone"])
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise fail(f"{base}.logicalTypeOptions.defaultTimezone", f"{zone!r} is not a time zone name") from None
            steps.append(f"{ZONE_STEP}{zone}")
        if steps:
            normalisation.append(Normalisation(col, tuple(steps)))
    quality_rules(obj.quality or [], "schema.0", None)

    rules.append(Rule(ROW_SHAPE, ROW_SHAPE, (), {},
                      "The row has as many fields as the file's header (a malformed row is never read into columns).",
                      "(every contract)"))
    rules.append(Rule(KEY_CONFLICT, KEY_CONFLICT, tuple(contract.key), {},
                      "No two different rows share the record key (identical copies collapse; a later version "
                      "by the incremental column replaces an earlier one).", "(every contract)"))
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise fail(rule.key, f"rule {rule.id!r} is declared twice")
        seen.add(rule.id)

    policy = BatchPolicy()
    for k, cp in enumerate(raw.customProperties or []):
        if cp.property == "batchPolicy":
            value = cp.value if isinstance(cp.value, dict) else None
            unknown = set(value or {}) - {"rejectOnSchemaBreak", "rejectAboveFailedPercent", "minFailedRows"}
            if value is None or unknown:
                raise fail(f"customProperties.{k}.value",
                           "batchPolicy takes rejectOnSchemaBreak, rejectAboveFailedPercent and minFailedRows")
            percent = float(value.get("rejectAboveFailedPercent", policy.reject_above_failed_percent))
            if not 0 <= percent <= 100:
                raise fail(f"customProperties.{k}.value.rejectAboveFailedPercent", "must be between 0 and 100")
            least = value.get("minFailedRows", policy.min_failed_rows)
            if not isinstance(least, int) or least < 1:
                raise fail(f"customProperties.{k}.value.minFailedRows", "must be a whole number from 1")
            policy = BatchPolicy(bool(value.get("rejectOnSchemaBreak", True)), percent, least)
    return ContractRules(contract.feed, contract.version, tuple(rules), tuple(normalisation), policy)


def row_count_bounds(params: Mapping[str, Any], history: Sequence[int] | None) -> tuple[int, int] | None:
    """(fewest, most) rows a batch may have after ``history`` (row counts, oldest first) under a
    ``row_count`` rule's parameters (nights, min_nights, min_ratio, max_ratio); None: too little history.

    The one formula of the row-count band: the contract check and the SLA monitor both use it.
    """
    nights = int(params["nights"])
    recent = [int(n) for n in (history or [])][-nights:] if nights else []
    if not recent or len(recent) < int(params["min_nights"]):
        return None
    median = float(statistics.median(recent))
    return int(math.floor(median * params["min_ratio"])), int(math.ceil(median * params["max_ratio"]))


def _anchored(regex: str) -> str:
    """A pattern that must match the whole value (GX and Arrow search; ODCS patterns mean the whole)."""
    out = regex if regex.startswith("^") else "^(?:" + regex + ")"
    return out if out.endswith("$") else out + "$"
