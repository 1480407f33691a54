"""Partition runners (fundx.exchange.runners): the local one, and Prefect tasks on a local Dask cluster.

Results in job order, work on two worker processes, the first failing job raised content-free,
the map called outside a flow, in a flow and in a task, nothing of a job in Prefect's database or
storage, workers that never spill and leave no scratch folder, and FUNDX_TASK_RUNNER's values.
"""

from __future__ import annotations

import base64
import os
import re
import threading
import uuid
from pathlib import Path

import pytest
import runner_jobs
from runner_jobs import Job

from fundx.core.errors import ConfigurationError, DataError, InternalError
from fundx.exchange.dask_runner import DaskRunner, task_name
from fundx.exchange.process_pool import ProcessRunner
from fundx.exchange.runners import LocalRunner, runner_from_settings

MARK = f"secret-{uuid.uuid4().hex}"  # in every job's path: must never reach Prefect
KEYS = [os.urandom(32) for _ in range(8)]


def _jobs(n: int, home: Path, fail: dict[int, str] | None = None) -> list[Job]:
    """n jobs of 0.2 s; ``fail={index: "foreign"|"fundx"}`` makes those fail."""
    failing = fail or {}
    return [Job(i, str(home / f"{MARK}-{i}.parquet"), KEYS[i % len(KEYS)], failing.get(i, ""), 0.2) for i in range(n)]


# -- LocalRunner and the settings: no cluster -------------------------------------------------------
def test_local_runner_in_order_and_raises(tmp_path):
    done = LocalRunner().map(runner_jobs.run, _jobs(5, tmp_path))
    assert [d.index for d in done] == [0, 1, 2, 3, 4]
    assert {d.pid for d in done} == {os.getpid()}
    assert LocalRunner().map(runner_jobs.run, []) == []
    with pytest.raises(DataError):
        LocalRunner().map(runner_jobs.run, _jobs(3, tmp_path, fail={1: "fundx"}))


# -- ProcessRunner: a warm pool of this machine's processes -----------------------------------------------
def test_process_runner_in_order_on_two_processes_and_the_pool_is_kept(tmp_path):
    runner = ProcessRunner(2)
    runner.warm()
    done = runner.map(runner_jobs.run, _jobs(6, tmp_path))
    assert [d.index for d in done] == list(range(6))
    assert len({d.pid for d in done}) == 2 and os.getpid() not in {d.pid for d in done}
    assert [d.key_tail for d in done] == [KEYS[i % len(KEYS)][-1] for i in range(6)]
    again = ProcessRunner(2).map(runner_jobs.run, _jobs(2, tmp_path))  # the same warm pool
    assert {d.pid for d in again} <= {d.pid for d in done}
    assert ProcessRunner(2).map(runner_jobs.run, []) == []
    assert len(runner.worker_peaks()) == 2 and all(p > 10 * 2**20 for p in runner.worker_peaks())


def test_process_runner_raises_the_first_failing_job_content_free(tmp_path):
    runner = ProcessRunner(2)
    with pytest.raises(DataError, match="partition 1 is not a Parquet file"):
        runner.map(runner_jobs.run, _jobs(4, tmp_path, fail={1: "fundx", 3: "foreign"}))
    with pytest.raises(InternalError) as caught:
        runner.map(runner_jobs.run, _jobs(4, tmp_path, fail={2: "foreign"}))
    text = str(caught.value) + repr(caught.value)
    assert "ValueError" in text and MARK not in text and KEYS[2].hex() not in text
    assert [d.index for d in runner.map(runner_jobs.run, _jobs(3, tmp_path))] == [0, 1, 2]  # the pool survives


def test_process_runner_pool_is_remade_when_the_settings_change(tmp_path, monkeypatch):
    first = {d.pid for d in ProcessRunner(2).map(runner_jobs.run, _jobs(4, tmp_path))}
    monkeypatch.setenv("FUNDX_CHUNK_ROWS", "1234")  # a worker reads its settings from its environment
    second = {d.pid for d in ProcessRunner(2).map(runner_jobs.run, _jobs(4, tmp_path))}
    assert not first & second


@pytest.mark.parametrize("value, expected", [
    ("processes:3", "ProcessRunner(workers=3)"), ("processes", f"ProcessRunner(workers={max(2, min(os.cpu_count() or 2, 8))})"),
    (None, "LocalRunner()"), ("", "LocalRunner()"), ("local", "LocalRunner()"), (" LOCAL ", "LocalRunner()"),
    ("dask", "DaskRunner(workers=2, threads_per_worker=1)"), ("dask:4", "DaskRunner(workers=4, threads_per_worker=1)"),
    ("dask://127.0.0.1:8786", "DaskRunner(address='tcp://127.0.0.1:8786')"),
    ("dask://localhost:8786", "DaskRunner(address='tcp://localhost:8786')"),
    ("dask+tls://scheduler.example:8786", "DaskRunner(address='tls://scheduler.example:8786')"),
])
def test_runner_from_settings(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("FUNDX_TASK_RUNNER", raising=False)
    else:
        monkeypatch.setenv("FUNDX_TASK_RUNNER", value)
    assert repr(runner_from_settings()) == expected


@pytest.mark.parametrize("value", [
    "processes:0", "processes:x", "processes:", "dask:0", "dask:x", "dask:", "dask:99999", "ray", "threads", "dask://", "dask://host", "dask://host:port",
    "dask://127.0.0.1:0", "dask://127.0.0.1:70000", "tcp://127.0.0.1:8786",
    "dask://10.0.0.5:8786",  # plain TCP to another machine: refused (jobs carry keys)
])
def test_bad_runner_setting_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("FUNDX_TASK_RUNNER", value)
    with pytest.raises(ConfigurationError) as caught:
        runner_from_settings()
    assert "FUNDX_TASK_RUNNER" in str(caught.value) + caught.value.action


def test_a_worker_that_may_spill_is_refused(monkeypatch):
    """A remote cluster's workers are configured where they run: a job refuses one that may spill to disk."""
    import distributed

    from fundx.exchange import dask_runner as runners

    class Memory:
        memory_target_fraction, memory_spill_fraction = 0.6, 0.7

    class Worker:
        memory_manager = Memory()

    monkeypatch.setattr(distributed, "get_worker", Worker)
    with pytest.raises(ConfigurationError) as caught:
        runners._run_partition(runner_jobs.run, runners._Wrapped(Job(0, "p", KEYS[0])), 0)
    assert "DASK_DISTRIBUTED__WORKER__MEMORY__SPILL=False" in caught.value.action
    Memory.memory_target_fraction = Memory.memory_spill_fraction = False
    assert runners._run_partition(runner_jobs.run, runners._Wrapped(Job(0, "p", KEYS[0])), 0).index == 0


def test_task_names():
    assert task_name(runner_jobs.run) == "run"
    assert task_name(test_task_names) == "test-task-names"


# -- Dask: one local cluster for the module ----------------------------------------------------------
@pytest.fixture(scope="module")
def fundx_home(tmp_path_factory):
    """FUNDX_HOME for the module's cluster (its scratch folder goes under FUNDX_HOME/tmp)."""
    from fundx.core.settings import reload_settings

    home = tmp_path_factory.mktemp("runners") / "home"
    before = os.environ.get("FUNDX_HOME")
    os.environ["FUNDX_HOME"] = str(home)
    reload_settings()
    yield home
    if before is None:
        os.environ.pop("FUNDX_HOME", None)
    else:
        os.environ["FUNDX_HOME"] = before
    reload_settings()


@pytest.fixture(scope="module")
def prefect_api():
    """Prefect's ephemeral API server, up before the cluster (the first use in a test run pays its start)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.hello()


@pytest.fixture(scope="module")
def cluster(prefect_api, fundx_home):
    """A DaskRunner entered once: one local cluster of two worker processes for every test that uses it."""
    runner = DaskRunner(workers=2)
    with runner:
        scratch = list((fundx_home / "tmp").iterdir())
        assert len(scratch) == 1 and scratch[0].name.startswith("dask-")
        assert oct(scratch[0].stat().st_mode & 0o777) == "0o700"
        yield runner
    assert list((fundx_home / "tmp").iterdir()) == [], "the cluster's scratch folder was left behind"


@pytest.mark.prefect
def test_dask_results_in_order_on_two_worker_processes(cluster, fundx_home):
    jobs = _jobs(8, fundx_home)
    done = cluster.map(runner_jobs.run, jobs)
    assert [d.index for d in done] == list(range(8))
    assert [d.key_tail for d in done] == [j.key[-1] for j in jobs]
    pids = {d.pid for d in done}
    assert len(pids) >= 2, f"all jobs ran in {pids}"
    assert os.getpid() not in pids


@pytest.mark.prefect
def test_dask_workers_never_spill_and_scratch_under_fundx_home(cluster, fundx_home):
    seen = cluster.map(runner_jobs.where, [("a", 0), ("b", 1)])
    assert [worker["job"] for worker in seen] == [("a", 0), ("b", 1)]
    for worker in seen:
        assert worker["target"] is False and worker["spill"] is False and worker["config_spill"] is False
        assert worker["http_routes"] == []
        assert Path(worker["local_directory"]).is_relative_to(fundx_home / "tmp")


@pytest.mark.prefect
def test_dask_raises_the_first_failing_job_content_free(cluster, fundx_home):
    # job 2 fails with a foreign error quoting the job, job 5 with a fundx error: job 2's comes back
    with pytest.raises(InternalError) as caught:
        cluster.map(runner_jobs.run, _jobs(8, fundx_home, fail={2: "foreign", 5: "fundx"}))
    text = str(caught.value) + caught.value.action
    assert "ValueError" in text
    assert MARK not in text and KEYS[2].hex() not in text
    # a fundx error keeps its type (retry decisions read it) and its message
    with pytest.raises(DataError, match="partition 0 is not a Parquet file"):
        cluster.map(runner_jobs.run, _jobs(2, fundx_home, fail={0: "fundx"}))
    # a job that cannot travel to a worker: a content-free error too
    with pytest.raises(InternalError):
        cluster.map(runner_jobs.run, [threading.Lock()])


@pytest.mark.prefect
def test_dask_map_inside_a_flow_and_inside_a_task(cluster, fundx_home, monkeypatch):
    """A subflow in a flow, and in a task; what each dask task carries to its worker holds no job but its own:
    no flow parameters, and not the enclosing task's context (whose parameters are that task's arguments)."""
    import prefect_dask.client
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    shipped: list[dict] = []
    serialize = prefect_dask.client.serialize_context

    def recording(*args, **kwargs):
        shipped.append(context := serialize(*args, **kwargs))
        return context

    monkeypatch.setattr(prefect_dask.client, "serialize_context", recording)

    @task(persist_result=False, cache_policy=NO_CACHE)
    def check_in_task(jobs):
        return cluster.map(runner_jobs.run, jobs)

    @flow(persist_result=False)
    def feed():
        in_flow = cluster.map(runner_jobs.run, _jobs(3, fundx_home))
        in_task = check_in_task(_jobs(4, fundx_home))
        return [d.index for d in in_flow], [d.index for d in in_task]

    assert feed() == ([0, 1, 2], [0, 1, 2, 3])
    assert len(shipped) == 7
    for context in shipped:
        assert context["task_run_context"] == {}
        assert context["flow_run_context"]["flow"].name == "partitions"
        assert context["flow_run_context"]["parameters"] == {}


@pytest.mark.prefect
def test_bare_map_starts_and_removes_its_own_cluster(fundx_home, cluster):
    before = set((fundx_home / "tmp").iterdir())  # the module cluster's scratch folder
    done = DaskRunner(workers=2).map(runner_jobs.run, _jobs(2, fundx_home))
    assert [d.index for d in done] == [0, 1]
    assert set((fundx_home / "tmp").iterdir()) == before


def _leaks(data: bytes, needles: list[bytes]) -> bool:
    if any(n in data for n in needles):
        return True
    for run in re.findall(rb"[A-Za-z0-9+/=_-]{40,}", data):  # base64 blobs (pickled results, exceptions)
        urlsafe = b"-" in run or b"_" in run
        try:
            decoded = base64.b64decode(run + b"=" * (-len(run) % 4), altchars=b"-_" if urlsafe else None)
        except ValueError:
            continue
        if any(n in decoded for n in needles):
            return True
    return False


@pytest.mark.prefect
def test_prefect_keeps_nothing_of_the_jobs(cluster, fundx_home):
    """After the maps above (failures included): no path, key or its hex in Prefect's database or storage.

    The scan is shown to work: a flow parameter, and the message of a flow's exception (which Prefect
    pickles into its storage, base64-encoded), are found by it."""
    import time

    from prefect import flow

    shown = [f"control-{uuid.uuid4().hex}" for _ in range(2)]

    @flow(persist_result=False)
    def control(value: str):
        raise RuntimeError(f"failed on {shown[1]}")

    with pytest.raises(RuntimeError):
        control(shown[0])
    with pytest.raises(InternalError):  # this test's own jobs, should it run alone
        cluster.map(runner_jobs.run, _jobs(3, fundx_home, fail={1: "foreign"}))
    time.sleep(2)  # let the server record the last events and logs
    home = Path(os.environ["PREFECT_HOME"])
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name.startswith("prefect.db") for p in files)
    for marker in shown:
        assert any(_leaks(p.read_bytes(), [marker.encode()]) for p in files), f"the scan missed {marker}"
    needles = [MARK.encode(), *KEYS, *(k.hex().encode() for k in KEYS)]
    leaked = [str(p.relative_to(home)) for p in files if _leaks(p.read_bytes(), needles)]
    assert leaked == []


@pytest.mark.prefect
def test_every_partition_task_run_ends_recorded(cluster, fundx_home):
    """Prefect shows each job as a task run named after the function and the job's index, in a final state:
    the workers send their events before the map returns (not at exit, where a closing nanny may kill them)."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with pytest.raises(InternalError):
        cluster.map(runner_jobs.record, _jobs(6, fundx_home, fail={4: "foreign"}))
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            flows = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["record-x6"])))
            runs = [r for f in flows for r in client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [f.id]}))]
            states = sorted((r.name, r.state_type.value if r.state_type else None) for r in runs)
            final = [s for s in states if s[1] in ("COMPLETED", "FAILED")]
            if len(final) == len(states) == 6 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert [f.state_type.value for f in flows] == ["FAILED"]
    assert states == [(f"record-{i}", "FAILED" if i == 4 else "COMPLETED") for i in range(6)]
