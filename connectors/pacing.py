"""Keeping to an agency's rate limit without being told off: requests paced at the rate the agency announces.

An agency that limits its API says so in its answers, as the IETF's RateLimit header fields do
(draft-ietf-httpapi-ratelimit-headers): ``RateLimit-Policy: 50;w=1`` (a quota of 50 requests per window of
1 second; the later drafts write it ``"default";q=50;w=1``), and ``RateLimit: limit=50, remaining=12, reset=1``
or the older ``RateLimit-Remaining`` / ``RateLimit-Reset`` (also as ``X-RateLimit-*``). Without them, the only
signal is a 429 with ``Retry-After`` in whole seconds: a client that runs into the limit sends a burst, is
refused, sleeps the second it is told, and sends the next burst — on a 50-a-second agency about half its time
asleep. :class:`Pacer` sends what remains of the quota at once and then spaces the requests at the announced
rate (window / quota apart, one as each is refilled), so no request is refused; where only ``remaining`` and
``reset`` are given, it waits for the reset once nothing remains. It never waits longer than the agency asks, and a 429 still gets its Retry-After
(fundx.core.retry).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping

#: a policy's quota and window: ``50;w=1``, ``"default";q=50;w=1``, ``q=50; w=60`` (the first policy counts)
_QUOTA = re.compile(r"(?:^|;|\s)q\s*=\s*(\d+)|^\s*(\d+)")
_WINDOW = re.compile(r"(?:^|;|\s)w\s*=\s*(\d+(?:\.\d+)?)")
_ITEM = re.compile(r"(limit|remaining|reset|r|t)\s*=\s*(\d+(?:\.\d+)?)")
#: the longest pause an announcement may ask for between two requests or until a reset (a bad header is not
#: allowed to stall a pull: the pull's deadline bounds it anyway)
MAX_PAUSE = 60.0


def _header(headers: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            return value
    return None


def interval_of(headers: Mapping[str, str]) -> float | None:
    """Seconds between two requests that keep to the announced policy (window / quota), or None."""
    policy = _header(headers, "RateLimit-Policy", "X-RateLimit-Policy")
    if not policy:
        return None
    first = policy.split(",")[0]
    quota = _QUOTA.search(first)
    window = _WINDOW.search(first)
    if quota is None or window is None:
        return None
    q = int(quota.group(1) or quota.group(2))
    w = float(window.group(1))
    if q <= 0 or w <= 0:
        return None
    return min(w / q, MAX_PAUSE)


def quota_left(headers: Mapping[str, str]) -> tuple[float | None, float | None]:
    """(requests remaining, seconds until the quota resets) as the answer says them; None for what it does not."""
    combined = _header(headers, "RateLimit")
    remaining = reset = None
    if combined:
        items = {k: float(v) for k, v in _ITEM.findall(combined)}
        remaining = items.get("remaining", items.get("r"))
        reset = items.get("reset", items.get("t"))
    if remaining is None:
        text = _header(headers, "RateLimit-Remaining", "X-RateLimit-Remaining")
        remaining = float(text) if text and text.strip().isdigit() else None
    if reset is None:
        text = _header(headers, "RateLimit-Reset", "X-RateLimit-Reset")
        try:
            reset = float(text) if text else None
        except ValueError:
            reset = None
    return remaining, (reset if reset is None or reset >= 0 else None)


def exhausted_for(headers: Mapping[str, str]) -> float | None:
    """Seconds until the quota resets when the answer says none remains, else None."""
    remaining, reset = quota_left(headers)
    if remaining is None or remaining > 0 or reset is None:
        return None
    return min(reset, MAX_PAUSE)


class Pacer:
    """When the next request may go, from what the agency's last answers announced (module docstring)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._clock, self._sleep = clock, sleep
        self._interval: float | None = None
        self._next = 0.0
        self.waited = 0.0  # seconds spent waiting, for the pull's figures

    def wait(self) -> None:
        """Sleep until the next request may go (at once when nothing was announced)."""
        pause = self._next - self._clock()
        if pause > 0:
            self._sleep(pause)
            self.waited += pause

    def sent(self, at: float, headers: Mapping[str, str]) -> None:
        """A request sent at ``at`` (the clock's time) was answered with ``headers``."""
        interval = interval_of(headers)
        if interval is not None:
            self._interval = interval
        remaining, _ = quota_left(headers)
        # what remains of a burst goes at once; then one request per interval, as the quota refills
        spaced = self._interval is not None and (remaining is None or remaining < 1)
        next_at = at + self._interval if spaced and self._interval is not None else 0.0
        reset = exhausted_for(headers)
        if reset is not None and self._interval is None:  # a policy's spacing keeps the quota from running out
            next_at = max(next_at, self._clock() + reset)
        self._next = next_at
