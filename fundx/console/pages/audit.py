"""The audit trail page: the ledger's audit entries, newest first, filtered by action, subject, actor and
nights, with the hash chain's verdict."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from fundx.console.context import ConsoleContext
from fundx.console.i18n import L
from fundx.console.security import FILTER
from fundx.core.identity import has_id_like
from fundx.core.timeutil import SHANGHAI


def add_routes(app: FastAPI, console: ConsoleContext) -> None:
    """GET /audit."""
    ledger = console.ledger
    page, current, night_arg = console.page, console.current, console.night_arg

    @app.get("/audit")
    def audit_page(request: Request, action: str = "", subject: str = "", actor: str = "",
                         since: str = "", until: str = "", page_no: int = Query(1, alias="page")) -> Response:
        import sqlalchemy as sa

        from fundx.ledger.schema import audit

        session = current(request)
        filters = {"action": action.strip(), "subject": subject.strip(), "actor": actor.strip(),
                   "since": night_arg(since.strip()) or "", "until": night_arg(until.strip()) or ""}
        notice = None
        for key in ("action", "subject", "actor"):
            if not FILTER.match(filters[key]) or has_id_like(filters[key]):
                filters[key], notice = "", L("A filter was ignored: letters, digits, '.', '_', ':' and '-' only, "
                                             "and never an identity number.")
        query = audit.select()
        if filters["action"]:
            query = query.where(audit.c.action.startswith(filters["action"], autoescape=True))
        if filters["subject"]:
            query = query.where(audit.c.subject.contains(filters["subject"], autoescape=True))
        if filters["actor"]:
            query = query.where(audit.c.actor == filters["actor"])
        if filters["since"]:
            query = query.where(audit.c.at >= datetime.combine(date.fromisoformat(filters["since"]), time.min,
                                                               tzinfo=SHANGHAI))
        if filters["until"]:
            query = query.where(audit.c.at < datetime.combine(date.fromisoformat(filters["until"]) + timedelta(days=1),
                                                              time.min, tzinfo=SHANGHAI))
        size = 100
        page_no = max(page_no, 1)
        with ledger.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
            entries = [dict(r) for r in conn.execute(
                query.order_by(audit.c.seq.desc()).limit(size).offset((page_no - 1) * size)).mappings()]
            actions = sorted({a.split(".")[0] for a in conn.execute(sa.select(audit.c.action).distinct()).scalars()})
        verdict = ledger.verify_audit()
        return page(request, "audit.html", session=session, title=L("Audit trail"), entries=entries, verdict=verdict,
                    filters=filters, total=total, page_no=page_no, pages=max((total + size - 1) // size, 1),
                    notice=notice, actions=actions)
