"""Register the exchange's deployments and automations on a running Prefect server.

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m deployments.register

(``make serve`` runs it after starting the server.) Idempotent — run it again after changing
:mod:`deployments.catalog` or a setting:

1. the process work pool ``fundx``, created if missing, its concurrency limit set to
   FUNDX_WORK_POOL_CONCURRENCY (default 4: flow runs at once, over all its workers);
2. every deployment of :func:`deployments.catalog.specs` for that pool — ``nightly-exchange/nightly``
   (cron 01:30 Asia/Shanghai), ``exchange-feed/<feed>`` per feed (no schedule), and what was added
   to ``catalog.MORE`` — each with a deployment concurrency limit of 1 (CANCEL_NEW: a run started
   while one is active is cancelled, so one night never runs twice at once); code comes from this
   checkout (a ``set_working_directory`` pull step to the repository root); deployments tagged
   ``fundx`` on the pool that the catalog no longer lists are removed;
3. the automations of :mod:`deployments.automations` (and the Webhook block they call, when
   FUNDX_AUTOMATION_WEBHOOK is set).
"""

from __future__ import annotations

import argparse
import sys
from typing import cast
from uuid import UUID

from deployments.catalog import REPO_ROOT, TAG, WORK_POOL, DeploymentSpec, specs
from deployments.settings import ServeSettings, serve_settings


def ensure_work_pool(concurrency: int, name: str = WORK_POOL) -> str:
    """Create the process work pool, or set the concurrency limit of the existing one; what was done."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(
                name=name, type=ProcessWorker.type, concurrency_limit=concurrency,
                base_job_template=ProcessWorker.get_default_base_job_template(),
                description="fundx: the exchange's flow runs, as processes from the repository checkout",
            ))
            return f"work pool {name!r} created (process, {concurrency} runs at once)"
        if pool.type != ProcessWorker.type:
            raise SystemExit(f"error: work pool {name!r} exists with type {pool.type!r}, not 'process'; "
                             f"delete it (prefect work-pool delete {name}) and register again")
        if pool.concurrency_limit != concurrency:
            client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=concurrency))
            return f"work pool {name!r}: concurrency limit {pool.concurrency_limit} -> {concurrency}"
        return f"work pool {name!r} (process, {concurrency} runs at once)"


def register_deployment(spec: DeploymentSpec, work_pool: str = WORK_POOL) -> UUID:
    """Create or update one deployment on ``work_pool``, its code in this checkout."""
    from prefect.deployments.runner import RunnerDeployment
    from prefect.runner.storage import LocalStorage

    # called from sync code, Prefect's dual sync/async methods return their values (not coroutines)
    deployment = cast(RunnerDeployment, RunnerDeployment.from_storage(
        storage=LocalStorage(str(REPO_ROOT)), entrypoint=spec.entrypoint, flow_name=spec.flow_name,
        work_pool_name=work_pool, **spec.options(),
    ))
    return cast(UUID, deployment.apply(work_pool_name=work_pool))


def prune(keep: set[UUID], work_pool: str = WORK_POOL) -> list[str]:
    """Delete the deployments tagged fundx on the pool that are not in ``keep``; their names."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterTags,
        WorkPoolFilter,
        WorkPoolFilterName,
    )

    removed = []
    with get_client(sync_client=True) as client:
        found = client.read_deployments(
            deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[TAG])),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[work_pool])),
        )
        for d in found:
            if d.id not in keep:
                flow = client.read_flow(d.flow_id)
                client.delete_deployment(d.id)
                removed.append(f"{flow.name}/{d.name}")
    return removed


def register(settings: ServeSettings | None = None, *, say=print) -> dict[str, UUID]:
    """Work pool, deployments and automations; ``{"flow/name": deployment id}``."""
    from deployments import automations

    settings = settings or serve_settings()
    say(ensure_work_pool(settings.work_pool_concurrency))
    ids: dict[str, UUID] = {}
    for spec in specs():
        ids[spec.full_name] = register_deployment(spec)
        schedule = f"cron {spec.cron} {spec.timezone}" if spec.cron else "no schedule"
        say(f"deployment {spec.full_name} ({schedule}{', one run at a time' if spec.one_at_a_time else ''})")
    for name in prune(set(ids.values())):
        say(f"deployment {name} removed (no longer in deployments/catalog.py)")
    block_id = automations.webhook_block_id(settings)
    if block_id is not None:
        say(f"webhook block {automations.WEBHOOK_BLOCK!r} -> FUNDX_AUTOMATION_WEBHOOK")
    applied = automations.apply(automations.automations(ids, settings=settings, block_id=block_id))
    for name, what in applied.items():
        say(f"automation {name!r} {what}" + ("" if block_id else " (records only: FUNDX_AUTOMATION_WEBHOOK is not set)"))
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.register", description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    from prefect.settings import get_current_settings

    from fundx.core.errors import FundxError

    if not get_current_settings().api.url:
        print("error: PREFECT_API_URL is not set, so there is no server to register on (Prefect would start a "
              "throw-away one)\nwhat to do: make serve, or export PREFECT_API_URL=http://127.0.0.1:4200/api",
              file=sys.stderr)
        return 2
    try:
        register()
    except FundxError as exc:
        print(f"error: {exc}\nwhat to do: {exc.action}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
