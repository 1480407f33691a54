"""The stewards' console: FastAPI, server-rendered Jinja2 pages (autoescaped), no script at all.

Access: every page but the sign-in page needs a session (:mod:`fundx.console.accounts`): a GET
without one is sent to the sign-in page, anything else gets 401. Every POST carries the session's
CSRF token (the sign-in form a signed one of its own) and is refused with 403 without it, or when
the browser says it comes from another origin; deciding and unmasking need the ``steward`` role
(403 for an auditor). The session cookie is signed, HttpOnly, SameSite=Strict, Secure over TLS,
and expires with the session. Sign-in attempts are throttled per client address (the ASGI scope's
peer; :mod:`fundx.console.throttle`): past FUNDX_CONSOLE_LOGIN_ATTEMPTS failures in
FUNDX_CONSOLE_LOGIN_WINDOW_SECONDS the form answers 429 with a Retry-After, before any password is
checked; each account also locks itself after five failures (:func:`fundx.console.accounts.authenticate`).

Personal data: rows are shown as :func:`fundx.exchange.quarantine.masked_view` makes them; a whole identity
number only in the response to an unmask form (POST: the reason is audited first, the page is
no-store). URLs carry batch ids, row numbers, feed names, nights and rule ids only. Logs carry no
request lines (uvicorn's access log is off) and no values: an unexpected error is logged by its
type and line.

Languages: every page in Chinese (zh_CN) unless the switch in its header chose English (:mod:`fundx.console.i18n`).

Where it is: this module builds the app (:func:`create_app`: the error pages, then each page's routes)
and serves it (:func:`serve`); the pages are fundx/console/pages/ (sign-in, the language switch, nights,
failures, decisions, unmask, audit, reports, cases), what they share is :mod:`fundx.console.context`, and the
headers, refusals and input rules are :mod:`fundx.console.security`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from fundx.console import accounts
from fundx.console.context import COOKIE, HERE, ConsoleContext
from fundx.console.i18n import L
from fundx.console.pages import audit, cases, decisions, failures, language, nights, reports, signin, unmask
from fundx.console.security import Hardened, NotSignedIn, Refused
from fundx.console.settings import ConsoleSettings
from fundx.ledger import Ledger

log = logging.getLogger("fundx.console")

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def create_app(ledger: Ledger | None = None, *, home: Path | None = None, settings: ConsoleSettings | None = None,
               allowed_hosts: list[str] | None = None):
    """The console as an ASGI app over ``ledger`` (default: FUNDX_LEDGER_URL) and ``home`` (FUNDX_HOME)."""
    from fundx.core.settings import get_settings

    home = Path(home or get_settings().home)
    ledger = ledger or Ledger.from_settings()
    settings = settings or ConsoleSettings()
    console = ConsoleContext(ledger, home, settings)
    page, unsign, idle = console.page, console.unsign, console.idle

    app = FastAPI(title="fundx console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ledger = ledger
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    # --- errors ----------------------------------------------------------------------------------

    @app.exception_handler(NotSignedIn)
    async def _not_signed_in(request: Request, _exc: NotSignedIn) -> Response:
        response: Response
        if request.method in ("GET", "HEAD"):
            target = request.url.path if request.url.path.startswith("/") and not request.url.path.startswith("//") else "/"
            response = RedirectResponse("/login" + (f"?next={_quote(target)}" if target != "/" else ""), status_code=303)
        else:
            response = page(request, "error.html", status=401, title=L("Sign in first"),
                            message=L("Your session has ended or you are not signed in."))
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, _exc: RequestValidationError) -> Response:
        # FastAPI's own answer repeats the input; this one does not
        session = accounts.session_of(ledger, unsign(request.cookies.get(COOKIE)), idle=idle)
        return page(request, "error.html", status=400, session=session, title=L("Not accepted"),
                    message=L("A number in this address or form is not valid."))

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        session = accounts.session_of(ledger, unsign(request.cookies.get(COOKIE)), idle=idle)
        titles = {403: L("Not allowed"), 404: L("Not found"), 400: L("Not accepted"), 409: L("Not now")}
        return page(request, "error.html", status=exc.status, session=session,
                    title=titles.get(exc.status, L("Refused")), message=exc.message)

    # --- the pages, in this order: FastAPI matches a request against the routes as they were added --------

    for pages in (signin, language, nights, failures, decisions, unmask, audit, reports, cases):
        pages.add_routes(app, console)

    return Hardened(app, allowed_hosts=allowed_hosts)


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")


# --- serving ---------------------------------------------------------------------------------------


def check_bind(host: str, tls_cert: Path | None, tls_key: Path | None) -> None:
    """Loopback, or TLS: passwords and session cookies never cross a network in clear."""
    from fundx.core.errors import ConfigurationError

    if (tls_cert is None) != (tls_key is None):
        raise ConfigurationError("give both --tls-cert and --tls-key, or neither")
    if host not in LOOPBACK and tls_cert is None:
        raise ConfigurationError(f"--host {host} without TLS would send passwords and session cookies in clear",
                                 action="keep the default 127.0.0.1 (and a TLS proxy in front), or give "
                                        "--tls-cert and --tls-key")


def serve(host: str = "127.0.0.1", port: int = 8765, *, tls_cert: Path | None = None,
          tls_key: Path | None = None) -> None:
    """Run the console with uvicorn until interrupted: no access log, no server header."""
    import uvicorn

    from fundx.core.settings import private_umask

    private_umask()  # the cookie key, the ledger's -wal/-shm: private whatever the shell's umask
    check_bind(host, tls_cert, tls_key)
    if not log.handlers:  # sign-ins, decisions and unmaskings by account, batch and row; never a value
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    ledger = Ledger.from_settings()  # makes FUNDX_HOME 0700
    hosts = ["*"] if host in ("0.0.0.0", "::") else sorted({*LOOPBACK, host.lower()})  # noqa: S104 - a comparison
    app = create_app(ledger, allowed_hosts=hosts)
    config = uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning", server_header=False,
                            proxy_headers=False, ssl_certfile=str(tls_cert) if tls_cert else None,
                            ssl_keyfile=str(tls_key) if tls_key else None)
    uvicorn.Server(config).run()
