"""Pacing REST requests at the rate an agency announces (connectors/pacing.py): the IETF draft's RateLimit header
fields, old and new spellings; spaced at window / quota, never longer than asked; against the sandbox's token
bucket, paced requests are never refused where unpaced ones are."""

from __future__ import annotations

import time

import pytest

from connectors.pacing import MAX_PAUSE, Pacer, exhausted_for, interval_of
from sandbox.rest import TokenBucket


@pytest.mark.parametrize(("headers", "interval"), [
    ({"RateLimit-Policy": "50;w=1"}, 0.02),
    ({"RateLimit-Policy": '"default";q=100;w=60'}, 0.6),
    ({"RateLimit-Policy": "10;w=1, 1000;w=3600"}, 0.1),  # the first policy counts
    ({"X-RateLimit-Policy": "q=4; w=2"}, 0.5),
    ({"RateLimit-Policy": "1;w=86400"}, MAX_PAUSE),  # never a pause past the cap
    ({"RateLimit-Policy": "0;w=1"}, None),
    ({"RateLimit-Policy": "fast"}, None),
    ({}, None),
])
def test_the_interval_is_the_window_over_the_quota(headers, interval):
    assert interval_of(headers) == (pytest.approx(interval) if interval is not None else None)


@pytest.mark.parametrize(("headers", "wait"), [
    ({"RateLimit": "limit=50, remaining=0, reset=1"}, 1.0),
    ({"RateLimit": "limit=50, remaining=3, reset=1"}, None),
    ({"RateLimit": '"default";r=0;t=7'}, 7.0),
    ({"RateLimit-Remaining": "0", "RateLimit-Reset": "2"}, 2.0),
    ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "5"}, 5.0),
    ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "soon"}, None),
    ({"RateLimit-Remaining": "0"}, None),
])
def test_an_exhausted_quota_waits_for_its_reset(headers, wait):
    assert exhausted_for(headers) == wait


class Clock:
    def __init__(self):
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_requests_are_spaced_by_the_policy_and_not_longer():
    clock = Clock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    pacer.wait()  # nothing announced yet: at once
    pacer.sent(clock(), {"RateLimit-Policy": "50;w=1", "RateLimit": "limit=50, remaining=0, reset=1"})
    clock.now += 0.005  # the answer took 5 ms
    pacer.wait()
    assert clock.slept == [0.015]  # 20 ms after the last request went, not the reset's whole second
    pacer.sent(clock(), {})  # an answer without the fields keeps the policy learnt
    clock.now += 0.05  # slower than the policy: no wait
    pacer.wait()
    assert clock.slept == [0.015] and pacer.waited == pytest.approx(0.015)
    pacer.sent(clock(), {"RateLimit-Policy": "50;w=1", "RateLimit": "limit=50, remaining=7, reset=1"})
    pacer.wait()  # what remains of the burst goes at once
    assert clock.slept == [0.015]


def test_without_a_policy_an_exhausted_quota_waits_for_the_reset():
    clock = Clock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    pacer.sent(clock(), {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2"})
    pacer.wait()
    assert clock.slept == [2.0]
    pacer.sent(clock(), {"X-RateLimit-Remaining": "5", "X-RateLimit-Reset": "2"})
    pacer.wait()
    assert clock.slept == [2.0]


def test_paced_requests_keep_to_the_sandbox_agencys_bucket_where_unpaced_ones_are_refused():
    """The sandbox's police bucket (rate, burst) as it answers, in real time: requests paced by what it announces
    are never refused; the same number sent as fast as possible are."""
    bucket = TokenBucket(rate=200.0, burst=5)
    refused = sum(not bucket.take() for _ in range(40))
    assert refused > 0
    time.sleep(0.05)  # full again
    pacer = Pacer()
    refused = 0
    for _ in range(40):
        pacer.wait()
        sent = time.monotonic()
        refused += not bucket.take()
        pacer.sent(sent, bucket.headers())
    assert refused == 0 and pacer.waited > 0
    assert pacer.waited < 40 / 200.0  # the burst went at once: less waiting than one interval a request
