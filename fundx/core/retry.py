"""Retrying what is transient, within a pull's deadline: one helper every transport uses.

Exponential backoff with full jitter (a random delay between 0 and base * 2**n, capped), an agency's
Retry-After honoured up to the same cap, a fixed number of tries from Settings. Only
:class:`~fundx.core.errors.TransientError` is retried; everything else goes straight up. Log lines name
the feed, what was tried (``page 3``, ``file 2``) and the error's type — never URLs, tokens or
record content.

A pull's retrier carries the pull's :class:`Deadline` (FUNDX_PULL_DEADLINE): no try starts and no
backoff sleeps past it, and :class:`~fundx.core.errors.DeadlineExceeded` — transient, but the pull's time
is up — is never retried. The transports read the same deadline to bound each request or query.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from fundx.core.errors import DeadlineExceeded, TransientError
from fundx.core.settings import Settings

log = logging.getLogger("fundx.retry")

T = TypeVar("T")


class Deadline:
    """The moment one feed's pull must be over, on the monotonic clock (wall-clock jumps do not move it)."""

    def __init__(self, seconds: float, *, feed: str, setting: str = "FUNDX_PULL_DEADLINE",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.feed, self.setting = seconds, feed, setting
        self._clock = clock
        self.at = clock() + seconds

    @classmethod
    def for_pull(cls, settings: Settings, *, feed: str) -> Deadline:
        """The deadline of a pull of ``feed`` starting now (FUNDX_PULL_DEADLINE)."""
        return cls(settings.pull_deadline, feed=feed)

    def remaining(self) -> float:
        """Seconds left; zero or less once it has passed."""
        return self.at - self._clock()

    @property
    def passed(self) -> bool:
        return self.remaining() <= 0

    def exceeded(self, what: str) -> DeadlineExceeded:
        """The error of this pull past its deadline, while doing ``what`` (``page 3``, ``query``)."""
        return DeadlineExceeded(
            f"{what}: the pull reached its deadline of {self.seconds:g} s ({self.setting}); "
            "the agency answers too slowly, nothing of this pull is delivered",
            feed=self.feed,
            action=f"ask the agency whether its service is degraded; if the feed really needs longer, raise {self.setting}",
        )

    def check(self, what: str) -> None:
        """Raise :meth:`exceeded` if the deadline has passed."""
        if self.passed:
            raise self.exceeded(what)


class Retrier:
    """Runs calls with retries for one feed's pull and counts the retries made.

    ``deadline``: the pull's (see :class:`Deadline`); None for callers outside a pull (notices).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        feed: str,
        deadline: Deadline | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.attempts = settings.retry_attempts
        self.base_delay = settings.retry_base_delay
        self.max_delay = settings.retry_max_delay
        self.feed = feed
        self.deadline = deadline
        self.retries = 0
        self._sleep = sleep
        self._jitter = jitter

    @classmethod
    def for_pull(cls, settings: Settings, *, feed: str) -> Retrier:
        """A retrier for one pull of ``feed``, bounded by the pull's deadline from now."""
        return cls(settings, feed=feed, deadline=Deadline.for_pull(settings, feed=feed))

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
            if self.deadline is not None:
                self.deadline.check(what)
            try:
                return call()
            except DeadlineExceeded:
                raise  # the pull's time is up: another try would only hold back the night's other feeds
            except TransientError as error:
                failures += 1
                if failures >= self.attempts:
                    raise _gave_up(error, failures, what) from None
                wait = self.delay(failures, error)
                if self.deadline is not None and wait >= self.deadline.remaining():
                    # sleeping would end past the deadline: say so now rather than wait for nothing
                    log.warning("%s: %s failed (%s); no time left for another try before the pull's deadline",
                                self.feed, what, error.kind)
                    raise self.deadline.exceeded(what) from None
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
