"""The office's own entries and accounts over history: one account for several people or taken over after
a death or an admission to custody, double receipt of exclusive schemes, unemployment benefit while an
employer contributes.

Each rule is a named SQL unit over the views matching.rules.prepare defines; docs/matching.md defines it.
All three read the payment ledger (``payments``): the months actually paid and what was paid, past
entries (stopped, suspended) as well as active ones, over the months the office keeps online. A store
without a ledger (none delivered yet) falls back on the roll's active entries (detail ``from: roll``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from fundx.core import codes
from matching.sql import ACCOUNT, Rule, sql_month_text


def _shared_in_ledger(p: dict[str, Any]) -> str:
    # Candidates first (cheap): accounts the ledger paid for two or more people, and accounts changed to
    # one already used by someone else after that someone's death or admission to custody. Then a person
    # and their spouse on file (the roll's ``spouse``, either way round) count as one when exempt_spouses.
    # At risk: what the ledger paid into the account to people other than its holders (those paid into it
    # who never changed to it by the change log, and the dead or detained it was taken from).
    n, exempt = int(p["min_people"]), "TRUE" if int(p["exempt_spouses"]) else "FALSE"
    return f"""
    WITH ap AS MATERIALIZED (  -- the ledger once, per account and person (the view is read twice in all)
        SELECT account, person, any_value(id_masked) AS id_masked, any_value(area) AS area,
               any_value(account_masked) AS account_masked
        FROM payments WHERE account IS NOT NULL AND person IS NOT NULL GROUP BY account, person),
    busy AS (SELECT account FROM ap GROUP BY account HAVING count(*) >= 2),
    rel AS (
        SELECT person, spouse FROM roll WHERE spouse IS NOT NULL AND person IS NOT NULL
        UNION SELECT spouse, person FROM roll WHERE spouse IS NOT NULL AND person IS NOT NULL),
    users AS (  -- who used each account that someone changed to: the roll, the ledger, the change log
        SELECT account, person FROM roll WHERE account IN (SELECT new_account FROM account_changes)
        UNION SELECT account, person FROM ap WHERE account IN (SELECT new_account FROM account_changes)
        UNION SELECT old_account, person FROM account_changes
              WHERE old_account IN (SELECT new_account FROM account_changes)),
    gone AS (
        SELECT person, death_date AS since, NULL::DATE AS until, 'death' AS event FROM death_view
        UNION ALL
        SELECT person, admitted_on, sentence_end, 'custody' FROM custody
        WHERE person IS NOT NULL AND admitted_on IS NOT NULL),
    took AS (  -- an account changed to one whose user had died, or was in custody, when it was changed
        SELECT c.new_account AS account, c.person AS taker, u.person AS former, g.event, g.since, c.changed_on
        FROM account_changes c JOIN users u ON u.account = c.new_account AND u.person <> c.person
        JOIN gone g ON g.person = u.person AND c.changed_on >= g.since
                   AND (g.until IS NULL OR c.changed_on <= g.until)
        WHERE c.person IS NOT NULL
          AND NOT ({exempt} AND EXISTS (SELECT 1 FROM rel WHERE rel.person = c.person AND rel.spouse = u.person))),
    who AS (
        SELECT account, person FROM ap SEMI JOIN busy USING (account)
        UNION SELECT account, person FROM ap SEMI JOIN took USING (account)
        UNION SELECT account, former FROM took),
    unit AS (  -- one unit per person, or per couple when spouses are exempt
        SELECT o.account, o.person,
               CASE WHEN {exempt} THEN least(o.person, COALESCE(min(s.person), o.person)) ELSE o.person END AS unit
        FROM who o LEFT JOIN rel r ON r.person = o.person
        LEFT JOIN who s ON s.account = o.account AND s.person = r.spouse
        GROUP BY o.account, o.person),
    flagged AS (
        SELECT account FROM unit GROUP BY account HAVING count(DISTINCT unit) >= {n}
        UNION SELECT account FROM took),
    holder AS (
        SELECT u.account, u.unit FROM unit u SEMI JOIN flagged USING (account)
        WHERE NOT EXISTS (SELECT 1 FROM account_changes c WHERE c.new_account = u.account AND c.person = u.person)
        UNION SELECT t.account, u.unit FROM took t JOIN unit u ON u.account = t.account AND u.person = t.former),
    risk AS (
        SELECT pa.account, pa.month, pa.amount FROM payments pa SEMI JOIN flagged f ON f.account = pa.account
        JOIN unit u ON u.account = pa.account AND u.person = pa.person
        ANTI JOIN holder h ON h.account = u.account AND h.unit = u.unit),
    at_risk AS (
        SELECT account, count(DISTINCT month)::INTEGER AS months, round(sum(amount), 2) AS amount,
               list(DISTINCT {sql_month_text('month')} ORDER BY {sql_month_text('month')}) AS paid_months
        FROM risk GROUP BY account),
    named AS (  -- each person's masked number and area: the roll's, else the ledger's
        SELECT person, any_value(id_masked) AS id_masked, any_value(area) AS area FROM (
            SELECT person, id_masked, area FROM roll UNION ALL SELECT person, id_masked, area FROM ap)
        WHERE person IN (SELECT person FROM who) GROUP BY person),
    masked AS (
        SELECT account, any_value(account_masked) AS account_masked FROM (
            SELECT account, account_masked FROM ap UNION ALL SELECT account, account_masked FROM roll
            UNION ALL SELECT new_account, new_account_masked FROM account_changes)
        WHERE account IN (SELECT account FROM flagged) GROUP BY account),
    taken AS (
        SELECT t.account, list({{'event': t.event, 'since': t.since::VARCHAR, 'changed_on': t.changed_on::VARCHAR,
                                 'former': nf.id_masked, 'taker': nt.id_masked}} ORDER BY t.changed_on) AS over
        FROM took t LEFT JOIN named nf ON nf.person = t.former LEFT JOIN named nt ON nt.person = t.taker
        GROUP BY t.account)
    SELECT 'shared_account' AS rule, hex(w.account) AS subject, list(DISTINCT w.person ORDER BY w.person) AS persons,
           any_value(m.account_masked) AS id_masked, min(nm.area) AS area, COALESCE(any_value(r.months), 0) AS months,
           COALESCE(any_value(r.amount), 0.0) AS amount_at_risk,
           json_object('people', count(DISTINCT w.person), 'unrelated', count(DISTINCT u.unit),
                       'masked', list(DISTINCT nm.id_masked ORDER BY nm.id_masked), 'account', any_value(m.account_masked),
                       'months', COALESCE(any_value(r.paid_months), []), 'taken_over', any_value(tk.over))::VARCHAR
               AS detail
    FROM who w SEMI JOIN flagged f ON f.account = w.account
    JOIN unit u ON u.account = w.account AND u.person = w.person
    LEFT JOIN named nm ON nm.person = w.person LEFT JOIN masked m ON m.account = w.account
    LEFT JOIN at_risk r ON r.account = w.account LEFT JOIN taken tk ON tk.account = w.account
    GROUP BY w.account"""


def _duplicate_in_ledger(p: dict[str, Any]) -> str:
    # Per person and month, what each scheme paid (the ledger); every exclusive pair paid in the same month
    # is one overlapping month, the smaller of the two what was paid twice.
    pairs = ", ".join(f"('{a}', '{b}')" for a, b in (sorted(x) for x in p["exclusive"]))
    schemes = ", ".join(sorted({f"'{s}'" for pair in p["exclusive"] for s in pair}))
    return f"""
    WITH twice AS (  -- people paid on two or more of the schemes (a cheap count), the self-join for those only
        SELECT person FROM payments WHERE benefit_type IN ({schemes}) AND person IS NOT NULL
        GROUP BY person HAVING count(DISTINCT benefit_type) >= 2),
    m AS (
        SELECT person, benefit_type, month, sum(amount) AS amount, any_value(id_masked) AS id_masked,
               any_value(area) AS area, list(DISTINCT entry_key) AS entries, list(DISTINCT account_masked) AS accounts
        FROM payments SEMI JOIN twice USING (person) WHERE benefit_type IN ({schemes})
        GROUP BY person, benefit_type, month),
    o AS (
        SELECT a.person, a.month, a.benefit_type AS first, b.benefit_type AS second,
               least(a.amount, b.amount) AS amount, a.id_masked, a.area,
               list_distinct(list_concat(a.entries, b.entries)) AS entries,
               list_distinct(list_concat(a.accounts, b.accounts)) AS accounts
        FROM m a JOIN m b ON a.person = b.person AND a.month = b.month AND a.benefit_type < b.benefit_type
        WHERE (a.benefit_type, b.benefit_type) IN ({pairs}))
    SELECT 'duplicate_receipt' AS rule, hex(person) AS subject, [person] AS persons,
           any_value(id_masked) AS id_masked, any_value(area) AS area, count(DISTINCT month)::INTEGER AS months,
           round(sum(amount), 2) AS amount_at_risk,
           json_object('schemes', list(DISTINCT [first, second] ORDER BY [first, second]),
                       'months', list(DISTINCT {sql_month_text('month')} ORDER BY {sql_month_text('month')}),
                       'entries', list_sort(list_distinct(flatten(list(entries)))),
                       'accounts', list_sort(list_distinct(flatten(list(accounts)))))::VARCHAR AS detail
    FROM o GROUP BY person"""


def _unemployed_in_ledger(p: dict[str, Any]) -> str:
    # Months the ledger paid unemployment benefit in which an employer contributed for the person.
    return f"""
    WITH u AS (
        SELECT person, month, sum(amount) AS amount, any_value(id_masked) AS id_masked, any_value(area) AS area,
               list(DISTINCT entry_key) AS entries
        FROM payments WHERE benefit_type = '{p["benefit"]}' AND person IS NOT NULL GROUP BY person, month),
    c AS (
        SELECT person, month, list(DISTINCT employer_uscc) AS employers, sum(amount) AS contributed
        FROM contributions WHERE person IN (SELECT person FROM u) GROUP BY person, month),
    hit AS (SELECT u.*, c.employers, c.contributed FROM u JOIN c USING (person, month))
    SELECT 'unemployed_contributing' AS rule, hex(person) AS subject, [person] AS persons,
           any_value(id_masked) AS id_masked, any_value(area) AS area, count(*)::INTEGER AS months,
           round(sum(amount), 2) AS amount_at_risk,
           json_object('months', list({sql_month_text('month')} ORDER BY month),
                       'employers', list_sort(list_distinct(flatten(list(employers)))),
                       'contributed', round(sum(contributed), 2),
                       'entries', list_sort(list_distinct(flatten(list(entries)))))::VARCHAR AS detail
    FROM hit GROUP BY person"""


# A store without a ledger (none delivered yet) falls back on the roll's active entries, as the rules read
# them before the ledger: the same columns, months and amounts from [start_month, paid_through] x monthly_amount.
_NO_LEDGER = "NOT EXISTS (SELECT 1 FROM payments_in)"


def _shared_in_roll(p: dict[str, Any]) -> str:
    n, exempt = int(p["min_people"]), "TRUE" if int(p["exempt_spouses"]) else "FALSE"
    return f"""
    WITH act AS (
        SELECT DISTINCT account, person, spouse FROM roll
        WHERE status = '{p["active"]}' AND account IS NOT NULL AND person IS NOT NULL),
    unit AS (
        SELECT a.account, a.person,
               CASE WHEN {exempt} THEN least(a.person, COALESCE(min(b.person), a.person)) ELSE a.person END AS unit
        FROM act a LEFT JOIN act b ON b.account = a.account AND (b.person = a.spouse OR b.spouse = a.person)
        GROUP BY a.account, a.person),
    busy AS (SELECT account FROM unit GROUP BY account HAVING count(DISTINCT unit) >= {n})
    SELECT 'shared_account' AS rule, hex(r.account) AS subject, list(DISTINCT r.person) AS persons,
           any_value(r.account_masked) AS id_masked, min(r.area) AS area, NULL::INTEGER AS months,
           round(sum(r.monthly_amount), 2) AS amount_at_risk,
           json_object('people', count(DISTINCT r.person), 'masked', list(DISTINCT r.id_masked ORDER BY r.id_masked),
                       'account', any_value(r.account_masked), 'from', 'roll')::VARCHAR AS detail
    FROM roll r SEMI JOIN busy b ON r.account = b.account
    WHERE r.status = '{p["active"]}' AND {_NO_LEDGER}
    GROUP BY r.account"""


def _duplicate_in_roll(p: dict[str, Any]) -> str:
    pairs = ", ".join(f"('{a}', '{b}')" for a, b in (sorted(x) for x in p["exclusive"]))
    overlap = "(least(a.paid_through, b.paid_through) - greatest(a.start_month, b.start_month) + 1)"
    return f"""
    WITH twice AS (
        SELECT person FROM roll WHERE status = '{p["active"]}' GROUP BY person HAVING count(*) >= 2),
    r AS (SELECT * FROM roll SEMI JOIN twice USING (person) WHERE status = '{p["active"]}')
    SELECT 'duplicate_receipt' AS rule, hex(a.person) AS subject, [a.person] AS persons,
           any_value(a.id_masked) AS id_masked, any_value(a.area) AS area, max({overlap})::INTEGER AS months,
           round(sum({overlap} * least(a.monthly_amount, b.monthly_amount)), 2) AS amount_at_risk,
           json_object('schemes', list([a.benefit_type, b.benefit_type] ORDER BY a.benefit_type, b.benefit_type),
                       'from', 'roll')::VARCHAR AS detail
    FROM r a JOIN r b ON a.person = b.person AND a.benefit_type < b.benefit_type
    WHERE (a.benefit_type, b.benefit_type) IN ({pairs}) AND {overlap} > 0 AND {_NO_LEDGER}
    GROUP BY a.person"""


def _unemployed_in_roll(p: dict[str, Any]) -> str:
    return f"""
    WITH m AS (
        SELECT r.person, r.id_masked, r.area, r.monthly_amount, c.month
        FROM roll r JOIN contributions c ON c.person = r.person AND c.month BETWEEN r.start_month AND r.paid_through
        WHERE r.benefit_type = '{p["benefit"]}' AND r.status = '{p["active"]}' AND {_NO_LEDGER}
        GROUP BY ALL)
    SELECT 'unemployed_contributing' AS rule, hex(person) AS subject, [person] AS persons,
           any_value(id_masked) AS id_masked, any_value(area) AS area, count(*)::INTEGER AS months,
           round(sum(monthly_amount), 2) AS amount_at_risk,
           json_object('months', list({sql_month_text('month')} ORDER BY month), 'from', 'roll')::VARCHAR AS detail
    FROM m GROUP BY person"""


def _either(ledger: Callable[[dict[str, Any]], str], roll: Callable[[dict[str, Any]], str]) -> Callable[..., str]:
    def sql(p: dict[str, Any], night: date) -> str:  # one row per subject: the ledger's, else the roll's
        return f"""WITH led AS MATERIALIZED ({ledger(p)})
        SELECT * FROM led UNION ALL SELECT * FROM ({roll(p)}) WHERE subject NOT IN (SELECT subject FROM led)"""

    return sql


RULES: tuple[Rule, ...] = (
    Rule("shared_account", "多对一", ("payments", "roll", "account_changes", "deaths", "custody"),
         {"min_people": 2, "exempt_spouses": 1, "active": codes.ACTIVE}, _either(_shared_in_ledger, _shared_in_roll),
         routing=ACCOUNT),
    Rule("duplicate_receipt", "重复领取", ("payments", "roll"),
         {"exclusive": codes.EXCLUSIVE_SCHEMES, "active": codes.ACTIVE}, _either(_duplicate_in_ledger, _duplicate_in_roll)),
    Rule("unemployed_contributing", "领取失业金期间缴费", ("payments", "roll", "contributions"),
         {"benefit": codes.UNEMPLOYMENT, "active": codes.ACTIVE}, _either(_unemployed_in_ledger, _unemployed_in_roll)),
)
