"""Deaths: pensions and benefits paid after the month of death (死亡未停发).

Each rule is a named SQL unit over the views matching.rules.prepare defines; docs/matching.md defines it."""

from __future__ import annotations

from datetime import date
from typing import Any

from matching.sql import Rule, latest, sql_month, sql_month_text


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
        WHERE pa.month > {sql_month('d.death_date')}
        GROUP BY pa.person),
    rolled AS (
        SELECT r.person, max(r.paid_through - {sql_month('d.death_date')}) AS months,
               round(sum((r.paid_through - {sql_month('d.death_date')}) * r.monthly_amount), 2) AS amount_at_risk,
               any_value(d.death_date) AS death_date, any_value(d.confidence) AS confidence,
               list(r.benefit_type ORDER BY r.benefit_type) AS benefits, max(r.paid_through) AS paid_through,
               any_value(r.id_masked) AS id_masked, any_value(r.area) AS area
        FROM roll r JOIN death_view d ON r.person = d.person
        WHERE r.paid_through > {sql_month('d.death_date')} AND NOT EXISTS (SELECT 1 FROM payments_in)
        GROUP BY r.person),
    found AS (SELECT * FROM led UNION ALL SELECT * FROM rolled),
    s AS MATERIALIZED (  -- one row per person; the order's district: matching.sql.routed (the paying roll entry's)
        SELECT f.person, COALESCE(any_value(r.id_masked), any_value(f.id_masked)) AS id_masked,
               COALESCE(any_value(r.area), any_value(f.area)) AS area, any_value(f.months) AS months,
               any_value(f.amount_at_risk) AS amount_at_risk, any_value(f.death_date) AS death_date,
               any_value(f.confidence) AS confidence, any_value(f.benefits) AS benefits,
               any_value(f.paid_through) AS paid_through
        FROM found f LEFT JOIN roll r ON r.person = f.person GROUP BY f.person),
    mine AS (  -- the suspects' death records, latest version of each
        SELECT * FROM deaths_in WHERE (feed, record_key) IN (SELECT feed, record_key FROM deaths_in
                                                             WHERE person IN (SELECT person FROM s))
        {latest("deaths")}),
    ev AS (
        SELECT e.person, map_from_entries(list((e.feed, {{'key': e.record_key, 'death_date': e.death_date::VARCHAR}})
                                    ORDER BY e.feed, e.record_key))
                   AS evidence, count(DISTINCT e.name_token) AS names
        FROM mine e SEMI JOIN s ON e.person = s.person GROUP BY e.person)
    SELECT 'paid_after_death' AS rule, hex(s.person) AS subject, [s.person] AS persons, s.id_masked, s.area,
           s.months, s.amount_at_risk,
           json_object('death_date', s.death_date::VARCHAR, 'confidence', s.confidence, 'sources', ev.evidence,
                       'names', ev.names, 'benefits', s.benefits,
                       'paid_through', {sql_month_text('s.paid_through')})::VARCHAR AS detail
    FROM s LEFT JOIN ev ON ev.person = s.person"""


RULES: tuple[Rule, ...] = (
    Rule("paid_after_death", "死亡未停发", ("payments", "roll", "deaths"), {}, _paid_after_death),
)
