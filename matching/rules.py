"""Death consolidation and the registry of the matching rules, each a small named SQL unit over DuckDB (one
family to a module: matching.rules_deaths, _custody, _accounts, _medical, _employer; what they share: matching.sql).

Every rule reads the views :func:`prepare` defines (``roll``, ``payments``, ``account_changes``, ``deaths``,
``custody``, ``bills``, ``businesses``, ``contributions``, ``subsidies``, ``wages``: the latest row per key of what
the stages received, all pseudonymised: ``person`` is a token) and
returns the same columns: rule, subject (what one order is about: a person's token as hex, a bill,
an account or an employer), person (the tokens whose identity the investigators get), id_masked,
area, months, amount_at_risk and detail (JSON, masked evidence only). docs/matching.md defines
each rule; the sandbox plants exactly the cases each must find.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from fundx.core import codes
from fundx.core.errors import ConfigurationError
from matching import rules_accounts, rules_custody, rules_deaths, rules_employer, rules_medical
from matching.scan import Scan
from matching.sql import KEYS, Rule, latest, month_no, past_memory, paying_sql, routed

__all__ = ["COLUMNS", "EMPTY", "KEYS", "RULES", "Inputs", "Rule", "deaths", "month_no", "parse_params", "prepare",
           "run_rules"]

#: the columns every rule returns, in order
COLUMNS = ("rule", "subject", "persons", "id_masked", "area", "months", "amount_at_risk", "detail")


log = logging.getLogger("fundx.matching")

RULES: dict[str, Rule] = {r.name: r for family in (rules_deaths, rules_custody, rules_accounts, rules_medical,
                                                   rules_employer) for r in family.RULES}
DEATH_DEFAULTS = {"conflict_days": 2}


def parse_params(pairs: dict[str, str] | None) -> dict[str, dict[str, Any]]:
    """``{"rule.name": "value"}`` -> per-rule parameters over the defaults; ConfigurationError naming a bad one."""
    params: dict[str, dict[str, Any]] = {name: dict(r.defaults) for name, r in RULES.items()}
    params["deaths"] = dict(DEATH_DEFAULTS)
    for dotted, text in (pairs or {}).items():
        rule, _, name = dotted.partition(".")
        if rule not in params or name not in params[rule]:
            known = ", ".join(f"{r}.{n}" for r, ps in params.items() for n in ps)
            raise ConfigurationError(f"matching parameter {dotted!r} does not exist", action=f"use one of: {known}")
        default = params[rule][name]
        try:
            if isinstance(default, bool) or not isinstance(default, (int, float)):
                raise ConfigurationError(f"matching parameter {dotted} cannot be set from the command line")
            value = type(default)(text)
        except ValueError:
            raise ConfigurationError(f"matching parameter {dotted}: {text!r} is not a {type(default).__name__}") from None
        if value < 0:
            raise ConfigurationError(f"matching parameter {dotted} must not be negative")
        params[rule][name] = value
    return params


EMPTY: dict[str, str] = {
    "deaths": "feed VARCHAR, record_key VARCHAR, person BLOB, id_masked VARCHAR, area VARCHAR, death_date DATE, "
              "received_at TIMESTAMPTZ, name_token BLOB",
    "custody": "record_key VARCHAR, person BLOB, id_masked VARCHAR, area VARCHAR, custody_status VARCHAR, "
               "admitted_on DATE, sentence_start DATE, sentence_end DATE, received_at TIMESTAMPTZ",
    "bills": "record_key VARCHAR, person BLOB, id_masked VARCHAR, area VARCHAR, hospital_code VARCHAR, "
             "diagnosis_code VARCHAR, inpatient BOOLEAN, admitted_on DATE, discharged_on DATE, total_amount DOUBLE, "
             "fund_amount DOUBLE, received_at TIMESTAMPTZ",
    "businesses": "record_key VARCHAR, area VARCHAR, status VARCHAR, deregistered_on DATE, changed_on DATE, "
                  "received_at TIMESTAMPTZ",
    # the office's feeds (social_insurance.*): months as month numbers, accounts as tokens and masked
    "roll": "record_key VARCHAR, person BLOB, id_masked VARCHAR, area VARCHAR, spouse BLOB, benefit_type VARCHAR, "
            "monthly_amount DOUBLE, account BLOB, account_masked VARCHAR, status VARCHAR, start_month INTEGER, "
            "stop_month INTEGER, paid_through INTEGER, received_at TIMESTAMPTZ, district_given BOOLEAN",
    "payments": "record_key VARCHAR, entry_key VARCHAR, person BLOB, id_masked VARCHAR, area VARCHAR, "
                "benefit_type VARCHAR, month INTEGER, amount DOUBLE, account BLOB, account_masked VARCHAR, "
                "paid_on DATE, received_at TIMESTAMPTZ",
    "contributions": "record_key VARCHAR, person BLOB, id_masked VARCHAR, area VARCHAR, employer_uscc VARCHAR, "
                     "month INTEGER, amount DOUBLE, received_at TIMESTAMPTZ",
    # the tax bureau's wage declarations (employer review): one row per person, employer and month declared
    "wages": "record_key VARCHAR, person BLOB, id_masked VARCHAR, area VARCHAR, employer_uscc VARCHAR, month INTEGER, "
             "wage_amount DOUBLE, received_at TIMESTAMPTZ",
    "subsidies": "record_key VARCHAR, uscc VARCHAR, subsidy_type VARCHAR, month INTEGER, amount DOUBLE, "
                 "received_at TIMESTAMPTZ",
    "account_changes": "record_key VARCHAR, entry_key VARCHAR, person BLOB, id_masked VARCHAR, old_account BLOB, "
                       "old_account_masked VARCHAR, new_account BLOB, new_account_masked VARCHAR, changed_on DATE, "
                       "received_at TIMESTAMPTZ",
}


@dataclass
class Inputs:
    """The tables a night's matching reads (Arrow, or a store table's files as DuckDB scans them: matching.scan.Scan,
    which gives its own parts; pseudonymised); None when the store has none.

    ``parts``: per table, the row counts of its parts in the order they were received, each one row per key
    (the store's compacted file, which the nightly purge leaves with the latest row per key, then each batch
    loaded since: Store.read_parts). A table without them is deduplicated whole.
    """

    tables: dict[str, pa.Table | Scan | None] = field(default_factory=dict)
    parts: dict[str, list[int]] = field(default_factory=dict)


def confirming_feeds() -> list[str]:
    """The death sources whose report confirms a death on its own: the feeds whose config's ``matching:``
    section says ``confirms: true`` (the police's cancelled household registrations), sorted."""
    from connectors.registry import registry

    return sorted(name for name, config in registry().feeds.items()
                  if config.matching is not None and config.matching.table == "deaths" and config.matching.confirms)


def prepare(con: duckdb.DuckDBPyConnection, inputs: Inputs, params: dict[str, dict[str, Any]]) -> None:
    """Register the inputs (latest row per key), then build ``death_view``, the consolidated deaths."""
    for name, columns in EMPTY.items():
        table = inputs.tables.get(name)
        typed = [tuple(c.strip().split(" ", 1)) for c in columns.split(",")]
        missing = [] if table is None else [(col, kind) for col, kind in typed if col not in table.column_names]
        read = [col for col, _ in typed]
        if table is None:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {name}_in ({columns})")
        elif missing:  # batches stored before a column was added (name_token): NULL there
            _put(con, f"{name}_stored", table, read)
            added = ", ".join(f"NULL::{kind} AS {col}" for col, kind in missing)
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name}_in AS SELECT *, {added} FROM {name}_stored")
        else:
            _put(con, f"{name}_in", table, read)
        if name in KEYS:
            parts = table.parts if isinstance(table, Scan) else inputs.parts.get(name, [])
            _latest_rows(con, name, table, [] if missing else parts)
        else:
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {name}_in")
    for sql in paying_sql(codes.ACTIVE):  # whose office pays each person and account (matching.sql.routed)
        con.execute(sql)
    conflict = int(params["deaths"]["conflict_days"])
    # which sources know of a death, as bits (the confirming ones first): cheaper than count(DISTINCT feed)
    confirming = confirming_feeds()
    seen = {f for (f,) in con.sql("SELECT DISTINCT feed FROM deaths_in").fetchall()}
    feeds = [*confirming, *sorted(seen - set(confirming))]
    if len(feeds) > 62:
        raise ConfigurationError(f"{len(feeds)} death sources: the consolidation counts at most 62")
    bits = "CASE feed " + " ".join(f"WHEN '{f}' THEN {1 << i}" for i, f in enumerate(feeds)) + " ELSE 0 END"
    alone = (1 << len(confirming)) - 1  # the bits of the sources that confirm a death on their own
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE death_view AS
    WITH per AS (
        SELECT person, max(death_date) AS death_date, min(death_date) AS earliest,
               bit_or({bits}::UBIGINT) AS known
        FROM deaths WHERE person IS NOT NULL AND death_date IS NOT NULL GROUP BY person)
    SELECT person, death_date, earliest, bit_count(known)::INTEGER AS sources,
           CASE WHEN date_diff('day', earliest, death_date) > {conflict} THEN 'conflict'
                WHEN known & {alone} != 0 OR bit_count(known) >= 2 THEN 'confirmed' ELSE 'probable' END AS confidence
    FROM per""")


def _copy(con: duckdb.DuckDBPyConnection, name: str, files: Iterator[ds.Dataset], columns: list[str]) -> None:
    """``name`` made of ``columns`` of the datasets (Scan.datasets: one file each, the same columns), one at a
    time."""
    listed = ", ".join(f'"{c}"' for c in columns)
    statement = f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT {listed} FROM scan_in"
    for data in files:
        con.register("scan_in", data)
        try:
            con.execute(statement)
        finally:
            con.unregister("scan_in")
        statement = f"INSERT INTO {name} SELECT {listed} FROM scan_in"


def _put(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table | Scan, read: list[str]) -> None:
    """An input as ``name``: an Arrow table registered as it is; a store table's files copied once into DuckDB
    temporary tables (which FUNDX_MATCHING_MEMORY bounds, spilled past it), a file at a time (one file's Parquet
    decrypted at a time): of a table of several parts, its first part as ``{name}_first`` and the rest as
    ``{name}_rest``, ``name`` their union in order. Only the columns the rules ``read`` (of those it has) are
    copied: not the batch each row came in, 70 characters a row and half a gigabyte at a million people."""
    if not isinstance(table, Scan):
        con.register(name, table)
        return
    columns = [c for c in table.column_names if c in read]
    if len(table.parts) > 1:
        _copy(con, f"{name}_first", table.datasets(0, 1), columns)
        _copy(con, f"{name}_rest", table.datasets(1), columns)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {name}_first UNION ALL "
                    f"SELECT * FROM {name}_rest")
        return
    _copy(con, name, table.datasets(), columns)


def _split(table: pa.Table | Scan, first: int) -> tuple[pa.Table | ds.Dataset, pa.Table | ds.Dataset]:
    """The first part of a table (``first`` rows) and the rest."""
    if isinstance(table, Scan):
        raise TypeError("a Scan is split by _put")
    return table.slice(0, first), table.slice(first)


def _latest_rows(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table | Scan | None, parts: list[int]) -> None:
    """The view ``name``: the latest row per key of ``{name}_in``, given its parts (Inputs.parts: row counts,
    in the order received, each one row per key). The first part's rows are read as they are, but those a
    later part replaces (an anti-join against the later rows' keys, few); one later part is read whole, several
    are deduplicated among themselves. The same rows as the window over the whole table, which is what a table
    without parts gets, without sorting all of it."""
    if table is None or not parts or sum(parts) != table.num_rows or min(parts) < 0:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {name}_in {latest(name)}")
        return
    if isinstance(table, Scan):  # copied by _put: {name}_in_first and {name}_in_rest, or {name}_in whole
        first, rest = (f"{name}_in_first", f"{name}_in_rest") if len(parts) > 1 else (f"{name}_in", "")
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name}_settled AS SELECT * FROM {first}")
        if rest:
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name}_new AS SELECT * FROM {rest}")
    else:
        settled, new_rows = _split(table, parts[0])
        con.register(f"{name}_settled", settled)
        if len(parts) > 1:
            con.register(f"{name}_new", new_rows)
    if len(parts) == 1:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {name}_settled")
        return
    keys = ", ".join(KEYS[name])
    new = f"SELECT * FROM {name}_new" + (f" {latest(name)}" if len(parts) > 2 else "")
    con.execute(f"""CREATE OR REPLACE TEMP VIEW {name} AS
        SELECT * FROM {name}_settled ANTI JOIN (SELECT {keys} FROM {name}_new) USING ({keys})
        UNION ALL BY NAME {new}""")


def deaths(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """The consolidated death view (after :func:`prepare`): one row per person, masked, with the evidence."""
    return con.sql("""
        SELECT hex(v.person) AS person, any_value(e.id_masked) AS id_masked, any_value(e.area) AS area,
               any_value(v.death_date) AS death_date, any_value(v.sources) AS sources,
               any_value(v.confidence) AS confidence,
               map_from_entries(list((e.feed, {'key': e.record_key, 'death_date': e.death_date::VARCHAR})))::VARCHAR
                   AS evidence
        FROM death_view v JOIN deaths e ON e.person = v.person
        GROUP BY v.person ORDER BY area, person""").to_arrow_table()


def run_rules(con: duckdb.DuckDBPyConnection, params: dict[str, dict[str, Any]], night: date,
              rules: list[str] | None = None) -> pa.Table:
    """Every rule's suspects, one table with :data:`COLUMNS` (after :func:`prepare`), each routed to the office
    that pays (matching.sql.routed: the roll's district for a person, the hospital's, the employer's).

    One query per rule, so that DuckDB holds one rule's joins and aggregates at a time within its memory limit
    (the sixteen as one query's branches held all of theirs at once: out of memory at 256MB and 200,000 people,
    where each alone runs); the suspects, few, are put together and ordered after. A rule that needs more than
    the limit stops the night with a ConfigurationError naming the rule and FUNDX_MATCHING_MEMORY."""
    found: list[str] = []
    try:
        for i, name in enumerate(rules or list(RULES)):
            began = time.perf_counter()
            sql = f"SELECT {', '.join(COLUMNS)} FROM ({routed(RULES[name], RULES[name].sql(params[name], night))})"
            try:
                suspects = con.sql(sql).to_arrow_table()
            except duckdb.OutOfMemoryException:
                raise past_memory(con, f"matching rule {name}") from None
            con.register(f"rule_found_{i}", suspects)
            found.append(f"rule_found_{i}")
            log.info("matching rule %s: %d suspects in %.1f s", name, suspects.num_rows, time.perf_counter() - began)
        return con.sql(" UNION ALL ".join(f"SELECT * FROM {f}" for f in found)
                       + " ORDER BY rule, area, subject").to_arrow_table()
    finally:
        for f in found:
            con.unregister(f)
