"""The drafted contract: its feed name, key and incremental column, the ODCS document, and its YAML.

:func:`infer_contract` guesses each column (:mod:`contracts.infer.columns`), picks the primary key
and the incremental column, and builds the document with placeholders a person must agree with the
agency (purpose, service levels, batch policy), each marked ``reviewNeeded``. :func:`render` writes
it in the style of the live contracts, with a comment at the top listing what to review;
:func:`summary_rows` is what people are shown: names, types and counts, never a value.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from contracts.infer.columns import ColumnDraft, analyse_column, snake_case
from contracts.infer.samples import InferError, Sample, is_url

API_VERSION = "v3.1.0"  # as the live contracts
_KEY_WORDS = ("编号", "代码", "编码", "流水号")


@dataclass
class Draft:
    """A drafted contract: the document, its YAML text, and the columns as guessed."""

    feed: str
    sample: Sample
    columns: list[ColumnDraft]
    document: dict[str, Any]
    review: list[str]  # contract-level items to review
    text: str

    @property
    def review_count(self) -> int:
        """Items marked reviewNeeded (columns and contract)."""
        return sum(1 for c in self.columns if c.review) + (1 if self.review else 0)


# --- the contract ----------------------------------------------------------------------------------

_FEED = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


def check_feed_name(feed: str) -> str:
    """A feed name as the exchange writes them: agency.feed in lower_case_with_underscores."""
    if not _FEED.match(feed):
        raise InferError(f"feed {feed!r}: write it agency.feed in lower_case_with_underscores (police.deaths)",
                         action="pass --feed AGENCY.FEED")
    return feed


def default_feed(sample: Sample) -> str:
    """draft.<sample's name in snake_case> when no --feed is given."""
    stem = Path(urlsplit(sample.source).path if is_url(sample.source) else sample.source).stem
    return f"draft.{snake_case(stem) or 'feed'}".replace("draft.col_", "draft.f_")


def _key_score(col: ColumnDraft) -> int:
    score = 0
    name = col.name
    if name == "id" or name in ("uscc", "code") or name.endswith(("_id", "_no", "_code")):
        score += 3
    if any(w in col.physical for w in _KEY_WORDS):
        score += 2
    if col.recognised in ("shape", "uscc"):
        score += 1
    if col.pii != "none":
        score -= 5
    return score


def _choose_key(columns: list[ColumnDraft], rows: int) -> list[str]:
    candidates = [c for c in columns if rows >= 2 and c.required and c.distinct == rows
                  and c.logical_type in ("string", "integer")]
    notes = []
    if candidates:
        best = max(candidates, key=lambda c: (_key_score(c), -c.position))
        others = [c.name for c in candidates if c is not best]
        best.review.append(f"primary key guessed: unique and non-empty in all {rows:,} rows"
                           + (f"; other candidates: {', '.join(others)}" if others else ""))
    else:
        best = max(columns, key=lambda c: (_key_score(c), c.filled, -c.position))
        best.review.append("primary key guessed, but no column is unique and non-empty in every row of the sample: "
                           "choose the key (primaryKeyPosition for a composite key)")
        notes.append("no unique column in the sample")
    best.primary_key = best.unique = best.required = True
    return notes


def _choose_incremental(columns: list[ColumnDraft]) -> None:
    stamps = [c for c in columns if c.logical_type == "timestamp"]
    hinted = [c for c in stamps if re.search(r"updat|chang|modif|report|settl|_at$|更新|修改|变更", c.name + c.physical)]
    pick = hinted[0] if hinted else (stamps[0] if len(stamps) == 1 else None)
    if pick:
        pick.incremental = True
        pick.review.append("incremental column guessed (the connector pulls rows changed since the last night by it)")


def _property(col: ColumnDraft) -> dict[str, Any]:
    prop: dict[str, Any] = {"name": col.name}
    if col.physical != col.name:
        prop["physicalName"] = col.physical
    prop["logicalType"] = col.logical_type
    if col.options:
        prop["logicalTypeOptions"] = dict(col.options)
    prop["required"] = bool(col.required)
    if col.unique:
        prop["unique"] = True
    if col.primary_key:
        prop["primaryKey"] = True
        prop["primaryKeyPosition"] = 1
    prop["classification"] = col.classification
    if col.enum:
        prop["enum"] = [{"value": v} for v in col.enum]
    custom: list[dict[str, Any]] = [{"property": "pii", "value": col.pii}]
    if col.incremental:
        custom.append({"property": "incremental", "value": True})
    if col.normalise:
        custom.append({"property": "normalise", "value": list(col.normalise)})
    if col.review:
        custom.append({"property": "reviewNeeded", "value": True, "description": "; ".join(col.review) + "."})
    prop["customProperties"] = custom
    if col.quality:
        prop["quality"] = [dict(q) for q in col.quality]
    return prop


def build_document(feed: str, sample: Sample, columns: list[ColumnDraft]) -> tuple[dict[str, Any], list[str]]:
    """The ODCS document of a draft and the contract-level items to review."""
    object_name = feed.replace(".", "_")
    review = ["description.purpose, domain, slaProperties, batchPolicy and the row_count band are placeholders: "
              "agree them with the agency and the stage that uses the feed"]
    obj: dict[str, Any] = {"name": object_name}
    if sample.object_name:
        obj["physicalName"] = sample.object_name
        review.append(f"schema.0.physicalName is the sample's {'sheet' if sample.kind == 'xlsx' else 'name'}: "
                      "write the name the agency delivers (a file pattern such as deaths_YYYYMM.csv, a table, an endpoint)")
    obj["logicalType"] = "object"
    obj["properties"] = [_property(c) for c in columns]
    quality: list[dict[str, Any]] = []
    by_pii = {c.pii: c.name for c in reversed(columns)}
    id_col = by_pii.get("identity_number")
    birth = next((c.name for c in columns if c.pii == "birth_date" and c.logical_type == "date"), None)
    if id_col and birth:
        quality.append({"name": "birth_date_matches_id", "type": "custom", "engine": "fundx", "dimension": "consistency",
                        "severity": "error", "description": "The birth date equals the one written in the identity number.",
                        "implementation": {"rule": "birthDateMatchesId", "column": birth, "idNumber": id_col}})
    death = next((c.name for c in columns if c.logical_type == "date" and "death" in c.name), None)
    if id_col and death:
        quality.append({"name": "death_not_before_birth", "type": "custom", "engine": "fundx", "dimension": "consistency",
                        "severity": "error", "description": "The death date is not before the birth date in the identity number.",
                        "implementation": {"rule": "notBeforeIdBirth", "column": death, "idNumber": id_col}})
    if quality:
        review.append("cross-column rules guessed from the column names: " + ", ".join(q["name"] for q in quality))
    quality.append({"name": "row_count", "type": "custom", "engine": "fundx", "dimension": "completeness",
                    "severity": "error", "description": "A batch's rows are within a factor of the trailing history's median.",
                    "implementation": {"rule": "rowCountVsHistory", "nights": 28, "minNights": 7,
                                       "minRatio": 0.25, "maxRatio": 4.0}})
    obj["quality"] = quality
    incremental = next((c for c in columns if c.incremental), None)
    dated = [c for c in columns if c.logical_type in ("date", "timestamp")]
    event = next((c for c in dated if c.pii == "event_date"), None) or (dated[0] if dated else None)
    sla: list[dict[str, Any]] = [
        {"property": "frequency", "value": 1, "unit": "d", "scheduler": "cron", "schedule": "0 2 * * *",
         "description": "TODO: how often the agency delivers (placeholder: every night at 02:00 Asia/Shanghai)."},
        {"property": "timeOfAvailability", "value": "01:00",
         "description": "TODO: when the agency's data is available (placeholder)."},
        {"property": "latency", "value": 1, "unit": "d",
         **({"element": f"{object_name}.{incremental.name}"} if incremental else {}),
         "description": "TODO: how soon a record reaches the exchange (placeholder)."},
        {"property": "errorRate", "value": 0.02, "driver": "operational",
         "description": "TODO: the share of a batch's rows that may fail the contract (placeholder: 2 %)."},
        {"property": "deliveryDeadline", "value": "06:00", "driver": "operational",
         "description": "TODO: when the batch must be delivered to its stage (placeholder)."},
    ]
    if event:
        sla.append({"property": "eventLatency", "value": 30, "unit": "d", "element": f"{object_name}.{event.name}",
                    "driver": "analytics", "description": "TODO: 90 % of the rows reach their stage within this many days "
                    "of the event (placeholder)."})
    else:
        review.append("slaProperties: no date column for eventLatency (the SLA monitor needs one)")
    document: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "DataContract",
        "id": f"urn:fundx:contract:{feed}",
        "name": feed,
        "version": "0.1.0",
        "status": "draft",
        "description": {"purpose": f"TODO: what {feed} is for and which stage uses it."},
        "customProperties": [
            {"property": "batchPolicy", "value": {"rejectOnSchemaBreak": True, "rejectAboveFailedPercent": 10,
                                                  "minFailedRows": 5}},
            {"property": "reviewNeeded", "value": True, "description": "; ".join(review) + "."},
        ],
        "schema": [obj],
        "slaProperties": sla,
    }
    return document, review


def infer_contract(sample: Sample, feed: str | None = None, *, today: date | None = None) -> Draft:
    """A draft contract for ``feed`` from a sample (see the module's docstring)."""
    feed = check_feed_name(feed) if feed else default_feed(sample)
    if not sample.headers:
        raise InferError(f"{sample.source}: no columns")
    headers = [str(h) if h is not None else "" for h in sample.headers]
    stripped = [unicodedata.normalize("NFKC", h).strip() for h in headers]
    seen: dict[str, int] = {}
    for i, h in enumerate(stripped, 1):
        if h and h in seen:
            raise InferError(f"{sample.source}: columns {seen[h]} and {i} have the same header {h!r}")
        seen.setdefault(h, i)
    columns = []
    for i, header in enumerate(headers):
        values = [row[i] if i < len(row) else None for row in sample.rows]
        columns.append(analyse_column(i + 1, header.strip(), values, today=today))
    names: Counter[str] = Counter()
    for col in columns:  # two headers the dictionary maps to one name (地址, 住址): number them
        names[col.name] += 1
        if names[col.name] > 1:
            col.name = f"{col.name}_{names[col.name]}"
            col.review.append("logical name numbered: another column has the same guessed name")
    _choose_key(columns, len(sample.rows))
    _choose_incremental(columns)
    document, review = build_document(feed, sample, columns)
    draft = Draft(feed, sample, columns, document, review, "")
    draft.text = render(draft)
    return draft


# --- YAML in the style of the live contracts ----------------------------------------------------------


def _flow(value: Any) -> str:
    """One value in YAML flow style on one line (e.g. ``{property: pii, value: none}``)."""
    text = yaml.safe_dump([value], default_flow_style=True, allow_unicode=True, width=1 << 30, sort_keys=False)
    return text.strip()[1:-1]


_FLOW_KEYS = {"logicalTypeOptions", "enum", "value", "implementation", "purpose"}


def _block(value: Any, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for key, item in value.items():
        if isinstance(item, dict) and key not in _FLOW_KEYS:
            lines.append(f"{pad}{key}:")
            _block(item, indent + 2, lines)
        elif isinstance(item, list) and item and all(isinstance(x, dict) for x in item) and key in ("schema", "properties"):
            lines.append(f"{pad}{key}:")
            for element in item:
                inner: list[str] = []
                _block(element, indent + 4, inner)
                inner[0] = f"{pad}  - " + inner[0].lstrip()
                lines.extend(inner)
        elif isinstance(item, list) and item and all(isinstance(x, dict) for x in item) and (
                key in ("quality", "slaProperties") or any("description" in x for x in item)):
            lines.append(f"{pad}{key}:")
            lines.extend(f"{pad}  - {_flow(x)}" for x in item)
        else:
            lines.append(f"{pad}{key}: {_flow(item)}")


def render(draft: Draft) -> str:
    """The draft as YAML: a comment listing what to review, then the contract in the live contracts' style."""
    s = draft.sample
    rows = f"{len(s.rows):,} rows{' (the first; the sample has more)' if s.truncated else ''}"
    read = f", read as {s.encoding.upper().replace('-SIG', ' with BOM')}" if s.encoding else ""
    head = [
        f"# DRAFT data contract for {draft.feed}, inferred by `fundx contract infer` from {s.source}",
        f"# ({s.kind}{read}; {rows}, {len(draft.columns)} columns). Nothing here is confirmed yet.",
        "# fundx vocabulary: see civil_affairs.deaths.odcs.yaml and contracts/rules.py.",
        "#",
        "# REVIEW before it goes live (each item is marked reviewNeeded: true below; remove the marks when done):",
    ]
    for note in draft.review:
        head.append(f"#   - contract: {note}")
    for c in draft.columns:
        if c.review:
            label = c.name if c.physical == c.name else f"{c.name} ({c.physical})"
            head.append(f"#   - {label}: {c.logical_type}, {c.classification}, pii {c.pii}: " + "; ".join(c.review))
    head += [
        "#   - every column: required was guessed from the sample (no empty value in it); check it",
        "# Then set version 1.0.0 and status active, and release it: fundx contract release " + draft.feed,
    ]
    lines: list[str] = []
    _block(draft.document, 0, lines)
    text = "\n".join(head + lines) + "\n"
    if yaml.safe_load(text) != draft.document:  # pragma: no cover - the emitter is a pure function of the document
        raise AssertionError("the rendered YAML does not read back as the drafted document")
    return text


def summary_rows(draft: Draft) -> Iterable[dict[str, Any]]:
    """One row per column for people: names, type, counts and guesses, never a value."""
    for c in draft.columns:
        yield {
            "position": c.position, "header": c.physical, "name": c.name, "logicalType": c.logical_type,
            "required": c.required, "primaryKey": c.primary_key, "rows": c.rows, "empty": c.empty,
            "distinct": c.distinct, "recognised": c.recognised, "classification": c.classification, "pii": c.pii,
            "review": list(c.review),
        }
