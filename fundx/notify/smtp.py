"""The SMTP channel: the notice as a plain-text e-mail, over plain SMTP, STARTTLS or implicit TLS;
a password only over TLS (or to a loopback server), and only as a reference (env:NAME, secret:BLOCK)."""

from __future__ import annotations

import ipaddress
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from fundx.core.errors import AuthError, FundxError, PermanentError, TransientError
from fundx.notify.channel import Channel, bad_entry, netloc, query_params, secret_param, timeout_of
from fundx.notify.notice import Notice


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
            raise bad_entry(index, "not a valid URL (host or port)", setting=setting) from None
        implicit_tls = parts.scheme == "smtps"
        if not parts.hostname:
            raise bad_entry(index, "an smtp:// entry needs a host", setting=setting)
        if parts.path not in ("", "/"):
            raise bad_entry(index, "an smtp:// entry has no path; write the recipients as ?to=", setting=setting)
        params = query_params(index, parts.query, setting)
        unknown = sorted(set(params) - cls._PARAMS)
        if unknown:
            raise bad_entry(index, f"unknown parameter {unknown[0]!r} (known: {', '.join(sorted(cls._PARAMS))})", setting=setting)
        recipients = [a.strip() for a in params.get("to", "").split(",") if a.strip()]
        if not recipients:
            raise bad_entry(index, "an smtp:// entry needs ?to=address[,address...]", setting=setting)
        sender = params.get("from") or f"fundx@{socket.gethostname() or 'localhost'}"
        for address in [*recipients, sender]:
            if "@" not in parseaddr(address)[1]:
                raise bad_entry(index, "an address in to= or from= is not an e-mail address", setting=setting)
        starttls = _flag(index, params.get("starttls"), "starttls", setting)
        if implicit_tls and starttls:
            raise bad_entry(index, "smtps:// is TLS already; starttls=1 belongs to smtp://", setting=setting)
        if parts.password is not None and not literal_ok:
            raise bad_entry(index, "a password is written in the URL; write ?password=env:NAME", setting=setting)
        user = unquote(parts.username) if parts.username else None
        if "password" in params:
            if not params["password"]:
                raise bad_entry(index, "password is empty", setting=setting)
            password = secret_param(index, "password", params["password"], literal_ok=literal_ok, setting=setting)
        elif parts.password is not None:
            password = SecretStr(unquote(parts.password))
        else:
            password = None
        if (user is None) != (password is None):
            raise bad_entry(index, "a login needs both user@ and password=", setting=setting)
        if password is not None and not (implicit_tls or starttls) and not _loopback(parts.hostname):
            raise bad_entry(
                index, "a password would travel unencrypted; use smtps:// or starttls=1", setting=setting,
            )
        cafile = params.get("cafile") or None
        seconds = timeout_of(index, params.get("timeout"), timeout, setting)
        port = port or (465 if implicit_tls else 25)
        redacted = f"{parts.scheme}://{netloc(parts.hostname, port, user)}"
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
    raise bad_entry(index, f"{name} is 1 or 0", setting=setting)


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
