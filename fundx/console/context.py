"""What every page of one console app shares: its ledger, home, settings and templates, the signed
cookies, and the checks a request passes (a live session, a POST's CSRF token and origin, the steward
role, a batch id, a night). :func:`fundx.console.app.create_app` makes one and hands it to each page."""

from __future__ import annotations

import hmac
import os
import secrets
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse

from fundx.console import accounts, i18n
from fundx.console.i18n import L
from fundx.console.security import BATCH, NIGHT, NotSignedIn, Refused, local_target
from fundx.console.settings import ConsoleSettings
from fundx.console.throttle import Throttle
from fundx.core.errors import FundxError
from fundx.core.timeutil import SHANGHAI
from fundx.exchange import quarantine
from fundx.ledger import Ledger

HERE = Path(__file__).parent
COOKIE = "fundx_console"
LOGIN_COOKIE = "fundx_console_login"


def cookie_key(home: Path, settings: ConsoleSettings) -> bytes:
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


def templates(lang: str = i18n.DEFAULT):
    """The pages' Jinja2 environment in ``lang``: autoescaped, strict, with gettext (``_()``) from its catalogue."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.i18n"])
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(i18n.translations(lang), newstyle=True)  # type: ignore[attr-defined]
    env.globals["lang"] = lang
    env.globals["html_lang"] = i18n.HTML_LANG[lang]
    env.globals["languages"] = i18n.LANGUAGES
    env.globals["roles"] = i18n.ROLES
    env.globals["row_states"] = i18n.ROW_STATES
    env.globals["sla_states"] = i18n.SLA_STATES
    env.filters["n"] = lambda v: "" if v is None else f"{int(v):,}"
    env.filters["when"] = lambda v: "" if v is None else v.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    env.filters["pct"] = lambda part, whole: f"{100 * part / whole:.2f} %" if whole else "-"
    env.filters["ranges"] = lambda rows: quarantine.row_ranges(list(rows))
    env.filters["money"] = lambda v: "" if v is None else f"{float(v):,.2f}"
    env.filters["day"] = lambda v: "" if v is None else v.isoformat()
    return env


class ConsoleContext:
    """One console app's state, and the helpers its pages share."""

    def __init__(self, ledger: Ledger, home: Path, settings: ConsoleSettings) -> None:
        from itsdangerous import Signer

        self.ledger = ledger
        self.home = home
        self.settings = settings
        self.signer = Signer(cookie_key(home, settings), salt="fundx.console.cookie")
        self.envs = {lang: templates(lang) for lang in i18n.LANGUAGES}
        self.lifetime = timedelta(hours=settings.session_hours)
        self.idle = timedelta(minutes=settings.idle_minutes)
        self.throttle = Throttle(settings.login_attempts, settings.login_window_seconds, settings.login_addresses)

    def page(self, request: Request, name: str, *, status: int = 200, session: accounts.Session | None = None,
             **context: Any) -> HTMLResponse:
        """The template ``name`` (autoescaped) in the request's language, with the session, the request's path
        and where the language switch comes back to; :class:`fundx.console.i18n.Lazy` values (titles,
        messages) are translated."""
        words = self.words(request)
        context = {k: words(v) if isinstance(v, i18n.Lazy) else v for k, v in context.items()}
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "") \
            if request.method in ("GET", "HEAD") else "/"
        text = self.envs[words.lang].get_template(name).render(session=session, path=request.url.path,
                                                               here=local_target(here), **context)
        return HTMLResponse(text, status_code=status)

    def words(self, request: Request) -> i18n.Words:
        """The request's language (its cookie, else zh_CN), to translate Python-side messages."""
        return i18n.Words(i18n.language_of(request.cookies.get(i18n.COOKIE)))

    def unsign(self, raw: str | None) -> str | None:
        """A signed cookie's value; None when it is missing, forged or not text."""
        from itsdangerous import BadSignature

        if not raw:
            return None
        try:
            return self.signer.unsign(raw).decode("utf-8")
        except (BadSignature, UnicodeDecodeError):
            return None

    def current(self, request: Request) -> accounts.Session:
        """The request's live session (:class:`NotSignedIn` without one)."""
        found = accounts.session_of(self.ledger, self.unsign(request.cookies.get(COOKIE)), idle=self.idle)
        if found is None:
            raise NotSignedIn()
        return found

    def same_origin(self, request: Request) -> None:
        """A browser names where a POST comes from; it must be this console (defence beside the CSRF token)."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
            raise Refused(403, L("this form was sent from another site"))

    async def posted(self, request: Request, session: accounts.Session) -> Any:
        """The form of a POST whose CSRF token is the session's (403 otherwise)."""
        self.same_origin(request)
        form = await request.form()
        token = form.get("csrf")
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), session.csrf.encode()):
            raise Refused(403, L("the form's security token is missing or wrong: reload the page and send it again"))
        return form

    def steward(self, session: accounts.Session) -> None:
        """403 unless the session's account decides on quarantined rows (a steward; the other roles read them)."""
        if not session.may_decide:
            raise Refused(403, L("%(account)s is %(role)s: only stewards decide on and unmask quarantined rows",
                                 account=session.account, role=i18n.role_label(session.role)))

    def batch_of(self, batch_id: str) -> quarantine.Quarantined:
        """The quarantined batch a URL names; 404, the same for a malformed id as for an unknown one."""
        if not BATCH.match(batch_id):
            raise Refused(404, L("there is no such quarantined batch"))
        try:
            return quarantine.batch(self.ledger, batch_id)
        except FundxError:
            raise Refused(404, L("there is no such quarantined batch")) from None

    def night_arg(self, value: str | None) -> str | None:
        """A night from a URL or a form as YYYY-MM-DD; None when it is not one."""
        if not value:
            return None
        try:
            return date.fromisoformat(value).isoformat() if NIGHT.match(value) else None
        except ValueError:
            return None
