"""The Dask runner: a large feed's partitions checked and sealed as Prefect tasks on a Dask cluster.

:class:`DaskRunner` (FUNDX_TASK_RUNNER=dask, dask:N or a scheduler's address, see
:mod:`fundx.exchange.runners`) runs the jobs as Prefect tasks (``check-partition``,
``seal-partition``, ... named after ``fn``) of a small flow ``partitions`` whose task runner is
prefect-dask's ``DaskTaskRunner``: on a temporary ``distributed.LocalCluster`` of worker processes on
this machine, or on an existing scheduler (``dask scheduler`` and ``dask worker`` on several
machines). ``runner.map`` may be called outside any flow (``partitions`` is then a flow run of its
own), in a flow (a subflow) or in a task.

What a job holds (file paths under FUNDX_HOME, a 32-byte ephemeral key) reaches Prefect only as a
task argument, and Prefect 3.8.8 keeps task arguments in memory: its task_run table has no
parameters column (``task_inputs`` records upstream task-run ids and parameter *names* only), the
task-run events carry the task run's fields and state, OpenTelemetry spans the *type names* of the
arguments. ``partitions`` has no flow parameters (Prefect stores those in plain text): the jobs
reach its body through a context variable; its name and task-run names carry ``fn``'s name and the
job's index only; tasks and flow never persist results and never cache (``NO_CACHE``). A job that
fails is re-raised content-free (:func:`fundx.core.errors.content_free`) *inside* the task, before
Prefect records the state message, logs the traceback or pickles the flow's exception into
its storage. Beware two things Prefect does that this module works around: a task's serialized
context carries the *enclosing task's* parameters to every dask worker (``map`` called in a task
clears the task context first), and in ephemeral mode each worker process would start an
ephemeral API server of its own (``map`` hands the workers this process's API URL).

The local cluster: worker processes (``processes=True``, one thread each by default, so a CPU-bound
partition is not held back by the GIL), mutual TLS with a throw-away in-memory certificate (the
scheduler's port on 127.0.0.1 accepts only this process and its workers: a dask scheduler
otherwise runs any code any local user sends it), no dashboard (distributed still opens an HTTP
server per process: on 127.0.0.1, any free port, with no route at all), workers that never spill
to disk (``distributed.worker.memory.target/spill = False``; every partition task refuses to run on
a worker that would), scratch space in a private temporary folder under FUNDX_HOME/tmp, removed
with the cluster. Before ``map`` returns, every worker sends Prefect its queued task-run
events and logs (left to the worker's exit, they were lost when a closing nanny killed it after 4 s,
and task runs stayed Running in the UI). A remote cluster's workers are configured where they run
(``dask worker --local-directory ...`` and DASK_DISTRIBUTED__WORKER__MEMORY__SPILL=False,
DASK_DISTRIBUTED__WORKER__MEMORY__TARGET=False); they must import fundx and see FUNDX_HOME at the
same path, and Prefect must be a server they reach (PREFECT_API_URL), not the ephemeral one.

Cost on this 2-core machine (prefect 3.8.8, prefect-dask 0.3.7, distributed 2026.8.0), measured
with ``python -m fundx.exchange.runners`` while other work kept the load average at 3 to 7 (so: upper bounds)::

    Prefect's ephemeral API server up (once per process)      20-45 s (about 14 s on a quiet machine)
    a bare DaskRunner(workers=2).map of 2 empty jobs          14-22 s: everything below, start to stop
      local cluster of 2 worker processes up (TLS)            2-4 s
      first map: each worker imports Prefect                  7-17 s
      each later map: the flow run, the workers' flush        1.5-3 s (an empty flow run: 1.1-1.4 s)
      each job (wall clock, 2 workers): Prefect's bookkeeping  0.4-0.65 s (32 empty jobs: 14-22 s)
      cluster stopped                                         2-3 s
    LocalRunner, 32 empty jobs                                under 1 ms
    memory: a warm worker process about 130 MB (before pandas or pyarrow), this process about 200 MB

Most of a job's cost is Prefect rebuilding its settings on the worker for every task run (the
serialized context is revalidated by pydantic-settings). So: enter the runner once around all the
maps of a feed (``with DaskRunner() as runner:`` keeps one cluster for every ``map`` in the block; a
bare ``runner.map`` starts a cluster and stops it again), and size partitions to seconds of work
each; for a small feed LocalRunner is faster. Worker processes are started with ``spawn``: a
script that uses a DaskRunner must guard its entry point with ``if __name__ == "__main__":``, and
``fn`` must live in an importable module (not ``__main__``).
"""

from __future__ import annotations

import contextvars
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from distributed import LocalCluster

from fundx.core.errors import ConfigurationError, content_free

J = TypeVar("J")
R = TypeVar("R")

#: dask settings of the local cluster: workers keep data in memory, never on disk; the scheduler's and the
#: workers' HTTP servers (which distributed starts even without a dashboard) serve no route at all
DASK_CONFIG: dict[str, Any] = {
    "distributed.worker.memory.target": False,
    "distributed.worker.memory.spill": False,
    "distributed.scheduler.http.routes": [],
    "distributed.worker.http.routes": [],
}


class DaskRunner:
    """Jobs as Prefect tasks on Dask workers: a local cluster of ``workers`` processes, or ``address``.

    ``address`` is a scheduler's address (``tls://host:port`` or ``tcp://host:port``); with it,
    ``workers`` and ``threads_per_worker`` are the remote cluster's business and are ignored.
    """

    def __init__(self, workers: int = 2, threads_per_worker: int = 1, address: str | None = None):
        if address is None and (workers < 1 or threads_per_worker < 1):
            raise ConfigurationError(f"a local Dask cluster needs at least 1 worker and 1 thread, "
                                     f"not {workers} and {threads_per_worker}")
        self.workers = workers
        self.threads_per_worker = threads_per_worker
        self.address = address
        self._cluster: LocalCluster | None = None  # the local cluster kept while the runner is entered
        self._security = None
        self._scratch: Path | None = None
        self._depth = 0

    def __repr__(self) -> str:
        if self.address:
            return f"DaskRunner(address={self.address!r})"
        return f"DaskRunner(workers={self.workers}, threads_per_worker={self.threads_per_worker})"

    # -- one cluster for several maps ---------------------------------------------------------------
    def __enter__(self) -> DaskRunner:
        self._depth += 1
        if self._depth == 1 and self.address is None:
            import dask
            from distributed import LocalCluster

            self._scratch = _scratch_dir()
            kwargs = self._cluster_kwargs(self._scratch)
            self._security = kwargs["security"]
            try:
                with dask.config.set(DASK_CONFIG):  # the scheduler (in this process) reads it as it starts
                    self._cluster = LocalCluster(**kwargs)
            except BaseException:
                self._drop_scratch()
                self._depth -= 1
                raise
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0 and self._cluster is not None:
            try:
                self._cluster.close()
            finally:
                self._cluster = None
                self._security = None
                self._drop_scratch()

    def _drop_scratch(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _cluster_kwargs(self, scratch: Path) -> dict[str, Any]:
        from distributed import Security

        return {
            "n_workers": self.workers,
            "threads_per_worker": self.threads_per_worker,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": None,  # no dashboard
            "worker_dashboard_address": None,
            # distributed starts an HTTP server all the same (no routes, see DASK_CONFIG): on loopback, any port
            "scheduler_kwargs": {"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            "security": Security.temporary(),  # mutual TLS: only holders of this in-memory certificate connect
            "local_directory": str(scratch),
            "config": DASK_CONFIG,  # handed by each nanny to its worker process (dotted keys: set() splits them)
        }

    @contextmanager
    def _task_runner(self) -> Iterator[Any]:
        from prefect_dask import DaskTaskRunner

        if self.address is not None:
            yield DaskTaskRunner(address=self.address)
        elif self._cluster is not None:
            yield DaskTaskRunner(address=self._cluster.scheduler_address,
                                 client_kwargs={"security": self._security})
        else:
            import dask

            scratch = _scratch_dir()
            try:
                with dask.config.set(DASK_CONFIG):  # the cluster starts in the flow run, at the first task
                    yield DaskTaskRunner(cluster_class="distributed.LocalCluster",
                                         cluster_kwargs=self._cluster_kwargs(scratch))
            finally:  # the flow run has closed its cluster by now
                shutil.rmtree(scratch, ignore_errors=True)

    # -- the protocol ---------------------------------------------------------------------------------
    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> list[R]:
        jobs = list(jobs)
        if not jobs:
            return []
        name = task_name(fn)
        with self._task_runner() as task_runner, _prefect_api_for_workers(), _outside_any_task():
            flow = _partitions_flow().with_options(task_runner=task_runner, flow_run_name=f"{name}-x{len(jobs)}")
            token = _CALL.set((fn, jobs, name))
            try:
                return flow()
            finally:
                _CALL.reset(token)


def task_name(fn: Callable) -> str:
    """The Prefect task name for ``fn``: ``check_partition`` -> ``check-partition``."""
    raw = getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", None) or type(fn).__name__
    return re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-") or "partition"


# -- the flow and its task ---------------------------------------------------------------------------
#: (fn, jobs, task name) of the map being run: the flow has no parameters, so nothing of a job is stored
_CALL: contextvars.ContextVar[tuple[Callable, list, str]] = contextvars.ContextVar("fundx_runner_call")


class _Wrapped:
    """A job as a task argument: Prefect neither walks into it looking for futures nor copies it field by
    field (it would a dataclass job), and its repr shows nothing of it. (Prefect's own ``opaque`` and
    ``quote`` annotations do the first, but through prefect-dask 0.3.7 they reach the task as 1-tuples.)"""

    __slots__ = ("job",)

    def __init__(self, job):
        self.job = job

    def __repr__(self) -> str:
        return "<job>"


def _run_partition(fn: Callable[[J], R], job: _Wrapped, index: int) -> R:
    """One job on a worker (``index`` only names the task run)."""
    _refuse_spilling()
    try:
        return fn(job.job)
    except Exception as exc:  # noqa: BLE001 - content-free before Prefect logs it, records its message or pickles it
        raise content_free(exc) from None


def _refuse_spilling() -> None:
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not on a dask worker
        return
    memory = getattr(worker, "memory_manager", None)
    if memory is not None and (memory.memory_target_fraction is not False or memory.memory_spill_fraction is not False):
        raise ConfigurationError(
            "this dask worker may spill partitions to disk", action="start the dask workers with "
            "DASK_DISTRIBUTED__WORKER__MEMORY__TARGET=False and DASK_DISTRIBUTED__WORKER__MEMORY__SPILL=False")


def _partitions() -> list:
    """Map the current call's function over its jobs as tasks; results in job order."""
    from prefect import get_run_logger, unmapped
    from prefect.futures import wait

    fn, jobs, name = _CALL.get()
    task = _partition_task().with_options(name=name, task_run_name=name + "-{index}")
    try:
        futures = task.map(fn=unmapped(fn), job=[_Wrapped(job) for job in jobs], index=range(len(jobs)))
        wait(futures)  # every task run ends in a final state before the first error is raised
    except Exception as exc:  # noqa: BLE001 - e.g. a job that does not pickle: dask's message shows its task graph
        raise content_free(exc) from None
    _flush_workers()
    results = []
    for index, future in enumerate(futures):
        try:
            results.append(future.result())
        except Exception as exc:  # noqa: BLE001 - re-raised content-free: any error of a job becomes a FundxError
            error = content_free(exc)
            get_run_logger().error("%s: job %d of %d failed: %s", name, index + 1, len(jobs), error.kind)
            raise error from None
    return results


def _flush_workers() -> None:
    """Have every worker send Prefect its queued task-run events and logs now.

    Otherwise they go at the worker process's exit, which a nanny closing its worker waits 4 s for
    before it kills it: under load the last task runs' final states were lost, left Running in Prefect.
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    try:
        if context is None:
            raise RuntimeError("not in a flow run")
        runner: Any = context.task_runner  # the flow's DaskTaskRunner: its client reaches the workers
        runner.client.run(_drain_prefect)
    except Exception as exc:  # noqa: BLE001 - the results are in; the UI may show a task run late
        from prefect import get_run_logger

        get_run_logger().warning("the dask workers could not flush Prefect's events: %s", content_free(exc).kind)


async def _drain_prefect() -> None:
    """On a worker (its event loop): send the queued Prefect events and logs; the services restart when next used."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        pending = service.drain_all(timeout=30)
        if inspect.isawaitable(pending):
            await pending


@lru_cache(maxsize=1)
def _partition_task():
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    return task(name="partition", persist_result=False, cache_policy=NO_CACHE, log_prints=False)(_run_partition)


@lru_cache(maxsize=1)
def _partitions_flow():
    from prefect import flow

    return flow(name="partitions", persist_result=False, validate_parameters=False, log_prints=False)(_partitions)


@contextmanager
def _prefect_api_for_workers() -> Iterator[None]:
    """In ephemeral mode, this process's API server's URL for the workers (each would start its own)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    from prefect.client.orchestration import get_client

    url = str(get_client(sync_client=True).api_url)  # starts the ephemeral server unless it runs already
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


@contextmanager
def _outside_any_task() -> Iterator[None]:
    """Hide an enclosing task run: its context (parameters included) would go to every dask task."""
    from prefect.context import TaskRunContext

    if TaskRunContext.get() is None:
        yield
        return
    token = TaskRunContext.__var__.set(None)  # type: ignore[arg-type]  # unset, as get() reports it outside a task
    try:
        yield
    finally:
        TaskRunContext.__var__.reset(token)


def _scratch_dir() -> Path:
    """A private folder under FUNDX_HOME/tmp for the local cluster's workers (removed with the cluster)."""
    from fundx.core.files import private_folder
    from fundx.core.settings import get_settings

    parent = private_folder(get_settings().home / "tmp")
    return Path(tempfile.mkdtemp(prefix="dask-", dir=parent))  # mode 0700
