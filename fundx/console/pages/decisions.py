"""Deciding on a quarantined batch's rows (stewards only): release or reject the ticked rows, the open rows
failing one rule, or every open row, with a reason, through :func:`fundx.exchange.quarantine.decide`."""

from __future__ import annotations

import logging
from functools import partial

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from fundx.console.context import ConsoleContext
from fundx.console.i18n import L
from fundx.console.pages.failures import render_batch
from fundx.console.security import RULE, Refused, echo_reason
from fundx.core.errors import FundxError
from fundx.exchange import quarantine

log = logging.getLogger("fundx.console")


def add_routes(app: FastAPI, console: ConsoleContext) -> None:
    """POST /failures/{batch_id}/decide."""
    ledger, home = console.ledger, console.home
    current, posted, steward, batch_of = console.current, console.posted, console.steward, console.batch_of

    @app.post("/failures/{batch_id}/decide")
    async def decide(request: Request, batch_id: str) -> Response:
        session = current(request)
        form = await posted(request, session)
        steward(session)
        record = batch_of(batch_id)
        action = form.get("action")
        scope = form.get("scope") or "selected"
        reason = str(form.get("reason") or "")
        rule = str(form.get("rule") or "") or None
        back = {"reason": echo_reason(reason), "scope": scope, "rule": rule}
        try:
            if action not in ("release", "reject"):
                raise Refused(400, L("choose release or reject"))
            rows: list[int] | None = None
            if scope == "selected":
                ticked = [str(v) for v in form.getlist("row") if str(v).strip()]
                if not ticked:
                    raise Refused(400, L("tick at least one row, or choose all rows failing a rule, or every open row"))
                # the CLI's parser; quarantine.decide checks them against the batch (1 to its count)
                rows = quarantine.parse_rows(ticked)
                rule = None
            elif scope == "rule":
                if not rule or not RULE.match(rule):
                    raise Refused(400, L("choose the rule whose failing rows to decide on"))
            elif scope == "all":
                rule = None
            else:
                raise Refused(400, L("choose which rows to decide on"))
            made = await run_in_threadpool(partial(
                quarantine.decide, ledger, record.batch_id, str(action), reason=reason, actor=session.account,
                rows=rows, rule=rule, home=home))
        except (FundxError, Refused) as exc:
            message = console.words(request)(exc.message) if isinstance(exc, Refused) else f"{exc} — {exc.action}"
            return await run_in_threadpool(partial(render_batch, console, request, session, batch_id, rule=None,
                                                   page_no=1, status=400, error=message, form=back))
        log.info("console: %s %s %d rows of %s (decision %d)", session.account,
                 "released" if made.action == "release" else "rejected", len(made.rows), batch_id, made.id)
        return RedirectResponse(f"/failures/{batch_id}?decision={made.id}", status_code=303)
