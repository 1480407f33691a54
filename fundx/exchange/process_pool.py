"""The process pool: a large feed's partitions checked and sealed by worker processes on this machine.

:class:`ProcessRunner` (FUNDX_TASK_RUNNER=processes or processes:N, see :mod:`fundx.exchange.runners`)
hands each job to a pool of ``spawn``-ed worker processes that this process keeps warm for its whole
life: one machine's cores, with no Prefect bookkeeping and no cluster per job — the fast choice on one
machine. A job that fails is re-raised content-free in its worker, before its error is pickled back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fundx.core.errors import ConfigurationError, content_free

J = TypeVar("J")
R = TypeVar("R")


class ProcessRunner:
    """Jobs in a pool of ``workers`` processes on this machine, kept warm for the life of this process.

    No Prefect and no cluster in between: the cheapest way to use a machine's cores for the check and
    seal of a large feed. The pool is this process's, one per number of workers and FUNDX_*
    environment (a worker reads its settings from the environment it was started with), started with
    ``spawn`` (safe beside the threads Prefect runs) and warmed on creation — each worker imports the
    contract check in the background, so a runner made before a feed's pull is ready by its check.
    A job that fails is re-raised content-free in the worker, before its error is pickled back.
    """

    def __init__(self, workers: int = 2) -> None:
        if workers < 1:
            raise ConfigurationError(f"a process pool needs at least 1 worker, not {workers}")
        self.workers = workers
        self._pool = _process_pool(workers)

    def __repr__(self) -> str:
        return f"ProcessRunner(workers={self.workers})"

    def __enter__(self) -> ProcessRunner:
        return self

    def __exit__(self, *exc) -> None:
        pass  # the pool outlives one feed: the next one finds it warm

    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> list[R]:
        futures = [self._pool.submit(_run_in_worker, fn, job) for job in jobs]
        try:
            return [future.result() for future in futures]
        finally:
            for future in futures:
                future.cancel()

    def warm(self) -> None:
        """Wait until every worker has imported the contract check."""
        for future in [self._pool.submit(_warm_worker, 0.2) for _ in range(self.workers)]:
            future.result()

    def worker_peaks(self) -> list[int]:
        """Each worker's peak resident memory in bytes (VmHWM; Linux), for the benchmark's record."""
        peaks = []
        for pid in list(getattr(self._pool, "_processes", None) or {}):
            try:
                with open(f"/proc/{pid}/status", encoding="ascii") as status:
                    peaks += [int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:")]
            except OSError:
                continue
        return peaks


_POOLS: dict[tuple[int, tuple[tuple[str, str], ...]], Any] = {}


def _process_pool(workers: int) -> Any:
    """This process's pool of ``workers`` (made and warmed on first use; remade when FUNDX_* changed)."""
    import atexit
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(("FUNDX_", "PREFECT_"))))
    key = (workers, env)
    pool = _POOLS.get(key)
    if pool is not None and not getattr(pool, "_broken", False):
        return pool
    for stale in [k for k in _POOLS if k[0] == workers]:  # settings changed: the old workers would use the old ones
        _POOLS.pop(stale).shutdown(wait=False, cancel_futures=True)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    for _ in range(workers):
        pool.submit(_warm_worker, 0.2)  # not waited for: the workers import while this process pulls
    if not _POOLS:
        atexit.register(_shutdown_pools)
    _POOLS[key] = pool
    return pool


def _shutdown_pools() -> None:
    for pool in _POOLS.values():
        pool.shutdown(wait=True, cancel_futures=True)
    _POOLS.clear()


def _warm_worker(linger: float) -> int:
    """Import what a check needs; linger so that each of the pool's first jobs lands on its own worker."""
    import time

    import contracts.validate  # Great Expectations: seconds to import, once per worker

    contracts.validate.gx_context()
    time.sleep(linger)
    return os.getpid()


def _run_in_worker(fn: Callable[[J], R], job: J) -> R:
    try:
        return fn(job)
    except Exception as error:  # noqa: BLE001 - re-raised content-free: its message may quote a record
        raise content_free(error) from None
