"""How one column or one quality rule changed between two versions of a contract, and whether that breaks.

Each function compares one part and calls ``add(change, field, detail, breaking)`` for every
difference (:func:`contracts.diff.diff_contracts` collects them). A column is breaking to change when
a value it accepted may now be refused (a bound narrowed, an enum value gone, a normalisation
removed, required or unique added) or when the stage receives it differently (retyped, re-classified,
another ``pii``); documentation-only keys never break. A quality rule added or changed at severity
``error`` is breaking; a row-count band widened or an area-code rule made national only relaxes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

#: ``add(change, field, detail, breaking)``: records one difference
Add = Callable[[str, str, str, bool], None]

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


def custom_values(items: Any) -> dict[Any, Any]:
    """``customProperties`` (a list of ``{property, value}``) as a dict."""
    return {c.get("property"): c.get("value") for c in items or [] if isinstance(c, Mapping) and c.get("property")}


def show(value: Any) -> str:
    """A value as a change's detail shows it (lists and mappings inline, booleans lower-case)."""
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    if value is None:
        return "(none)"
    return str(value).lower() if isinstance(value, bool) else str(value)


def column_changes(name: str, p: dict[str, Any], q: dict[str, Any], add: Add, *, skip: tuple[str, ...] = ()) -> None:
    """Every change of the column ``name`` from ``p`` to ``q`` (its properties as dumped)."""
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
        add("classification changed", name, f"{show(p.get('classification'))} → {show(q.get('classification'))}", True)
    _enum(name, p.get("enum"), q.get("enum"), add)
    ca, cb = custom_values(p.get("customProperties")), custom_values(q.get("customProperties"))
    if ca.get("pii", "none") != cb.get("pii", "none"):
        add("pii changed", name, f"{show(ca.get('pii', 'none'))} → {show(cb.get('pii', 'none'))}", True)
    sa, sb = list(ca.get("normalise") or []), list(cb.get("normalise") or [])
    if sa != sb:
        gone = [s for s in sa if s not in sb]
        if gone:
            add("normalisation removed", name, f"{show(sa)} → {show(sb)}: values it repaired now fail", True)
        else:
            add("normalisation added", name, f"{show(sa)} → {show(sb)}", False)
    for key in sorted((set(ca) | set(cb)) - set(_FUNDX_CUSTOM)):
        if ca.get(key) != cb.get(key):
            add("custom property changed", name, f"{key} (not read by fundx)", False)
    for key in _DOCUMENTATION:
        if p.get(key) != q.get(key):
            add("description changed", name, key, False)
    for key in sorted((set(p) | set(q)) - set(_COMPARED) - set(_DOCUMENTATION)):
        if p.get(key) != q.get(key):
            add("property changed", name, f"{key} (not read by fundx)", False)
    quality_changes(p.get("quality") or [], q.get("quality") or [], name, add)


def _options(name: str, a: Mapping[str, Any], b: Mapping[str, Any], add: Add) -> None:
    for key in list(a) + [k for k in b if k not in a]:
        va, vb = a.get(key), b.get(key)
        if va == vb:
            continue
        detail = f"{key} {show(va)} → {show(vb)}"
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


def _enum(name: str, a: list | None, b: list | None, add: Add) -> None:
    va = [e.get("value") for e in a or []]
    vb = [e.get("value") for e in b or []]
    if va == vb:
        return
    if not va:
        add("enum added", name, f"only {show(vb)}", True)
    elif not vb:
        add("enum removed", name, f"was {show(va)}", False)
    else:
        gone = [v for v in va if v not in vb]
        new = [v for v in vb if v not in va]
        if gone:
            add("enum values removed", name, show(gone), True)
        if new:
            add("enum values added", name, show(new), False)
        if not gone and not new:
            add("enum reordered", name, "same values", False)


def _severity(rule: Mapping[str, Any]) -> str:
    return str(rule.get("severity") or "error").lower()  # fundx checks every rule: no severity is error


def quality_changes(a: list, b: list, column: str | None, add: Add) -> None:
    """Every quality rule removed, added or changed from ``a`` to ``b`` (of ``column``; None: the object's)."""
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
            add("rule changed", key, rule_diff(old, rule), sev_b == "error")


def _rule_text(rule: Mapping[str, Any]) -> str:
    impl = rule.get("implementation")
    what = impl.get("rule") if isinstance(impl, Mapping) else None
    return str(what or rule.get("metric") or rule.get("rule") or rule.get("type") or "rule")


def rule_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    """What differs between two rules (or SLA properties), key by key; descriptions left out."""
    parts = []
    for key in list(a) + [k for k in b if k not in a]:
        if key == "description" or a.get(key) == b.get(key):
            continue
        va, vb = a.get(key), b.get(key)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            parts += [f"{key}.{k} {show(va.get(k))} → {show(vb.get(k))}" for k in list(va) + [k for k in vb if k not in va]
                      if va.get(k) != vb.get(k)]
        else:
            parts.append(f"{key} {show(va)} → {show(vb)}")
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
    return rule_diff(a, b)
