"""What guards every page of the console: the refusals a page raises, the input the URLs and forms may
carry, the redirect and echo rules, and the ASGI wrapper that adds the security headers, checks the Host
and answers an unexpected error without its values."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from fundx.core.identity import has_id_like

log = logging.getLogger("fundx.console")

#: pages: only this origin; no script anywhere; no framing; forms post back here only
CSP = ("default-src 'self'; script-src 'none'; object-src 'none'; style-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

#: what the URLs and forms may carry: batch ids, rule ids, nights, and the audit page's filters
BATCH = re.compile(r"^[A-Za-z0-9._-]{1,220}$")
RULE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
NIGHT = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FILTER = re.compile(r"^[\w.:\- ]{0,128}$")


class NotSignedIn(Exception):
    """No live session: GET goes to the sign-in page, anything else is 401."""


class Refused(Exception):
    """A request refused with a status and a message a person can act on (403: CSRF or role); the message is
    text or a :class:`fundx.console.i18n.Lazy`, translated on the error page."""

    def __init__(self, status: int, message: Any):
        super().__init__(str(message))
        self.status = status
        self.message = message


def echo_reason(reason: str) -> str:
    """A refused reason, to fill the form again: not if it holds something shaped like an identity number."""
    return "" if has_id_like(reason) else reason


def local_target(target: str) -> str:
    """A redirect target that stays on this console: a path, never another host."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target \
            or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in target):
        return "/"  # browsers drop tabs and newlines: "/\t/evil.example" would become "//evil.example"
    return target


class Hardened:
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
