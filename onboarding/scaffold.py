"""A new agency feed, scaffolded: its connector config and a draft contract.

``fundx connector new AGENCY.FEED --transport rest|filedrop|database --stage STAGE`` calls
:func:`scaffold`, which writes

- ``connectors/feeds/<feed>.yaml``: every key of the transport's section, with ``# TODO`` comments
  saying what to fill in; values to fill are left empty (or ``TODO`` where one of several kinds
  must be chosen), so that loading the config fails, naming each key, until they are filled. Secrets
  are ``env:FUNDX_<AGENCY>_...`` references. The ``stage:`` key is the feed's routing; the
  ``matching:`` section is written commented out, with the stage's store tables and their columns;
- ``contracts/<feed>.odcs.yaml``: a draft ODCS v3 contract (version 0.1.0, status draft) with a key
  column, placeholder columns with PII classifications, a batch policy and the service levels the
  SLA monitor needs; ``fundx contract infer SAMPLE`` drafts the real columns from a sample.

Nothing else names a feed: the night, the stage list, the sandbox, the conformance suite every
connector passes and the tests all derive their feeds from the configs (connectors.registry). A check
of the suite that cannot apply to the agency is skipped with a written reason in the config's
``conformance:`` section (written commented out).

Nothing is overwritten unless ``force``. The keys, paging styles and auth kinds written come from
the models in :mod:`connectors.config`, so a new paging style appears here without a change.
docs/onboarding.md walks a real onboarding through these files.
"""

from __future__ import annotations

import re
import textwrap
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from connectors import feeds_dir
from connectors.config import FeedConfig
from connectors.schema import MODELINE, reference_fields
from contracts import contracts_dir

REPO_ROOT = Path(__file__).resolve().parent.parent

__all__ = ["REPO_ROOT", "feed_stages", "scaffold", "stage_tables"]

#: where the comments of the generated YAML start (as in the shipped configs)
_COMMENT_COLUMN = 38
_WIDTH = 104

#: the environment variable suffix of an endpoint or secret key, after FUNDX_<AGENCY>_
_ENV_SUFFIX = {"base_url": "URL", "directory": "DROP", "url": "DB_URL", "key": "API_KEY"}
#: keys whose value is an endpoint taken from the environment (not a secret, but set per deployment)
_ENDPOINTS = {"rest": ("base_url",), "filedrop": ("directory",)}

#: what to write in a key's TODO comment: "section.key" or "key" -> hint (else the field's description)
_HINTS: dict[str, str] = {
    "title": "what the feed holds, in English and in the agency's own words: Name (名称)",
    "rest.base_url": "the agency's base URL, from the environment (the sandbox's exchange.env)",
    "rest.path": "the endpoint's path: starts with /, no query string",
    "rest.records": "the response's key that holds the list of records, e.g. data",
    "window": "the query parameters that carry the window [start, end)",
    "window.start_param": "the query parameter of the window's start, e.g. notified_from",
    "window.end_param": "the query parameter of the window's end, e.g. notified_to",
    "header": "the header that carries the key, e.g. X-Api-Key",
    "token_url": "the token endpoint: absolute, or relative to base_url, e.g. /oauth2/token",
    "scope": "the scope to ask for, if the agency wants one",
    "page_size": "rows per request, within the agency's limit, e.g. 1000",
    "cursor_field": "the change-time column (of the contract), passed back as since",
    "after_field": "the key passed back as after; default the contract's key",
    "filedrop.directory": "the drop folder, from the environment (the sandbox's exchange.env)",
    "filedrop.pattern": "a file-name glob inside the folder, no path, e.g. \"deaths_*.csv\"",
    "filedrop.format": "csv or xlsx",
    "filedrop.sheet": "xlsx only (and required there): the worksheet's name",
    "filedrop.encoding": "auto (BOM, else UTF-8, else GB18030) or a Python codec name (csv only)",
    "filedrop.delimiter": "csv only: the field separator",
    "filedrop.done_suffix": "a file is taken once <name><done_suffix> exists",
    "database.url": "a SQLAlchemy URL in the environment or a Prefect Secret block",
    "database.relation": "the view (or table) to read, e.g. v_wage_income",
    "database.schema": "the relation's schema, when not the connection's default",
    "database.incremental_column": "the contract's incremental column (customProperties incremental: true)",
    "database.order_by": "a total order, [incremental column, key], e.g. [updated_at, record_id]",
    "database.chunk_size": "rows fetched per round trip",
}
_HINTS["auth"] = ("auth: how the exchange proves who it is. Secrets are references (env:NAME, or secret:BLOCK "
                  "for a Prefect Secret block), resolved when a pull starts; never the values. Delete auth: for an "
                  "endpoint without credentials.")
_HINTS["paging"] = "paging: how the endpoint splits a window into requests."
_HOW = {"rest": "REST JSON: paging style, auth", "filedrop": "files dropped: format, encoding, how often",
        "database": "a database view: read incrementally by which column"}
_WINDOW_NOTE = "(changed_since paging carries the window itself: delete window: with it)"


# --- the stages --------------------------------------------------------------------------------


def feed_stages() -> tuple[str, ...]:
    """The stages that receive feeds: those the feed configs deliver to (connectors.registry), each with
    keys and a matching store (not the stewards, who get quarantines, nor the investigators)."""
    from connectors.registry import registry

    return registry().stages


def stage_tables(stage: str) -> dict[str, list[tuple[str, str]]]:
    """The store tables of ``stage`` that feeds fill (the office's feeds' too), each with its columns and
    types as the rules read them (matching.rules.EMPTY); the tables most feeds fill first (a new agency's
    feed most likely joins one of those: the deaths), then by name."""
    from connectors.registry import registry
    from matching.rules import EMPTY
    from matching.run import sources

    fillers: dict[str, int] = {}
    for config in registry().feeds.values():
        if config.matching is not None:
            fillers[config.matching.table] = fillers.get(config.matching.table, 0) + 1
    out: dict[str, list[tuple[str, str]]] = {}
    for table, owner in sorted(sources().items(), key=lambda item: (-fillers.get(item[0], 0), item[0])):
        if owner != stage:
            continue
        spec = EMPTY.get(table, "")
        out[table] = [tuple(col.strip().split(" ", 1)) for col in spec.split(",") if col.strip()]  # type: ignore[misc]
    return out


def _stage_rules(tables: list[str]) -> list[str]:
    from matching.rules import RULES

    return [f"{r.name} ({r.title})" for r in RULES.values() if set(r.needs) & set(tables)]


# --- checks ------------------------------------------------------------------------------------


def _feed_pattern() -> str:
    return FeedConfig.model_json_schema()["properties"]["feed"]["pattern"]


def _check(feed: str, transport: str, stage: str | None) -> tuple[str, str]:
    from connectors import TRANSPORTS

    if not isinstance(feed, str) or not re.match(_feed_pattern(), feed):
        raise ValueError(f"feed {feed!r}: must be AGENCY.FEED in lower case with underscores "
                         f"(e.g. health_commission.hospital_deaths)")
    if transport not in TRANSPORTS:
        raise ValueError(f"transport {transport!r}: must be one of {', '.join(TRANSPORTS)}")
    stages = feed_stages()
    if stage is None:
        raise ValueError(f"which stage receives {feed}? give one of: {', '.join(stages)} (--stage)")
    if stage not in stages:
        raise ValueError(f"stage {stage!r}: must be one of {', '.join(stages)}")
    agency, _, name = feed.partition(".")
    return agency, name


# --- YAML lines ----------------------------------------------------------------------------------


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1000)
    return text.removesuffix("\n...\n").strip()


def _line(indent: int, text: str, comment: str = "", *, commented: bool = False) -> str:
    head = " " * indent + ("# " if commented else "") + text
    if not comment:
        return head
    return head.ljust(_COMMENT_COLUMN - 1) + " # " + comment


def _comment_block(indent: int, text: str) -> list[str]:
    prefix = " " * indent + "# "
    return textwrap.wrap(" ".join(text.split()), width=_WIDTH - len(prefix), initial_indent=prefix,
                         subsequent_indent=prefix, break_on_hyphens=False)


def _doc(model: type[BaseModel]) -> str:
    return " ".join((model.__doc__ or "").replace("``", "").split())


def _hint(section: str, key: str, field: FieldInfo) -> str:
    return _HINTS.get(f"{section}.{key}") or _HINTS.get(key) or (field.description or "")


def _literal_values(annotation: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    return None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models of a field's type: one for a nested section, several for a tagged union."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out += _models_in(arg)
    return out


def _discriminator(field: FieldInfo) -> str | None:
    """The tag key of a tagged union field (``type`` of auth, ``style`` of paging), also when optional."""
    if isinstance(field.discriminator, str):
        return field.discriminator

    def search(tp: Any) -> str | None:
        for meta in getattr(tp, "__metadata__", ()):
            if isinstance(getattr(meta, "discriminator", None), str):
                return meta.discriminator
        for arg in typing.get_args(tp):
            found = search(arg)
            if found:
                return found
        return None

    for meta in field.metadata:
        if isinstance(getattr(meta, "discriminator", None), str):
            return meta.discriminator
    return search(field.annotation)


def _fields(model: type[BaseModel], section: str, indent: int, env: str, *, commented: bool = False,
            skip: tuple[str, ...] = ()) -> list[str]:
    """One line (or block) per key of ``model``: its default, a reference, or left empty with a TODO."""
    secrets = reference_fields(model)
    lines: list[str] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key in skip:
            continue
        hint = _hint(section, key, field)
        nested = _models_in(field.annotation)
        tag = _discriminator(field) if len(nested) > 1 else None
        if tag:
            intro = _HINTS.get(f"{section}.{key}") or _HINTS.get(key) or f"{key}: one {tag} of several."
            if not field.is_required() and "Delete" not in intro:
                intro += f" Optional: delete {key}: when it does not apply."
            if not commented:
                lines += _comment_block(indent, intro)
            lines += _union(key, nested, tag, indent, env, section=key, commented=commented)
        elif nested:
            sub = nested[0]
            note = hint + (" " + _WINDOW_NOTE if key == "window" else "")
            if not commented:
                lines += _comment_block(indent, f"{key}: {note}")
                note = ""
            lines.append(_line(indent, f"{key}:", note, commented=commented))
            lines += _fields(sub, key, indent + 2, env, commented=commented)
        elif key in secrets or key in _ENDPOINTS.get(section, ()):
            suffix = _ENV_SUFFIX.get(key, key.upper())
            lines.append(_line(indent, f"{key}: env:{env}_{suffix}", hint, commented=commented))
        elif (values := _literal_values(field.annotation)) is not None and len(values) == 1:
            lines.append(_line(indent, f"{key}: {_scalar(values[0])}", commented=commented))
        elif field.is_required():
            choices = _literal_values(field.annotation)
            if choices:
                todo = "TODO: one of " + " | ".join(str(c) for c in choices)
                lines.append(_line(indent, f"{key}: TODO", todo, commented=commented))
            else:
                lines.append(_line(indent, f"{key}:", f"TODO: {hint}" if hint else "TODO", commented=commented))
        elif field.default is None or field.default is PydanticUndefined:
            optional = f"optional: {hint}" if hint else "optional"
            lines.append(_line(indent, f"# {key}:", optional, commented=commented) if not commented
                         else _line(indent, f"{key}: null", optional, commented=True))
        else:
            lines.append(_line(indent, f"{key}: {_scalar(field.default)}", hint, commented=commented))
    return lines


def _union(key: str, members: list[type[BaseModel]], tag: str, indent: int, env: str, *, section: str,
           commented: bool) -> list[str]:
    """A tagged union (auth kinds, paging styles): ``<tag>: TODO`` and, commented out, every member's keys."""
    kinds = [typing.get_args(m.model_fields[tag].annotation)[0] for m in members]
    lines = [_line(indent, f"{key}:", commented=commented),
             _line(indent + 2, f"{tag}: TODO", "TODO: one of " + " | ".join(kinds), commented=commented)]
    if commented:
        return lines
    lines += _comment_block(indent + 2, f"Replace {tag}: TODO with the block of the {tag} you choose "
                                        f"(uncomment it) and delete the others:")
    for model, kind in zip(members, kinds):
        lines += _comment_block(indent + 2, f"--- {kind}: {_doc(model)}")
        lines += _fields(model, section, indent + 2, env, commented=True)
    return lines


def _matching_lines(stage: str) -> list[str]:
    tables = stage_tables(stage)
    rules = _stage_rules(list(tables))
    lines = _comment_block(0, f"matching: what the {stage} stage keeps of this feed (docs/matching.md). "
                              "Uncomment it once the contract's columns are known, and map each store column "
                              "to a column of the contract: a column not named is not kept; id_number becomes "
                              "a token, a masked number and an area (never kept whole); name goes to the "
                              "identity vault only. A table no rule reads yet is kept too (a new rule is a "
                              "change to matching/).")
    if tables:
        listed = "; ".join(f"{t} ({', '.join(c for c, _ in cols)})" for t, cols in tables.items())
        lines += _comment_block(0, f"The {stage} tables fed by agencies: {listed}."
                                   + (f" Rules that read them: {', '.join(rules)}." if rules else ""))
    lines.append("# matching:")
    table, columns = next(iter(tables.items()), ("TODO", []))
    lines.append(_line(0, f"  table: {table}", "TODO: the store table" if table == "TODO" else
                       "or a new table, e.g. one no rule reads yet", commented=True))
    lines.append("#   columns:")
    names = [c for c, _ in columns]
    mapped: list[tuple[str, str]] = []
    if "person" in names:
        mapped += [("record_key", "the contract's key column"),
                   ("id_number", "the identity-number column (becomes person, id_masked, area)"),
                   ("name", "the name column (identity vault, and name_token: a keyed token of the name; optional)")]
    elif "record_key" in names:
        mapped.append(("record_key", "the contract's key column"))
    derived = {"feed", "received_at", "record_key", "person", "id_masked"} | (
        {"area", "name_token"} if "person" in names else set())
    for column, kind in columns:
        if column in derived or (column.endswith("_masked") and column[: -len("_masked")] in names):
            continue
        if kind == "BLOB":
            mapped.append((column, f"{{account_number: COLUMN}}: a bank-account column (kept as its token and "
                                   f"{column}_masked)"))
        elif kind == "INTEGER":
            mapped.append((column, "{month: COLUMN}: a YYYY-MM column, as the month's number"))
        elif kind == "BOOLEAN":
            mapped.append((column, "{not_null: COLUMN}: whether a contract column has a value"))
        elif column == "area":
            mapped.append((column, "{uscc_area: COLUMN}: the registration area of a credit-code column"))
        else:
            mapped.append((column, f"a contract column ({kind})"))
    if not mapped:
        mapped = [("record_key", "the contract's key column"), ("TODO", "store column: feed column")]
    for column, hint in mapped:
        lines.append(_line(0, f"    {column}:", f"TODO: {hint}", commented=True))
    return lines


def _config_text(feed: str, agency: str, transport: str, stage: str) -> str:
    env = f"FUNDX_{agency.upper()}"
    section_models = {name: _models_in(f.annotation)[0] for name, f in FeedConfig.model_fields.items()
                      if name in ("rest", "filedrop", "database")}
    tables = ", ".join(stage_tables(stage)) or "none yet"
    lines = [
        MODELINE,
        f"# {feed}: TODO: one line on what the agency serves and how ({_HOW[transport]}).",
        f"# Scaffolded by `fundx connector new {feed} --transport {transport} --stage {stage}`.",
        "# Fill in every TODO: until then loading this config fails, naming each key left to fill.",
        f"# Then prove the feed: `fundx connector check {feed}` (docs/onboarding.md).",
        f"feed: {feed}",
        f"agency: {agency}",
        _line(0, "title:", "TODO: " + _HINTS["title"]),
        _line(0, f"contract: {feed}", f"contracts/{feed}.odcs.yaml"),
    ]
    lines += _comment_block(0, "Routing: stage: IS the routing in fundx. The feed's valid rows are sealed to this "
                               "stage's certificate and handed to its inbox (inboxes/<stage>/); there is no other "
                               "routing table to edit.")
    lines += _comment_block(0, f"{stage} keeps the store tables {tables}; see the matching: section at the end "
                               "and docs/matching.md.")
    lines += [f"stage: {stage}", f"transport: {transport}", f"{transport}:"]
    lines += _fields(section_models[transport], transport, 2, env)
    lines += _matching_lines(stage)
    lines += _comment_block(0, "The conformance suite (tests/onboarding/conformance, `fundx connector check`) runs "
                               f"every check against this feed ({_checks()}). One that cannot apply to this agency "
                               "is skipped with the written reason, never silently:")
    lines += ["# conformance:", '#   skip: {paging: "why it cannot apply here"}']
    return "\n".join(lines) + "\n"


# --- the contract --------------------------------------------------------------------------------

_CONTRACT = """\
# Data contract (DRAFT) of {feed}: TODO: what the rows are, from which agency ({agency}).
# Scaffolded by `fundx connector new`. Draft the real columns from a sample of the agency's data:
#   fundx contract infer SAMPLE --feed {feed} --force      (replaces this file)
# (a CSV, xlsx or JSON sample, or a URL: it guesses types, the key, patterns and PII classes and
# marks each guess reviewNeeded), then review every guess. Or edit the placeholders below, which show
# the shape: a key; PII placeholders (classification restricted with customProperties pii
# identity_number, name, event_date, ...; pii none for the rest); the business event's date; the
# incremental column.
# fundx vocabulary (read by contracts/rules.py): customProperties pii / normalise / dateFormats /
# incremental on columns; batchPolicy on the contract; quality rules of type custom with engine
# fundx name a rule in implementation.rule. contracts/civil_affairs.deaths.odcs.yaml is a full example.
# When it is right: remove the reviewNeeded mark, set version 1.0.0 and status active, and run
# `fundx contract release {feed}`: it copies the contract to contracts/released/, which the
# CI gate diffs against; from then on a breaking change needs a major version bump
# (`fundx contract diff OLD NEW` shows which changes break).
apiVersion: v3.1.0
kind: DataContract
id: urn:fundx:contract:{feed}
name: {feed}
version: 0.1.0
status: draft
domain: {domain}                      # TODO: the domain (deaths, custody, medical, business, ...)
description:
  purpose: "TODO: what the rows are, for {stage_words}."
customProperties:
  # A batch is rejected whole on a schema break, or when more than rejectAboveFailedPercent of its rows
  # fail (counted from minFailedRows failing rows on); otherwise failing rows go to the stewards' quarantine.
  - {{property: batchPolicy, value: {{rejectOnSchemaBreak: true, rejectAboveFailedPercent: 10, minFailedRows: 5}}}}
  - {{property: reviewNeeded, value: true, description: "Scaffolded: the columns, rules and service levels are placeholders."}}
schema:
  - name: {object}
    physicalName: TODO                # TODO: the agency's name for it: the endpoint, file or view
    logicalType: object
    properties:
      - name: record_id               # TODO: the agency's record key (several: primaryKeyPosition 1, 2, ...)
        logicalType: string
        required: true
        unique: true
        primaryKey: true
        primaryKeyPosition: 1
        classification: internal
        customProperties: [{{property: pii, value: none}}, {{property: normalise, value: [trim]}}]
      - name: id_number               # TODO: PII placeholder: the person's identity number (delete if none)
        logicalType: string
        logicalTypeOptions: {{pattern: '^[0-9]{{17}}[0-9X]$'}}
        required: true
        classification: restricted
        customProperties: [{{property: pii, value: identity_number}}, {{property: normalise, value: [trim, halfwidth, upperX]}}]
        quality:
          - {{name: excel_mangled, type: custom, engine: fundx, dimension: conformity, severity: error, implementation: {{rule: notExcelMangled}}}}
          - {{name: valid, type: custom, engine: fundx, dimension: accuracy, severity: error, description: "GB 11643: a real birth date and the right check character.", implementation: {{rule: identityNumber}}}}
      - name: name                    # TODO: PII placeholder: the person's name (delete if none)
        logicalType: string
        logicalTypeOptions: {{minLength: 1, maxLength: 50}}
        required: true
        classification: restricted
        customProperties: [{{property: pii, value: name}}, {{property: normalise, value: [trim]}}]
      - name: event_date              # TODO: the business event's date (death, admission, payment, ...): rename
        logicalType: date
        logicalTypeOptions: {{format: yyyy-MM-dd, minimum: '1900-01-01'}}
        required: true
        classification: restricted
        customProperties: [{{property: pii, value: event_date}}, {{property: normalise, value: [trim, halfwidth, date]}}]
        quality:
          - {{name: not_future, type: custom, engine: fundx, dimension: accuracy, severity: error, implementation: {{rule: notFuture}}}}
      - name: updated_at              # TODO: the incremental column (a file-drop snapshot has none: delete incremental)
        logicalType: timestamp
        logicalTypeOptions: {{timezone: true, defaultTimezone: Asia/Shanghai}}
        required: true
        classification: internal
        customProperties: [{{property: pii, value: none}}, {{property: incremental, value: true}}, {{property: normalise, value: [trim]}}]
    quality:
      - {{name: row_count, type: custom, engine: fundx, dimension: completeness, severity: error, description: "The night's rows are within a factor of the trailing history's median.", implementation: {{rule: rowCountVsHistory, nights: 28, minNights: 7, minRatio: 0.25, maxRatio: 4.0}}}}
# Service levels (contracts/sla/policy.py reads all six): TODO: agree each figure with the agency.
slaProperties:
  - {{property: frequency, value: 1, unit: d, scheduler: cron, schedule: "0 2 * * *", description: "TODO: pulled every night at 02:00 Asia/Shanghai."}}
  - {{property: timeOfAvailability, value: "01:00", element: {object}.updated_at, description: "TODO: when the agency's data of the day is available, Asia/Shanghai."}}
  - {{property: latency, value: 1, unit: d, element: {object}.updated_at, description: "TODO: how soon a record is served after it changes."}}
  - {{property: errorRate, value: 0.02, driver: operational, description: "TODO: at most 2 % of a night's rows quarantined."}}
  - {{property: deliveryDeadline, value: "06:00", driver: operational, description: "TODO: the night's batch is recorded delivered to {stage_words} by 06:00 Asia/Shanghai."}}
  - {{property: eventLatency, value: 14, unit: d, element: {object}.event_date, driver: operational, description: "TODO: 90 % of a night's rows reach {stage_words} within 14 days of the event."}}
"""

_DOMAINS = {"death_matching": "deaths", "custody_matching": "custody", "bill_review": "medical",
            "employer_review": "business"}


def _contract_text(feed: str, agency: str, stage: str) -> str:
    return _CONTRACT.format(feed=feed, agency=agency, object=feed.replace(".", "_"),
                            domain=_DOMAINS.get(stage, "TODO"), stage_words=stage.replace("_", " "))


# --- the checks of the conformance suite ---------------------------------------------------------


def _checks() -> str:
    from onboarding.conformance import CHECKS  # pandas and the connectors: only when a feed is scaffolded

    return ", ".join(CHECKS)


# --- the function --------------------------------------------------------------------------------


def scaffold(feed: str, transport: str, *, stage: str | None = None, force: bool = False,
             root: Path | None = None) -> list[Path]:
    """Write the config and draft contract of a new feed under ``root`` (default: where the exchange
    reads them, FUNDX_FEEDS_DIR and FUNDX_CONTRACTS_DIR or the repository's); the paths written, in that order.

    ValueError for a bad feed name, transport or stage (the stage must be given: the message lists
    the stages that receive feeds); FileExistsError naming the files that already exist, and
    nothing written, unless ``force``.
    """
    agency, _name = _check(feed, transport, stage)
    assert stage is not None
    base = Path(root) if root is not None else REPO_ROOT
    # by default where the exchange reads them (FUNDX_FEEDS_DIR, FUNDX_CONTRACTS_DIR, else the repository's)
    feeds = base / "connectors" / "feeds" if root is not None else feeds_dir()
    contracts = base / "contracts" if root is not None else contracts_dir()
    files = {
        feeds / f"{feed}.yaml": _config_text(feed, agency, transport, stage),
        contracts / f"{feed}.odcs.yaml": _contract_text(feed, agency, stage),
    }
    existing = [p for p in files if p.exists()]
    if existing and not force:
        shown = ", ".join(_shown(p, base) for p in existing)
        raise FileExistsError(f"{feed}: {shown} already exist{'s' if len(existing) == 1 else ''} "
                              f"(force to overwrite)")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)


def _shown(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)
