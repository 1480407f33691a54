"""The quarantine's pages: the quarantined batches, and one batch — its failures per rule, its decisions,
and its rows as :func:`fundx.exchange.quarantine.masked_view` shows them, a page at a time (opening it is
audited). :func:`render_batch` also answers a refused decision (:mod:`fundx.console.pages.decisions`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from fundx.console import accounts
from fundx.console.context import ConsoleContext
from fundx.console.i18n import L, Lazy
from fundx.console.pages.reports import report_link
from fundx.console.security import RULE
from fundx.core.errors import FundxError
from fundx.exchange import quarantine


def add_routes(app: FastAPI, console: ConsoleContext) -> None:
    """GET /failures and GET /failures/{batch_id}."""
    from connectors import feed_names

    ledger = console.ledger
    page, current, night_arg = console.page, console.current, console.night_arg

    @app.get("/failures")
    def failures_list(request: Request, feed: str | None = None, night: str | None = None) -> Response:
        session = current(request)
        known = feed_names()
        feed = feed if feed in known else None
        night = night_arg(night)
        found = quarantine.batches(ledger, feed=feed, night=night)[:500]
        return page(request, "failures.html", session=session, title=L("Quarantined batches"), batches=found,
                    feeds=known, feed=feed, night=night)

    @app.get("/failures/{batch_id}")
    def batch_page(request: Request, batch_id: str, rule: str | None = None,
                         page_no: int = Query(1, alias="page"), decision: int | None = None) -> Response:
        session = current(request)
        return render_batch(console, request, session, batch_id, rule=rule, page_no=page_no, decision_id=decision)


def render_batch(console: ConsoleContext, request: Request, session: accounts.Session, batch_id: str, *,
                 rule: str | None, page_no: int, decision_id: int | None = None, status: int = 200,
                 error: str | None = None, form: dict[str, Any] | None = None) -> Response:
    """A quarantined batch's page: failures per rule, decisions, and one page of its masked rows (audited);
    a refused decision comes back here with ``status`` 400, its ``error`` and what the form held."""
    from contracts import load_contract
    from contracts.rules import contract_rules

    ledger, home, settings, page, batch_of = (console.ledger, console.home, console.settings, console.page,
                                              console.batch_of)
    record = batch_of(batch_id)
    rule = rule if rule and RULE.match(rule) else None
    described = {r.id: r.description for r in contract_rules(load_contract(record.feed)).rules}
    counts = sorted(quarantine.rule_counts(ledger, batch_id=batch_id), key=lambda r: (-r["failed"], r["rule"]))
    decided = quarantine.decisions_of(ledger, batch_id=batch_id)
    state = quarantine.row_status(ledger, batch_id)
    rows, columns, unreadable, total = [], [], None, 0
    try:
        frame = quarantine.read_rows(ledger, batch_id, home=home)
    except FundxError as exc:
        unreadable = L("%(problem)s — what to do: %(action)s", problem=str(exc), action=exc.action)
    else:
        if rule:
            frame = frame[frame[quarantine.RULES].fillna("").str.split(";").map(lambda ids: rule in ids)]
        total = len(frame)
        size = settings.rows_per_page
        page_no = min(max(page_no, 1), max((total + size - 1) // size, 1))
        chunk = frame.iloc[(page_no - 1) * size: page_no * size]
        shown = quarantine.masked_view(chunk, record.feed)
        columns = [c for c in shown.columns if c not in (quarantine.ROW, quarantine.RULES)]
        for r in shown.to_dict(orient="records"):
            number = int(r[quarantine.ROW])
            rows.append({"row": number, "state": state.get(number, "open"),
                         "rules": [x for x in r[quarantine.RULES].split(";") if x],
                         "cells": [r[c] for c in columns]})
        ledger.log_event("failures.show", batch_id, {"rows_shown": len(rows), "rule": rule, "page": page_no,
                                                     "via": "console"}, actor=session.account)
    just = next((d for d in decided if d.id == decision_id), None) if decision_id else None
    size = settings.rows_per_page
    return page(request, "batch.html", status=status, session=session, title=L("Batch %(batch)s", batch=batch_id), q=record,
                counts=counts, described=described, decisions=decided, rows=rows, columns=columns,
                unreadable=unreadable, rule=rule, page_no=page_no, pages=max((total + size - 1) // size, 1),
                total=total, just=just, stage=_stage(record.feed), error=error, form=form or {},
                docs=report_link(home, record.night, record.feed), hidden=quarantine.HIDDEN)


def _stage(feed: str) -> str | Lazy:
    from connectors import load_feed

    try:
        return load_feed(feed).stage
    except FundxError:
        return L("its stage")
