"""Tests for the notifier: real receivers on loopback (an HTTP server, an SMTP server), Apprise
against the same HTTP server, retries, timeouts, configuration errors, the identity-number guard,
and secrets kept out of messages, errors and logs."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import ssl
import threading
import time
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from fundx.core.errors import ConfigurationError
from fundx.core.settings import Settings
from fundx.notify import Notice, Notifier, send_test
from fundx.notify.config import channel_for, split_entries
from fundx.notify.notice import SCHEMA, guard

HOOK_SECRET = "hook-S3cr3t-0123456789abcdef"
SMTP_PASSWORD = "smtp-Pa55w0rd-fedcba9876543210"
APPRISE_PASSWORD = "apprise-Pa55-13579"
AT = datetime(2026, 11, 23, 2, 14, tzinfo=timezone(timedelta(hours=8)))


def notice(**changes) -> Notice:
    values = dict(
        kind="breach", feed="police.deaths", rule="row_count", severity="critical", night="2026-11-22",
        expected=">= 1000 rows", observed="0 rows", detail="no page answered before 06:00", at=AT,
    )
    values.update(changes)
    return Notice(**values)


@pytest.fixture
def settings() -> Settings:
    """Three tries with millisecond backoff: retries are exercised without slowing the tests."""
    return Settings(retry_attempts=3, retry_base_delay=0.01, retry_max_delay=0.05)


@pytest.fixture
def secrets(monkeypatch):
    monkeypatch.setenv("FUNDX_TEST_HOOK_SECRET", HOOK_SECRET)
    monkeypatch.setenv("FUNDX_TEST_SMTP_PASSWORD", SMTP_PASSWORD)


# --- a real HTTP receiver -------------------------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers the queued statuses, then 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append((self.path, dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (connection refused)."""
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def silent_server():
    """A port whose connections are accepted by the kernel but never answered."""
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


# --- a real SMTP server ---------------------------------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 OK"


class LoopbackController(Controller):
    """aiosmtpd's Controller on port 0: learn the port before it connects to itself."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@contextmanager
def smtp_server(**kwargs):
    inbox = Inbox()
    controller = LoopbackController(inbox, hostname="127.0.0.1", port=0, **kwargs)
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fundx test smtp")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"fundx", SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


# --- the notice and the guard ---------------------------------------------------------------------


def test_notice_subject_body_and_json() -> None:
    n = notice()
    assert n.breach_id == "2026-11-22:police.deaths:row_count"
    assert n.subject == "[fundx] BREACH police.deaths row_count on 2026-11-22"
    assert notice(kind="recovered").subject == "[fundx] RECOVERED police.deaths row_count on 2026-11-22"
    text = n.text()
    for figure in (">= 1000 rows", "0 rows", "critical", "2026-11-22", "no page answered before 06:00"):
        assert figure in text
    body = n.as_json()
    assert body["schema"] == SCHEMA == "fundx.notice/1"
    assert body["at"] == "2026-11-23T02:14:00+08:00"
    assert notice(expected=1000, observed=0.5).as_json()["expected"] == "1000"


@pytest.mark.parametrize(
    "changes",
    [dict(kind="late"), dict(severity="info"), dict(night="22.11.2026"), dict(night="2026-02-30"),
     dict(at=datetime(2026, 11, 23, 2, 14)), dict(feed=""), dict(rule=3)],
)
def test_notice_refuses_malformed_fields(changes) -> None:
    with pytest.raises((ValueError, TypeError)):
        notice(**changes)


@pytest.mark.parametrize(
    "text",
    ["first failing row: 11010519491231002X", "11010519491231002x", "id=110105194912310021;",
     "１１０１０５１９４９１２３１００２Ｘ"],  # full-width digits count too
)
def test_guard_refuses_identity_number_shapes(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        guard(text, what="the detail")
    assert "11010519491231002" not in str(caught.value)  # shown masked only
    with pytest.raises(ValueError):
        notice(observed=text)


@pytest.mark.parametrize(
    "text",
    ["0 rows", "2026-11-22", "1234567890123456 rows (16 digits)", "12345678901234567890 (20 digits)",
     hashlib.sha256(b"batch").hexdigest(), "2026-11-22:police.deaths:row_count"],
)
def test_guard_lets_figures_through(text: str) -> None:
    assert guard(text) == text


def test_guard_runs_before_anything_is_sent(receiver, settings) -> None:
    n = notice()
    object.__setattr__(n, "detail", "row 11010519491231002X failed")  # sneaked past the constructor
    notifier = Notifier.from_urls(f"http://127.0.0.1:{receiver.port}/hook", settings=settings)
    with pytest.raises(ValueError):
        notifier.send(n)
    assert receiver.requests == []


# --- webhook --------------------------------------------------------------------------------------


def test_webhook_posts_signed_json(receiver, settings, secrets, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"webhook+http://127.0.0.1:{receiver.port}/hooks/fundx?secret=env:FUNDX_TEST_HOOK_SECRET&team=ops"
    notifier = Notifier.from_urls(url, settings=settings)
    [delivery] = notifier.send(notice())
    assert delivery.ok and delivery.kind == "webhook" and delivery.attempts == 1 and delivery.error is None
    assert delivery.channel == f"webhook+http://127.0.0.1:{receiver.port}/hooks/fundx"
    [(path, headers, body)] = receiver.requests
    assert path == "/hooks/fundx?team=ops"  # other parameters go on; the secret does not
    assert json.loads(body) == notice().as_json()
    assert headers["Content-Type"].startswith("application/json")
    expected = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Fundx-Signature"], expected)
    assert HOOK_SECRET not in caplog.text and HOOK_SECRET.encode() not in body
    assert HOOK_SECRET not in repr(notifier.channels)


def test_webhook_without_secret_is_unsigned(receiver, settings) -> None:
    [delivery] = Notifier.from_urls(f"http://127.0.0.1:{receiver.port}/", settings=settings).send(notice(kind="recovered"))
    assert delivery.ok
    [(_, headers, body)] = receiver.requests
    assert "X-Fundx-Signature" not in headers
    assert json.loads(body)["kind"] == "recovered"


@pytest.mark.parametrize("status", [503, 429])
def test_webhook_retries_a_transient_answer(receiver, settings, status) -> None:
    receiver.statuses = [status]
    [delivery] = Notifier.from_urls(f"http://127.0.0.1:{receiver.port}/hook", settings=settings).send(notice())
    assert delivery.ok and delivery.attempts == 2
    assert len(receiver.requests) == 2
    assert receiver.requests[0][2] == receiver.requests[1][2]  # the same notice again


def test_webhook_gives_up_after_the_configured_tries(receiver, settings) -> None:
    receiver.statuses = [502] * 5
    [delivery] = Notifier.from_urls(f"http://127.0.0.1:{receiver.port}/hook", settings=settings).send(notice())
    assert not delivery.ok and delivery.error == "TransientError" and delivery.attempts == 3
    assert "HTTP 502" in delivery.message and "127.0.0.1" not in delivery.message
    assert len(receiver.requests) == 3


def test_webhook_permanent_answer_is_not_retried(receiver, settings) -> None:
    receiver.statuses = [404]
    [delivery] = Notifier.from_urls(f"http://127.0.0.1:{receiver.port}/hook", settings=settings).send(notice())
    assert not delivery.ok and delivery.error == "PermanentError" and delivery.attempts == 1
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("status", [429, 408, 500, 501, 599, 401, 403, 404, 400, 409, 418, 422, 451, 302, 304])
def test_webhook_and_rest_feeds_read_one_status_table(receiver, settings, status) -> None:
    """What a receiver's status means is the table's (fundx.core.http_status), as for a REST feed: retried
    or not alike, the same transient type, AuthError for refused credentials; any other refusal (404
    included, a NotFoundError for a feed) is a PermanentError of the notice's channel."""
    from requests.structures import CaseInsensitiveDict

    from connectors.http import Response, error_for_status
    from fundx.core.errors import AuthError, PermanentError, TransientError

    receiver.statuses = [status] * 3  # every try of the three
    [delivery] = Notifier.from_urls(f"http://127.0.0.1:{receiver.port}/hook", settings=settings).send(notice())
    feed_error = error_for_status(Response(status, CaseInsensitiveDict(), b"", "/api"), feed="f.x", what="page 1")
    assert not delivery.ok and f"HTTP {status}" in delivery.message
    assert delivery.attempts == (3 if isinstance(feed_error, TransientError) else 1)
    if isinstance(feed_error, (TransientError, AuthError)):
        assert delivery.error == type(feed_error).__name__
    else:
        assert isinstance(feed_error, PermanentError) and delivery.error == "PermanentError"


def test_webhook_timeout_is_honoured(settings) -> None:
    settings = settings.model_copy(update={"retry_attempts": 2})
    with silent_server() as port:
        notifier = Notifier.from_urls(f"http://127.0.0.1:{port}/hook?timeout=0.3", timeout=30, settings=settings)
        started = time.monotonic()
        [delivery] = notifier.send(notice())
        elapsed = time.monotonic() - started
    assert not delivery.ok and delivery.error == "TransientError" and delivery.attempts == 2
    assert "timeout" in delivery.message
    # two tries of 0.3 s each, not the channel's 30 s default (60 s): a wide margin for a busy machine
    assert 0.5 < elapsed < 20


# --- e-mail ---------------------------------------------------------------------------------------


def test_smtp_sends_a_plain_text_mail(settings) -> None:
    with smtp_server() as (inbox, port):
        notifier = Notifier.from_urls(
            f"smtp://127.0.0.1:{port}?to=supervision@fund.example,oncall+fundx@fund.example&from=fundx@exchange.example",
            settings=settings,
        )
        [delivery] = notifier.send(notice())
    assert delivery.ok and delivery.kind == "smtp" and delivery.channel == f"smtp://127.0.0.1:{port}"
    [(sender, recipients, raw)] = inbox.messages
    assert sender == "fundx@exchange.example"
    assert recipients == ["supervision@fund.example", "oncall+fundx@fund.example"]
    mail = message_from_bytes(raw, policy=policy.default)
    assert mail["Subject"] == "[fundx] BREACH police.deaths row_count on 2026-11-22"
    assert mail["X-Fundx-Breach-Id"] == "2026-11-22:police.deaths:row_count"
    assert mail.get_content_type() == "text/plain"
    body = mail.get_content()
    for figure in (">= 1000 rows", "0 rows", "critical", "2026-11-22"):
        assert figure in body


def test_smtp_starttls_login_keeps_the_password_secret(settings, secrets, tls_files, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    cert, key = tls_files
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    with smtp_server(tls_context=server_tls, require_starttls=True, authenticator=authenticator) as (inbox, port):
        entry = (
            f"smtp://fundx@127.0.0.1:{port}?to=supervision@fund.example&from=fundx@exchange.example"
            f"&starttls=1&password=env:FUNDX_TEST_SMTP_PASSWORD&cafile={cert}"
        )
        notifier = Notifier.from_urls(entry, settings=settings)
        [delivery] = notifier.send(notice(kind="recovered", observed="1204 rows"))
        assert delivery.ok, delivery
        assert SMTP_PASSWORD not in delivery.channel and delivery.channel == f"smtp://fundx@127.0.0.1:{port}"

        # a wrong password is an AuthError, and is not tried again
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("FUNDX_TEST_SMTP_PASSWORD", "wrong-" + SMTP_PASSWORD)
            [refused] = Notifier.from_urls(entry, settings=settings).send(notice())
    assert not refused.ok and refused.error == "AuthError" and refused.attempts == 1
    [(_, _, raw)] = inbox.messages
    mail = message_from_bytes(raw, policy=policy.default)
    assert mail["Subject"] == "[fundx] RECOVERED police.deaths row_count on 2026-11-22"
    assert "1204 rows" in mail.get_content()
    assert SMTP_PASSWORD.encode() not in raw
    assert SMTP_PASSWORD not in caplog.text
    assert SMTP_PASSWORD not in (refused.message or "")


def test_smtp_untrusted_certificate_is_a_permanent_failure(settings, tls_files) -> None:
    cert, key = tls_files
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    with smtp_server(tls_context=server_tls) as (inbox, port):
        [delivery] = Notifier.from_urls(f"smtp://127.0.0.1:{port}?to=a@fund.example&starttls=1", settings=settings).send(notice())
    assert not delivery.ok and delivery.error == "PermanentError" and "not trusted" in delivery.message
    assert inbox.messages == []


# --- Apprise --------------------------------------------------------------------------------------


def test_apprise_json_reaches_the_receiver(receiver, settings) -> None:
    notifier = Notifier.from_urls(f"apprise+json://127.0.0.1:{receiver.port}/apprise/hook", settings=settings)
    [delivery] = notifier.send(notice())
    assert delivery.ok and delivery.kind == "apprise"
    assert delivery.channel == f"apprise+json://127.0.0.1:{receiver.port}/apprise/hook"
    [(path, _, body)] = receiver.requests
    assert path == "/apprise/hook"
    sent = json.loads(body)
    assert sent["title"] == "[fundx] BREACH police.deaths row_count on 2026-11-22"
    assert ">= 1000 rows" in sent["message"] and "0 rows" in sent["message"]
    assert sent["type"] == "failure"


def test_apprise_retries_a_server_error(receiver, settings) -> None:
    receiver.statuses = [503]
    [delivery] = Notifier.from_urls(f"apprise+json://127.0.0.1:{receiver.port}/hook", settings=settings).send(notice())
    assert delivery.ok and delivery.attempts == 2 and len(receiver.requests) == 2


def test_apprise_entry_from_a_reference_is_shown_as_the_reference(receiver, settings, monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(
        "FUNDX_TEST_APPRISE_URL", f"apprise+json://fundx:{APPRISE_PASSWORD}@127.0.0.1:{receiver.port}/hook"
    )
    receiver.statuses = [401]
    [delivery] = Notifier.from_urls("env:FUNDX_TEST_APPRISE_URL", settings=settings).send(notice())
    assert delivery.channel == "env:FUNDX_TEST_APPRISE_URL"
    assert not delivery.ok and delivery.error == "AuthError" and delivery.attempts == 1
    assert receiver.requests[0][1]["Authorization"].startswith("Basic ")  # the password was used...
    assert APPRISE_PASSWORD not in caplog.text  # ...and never logged
    assert APPRISE_PASSWORD not in delivery.message


# --- several channels -----------------------------------------------------------------------------


def test_a_failing_channel_does_not_stop_the_others(receiver, settings, caplog) -> None:
    dead = closed_port()
    with smtp_server() as (inbox, smtp_port):
        notifier = Notifier.from_urls(
            f"webhook+http://127.0.0.1:{dead}/hook,"
            f"smtp://127.0.0.1:{smtp_port}?to=a@fund.example,b@fund.example\n"
            f"apprise+json://127.0.0.1:{receiver.port}/hook",
            settings=settings,
        )
        assert len(notifier) == 3
        deliveries = notifier.send(notice())
    assert [d.ok for d in deliveries] == [False, True, True]
    failed = deliveries[0]
    assert failed.error == "TransientError" and failed.attempts == 3 and "connection refused" in failed.message
    assert failed.channel == f"webhook+http://127.0.0.1:{dead}/hook"
    assert len(inbox.messages) == 1 and len(receiver.requests) == 1
    assert "failed after 3 tries" in caplog.text


def test_send_test_reaches_every_channel(receiver, settings) -> None:
    deliveries = send_test(Notifier.from_urls(f"http://127.0.0.1:{receiver.port}/hook", settings=settings))
    assert [d.ok for d in deliveries] == [True]
    sent = json.loads(receiver.requests[0][2])
    assert sent["feed"] == "fundx.test" and sent["rule"] == "notify_test" and sent["severity"] == "warning"


# --- configuration --------------------------------------------------------------------------------


def test_from_settings_reads_fundx_notify(receiver, monkeypatch, settings) -> None:
    monkeypatch.delenv("FUNDX_NOTIFY", raising=False)
    assert not Notifier.from_settings(settings)
    assert Notifier.from_settings(settings).send(notice()) == []
    monkeypatch.setenv("FUNDX_NOTIFY", f"# the on-call hook\nhttp://127.0.0.1:{receiver.port}/a\n\nhttp://127.0.0.1:{receiver.port}/b")
    monkeypatch.setenv("FUNDX_NOTIFY_TIMEOUT", "2.5")
    notifier = Notifier.from_settings(settings)
    assert [c.timeout for c in notifier.channels] == [2.5, 2.5]
    assert all(d.ok for d in notifier.send(notice()))
    assert [r[0] for r in receiver.requests] == ["/a", "/b"]


def test_split_entries_keeps_commas_inside_an_entry() -> None:
    text = "smtp://h?to=a@x,b@y&from=f@x, webhook+https://h/p ,apprise+json://h/q\n#off: http://x\nenv:FOO,secret:bar"
    assert split_entries(text) == [
        "smtp://h?to=a@x,b@y&from=f@x", "webhook+https://h/p", "apprise+json://h/q", "env:FOO", "secret:bar",
    ]


SECRETISH = "hunter2-V3ryS3cret"


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("ftp://files.example/drop", "unknown scheme 'ftp'"),
        (SECRETISH, "not a URL"),
        ("smtp://mail.example:25?from=fundx@x.example", "needs ?to="),
        ("smtp://mail.example:notaport?to=a@x.example", "not a valid URL"),
        ("smtp://mail.example?to=a@x.example&startls=1", "unknown parameter 'startls'"),
        ("smtp://mail.example?to=not-an-address", "not an e-mail address"),
        (f"smtp://fundx:{SECRETISH}@mail.example?to=a@x.example", "password is written in the URL"),
        (f"smtp://fundx@mail.example?to=a@x.example&password={SECRETISH}", "secret written in the config"),
        ("smtp://fundx@mail.example?to=a@x.example&password=env:FUNDX_TEST_SMTP_PASSWORD", "unencrypted"),
        ("smtps://mail.example?to=a@x.example&starttls=1", "TLS already"),
        (f"webhook+https://hooks.example/x?secret={SECRETISH}", "secret written in the config"),
        ("webhook+https://hooks.example/x?secret=env:FUNDX_TEST_NOT_SET", "FUNDX_TEST_NOT_SET"),
        (f"https://fundx:{SECRETISH}@hooks.example/x", "password is written in the URL"),
        ("webhook+ftp://hooks.example/x", "unknown scheme"),
        ("https://hooks.example/x?timeout=0", "timeout must be"),
        (f"apprise+nosuchservice://{SECRETISH}@x.example/", "Apprise cannot use this URL"),
        ("apprise+", "apprise+ must be followed"),
        ("env:FUNDX_TEST_NOT_SET", "FUNDX_TEST_NOT_SET"),
    ],
)
def test_bad_entries_name_the_setting_and_entry_without_secrets(entry, says, monkeypatch, secrets) -> None:
    monkeypatch.setenv("FUNDX_NOTIFY", f"http://127.0.0.1:9/first\n{entry}")
    with pytest.raises(ConfigurationError) as caught:
        Notifier.from_settings()
    message = str(caught.value)
    assert "FUNDX_NOTIFY entry 2" in message, message
    assert says in message, message
    for secret in (SECRETISH, SMTP_PASSWORD, HOOK_SECRET):
        assert secret not in message and secret not in caught.value.action


def test_bad_entry_read_from_a_reference_does_not_show_it(monkeypatch) -> None:
    monkeypatch.setenv("FUNDX_TEST_HOOK_URL", f"gopher://{SECRETISH}@hooks.example/")
    with pytest.raises(ConfigurationError) as caught:
        channel_for("env:FUNDX_TEST_HOOK_URL", index=4)
    assert "FUNDX_NOTIFY entry 4" in str(caught.value) and "env:FUNDX_TEST_HOOK_URL" in str(caught.value)
    assert SECRETISH not in str(caught.value)


def test_bad_timeout_setting_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("FUNDX_NOTIFY_TIMEOUT", "soon")
    with pytest.raises(ConfigurationError, match="FUNDX_NOTIFY_TIMEOUT"):
        Notifier.from_settings()


def test_the_notify_test_command_reports_each_channel(monkeypatch) -> None:
    from typer.testing import CliRunner

    from fundx.cli import app

    monkeypatch.delenv("FUNDX_NOTIFY", raising=False)
    none = CliRunner().invoke(app, ["notify", "test"])
    assert none.exit_code == 1 and "no channels configured" in none.output
    monkeypatch.setenv("FUNDX_NOTIFY", "webhook+http://127.0.0.1:9/nowhere")  # discard port: refused
    monkeypatch.setenv("FUNDX_NOTIFY_TIMEOUT", "0.5")
    monkeypatch.setenv("FUNDX_RETRY_ATTEMPTS", "1")
    refused = CliRunner().invoke(app, ["notify", "test"])
    assert refused.exit_code == 1 and "127.0.0.1:9" in refused.output, refused.output
