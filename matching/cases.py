"""Cases across nights: a suspect found again on a later night is the same order, not a second one.

An order is the case of one (rule, subject) — a person, an account, a bill, an employer — however many
nights find it. :func:`record` takes a matching night's suspects and, for each:

- a subject no order names yet gets a new order (numbered on the night it is issued: orders.order_id);
- an open order found again gets a **version** when what the night saw differs (months, amount or
  evidence): the order shows the latest, ``order_versions`` keeps each night's (``updated``);
- a closed order stays closed unless its evidence **materially** changed: a source that did not know
  the case before, more months paid, or more money at risk than when it was closed. Then it reopens
  (``reopened``, audited as ``order.reopened`` with the reason), because a false positive that is paid
  again, or a confirmed death whose payments did not stop, is a new finding the office must see;
- the night the order was issued, found again (a rerun of that night), changes nothing.

The inspection lifecycle (matching.lifecycle: reviews, acceptance, escalation) works on these cases: a reopened
case starts again at ``issued`` (its earlier steps stay in ``case_events``); what counts as a material change is
:func:`material_change`. Nothing here sees a raw identity: subjects are
tokens, evidence is masked (orders._suspect_rows checks it), and the audit holds counts and order ids.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from fundx.core.timeutil import UTC
from fundx.ledger import Ledger
from fundx.ledger.schema import order_versions
from fundx.ledger.schema import orders as orders_table

#: subjects per query when the night's suspects are looked up (SQLite's bound-parameter limit is far above)
_CHUNK = 500


def _sources(detail: str) -> set[str]:
    """The evidence's sources (``detail["sources"]``'s keys: the feeds that know the case), if it names any."""
    try:
        doc = json.loads(detail)
    except ValueError:
        return set()
    sources = doc.get("sources") if isinstance(doc, dict) else None
    return set(sources) if isinstance(sources, dict) else set()


def material_change(before: Mapping[str, Any], now: Mapping[str, Any]) -> str | None:
    """Why the evidence of ``now`` changes a closed case of ``before`` (both with months, amount_at_risk and
    detail), or None when it does not: a new source, more months or a larger amount at risk. The reason
    names sources (feed names) and counts, never a value that identifies anyone."""
    reasons = []
    new_sources = sorted(_sources(now["detail"]) - _sources(before["detail"]))
    if new_sources:
        reasons.append("new source " + ", ".join(new_sources))
    if now["months"] is not None and (before["months"] or 0) < now["months"]:
        reasons.append(f"months {before['months'] or 0} -> {now['months']}")
    if now["amount_at_risk"] > float(before["amount_at_risk"]) + 0.005:
        reasons.append(f"amount at risk {float(before['amount_at_risk']):.2f} -> {now['amount_at_risk']:.2f}")
    return "; ".join(reasons) or None


def _changed(before: Mapping[str, Any], now: Mapping[str, Any]) -> str | None:
    """What differs between an open order and the night's finding (any change, material or not), or None."""
    material = material_change(before, now)
    if material:
        return material
    if before["months"] != now["months"] or abs(float(before["amount_at_risk"]) - now["amount_at_risk"]) > 0.005:
        return f"months {before['months']} -> {now['months']}, amount at risk {float(before['amount_at_risk']):.2f} " \
               f"-> {now['amount_at_risk']:.2f}"
    if before["detail"] != now["detail"]:
        return "evidence changed"
    return None


def record(ledger: Ledger, night: date, rows: list[dict[str, Any]], *, due_days, actor: str):
    """The night's checked suspects (orders._suspect_rows) recorded as cases, in one audited transaction:
    new orders, versions of open ones, reopened closed ones (module docstring). Returns orders.Recorded."""
    from matching import lifecycle
    from matching import orders as mo

    now = datetime.now(UTC)
    limits = lifecycle.case_settings().thresholds()  # read once: a night records thousands of cases
    wanted = {(r["rule"], r["subject"]) for r in rows}
    with ledger.audited() as conn:  # read under the audit lock: numbers are never taken twice
        known = _cases(conn, wanted)
        last: dict[str, int] = {}
        for (rule, oid) in conn.execute(sa.select(orders_table.c.rule, orders_table.c.order_id)
                                        .where(orders_table.c.night == night)):
            match = mo._ORDER_ID.match(oid)
            if match:
                last[rule] = max(last.get(rule, 0), int(match.group(3)))
        new = sorted((r for r in rows if (r["rule"], r["subject"]) not in known),
                     key=lambda r: (mo.RULES.index(r["rule"]), r["area"], r["subject"]))
        inserts, versions, updated, reopened = [], [], [], []
        for r in new:
            n = last.get(r["rule"], 0) + 1
            last[r["rule"]] = n
            oid = mo.order_id(night, r["rule"], n)
            inserts.append({
                **r, "area": mo.route(r["area"]), "order_id": oid, "night": night, "district": mo.district_of(r["area"]),
                "due_on": night + timedelta(days=mo._due_days(due_days, r["rule"])), "status": "open",
                "stage": "issued", "referral_due": lifecycle.referral_due(r["rule"], r["amount_at_risk"], limits),
                "created_at": now})
            versions.append(_version(oid, night, r, "issued", None, now))
        for r in rows:
            before = known.get((r["rule"], r["subject"]))
            if before is None or _as_date(before["night"]) >= night or (before["seen"] is not None and before["seen"] >= night):
                continue  # new tonight, or this night (or a later one) was recorded already: a rerun changes nothing
            if before["status"] == "open":
                why = _changed(before, r)
                area = mo.route(r["area"])
                if before["stage"] == "issued" and area != before["area"]:  # nobody works it yet: it follows the person
                    why = "; ".join(w for w in (why, f"routed to {mo.district_of(r['area'])}") if w)
                else:
                    area = before["area"]  # taken: its inspector keeps it (the evidence says where it would go now)
                if why is not None:
                    updated.append((before["order_id"], {**r, "area": area}))
                    versions.append(_version(before["order_id"], night, r, "updated", why, now))
            else:
                why = material_change(before, r)
                if why is not None:
                    reopened.append((before["order_id"], r, why, before))
                    versions.append(_version(before["order_id"], night, r, "reopened", why, now))
        if inserts:
            conn.execute(orders_table.insert(), inserts)
        for oid, r in updated:
            conn.execute(orders_table.update().where(orders_table.c.order_id == oid).values(
                amount_at_risk=r["amount_at_risk"], months=r["months"], detail=r["detail"], area=r["area"],
                district=mo.district_of(r["area"]),
                referral_due=sa.or_(orders_table.c.referral_due,
                                    sa.literal(lifecycle.referral_due(r["rule"], r["amount_at_risk"], limits)))))
        for oid, r, why, before in reopened:
            conn.execute(orders_table.update().where(orders_table.c.order_id == oid).values(
                amount_at_risk=r["amount_at_risk"], months=r["months"], detail=r["detail"], status="open",
                area=mo.route(r["area"]), district=mo.district_of(r["area"]), outcome=None, amount_recovered=None,
                closed_at=None, closed_by=None, stage="issued", assignee=None,
                submitted_by=None, first_reviewer=None, second_reviewer=None, accepted_by=None, accepted_at=None,
                referral_to=None, referral_no=None, escalated_at=None,
                referral_due=lifecycle.referral_due(r["rule"], r["amount_at_risk"], limits),
                due_on=night + timedelta(days=mo._due_days(due_days, r["rule"]))))
            lifecycle.record_event(conn, oid, actor=actor, action="reopen", from_stage=before["stage"],
                                   to_stage="issued", reason=why, at=now)
            ledger.audit(conn, "order.reopened", oid, {
                "night": night.isoformat(), "reason": why, "was": before["outcome"],
                "closed_by": before["closed_by"]}, actor=actor)
        if versions:
            conn.execute(order_versions.insert(), versions)
        per_rule = {rule: sum(1 for r in inserts if r["rule"] == rule) for rule in mo.RULES}
        ledger.audit(conn, "orders.opened", night.isoformat(), {
            "suspects": len(rows), "opened": len(inserts), "existing": len(rows) - len(inserts),
            "updated": len(updated), "reopened": len(reopened),
            "per_rule": {k: v for k, v in per_rule.items() if v},
            "amount_at_risk": round(sum(r["amount_at_risk"] for r in inserts), 2),
        }, actor=actor)
        found = [mo._order(row) for row in _rows(conn, wanted)]
    return mo.Recorded(sorted(found, key=lambda o: o.order_id), opened=len(inserts), updated=len(updated),
                       reopened=len(reopened))


def _version(oid: str, night: date, r: Mapping[str, Any], change: str, reason: str | None, now: datetime) -> dict:
    return {"order_id": oid, "night": night, "amount_at_risk": r["amount_at_risk"], "months": r["months"],
            "detail": r["detail"], "change": change, "reason": reason, "recorded_at": now}


def _rows(conn: sa.Connection, wanted: set[tuple[str, str]]) -> list[Mapping[str, Any]]:
    """The order rows of the (rule, subject) pairs given, the earliest order of each (one case per pair)."""
    out: dict[tuple[str, str], Any] = {}
    subjects = sorted({s for _, s in wanted})
    for i in range(0, len(subjects), _CHUNK):
        query = orders_table.select().where(orders_table.c.subject.in_(subjects[i:i + _CHUNK])) \
            .order_by(orders_table.c.night, orders_table.c.order_id)
        for row in conn.execute(query).mappings():
            key = (row["rule"], row["subject"])
            if key in wanted and key not in out:
                out[key] = row
    return list(out.values())


def _cases(conn: sa.Connection, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(rule, subject) -> its order (as a dict) and ``seen``: the last night a version was recorded for it."""
    rows = {(r["rule"], r["subject"]): dict(r) for r in _rows(conn, wanted)}
    ids = [r["order_id"] for r in rows.values()]
    seen: dict[str, date] = {}
    for i in range(0, len(ids), _CHUNK):
        for oid, last in conn.execute(sa.select(order_versions.c.order_id, sa.func.max(order_versions.c.night))
                                      .where(order_versions.c.order_id.in_(ids[i:i + _CHUNK]))
                                      .group_by(order_versions.c.order_id)):
            seen[oid] = _as_date(last)
    for r in rows.values():
        r["seen"] = seen.get(r["order_id"])
    return rows


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def versions(ledger: Ledger, order_id: str) -> list[dict[str, Any]]:
    """An order's versions, oldest first: night, months, amount, masked evidence, change and reason."""
    with ledger.engine.connect() as conn:
        rows = conn.execute(order_versions.select().where(order_versions.c.order_id == order_id)
                            .order_by(order_versions.c.night)).mappings().all()
    return [{**dict(r), "night": _as_date(r["night"]).isoformat(),
             "recorded_at": r["recorded_at"].isoformat() if r["recorded_at"] else None} for r in rows]
