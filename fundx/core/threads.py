"""Independent pieces of one step side by side on the machine's cores: threads, for work that runs in Arrow's and
numpy's compiled loops (they release the GIL), such as checking a frame's columns against their rules.

    results = thread_map(check_column, columns)   # in the order of ``columns``, as [f(x) for x in ...] would be

One pool serves the process (at most :data:`MAX_WORKERS` threads, never more than the cores); a call from inside
one of its tasks, a pool of one core, or fewer than two items run in the calling thread. Each task runs in a copy
of the caller's context (its context variables seen as the caller set them). A forked child makes a pool of its
own. The first task to raise raises from :func:`thread_map`, after every task has ended.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: threads at most, whatever the cores
MAX_WORKERS = 4

_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}  # the process that made it -> the pool
_inside = threading.local()


def workers() -> int:
    """Threads of the pool: the cores this process may use, at most :data:`MAX_WORKERS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


def _executor() -> ThreadPoolExecutor:
    with _lock:
        pid = os.getpid()
        if pid not in _pools:  # a forked child does not have its parent's threads
            _pools.clear()
            _pools[pid] = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="fundx-work")
        return _pools[pid]


def _task(fn: Callable[[T], R], item: T) -> R:
    _inside.active = True
    try:
        return fn(item)
    finally:
        _inside.active = False


def thread_map(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(x) for x in items]``, the items side by side on the pool's threads (see the module's docstring)."""
    todo = list(items)
    if len(todo) < 2 or getattr(_inside, "active", False) or workers() < 2:
        return [fn(x) for x in todo]
    pool = _executor()
    futures = [pool.submit(contextvars.copy_context().run, _task, fn, x) for x in todo]
    wait(futures)
    return [f.result() for f in futures]
