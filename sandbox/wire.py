"""HTTP plumbing of the sandbox servers: a threaded stdlib server with byte-level control of replies.

The stdlib server (not a web framework) is used on purpose: the fault profiles need to send half a
body and then reset the connection, or announce a Content-Length and close early. Nothing here
logs a query string or a body, so no personal data reaches a log.
"""

from __future__ import annotations

import logging
import socket
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import orjson

log = logging.getLogger("sandbox")

MAX_REQUEST_BODY = 64 * 1024


@dataclass
class Request:
    """One HTTP request as an agency sees it (query values: the last one given for each name)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""


@dataclass
class Reply:
    """One HTTP reply and how to deliver it.

    ``delivery``: ``normal``; ``stall`` (wait ``stall_seconds`` first); ``truncated`` (announce the
    whole Content-Length, send half the body, close); ``reset`` (headers and half the body, then a
    TCP reset); ``trickle`` (headers at once, then the body one byte every ``stall_seconds``, until it
    is all sent or the client hangs up).
    """

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    delivery: str = "normal"
    stall_seconds: float = 0.0


def json_reply(status: int, payload: object, headers: dict[str, str] | None = None) -> Reply:
    """A JSON reply."""
    return Reply(status, orjson.dumps(payload), dict(headers or {}))


class HttpError(Exception):
    """Raised inside an agency's handler to answer with an error status and a JSON error body."""

    def __init__(self, status: int, error: str, detail: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(f"{status} {error}")
        self.status, self.error, self.detail, self.headers = status, error, detail, headers or {}

    def reply(self) -> Reply:
        payload: dict[str, str] = {"error": self.error}
        if self.detail:
            payload["detail"] = self.detail
        return json_reply(self.status, payload, self.headers)


class App(Protocol):
    """What a server serves: one method from a request to a reply."""

    name: str

    def handle(self, request: Request) -> Reply: ...


class _Handler(BaseHTTPRequestHandler):
    """Reads a request, asks the server's app for a reply, delivers it (faults included)."""

    protocol_version = "HTTP/1.1"  # keep-alive: a paging client reuses one connection
    disable_nagle_algorithm = True  # or the last segment of each page waits for a delayed ACK
    server_version = "sandbox-agency"
    sys_version = ""
    server: Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's naming)
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _dispatch(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_REQUEST_BODY:
            self.close_connection = True
            self._deliver(json_reply(413 if length > 0 else 400, {"error": "invalid_request"}))
            return
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = Request(self.command, url.path, query, headers, body)
        try:
            reply = self.server.app.handle(request)
        except HttpError as exc:
            reply = exc.reply()
        except Exception as exc:  # noqa: BLE001 - answer 500; log where, never the message (it may quote a record)
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            log.error("%s: %s at %s:%s answered 500", self.server.app.name, type(exc).__name__,
                      frame.filename.rsplit("/", 1)[-1], frame.lineno)
            reply = json_reply(500, {"error": "internal_error"})
        log.debug("%s %s %s -> %s", self.server.app.name, self.command, url.path, reply.status)
        self._deliver(reply)

    def _deliver(self, reply: Reply) -> None:
        try:
            if reply.delivery == "stall":
                time.sleep(reply.stall_seconds)
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if reply.delivery in ("normal", "stall"):
                self.wfile.write(reply.body)
            elif reply.delivery == "trickle":
                self.close_connection = True  # a client that gave up mid-body cannot reuse the connection
                for i in range(len(reply.body)):
                    self.wfile.write(reply.body[i : i + 1])
                    time.sleep(reply.stall_seconds)
            elif reply.delivery == "truncated":
                self.wfile.write(reply.body[: len(reply.body) // 2])
                self.close_connection = True  # orderly close: the client sees a short body
            elif reply.delivery == "reset":
                self.wfile.write(reply.body[: len(reply.body) // 2])
                time.sleep(0.05)  # let the client read the headers before the reset discards them
                self._reset()
            else:
                raise ValueError(f"unknown delivery {reply.delivery!r}")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its read timeout): nothing to do

    def _reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), not an orderly close."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # drop makefile's reference so close() really closes the socket
        self.connection.close()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        """Silenced: the stdlib logs the request line, whose query may hold personal data."""


class Server(ThreadingHTTPServer):
    """A threaded HTTP server for one app on loopback, port chosen by the OS; knows its open connections."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, app: App, host: str = "127.0.0.1") -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__((host, 0), _Handler)
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name=f"sandbox-{app.name}", daemon=True
        )

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:40123."""
        host, port = self.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{port}"

    def start(self) -> Server:
        """Serve in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close the listening socket and every open keep-alive connection."""
        self.shutdown()
        self.server_close()
        with self._conn_lock:
            open_now = list(self._connections)
        for conn in open_now:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its client

    def track(self, conn: socket.socket, open_: bool) -> None:
        """Remember (or forget) an open connection, so that ``stop`` can close it."""
        with self._conn_lock:
            (self._connections.add if open_ else self._connections.discard)(conn)

    def handle_error(self, request: object, client_address: object) -> None:
        """Log the error's type only (a traceback's message may quote a record)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        log.error("%s: %s while handling a request", self.app.name, type(exc).__name__)


def start_server(app: App, host: str = "127.0.0.1") -> Server:
    """A running server for ``app``."""
    return Server(app, host).start()

