"""The nights' Data Docs (Great Expectations' validation pages under FUNDX_HOME/reports), read only, with
a policy that lets their inline styles run and never a script; and the links the other pages show."""

from __future__ import annotations

import stat
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response

from fundx.console.context import ConsoleContext
from fundx.console.i18n import L
from fundx.console.security import Refused

#: the Data Docs pages (Great Expectations' HTML with inline styles and scripts): styles yes, scripts never
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; sandbox; frame-ancestors 'none'"
REPORT_TYPES = {".html": "text/html; charset=utf-8", ".png": "image/png", ".json": "application/json"}


def add_routes(app: FastAPI, console: ConsoleContext) -> None:
    """GET /reports/{path}: a file of FUNDX_HOME/reports, to a signed-in account."""
    home, current = console.home, console.current

    @app.get("/reports/{path:path}")
    def report(request: Request, path: str) -> Response:
        current(request)
        found = report_file(home / "reports", path)
        if found is None:
            raise Refused(404, L("there is no such report"))
        response = Response(found.read_bytes(), media_type=REPORT_TYPES[found.suffix])
        response.headers["Content-Security-Policy"] = REPORT_CSP
        return response


def report_link(home: Path, night: str | None, name: str) -> str | None:
    """The console's URL of a night's Data Docs page, if the page exists."""
    if not night or report_file(home / "reports", f"{night}/{name}.html") is None:
        return None
    return f"/reports/{night}/{name}.html"


def report_file(root: Path, path: str) -> Path | None:
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
