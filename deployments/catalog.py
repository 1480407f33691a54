"""The exchange's deployments, defined once: names, flows, schedules, parameters and concurrency.

Both ways of running them read this list:

- ``python -m deployments.register`` puts them on a Prefect server for the ``fundx`` process work
  pool (``make serve`` starts the server, registers them and starts a worker);
- ``python -m deployments.serve`` serves them from one process instead (no work pool).

A deployment names its flow by module path (``flows.exchange.nightly_exchange``): the worker's
flow-run processes import it from the installed checkout after changing into the repository (the
deployment's pull step), so relative settings such as ``FUNDX_HOME=./var`` mean what they mean for
``fundx night`` run from the repository root.

To add a deployment (the SLA monitor, the matching stage): append a :class:`DeploymentSpec` to
:data:`MORE` below; ``register`` and ``serve`` pick it up, and the automations in
:mod:`deployments.automations` cover it (they match every deployment registered here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect import Flow

#: the repository checkout the worker runs flows from (the deployments' working directory)
REPO_ROOT = Path(__file__).resolve().parent.parent
#: the process work pool the registered deployments run on
WORK_POOL = "fundx"
#: every deployment and automation of the exchange carries this tag
TAG = "fundx"

NIGHTLY_CRON = "30 1 * * *"
TIMEZONE = "Asia/Shanghai"


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment: ``<flow>/<name>``, the flow's module path, its schedule and default parameters."""

    flow_name: str  # the @flow(name=...) of the entrypoint, e.g. "nightly-exchange"
    name: str  # the deployment's name, e.g. "nightly"
    entrypoint: str  # module path of the flow object, e.g. "flows.exchange.nightly_exchange"
    description: str
    tags: tuple[str, ...] = (TAG,)
    parameters: dict[str, Any] = field(default_factory=dict)
    cron: str | None = None  # None: runs only when started (prefect deployment run ...)
    timezone: str = TIMEZONE
    #: at most one run of this deployment at a time; a run started while one is active is cancelled
    one_at_a_time: bool = True

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.name}"

    def load_flow(self) -> Flow[..., Any]:
        """The flow object (imports its module)."""
        from prefect.flows import load_flow_from_entrypoint

        flow: Flow[..., Any] = load_flow_from_entrypoint(self.entrypoint, use_placeholder_flow=False)
        if flow.name != self.flow_name:
            raise ValueError(f"{self.entrypoint} is flow {flow.name!r}, not {self.flow_name!r}")
        return flow

    def options(self) -> dict[str, Any]:
        """Keyword arguments shared by ``Flow.to_deployment`` and ``RunnerDeployment.from_storage``."""
        from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
        from prefect.schedules import Cron

        return {
            "name": self.name,
            "schedules": [Cron(self.cron, timezone=self.timezone)] if self.cron else [],
            "concurrency_limit": (
                ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
                if self.one_at_a_time else None
            ),
            "parameters": dict(self.parameters),
            "description": self.description,
            "tags": list(self.tags),
        }


def _nightly() -> DeploymentSpec:
    return DeploymentSpec(
        flow_name="nightly-exchange", name="nightly", entrypoint="flows.exchange.nightly_exchange",
        description="Every feed, every night at 01:30 Asia/Shanghai; one night at a time.",
        tags=(TAG, "nightly"), cron=NIGHTLY_CRON,
    )


def _per_feed() -> list[DeploymentSpec]:
    from connectors import feed_names

    return [
        DeploymentSpec(
            flow_name="exchange-feed", name=feed, entrypoint="flows.exchange.exchange_feed",
            description=f"{feed} on its own, from its watermark (no schedule).",
            tags=(TAG, "feed"), parameters={"feed": feed},
        )
        for feed in feed_names()
    ]


# ------------------------------------------------------------------------------------------------
# MORE DEPLOYMENTS GO HERE. The SLA monitor and the matching stage are added by appending, e.g.
#
#     DeploymentSpec(flow_name="sla-monitor", name="sla", entrypoint="flows.sla.sla_monitor",
#                    description="...", tags=(TAG, "sla"), cron="*/15 * * * *"),
#     DeploymentSpec(flow_name="matching", name="death-matching", entrypoint="flows.matching.matching",
#                    description="...", tags=(TAG, "matching"), parameters={"stage": "death_matching"}),
#
# (flow_name must be the flow's @flow(name=...); the module must import without side effects.)
MORE: list[DeploymentSpec] = [
    DeploymentSpec(flow_name="sla-monitor", name="hourly", entrypoint="flows.monitor.sla_monitor",
                   description="Judge tonight's feeds against their service levels (a missing feed is caught "
                               "after its deadline even when no night ran); breaches notified once.",
                   tags=(TAG, "sla"), cron="15 * * * *"),
    DeploymentSpec(flow_name="matching-night", name="nightly", entrypoint="flows.matching.matching_night",
                   description="The matching stages take their sealed batches, load them (pseudonymised) and run "
                               "the rules against the office's benefit roll: suspect lists and inspection orders.",
                   tags=(TAG, "matching"), cron="30 4 * * *"),
    DeploymentSpec(flow_name="backup", name="nightly", entrypoint="flows.backup.nightly_backup",
                   description="A sealed backup of the ledger, the certificates and the quarantine to FUNDX_BACKUP_DIR, "
                               "verified (fundx backup create, then verify), after the nights.",
                   tags=(TAG, "backup"), cron="30 5 * * *"),
]
# ------------------------------------------------------------------------------------------------


def specs() -> list[DeploymentSpec]:
    """Every deployment of the exchange: the nightly exchange, one per feed, then :data:`MORE`."""
    found = [_nightly(), *_per_feed(), *MORE]
    names = [s.full_name for s in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"deployments defined twice: {', '.join(duplicates)}")
    return found
