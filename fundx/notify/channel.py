"""A channel of notices: the base every kind (webhook, SMTP, Apprise) extends, and the pieces of a
FUNDX_NOTIFY entry that their parsers read the same way — query, secrets, timeout, the redacted address.

An error in an entry is a :class:`~fundx.core.errors.ConfigurationError` naming the setting and the
entry's number (counted from 1), never what the entry holds.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote

from pydantic import SecretStr

from fundx.core.errors import ConfigurationError
from fundx.core.settings import resolve
from fundx.notify.notice import Notice

#: the environment variable that lists the channels
SETTING = "FUNDX_NOTIFY"
#: a URL scheme that may be quoted in an error (anything else is "its scheme")
SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]{0,31}$")


def bad_entry(index: int, problem: str, *, setting: str = SETTING, action: str | None = None) -> ConfigurationError:
    return ConfigurationError(
        f"{setting} entry {index}: {problem}",
        action=action or f"fix entry {index} of {setting} (see fundx.notify for the formats)",
    )


def is_reference(text: str) -> bool:
    return text.startswith(("env:", "secret:"))


def redact_path(path: str) -> str:
    """The path with any segment of 16 characters or more (likely a token) replaced by ***."""
    return "/".join("***" if len(seg) >= 16 else seg for seg in path.split("/"))


def netloc(host: str, port: int | None, user: str | None = None) -> str:
    host = f"[{host}]" if ":" in host else host
    at = f"{quote(user, safe='')}@" if user else ""
    return f"{at}{host}{':' + str(port) if port else ''}"


def timeout_of(index: int, value: str | None, default: float, setting: str) -> float:
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise bad_entry(index, "timeout is not a number of seconds", setting=setting) from None
    if not 0 < seconds <= 300:
        raise bad_entry(index, "timeout must be more than 0 and at most 300 seconds", setting=setting)
    return seconds


def query_params(index: int, query: str, setting: str) -> dict[str, str]:
    params: dict[str, str] = {}
    try:
        # a "+" is itself (fundx+alerts@x), not a space: write a space as %20
        pairs = parse_qsl(query.replace("+", "%2B"), keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise bad_entry(index, "its query string is malformed", setting=setting) from None
    for key, value in pairs:
        if key in params:
            raise bad_entry(index, f"parameter {key!r} is given twice", setting=setting)
        params[key] = value
    return params


def secret_param(index: int, name: str, ref: str, *, literal_ok: bool, setting: str) -> SecretStr:
    """A secret parameter of an entry: a reference, or (inside a referenced entry) the value itself."""
    if literal_ok and not is_reference(ref):
        return SecretStr(ref)
    value = resolve(ref, setting=f"{setting} entry {index} {name}", secret=True)
    assert isinstance(value, SecretStr)
    return value


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
