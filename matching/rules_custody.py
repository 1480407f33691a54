"""Custody: benefits paid while the person was in custody (服刑未暂停).

Each rule is a named SQL unit over the views matching.rules.prepare defines; docs/matching.md defines it."""

from __future__ import annotations

from datetime import date
from typing import Any

from fundx.core import codes
from matching.sql import Rule, sql_month, sql_month_text


def _paid_in_custody(p: dict[str, Any], night: date) -> str:
    until = (f"least(r.paid_through, CASE WHEN c.sentence_end IS NOT NULL AND c.sentence_end < DATE '{night}' "
             f"THEN {sql_month('c.sentence_end')} ELSE r.paid_through END)")
    return f"""
    WITH c AS (
        SELECT person, arg_max(record_key, admitted_on) AS prisoner_id, max(admitted_on) AS admitted_on,
               arg_max(sentence_end, admitted_on) AS sentence_end
        FROM custody WHERE custody_status = '{p["status"]}' AND person IS NOT NULL AND admitted_on IS NOT NULL
        GROUP BY person)
    SELECT 'paid_in_custody' AS rule, hex(r.person) AS subject, [r.person] AS persons,
           any_value(r.id_masked) AS id_masked, any_value(r.area) AS area,
           max({until} - {sql_month('c.admitted_on')}) AS months,
           round(sum(({until} - {sql_month('c.admitted_on')}) * r.monthly_amount), 2) AS amount_at_risk,
           json_object('prisoner_id', any_value(c.prisoner_id), 'admitted_on', any_value(c.admitted_on)::VARCHAR,
                       'benefits', list(r.benefit_type ORDER BY r.benefit_type),
                       'paid_through', {sql_month_text('max(r.paid_through)')})::VARCHAR AS detail
    FROM roll r JOIN c ON r.person = c.person
    WHERE {until} > {sql_month('c.admitted_on')}
    GROUP BY r.person"""


RULES: tuple[Rule, ...] = (
    Rule("paid_in_custody", "服刑未暂停", ("roll", "custody"), {"status": codes.IN_CUSTODY}, _paid_in_custody),
)
