"""Retrying what is transient: one helper every transport uses.

Exponential backoff with full jitter (a random delay between 0 and base * 2**n, capped), an agency's
Retry-After honoured up to the same cap, a fixed number of tries from Settings. Only
:class:`~fundx.errors.TransientError` is retried; everything else goes straight up. Log lines name
the feed, what was tried (``page 3``, ``file 2``) and the error's type — never URLs, tokens or
record content.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from fundx.errors import TransientError
from fundx.settings import Settings

log = logging.getLogger("fundx.retry")

T = TypeVar("T")


class Retrier:
    """Runs calls with retries for one feed's pull and counts the retries made."""

    def __init__(
        self,
        settings: Settings,
        *,
        feed: str,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.attempts = settings.retry_attempts
        self.base_delay = settings.retry_base_delay
        self.max_delay = settings.retry_max_delay
        self.feed = feed
        self.retries = 0
        self._sleep = sleep
        self._jitter = jitter

    def delay(self, failures: int, error: TransientError) -> float:
        """Seconds to wait after the ``failures``-th failure (1-based) of one call."""
        if error.retry_after is not None and error.retry_after >= 0:
            return min(float(error.retry_after), self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (failures - 1)))
        return ceiling * self._jitter()

    def __call__(self, call: Callable[[], T], *, what: str) -> T:
        """``call()``, tried up to ``settings.retry_attempts`` times while it raises TransientError."""
        failures = 0
        while True:
            try:
                return call()
            except TransientError as error:
                failures += 1
                if failures >= self.attempts:
                    raise _gave_up(error, failures, what) from None
                wait = self.delay(failures, error)
                self.retries += 1
                log.warning(
                    "%s: %s failed (%s), try %d of %d in %.2f s",
                    self.feed, what, error.kind, failures + 1, self.attempts, wait,
                )
                self._sleep(wait)


def _gave_up(error: TransientError, tries: int, what: str) -> TransientError:
    """The last error again, of the same type, saying how many tries were made."""
    message = str(error)
    if error.feed and message.startswith(f"{error.feed}: "):
        message = message[len(error.feed) + 2 :]
    final = type(error)(
        f"{message} (gave up on {what} after {tries} tries)",
        feed=error.feed,
        action=error.action,
        retry_after=error.retry_after,
    )
    final.__cause__ = None
    return final
