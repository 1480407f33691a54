"""Medical insurance (bill review): frequent visits, costs above their diagnosis's mean per bill and per
hospital, bills after the patient's death or during custody, overlapping inpatient stays in two hospitals.

Each rule is a named SQL unit over the views matching.rules.prepare defines; docs/matching.md defines it.
Wherever a rule reports an amount it is what the fund paid (``fund_amount``, 统筹/基金支付; the bill's
total for bills stored before the fund's share was kept). Evidence: bill ids, hospital codes, dates and
amounts, the death sources' keys, the prisoner's record key; never an identity number or a name.
Routing (matching.sql.routed): a bill's or a hospital's order goes to the hospital's district (bill_over_mean,
hospital_over_mean), a person's (the other four) to the district of the person's paying roll entry.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fundx.core import codes
from matching.sql import BILL, HOSPITAL, Rule, sql_month

#: a day as a number (days since 2000-01-01), for windows of days
_DAY = "(admitted_on - DATE '2000-01-01')"
#: what the fund paid of a bill
_FUND = "coalesce(fund_amount, total_amount)"
#: one bill as evidence (alias b)
_BILL = ("{'bill_id': b.record_key, 'hospital_code': b.hospital_code, 'admitted_on': b.admitted_on::VARCHAR, "
         "'fund_amount': round(b.fund, 2)}")


def _frequent_visits(p: dict[str, Any], night: date) -> str:
    span = int(p["window_days"]) - 1
    return f"""
    WITH b AS (
        SELECT record_key, person, id_masked, area, admitted_on, {_DAY} AS d, {_FUND} AS fund,
               count(*) OVER (PARTITION BY person ORDER BY {_DAY}
                              RANGE BETWEEN CURRENT ROW AND {span} FOLLOWING) AS ahead
        FROM bills WHERE person IS NOT NULL AND admitted_on IS NOT NULL),
    w AS (SELECT person, d AS first_d, admitted_on AS first_day, ahead FROM b WHERE ahead >= {int(p["min_visits"])}),
    hit AS (  -- every bill inside a window of window_days that holds min_visits bills or more
        SELECT DISTINCT b.record_key, b.person, b.id_masked, b.area, b.admitted_on, b.fund
        FROM b JOIN w ON b.person = w.person AND b.d BETWEEN w.first_d AND w.first_d + {span}),
    top AS (SELECT person, max(ahead) AS most, arg_max(first_day, ahead) AS busiest FROM w GROUP BY person)
    SELECT 'frequent_visits' AS rule, hex(h.person) AS subject, [h.person] AS persons,
           any_value(h.id_masked) AS id_masked, any_value(h.area) AS area,
           count(DISTINCT {sql_month('h.admitted_on')})::INTEGER AS months, round(sum(h.fund), 2) AS amount_at_risk,
           json_object('most_in_window', any_value(t.most), 'window_days', {span + 1},
                       'busiest_from', any_value(t.busiest)::VARCHAR, 'bills', count(*),
                       'first_day', min(h.admitted_on)::VARCHAR, 'last_day', max(h.admitted_on)::VARCHAR)::VARCHAR AS detail
    FROM hit h JOIN top t ON t.person = h.person GROUP BY h.person"""


def _peers(p: dict[str, Any], hospital: bool) -> str:
    """Each bill with the sum and count of the same diagnosis and setting's other bills admitted within
    period_days of it (``hospital``: the other hospitals' bills only)."""
    period = int(p["period_days"])
    frame = f"ORDER BY d RANGE BETWEEN {period} PRECEDING AND {period} FOLLOWING"
    if hospital:
        sums = ("sum(total_amount) OVER wa - sum(total_amount) OVER wh AS others_sum, "
                "count(*) OVER wa - count(*) OVER wh AS others_n")
        windows = (f"wa AS (PARTITION BY diagnosis_code, inpatient {frame}), "
                   f"wh AS (PARTITION BY diagnosis_code, inpatient, hospital_code {frame})")
    else:
        sums = "sum(total_amount) OVER wa - total_amount AS others_sum, count(*) OVER wa - 1 AS others_n"
        windows = f"wa AS (PARTITION BY diagnosis_code, inpatient {frame})"
    return f"""
    b AS (
        SELECT record_key, person, id_masked, area, hospital_code, diagnosis_code, inpatient, admitted_on,
               total_amount, {_FUND} AS fund, {_DAY} AS d
        FROM bills WHERE total_amount IS NOT NULL AND admitted_on IS NOT NULL AND diagnosis_code IS NOT NULL
                         AND inpatient IS NOT NULL {"AND hospital_code IS NOT NULL" if hospital else ""}),
    g AS (SELECT *, {sums} FROM b WINDOW {windows}),
    m AS (SELECT *, others_sum / others_n AS mean FROM g WHERE others_n >= {int(p["min_peers"])})"""


def _bill_over_mean(p: dict[str, Any], night: date) -> str:
    return f"""
    WITH {_peers(p, hospital=False)}
    SELECT 'bill_over_mean' AS rule, record_key AS subject, [person] AS persons, id_masked, area, hospital_code,
           NULL::INTEGER AS months, round(fund * (total_amount - mean) / total_amount, 2) AS amount_at_risk,
           json_object('bill_id', record_key, 'hospital_code', hospital_code, 'diagnosis_code', diagnosis_code,
                       'setting', CASE WHEN inpatient THEN 'inpatient' ELSE 'outpatient' END,
                       'admitted_on', admitted_on::VARCHAR, 'total_amount', total_amount,
                       'fund_amount', round(fund, 2), 'mean', round(mean, 2), 'peers', others_n)::VARCHAR AS detail
    FROM m WHERE total_amount > (1 + {float(p["over"])}) * mean"""


def _hospital_over_mean(p: dict[str, Any], night: date) -> str:
    return f"""
    WITH {_peers(p, hospital=True)},
    h AS (
        SELECT hospital_code, diagnosis_code, inpatient, count(*) AS bills, avg(total_amount / mean) AS cost_index,
               avg(total_amount) AS mean, avg(mean) AS peers_mean, min(others_n) AS peers,
               sum(fund * (total_amount - mean) / nullif(total_amount, 0)) AS excess
        FROM m WHERE mean > 0 GROUP BY hospital_code, diagnosis_code, inpatient
        HAVING count(*) >= {int(p["min_bills"])} AND avg(total_amount / mean) > 1 + {float(p["over"])})
    SELECT 'hospital_over_mean' AS rule, hospital_code AS subject, []::BLOB[] AS persons, NULL AS id_masked,
           substr(hospital_code, 2, 6) AS area, hospital_code, NULL::INTEGER AS months, round(sum(excess), 2) AS amount_at_risk,
           json_object('hospital_code', hospital_code, 'diagnoses', list({{
               'diagnosis_code': diagnosis_code, 'setting': CASE WHEN inpatient THEN 'inpatient' ELSE 'outpatient' END,
               'bills': bills, 'cost_index': round(cost_index, 3), 'mean': round(mean, 2),
               'peers_mean': round(peers_mean, 2), 'peers': peers}} ORDER BY diagnosis_code, inpatient))::VARCHAR AS detail
    FROM h GROUP BY hospital_code"""


def _bill_after_death(p: dict[str, Any], night: date) -> str:
    return f"""
    WITH a AS (
        SELECT b.record_key, b.person, b.id_masked, b.area, b.hospital_code, b.admitted_on, {_FUND} AS fund,
               d.death_date, d.confidence
        FROM bills b JOIN death_view d ON b.person = d.person
        WHERE b.admitted_on > d.death_date + {int(p["after_days"])}),
    ev AS (
        SELECT person, map_from_entries(list((feed, {{'key': record_key, 'death_date': death_date::VARCHAR}})
                                    ORDER BY feed, record_key))
                   AS sources
        FROM deaths WHERE person IN (SELECT person FROM a) GROUP BY person)
    SELECT 'bill_after_death' AS rule, hex(b.person) AS subject, [b.person] AS persons,
           any_value(b.id_masked) AS id_masked, any_value(b.area) AS area,
           count(DISTINCT {sql_month('b.admitted_on')})::INTEGER AS months, round(sum(b.fund), 2) AS amount_at_risk,
           json_object('death_date', any_value(b.death_date)::VARCHAR, 'confidence', any_value(b.confidence),
                       'sources', any_value(ev.sources),
                       'bills', list({_BILL} ORDER BY b.admitted_on, b.record_key))::VARCHAR AS detail
    FROM a b LEFT JOIN ev ON ev.person = b.person GROUP BY b.person"""


def _bill_in_custody(p: dict[str, Any], night: date) -> str:
    return f"""
    WITH c AS (
        SELECT person, record_key AS prisoner_id, admitted_on AS custody_from,
               least(coalesce(sentence_end, DATE '{night}'), DATE '{night}') AS custody_to
        FROM custody WHERE custody_status = '{p["status"]}' AND person IS NOT NULL AND admitted_on IS NOT NULL),
    a AS (
        SELECT b.record_key, b.person, b.id_masked, b.area, b.hospital_code, b.admitted_on, {_FUND} AS fund,
               c.prisoner_id, c.custody_from, c.custody_to
        FROM bills b JOIN c ON b.person = c.person
        WHERE b.admitted_on > c.custody_from AND b.admitted_on <= c.custody_to
        QUALIFY row_number() OVER (PARTITION BY b.record_key ORDER BY c.custody_from DESC, c.prisoner_id) = 1)
    SELECT 'bill_in_custody' AS rule, hex(b.person) AS subject, [b.person] AS persons,
           any_value(b.id_masked) AS id_masked, any_value(b.area) AS area,
           count(DISTINCT {sql_month('b.admitted_on')})::INTEGER AS months, round(sum(b.fund), 2) AS amount_at_risk,
           json_object('custody', {{'prisoner_id': any_value(b.prisoner_id),
                                    'admitted_on': any_value(b.custody_from)::VARCHAR,
                                    'until': any_value(b.custody_to)::VARCHAR}},
                       'bills', list({_BILL} ORDER BY b.admitted_on, b.record_key))::VARCHAR AS detail
    FROM a b GROUP BY b.person"""


def _overlapping_stays(p: dict[str, Any], night: date) -> str:
    return f"""
    WITH s AS (
        SELECT record_key, person, id_masked, area, hospital_code, admitted_on, discharged_on, {_FUND} AS fund
        FROM bills WHERE inpatient AND person IS NOT NULL AND hospital_code IS NOT NULL
                         AND admitted_on IS NOT NULL AND discharged_on IS NOT NULL),
    pairs AS (  -- a: the stay admitted first; b: admitted while the patient was in a's hospital
        SELECT b.person, b.id_masked, b.area, a.record_key AS first_bill, a.hospital_code AS first_hospital,
               a.admitted_on AS first_admitted, a.discharged_on AS first_discharged, b.record_key AS bill,
               b.hospital_code AS hospital, b.admitted_on AS admitted, b.discharged_on AS discharged, b.fund,
               least(a.discharged_on, b.discharged_on) - b.admitted_on AS overlap_days
        FROM s a JOIN s b ON a.person = b.person AND a.hospital_code <> b.hospital_code
             AND (a.admitted_on < b.admitted_on OR (a.admitted_on = b.admitted_on AND a.record_key < b.record_key))
             AND b.admitted_on < a.discharged_on AND a.admitted_on < b.discharged_on),
    paid AS (SELECT person, round(sum(fund), 2) AS amount FROM (SELECT DISTINCT person, bill, fund FROM pairs)
             GROUP BY person)
    SELECT 'overlapping_stays' AS rule, hex(x.person) AS subject, [x.person] AS persons,
           any_value(x.id_masked) AS id_masked, any_value(x.area) AS area, NULL::INTEGER AS months,
           any_value(paid.amount) AS amount_at_risk,
           json_object('stays', list({{'first': {{'bill_id': x.first_bill, 'hospital_code': x.first_hospital,
                                                 'admitted_on': x.first_admitted::VARCHAR,
                                                 'discharged_on': x.first_discharged::VARCHAR}},
                                      'second': {{'bill_id': x.bill, 'hospital_code': x.hospital,
                                                  'admitted_on': x.admitted::VARCHAR,
                                                  'discharged_on': x.discharged::VARCHAR,
                                                  'fund_amount': round(x.fund, 2)}},
                                      'overlap_days': x.overlap_days}}
                                     ORDER BY x.admitted, x.bill, x.first_bill))::VARCHAR AS detail
    FROM pairs x JOIN paid ON paid.person = x.person GROUP BY x.person"""


RULES: tuple[Rule, ...] = (
    Rule("frequent_visits", "频繁就诊", ("bills",), {"min_visits": 15, "window_days": 30}, _frequent_visits),
    Rule("bill_over_mean", "超均值费用", ("bills",), {"over": 0.20, "min_peers": 30, "period_days": 365},
         _bill_over_mean, routing=BILL),
    Rule("hospital_over_mean", "机构超均值费用", ("bills",),
         {"over": 0.20, "min_peers": 30, "min_bills": 30, "period_days": 365}, _hospital_over_mean, routing=HOSPITAL),
    Rule("bill_after_death", "死亡后就医", ("bills", "deaths"), {"after_days": 0}, _bill_after_death),
    Rule("bill_in_custody", "在押期间就医", ("bills", "custody"), {"status": codes.IN_CUSTODY}, _bill_in_custody),
    Rule("overlapping_stays", "重叠住院", ("bills",), {}, _overlapping_stays),
)
