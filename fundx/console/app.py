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
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import re
import secrets
import stat
from datetime import date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.concurrency import run_in_threadpool

from fundx.console import accounts, nights
from fundx.console.throttle import Throttle
from fundx.core.errors import FundxError
from fundx.core.identity import has_id_like
from fundx.core.timeutil import SHANGHAI
from fundx.exchange import quarantine
from fundx.ledger import Ledger

log = logging.getLogger("fundx.console")

HERE = Path(__file__).parent
COOKIE = "fundx_console"
LOGIN_COOKIE = "fundx_console_login"
LOOPBACK = ("127.0.0.1", "localhost", "::1")

#: pages: only this origin; no script anywhere; no framing; forms post back here only
CSP = ("default-src 'self'; script-src 'none'; object-src 'none'; style-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
#: the Data Docs pages (Great Expectations' HTML with inline styles and scripts): styles yes, scripts never
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; sandbox; frame-ancestors 'none'"
REPORT_TYPES = {".html": "text/html; charset=utf-8", ".png": "image/png", ".json": "application/json"}

_BATCH = re.compile(r"^[A-Za-z0-9._-]{1,220}$")
_RULE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_NIGHT = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FILTER = re.compile(r"^[\w.:\- ]{0,128}$")


class ConsoleSettings(BaseSettings):
    """The console's settings; each field is the environment variable FUNDX_CONSOLE_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="FUNDX_CONSOLE_", extra="ignore")

    secret: SecretStr | None = Field(None, description="key that signs the cookies; default: a random key "
                                                       "kept in FUNDX_HOME/console/cookie.key (0600)")
    session_hours: float = Field(8.0, gt=0, le=168, description="a session ends this long after sign-in")
    idle_minutes: float = Field(30.0, gt=0, le=1440, description="a session ends after this long unused")
    rows_per_page: int = Field(100, ge=10, le=1000, description="quarantined rows on one page")
    login_attempts: int = Field(20, ge=1, le=10_000,
                                description="sign-in attempts one client address may make per login_window_seconds "
                                            "(then 429 with Retry-After); a successful sign-in does not count")
    login_window_seconds: float = Field(900.0, gt=0, le=86_400, description="the window of login_attempts")
    login_addresses: int = Field(10_000, ge=1, le=1_000_000,
                                 description="client addresses the sign-in throttle remembers (bounds its memory; "
                                             "the least recently seen is forgotten first)")


class NotSignedIn(Exception):
    """No live session: GET goes to the sign-in page, anything else is 401."""


class Refused(Exception):
    """A request refused with a status and a message a person can act on (403: CSRF or role)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _cookie_key(home: Path, settings: ConsoleSettings) -> bytes:
    """The key that signs the cookies: FUNDX_CONSOLE_SECRET, else a random one kept under FUNDX_HOME."""
    if settings.secret is not None:
        value = settings.secret.get_secret_value()
        if len(value) < 32:
            from fundx.core.errors import ConfigurationError

            raise ConfigurationError("FUNDX_CONSOLE_SECRET is shorter than 32 characters",
                                     action="set it to a long random value, e.g. python -c 'import secrets; "
                                            "print(secrets.token_urlsafe(48))'")
        return value.encode("utf-8")
    from fundx.core.settings import prepare_home

    path = prepare_home(home) / "console" / "cookie.key"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another console process made it first
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(48))
    return path.read_bytes()


def _templates():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["n"] = lambda v: "" if v is None else f"{int(v):,}"
    env.filters["when"] = lambda v: "" if v is None else v.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    env.filters["pct"] = lambda part, whole: f"{100 * part / whole:.2f} %" if whole else "-"
    env.filters["ranges"] = lambda rows: quarantine.row_ranges(list(rows))
    return env


def create_app(ledger: Ledger | None = None, *, home: Path | None = None, settings: ConsoleSettings | None = None,
               allowed_hosts: list[str] | None = None):
    """The console as an ASGI app over ``ledger`` (default: FUNDX_LEDGER_URL) and ``home`` (FUNDX_HOME)."""
    from itsdangerous import BadSignature, Signer

    from connectors import feed_names
    from fundx.core.settings import get_settings

    home = Path(home or get_settings().home)
    ledger = ledger or Ledger.from_settings()
    settings = settings or ConsoleSettings()
    signer = Signer(_cookie_key(home, settings), salt="fundx.console.cookie")
    env = _templates()
    lifetime = timedelta(hours=settings.session_hours)
    idle = timedelta(minutes=settings.idle_minutes)
    throttle = Throttle(settings.login_attempts, settings.login_window_seconds, settings.login_addresses)

    app = FastAPI(title="fundx console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ledger = ledger
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    # --- helpers ---------------------------------------------------------------------------------

    def page(request: Request, name: str, *, status: int = 200, session: accounts.Session | None = None,
             **context: Any) -> HTMLResponse:
        text = env.get_template(name).render(session=session, path=request.url.path, **context)
        return HTMLResponse(text, status_code=status)

    def unsign(raw: str | None) -> str | None:
        if not raw:
            return None
        try:
            return signer.unsign(raw).decode("utf-8")
        except (BadSignature, UnicodeDecodeError):
            return None

    def current(request: Request) -> accounts.Session:
        found = accounts.session_of(ledger, unsign(request.cookies.get(COOKIE)), idle=idle)
        if found is None:
            raise NotSignedIn()
        return found

    def same_origin(request: Request) -> None:
        """A browser names where a POST comes from; it must be this console (defence beside the CSRF token)."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
            raise Refused(403, "this form was sent from another site")

    async def posted(request: Request, session: accounts.Session) -> Any:
        """The form of a POST whose CSRF token is the session's (403 otherwise)."""
        same_origin(request)
        form = await request.form()
        token = form.get("csrf")
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), session.csrf.encode()):
            raise Refused(403, "the form's security token is missing or wrong: reload the page and send it again")
        return form

    def steward(session: accounts.Session) -> None:
        if not session.may_decide:
            raise Refused(403, f"{session.account} is an auditor: auditors read, stewards decide and unmask")

    def batch_of(batch_id: str) -> quarantine.Quarantined:
        if not _BATCH.match(batch_id):
            raise Refused(404, "there is no such quarantined batch")
        try:
            return quarantine.batch(ledger, batch_id)
        except FundxError:
            raise Refused(404, "there is no such quarantined batch") from None

    def night_arg(value: str | None) -> str | None:
        if not value:
            return None
        try:
            return date.fromisoformat(value).isoformat() if _NIGHT.match(value) else None
        except ValueError:
            return None

    # --- errors ----------------------------------------------------------------------------------

    @app.exception_handler(NotSignedIn)
    async def _not_signed_in(request: Request, _exc: NotSignedIn) -> Response:
        response: Response
        if request.method in ("GET", "HEAD"):
            target = request.url.path if request.url.path.startswith("/") and not request.url.path.startswith("//") else "/"
            response = RedirectResponse("/login" + (f"?next={_quote(target)}" if target != "/" else ""), status_code=303)
        else:
            response = page(request, "error.html", status=401, title="Sign in first",
                            message="Your session has ended or you are not signed in.")
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, _exc: RequestValidationError) -> Response:
        # FastAPI's own answer repeats the input; this one does not
        session = accounts.session_of(ledger, unsign(request.cookies.get(COOKIE)), idle=idle)
        return page(request, "error.html", status=400, session=session, title="Not accepted",
                    message="A number in this address or form is not valid.")

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        session = accounts.session_of(ledger, unsign(request.cookies.get(COOKIE)), idle=idle)
        titles = {403: "Not allowed", 404: "Not found", 400: "Not accepted"}
        return page(request, "error.html", status=exc.status, session=session,
                    title=titles.get(exc.status, "Refused"), message=exc.message)

    # --- signing in and out ----------------------------------------------------------------------

    @app.get("/login")
    def login_form(request: Request, next: str = "/") -> Response:  # noqa: A002
        if accounts.session_of(ledger, unsign(request.cookies.get(COOKIE)), idle=idle) is not None:
            return RedirectResponse(_local(next), status_code=303)
        return _login_page(request, next=_local(next))

    def _login_page(request: Request, *, next: str, status: int = 200, message: str | None = None) -> Response:  # noqa: A002
        token = secrets.token_urlsafe(32)
        response = page(request, "login.html", status=status, title="Sign in", csrf=token, next=next, message=message)
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
            raise Refused(403, "the sign-in form's security token is missing or wrong: open the sign-in page again")
        address = request.client.host if request.client else "unknown"  # the ASGI scope's peer
        wait = throttle.take(address)
        if wait is not None:  # before any password is checked
            log.warning("console: sign-in attempts throttled (too many from one address)")
            minutes = max(1, math.ceil(wait / 60))
            refused = page(request, "error.html", status=429, title="Too many sign-in attempts",
                           message=f"Too many sign-in attempts from your address. Try again in {minutes} "
                                   f"minute{'s' if minutes > 1 else ''}.")
            refused.headers["Retry-After"] = str(math.ceil(wait))
            return refused
        name, password = str(form.get("name") or ""), str(form.get("password") or "")
        account = await run_in_threadpool(accounts.authenticate, ledger, name, password)  # argon2: 0.1-0.3 s
        target = _local(str(form.get("next") or "/"))
        if account is None:
            log.warning("console: a sign-in was refused")
            return _login_page(request, next=target, status=401,
                               message=f"Name or password not accepted. After {accounts.MAX_FAILURES} failures in a "
                                       f"row an account is locked for {int(accounts.LOCKOUT.total_seconds() // 60)} "
                                       "minutes.")
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

    # --- the nights ------------------------------------------------------------------------------

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
            raise Refused(404, "a night is a date, YYYY-MM-DD")
        return _night_page(request, session, chosen, feed)

    def _night_page(request: Request, session: accounts.Session, night: str | None, feed: str | None) -> Response:
        known = feed_names()
        feed = feed if feed in known else None
        table = nights.night_table(ledger, night, known) if night else []
        docs = {f.feed: _report_link(home, night, f.feed) for f in table} if night else {}
        return page(request, "nights.html", session=session, title=f"Night of {night}" if night else "Nights",
                    night=night, table=table, docs=docs, index=_report_link(home, night, "index") if night else None,
                    night_breaches=nights.night_breaches(ledger, night) if night else [],
                    trend=nights.trend(ledger, feed=feed), feeds=known, feed=feed,
                    recent=nights.nights(ledger, 30))

    # --- failures ---------------------------------------------------------------------------------

    @app.get("/failures")
    def failures_list(request: Request, feed: str | None = None, night: str | None = None) -> Response:
        session = current(request)
        known = feed_names()
        feed = feed if feed in known else None
        night = night_arg(night)
        found = quarantine.batches(ledger, feed=feed, night=night)[:500]
        return page(request, "failures.html", session=session, title="Quarantined batches", batches=found,
                    feeds=known, feed=feed, night=night)

    @app.get("/failures/{batch_id}")
    def batch_page(request: Request, batch_id: str, rule: str | None = None,
                         page_no: int = Query(1, alias="page"), decision: int | None = None) -> Response:
        session = current(request)
        return _batch_page(request, session, batch_id, rule=rule, page_no=page_no, decision_id=decision)

    def _batch_page(request: Request, session: accounts.Session, batch_id: str, *, rule: str | None, page_no: int,
                    decision_id: int | None = None, status: int = 200, error: str | None = None,
                    form: dict[str, Any] | None = None) -> Response:
        from contracts import load_contract
        from contracts.rules import contract_rules

        record = batch_of(batch_id)
        rule = rule if rule and _RULE.match(rule) else None
        described = {r.id: r.description for r in contract_rules(load_contract(record.feed)).rules}
        counts = sorted(quarantine.rule_counts(ledger, batch_id=batch_id), key=lambda r: (-r["failed"], r["rule"]))
        decided = quarantine.decisions_of(ledger, batch_id=batch_id)
        state = quarantine.row_status(ledger, batch_id)
        rows, columns, unreadable, total = [], [], None, 0
        try:
            frame = quarantine.read_rows(ledger, batch_id, home=home)
        except FundxError as exc:
            unreadable = f"{exc} — what to do: {exc.action}"
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
        return page(request, "batch.html", status=status, session=session, title=f"Batch {batch_id}", q=record,
                    counts=counts, described=described, decisions=decided, rows=rows, columns=columns,
                    unreadable=unreadable, rule=rule, page_no=page_no, pages=max((total + size - 1) // size, 1),
                    total=total, just=just, stage=_stage(record.feed), error=error, form=form or {},
                    docs=_report_link(home, record.night, record.feed), hidden=quarantine.HIDDEN)

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
        back = {"reason": _echo(reason), "scope": scope, "rule": rule}
        try:
            if action not in ("release", "reject"):
                raise Refused(400, "choose release or reject")
            rows: list[int] | None = None
            if scope == "selected":
                ticked = [str(v) for v in form.getlist("row") if str(v).strip()]
                if not ticked:
                    raise Refused(400, "tick at least one row, or choose all rows failing a rule, or every open row")
                # the CLI's parser; quarantine.decide checks them against the batch (1 to its count)
                rows = quarantine.parse_rows(ticked)
                rule = None
            elif scope == "rule":
                if not rule or not _RULE.match(rule):
                    raise Refused(400, "choose the rule whose failing rows to decide on")
            elif scope == "all":
                rule = None
            else:
                raise Refused(400, "choose which rows to decide on")
            made = await run_in_threadpool(partial(
                quarantine.decide, ledger, record.batch_id, str(action), reason=reason, actor=session.account,
                rows=rows, rule=rule, home=home))
        except (FundxError, Refused) as exc:
            message = exc.message if isinstance(exc, Refused) else f"{exc} — {exc.action}"
            return await run_in_threadpool(partial(_batch_page, request, session, batch_id, rule=None, page_no=1,
                                                   status=400, error=message, form=back))
        log.info("console: %s %s %d rows of %s (decision %d)", session.account,
                 "released" if made.action == "release" else "rejected", len(made.rows), batch_id, made.id)
        return RedirectResponse(f"/failures/{batch_id}?decision={made.id}", status_code=303)

    # --- unmasking one row ------------------------------------------------------------------------

    def _row(record: quarantine.Quarantined, row: int) -> tuple[Any, list[str]]:
        from contracts import load_contract

        frame = quarantine.read_rows(ledger, record.batch_id, home=home)
        found = frame[frame[quarantine.ROW].astype(int) == row]
        if found.empty:
            raise Refused(404, f"batch {record.batch_id} has no row {row}")
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
        return page(request, "unmask.html", session=session, title=f"Unmask row {row}", q=record, row=row,
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
            return page(request, "unmask.html", status=400, session=session, title=f"Unmask row {row}", q=record,
                        row=row, masked=[(c, shown[c]) for c in columns], reason=_echo(reason),
                        rules=[x for x in shown[quarantine.RULES].split(";") if x], error=f"{exc} — {exc.action}")
        if not columns:
            raise Refused(400, f"{record.feed} has no identity-number column to unmask")
        ledger.log_event("failures.unmask", batch_id, {"row": row, "reason": text, "columns": columns},
                         actor=session.account)
        log.info("console: %s unmasked row %d of %s (audited)", session.account, row, batch_id)
        values = [(c, "" if found.iloc[0][c] is None else str(found.iloc[0][c])) for c in columns]
        return page(request, "unmasked.html", session=session, title=f"Row {row}, unmasked", q=record, row=row,
                    values=values, reason=text)

    # --- the audit trail --------------------------------------------------------------------------

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
            if not _FILTER.match(filters[key]) or has_id_like(filters[key]):
                filters[key], notice = "", "A filter was ignored: letters, digits, '.', '_', ':' and '-' only, " \
                                           "and never an identity number."
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
        return page(request, "audit.html", session=session, title="Audit trail", entries=entries, verdict=verdict,
                    filters=filters, total=total, page_no=page_no, pages=max((total + size - 1) // size, 1),
                    notice=notice, actions=actions)

    # --- the Data Docs, read only -----------------------------------------------------------------

    @app.get("/reports/{path:path}")
    def report(request: Request, path: str) -> Response:
        current(request)
        found = _report_file(home / "reports", path)
        if found is None:
            raise Refused(404, "there is no such report")
        response = Response(found.read_bytes(), media_type=REPORT_TYPES[found.suffix])
        response.headers["Content-Security-Policy"] = REPORT_CSP
        return response

    return _Hardened(app, allowed_hosts=allowed_hosts)


def _echo(reason: str) -> str:
    """A refused reason, to fill the form again: not if it holds something shaped like an identity number."""
    return "" if has_id_like(reason) else reason


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")


def _local(target: str) -> str:
    """A redirect target that stays on this console: a path, never another host."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target \
            or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in target):
        return "/"  # browsers drop tabs and newlines: "/\t/evil.example" would become "//evil.example"
    return target


def _stage(feed: str) -> str:
    from connectors import load_feed

    try:
        return load_feed(feed).stage
    except FundxError:
        return "its stage"


def _report_link(home: Path, night: str | None, name: str) -> str | None:
    """The console's URL of a night's Data Docs page, if the page exists."""
    if not night or _report_file(home / "reports", f"{night}/{name}.html") is None:
        return None
    return f"/reports/{night}/{name}.html"


def _report_file(root: Path, path: str) -> Path | None:
    """A regular file of the reports folder named by ``path``, or None: no '..', no absolute path, no
    backslash or NUL, no hidden name, no link out of the folder, only pages, images and JSON reports."""
    if not path or "\\" in path or "\x00" in path or path.startswith("/") or ":" in path:
        return None
    parts = path.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return None
    base = root.resolve()
    candidate = base.joinpath(*parts)
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_relative_to(base) or real.suffix not in REPORT_TYPES:
        return None
    try:
        mode = real.stat().st_mode
    except OSError:
        return None
    return real if stat.S_ISREG(mode) else None


class _Hardened:
    """The ASGI app wrapped: security headers on every response, a Host check, and unexpected errors
    answered with a plain 500 and logged by type and line only (never re-raised into the server's log)."""

    def __init__(self, app: Any, *, allowed_hosts: list[str] | None):
        self.app = app
        self.allowed = None if allowed_hosts is None or "*" in allowed_hosts else {h.lower() for h in allowed_hosts}

    @property
    def state(self) -> Any:
        return self.app.state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.allowed is not None and _host(scope) not in self.allowed:
            await _plain(send, 400, b"unknown host")
            return
        started = False
        static = scope.get("path", "").startswith("/static/")

        async def guarded(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"server"]
                names = {k.lower() for k, _ in headers}
                extra = [
                    (b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"), (b"cross-origin-opener-policy", b"same-origin"),
                    (b"cross-origin-resource-policy", b"same-origin"),
                    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
                ]
                if b"content-security-policy" not in names:
                    extra.append((b"content-security-policy", CSP.encode()))
                if not static:
                    extra.append((b"cache-control", b"no-store"))
                    extra.append((b"pragma", b"no-cache"))
                headers += [(k, v) for k, v in extra if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, guarded)
        except Exception as exc:  # noqa: BLE001 - logged by type and line only: a message could carry a value
            tb = exc.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            where = f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb is not None else "?"
            log.error("console: unexpected %s at %s", type(exc).__name__, where)
            if not started:
                await _plain(send, 500, b"the console met an unexpected error; it is logged by type, without values")


def _host(scope: dict) -> str:
    for key, value in scope.get("headers", []):
        if key == b"host":
            text = value.decode("latin-1").lower()
            if text.startswith("["):
                return text[1:text.index("]")] if "]" in text else text
            return text.rsplit(":", 1)[0] if text.count(":") == 1 else text
    return ""


async def _plain(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store"),
        (b"x-frame-options", b"DENY"), (b"content-security-policy", CSP.encode()),
        (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": body})


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
