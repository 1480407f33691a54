"""Death consolidation and the eight matching rules, each a small named SQL unit over DuckDB.

Every rule reads the views :func:`prepare` defines (``roll``, ``payments``, ``account_changes``, ``deaths``,
``custody``, ``bills``, ``businesses``, ``contributions``, ``subsidies``: the latest row per key of what
the stages received, all pseudonymised: ``person`` is a token) and
returns the same columns: rule, subject (what one order is about: a person's token as hex, a bill,
an account or an employer), person (the tokens whose identity the investigators get), id_masked,
area, months, amount_at_risk and detail (JSON, masked evidence only). docs/matching.md defines
each rule; the sandbox plants exactly the cases each must find.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb
import pyarrow as pa

from fundx.core import codes
from fundx.core.errors import ConfigurationError

#: the columns every rule returns, in order
COLUMNS = ("rule", "subject", "persons", "id_masked", "area", "months", "amount_at_risk", "detail")


def month_no(day: date) -> int:
    """Month number (year * 12 + month - 1), as the store keeps months."""
    return day.year * 12 + day.month - 1


def _month(expr: str) -> str:
    return f"(year({expr}) * 12 + month({expr}) - 1)"


def _month_text(expr: str) -> str:
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


def _paid_after_death(p: dict[str, Any], night: date) -> str:
    # Months and amounts actually paid after the month of death, from the payment ledger, on every entry
    # (a stopped entry whose stop came after money went out too); a store without a ledger (none delivered
    # yet) falls back on the roll's paid-through months. The evidence (each source's key and date) is
    # gathered for the suspects only, after the join.
    return f"""
    WITH led AS (
        SELECT pa.person, count(DISTINCT pa.month) AS months, round(sum(pa.amount), 2) AS amount_at_risk,
               any_value(d.death_date) AS death_date, any_value(d.confidence) AS confidence,
               list(DISTINCT pa.benefit_type ORDER BY pa.benefit_type) AS benefits, max(pa.month) AS paid_through,
               any_value(pa.id_masked) AS id_masked, any_value(pa.area) AS area
        FROM payments pa JOIN death_view d ON pa.person = d.person
        WHERE pa.month > {_month('d.death_date')}
        GROUP BY pa.person),
    rolled AS (
        SELECT r.person, max(r.paid_through - {_month('d.death_date')}) AS months,
               round(sum((r.paid_through - {_month('d.death_date')}) * r.monthly_amount), 2) AS amount_at_risk,
               any_value(d.death_date) AS death_date, any_value(d.confidence) AS confidence,
               list(r.benefit_type ORDER BY r.benefit_type) AS benefits, max(r.paid_through) AS paid_through,
               any_value(r.id_masked) AS id_masked, any_value(r.area) AS area
        FROM roll r JOIN death_view d ON r.person = d.person
        WHERE r.paid_through > {_month('d.death_date')} AND NOT EXISTS (SELECT 1 FROM payments)
        GROUP BY r.person),
    found AS (SELECT * FROM led UNION ALL SELECT * FROM rolled),
    s AS (  -- routed where the roll pays the person (the roll's area), else by the number
        SELECT f.person, COALESCE(any_value(r.id_masked), any_value(f.id_masked)) AS id_masked,
               COALESCE(any_value(r.area), any_value(f.area)) AS area, any_value(f.months) AS months,
               any_value(f.amount_at_risk) AS amount_at_risk, any_value(f.death_date) AS death_date,
               any_value(f.confidence) AS confidence, any_value(f.benefits) AS benefits,
               any_value(f.paid_through) AS paid_through
        FROM found f LEFT JOIN roll r ON r.person = f.person GROUP BY f.person),
    mine AS (  -- the suspects' death records, latest version of each
        SELECT * FROM deaths_in WHERE (feed, record_key) IN (SELECT feed, record_key FROM deaths_in
                                                             WHERE person IN (SELECT person FROM s))
        {_latest("deaths")}),
    ev AS (
        SELECT e.person, map_from_entries(list((e.feed, {{'key': e.record_key, 'death_date': e.death_date::VARCHAR}})))
                   AS evidence, count(DISTINCT e.name_token) AS names
        FROM mine e SEMI JOIN s ON e.person = s.person GROUP BY e.person)
    SELECT 'paid_after_death' AS rule, hex(s.person) AS subject, [s.person] AS persons, s.id_masked, s.area,
           s.months, s.amount_at_risk,
           json_object('death_date', s.death_date::VARCHAR, 'confidence', s.confidence, 'sources', ev.evidence,
                       'names', ev.names, 'benefits', s.benefits,
                       'paid_through', {_month_text('s.paid_through')})::VARCHAR AS detail
    FROM s LEFT JOIN ev ON ev.person = s.person"""


def _paid_in_custody(p: dict[str, Any], night: date) -> str:
    until = (f"least(r.paid_through, CASE WHEN c.sentence_end IS NOT NULL AND c.sentence_end < DATE '{night}' "
             f"THEN {_month('c.sentence_end')} ELSE r.paid_through END)")
    return f"""
    WITH c AS (
        SELECT person, arg_max(record_key, admitted_on) AS prisoner_id, max(admitted_on) AS admitted_on,
               arg_max(sentence_end, admitted_on) AS sentence_end
        FROM custody WHERE custody_status = '{p["status"]}' AND person IS NOT NULL AND admitted_on IS NOT NULL
        GROUP BY person)
    SELECT 'paid_in_custody' AS rule, hex(r.person) AS subject, [r.person] AS persons,
           any_value(r.id_masked) AS id_masked, any_value(r.area) AS area,
           max({until} - {_month('c.admitted_on')}) AS months,
           round(sum(({until} - {_month('c.admitted_on')}) * r.monthly_amount), 2) AS amount_at_risk,
           json_object('prisoner_id', any_value(c.prisoner_id), 'admitted_on', any_value(c.admitted_on)::VARCHAR,
                       'benefits', list(r.benefit_type ORDER BY r.benefit_type),
                       'paid_through', {_month_text('max(r.paid_through)')})::VARCHAR AS detail
    FROM roll r JOIN c ON r.person = c.person
    WHERE {until} > {_month('c.admitted_on')}
    GROUP BY r.person"""


def _shared_account(p: dict[str, Any], night: date) -> str:
    # accounts with enough active rows first (a cheap count), the lists for those only
    n = int(p["min_people"])
    return f"""
    WITH busy AS (
        SELECT account FROM roll WHERE status = '{p["active"]}' AND account IS NOT NULL
        GROUP BY account HAVING count(*) >= {n})
    SELECT 'shared_account' AS rule, hex(r.account) AS subject, list(DISTINCT r.person) AS persons,
           any_value(r.account_masked) AS id_masked, min(r.area) AS area, NULL::INTEGER AS months,
           round(sum(r.monthly_amount), 2) AS amount_at_risk,
           json_object('people', count(DISTINCT r.person), 'masked', list(DISTINCT r.id_masked ORDER BY r.id_masked),
                       'account', any_value(r.account_masked))::VARCHAR AS detail
    FROM roll r SEMI JOIN busy b ON r.account = b.account
    WHERE r.status = '{p["active"]}'
    GROUP BY r.account HAVING count(DISTINCT r.person) >= {n}"""


def _duplicate_receipt(p: dict[str, Any], night: date) -> str:
    pairs = ", ".join(f"('{a}', '{b}')" for a, b in (sorted(x) for x in p["exclusive"]))
    overlap = ("(least(a.paid_through, b.paid_through) - greatest(a.start_month, b.start_month) + 1)")
    return f"""
    WITH twice AS (  -- people with two or more active entries (a cheap count), the self-join for those only
        SELECT person FROM roll WHERE status = '{p["active"]}' GROUP BY person HAVING count(*) >= 2),
    r AS (SELECT * FROM roll SEMI JOIN twice USING (person) WHERE status = '{p["active"]}')
    SELECT 'duplicate_receipt' AS rule, hex(a.person) AS subject, [a.person] AS persons,
           any_value(a.id_masked) AS id_masked, any_value(a.area) AS area, max({overlap}) AS months,
           round(sum({overlap} * least(a.monthly_amount, b.monthly_amount)), 2) AS amount_at_risk,
           json_object('schemes', list([a.benefit_type, b.benefit_type]))::VARCHAR AS detail
    FROM r a JOIN r b ON a.person = b.person AND a.benefit_type < b.benefit_type
    WHERE (a.benefit_type, b.benefit_type) IN ({pairs}) AND {overlap} > 0
    GROUP BY a.person"""


def _unemployed_contributing(p: dict[str, Any], night: date) -> str:
    return f"""
    WITH m AS (
        SELECT r.person, r.id_masked, r.area, r.monthly_amount, count(DISTINCT c.month) AS months,
               list(DISTINCT {_month_text('c.month')}) AS paid_months
        FROM roll r JOIN contributions c ON c.person = r.person AND c.month BETWEEN r.start_month AND r.paid_through
        WHERE r.benefit_type = '{p["benefit"]}' AND r.status = '{p["active"]}'
        GROUP BY r.person, r.id_masked, r.area, r.monthly_amount, r.start_month)
    SELECT 'unemployed_contributing' AS rule, hex(person) AS subject, [person] AS persons,
           any_value(id_masked) AS id_masked, any_value(area) AS area, sum(months)::INTEGER AS months,
           round(sum(months * monthly_amount), 2) AS amount_at_risk,
           json_object('months', flatten(list(paid_months)))::VARCHAR AS detail
    FROM m GROUP BY person"""


def _frequent_visits(p: dict[str, Any], night: date) -> str:
    return f"""
    WITH v AS (
        SELECT person, any_value(id_masked) AS id_masked, any_value(area) AS area,
               {_month('admitted_on')} AS m, count(*) AS visits, sum(total_amount) AS total
        FROM bills WHERE person IS NOT NULL AND admitted_on IS NOT NULL
        GROUP BY person, m HAVING count(*) >= {int(p["min_visits"])})
    SELECT 'frequent_visits' AS rule, hex(person) AS subject, [person] AS persons, any_value(id_masked) AS id_masked,
           any_value(area) AS area, count(*)::INTEGER AS months, round(sum(total), 2) AS amount_at_risk,
           json_object('visits', map_from_entries(list(({_month_text('m')}, visits))))::VARCHAR AS detail
    FROM v GROUP BY person"""


def _bill_over_mean(p: dict[str, Any], night: date) -> str:
    return f"""
    WITH g AS (
        SELECT diagnosis_code, inpatient, avg(total_amount) AS mean, count(*) AS n FROM bills
        WHERE total_amount IS NOT NULL GROUP BY diagnosis_code, inpatient HAVING count(*) >= {int(p["min_peers"])})
    SELECT 'bill_over_mean' AS rule, b.record_key AS subject, [b.person] AS persons, b.id_masked, b.area,
           NULL::INTEGER AS months, round(b.total_amount - g.mean, 2) AS amount_at_risk,
           json_object('bill_id', b.record_key, 'diagnosis_code', b.diagnosis_code,
                       'setting', CASE WHEN b.inpatient THEN 'inpatient' ELSE 'outpatient' END,
                       'total_amount', b.total_amount, 'mean', round(g.mean, 2), 'peers', g.n)::VARCHAR AS detail
    FROM bills b JOIN g ON b.diagnosis_code = g.diagnosis_code AND b.inpatient = g.inpatient
    WHERE b.total_amount > (1 + {float(p["over"])}) * g.mean"""


def _deregistered_subsidised(p: dict[str, Any], night: date) -> str:
    ended = ", ".join(f"'{s}'" for s in p["ended"])
    return f"""
    WITH e AS (
        SELECT record_key AS uscc, area, status,
               CASE WHEN deregistered_on IS NOT NULL THEN deregistered_on ELSE changed_on END AS end_date
        FROM businesses WHERE status IN ({ended}))
    SELECT 'deregistered_subsidised' AS rule, e.uscc AS subject, []::BLOB[] AS persons, NULL AS id_masked,
           any_value(e.area) AS area, count(DISTINCT s.month)::INTEGER AS months,
           round(sum(s.amount), 2) AS amount_at_risk,
           json_object('status', any_value(e.status), 'end_date', any_value(e.end_date)::VARCHAR,
                       'months', list(DISTINCT {_month_text('s.month')}))::VARCHAR AS detail
    FROM e JOIN subsidies s ON s.uscc = e.uscc
    WHERE e.end_date IS NOT NULL AND s.month > {_month('e.end_date')}
    GROUP BY e.uscc"""


RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("paid_after_death", "死亡未停发", ("payments", "roll", "deaths"), {}, _paid_after_death),
    Rule("paid_in_custody", "服刑未暂停", ("roll", "custody"), {"status": codes.IN_CUSTODY}, _paid_in_custody),
    Rule("shared_account", "多对一", ("roll",), {"min_people": 3, "active": codes.ACTIVE}, _shared_account),
    Rule("duplicate_receipt", "重复领取", ("roll",), {"exclusive": codes.EXCLUSIVE_SCHEMES, "active": codes.ACTIVE},
         _duplicate_receipt),
    Rule("unemployed_contributing", "领取失业金期间缴费", ("roll", "contributions"),
         {"benefit": codes.UNEMPLOYMENT, "active": codes.ACTIVE}, _unemployed_contributing),
    Rule("frequent_visits", "频繁就诊", ("bills",), {"min_visits": 15}, _frequent_visits),
    Rule("bill_over_mean", "超均值费用", ("bills",), {"over": 0.20, "min_peers": 30}, _bill_over_mean),
    Rule("deregistered_subsidised", "注销后领取补贴", ("businesses", "subsidies"), {"ended": codes.BUSINESS_ENDED},
         _deregistered_subsidised),
)}
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


#: store table -> its key column (rows of a later batch replace earlier ones with the same key: a roll entry
#: is sent again whenever the office changes it)
KEYS = {"deaths": ("feed", "record_key"), "custody": ("record_key",), "bills": ("record_key",),
        "businesses": ("record_key",), "roll": ("record_key",), "payments": ("record_key",),
        "contributions": ("record_key",), "subsidies": ("record_key",), "account_changes": ("record_key",)}
EMPTY: dict[str, str] = {
    "deaths": "feed VARCHAR, record_key VARCHAR, person BLOB, id_masked VARCHAR, area VARCHAR, death_date DATE, "
              "received_at TIMESTAMPTZ, name_token BLOB",
    "custody": "record_key VARCHAR, person BLOB, id_masked VARCHAR, area VARCHAR, custody_status VARCHAR, "
               "admitted_on DATE, sentence_start DATE, sentence_end DATE, received_at TIMESTAMPTZ",
    "bills": "record_key VARCHAR, person BLOB, id_masked VARCHAR, area VARCHAR, diagnosis_code VARCHAR, "
             "inpatient BOOLEAN, admitted_on DATE, total_amount DOUBLE, received_at TIMESTAMPTZ",
    "businesses": "record_key VARCHAR, area VARCHAR, status VARCHAR, deregistered_on DATE, changed_on DATE, "
                  "received_at TIMESTAMPTZ",
    # the office's feeds (social_insurance.*): months as month numbers, accounts as tokens and masked
    "roll": "record_key VARCHAR, person BLOB, id_masked VARCHAR, area VARCHAR, benefit_type VARCHAR, "
            "monthly_amount DOUBLE, account BLOB, account_masked VARCHAR, status VARCHAR, start_month INTEGER, "
            "stop_month INTEGER, paid_through INTEGER, received_at TIMESTAMPTZ",
    "payments": "record_key VARCHAR, entry_key VARCHAR, person BLOB, id_masked VARCHAR, area VARCHAR, "
                "benefit_type VARCHAR, month INTEGER, amount DOUBLE, account BLOB, account_masked VARCHAR, "
                "paid_on DATE, received_at TIMESTAMPTZ",
    "contributions": "record_key VARCHAR, person BLOB, employer_uscc VARCHAR, month INTEGER, amount DOUBLE, "
                     "received_at TIMESTAMPTZ",
    "subsidies": "record_key VARCHAR, uscc VARCHAR, subsidy_type VARCHAR, month INTEGER, amount DOUBLE, "
                 "received_at TIMESTAMPTZ",
    "account_changes": "record_key VARCHAR, entry_key VARCHAR, person BLOB, id_masked VARCHAR, old_account BLOB, "
                       "old_account_masked VARCHAR, new_account BLOB, new_account_masked VARCHAR, changed_on DATE, "
                       "received_at TIMESTAMPTZ",
}


@dataclass
class Inputs:
    """The tables a night's matching reads (Arrow, pseudonymised); None when the store has none."""

    tables: dict[str, pa.Table | None] = field(default_factory=dict)


def _latest(name: str) -> str:
    """The clause that keeps the latest row per key of a store table (a later batch replaces a row)."""
    return f"QUALIFY row_number() OVER (PARTITION BY {', '.join(KEYS[name])} ORDER BY received_at DESC) = 1"


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
        missing = [] if table is None else [
            (col, kind) for col, kind in (c.strip().split(" ", 1) for c in columns.split(",")) if col not in table.column_names]
        if table is None:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {name}_in ({columns})")
        elif missing:  # batches stored before a column was added (name_token): NULL there
            con.register(f"{name}_stored", table)
            added = ", ".join(f"NULL::{kind} AS {col}" for col, kind in missing)
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name}_in AS SELECT *, {added} FROM {name}_stored")
        else:
            con.register(f"{name}_in", table)
        if name in KEYS:
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {name}_in {_latest(name)}")
        else:
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {name}_in")
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
    """Every rule's suspects, one table with :data:`COLUMNS` (after :func:`prepare`)."""
    selects = [f"SELECT {', '.join(COLUMNS)} FROM ({RULES[r].sql(params[r], night)})" for r in (rules or list(RULES))]
    return con.sql(" UNION ALL ".join(selects) + " ORDER BY rule, area, subject").to_arrow_table()
