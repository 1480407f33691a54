"""Unmasking one quarantined row's identity numbers (stewards only): a form asks for the reason, which is
audited before the numbers are shown, once, in the response to that POST (never in a URL, never stored)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fundx.console.context import ConsoleContext
from fundx.console.i18n import L
from fundx.console.security import Refused, echo_reason
from fundx.core.errors import FundxError
from fundx.exchange import quarantine

log = logging.getLogger("fundx.console")


def add_routes(app: FastAPI, console: ConsoleContext) -> None:
    """GET and POST /failures/{batch_id}/rows/{row}/unmask."""
    ledger, home = console.ledger, console.home
    page, current, posted, steward, batch_of = (console.page, console.current, console.posted, console.steward,
                                                console.batch_of)

    def _row(record: quarantine.Quarantined, row: int) -> tuple[Any, list[str]]:
        from contracts import load_contract

        frame = quarantine.read_rows(ledger, record.batch_id, home=home)
        found = frame[frame[quarantine.ROW].astype(int) == row]
        if found.empty:
            raise Refused(404, L("batch %(batch)s has no row %(row)s", batch=record.batch_id, row=row))
        columns = [c.name for c in load_contract(record.feed).columns
                   if c.pii == "identity_number" and c.name in frame.columns]
        return found, columns

    @app.get("/failures/{batch_id}/rows/{row}/unmask")
    def unmask_form(request: Request, batch_id: str, row: int) -> Response:
        session = current(request)
        steward(session)
        record = batch_of(batch_id)
        found, columns = _row(record, row)
        shown = quarantine.masked_view(found, record.feed).iloc[0]
        return page(request, "unmask.html", session=session, title=L("Unmask row %(row)s", row=row), q=record, row=row,
                    masked=[(c, shown[c]) for c in columns], rules=[x for x in shown[quarantine.RULES].split(";") if x],
                    error=None, reason="")

    @app.post("/failures/{batch_id}/rows/{row}/unmask")
    async def unmask(request: Request, batch_id: str, row: int) -> Response:
        session = current(request)
        form = await posted(request, session)
        steward(session)
        record = batch_of(batch_id)
        found, columns = await run_in_threadpool(_row, record, row)
        shown = quarantine.masked_view(found, record.feed).iloc[0]
        reason = str(form.get("reason") or "")
        try:
            text = quarantine.check_reason(reason)
        except FundxError as exc:
            return page(request, "unmask.html", status=400, session=session, title=L("Unmask row %(row)s", row=row), q=record,
                        row=row, masked=[(c, shown[c]) for c in columns], reason=echo_reason(reason),
                        rules=[x for x in shown[quarantine.RULES].split(";") if x], error=f"{exc} — {exc.action}")
        if not columns:
            raise Refused(400, L("%(feed)s has no identity-number column to unmask", feed=record.feed))
        ledger.log_event("failures.unmask", batch_id, {"row": row, "reason": text, "columns": columns},
                         actor=session.account)
        log.info("console: %s unmasked row %d of %s (audited)", session.account, row, batch_id)
        values = [(c, "" if found.iloc[0][c] is None else str(found.iloc[0][c])) for c in columns]
        return page(request, "unmasked.html", session=session, title=L("Row %(row)s, unmasked", row=row), q=record, row=row,
                    values=values, reason=text)
