"""Notices of SLA breaches and their recoveries, sent to the channels that FUNDX_NOTIFY configures.

The SLA monitor decides *that* a feed breached a rule (or recovered) and records it in the ledger;
this module only says so to people and systems. A :class:`Notice` carries figures and rule names —
feed, rule, severity, night, expected, observed — never record data, and every text that leaves the
exchange passes :func:`guard`, which refuses anything shaped like a resident identity number.

Configuration
-------------
``FUNDX_NOTIFY`` lists the channels, separated by new lines or commas (a comma starts a new entry
only where a scheme ``xxx://`` or a reference ``env:``/``secret:`` follows, so ``to=a@x,b@y`` stays
whole; blank lines and lines starting with ``#`` are skipped). Entries are counted from 1 in error
messages. ``FUNDX_NOTIFY_TIMEOUT`` (default 10) is the connect and the read timeout in seconds of
every channel; ``timeout=SECONDS`` in an entry overrides it for that entry. Transient failures are
retried by :class:`fundx.core.retry.Retrier` with the exchange's FUNDX_RETRY_* settings.

``webhook+https://host[:port]/path[?secret=env:NAME][&timeout=S]`` (also ``webhook+http://``, or
plain ``https://`` / ``http://``)
    POSTs the notice as JSON (below). With ``secret=env:NAME`` or ``secret=secret:BLOCK`` (see
    :func:`fundx.core.settings.resolve`; a secret written in the entry is refused) the request carries
    ``X-Fundx-Signature: sha256=<hex>``, the HMAC-SHA256 of the exact body bytes under that secret.
    Other query parameters are sent on to the receiver. 2xx is success; 408, 429 (Retry-After is
    honoured) and 5xx are retried; anything else, a redirect included, is a permanent failure.

``smtp://[user@]host[:port]?to=a@x,b@y[&from=fundx@x][&starttls=1][&password=env:NAME][&cafile=PATH][&timeout=S]``
(``smtps://`` for TLS from the first byte; ports default to 25 and 465)
    A plain-text e-mail whose subject reads ``[fundx] BREACH police.deaths row_count on 2026-11-22``
    or ``[fundx] RECOVERED ...``. ``password`` must be a reference and needs ``user@``; it is sent
    only over TLS (``smtps://`` or ``starttls=1``) unless the host is a loopback address. ``cafile``
    names a PEM bundle of the CAs to trust instead of the system's. ``from`` defaults to
    ``fundx@<this host's name>``.

``apprise+<apprise URL>``, e.g. ``apprise+json://127.0.0.1:8080/path`` or ``apprise+mailtos://...``
    Sent through the Apprise library (title = the subject, body = the e-mail's text). Unless the URL
    says otherwise, ``cto``/``rto`` (Apprise's connect and read timeouts) are set to the timeout.

``env:NAME`` / ``secret:BLOCK``
    The whole entry is read from the reference, for URLs that are secrets themselves (a chat bot's
    token in an Apprise URL, a webhook URL with a key in its path). Inside such an entry secrets may
    be written literally; the entry is shown as the reference, never as its value.

An unknown scheme or a malformed entry raises :class:`~fundx.core.errors.ConfigurationError` naming
FUNDX_NOTIFY and the entry's number, never its secrets. A delivery that fails raises nothing:
:meth:`Notifier.send` returns one :class:`Delivery` per channel (its redacted address, ok or the
error's type and a content-free message) for the caller to record.

Webhook body, schema ``fundx.notice/1`` (UTF-8 JSON, keys sorted)::

    {
      "schema":    "fundx.notice/1",
      "kind":      "breach" | "recovered",
      "breach_id": "2026-11-22:police.deaths:row_count",   # the same for a breach and its recovery
      "feed":      "police.deaths",
      "rule":      "row_count",
      "severity":  "warning" | "critical",
      "night":     "2026-11-22",                            # the exchange night, Asia/Shanghai
      "expected":  ">= 1000 rows",
      "observed":  "0 rows",
      "detail":    "..." | null,
      "at":        "2026-11-23T02:14:00+08:00",             # when it was detected, ISO 8601
      "subject":   "[fundx] BREACH police.deaths row_count on 2026-11-22"
    }

Receivers should ignore keys they do not know; a change that breaks readers gets ``fundx.notice/2``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import smtplib
import socket
import ssl
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr, parsedate_to_datetime
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import orjson
import requests
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from fundx.core.errors import (
    AuthError,
    ConfigurationError,
    FundxError,
    PermanentError,
    RateLimited,
    TransientError,
)
from fundx.core.identity import first_id_like, mask_id_like
from fundx.core.retry import Retrier
from fundx.core.settings import Settings, _describe_validation, get_settings, resolve
from fundx.core.timeutil import SHANGHAI, now

log = logging.getLogger("fundx.notify")

#: the version of the webhook body; a change that breaks readers gets a new number
SCHEMA = "fundx.notice/1"
#: the environment variable that lists the channels
SETTING = "FUNDX_NOTIFY"

Kind = Literal["breach", "recovered"]
Severity = Literal["warning", "critical"]
KINDS: tuple[str, ...] = ("breach", "recovered")
SEVERITIES: tuple[str, ...] = ("warning", "critical")

# --- the guard ------------------------------------------------------------------------------------



def guard(text: str, *, what: str = "text") -> str:
    """``text`` unchanged, or ValueError if it holds something shaped like an identity number.

    Full-width digits, spaces between the digits and first-generation 15-digit numbers count
    (:func:`fundx.core.identity.first_id_like`). The error names ``what`` and shows the match masked, never whole.
    """
    match = first_id_like(text, isolated=True)
    if match is not None:
        raise ValueError(
            f"refusing to send {what}: it holds an identity-number-shaped string ({mask_id_like(match)}); "
            "notices carry figures and rule names only"
        )
    return text


# --- the notice -----------------------------------------------------------------------------------

_NIGHT = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TEXT_FIELDS = ("feed", "rule", "night", "expected", "observed", "detail", "breach_id")


@dataclass(frozen=True, kw_only=True)
class Notice:
    """One breach of an SLA rule, or its recovery, as told to people: figures and names only.

    ``expected`` and ``observed`` may be given as numbers; they are kept as text. ``breach_id``
    defaults to ``night:feed:rule`` and is the same for a breach and its recovery.
    """

    kind: Kind
    feed: str
    rule: str
    severity: Severity
    night: str
    expected: str
    observed: str
    detail: str | None = None
    breach_id: str = ""
    at: datetime = field(default_factory=now)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"a notice's kind is one of {', '.join(KINDS)}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"a notice's severity is one of {', '.join(SEVERITIES)}")
        for name in ("expected", "observed"):
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                object.__setattr__(self, name, f"{value:g}" if isinstance(value, float) else str(value))
        if not self.breach_id:
            object.__setattr__(self, "breach_id", f"{self.night}:{self.feed}:{self.rule}")
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if value is None and name == "detail":
                continue
            if not isinstance(value, str):
                raise TypeError(f"a notice's {name} is text, not {type(value).__name__}")
            if name in ("feed", "rule", "breach_id") and not value.strip():
                raise ValueError(f"a notice's {name} must not be empty")
            guard(value, what=f"the notice's {name}")
        if not _NIGHT.match(self.night):
            raise ValueError("a notice's night is a date written YYYY-MM-DD")
        date.fromisoformat(self.night)  # a real date
        if not isinstance(self.at, datetime) or self.at.tzinfo is None:
            raise ValueError("a notice's time (at) must be a timezone-aware datetime")

    @property
    def subject(self) -> str:
        """``[fundx] BREACH police.deaths row_count on 2026-11-22`` (or RECOVERED)."""
        return guard(f"[fundx] {self.kind.upper()} {self.feed} {self.rule} on {self.night}", what="the subject")

    def as_json(self) -> dict[str, Any]:
        """The webhook body (schema ``fundx.notice/1``, documented in this module)."""
        return {
            "schema": SCHEMA,
            "kind": self.kind,
            "breach_id": self.breach_id,
            "feed": self.feed,
            "rule": self.rule,
            "severity": self.severity,
            "night": self.night,
            "expected": self.expected,
            "observed": self.observed,
            "detail": self.detail,
            "at": self.at.astimezone(SHANGHAI).isoformat(),
            "subject": self.subject,
        }

    def text(self) -> str:
        """The plain-text message of e-mails and Apprise notifications."""
        if self.kind == "breach":
            head = f"The feed {self.feed} breached its SLA rule {self.rule} ({self.severity}) on the night of {self.night}."
        else:
            head = f"The feed {self.feed} meets its SLA rule {self.rule} again (it was {self.severity}) for the night of {self.night}."
        rows = [
            ("feed", self.feed),
            ("rule", self.rule),
            ("severity", self.severity),
            ("night", self.night),
            ("expected", self.expected),
            ("observed", self.observed),
        ]
        if self.detail:
            rows.append(("detail", self.detail))
        rows += [
            ("breach id", self.breach_id),
            ("detected at", self.at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S (Asia/Shanghai)")),
        ]
        lines = [head, ""] + [f"{name + ':':<13}{value}" for name, value in rows]
        lines += ["", "Sent by the fundx exchange. Notices carry figures and rule names only, never record data."]
        return guard("\n".join(lines) + "\n", what="the message")


@dataclass(frozen=True)
class Delivery:
    """What became of one notice on one channel. ``channel`` is the redacted address."""

    channel: str
    kind: str  # webhook | smtp | apprise
    ok: bool
    error: str | None = None  # the error's type name, e.g. TransientError, AuthError
    message: str | None = None  # content-free: no URL, no secret, no server reply
    attempts: int = 1
    seconds: float = 0.0


# --- settings and parsing -------------------------------------------------------------------------


class NotifySettings(BaseSettings):
    """The notifier's settings: FUNDX_NOTIFY (the channels) and FUNDX_NOTIFY_TIMEOUT."""

    model_config = SettingsConfigDict(env_prefix="FUNDX_", extra="ignore")

    notify: str = Field("", description="where SLA breach and recovery notices go, one entry a line or comma-separated: "
                                     "webhook+https://..., smtp://... or smtps://..., apprise+<Apprise URL>, or env:NAME "
                                     "holding an entry (formats: fundx/notify.py); unset, no notices")
    notify_timeout: float = Field(10.0, gt=0, le=300, description="connect and read timeout of a channel, in seconds")


def load_notify_settings() -> NotifySettings:
    try:
        return NotifySettings()
    except Exception as exc:  # noqa: BLE001 - pydantic ValidationError: name the variable, drop the value
        raise ConfigurationError(_describe_validation(exc)) from None


_ENTRY_START = r"(?:[A-Za-z][A-Za-z0-9+.\-]*://|env:|secret:)"
_SPLIT = re.compile(rf",(?=\s*{_ENTRY_START})")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]{0,31}$")


def split_entries(text: str) -> list[str]:
    """The entries of FUNDX_NOTIFY, in order (see the module's docstring for the separators)."""
    entries: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entries.extend(part.strip() for part in _SPLIT.split(line) if part.strip())
    return entries


def _bad(index: int, problem: str, *, setting: str = SETTING, action: str | None = None) -> ConfigurationError:
    return ConfigurationError(
        f"{setting} entry {index}: {problem}",
        action=action or f"fix entry {index} of {setting} (see fundx.notify for the formats)",
    )


def _is_reference(text: str) -> bool:
    return text.startswith(("env:", "secret:"))


def _redact_path(path: str) -> str:
    """The path with any segment of 16 characters or more (likely a token) replaced by ***."""
    return "/".join("***" if len(seg) >= 16 else seg for seg in path.split("/"))


def _netloc(host: str, port: int | None, user: str | None = None) -> str:
    host = f"[{host}]" if ":" in host else host
    at = f"{quote(user, safe='')}@" if user else ""
    return f"{at}{host}{':' + str(port) if port else ''}"


def _timeout_of(index: int, value: str | None, default: float, setting: str) -> float:
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise _bad(index, "timeout is not a number of seconds", setting=setting) from None
    if not 0 < seconds <= 300:
        raise _bad(index, "timeout must be more than 0 and at most 300 seconds", setting=setting)
    return seconds


def _query(index: int, query: str, setting: str) -> dict[str, str]:
    params: dict[str, str] = {}
    try:
        # a "+" is itself (fundx+alerts@x), not a space: write a space as %20
        pairs = parse_qsl(query.replace("+", "%2B"), keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise _bad(index, "its query string is malformed", setting=setting) from None
    for key, value in pairs:
        if key in params:
            raise _bad(index, f"parameter {key!r} is given twice", setting=setting)
        params[key] = value
    return params


def _secret(index: int, name: str, ref: str, *, literal_ok: bool, setting: str) -> SecretStr:
    """A secret parameter of an entry: a reference, or (inside a referenced entry) the value itself."""
    if literal_ok and not _is_reference(ref):
        return SecretStr(ref)
    value = resolve(ref, setting=f"{setting} entry {index} {name}", secret=True)
    assert isinstance(value, SecretStr)
    return value


# --- channels -------------------------------------------------------------------------------------


class Channel(ABC):
    """One destination of notices. ``render`` builds (and guards) what is sent; ``deliver`` sends it
    once, raising a fundx error typed by what to do (TransientError is retried by the notifier)."""

    kind: ClassVar[str]

    def __init__(self, *, index: int, redacted: str, timeout: float) -> None:
        self.index = index
        self.redacted = redacted
        self.timeout = timeout

    @property
    def label(self) -> str:
        """How log lines and errors name the channel: its number and kind, no address."""
        return f"channel {self.index} ({self.kind})"

    @abstractmethod
    def render(self, notice: Notice) -> Any: ...

    @abstractmethod
    def deliver(self, payload: Any) -> None: ...

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.index} {self.redacted}>"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time()) if when.tzinfo else None


class WebhookChannel(Channel):
    """POSTs the notice as JSON, signed with HMAC-SHA256 when a secret is configured."""

    kind = "webhook"

    def __init__(self, *, url: str, secret: SecretStr | None, **kw: Any) -> None:
        super().__init__(**kw)
        self._url = url
        self._secret = secret

    @classmethod
    def parse(cls, entry: str, *, index: int, timeout: float, literal_ok: bool, setting: str) -> WebhookChannel:
        target = entry[len("webhook+"):] if entry.startswith("webhook+") else entry
        try:
            parts = urlsplit(target)
            port = parts.port
        except ValueError:
            raise _bad(index, "not a valid URL (host or port)", setting=setting) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _bad(index, "a webhook needs an http:// or https:// URL with a host", setting=setting)
        if parts.password is not None and not literal_ok:
            raise _bad(
                index, "a password is written in the URL",
                setting=setting, action=f"put the whole URL in an environment variable and write env:NAME as entry {index}",
            )
        params = _query(index, parts.query, setting)
        secret_ref = params.pop("secret", None)
        if secret_ref == "":
            raise _bad(index, "secret is empty", setting=setting)
        secret = _secret(index, "secret", secret_ref, literal_ok=literal_ok, setting=setting) if secret_ref else None
        seconds = _timeout_of(index, params.pop("timeout", None), timeout, setting)
        url = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", urlencode(params), ""))
        redacted = "webhook+" + urlunsplit(
            (parts.scheme, _netloc(parts.hostname, port, parts.username), _redact_path(parts.path), "", "")
        )
        return cls(url=url, secret=secret, index=index, redacted=redacted, timeout=seconds)

    def render(self, notice: Notice) -> tuple[bytes, dict[str, str]]:
        body = orjson.dumps(notice.as_json(), option=orjson.OPT_SORT_KEYS)
        guard(body.decode("utf-8"), what="the webhook body")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "fundx-exchange",
            "X-Fundx-Schema": SCHEMA,
        }
        if self._secret is not None:
            key = self._secret.get_secret_value().encode("utf-8")
            headers["X-Fundx-Signature"] = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        return body, headers

    def deliver(self, payload: tuple[bytes, dict[str, str]]) -> None:
        body, headers = payload
        try:
            with requests.post(
                self._url, data=body, headers=headers, timeout=(self.timeout, self.timeout),
                allow_redirects=False, stream=True,
            ) as response:
                status = response.status_code
                retry_after = _retry_after(response.headers.get("Retry-After"))
        except requests.exceptions.ConnectTimeout:
            raise TransientError(f"{self.label}: connect timeout") from None
        except requests.exceptions.ReadTimeout:
            raise TransientError(f"{self.label}: read timeout") from None
        except requests.exceptions.ConnectionError as exc:
            raise TransientError(f"{self.label}: {_connection_failure(exc)}") from None
        except requests.exceptions.RequestException as exc:
            raise PermanentError(f"{self.label}: request failed ({type(exc).__name__})") from None
        if 200 <= status < 300:
            return
        message = f"{self.label}: the receiver answered HTTP {status}"
        if status == 429:
            raise RateLimited(message, retry_after=retry_after)
        if status == 408 or 500 <= status < 600:
            raise TransientError(message, retry_after=retry_after)
        if status in (401, 403):
            raise AuthError(message, action="check the webhook's secret and the receiver's access rules")
        raise PermanentError(message, action="check the webhook's URL (redirects are not followed)")


def _connection_failure(exc: BaseException) -> str:
    """What went wrong on the wire, in words that carry no address."""
    text = repr(exc)
    if "refused" in text.lower():
        return "connection refused"
    if "reset" in text.lower():
        return "connection reset"
    if "timed out" in text.lower() or "timeout" in text.lower():
        return "timeout"
    if "NameResolution" in text or "getaddrinfo" in text:
        return "host name not resolved"
    return f"connection error ({type(exc).__name__})"


class SmtpChannel(Channel):
    """A plain-text e-mail through an SMTP server (plain, STARTTLS or implicit TLS)."""

    kind = "smtp"
    _PARAMS = frozenset({"to", "from", "starttls", "password", "cafile", "timeout"})

    def __init__(
        self, *, host: str, port: int, implicit_tls: bool, starttls: bool, user: str | None,
        password: SecretStr | None, sender: str, recipients: list[str], cafile: str | None, **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.host, self.port = host, port
        self.implicit_tls, self.starttls = implicit_tls, starttls
        self.user, self._password = user, password
        self.sender, self.recipients = sender, recipients
        self.cafile = cafile

    @classmethod
    def parse(cls, entry: str, *, index: int, timeout: float, literal_ok: bool, setting: str) -> SmtpChannel:
        try:
            parts = urlsplit(entry)
            port = parts.port
        except ValueError:
            raise _bad(index, "not a valid URL (host or port)", setting=setting) from None
        implicit_tls = parts.scheme == "smtps"
        if not parts.hostname:
            raise _bad(index, "an smtp:// entry needs a host", setting=setting)
        if parts.path not in ("", "/"):
            raise _bad(index, "an smtp:// entry has no path; write the recipients as ?to=", setting=setting)
        params = _query(index, parts.query, setting)
        unknown = sorted(set(params) - cls._PARAMS)
        if unknown:
            raise _bad(index, f"unknown parameter {unknown[0]!r} (known: {', '.join(sorted(cls._PARAMS))})", setting=setting)
        recipients = [a.strip() for a in params.get("to", "").split(",") if a.strip()]
        if not recipients:
            raise _bad(index, "an smtp:// entry needs ?to=address[,address...]", setting=setting)
        sender = params.get("from") or f"fundx@{socket.gethostname() or 'localhost'}"
        for address in [*recipients, sender]:
            if "@" not in parseaddr(address)[1]:
                raise _bad(index, "an address in to= or from= is not an e-mail address", setting=setting)
        starttls = _flag(index, params.get("starttls"), "starttls", setting)
        if implicit_tls and starttls:
            raise _bad(index, "smtps:// is TLS already; starttls=1 belongs to smtp://", setting=setting)
        if parts.password is not None and not literal_ok:
            raise _bad(index, "a password is written in the URL; write ?password=env:NAME", setting=setting)
        user = unquote(parts.username) if parts.username else None
        if "password" in params:
            if not params["password"]:
                raise _bad(index, "password is empty", setting=setting)
            password = _secret(index, "password", params["password"], literal_ok=literal_ok, setting=setting)
        elif parts.password is not None:
            password = SecretStr(unquote(parts.password))
        else:
            password = None
        if (user is None) != (password is None):
            raise _bad(index, "a login needs both user@ and password=", setting=setting)
        if password is not None and not (implicit_tls or starttls) and not _loopback(parts.hostname):
            raise _bad(
                index, "a password would travel unencrypted; use smtps:// or starttls=1", setting=setting,
            )
        cafile = params.get("cafile") or None
        seconds = _timeout_of(index, params.get("timeout"), timeout, setting)
        port = port or (465 if implicit_tls else 25)
        redacted = f"{parts.scheme}://{_netloc(parts.hostname, port, user)}"
        return cls(
            host=parts.hostname, port=port, implicit_tls=implicit_tls, starttls=starttls, user=user,
            password=password, sender=sender, recipients=recipients, cafile=cafile,
            index=index, redacted=redacted, timeout=seconds,
        )

    def render(self, notice: Notice) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = notice.subject
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or "fundx.invalid")
        message["X-Fundx-Breach-Id"] = notice.breach_id
        message["X-Fundx-Kind"] = notice.kind
        message.set_content(notice.text())  # the subject and the text are guarded as they are made
        return message

    def _context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=self.cafile)
        except (OSError, ssl.SSLError):
            raise PermanentError(f"{self.label}: its cafile cannot be read", action="fix cafile= in FUNDX_NOTIFY") from None

    def deliver(self, payload: EmailMessage) -> None:
        try:
            client: smtplib.SMTP
            if self.implicit_tls:
                client = smtplib.SMTP_SSL(
                    self.host, self.port, local_hostname=_ehlo_name(), timeout=self.timeout, context=self._context()
                )
            else:
                client = smtplib.SMTP(self.host, self.port, local_hostname=_ehlo_name(), timeout=self.timeout)
            with client:
                if self.starttls:
                    client.starttls(context=self._context())
                if self.user is not None and self._password is not None:
                    client.login(self.user, self._password.get_secret_value())
                refused = client.send_message(payload, self.sender, self.recipients)
        except FundxError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise AuthError(f"{self.label}: login refused (SMTP {exc.smtp_code})", action="check the SMTP user and password") from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            kind = TransientError if codes and all(400 <= c < 500 for c in codes) else PermanentError
            raise kind(f"{self.label}: every recipient refused (SMTP {', '.join(map(str, sorted(set(codes))))})") from None
        except smtplib.SMTPNotSupportedError:
            raise PermanentError(f"{self.label}: the server does not offer what the entry asks (STARTTLS or AUTH)") from None
        except smtplib.SMTPServerDisconnected:
            raise TransientError(f"{self.label}: the server closed the connection") from None
        except smtplib.SMTPResponseException as exc:  # connect, HELO, sender, data: 4xx again later, 5xx never
            kind = TransientError if exc.smtp_code < 0 or 400 <= exc.smtp_code < 500 else PermanentError
            raise kind(f"{self.label}: the server answered SMTP {exc.smtp_code}") from None
        except smtplib.SMTPException as exc:
            raise PermanentError(f"{self.label}: SMTP failed ({type(exc).__name__})") from None
        except ssl.SSLCertVerificationError:
            raise PermanentError(
                f"{self.label}: the server's TLS certificate is not trusted",
                action="give the CA bundle as cafile= in FUNDX_NOTIFY, or fix the server's certificate",
            ) from None
        except ssl.SSLError as exc:
            raise TransientError(f"{self.label}: TLS failed ({type(exc).__name__})") from None
        except TimeoutError:
            raise TransientError(f"{self.label}: timeout") from None
        except ConnectionRefusedError:
            raise TransientError(f"{self.label}: connection refused") from None
        except ConnectionResetError:
            raise TransientError(f"{self.label}: connection reset") from None
        except socket.gaierror:
            raise TransientError(f"{self.label}: host name not resolved") from None
        except OSError as exc:
            raise TransientError(f"{self.label}: connection error ({type(exc).__name__})") from None
        if refused:
            codes = sorted({code for code, _ in refused.values()})
            raise PermanentError(
                f"{self.label}: {len(refused)} of {len(self.recipients)} recipients refused (SMTP {', '.join(map(str, codes))})",
                action="check the addresses in to=; the other recipients got the notice",
            )


def _flag(index: int, value: str | None, name: str, setting: str) -> bool:
    if value is None or value.lower() in ("0", "false", "no", "off", ""):
        return False
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    raise _bad(index, f"{name} is 1 or 0", setting=setting)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _ehlo_name() -> str:
    """The name given in EHLO: this host's name, without a DNS look-up (getfqdn can hang)."""
    return socket.gethostname() or "localhost"


_HTTP_STATUS = re.compile(r"error=(\d{3})")


class AppriseChannel(Channel):
    """Any service Apprise knows, from an ``apprise+<url>`` entry."""

    kind = "apprise"

    def __init__(self, *, plugin: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self._plugin = plugin

    @classmethod
    def parse(cls, entry: str, *, index: int, timeout: float, literal_ok: bool, setting: str) -> AppriseChannel:
        import apprise

        url = entry[len("apprise+"):]
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        named = f"scheme {scheme!r}" if _SCHEME.match(scheme) else "its scheme"
        if not scheme:
            raise _bad(index, "apprise+ must be followed by an Apprise URL (scheme://...)", setting=setting)
        try:
            query = urlsplit(url).query
        except ValueError:
            raise _bad(index, "not a valid URL", setting=setting) from None
        given = {key for key, _ in parse_qsl(query, keep_blank_values=True)}
        extra = {key: f"{timeout:g}" for key in ("cto", "rto") if key not in given}
        if extra:
            url += ("&" if "?" in url else "?") + urlencode(extra)
        plugin = apprise.Apprise.instantiate(url, asset=_apprise_asset(), suppress_exceptions=True)
        if plugin is None:
            raise _bad(index, f"Apprise cannot use this URL ({named} unknown, or the URL incomplete)", setting=setting)
        try:
            shown = str(plugin.url(privacy=True)).split("?", 1)[0]
        except Exception:  # noqa: BLE001 - a plugin that cannot print itself: show the scheme only
            shown = f"{scheme}://…"
        return cls(plugin=plugin, index=index, redacted=f"apprise+{shown}", timeout=timeout)

    def render(self, notice: Notice) -> tuple[str, str, Any]:
        from apprise import NotifyType

        if notice.kind == "recovered":
            notify_type = NotifyType.SUCCESS
        else:
            notify_type = NotifyType.FAILURE if notice.severity == "critical" else NotifyType.WARNING
        return notice.subject, notice.text(), notify_type

    def deliver(self, payload: tuple[str, str, Any]) -> None:
        title, body, notify_type = payload
        with _apprise_log() as records:
            try:
                sent = self._plugin.notify(body=body, title=title, notify_type=notify_type)
            except Exception as exc:  # noqa: BLE001 - a plugin bug must not stop the other channels
                raise PermanentError(f"{self.label}: Apprise failed ({type(exc).__name__})") from None
        if sent:
            return
        said = " ".join(records)
        status = _HTTP_STATUS.search(said)
        if status:
            code = int(status.group(1))
            message = f"{self.label}: the service answered HTTP {code}"
            if code == 429:
                raise RateLimited(message)
            if code == 408 or 500 <= code < 600:
                raise TransientError(message)
            if code in (401, 403):
                raise AuthError(message, action="check the credentials in the Apprise URL")
            raise PermanentError(message, action="check the Apprise URL")
        if "connection error" in said.lower() or "socket" in said.lower():
            raise TransientError(f"{self.label}: connection error")
        raise TransientError(f"{self.label}: Apprise could not send the notice")


def _apprise_asset() -> Any:
    from apprise import AppriseAsset

    return AppriseAsset(app_id="fundx", app_desc="fundx exchange", app_url="https://fundx.invalid/", async_mode=False)


@contextmanager
def _apprise_log() -> Iterator[list[str]]:
    """The messages Apprise logs at WARNING or above in this thread while the block runs."""
    records: list[str] = []
    thread = threading.get_ident()

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == thread:
                try:
                    records.append(record.getMessage())
                except Exception:  # noqa: BLE001, S110 - a malformed log call in a plugin
                    pass

    handler = _Collect(level=logging.WARNING)
    logger = logging.getLogger("apprise")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


# --- the notifier ---------------------------------------------------------------------------------

_PARSERS: dict[str, Callable[..., Channel]] = {
    "webhook+http": WebhookChannel.parse,
    "webhook+https": WebhookChannel.parse,
    "http": WebhookChannel.parse,
    "https": WebhookChannel.parse,
    "smtp": SmtpChannel.parse,
    "smtps": SmtpChannel.parse,
}


def channel_for(entry: str, *, index: int, timeout: float = 10.0, setting: str = SETTING) -> Channel:
    """The channel one entry of FUNDX_NOTIFY describes (``index`` counts from 1, for messages)."""
    entry = entry.strip()
    reference = entry if _is_reference(entry) else None
    if reference:
        entry = str(resolve(reference, setting=f"{setting} entry {index}", secret=True).get_secret_value()).strip()
        if _is_reference(entry):
            raise _bad(index, "the reference holds another reference", setting=setting)
    scheme = entry.split("://", 1)[0].lower() if "://" in entry else ""
    try:
        if entry.lower().startswith("apprise+"):
            channel: Channel = AppriseChannel.parse(
                entry, index=index, timeout=timeout, literal_ok=reference is not None, setting=setting
            )
        elif scheme in _PARSERS:
            channel = _PARSERS[scheme](entry, index=index, timeout=timeout, literal_ok=reference is not None, setting=setting)
        elif not scheme:
            raise _bad(index, "not a URL (scheme://...) nor a reference (env:NAME, secret:BLOCK)", setting=setting)
        else:
            named = f"scheme {scheme!r}" if _SCHEME.match(scheme) else "its scheme"
            raise _bad(
                index, f"unknown {named}; use webhook+https://, smtp://, smtps:// or apprise+<url>", setting=setting
            )
    except ConfigurationError as error:
        if reference:  # the message must not show what the reference holds: it names the reference only
            raise ConfigurationError(f"{error} (entry read from {reference})", action=error.action) from None
        raise
    if reference:
        channel.redacted = reference
    return channel


class Notifier:
    """Sends notices to every configured channel; one channel's failure does not stop the others."""

    def __init__(
        self, channels: Sequence[Channel], *, settings: Settings | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.channels = list(channels)
        self.settings = settings or get_settings()
        self._sleep = sleep

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, notify: NotifySettings | None = None) -> Notifier:
        """The channels of FUNDX_NOTIFY (none if it is unset), with FUNDX_NOTIFY_TIMEOUT."""
        notify = notify or load_notify_settings()
        return cls.from_urls(notify.notify, timeout=notify.notify_timeout, settings=settings)

    @classmethod
    def from_urls(
        cls, urls: str | Sequence[str], *, timeout: float = 10.0, settings: Settings | None = None,
        setting: str = SETTING, sleep: Callable[[float], None] = time.sleep,
    ) -> Notifier:
        """Channels from entries given directly (a FUNDX_NOTIFY-style text, or a list of entries)."""
        entries = split_entries(urls) if isinstance(urls, str) else [u.strip() for u in urls if u.strip()]
        channels = [channel_for(e, index=i, timeout=timeout, setting=setting) for i, e in enumerate(entries, 1)]
        return cls(channels, settings=settings, sleep=sleep)

    def __bool__(self) -> bool:
        return bool(self.channels)

    def __len__(self) -> int:
        return len(self.channels)

    def send(self, notice: Notice) -> list[Delivery]:
        """Send ``notice`` to every channel; one :class:`Delivery` per channel, in order.

        Raises ValueError, before anything is sent, if a rendered text fails :func:`guard`;
        delivery failures are returned, never raised.
        """
        payloads = [channel.render(notice) for channel in self.channels]  # the guard runs here, before any send
        deliveries = []
        for channel, payload in zip(self.channels, payloads):
            deliveries.append(self._deliver(channel, payload, notice))
        return deliveries

    def _deliver(self, channel: Channel, payload: Any, notice: Notice) -> Delivery:
        retrier = Retrier(self.settings, feed=notice.feed, sleep=self._sleep)
        started = time.monotonic()
        try:
            retrier(lambda: channel.deliver(payload), what=f"{notice.kind} notice to {channel.label}")
        except Exception as exc:  # noqa: BLE001 - a failed channel is reported, and the others still go
            error = exc if isinstance(exc, FundxError) else PermanentError(
                f"{channel.label}: unexpected {type(exc).__name__}"
            )
            delivery = Delivery(
                channel=channel.redacted, kind=channel.kind, ok=False, error=error.kind,
                message=_strip_feed(error), attempts=retrier.retries + 1, seconds=time.monotonic() - started,
            )
            log.warning(
                "%s notice %s to %s %s failed after %d tries: %s (%s)",
                notice.kind, notice.breach_id, channel.label, channel.redacted, delivery.attempts,
                delivery.error, delivery.message,
            )
            return delivery
        delivery = Delivery(
            channel=channel.redacted, kind=channel.kind, ok=True,
            attempts=retrier.retries + 1, seconds=time.monotonic() - started,
        )
        log.info(
            "%s notice %s sent to %s %s (%d tries, %.2f s)",
            notice.kind, notice.breach_id, channel.label, channel.redacted, delivery.attempts, delivery.seconds,
        )
        return delivery


def _strip_feed(error: FundxError) -> str:
    message = str(error)
    if error.feed and message.startswith(f"{error.feed}: "):
        message = message[len(error.feed) + 2:]
    return message


def send_test(notifier: Notifier) -> list[Delivery]:
    """Send a test notice (a warning about the rule ``notify_test`` of the feed ``fundx.test``) to
    every channel of ``notifier``; what ``fundx notify test`` runs."""
    at = now()
    notice = Notice(
        kind="breach",
        feed="fundx.test",
        rule="notify_test",
        severity="warning",
        night=at.date().isoformat(),
        expected="a test notice",
        observed="a test notice",
        detail="a test of the fundx notifier (fundx notify test); no SLA was breached",
        breach_id=f"test:{at.strftime('%Y%m%dT%H%M%S')}",
        at=at,
    )
    return notifier.send(notice)
