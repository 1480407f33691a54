"""A per-address throttle for the console's sign-in form: password spraying across accounts from one
client meets a wall before the per-account lock (:mod:`fundx.console.accounts`) is the only one.

An address may make ``attempts`` sign-in attempts in any ``window`` seconds; the next is answered 429
with a Retry-After until the oldest of them leaves the window. A successful sign-in gives its attempt
back, so stewards signing in from one office address (or through one TLS proxy: the console sees its
peer, not forwarded headers) are not held up by their own sign-ins, only by failures. Memory is
bounded: the ``addresses`` most recently seen are remembered (least recently seen forgotten first),
each with at most ``attempts`` times. The addresses stay in memory only: never logged or stored.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class Throttle:
    """At most ``attempts`` per address in any ``window`` seconds, remembering ``addresses`` addresses."""

    def __init__(self, attempts: int, window: float, addresses: int, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if attempts < 1 or window <= 0 or addresses < 1:
            raise ValueError("a throttle needs attempts >= 1, window > 0 and addresses >= 1")
        self.attempts, self.window, self.addresses = attempts, window, addresses
        self._clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()  # the app is async, but tests and threadpools may share one

    def take(self, address: str) -> float | None:
        """Count an attempt from ``address``: None when it may go ahead, else the seconds to wait
        (the attempt is then not counted: waiting it out always works)."""
        now = self._clock()
        with self._lock:
            times = self._seen.get(address)
            if times is None:
                times = self._seen[address] = deque(maxlen=self.attempts)
                while len(self._seen) > self.addresses:
                    self._seen.popitem(last=False)
            else:
                self._seen.move_to_end(address)
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= self.attempts:
                return max(times[0] + self.window - now, 0.001)
            times.append(now)
            return None

    def give_back(self, address: str) -> None:
        """Return the latest attempt of ``address`` (it signed in: typing one's own password is not guessing)."""
        with self._lock:
            times = self._seen.get(address)
            if times:
                times.pop()

    def __len__(self) -> int:
        """Addresses remembered now."""
        return len(self._seen)
