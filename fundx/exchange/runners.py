"""Where a large feed's partitions are checked and sealed: in this process, a pool of processes, or a Dask cluster.

A runner has one method, ``map(fn, jobs) -> results``: ``fn`` is a plain top-level function (so that
it pickles by reference), each job a small picklable object, each result a small picklable object;
the results come back in job order, and the first failing job (in job order) raises its error to
the caller. :class:`LocalRunner` runs the jobs one after the other here;
:class:`~fundx.exchange.process_pool.ProcessRunner` in a pool of worker processes on this machine
that this process keeps warm (one machine's cores, no Prefect bookkeeping per job: the fast choice
on one machine); :class:`~fundx.exchange.dask_runner.DaskRunner` as Prefect tasks on a Dask cluster,
local or remote (what reaches Prefect and the workers, and what it costs, is told there).
:func:`runner_from_settings` picks the runner from FUNDX_TASK_RUNNER::

    local (default)        LocalRunner
    processes              ProcessRunner: a warm pool of worker processes here, one per core (2 to 8)
    processes:N            a pool of N worker processes
    dask                   a local cluster of 2 worker processes, 1 thread each
    dask:N                 a local cluster of N worker processes
    dask+tls://host:port   an existing scheduler over TLS (certificates from the dask config,
                           e.g. DASK_DISTRIBUTED__COMM__TLS__CA_FILE, ..._CLIENT__CERT, ..._CLIENT__KEY)
    dask://host:port       an existing scheduler over plain TCP: loopback addresses only

``python -m fundx.exchange.runners`` measures what the runners cost on this machine.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from fundx.core.errors import ConfigurationError
from fundx.exchange.dask_runner import DaskRunner
from fundx.exchange.process_pool import ProcessRunner

J = TypeVar("J")
R = TypeVar("R")

#: the environment variable that picks the runner
ENV = "FUNDX_TASK_RUNNER"


class Runner(Protocol):
    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> list[R]:
        """``[fn(job) for job in jobs]``, possibly in parallel; results in job order; raises the first job error."""
        ...


class LocalRunner:
    """Every job in this process, one after the other."""

    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> list[R]:
        return [fn(job) for job in jobs]

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def __repr__(self) -> str:
        return "LocalRunner()"


# -- FUNDX_TASK_RUNNER -------------------------------------------------------------------------------
_ACTION = (f"set {ENV} to local, processes, processes:N (a pool of N processes here), dask, dask:N (N worker processes), dask+tls://host:port or "
           "dask://host:port (loopback only)")


def runner_from_settings(value: str | None = None) -> LocalRunner | ProcessRunner | DaskRunner:
    """The runner FUNDX_TASK_RUNNER asks for (``value`` instead, when given); LocalRunner when unset."""
    raw = os.environ.get(ENV, "") if value is None else value
    text = raw.strip()
    lower = text.lower()
    if lower in ("", "local"):
        return LocalRunner()
    if lower == "processes":
        return ProcessRunner(max(2, min(os.cpu_count() or 2, 8)))
    if m := re.fullmatch(r"processes:(\d{1,4})", lower):
        workers = int(m.group(1))
        if not 1 <= workers <= 256:
            raise ConfigurationError(f"{ENV}: a process pool needs 1 to 256 workers, not {workers}", action=_ACTION)
        return ProcessRunner(workers)
    if lower == "dask":
        return DaskRunner()
    if m := re.fullmatch(r"dask:(\d{1,4})", lower):
        workers = int(m.group(1))
        if not 1 <= workers <= 256:
            raise ConfigurationError(f"{ENV}: a local Dask cluster needs 1 to 256 workers, not {workers}",
                                     action=_ACTION)
        return DaskRunner(workers=workers)
    if m := re.fullmatch(r"dask(\+tls)?://([^/:\s]+|\[[0-9a-f:.]+\]):(\d{1,5})", text, re.IGNORECASE):
        tls, host, port = m.group(1), m.group(2), int(m.group(3))
        if not 0 < port < 65536:
            raise ConfigurationError(f"{ENV}: port {port} is out of range", action=_ACTION)
        if not tls and not _is_loopback(host):
            raise ConfigurationError(
                f"{ENV}: a Dask scheduler on another machine must be reached over TLS "
                "(partition jobs carry encryption keys)", action="use dask+tls://host:port with the dask TLS "
                "settings (DASK_DISTRIBUTED__COMM__TLS__*), or a loopback address")
        return DaskRunner(address=f"{'tls' if tls else 'tcp'}://{host}:{port}")
    raise ConfigurationError(f"{ENV} is not one of local, processes, processes:N, dask, dask:N, dask+tls://host:port, dask://host:port",
                             action=_ACTION)


def _is_loopback(host: str) -> bool:
    name = host.strip("[]")
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    if name.lower() != "localhost":
        return False
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(name, None))
    except OSError:
        return False


# -- a measurement (python -m fundx.exchange.runners) -------------------------------------------------------
def probe(job: int) -> tuple[int, int]:
    """A job for checking a runner: (the job, the process id that ran it)."""
    return job, os.getpid()


def _measure() -> None:  # pragma: no cover - run by hand; prints the figures quoted in fundx.exchange.dask_runner
    import time

    from prefect import flow
    from prefect.client.orchestration import get_client

    def clock(what: str, t: float) -> float:
        took = time.perf_counter() - t
        print(f"{what}: {took:.1f} s", flush=True)
        return took

    t = time.perf_counter()
    with get_client(sync_client=True) as client:
        client.hello()
    clock("Prefect's ephemeral API server up", t)

    @flow(name="measure-empty-flow", persist_result=False)
    def empty():
        return None

    empty()
    t = time.perf_counter()
    empty()
    clock("an empty flow run", t)
    t = time.perf_counter()
    LocalRunner().map(probe, list(range(32)))
    clock("LocalRunner, 32 jobs", t)

    runner = DaskRunner(workers=2)
    t = time.perf_counter()
    out = runner.map(probe, [0, 1])
    clock(f"bare DaskRunner(workers=2).map, 2 jobs (cluster start, warm-up, stop; "
          f"{len({pid for _, pid in out})} processes)", t)
    t = time.perf_counter()
    with runner:
        clock("entered DaskRunner(workers=2): local cluster up", t)
        t = time.perf_counter()
        runner.map(probe, [0, 1])
        clock("  first map, 2 jobs (workers import Prefect)", t)
        for n in (2, 8, 32):
            t = time.perf_counter()
            runner.map(probe, list(range(n)))
            clock(f"  map of {n} empty jobs", t)
        t = time.perf_counter()
    clock("  cluster stopped", t)


if __name__ == "__main__":  # pragma: no cover
    # run as fundx.exchange.runners, not __main__: the workers import the job (probe) by its module's name
    from fundx.exchange.runners import _measure as measure

    measure()
