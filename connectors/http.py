"""HTTP for REST feeds: one session with timeouts and deadlines, a capped body, and a failed status turned
into a fundx error by the exchange's one HTTP status table (fundx.core.http_status).

Every failure becomes a typed fundx error (see fundx.core.errors): what to do about it is read from the
type. Messages name the feed, the page and the URL's path — never its query string, headers, tokens
or any part of a record.

A read timeout bounds each wait for bytes, not a response: an agency that trickles a byte a second
never trips it. So every request also has an overall deadline, connect to last byte
(FUNDX_HTTP_REQUEST_DEADLINE, or what is left of the pull's FUNDX_PULL_DEADLINE if that is sooner):
when it passes, a watchdog shuts the request's socket down under the reader (the only way to stop a
read blocked in the middle of headers or of a body piece), and the body is read in small pieces with
the deadline checked after each.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, ProxyManager

from connectors.pacing import Pacer
from fundx.core.errors import (
    AuthError,
    ConfigurationError,
    DataError,
    FundxError,
    IncompletePull,
    NotFoundError,
    TransientError,
)
from fundx.core.http_status import StatusAction, retry_after_seconds, rule_for
from fundx.core.settings import Settings

if TYPE_CHECKING:
    from fundx.core.retry import Deadline

log = logging.getLogger("fundx.connectors.http")

#: a body is read in pieces of this size, the request's deadline checked after each
_CHUNK = 64 * 1024
#: how soon a watchdog that found its request still connecting looks again
_RECHECK_SECONDS = 0.05
#: an agency's error code is a short lower-case word list (invalid_token, insufficient_scope): anything
#: else — a long random-looking run, mixed case — may be a credential an agency echoed, and is left out
_ERROR_CODE = re.compile(r"^(?=.{1,48}$)[a-z][a-z0-9]{0,15}(?:[_.\-][a-z0-9]{1,16})*$")

@dataclass(frozen=True, eq=False)
class Response:
    """A complete HTTP response: status, headers and the whole (capped) body."""

    status: int
    headers: requests.structures.CaseInsensitiveDict
    body: bytes
    url_path: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error_code(self) -> str | None:
        """The agency's short error code (``{"error": "invalid_token"}``), when it sent one."""
        code: Any = None
        try:
            parsed = orjson.loads(self.body) if self.body[:1] == b"{" else None
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            code = parsed.get("error")
        if not isinstance(code, str) or not _ERROR_CODE.match(code):
            match = re.search(r'error="([A-Za-z0-9_.\-]{1,64})"', self.headers.get("WWW-Authenticate", ""))
            code = match.group(1) if match and _ERROR_CODE.match(match.group(1)) else None
        return code

    def json(self, *, feed: str, what: str) -> Any:
        """The body decoded as JSON; a body cut short is an IncompletePull, other garbage a DataError."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            if self._cut_short(exc):
                raise IncompletePull(f"{what}: the response body is cut short", feed=feed) from None
            # orjson's own fixed words, never the body's: JSON deeper than it parses is the agency's data too
            wrong = "is nested deeper than 1024 levels" if exc.msg.startswith("depth limit") else "is not JSON"
            raise DataError(
                f"{what}: the response from {self.url_path} {wrong}",
                feed=feed,
                action="ask the agency whether its API changed",
            ) from None

    def _cut_short(self, error: orjson.JSONDecodeError) -> bool:
        """Whether a body that is not JSON may be a body cut off on the way (tried again) rather than bad data."""
        if not self.body:
            return True
        announced = self.headers.get("Content-Length")
        if announced is not None:
            return announced.isdigit() and len(self.body) < int(announced)
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return False  # chunked framing ends with a last chunk: a broken one fails in the read, not here
        return error.pos >= len(self.body)  # ended by closing the connection: only an end in mid-document


def error_for_status(response: Response, *, feed: str, what: str, renew: str | None = None) -> FundxError | None:
    """The error that an HTTP status means (fundx.core.http_status.STATUS_TABLE); None for success.

    ``renew``: the setting that holds the feed's credential, named in an AuthError's action."""
    if response.ok:
        return None
    rule = rule_for(response.status)
    code = response.error_code()
    message = f"{what}: {rule.meaning} (HTTP {response.status}{', ' + code if code else ''}) from {response.url_path}"
    if rule.action is StatusAction.RETRY and issubclass(rule.error, TransientError):
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        return rule.error(message, feed=feed, retry_after=retry_after)
    if rule.action is StatusAction.RENEW:
        return AuthError(message, feed=feed, action=f"renew {renew}" if renew else None)
    if rule.action is StatusAction.NOT_FOUND:
        return NotFoundError(message, feed=feed, action="check the feed's base_url and path")
    return rule.error(message, feed=feed, action="check the feed config against the agency's API documentation")


class _Late(Exception):
    """The body was still arriving when the request's deadline passed."""


class _Watch:
    """The sockets one request of an :class:`HttpClient` uses, shut down when its deadline passes.

    One request at a time (an HttpClient serves one pull's pages in turn). :meth:`bounded` sets the
    request's deadline for a watchdog thread — one per client, started with its first request and gone
    after a while without requests, so a page costs no thread of its own; the connection pools report
    the socket of each connection the request takes (:meth:`using`), connected before the request is sent.
    """

    #: a watchdog with no request to watch for this long ends (the next request starts another)
    IDLE_SECONDS = 5.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._sockets: list[Any] = []
        self._active = False
        self._due: float | None = None  # when the request being watched is cut (time.monotonic)
        self._asleep_until: float | None = None  # when the watchdog wakes by itself
        self._thread: threading.Thread | None = None  # the watchdog; None once it has ended
        self._idle_since = 0.0  # when the last request ended
        self._closing = False
        self.fired = False  # the last request's deadline passed and its connection was cut

    def using(self, sock: Any) -> None:
        with self._lock:
            if self._active and sock is not None:
                self._sockets.append(sock)

    @contextmanager
    def bounded(self, seconds: float) -> Iterator[None]:
        """Cut the connection of the request made inside this block once ``seconds`` have passed."""
        with self._lock:
            self._sockets, self._active, self.fired = [], True, False
            self._arm(time.monotonic() + max(0.0, seconds))
        try:
            yield
        finally:
            with self._lock:
                self._active, self._sockets, self._due = False, [], None
                self._idle_since = time.monotonic()

    def close(self) -> None:
        """Let the watchdog go now rather than after its idle time."""
        with self._lock:
            self._active, self._sockets, self._due, self._closing = False, [], None, True
            self._changed.notify()

    def _arm(self, due: float) -> None:
        """Have the watchdog cut at ``due`` (the lock held): started if it is not running, woken if it would
        sleep past it."""
        self._due, self._closing = due, False
        if self._thread is None or not self._thread.is_alive():  # (not alive: a process forked from ours)
            self._asleep_until = due
            self._thread = threading.Thread(target=self._run, name="fundx-http-watch", daemon=True)
            self._thread.start()
        elif self._asleep_until is not None and self._asleep_until > due:
            self._changed.notify()

    def _run(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                if self._due is not None:
                    if now >= self._due:
                        self._cut()
                        continue
                    wake = self._due
                elif self._closing or now >= self._idle_since + self.IDLE_SECONDS:
                    self._thread = self._asleep_until = None  # gone: the next request starts another
                    return
                else:
                    wake = self._idle_since + self.IDLE_SECONDS
                self._asleep_until = wake
                self._changed.wait(wake - now)

    def _cut(self) -> None:
        """The watched request's deadline passed (the lock held): shut its sockets down."""
        self._due = None
        if not self._active:
            return  # the request ended just before
        self.fired = True
        if not self._sockets:  # still connecting (the connect timeout bounds that): cut it once connected
            self._due = time.monotonic() + _RECHECK_SECONDS
            return
        for sock in self._sockets:
            try:  # the plain socket's shutdown, also under TLS: it wakes the reader blocked in recv
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except (OSError, TypeError):
                pass  # closed already, or not a socket of its own (TLS inside a proxy tunnel)


def _watched_pools(watch: _Watch) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 connection pools that connect before a request is sent and report its socket to ``watch``."""

    class WatchedPool(HTTPConnectionPool):
        def _validate_conn(self, conn: Any) -> None:
            super()._validate_conn(conn)
            if conn.is_closed:  # as urllib3's TLS pool does: connect now, so that the socket is known
                conn.connect()
            watch.using(getattr(conn, "sock", None))

    class WatchedTlsPool(HTTPSConnectionPool):
        def _validate_conn(self, conn: Any) -> None:
            super()._validate_conn(conn)  # connects
            watch.using(getattr(conn, "sock", None))

    return {"http": WatchedPool, "https": WatchedTlsPool}


class _WatchedAdapter(HTTPAdapter):
    """requests' transport adapter, its pools (direct and through an HTTP proxy) reporting to a watch."""

    def __init__(self, watch: _Watch) -> None:
        self._pools = _watched_pools(watch)  # before super().__init__, which makes the pool manager
        super().__init__()

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is ProxyManager:  # a SOCKS manager has pools of its own kind: left as it is
            manager.pool_classes_by_scheme = self._pools
        return manager


class _Session(requests.Session):
    """A requests session that reads the environment's proxies and CA bundle once per host, not on every
    request (requests scans the whole environment twice a request, about half a millisecond a page)."""

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[Any, ...], dict[str, Any]] = {}

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        parts = urlsplit(url)
        try:
            key = (parts.scheme, parts.netloc, tuple(sorted((proxies or {}).items())), proxies is None, stream, verify,
                   cert, tuple(sorted(self.proxies.items())), self.stream, self.verify, self.cert, self.trust_env)
            found = self._environment.get(key)
        except TypeError:  # an unhashable setting: nothing remembered
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        if found is None:
            found = self._environment[key] = super().merge_environment_settings(url, proxies, stream, verify, cert)
        return {**found, "proxies": dict(found["proxies"])}


class HttpClient:
    """A requests session with the exchange's timeouts, deadlines and body cap, turning failures into
    fundx errors. ``deadline``: the pull's (fundx.core.retry.Deadline); no request goes past it."""

    def __init__(self, settings: Settings, *, feed: str, deadline: Deadline | None = None) -> None:
        self.feed = feed
        self.timeout = (settings.http_connect_timeout, settings.http_read_timeout)
        self.request_deadline = settings.http_request_deadline
        self.deadline = deadline
        self.max_bytes = settings.max_response_bytes
        self._watch = _Watch()
        self.session = _Session()
        adapter = _WatchedAdapter(self._watch)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers["Accept"] = "application/json"
        self.session.headers["User-Agent"] = "fundx-exchange"
        self.pacer = Pacer()

    def close(self) -> None:
        self.session.close()
        self._watch.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
        basic: tuple[str, str] | None = None,
    ) -> Response:
        """Send one request and read the whole body (up to the cap) by its deadline; any status is returned.

        Past the request's deadline: TransientError (tried again); past the pull's: DeadlineExceeded.
        """
        path = urlsplit(url).path or "/"
        self.pacer.wait()  # the agency's announced rate (connectors/pacing.py)
        started = time.monotonic()
        budget, by_pull = self.request_deadline, False
        if self.deadline is not None:
            left = self.deadline.remaining()
            if left <= 0:
                raise self.deadline.exceeded(what)
            if left < budget:
                budget, by_pull = left, True
        until = started + budget
        try:
            with self._watch.bounded(budget):
                try:
                    with self.session.request(
                        method, url, params=params, headers=headers, data=data, auth=basic,
                        timeout=self.timeout, stream=True, allow_redirects=False,
                    ) as raw:
                        body = self._read(raw, what=what, path=path, until=until)
                        response = Response(raw.status_code, raw.headers, body, path)
                except Exception as exc:
                    # _Late, or whatever a socket cut under the reader made it raise (a fundx error stands)
                    if isinstance(exc, _Late) or (self._watch.fired and not isinstance(exc, FundxError)):
                        raise self._overdue(what, path, budget, by_pull=by_pull) from None
                    raise
                if self._watch.fired:  # cut while it was read: what arrived may look whole and is not
                    raise self._overdue(what, path, budget, by_pull=by_pull)
        except requests.exceptions.ChunkedEncodingError:
            raise IncompletePull(f"{what}: the connection broke off in the middle of the body", feed=self.feed) from None
        except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as exc:
            raise TransientError(
                f"{what}: {_transport_failure(exc)} talking to {path}", feed=self.feed
            ) from None
        except requests.exceptions.ContentDecodingError:
            raise IncompletePull(f"{what}: the compressed body could not be decoded", feed=self.feed) from None
        except requests.exceptions.InvalidURL:
            raise ConfigurationError(f"{what}: the feed's URL is not valid", feed=self.feed) from None
        self.pacer.sent(started, response.headers)
        log.debug("%s: %s %s -> %d, %d bytes, %.3f s", self.feed, what, path, response.status, len(body), time.monotonic() - started)
        return response

    def _read(self, raw: requests.Response, *, what: str, path: str, until: float) -> bytes:
        announced = raw.headers.get("Content-Length")
        if announced and announced.isdigit() and int(announced) > self.max_bytes:
            raise self._too_large(what, path)
        chunks, size = [], 0
        for chunk in raw.iter_content(chunk_size=_CHUNK):
            size += len(chunk)
            if size > self.max_bytes:
                raise self._too_large(what, path)
            chunks.append(chunk)
            if time.monotonic() > until:
                raise _Late
        return b"".join(chunks)

    def _overdue(self, what: str, path: str, budget: float, *, by_pull: bool) -> TransientError:
        """The error of a request stopped at its deadline: the pull's (not retried) or its own (retried)."""
        if by_pull and self.deadline is not None:
            return self.deadline.exceeded(what)
        return TransientError(
            f"{what}: no complete response from {path} within {budget:g} s (FUNDX_HTTP_REQUEST_DEADLINE)",
            feed=self.feed,
            action="ask the agency whether its service is degraded; raise FUNDX_HTTP_REQUEST_DEADLINE "
                   "if its pages really take that long",
        )

    def _too_large(self, what: str, path: str) -> ConfigurationError:
        return ConfigurationError(
            f"{what}: the response from {path} is larger than {self.max_bytes} bytes",
            feed=self.feed,
            action="lower the feed's page_size, or raise FUNDX_MAX_RESPONSE_BYTES",
        )


def _transport_failure(exc: requests.exceptions.RequestException) -> str:
    """What went wrong on the wire, in words that carry no URL."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "read timeout"
    text = repr(exc)
    if "ReadTimeout" in text or "timed out" in text:
        return "read timeout"
    if "Reset" in text or "reset" in text:
        return "connection reset"
    if "Refused" in text or "refused" in text:
        return "connection refused"
    return f"connection error ({type(exc).__name__})"
