"""Jobs for tests/exchange/test_runners.py. A module of its own on the tests' sys.path, so that the Dask worker
processes (spawned with this process's sys.path) import these functions by name, as they will
fundx.exchange.stream's: top-level functions taking one small picklable job, returning a small picklable result."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from fundx.core.errors import DataError


@dataclass(frozen=True)
class Job:
    """Like a partition job: an index, a path under FUNDX_HOME and a 32-byte ephemeral key."""

    index: int
    path: str
    key: bytes
    fail: str = ""  # "" | "foreign" (a ValueError quoting the job) | "fundx" (a content-free DataError)
    seconds: float = 0.0


@dataclass(frozen=True)
class Done:
    index: int
    pid: int
    key_tail: int  # proves the key arrived whole (its last byte)


def run(job: Job) -> Done:
    if job.seconds:
        time.sleep(job.seconds)
    if job.fail == "foreign":
        raise ValueError(f"cannot read {job.path} with key {job.key.hex()}")  # quotes the job, like pyarrow would
    if job.fail == "fundx":
        raise DataError(f"partition {job.index} is not a Parquet file")
    return Done(job.index, os.getpid(), job.key[-1])


def record(job: Job) -> Done:
    """``run`` under another name (the task runs of a map are named after its function)."""
    return run(job)


def where(job) -> dict:
    """What the worker that ran it looks like: its process, scratch folder and memory settings."""
    import dask
    from distributed import get_worker

    worker = get_worker()
    return {
        "job": job,
        "pid": os.getpid(),
        "local_directory": worker.local_directory,
        "target": worker.memory_manager.memory_target_fraction,
        "spill": worker.memory_manager.memory_spill_fraction,
        "config_spill": dask.config.get("distributed.worker.memory.spill"),
        "http_routes": dask.config.get("distributed.worker.http.routes"),
    }
