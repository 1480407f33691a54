"""What every matching rule is built of: the Rule record, month arithmetic in SQL, the store tables' keys.

The rules themselves live one family to a module (``matching.rules_deaths``, ``rules_custody``,
``rules_accounts``, ``rules_medical``, ``rules_employer``), each exporting ``RULES``; ``matching.rules``
puts them in one registry with their parameters, and registers the store tables they read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute

from fundx.core.errors import ConfigurationError


def month_no(day: date) -> int:
    """Month number (year * 12 + month - 1), as the store keeps months."""
    return day.year * 12 + day.month - 1


def sql_month(expr: str) -> str:
    return f"(year({expr}) * 12 + month({expr}) - 1)"


def sql_month_text(expr: str) -> str:
    return f"printf('%04d-%02d', ({expr}) // 12, ({expr}) % 12 + 1)"


@dataclass(frozen=True)
class Rule:
    """A named rule: its SQL (given its parameters and the night) and its default parameters."""

    name: str
    title: str
    needs: tuple[str, ...]
    defaults: dict[str, Any]
    sql: Callable[[dict[str, Any], date], str]
    doc: str = ""
    #: whose office gets the rule's orders (:func:`routed`): PERSON, ACCOUNT, BILL, HOSPITAL or EMPLOYER
    routing: str = "person"


# --- routing: the office that pays (issue 20, part 3) -------------------------------------------------
#
# "A person's case goes to the district office of their insuring entry (from the office's roll), a bill's to
# the hospital's district, an employer's to the employer's registration district — not the district in the
# identity number." The rules select what they find; :func:`routed` sets each order's ``area`` by its rule's
# routing and says how in the evidence (detail ``routed_by``): docs/matching.md, "Routing to the office that pays".

#: a person's order: the district of the person's paying roll entry (``paying``), else the number's area
PERSON = "person"
#: an account's order (shared_account): the paying district of the roll entry paying into the account, else of
#: one of the people paid into it (the smallest code), else the number's area
ACCOUNT = "account"
#: a bill's order: the district in the bill's hospital code (the rule returns ``hospital_code``), else as PERSON
BILL = "bill"
#: a hospital's order: the district in its code (the rule returns ``hospital_code``)
HOSPITAL = "hospital"
#: an employer's order: the registration district of the employer the rule returns as ``uscc`` (the business
#: registry's area, else characters 3-8 of the credit code), else as PERSON
EMPLOYER = "employer"
#: a contributor's order (contributions_in_custody): as PERSON when the roll pays the person, else the
#: registration district of the employer the rule returns as ``uscc`` (where the person is insured), else
#: the number's area
INSURED = "insured"
ROUTINGS = (PERSON, ACCOUNT, BILL, HOSPITAL, EMPLOYER, INSURED)

#: a 国家医保 designated institution's code: H, the 6-digit area code of its district, a 5-digit sequence
_HOSPITAL_CODE = "'^H[0-9]{11}$'"
#: a credit code's first 8 characters (GB 32100-2015): registration department, category, then the
#: registering authority's 6-digit GB/T 2260 area code
_USCC_HEAD = "'^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}'"


def paying_sql(active: str) -> list[str]:
    """The tables ``paying`` (one row per person of the roll) and ``paying_account`` (one per account the roll
    pays into): the entry whose district's office pays, its ``area`` the roll's ``paying_district`` (an entry
    that names none, ``district_given`` false, is not one: load.feed_sql gave it the number's area). Of several
    entries: an active one first, then the one paid through the latest month, then the latest started, then
    the one received last, then the greatest entry id (the choice never depends on the order rows are read in).
    A person who moved has their entry sent again with the new district (the later row replaces it) or a new,
    active entry there."""
    order = (f"(status = '{active}') DESC NULLS LAST, paid_through DESC NULLS LAST, start_month DESC NULLS LAST, "
             "received_at DESC NULLS LAST, record_key DESC")
    return [f"""
    CREATE OR REPLACE TEMP TABLE {table} AS
    SELECT {key}, area, record_key AS entry FROM roll
    WHERE {key} IS NOT NULL AND area IS NOT NULL AND district_given IS NOT FALSE
    QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {order}) = 1""" for table, key in (
        ("paying", "person"), ("paying_account", "account"))]


def _hospital_area(code: str) -> str:
    return f"CASE WHEN regexp_matches({code}, {_HOSPITAL_CODE}) THEN substr({code}, 2, 6) END"


def routed(rule: Rule, sql: str) -> str:
    """A rule's SQL with each order's ``area`` routed to the office that pays (its ``routing``) and the way
    it was routed added to the evidence: detail ``routed_by`` (roll, identity number, hospital, registration),
    ``routed_to`` (the area: a move to another district shows in the order's versions) and ``paying_entry``
    (the roll entry that decided it)."""
    fallback_by = "CASE WHEN pay.area IS NOT NULL THEN 'roll' ELSE 'identity number' END"
    joins = "LEFT JOIN paying pay ON pay.person = r.persons[1]"
    if rule.routing == PERSON:
        area, by = "COALESCE(pay.area, r.area)", fallback_by
    elif rule.routing == ACCOUNT:
        joins = ("LEFT JOIN paying_account pay ON pay.account = unhex(r.subject) "
                 "LEFT JOIN (SELECT x.subject, min(p.area) AS area FROM (SELECT subject, unnest(persons) AS person "
                 "FROM r) x JOIN paying p ON p.person = x.person GROUP BY x.subject) people ON people.subject = r.subject")
        area = "COALESCE(pay.area, people.area, r.area)"
        by = "CASE WHEN COALESCE(pay.area, people.area) IS NOT NULL THEN 'roll' ELSE 'identity number' END"
    elif rule.routing in (BILL, HOSPITAL):
        hospital = _hospital_area("r.hospital_code")
        area = f"COALESCE({hospital}, pay.area, r.area)"
        by = f"CASE WHEN {hospital} IS NOT NULL THEN 'hospital' ELSE {fallback_by} END"
    elif rule.routing in (EMPLOYER, INSURED):
        registered = (f"COALESCE(biz.area, CASE WHEN regexp_matches(r.uscc, {_USCC_HEAD}) "
                      f"THEN substr(r.uscc, 3, 6) END)")
        joins += " LEFT JOIN (SELECT record_key, any_value(area) AS area FROM businesses GROUP BY record_key) biz " \
                 "ON biz.record_key = r.uscc"
        if rule.routing == EMPLOYER:
            area = f"COALESCE({registered}, pay.area, r.area)"
            by = f"CASE WHEN {registered} IS NOT NULL THEN 'registration' ELSE {fallback_by} END"
        else:
            area = f"COALESCE(pay.area, {registered}, r.area)"
            by = (f"CASE WHEN pay.area IS NOT NULL THEN 'roll' WHEN {registered} IS NOT NULL THEN 'registration' "
                  "ELSE 'identity number' END")
    else:
        raise ValueError(f"rule {rule.name}: routing {rule.routing!r} is not one of {', '.join(ROUTINGS)}")
    entry = "pay.entry" if rule.routing in (PERSON, ACCOUNT, INSURED) else "NULL::VARCHAR"
    return f"""
    WITH r AS MATERIALIZED ({sql})
    SELECT r.rule, r.subject, r.persons, r.id_masked, {area} AS area, r.months, r.amount_at_risk,
           json_merge_patch(r.detail, json_object('routed_by', {by}, 'routed_to', {area}, 'paying_entry',
                            CASE WHEN ({by}) = 'roll' THEN {entry} END))::VARCHAR AS detail
    FROM r {joins}"""


#: store table -> its key column (rows of a later batch replace earlier ones with the same key: a roll entry
#: is sent again whenever the office changes it)
KEYS = {"deaths": ("feed", "record_key"), "custody": ("record_key",), "bills": ("record_key",),
        "businesses": ("record_key",), "roll": ("record_key",), "payments": ("record_key",),
        "contributions": ("record_key",), "subsidies": ("record_key",), "account_changes": ("record_key",),
        "wages": ("record_key",)}

def latest(name: str) -> str:
    """The clause that keeps the latest row per key of a store table (a later batch replaces a row)."""
    return f"QUALIFY row_number() OVER (PARTITION BY {', '.join(KEYS[name])} ORDER BY received_at DESC) = 1"


def one_per_key(name: str, rows: pa.Table) -> pa.Table:
    """A store table's rows with the latest one per key (:data:`KEYS`) only, in the order they came: what the
    rules read of it. A table without a key, or without ``received_at``, is returned as it is."""
    if name not in KEYS or "received_at" not in rows.column_names or not rows.num_rows:
        return rows
    con = duckdb.connect()
    try:
        con.register("rows_in", rows.append_column("_row", pa.array(range(rows.num_rows), pa.int64())))
        kept = con.sql(f"SELECT * FROM rows_in {latest(name)} ORDER BY _row").to_arrow_table()
    finally:
        con.close()
    return kept.drop(["_row"]).cast(rows.schema)  # the types it came with (DuckDB names UTC Etc/UTC)


def one_per_key_in_batch(name: str, rows: pa.Table) -> tuple[pa.Table, int]:
    """A batch's rows one per key (:data:`KEYS`), the last of each where a key repeats (a contract's unique key
    quarantines such rows, so this only guards the store's promise: every stored batch is one row per key),
    and how many rows were dropped."""
    if name not in KEYS or not rows.num_rows:
        return rows, 0
    cols = list(KEYS[name])
    index = rows.select(cols).append_column("_row", pa.array(range(rows.num_rows), pa.int64()))
    last = index.group_by(cols, use_threads=False).aggregate([("_row", "max")])["_row_max"]
    if len(last) == rows.num_rows:
        return rows, 0
    return rows.take(pa.compute.take(last, pa.compute.sort_indices(last))), rows.num_rows - len(last)


def past_memory(con: duckdb.DuckDBPyConnection, what: str, *, feed: str | None = None) -> ConfigurationError:
    """The error for ``what`` (a rule, a batch's load) having run out of DuckDB's memory: one line naming it and
    FUNDX_MATCHING_MEMORY with the limit in force."""
    limit = con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
    return ConfigurationError(f"{what} needs more memory than DuckDB may hold (FUNDX_MATCHING_MEMORY: {limit})",
                              feed=feed, action="raise FUNDX_MATCHING_MEMORY (e.g. 1GB) and run the matching night again")
