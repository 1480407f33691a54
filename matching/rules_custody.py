"""Custody: benefits paid, contributions paid and retirement granted while the person was in custody (服刑未暂停).

A **custody period** is a justice record (``custody``) in custody now (``status``, 在押: from the admission
on, capped at the sentence end's month once it is past) or released at the end of the sentence
(``released``, 刑满释放: from the admission to ``sentence_end``). The months *in* custody are those after the
admission's month up to and including the last month of the period (the admission month was payable;
the release month is not). Parole (假释) and serving outside prison (暂予监外执行) are not custody periods:
the justice feed gives no date on which the person left prison, so the months spent inside before
cannot be bounded (docs/matching.md).

Three rules read the periods, past or present (the Shenyang plan, seed 000: 服刑人员违规办理退休和领取养老待遇
行为或缴纳养老保险费):

- ``paid_in_custody``: months the payment ledger paid inside a period (on any entry);
- ``contributions_in_custody``: contributions paid for months inside a period;
- ``retired_in_custody``: a pension entry (``schemes``) whose first month falls inside a period.

Each rule is a named SQL unit over the views matching.rules.prepare defines; docs/matching.md defines it."""

from __future__ import annotations

from datetime import date
from typing import Any

from fundx.core import codes
from matching.sql import INSURED, Rule, sql_month, sql_month_text

CUSTODY_DEFAULTS: dict[str, Any] = {"status": codes.IN_CUSTODY, "released": codes.RELEASED}


def _periods(p: dict[str, Any], night: date) -> str:
    """The CTE ``cp``: one row per custody period (from_month exclusive, until_month inclusive, NULL: open)."""
    return f"""
    cp AS (
        SELECT person, record_key AS prisoner_id, custody_status, admitted_on, sentence_end, id_masked, area,
               {sql_month('admitted_on')} AS from_month,
               CASE WHEN custody_status = '{p["released"]}' OR sentence_end < DATE '{night}'
                    THEN {sql_month('sentence_end')} END AS until_month
        FROM custody
        WHERE person IS NOT NULL AND admitted_on IS NOT NULL
          AND (custody_status = '{p["status"]}'
               OR (custody_status = '{p["released"]}' AND sentence_end IS NOT NULL AND sentence_end >= admitted_on)))"""


def _inside(month: str) -> str:
    """A month (SQL expression) inside the custody period ``cp``."""
    return f"({month} > cp.from_month AND (cp.until_month IS NULL OR {month} <= cp.until_month))"


def _evidence() -> str:
    """The CTE ``ev``: each person's custody periods as masked evidence (the justice record's key and dates)."""
    return f"""
    ev AS (
        SELECT person, any_value(id_masked) AS id_masked, any_value(area) AS area,
               list({{'prisoner_id': prisoner_id, 'status': custody_status, 'admitted_on': admitted_on::VARCHAR,
                      'until': CASE WHEN until_month IS NULL THEN NULL ELSE {sql_month_text('until_month')} END}}
                    ORDER BY admitted_on) AS custody
        FROM cp GROUP BY person)"""


def _paid_in_custody(p: dict[str, Any], night: date) -> str:
    # What the payment ledger paid for months inside a custody period, on every entry; a store without a
    # ledger (none delivered yet) falls back on the roll for the periods in custody now (在押): paid_through
    # capped at the period's end (the roll cannot show the months a released person was not paid).
    until = "least(r.paid_through, COALESCE(cp.until_month, r.paid_through))"
    return f"""
    WITH {_periods(p, night)},
    led AS (
        SELECT pa.person, count(DISTINCT pa.month)::INTEGER AS months, round(sum(pa.amount), 2) AS amount_at_risk,
               list(DISTINCT pa.benefit_type ORDER BY pa.benefit_type) AS benefits,
               list(DISTINCT {sql_month_text('pa.month')} ORDER BY {sql_month_text('pa.month')}) AS paid_months,
               any_value(pa.id_masked) AS id_masked, any_value(pa.area) AS area
        FROM payments pa
        WHERE pa.person IN (SELECT person FROM cp)
          AND EXISTS (SELECT 1 FROM cp WHERE cp.person = pa.person AND {_inside('pa.month')})
        GROUP BY pa.person),
    rolled AS (
        SELECT r.person, max({until} - cp.from_month)::INTEGER AS months,
               round(sum(({until} - cp.from_month) * r.monthly_amount), 2) AS amount_at_risk,
               list(DISTINCT r.benefit_type ORDER BY r.benefit_type) AS benefits, NULL::VARCHAR[] AS paid_months,
               any_value(r.id_masked) AS id_masked, any_value(r.area) AS area
        FROM roll r JOIN cp ON r.person = cp.person
        WHERE cp.custody_status = '{p["status"]}' AND {until} > cp.from_month AND NOT EXISTS (SELECT 1 FROM payments_in)
        GROUP BY r.person),
    found AS (SELECT * FROM led UNION ALL SELECT * FROM rolled),
    {_evidence()},
    routed AS (  -- the roll's masked number; the order's district: matching.sql.routed (the paying roll entry's)
        SELECT f.person, any_value(r.area) AS area, any_value(r.id_masked) AS id_masked
        FROM found f LEFT JOIN roll r ON r.person = f.person GROUP BY f.person)
    SELECT 'paid_in_custody' AS rule, hex(f.person) AS subject, [f.person] AS persons,
           COALESCE(rt.id_masked, f.id_masked, ev.id_masked) AS id_masked, COALESCE(rt.area, f.area, ev.area) AS area,
           f.months, f.amount_at_risk,
           json_object('custody', ev.custody, 'benefits', f.benefits, 'paid_months', f.paid_months)::VARCHAR AS detail
    FROM found f JOIN ev ON ev.person = f.person JOIN routed rt ON rt.person = f.person"""


def _contributions_in_custody(p: dict[str, Any], night: date) -> str:
    # Contributions (the office's contributions table) paid for months inside a custody period.
    return f"""
    WITH {_periods(p, night)},
    ci AS (
        SELECT c.* FROM contributions c
        WHERE c.person IN (SELECT person FROM cp)
          AND EXISTS (SELECT 1 FROM cp WHERE cp.person = c.person AND {_inside('c.month')})),
    c AS (
        SELECT c.person, count(DISTINCT c.month)::INTEGER AS months, round(sum(c.amount), 2) AS amount,
               list(DISTINCT c.employer_uscc ORDER BY c.employer_uscc) AS employers,
               list(DISTINCT {sql_month_text('c.month')} ORDER BY {sql_month_text('c.month')}) AS contribution_months
        FROM ci c GROUP BY c.person),
    top AS (  -- routing (matching.sql.INSURED): the employer of the most such months, the smallest code of a tie
        SELECT person, list(employer_uscc ORDER BY n DESC, employer_uscc)[1] AS employer FROM (
            SELECT person, employer_uscc, count(DISTINCT month) AS n FROM ci
            WHERE employer_uscc IS NOT NULL GROUP BY person, employer_uscc)
        GROUP BY person),
    {_evidence()}
    SELECT 'contributions_in_custody' AS rule, hex(c.person) AS subject, [c.person] AS persons, ev.id_masked,
           ev.area, top.employer AS uscc, c.months, c.amount AS amount_at_risk,
           json_object('custody', ev.custody, 'employers', c.employers,
                       'contribution_months', c.contribution_months)::VARCHAR AS detail
    FROM c JOIN ev ON ev.person = c.person LEFT JOIN top ON top.person = c.person"""


def _retired_in_custody(p: dict[str, Any], night: date) -> str:
    # A pension entry whose first month is inside a custody period: the award itself is irregular, so
    # months and amount are what the ledger paid on the entry (the roll's paid months when no ledger came).
    schemes = ", ".join(f"'{s}'" for s in p["schemes"])
    return f"""
    WITH {_periods(p, night)},
    e AS (
        SELECT DISTINCT r.record_key AS entry, r.person, r.benefit_type, r.start_month, r.monthly_amount,
               r.paid_through, r.id_masked, r.area
        FROM roll r JOIN cp ON r.person = cp.person
        WHERE r.benefit_type IN ({schemes}) AND r.start_month IS NOT NULL AND {_inside('r.start_month')}),
    paid AS (
        SELECT entry_key, count(DISTINCT month)::INTEGER AS months, sum(amount) AS amount
        FROM payments WHERE entry_key IN (SELECT entry FROM e) GROUP BY entry_key),
    {_evidence()}
    SELECT 'retired_in_custody' AS rule, hex(e.person) AS subject, [e.person] AS persons,
           COALESCE(any_value(e.id_masked), any_value(ev.id_masked)) AS id_masked,
           COALESCE(any_value(e.area), any_value(ev.area)) AS area,
           sum(CASE WHEN NOT EXISTS (SELECT 1 FROM payments_in) THEN greatest(e.paid_through - e.start_month + 1, 0)
                    ELSE COALESCE(paid.months, 0) END)::INTEGER AS months,
           round(sum(CASE WHEN NOT EXISTS (SELECT 1 FROM payments_in)
                          THEN greatest(e.paid_through - e.start_month + 1, 0) * e.monthly_amount
                          ELSE COALESCE(paid.amount, 0) END), 2) AS amount_at_risk,
           json_object('custody', any_value(ev.custody),
                       'entries', list({{'benefit': e.benefit_type, 'start_month': {sql_month_text('e.start_month')}}}
                                       ORDER BY e.start_month))::VARCHAR AS detail
    FROM e JOIN ev ON ev.person = e.person LEFT JOIN paid ON paid.entry_key = e.entry
    GROUP BY e.person"""


RULES: tuple[Rule, ...] = (
    Rule("paid_in_custody", "服刑未暂停", ("payments", "roll", "custody"), dict(CUSTODY_DEFAULTS), _paid_in_custody),
    Rule("contributions_in_custody", "服刑期间缴费", ("contributions", "custody"), dict(CUSTODY_DEFAULTS),
         _contributions_in_custody, routing=INSURED),
    Rule("retired_in_custody", "服刑期间办理退休", ("roll", "payments", "custody"),
         {**CUSTODY_DEFAULTS, "schemes": (codes.BASIC_PENSION,)}, _retired_in_custody),
)
