"""The nights page (also the home page): per feed, the night's figures, Data Docs and SLA breaches, and
the trend over the last 30 nights (figures from :mod:`fundx.console.nights`)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from fundx.console import accounts, nights
from fundx.console.context import ConsoleContext
from fundx.console.i18n import L
from fundx.console.pages.reports import report_link
from fundx.console.security import Refused


def add_routes(app: FastAPI, console: ConsoleContext) -> None:
    """GET / (the last night) and GET /nights/{night}."""
    from connectors import feed_names

    ledger, home = console.ledger, console.home
    page, current, night_arg = console.page, console.current, console.night_arg

    @app.get("/")
    def home_page(request: Request, feed: str | None = None) -> Response:
        session = current(request)
        last = nights.nights(ledger, 1)
        return _night_page(request, session, last[0] if last else None, feed)

    @app.get("/nights/{night}")
    def night_page(request: Request, night: str, feed: str | None = None) -> Response:
        session = current(request)
        chosen = night_arg(night)
        if chosen is None:
            raise Refused(404, L("a night is a date, YYYY-MM-DD"))
        return _night_page(request, session, chosen, feed)

    def _night_page(request: Request, session: accounts.Session, night: str | None, feed: str | None) -> Response:
        known = feed_names()
        feed = feed if feed in known else None
        table = nights.night_table(ledger, night, known) if night else []
        docs = {f.feed: report_link(home, night, f.feed) for f in table} if night else {}
        return page(request, "nights.html", session=session, title=L("Night of %(night)s", night=night) if night else L("Nights"),
                    night=night, table=table, docs=docs, index=report_link(home, night, "index") if night else None,
                    night_breaches=nights.night_breaches(ledger, night) if night else [],
                    trend=nights.trend(ledger, feed=feed), feeds=known, feed=feed,
                    recent=nights.nights(ledger, 30))
