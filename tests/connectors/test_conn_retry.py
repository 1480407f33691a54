"""The retry helper: backoff with full jitter, Retry-After honoured and capped, permanent errors not retried."""

from __future__ import annotations

import logging

import pytest

from fundx.core.errors import AuthError, DeadlineExceeded, IncompletePull, RateLimited, TransientError
from fundx.core.retry import Deadline, Retrier
from fundx.core.settings import Settings


def make(attempts=4, base=0.5, cap=3.0):
    sleeps: list[float] = []
    settings = Settings(retry_attempts=attempts, retry_base_delay=base, retry_max_delay=cap)
    return Retrier(settings, feed="police.deaths", sleep=sleeps.append, jitter=lambda: 1.0), sleeps


def failing(errors):
    calls = iter(errors)

    def call():
        error = next(calls, None)
        if error is not None:
            raise error
        return "done"

    return call


def test_retries_transient_then_succeeds_with_exponential_capped_delays():
    retrier, sleeps = make(attempts=5, base=1.0, cap=3.0)
    result = retrier(failing([TransientError("x")] * 4), what="page 2")
    assert result == "done"
    assert sleeps == [1.0, 2.0, 3.0, 3.0]
    assert retrier.retries == 4


def test_full_jitter_stays_under_the_ceiling():
    settings = Settings(retry_attempts=3, retry_base_delay=1.0, retry_max_delay=10.0)
    sleeps: list[float] = []
    retrier = Retrier(settings, feed="f.x", sleep=sleeps.append, jitter=lambda: 0.25)
    retrier(failing([TransientError("x")] * 2), what="page 2")
    assert sleeps == [0.25, 0.5]


def test_retry_after_is_honoured_and_capped():
    retrier, sleeps = make(cap=3.0)
    retrier(failing([RateLimited("x", retry_after=1.0), RateLimited("x", retry_after=60.0)]), what="page 2")
    assert sleeps == [1.0, 3.0]


def test_gives_up_with_the_same_type_saying_how_many_tries():
    retrier, sleeps = make(attempts=3)
    with pytest.raises(IncompletePull) as info:
        retrier(failing([IncompletePull("cut short", feed="police.deaths")] * 5), what="page 2")
    assert "after 3 tries" in str(info.value)
    assert str(info.value).startswith("police.deaths: cut short")
    assert info.value.feed == "police.deaths"
    assert len(sleeps) == 2


def test_permanent_errors_are_not_retried():
    retrier, sleeps = make()
    with pytest.raises(AuthError):
        retrier(failing([AuthError("no")]), what="page 1")
    assert sleeps == [] and retrier.retries == 0


def test_retry_log_names_feed_page_and_type_only(caplog):
    retrier, _ = make()
    with caplog.at_level(logging.WARNING, logger="fundx.retry"):
        retrier(failing([TransientError("secret-detail-xyz")]), what="page 7")
    text = caplog.text
    assert "police.deaths" in text and "page 7" in text and "TransientError" in text
    assert "secret-detail-xyz" not in text


# --- the pull's deadline (FUNDX_PULL_DEADLINE) -----------------------------------------------------------


class Clock:
    """A monotonic clock that the retrier's sleeps move forward (so that the deadline is met exactly)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def bounded(seconds: float, attempts: int = 20, base: float = 1.0, cap: float = 4.0):
    clock = Clock()
    settings = Settings(retry_attempts=attempts, retry_base_delay=base, retry_max_delay=cap)
    deadline = Deadline(seconds, feed="police.deaths", clock=clock)
    return Retrier(settings, feed="police.deaths", deadline=deadline, sleep=clock.sleep, jitter=lambda: 1.0), clock


def test_no_backoff_sleeps_past_the_pull_deadline():
    retrier, clock = bounded(10.0)
    with pytest.raises(DeadlineExceeded) as info:
        retrier(failing([TransientError("x")] * 50), what="page 3")
    assert clock.sleeps == [1.0, 2.0, 4.0]  # 7 s slept; the next 4 s would end past the 10 s deadline
    assert clock.now - 100.0 <= 10.0
    assert str(info.value).startswith("police.deaths: page 3: the pull reached its deadline of 10 s (FUNDX_PULL_DEADLINE)")
    assert "FUNDX_PULL_DEADLINE" in info.value.action
    assert isinstance(info.value, TransientError)  # the next night may find the agency well


def test_retry_after_is_not_waited_past_the_deadline():
    retrier, clock = bounded(2.0, cap=30.0)
    with pytest.raises(DeadlineExceeded):
        retrier(failing([RateLimited("x", retry_after=5.0)]), what="page 2")
    assert clock.sleeps == []


def test_a_deadline_exceeded_inside_a_call_is_not_retried():
    retrier, clock = bounded(60.0)
    with pytest.raises(DeadlineExceeded):
        retrier(failing([DeadlineExceeded("page 2: past it", feed="police.deaths")] * 3), what="page 2")
    assert clock.sleeps == [] and retrier.retries == 0


def test_no_try_starts_after_the_deadline():
    retrier, clock = bounded(5.0)
    calls: list[int] = []
    clock.now += 5.0
    with pytest.raises(DeadlineExceeded):
        retrier(lambda: calls.append(1), what="page 9")
    assert calls == []


def test_within_the_deadline_the_retrier_behaves_as_before():
    retrier, clock = bounded(60.0, attempts=5, cap=3.0)
    assert retrier(failing([TransientError("x")] * 4), what="page 2") == "done"
    assert clock.sleeps == [1.0, 2.0, 3.0, 3.0] and retrier.retries == 4
