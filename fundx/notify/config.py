"""FUNDX_NOTIFY read: the notifier's settings, the entries of the variable, and the channel each entry
describes (the formats are in :mod:`fundx.notify`)."""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from fundx.core.errors import ConfigurationError
from fundx.core.settings import _describe_validation, resolve
from fundx.notify.apprise import AppriseChannel
from fundx.notify.channel import SCHEME, SETTING, Channel, bad_entry, is_reference
from fundx.notify.smtp import SmtpChannel
from fundx.notify.webhook import WebhookChannel


class NotifySettings(BaseSettings):
    """The notifier's settings: FUNDX_NOTIFY (the channels) and FUNDX_NOTIFY_TIMEOUT."""

    model_config = SettingsConfigDict(env_prefix="FUNDX_", extra="ignore")

    notify: str = Field("", description="where SLA breach and recovery notices go, one entry a line or comma-separated: "
                                     "webhook+https://..., smtp://... or smtps://..., apprise+<Apprise URL>, or env:NAME "
                                     "holding an entry (formats: fundx/notify/__init__.py); unset, no notices")
    notify_timeout: float = Field(10.0, gt=0, le=300, description="connect and read timeout of a channel, in seconds")


def load_notify_settings() -> NotifySettings:
    try:
        return NotifySettings()
    except Exception as exc:  # noqa: BLE001 - pydantic ValidationError: name the variable, drop the value
        raise ConfigurationError(_describe_validation(exc)) from None


_ENTRY_START = r"(?:[A-Za-z][A-Za-z0-9+.\-]*://|env:|secret:)"
_SPLIT = re.compile(rf",(?=\s*{_ENTRY_START})")


def split_entries(text: str) -> list[str]:
    """The entries of FUNDX_NOTIFY, in order (see :mod:`fundx.notify` for the separators)."""
    entries: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entries.extend(part.strip() for part in _SPLIT.split(line) if part.strip())
    return entries


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
    reference = entry if is_reference(entry) else None
    if reference:
        entry = str(resolve(reference, setting=f"{setting} entry {index}", secret=True).get_secret_value()).strip()
        if is_reference(entry):
            raise bad_entry(index, "the reference holds another reference", setting=setting)
    scheme = entry.split("://", 1)[0].lower() if "://" in entry else ""
    try:
        if entry.lower().startswith("apprise+"):
            channel: Channel = AppriseChannel.parse(
                entry, index=index, timeout=timeout, literal_ok=reference is not None, setting=setting
            )
        elif scheme in _PARSERS:
            channel = _PARSERS[scheme](entry, index=index, timeout=timeout, literal_ok=reference is not None, setting=setting)
        elif not scheme:
            raise bad_entry(index, "not a URL (scheme://...) nor a reference (env:NAME, secret:BLOCK)", setting=setting)
        else:
            named = f"scheme {scheme!r}" if SCHEME.match(scheme) else "its scheme"
            raise bad_entry(
                index, f"unknown {named}; use webhook+https://, smtp://, smtps:// or apprise+<url>", setting=setting
            )
    except ConfigurationError as error:
        if reference:  # the message must not show what the reference holds: it names the reference only
            raise ConfigurationError(f"{error} (entry read from {reference})", action=error.action) from None
        raise
    if reference:
        channel.redacted = reference
    return channel
