"""Employers: subsidies paid after a business was deregistered.

Each rule is a named SQL unit over the views matching.rules.prepare defines; docs/matching.md defines it."""

from __future__ import annotations

from datetime import date
from typing import Any

from fundx.core import codes
from matching.sql import Rule, sql_month, sql_month_text


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
                       'months', list(DISTINCT {sql_month_text('s.month')}))::VARCHAR AS detail
    FROM e JOIN subsidies s ON s.uscc = e.uscc
    WHERE e.end_date IS NOT NULL AND s.month > {sql_month('e.end_date')}
    GROUP BY e.uscc"""


RULES: tuple[Rule, ...] = (
    Rule("deregistered_subsidised", "注销后领取补贴", ("businesses", "subsidies"), {"ended": codes.BUSINESS_ENDED},
         _deregistered_subsidised),
)
