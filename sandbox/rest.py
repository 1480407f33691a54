"""The REST agencies, as their feed configs describe them: the paging style (cursor, page/size, changed
since, RFC 8288 Link headers), the auth kind (static bearer token, API key header, OAuth2 client
credentials) and every parameter and field name come from ``connectors/feeds/<feed>.yaml``; what an
agency does beyond its config (the police's rate limit, its smaller pages) is its sandbox entry
(:class:`RestQuirks`, sandbox/simulated.py).

Each feed's rows are sorted once by (incremental column, key); a request's window is then two
``searchsorted`` calls on the timestamps, and a page is encoded from column lists with orjson, so a
page costs the same whatever the size of the feed. docs/agencies.md is the specification.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, quote, unquote

import numpy as np
import orjson
import pandas as pd

from connectors.config import (
    ApiKeyAuth,
    BearerAuth,
    ChangedSincePaging,
    CursorPaging,
    LinkHeaderPaging,
    OAuth2ClientCredentialsAuth,
    PageSizePaging,
    RestConfig,
)
from sandbox.faults import RENAMED, SLOW_SECONDS, TRICKLE_SECONDS, FaultState, received_credential
from sandbox.generic import NotSimulated
from sandbox.schema import FeedSchema, feed_schema, plain_values
from sandbox.wire import HttpError, Reply, Request, json_reply

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_OFFSET_LOST_PLUS = re.compile(r" (\d\d(?::?\d\d)?)$")  # "+08:00" sent unencoded arrives as " 08:00"


def timestamps_ns(values: pd.Series, what: str) -> np.ndarray:
    """ISO 8601 timestamps with offsets as int64 nanoseconds since the epoch (UTC)."""
    parsed = pd.to_datetime(values, format="ISO8601", utc=True)
    if parsed.isna().any():
        raise ValueError(f"{what}: {int(parsed.isna().sum())} rows have no parseable timestamp")
    return parsed.dt.as_unit("ns").astype("int64").to_numpy()


def instant_ns(name: str, text: str) -> int:
    """A query parameter's ISO 8601 time (with an offset) as nanoseconds since the epoch."""
    value = _OFFSET_LOST_PLUS.sub(r"+\1", text.strip())
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HttpError(400, "invalid_request", f"{name} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise HttpError(400, "invalid_request", f"{name} needs a UTC offset, e.g. +08:00")
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def int_param(query: dict[str, str], name: str, default: int, low: int, high: int | None) -> int:
    """An integer query parameter within [low, high]; 400 otherwise."""
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise HttpError(400, "invalid_request", f"{name} must be an integer") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise HttpError(400, "invalid_request", f"{name} must be {bound}")
    return value


class FeedIndex:
    """One feed's rows sorted by (incremental column, key), each pre-encoded as JSON, ready for windows and pages.

    Rows are encoded once, into one buffer with an offset per row: a page is then a slice of that
    buffer, so serving costs about the same per page whatever the page size or the feed's size.
    """

    encode_chunk = 100_000

    def __init__(self, frame: pd.DataFrame, schema: FeedSchema) -> None:
        missing = [c for c in schema.columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{schema.feed}: the generated frame lacks columns {missing}")
        assert schema.incremental is not None
        frame = frame.reset_index(drop=True)
        t = timestamps_ns(frame[schema.incremental], f"{schema.feed}.{schema.incremental}")
        keys = frame[schema.key].astype(str)
        order = pd.DataFrame({"t": t, "k": keys}).sort_values(["t", "k"], kind="stable").index.to_numpy()
        self.schema = schema
        self.frame = frame.iloc[order][list(schema.columns)].reset_index(drop=True)
        self.t = t[order]
        self.keys: list[str] = keys.iloc[order].tolist()
        self._buffer, self._offsets = self._encode()
        self._renames = [
            (f'"{c}":'.encode(), f'"{RENAMED[c]}":'.encode()) for c in schema.columns if c in RENAMED
        ]

    def _encode(self) -> tuple[bytes, np.ndarray]:
        """Every row as JSON, followed by a comma, in one buffer; offsets[i] is where row i starts."""
        columns = list(self.schema.columns)
        parts: list[bytes] = []
        lengths: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
        for lo in range(0, len(self.frame), self.encode_chunk):
            chunk = self.frame.iloc[lo : lo + self.encode_chunk]
            values = [plain_values(chunk[c]) for c in columns]
            encoded = [orjson.dumps(dict(zip(columns, row))) for row in zip(*values)]
            parts.append(b",".join(encoded) + b",")
            lengths.append(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)) + 1)
        return b"".join(parts), np.cumsum(np.concatenate(lengths))

    def __len__(self) -> int:
        return len(self.t)

    def window(self, start_ns: int | None, end_ns: int | None) -> tuple[int, int]:
        """Row positions [lo, hi) of the records with start <= t < end (None: open)."""
        lo = 0 if start_ns is None else int(np.searchsorted(self.t, start_ns, "left"))
        hi = len(self.t) if end_ns is None else int(np.searchsorted(self.t, end_ns, "left"))
        return lo, max(lo, hi)

    def after(self, since_ns: int, key: str) -> int:
        """Position of the first record after (since, key) in (incremental, key) order."""
        lo = int(np.searchsorted(self.t, since_ns, "left"))
        hi = int(np.searchsorted(self.t, since_ns, "right"))
        return bisect.bisect_right(self.keys, key, lo, hi)

    def json_array(self, lo: int, hi: int, renamed: bool = False) -> bytes:
        """Records [lo, hi) as a JSON array; ``renamed`` applies the ``renamed_column`` fault."""
        if hi <= lo:
            return b"[]"
        body = b"[" + self._buffer[self._offsets[lo] : self._offsets[hi] - 1] + b"]"
        if renamed:
            # a key is the only place '"id_number":' can occur: inside a value the quotes are escaped
            for old, new in self._renames:
                body = body.replace(old, new)
        return body

    def expected(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        """The records of a window, in serving order."""
        lo, hi = self.window(_ns(start), _ns(end))
        return self.frame.iloc[lo:hi].reset_index(drop=True)


def _ns(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("window bounds must be timezone-aware")
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


@dataclass(frozen=True)
class RestQuirks:
    """What one agency's API does beyond its feed config (sandbox/simulated.py): the largest page it
    serves, a rate limit (requests per second, burst), the lifetime of its OAuth2 access tokens."""

    max_page: int = 5000
    rate_limit: tuple[float, int] | None = None
    token_lifetime: int = 3600


#: the query parameter of the sandbox's own next-page token in a Link header (link_header paging)
PAGE_TOKEN = "page_token"  # noqa: S105 - a parameter's name, not a password


class RestAgency:
    """One agency's REST feed as its feed config describes it (rest: path, records, auth, paging, window).

    The paging style (cursor, page_size, changed_since, link_header) and the auth kind (bearer,
    api_key, oauth2_client_credentials) come from the config; the parameter and field names too. Each
    credential is generated here and handed to the exchange under the environment variable the config
    references (``credentials``); ``secrets`` shares them between feeds that reference one variable.
    Every fault of docs/agencies.md applies whatever the style. docs/agencies.md is the specification.
    """

    def __init__(self, feed: str, agency: str, rest: RestConfig, frame: pd.DataFrame, faults: FaultState,
                 stall_seconds: float, *, quirks: RestQuirks | None = None,
                 secrets_by_env: dict[str, str] | None = None) -> None:
        self.feed, self.name = feed, agency  # name: how the wire's log lines call it
        self.path, self.paging, self.window_params, self.auth = rest.path, rest.paging, rest.window, rest.auth
        self.quirks = quirks or RestQuirks()
        schema = feed_schema(feed)
        if schema.incremental is None:
            raise NotSimulated(f"{feed}: its contract names no incremental column, by which the sandbox serves windows")
        if isinstance(self.paging, ChangedSincePaging) and (
                self.paging.cursor_field != schema.incremental or self.paging.after_field not in (None, schema.key)):
            raise NotSimulated(f"{feed}: rest.paging: the sandbox pages changed_since by the contract's incremental "
                               f"column and key ({schema.incremental}, {schema.key})")
        self._records = orjson.dumps(rest.records)
        self.index = FeedIndex(frame, schema)
        self.faults = faults
        self.stall_seconds = stall_seconds
        self.token_lifetime = self.quirks.token_lifetime
        self.bucket = TokenBucket(*self.quirks.rate_limit) if self.quirks.rate_limit else None
        self.credentials: dict[str, str] = {}  # environment variable -> value, for the exchange
        shared = {} if secrets_by_env is None else secrets_by_env

        def credential(ref: str, key: str, make: Callable[[], str]) -> str:
            name = env_name(ref, f"{feed}: rest.auth.{key}")
            self.credentials[name] = shared.setdefault(name, make())
            return self.credentials[name]

        self.token_path: str | None = None
        self._tokens: dict[str, float] = {}  # OAuth2 access token -> monotonic expiry
        self._lock = threading.Lock()
        auth = self.auth
        if isinstance(auth, BearerAuth):
            self.bearer = credential(auth.token, "token", lambda: secrets.token_urlsafe(32))
        elif isinstance(auth, ApiKeyAuth):
            self.api_key = credential(auth.key, "key", lambda: secrets.token_urlsafe(32))
        elif isinstance(auth, OAuth2ClientCredentialsAuth):
            if not auth.token_url.startswith("/"):
                raise NotSimulated(f"{feed}: rest.auth.token_url is absolute: the sandbox serves it on the feed's "
                                   "own server, relative to base_url")
            self.token_path = auth.token_url
            self.client_id = credential(auth.client_id, "client_id", lambda: "fundx-" + secrets.token_hex(4))
            self.client_secret = credential(auth.client_secret, "client_secret", lambda: secrets.token_urlsafe(32))

    # -- requests ---------------------------------------------------------------------------------

    def serves(self, path: str) -> bool:
        """Whether ``path`` is this feed's (its records or its token endpoint)."""
        return path in (self.path, self.token_path)

    def handle(self, request: Request) -> Reply:
        """Answer one request (the ``slow`` fault delays every answer)."""
        if self.faults.has("slow"):
            time.sleep(SLOW_SECONDS)
        try:
            return self.route(request)
        except HttpError as exc:  # echo_secret: a rejection's error code is the credential received
            if exc.status in (401, 403) and self.faults.has("echo_secret"):
                header = self.auth.header if isinstance(self.auth, ApiKeyAuth) else "x-api-key"
                exc.error = received_credential(request.headers, header) or exc.error
            raise

    def route(self, request: Request) -> Reply:
        """Send a request to the endpoint it names. A rate-limited agency first counts it, and says its policy and
        what is left of it on every answer (RateLimit-Policy and RateLimit, the IETF's draft header fields)."""
        if self.bucket is None:
            return self._route(request)
        allowed = self.bucket.take()
        announced = self.bucket.headers()
        if not allowed:
            return json_reply(429, {"error": "rate_limited"}, {"Retry-After": "1", **announced})
        try:
            reply = self._route(request)
        except HttpError as exc:
            exc.headers = {**announced, **exc.headers}
            raise
        reply.headers.update({k: v for k, v in announced.items() if k not in reply.headers})
        return reply

    def _route(self, request: Request) -> Reply:
        if self.token_path is not None and request.path == self.token_path:
            if request.method != "POST":
                raise HttpError(405, "method_not_allowed", headers={"Allow": "POST"})
            return self.token(request)
        if request.path != self.path:
            raise HttpError(404, "not_found")
        if request.method != "GET":
            raise HttpError(405, "method_not_allowed", headers={"Allow": "GET"})
        token = self._authenticate(request)
        reply = self.page(request)
        if token is not None and reply.status == 200 and self.faults.take_token_revocation():
            self.revoke(token)  # expired_token: the token that fetched this page is dead from now on
        return reply

    def page(self, request: Request) -> Reply:
        """Answer one request for records, paged as the config's style says."""
        paging = self.paging
        if isinstance(paging, CursorPaging):
            return self._cursor_page(request.query, paging)
        if isinstance(paging, PageSizePaging):
            return self._numbered_page(request.query, paging)
        if isinstance(paging, ChangedSincePaging):
            return self._keyset_page(request.query, paging)
        return self._linked_page(request, paging)

    # -- auth -------------------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> str | None:
        """Refuse a request without the credential; the OAuth2 access token used, if any."""
        auth = self.auth
        if isinstance(auth, BearerAuth):
            if request.headers.get("authorization", "") != f"Bearer {self.bearer}":
                raise _invalid_token()
        elif isinstance(auth, ApiKeyAuth):
            if request.headers.get(auth.header.lower(), "") != self.api_key or self.faults.has("expired_token"):
                raise HttpError(401, "invalid_api_key")
        elif isinstance(auth, OAuth2ClientCredentialsAuth):
            header = request.headers.get("authorization", "")
            token = header[7:] if header.startswith("Bearer ") else ""
            if not token or not self._valid(token):
                raise _invalid_token()
            return token
        return None

    def _counted(self, page_no: int, last: bool) -> None:
        """A static bearer token expires (``expired_token``) at a page the faults act on."""
        if isinstance(self.auth, BearerAuth) and self.faults.has("expired_token") and self.faults.eligible(page_no, last):
            raise _invalid_token()

    def token(self, request: Request) -> Reply:
        """The OAuth2 token endpoint (client credentials grant, client authenticated by HTTP Basic)."""
        auth = self.auth
        assert isinstance(auth, OAuth2ClientCredentialsAuth)
        if _basic_credentials(request) != (self.client_id, self.client_secret):
            raise HttpError(401, "invalid_client", headers={"WWW-Authenticate": 'Basic realm="oauth2"'})
        form = {k: v[-1] for k, v in _parse_form(request.body).items()}
        if form.get("grant_type") != "client_credentials":
            raise HttpError(400, "unsupported_grant_type")
        if auth.scope and "scope" in form and auth.scope not in form["scope"].split():
            raise HttpError(400, "invalid_scope")
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._tokens[token] = now + self.token_lifetime
        payload: dict[str, object] = {"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime}
        if auth.scope:
            payload["scope"] = auth.scope
        return json_reply(200, payload, {"Cache-Control": "no-store"})

    def _valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._tokens.get(token)
            return expiry is not None and expiry > time.monotonic()

    def revoke(self, token: str) -> None:
        """Forget an access token (the ``expired_token`` fault)."""
        with self._lock:
            self._tokens.pop(token, None)

    # -- the paging styles ------------------------------------------------------------------------

    def _window(self, q: dict[str, str]) -> tuple[int | None, int | None]:
        params = self.window_params
        if params is None:
            return None, None
        start = instant_ns(params.start_param, q[params.start_param]) if q.get(params.start_param) else None
        end = instant_ns(params.end_param, q[params.end_param]) if q.get(params.end_param) else None
        return start, end

    def _cursor_page(self, q: dict[str, str], paging: CursorPaging) -> Reply:
        """``?cursor=...&limit=N``: the cursor holds the position and the window."""
        limit = int_param(q, paging.limit_param, 1000, 1, self.quirks.max_page)
        start, end = self._window(q)
        lo, hi = self.window_rows(*self.index.window(start, end))
        cursor = q.get(paging.cursor_param)
        if cursor:
            pos, c_start, c_end = _decode_cursor(cursor)
            if (start is not None and start != c_start) or (end is not None and end != c_end):
                raise HttpError(400, "invalid_cursor", "the cursor belongs to another window")
            start, end = c_start, c_end
            lo, hi = self.window_rows(*self.index.window(start, end))
            lo = max(lo, min(pos, hi))
        stop = min(hi, lo + limit)
        page_no = self.faults.count_page()
        self._counted(page_no, stop >= hi)
        served = self.faults.repeat_from(lo, limit, first=not cursor)  # repeat_page
        next_key = orjson.dumps(paging.next_cursor)

        def build() -> bytes:
            following = _encode_cursor(stop, start, end) if stop < hi else None
            return b"{%s:%s,%s:%s}" % (self._records, self.index.json_array(served, stop, self.renamed), next_key,
                                        orjson.dumps(following))

        return self.deliver(page_no, stop >= hi, build)

    def _numbered_page(self, q: dict[str, str], paging: PageSizePaging) -> Reply:
        """``?page=P&size=N``; the body says the window's total and echoes page and size."""
        page = int_param(q, paging.page_param, paging.first_page, paging.first_page, None)
        size = int_param(q, paging.size_param, 100, 1, self.quirks.max_page)
        start, end = self._window(q)
        lo, hi = self.window_rows(*self.index.window(start, end))
        first = min(hi, lo + (page - paging.first_page) * size)
        stop = min(hi, first + size)
        page_no = self.faults.count_page()
        self._counted(page_no, stop >= hi)
        served = self.faults.repeat_from(first, size, first=page == paging.first_page)  # repeat_page
        keys = [orjson.dumps(k) for k in (paging.total, paging.page_param, paging.size_param)]

        def build() -> bytes:
            rows = self.index.json_array(served, stop, self.renamed)
            return b"{%s:%s,%s:%d,%s:%d,%s:%d}" % (self._records, rows, keys[0], hi - lo, keys[1], page, keys[2], size)

        return self.deliver(page_no, stop >= hi, build)

    def _keyset_page(self, q: dict[str, str], paging: ChangedSincePaging) -> Reply:
        """``?changed_since=T&changed_until=U&after=K&limit=N``, ordered by (incremental column, key)."""
        limit = int_param(q, paging.limit_param, 1000, 1, self.quirks.max_page)
        since = instant_ns(paging.since_param, q[paging.since_param]) if q.get(paging.since_param) else None
        until = instant_ns(paging.until_param, q[paging.until_param]) if q.get(paging.until_param) else None
        lo, hi = self.window_rows(*self.index.window(since, until))
        after = q.get(paging.after_param)
        if after is not None:
            if since is None:
                raise HttpError(400, "invalid_request", f"{paging.after_param} needs {paging.since_param}")
            lo = max(lo, min(hi, self.index.after(since, after)))
        page_no = self.faults.count_page()
        stop = min(hi, lo + limit)
        self._counted(page_no, stop >= hi)
        served = self.faults.repeat_from(lo, limit, first=after is None)  # repeat_page
        more_key = orjson.dumps(paging.has_more)

        def build() -> bytes:
            more = b"true" if stop < hi else b"false"
            return b"{%s:%s,%s:%s}" % (self._records, self.index.json_array(served, stop, self.renamed), more_key, more)

        return self.deliver(page_no, stop >= hi, build)

    def _linked_page(self, request: Request, paging: LinkHeaderPaging) -> Reply:
        """The first request carries the window and the page size; a ``Link`` header names the next page."""
        q = request.query
        per_page = int_param(q, paging.size_param, 100, 1, self.quirks.max_page)
        start, end = self._window(q)
        lo, hi = self.window_rows(*self.index.window(start, end))
        if q.get(PAGE_TOKEN):
            pos, start, end = _decode_cursor(q[PAGE_TOKEN])
            lo, hi = self.window_rows(*self.index.window(start, end))
            lo = max(lo, min(pos, hi))
        stop = min(hi, lo + per_page)
        page_no = self.faults.count_page()
        self._counted(page_no, stop >= hi)
        served = self.faults.repeat_from(lo, per_page, first=not q.get(PAGE_TOKEN))  # repeat_page

        def build() -> bytes:
            return b"{%s:%s}" % (self._records, self.index.json_array(served, stop, self.renamed))

        reply = self.deliver(page_no, stop >= hi, build)
        if reply.status == 200 and stop < hi:
            # the next page's absolute URL on this server (the Host the client used), window in the token
            host = request.headers.get("host", "")
            token = _encode_cursor(stop, start, end)
            target = f"{self.path}?{PAGE_TOKEN}={token}&{quote(paging.size_param)}={per_page}"
            reply.headers["Link"] = f'<{"http://" + host if host else ""}{target}>; rel="{paging.rel}"'
        return reply

    # -- delivery ---------------------------------------------------------------------------------

    def window_rows(self, lo: int, hi: int) -> tuple[int, int]:
        """The window as served: nothing under the ``empty`` fault."""
        return (lo, lo) if self.faults.has("empty") else (lo, hi)

    def deliver(self, page_no: int, last: bool, build: Callable[[], bytes]) -> Reply:
        """A page's reply after the transient faults had their say.

        ``page_no`` counts page requests since arming; ``last``: this page ends its window.
        """
        fault = self.faults.fire(page_no, last)
        if fault == "server_errors":
            return json_reply(503, {"error": "service_unavailable"})
        if fault == "rate_limit":
            return json_reply(429, {"error": "rate_limited"}, {"Retry-After": "1"})
        body = build()
        first = self.faults.remember_first_body(body)
        if fault == "page_twice":
            return Reply(200, first)
        if fault == "read_timeout":
            return Reply(200, body, delivery="stall", stall_seconds=self.stall_seconds)
        if fault in ("reset", "truncated"):
            return Reply(200, body, delivery=fault)
        if self.faults.has("trickle"):  # every page, for as long as it is armed: only a deadline ends the pull
            return Reply(200, body, delivery="trickle", stall_seconds=TRICKLE_SECONDS)
        return Reply(200, body)

    @property
    def renamed(self) -> bool:
        """Whether the ``renamed_column`` fault is armed."""
        return self.faults.has("renamed_column")

    def expected(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        """The records of a window, in serving order (none under ``empty``)."""
        frame = self.index.expected(start, end)
        return frame.iloc[0:0] if self.faults.has("empty") else frame


class Router:
    """Several feeds behind one base URL (their configs reference one environment variable): each
    request goes to the feed whose path it names."""

    def __init__(self, apps: list[RestAgency]) -> None:
        paths = [p for app in apps for p in (app.path, app.token_path) if p is not None]
        if len(set(paths)) != len(paths):
            raise NotSimulated(f"{', '.join(a.feed for a in apps)} share a base URL and a path")
        self.apps = apps
        self.name = apps[0].name

    def handle(self, request: Request) -> Reply:
        for app in self.apps:
            if app.serves(request.path):
                return app.handle(request)
        raise HttpError(404, "not_found")


def env_name(ref: str, what: str) -> str:
    """The environment variable an ``env:NAME`` reference names (the sandbox hands its endpoints and
    credentials to the exchange as environment variables); NotSimulated for anything else."""
    if not ref.startswith("env:"):
        kind = ref.split(":", 1)[0] + ":" if ":" in ref else "a literal value"
        raise NotSimulated(f"{what} is {kind}, not an env: reference the sandbox could set")
    return ref[4:]


def _invalid_token() -> HttpError:
    return HttpError(401, "invalid_token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def _encode_cursor(pos: int, start: int | None, end: int | None) -> str:
    raw = orjson.dumps([pos, start, end])
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(text: str) -> tuple[int, int | None, int | None]:
    try:
        pos, start, end = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(pos, int) or pos < 0:
            raise ValueError("bad position")
        return pos, start, end
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise HttpError(400, "invalid_cursor") from None


class TokenBucket:
    """A token bucket: ``rate`` requests per second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def headers(self) -> dict[str, str]:
        """The policy (``50;w=1``: the burst per the time it takes to refill) and what is left of it now."""
        with self._lock:
            tokens = min(self.burst, self._tokens + (time.monotonic() - self._last) * self.rate)
        window = self.burst / self.rate
        reset = math.ceil((self.burst - tokens) / self.rate) if tokens < self.burst else 0
        return {"RateLimit-Policy": f"{self.burst};w={window:g}",
                "RateLimit": f"limit={self.burst}, remaining={int(tokens)}, reset={reset}"}

    def take(self) -> bool:
        """Whether one more request may pass now."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False




def _basic_credentials(request: Request) -> tuple[str, str] | None:
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Basic "):
        return None
    try:
        user, sep, password = base64.b64decode(auth[6:], validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (unquote(user), unquote(password)) if sep else None


def _parse_form(body: bytes) -> dict[str, list[str]]:
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise HttpError(400, "invalid_request", "the form is not UTF-8") from None


