"""The language switch in every page's header: GET /language/<lang>?next=<path> keeps the choice in a cookie
(:mod:`fundx.console.i18n`) and goes back to the page it was chosen on. No session is needed (the sign-in page has
the switch too); it changes nothing but the language the pages are shown in."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from fundx.console import i18n
from fundx.console.context import ConsoleContext
from fundx.console.i18n import L
from fundx.console.security import Refused, local_target

#: a year: the choice outlives sessions
KEEP_SECONDS = 365 * 24 * 3600


def add_routes(app: FastAPI, console: ConsoleContext) -> None:
    """GET /language/{lang}."""

    @app.get("/language/{lang}")
    def choose(request: Request, lang: str, next: str = "/") -> Response:  # noqa: A002
        if lang not in i18n.LANGUAGES:
            raise Refused(404, L("there is no such language: %(known)s", known=", ".join(i18n.LANGUAGES)))
        response = RedirectResponse(local_target(next), status_code=303)
        response.set_cookie(i18n.COOKIE, lang, max_age=KEEP_SECONDS, path="/", httponly=True, samesite="lax",
                            secure=request.url.scheme == "https")
        return response
