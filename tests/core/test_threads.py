"""fundx.core.threads: thread_map keeps the order, the caller's context, and raises the first task's error."""

from __future__ import annotations

import contextvars
import threading

import pytest

from fundx.core import threads

_seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")


def test_the_results_come_in_the_items_order_and_see_the_callers_context():
    _seen.set("caller")
    out = threads.thread_map(lambda x: (x * 2, _seen.get()), range(20))
    assert out == [(x * 2, "caller") for x in range(20)]


def test_a_call_from_inside_a_task_runs_in_that_task():
    def outer(x: int) -> list[str]:
        return threads.thread_map(lambda _: threading.current_thread().name, range(3))

    for names in threads.thread_map(outer, range(4)):
        assert len(set(names)) == 1  # no task waits on the pool it runs in


def test_the_first_error_is_raised_after_every_task_ended():
    ended = []

    def work(x: int) -> int:
        if x in (1, 3):
            raise ValueError(f"item {x}")
        ended.append(x)
        return x

    with pytest.raises(ValueError, match="item 1"):
        threads.thread_map(work, range(6))
    assert sorted(ended) == [0, 2, 4, 5]


def test_the_pool_is_at_most_the_cores():
    assert 1 <= threads.workers() <= threads.MAX_WORKERS
