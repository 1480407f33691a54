"""The office's own entries and accounts: one account for several people, double receipt of exclusive
schemes, unemployment benefit while an employer contributes.

Each rule is a named SQL unit over the views matching.rules.prepare defines; docs/matching.md defines it."""

from __future__ import annotations

from datetime import date
from typing import Any

from fundx.core import codes
from matching.sql import Rule, sql_month_text


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
               list(DISTINCT {sql_month_text('c.month')}) AS paid_months
        FROM roll r JOIN contributions c ON c.person = r.person AND c.month BETWEEN r.start_month AND r.paid_through
        WHERE r.benefit_type = '{p["benefit"]}' AND r.status = '{p["active"]}'
        GROUP BY r.person, r.id_masked, r.area, r.monthly_amount, r.start_month)
    SELECT 'unemployed_contributing' AS rule, hex(person) AS subject, [person] AS persons,
           any_value(id_masked) AS id_masked, any_value(area) AS area, sum(months)::INTEGER AS months,
           round(sum(months * monthly_amount), 2) AS amount_at_risk,
           json_object('months', flatten(list(paid_months)))::VARCHAR AS detail
    FROM m GROUP BY person"""


RULES: tuple[Rule, ...] = (
    Rule("shared_account", "多对一", ("roll",), {"min_people": 3, "active": codes.ACTIVE}, _shared_account),
    Rule("duplicate_receipt", "重复领取", ("roll",), {"exclusive": codes.EXCLUSIVE_SCHEMES, "active": codes.ACTIVE},
         _duplicate_receipt),
    Rule("unemployed_contributing", "领取失业金期间缴费", ("roll", "contributions"),
         {"benefit": codes.UNEMPLOYMENT, "active": codes.ACTIVE}, _unemployed_contributing),
)
