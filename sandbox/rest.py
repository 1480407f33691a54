"""The four REST agencies: civil affairs (cursor), police (page/size, OAuth2, rate limited), market regulation
(changed since), health commission (RFC 8288 Link headers, API key).

Each agency's rows are sorted once by (incremental column, key); a request's window is then two
``searchsorted`` calls on the timestamps, and a page is encoded from column lists with orjson, so a
page costs the same whatever the size of the feed. docs/agencies.md is the specification.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote

import numpy as np
import orjson
import pandas as pd

from sandbox.faults import RENAMED, SLOW_SECONDS, TRICKLE_SECONDS, FaultState, received_credential
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


class RestAgency:
    """What the three REST agencies share: fault state, the ``slow`` wait, page delivery with faults."""

    name = ""  # the agency
    feed = ""  # the feed it serves
    path = "/"  # the path of its records

    def __init__(self, frame: pd.DataFrame, faults: FaultState, stall_seconds: float) -> None:
        self.index = FeedIndex(frame, feed_schema(self.feed))
        self.faults = faults
        self.stall_seconds = stall_seconds

    def handle(self, request: Request) -> Reply:
        """Answer one request (the ``slow`` fault delays every answer)."""
        if self.faults.has("slow"):
            time.sleep(SLOW_SECONDS)
        try:
            return self.route(request)
        except HttpError as exc:  # echo_secret: a rejection's error code is the credential received
            if exc.status in (401, 403) and self.faults.has("echo_secret"):
                exc.error = received_credential(request.headers) or exc.error
            raise

    def route(self, request: Request) -> Reply:
        """Send a request to the endpoint it names."""
        if request.path != self.path:
            raise HttpError(404, "not_found")
        if request.method != "GET":
            raise HttpError(405, "method_not_allowed", headers={"Allow": "GET"})
        return self.page(request)

    def page(self, request: Request) -> Reply:
        """Answer one request for records (each agency has its own paging and auth)."""
        raise NotImplementedError

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


class CivilAffairs(RestAgency):
    """民政局: cremation records, cursor paging, a static bearer token."""

    name = "civil_affairs"
    feed = "civil_affairs.deaths"
    path = "/api/v1/cremations"
    max_limit = 5000

    def __init__(self, frame: pd.DataFrame, faults: FaultState, stall_seconds: float) -> None:
        super().__init__(frame, faults, stall_seconds)
        self.token = secrets.token_urlsafe(32)

    def page(self, request: Request) -> Reply:
        if request.headers.get("authorization", "") != f"Bearer {self.token}":
            raise _invalid_token()
        q = request.query
        limit = int_param(q, "limit", 1000, 1, self.max_limit)
        start = instant_ns("reported_from", q["reported_from"]) if q.get("reported_from") else None
        end = instant_ns("reported_to", q["reported_to"]) if q.get("reported_to") else None
        lo, hi = self.window_rows(*self.index.window(start, end))
        if q.get("cursor"):
            pos, c_start, c_end = _decode_cursor(q["cursor"])
            if (start is not None and start != c_start) or (end is not None and end != c_end):
                raise HttpError(400, "invalid_cursor", "the cursor belongs to another window")
            start, end = c_start, c_end
            lo, hi = self.window_rows(*self.index.window(start, end))
            lo = max(lo, min(pos, hi))
        stop = min(hi, lo + limit)
        page_no = self.faults.count_page()
        if self.faults.has("expired_token") and self.faults.eligible(page_no, stop >= hi):
            raise _invalid_token()
        served = self.faults.repeat_from(lo, limit, first=not q.get("cursor"))  # repeat_page

        def build() -> bytes:
            cursor = _encode_cursor(stop, start, end) if stop < hi else None
            return b'{"data":%s,"next_cursor":%s}' % (self.index.json_array(served, stop, self.renamed), orjson.dumps(cursor))

        return self.deliver(page_no, stop >= hi, build)


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


class Police(RestAgency):
    """公安局: household registrations cancelled for death; OAuth2 client credentials, page/size, rate limited."""

    name = "police"
    feed = "police.deaths"
    path = "/hukou/v2/death-cancellations"
    token_path = "/oauth2/token"  # noqa: S105 - a URL path, not a password
    max_size = 1000
    token_lifetime = 3600

    def __init__(self, frame: pd.DataFrame, faults: FaultState, stall_seconds: float,
                 rate: float = 50.0, burst: int = 50) -> None:
        super().__init__(frame, faults, stall_seconds)
        self.client_id = "fundx-" + secrets.token_hex(4)
        self.client_secret = secrets.token_urlsafe(32)
        self.bucket = TokenBucket(rate, burst)
        self._tokens: dict[str, float] = {}  # access token -> monotonic expiry
        self._lock = threading.Lock()

    def route(self, request: Request) -> Reply:
        if not self.bucket.take():
            return json_reply(429, {"error": "rate_limited"}, {"Retry-After": "1"})
        if request.path == self.token_path:
            if request.method != "POST":
                raise HttpError(405, "method_not_allowed", headers={"Allow": "POST"})
            return self.token(request)
        return super().route(request)

    def token(self, request: Request) -> Reply:
        """The OAuth2 token endpoint (client credentials grant, client authenticated by HTTP Basic)."""
        if _basic_credentials(request) != (self.client_id, self.client_secret):
            raise HttpError(401, "invalid_client", headers={"WWW-Authenticate": 'Basic realm="oauth2"'})
        form = {k: v[-1] for k, v in _parse_form(request.body).items()}
        if form.get("grant_type") != "client_credentials":
            raise HttpError(400, "unsupported_grant_type")
        if "scope" in form and "hukou.read" not in form["scope"].split():
            raise HttpError(400, "invalid_scope")
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._tokens[token] = now + self.token_lifetime
        payload = {"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime,
                   "scope": "hukou.read"}
        return json_reply(200, payload, {"Cache-Control": "no-store"})

    def _valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._tokens.get(token)
            return expiry is not None and expiry > time.monotonic()

    def revoke(self, token: str) -> None:
        """Forget an access token (the ``expired_token`` fault)."""
        with self._lock:
            self._tokens.pop(token, None)

    def page(self, request: Request) -> Reply:
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if not token or not self._valid(token):
            raise _invalid_token()
        q = request.query
        page = int_param(q, "page", 1, 1, None)
        size = int_param(q, "size", 100, 1, self.max_size)
        start = instant_ns("updated_from", q["updated_from"]) if q.get("updated_from") else None
        end = instant_ns("updated_to", q["updated_to"]) if q.get("updated_to") else None
        lo, hi = self.window_rows(*self.index.window(start, end))
        first = min(hi, lo + (page - 1) * size)
        stop = min(hi, first + size)
        page_no = self.faults.count_page()
        served = self.faults.repeat_from(first, size, first=page == 1)  # repeat_page

        def build() -> bytes:
            rows = self.index.json_array(served, stop, self.renamed)
            return b'{"rows":%s,"total":%d,"page":%d,"size":%d}' % (rows, hi - lo, page, size)

        reply = self.deliver(page_no, stop >= hi, build)
        if reply.status == 200 and self.faults.take_token_revocation():
            self.revoke(token)  # expired_token: the token that fetched this page is dead from now on
        return reply


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


class MarketRegulation(RestAgency):
    """市场监督管理局: enterprise registry changes, keyset paging on (changed_at, uscc), API key header."""

    name = "market_regulation"
    feed = "market_regulation.businesses"
    path = "/open/v1/enterprises/changes"
    max_limit = 5000

    def __init__(self, frame: pd.DataFrame, faults: FaultState, stall_seconds: float) -> None:
        super().__init__(frame, faults, stall_seconds)
        self.api_key = secrets.token_urlsafe(32)

    def page(self, request: Request) -> Reply:
        if request.headers.get("x-api-key", "") != self.api_key or self.faults.has("expired_token"):
            raise HttpError(401, "invalid_api_key")
        q = request.query
        limit = int_param(q, "limit", 1000, 1, self.max_limit)
        since = instant_ns("changed_since", q["changed_since"]) if q.get("changed_since") else None
        until = instant_ns("changed_until", q["changed_until"]) if q.get("changed_until") else None
        lo, hi = self.window_rows(*self.index.window(since, until))
        after = q.get("after")
        if after is not None:
            if since is None:
                raise HttpError(400, "invalid_request", "after needs changed_since")
            lo = max(lo, min(hi, self.index.after(since, after)))
        page_no = self.faults.count_page()
        stop = min(hi, lo + limit)
        served = self.faults.repeat_from(lo, limit, first=after is None)  # repeat_page

        def build() -> bytes:
            more = b"true" if stop < hi else b"false"
            return b'{"items":%s,"has_more":%s}' % (self.index.json_array(served, stop, self.renamed), more)

        return self.deliver(page_no, stop >= hi, build)


class HealthCommission(RestAgency):
    """卫生健康委员会: hospital death notifications, paged by RFC 8288 ``Link`` headers, API key header."""

    name = "health_commission"
    feed = "health_commission.hospital_deaths"
    path = "/api/v2/death-notices"
    max_per_page = 5000

    def __init__(self, frame: pd.DataFrame, faults: FaultState, stall_seconds: float) -> None:
        super().__init__(frame, faults, stall_seconds)
        self.api_key = secrets.token_urlsafe(32)

    def page(self, request: Request) -> Reply:
        if request.headers.get("x-api-key", "") != self.api_key or self.faults.has("expired_token"):
            raise HttpError(401, "invalid_api_key")
        q = request.query
        per_page = int_param(q, "per_page", 100, 1, self.max_per_page)
        start = instant_ns("notified_from", q["notified_from"]) if q.get("notified_from") else None
        end = instant_ns("notified_to", q["notified_to"]) if q.get("notified_to") else None
        lo, hi = self.window_rows(*self.index.window(start, end))
        if q.get("page_token"):
            pos, start, end = _decode_cursor(q["page_token"])
            lo, hi = self.window_rows(*self.index.window(start, end))
            lo = max(lo, min(pos, hi))
        stop = min(hi, lo + per_page)
        page_no = self.faults.count_page()
        served = self.faults.repeat_from(lo, per_page, first=not q.get("page_token"))  # repeat_page

        def build() -> bytes:
            return b'{"notices":%s}' % self.index.json_array(served, stop, self.renamed)

        reply = self.deliver(page_no, stop >= hi, build)
        if reply.status == 200 and stop < hi:
            # the next page's absolute URL on this server (the Host the client used), window in the token
            host = request.headers.get("host", "")
            token = _encode_cursor(stop, start, end)
            target = f"{self.path}?page_token={token}&per_page={per_page}"
            reply.headers["Link"] = f'<{"http://" + host if host else ""}{target}>; rel="next"'
        return reply


#: agency name -> its class
REST_AGENCIES: dict[str, type[RestAgency]] = {
    cls.name: cls for cls in (CivilAffairs, Police, MarketRegulation, HealthCommission)
}
