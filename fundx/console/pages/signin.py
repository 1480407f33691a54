"""Signing in and out: the sign-in form (its own signed CSRF token), the per-address throttle and the
account lock before and after the password is checked, the session cookie, and signing out."""

from __future__ import annotations

import hmac
import logging
import math
import secrets

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from fundx.console import accounts
from fundx.console.context import COOKIE, LOGIN_COOKIE, ConsoleContext
from fundx.console.i18n import L, Lazy
from fundx.console.security import Refused, local_target

log = logging.getLogger("fundx.console")


def add_routes(app: FastAPI, console: ConsoleContext) -> None:
    """GET and POST /login, POST /logout."""
    ledger, signer, throttle, idle, lifetime = (console.ledger, console.signer, console.throttle, console.idle,
                                                console.lifetime)
    page, unsign, current, same_origin, posted = (console.page, console.unsign, console.current,
                                                  console.same_origin, console.posted)

    @app.get("/login")
    def login_form(request: Request, next: str = "/") -> Response:  # noqa: A002
        if accounts.session_of(ledger, unsign(request.cookies.get(COOKIE)), idle=idle) is not None:
            return RedirectResponse(local_target(next), status_code=303)
        return _login_page(request, next=local_target(next))

    def _login_page(request: Request, *, next: str, status: int = 200, message: Lazy | None = None) -> Response:  # noqa: A002
        token = secrets.token_urlsafe(32)
        response = page(request, "login.html", status=status, title=L("Sign in"), csrf=token, next=next, message=message)
        response.set_cookie(LOGIN_COOKIE, signer.sign(token).decode(), max_age=900, path="/login", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    @app.post("/login")
    async def login(request: Request) -> Response:
        same_origin(request)
        form = await request.form()
        expected = unsign(request.cookies.get(LOGIN_COOKIE))
        token = form.get("csrf")
        if not expected or not isinstance(token, str) or not hmac.compare_digest(token.encode(), expected.encode()):
            raise Refused(403, L("the sign-in form's security token is missing or wrong: open the sign-in page again"))
        address = request.client.host if request.client else "unknown"  # the ASGI scope's peer
        wait = throttle.take(address)
        if wait is not None:  # before any password is checked
            log.warning("console: sign-in attempts throttled (too many from one address)")
            minutes = max(1, math.ceil(wait / 60))
            refused = page(request, "error.html", status=429, title=L("Too many sign-in attempts"),
                           message=L("Too many sign-in attempts from your address. Try again in %(minutes)s "
                                     "minute(s).", minutes=minutes))
            refused.headers["Retry-After"] = str(math.ceil(wait))
            return refused
        name, password = str(form.get("name") or ""), str(form.get("password") or "")
        account = await run_in_threadpool(accounts.authenticate, ledger, name, password)  # argon2: 0.1-0.3 s
        target = local_target(str(form.get("next") or "/"))
        if account is None:
            log.warning("console: a sign-in was refused")
            return _login_page(request, next=target, status=401,
                               message=L("Name or password not accepted. After %(failures)s failures in a row an "
                                         "account is locked for %(minutes)s minutes.", failures=accounts.MAX_FAILURES,
                                         minutes=int(accounts.LOCKOUT.total_seconds() // 60)))
        throttle.give_back(address)  # only failures use up an address's attempts
        token, _session = accounts.open_session(ledger, account, lifetime=lifetime)
        log.info("console: %s signed in (%s)", account.name, account.role)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, signer.sign(token).decode(), max_age=int(lifetime.total_seconds()), path="/",
                            httponly=True, samesite="strict", secure=request.url.scheme == "https")
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        session = current(request)
        await posted(request, session)
        accounts.close_session(ledger, unsign(request.cookies.get(COOKIE)))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response
