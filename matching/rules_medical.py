"""Medical insurance: frequent visits and bills above their diagnosis's mean.

Each rule is a named SQL unit over the views matching.rules.prepare defines; docs/matching.md defines it."""

from __future__ import annotations

from datetime import date
from typing import Any

from matching.sql import Rule, sql_month, sql_month_text


def _frequent_visits(p: dict[str, Any], night: date) -> str:
    return f"""
    WITH v AS (
        SELECT person, any_value(id_masked) AS id_masked, any_value(area) AS area,
               {sql_month('admitted_on')} AS m, count(*) AS visits, sum(total_amount) AS total
        FROM bills WHERE person IS NOT NULL AND admitted_on IS NOT NULL
        GROUP BY person, m HAVING count(*) >= {int(p["min_visits"])})
    SELECT 'frequent_visits' AS rule, hex(person) AS subject, [person] AS persons, any_value(id_masked) AS id_masked,
           any_value(area) AS area, count(*)::INTEGER AS months, round(sum(total), 2) AS amount_at_risk,
           json_object('visits', map_from_entries(list(({sql_month_text('m')}, visits))))::VARCHAR AS detail
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


RULES: tuple[Rule, ...] = (
    Rule("frequent_visits", "频繁就诊", ("bills",), {"min_visits": 15}, _frequent_visits),
    Rule("bill_over_mean", "超均值费用", ("bills",), {"over": 0.20, "min_peers": 30}, _bill_over_mean),
)
