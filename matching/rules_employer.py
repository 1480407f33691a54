"""Employers: subsidies and contributions paid after a business ended, contributions with no wage declared.

Routing (matching.sql.routed): every order goes to the employer's registration district (the business
registry's area: characters 3-8 of the credit code, GB 32100-2015); a person's order without wage
(contributions_without_wage) to that of the employer with the most such months (the smallest code of a tie).

Each rule is a named SQL unit over the views matching.rules.prepare defines; docs/matching.md defines it."""

from __future__ import annotations

from datetime import date
from typing import Any

from fundx.core import codes
from matching.sql import EMPLOYER, Rule, month_no, sql_month, sql_month_text


def _ended(p: dict[str, Any]) -> str:
    """The CTE ``e``: businesses whose registration ended (``ended`` statuses), with the day it ended: the
    deregistration day, else (a revocation) the day of the registry's last change."""
    ended = ", ".join(f"'{s}'" for s in p["ended"])
    return f"""
    e AS (
        SELECT record_key AS uscc, area, status,
               CASE WHEN deregistered_on IS NOT NULL THEN deregistered_on ELSE changed_on END AS end_date
        FROM businesses WHERE status IN ({ended}))"""


def _deregistered_subsidised(p: dict[str, Any], night: date) -> str:
    return f"""
    WITH {_ended(p)}
    SELECT 'deregistered_subsidised' AS rule, e.uscc AS subject, []::BLOB[] AS persons, NULL AS id_masked,
           any_value(e.area) AS area, e.uscc, count(DISTINCT s.month)::INTEGER AS months,
           round(sum(s.amount), 2) AS amount_at_risk,
           json_object('status', any_value(e.status), 'end_date', any_value(e.end_date)::VARCHAR,
                       'months', list(DISTINCT {sql_month_text('s.month')} ORDER BY {sql_month_text('s.month')}))::VARCHAR
                       AS detail
    FROM e JOIN subsidies s ON s.uscc = e.uscc
    WHERE e.end_date IS NOT NULL AND s.month > {sql_month('e.end_date')}
    GROUP BY e.uscc"""


def _deregistered_contributing(p: dict[str, Any], night: date) -> str:
    # Contributions still paid under an ended business's credit code for months after the month it ended.
    return f"""
    WITH {_ended(p)}
    SELECT 'deregistered_contributing' AS rule, e.uscc AS subject, list(DISTINCT c.person) AS persons,
           NULL AS id_masked, any_value(e.area) AS area, e.uscc, count(DISTINCT c.month)::INTEGER AS months,
           round(sum(c.amount), 2) AS amount_at_risk,
           json_object('status', any_value(e.status), 'end_date', any_value(e.end_date)::VARCHAR,
                       'people', count(DISTINCT c.person),
                       'ids_masked', list(DISTINCT c.id_masked ORDER BY c.id_masked),
                       'months', list(DISTINCT {sql_month_text('c.month')} ORDER BY {sql_month_text('c.month')})
                       )::VARCHAR AS detail
    FROM e JOIN contributions c ON c.employer_uscc = e.uscc
    WHERE e.end_date IS NOT NULL AND c.month > {sql_month('e.end_date')}
    GROUP BY e.uscc"""


def _contributions_without_wage(p: dict[str, Any], night: date) -> str:
    # Contributions an employer paid for a person in months for which that employer declared no wage of
    # the person to the tax bureau (虚构劳动关系 / 挂靠参保), counted per person and employer. A wage declared
    # in any month of the same period of ``period_months`` calendar months (3: the quarter) covers the
    # month (a wage paid late or quarterly is declared under the month it was paid). Only months whose
    # declarations are due are counted: before the last ``filing_months`` before the night's month, and
    # not after the last month the bureau's feed has declarations for (no wage data: nothing is counted).
    period = max(int(p["period_months"]), 1)
    counted_before = month_no(night) - int(p["filing_months"])
    return f"""
    WITH w AS (
        SELECT DISTINCT person, employer_uscc, month // {period} AS period
        FROM wages WHERE person IS NOT NULL AND month IS NOT NULL),
    gap AS (
        SELECT c.person, c.employer_uscc, c.month, sum(c.amount) AS amount, any_value(c.id_masked) AS id_masked,
               any_value(c.area) AS area
        FROM contributions c
        WHERE c.person IS NOT NULL AND c.month IS NOT NULL AND c.month < {counted_before}
          AND c.month <= (SELECT max(month) FROM wages)
          AND NOT EXISTS (SELECT 1 FROM w WHERE w.person = c.person AND w.employer_uscc = c.employer_uscc
                                             AND w.period = c.month // {period})
        GROUP BY c.person, c.employer_uscc, c.month),
    pe AS (
        SELECT person, employer_uscc, count(*) AS months, sum(amount) AS amount,
               list({sql_month_text('month')} ORDER BY month) AS months_text,
               any_value(id_masked) AS id_masked, any_value(area) AS area
        FROM gap GROUP BY person, employer_uscc HAVING count(*) >= {int(p["min_months"])})
    SELECT 'contributions_without_wage' AS rule, hex(person) AS subject, [person] AS persons,
           any_value(id_masked) AS id_masked, any_value(area) AS area, sum(months)::INTEGER AS months,
           list(employer_uscc ORDER BY months DESC, employer_uscc)[1] AS uscc,  -- routed to its registration
           round(sum(amount), 2) AS amount_at_risk,
           json_object('employers', list({{'uscc': employer_uscc, 'months': months_text}}
                                         ORDER BY employer_uscc))::VARCHAR AS detail
    FROM pe GROUP BY person"""


RULES: tuple[Rule, ...] = (
    Rule("deregistered_subsidised", "注销后领取补贴", ("businesses", "subsidies"), {"ended": codes.BUSINESS_ENDED},
         _deregistered_subsidised, routing=EMPLOYER),
    Rule("deregistered_contributing", "注销后仍缴费", ("businesses", "contributions"), {"ended": codes.BUSINESS_ENDED},
         _deregistered_contributing, routing=EMPLOYER),
    Rule("contributions_without_wage", "无工资申报缴费", ("contributions", "wages"),
         {"min_months": 3, "period_months": 3, "filing_months": 1}, _contributions_without_wage,
         routing=EMPLOYER),
)
