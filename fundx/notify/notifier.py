"""Sending a notice: to every configured channel, each with the exchange's retries, one channel's
failure never stopping the others; what became of it on each channel is a :class:`Delivery`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fundx.core.errors import FundxError, PermanentError
from fundx.core.retry import Retrier
from fundx.core.settings import Settings, get_settings
from fundx.core.timeutil import now
from fundx.notify.channel import SETTING, Channel
from fundx.notify.config import NotifySettings, channel_for, load_notify_settings, split_entries
from fundx.notify.notice import Notice

log = logging.getLogger("fundx.notify")


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
