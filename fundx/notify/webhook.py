"""The webhook channel: the notice POSTed as JSON (schema ``fundx.notice/1``), signed with HMAC-SHA256
when its entry names a secret; what the receiver's status means comes from fundx.core.http_status."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson
import requests
from pydantic import SecretStr

from fundx.core.errors import AuthError, PermanentError, TransientError
from fundx.core.http_status import StatusAction, retry_after_seconds, rule_for
from fundx.notify.channel import (
    Channel,
    bad_entry,
    netloc,
    query_params,
    redact_path,
    secret_param,
    timeout_of,
)
from fundx.notify.notice import SCHEMA, Notice, guard


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
            raise bad_entry(index, "not a valid URL (host or port)", setting=setting) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad_entry(index, "a webhook needs an http:// or https:// URL with a host", setting=setting)
        if parts.password is not None and not literal_ok:
            raise bad_entry(
                index, "a password is written in the URL",
                setting=setting, action=f"put the whole URL in an environment variable and write env:NAME as entry {index}",
            )
        params = query_params(index, parts.query, setting)
        secret_ref = params.pop("secret", None)
        if secret_ref == "":
            raise bad_entry(index, "secret is empty", setting=setting)
        secret = secret_param(index, "secret", secret_ref, literal_ok=literal_ok, setting=setting) if secret_ref else None
        seconds = timeout_of(index, params.pop("timeout", None), timeout, setting)
        url = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", urlencode(params), ""))
        redacted = "webhook+" + urlunsplit(
            (parts.scheme, netloc(parts.hostname, port, parts.username), redact_path(parts.path), "", "")
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
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
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
        rule = rule_for(status)
        if rule.action is StatusAction.RETRY and issubclass(rule.error, TransientError):
            raise rule.error(message, retry_after=retry_after)
        if rule.action is StatusAction.RENEW:
            raise AuthError(message, action="check the webhook's secret and the receiver's access rules")
        # not found, a redirect, any other refusal: the entry's URL is to fix, recorded as a PermanentError
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
