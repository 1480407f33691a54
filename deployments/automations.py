"""The exchange's Prefect automations, registered with its deployments by ``python -m deployments.register``.

Prefect Cloud's SLA objects do not exist on the open-source server (see docs/libraries.md); these are plain
automations on the server's event stream:

- ``fundx: run late or crashed`` — a flow run of any fundx deployment goes ``Late`` (a scheduled
  night that no worker picked up in time: the worker is down, or the pool is full) or ``Crashed``
  (its process died: killed, out of memory, the worker stopped under it);
- ``fundx: night over budget`` — a run of ``nightly-exchange/nightly`` is still running
  ``FUNDX_NIGHT_BUDGET_MINUTES`` (default 120) after it started: a proactive trigger that expects
  the run's end (Completed, Failed, Crashed, Cancelled, TimedOut) within the budget after
  ``prefect.flow-run.Running``, evaluated per flow run.

What they do: with ``FUNDX_AUTOMATION_WEBHOOK=https://...`` set when registering, each POSTs a
JSON notice (:data:`PAYLOAD`, schema ``fundx.automation/1``: the automation, the event and when it
occurred, its resource (``prefect.flow-run.<id>``), the flow, deployment, flow run and state names
— never parameters or record data) through the Prefect
Webhook block ``fundx-automations``, which registering creates or updates from that setting. Without
it they only record that they fired (``prefect.automation.action.*`` events in the UI's event feed).
To send these to the exchange's own notice channels (FUNDX_NOTIFY) instead, point the webhook at a
receiver that hands them to :mod:`fundx.notify`, or replace :func:`actions` below.

Automations are matched by name: registering again leaves an unchanged one alone (an update would
start its trigger afresh), updates a changed one in place, and removes duplicates.
"""

from __future__ import annotations

from datetime import timedelta
from typing import cast
from uuid import UUID

from prefect.automations import Automation, CallWebhook, DoNothing, EventTrigger, Posture

from deployments.catalog import TAG
from deployments.settings import ServeSettings, serve_settings

WEBHOOK_BLOCK = "fundx-automations"
FEED_SILENT = "fundx: no delivery of "
LATE_OR_CRASHED = "fundx: run late or crashed"
NIGHT_OVER_BUDGET = "fundx: night over budget"
NIGHTLY = "nightly-exchange/nightly"

#: the end states a night is expected to reach within its budget
END_EVENTS = frozenset(f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Crashed", "Cancelled", "TimedOut"))

#: the webhook's body: names and ids only (Jinja, rendered by the Prefect server)
PAYLOAD = """{
  "schema": "fundx.automation/1",
  "automation": {{ automation.name | tojson }},
  "event": {{ event.event | default(none) | tojson }},
  "occurred": {{ event.occurred | default("") | string | replace(" ", "T") | tojson }},
  "resource": {{ event.resource.id | default(none) | tojson }},
  "flow": {{ flow.name | default(none) | tojson }},
  "deployment": {{ deployment.name | default(none) | tojson }},
  "flow_run": {{ flow_run.name | default(none) | tojson }},
  "flow_run_id": {{ flow_run.id | default("") | string | tojson }},
  "state": {{ flow_run.state.name | default(none) | tojson }}
}"""


def _deployment_resources(ids: list[UUID]) -> dict[str, object]:
    return {"prefect.resource.role": "deployment", "prefect.resource.id": [f"prefect.deployment.{i}" for i in ids]}


def webhook_block_id(settings: ServeSettings) -> UUID | None:
    """Create or update the Webhook block ``fundx-automations`` from FUNDX_AUTOMATION_WEBHOOK (None if unset)."""
    if not settings.automation_webhook:
        return None
    from prefect.blocks.webhook import Webhook

    block = Webhook(method="POST", url=settings.automation_webhook, headers={"Content-Type": "application/json"})
    # called from sync code, Prefect's dual sync/async save returns the id itself
    return cast(UUID, block.save(WEBHOOK_BLOCK, overwrite=True))


def actions(block_id: UUID | None) -> list:
    """What an automation does when it fires: call the webhook, or only record that it fired."""
    if block_id is None:
        return [DoNothing()]
    return [CallWebhook(block_document_id=block_id, payload=PAYLOAD)]


def automations(deployment_ids: dict[str, UUID], *, settings: ServeSettings | None = None,
                block_id: UUID | None = None) -> list[Automation]:
    """The automations for the registered deployments (``{"flow/name": id}``); nothing is sent to the server."""
    settings = settings or serve_settings()
    if not deployment_ids:
        raise ValueError("no deployments to watch")
    every = sorted(deployment_ids.values(), key=str)
    found = [
        Automation(
            name=LATE_OR_CRASHED,
            description="A flow run of a fundx deployment went Late (not started in time) or Crashed.",
            tags=[TAG],
            trigger=EventTrigger(
                expect={"prefect.flow-run.Late", "prefect.flow-run.Crashed"},
                match={"prefect.resource.id": "prefect.flow-run.*"},
                match_related=_deployment_resources(every),
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=actions(block_id),
        ),
    ]
    if NIGHTLY in deployment_ids:
        budget = timedelta(minutes=settings.night_budget_minutes)
        found.append(
            Automation(
                name=NIGHT_OVER_BUDGET,
                description=(f"A night of {NIGHTLY} still running {settings.night_budget_minutes:g} minutes "
                             "after it started (FUNDX_NIGHT_BUDGET_MINUTES)."),
                tags=[TAG],
                trigger=EventTrigger(
                    after={"prefect.flow-run.Running"},
                    expect=set(END_EVENTS),
                    for_each={"prefect.resource.id"},
                    match={"prefect.resource.id": "prefect.flow-run.*"},
                    match_related=_deployment_resources([deployment_ids[NIGHTLY]]),
                    posture=Posture.Proactive,
                    threshold=1,
                    within=budget,
                ),
                actions=actions(block_id),
            )
        )
    found.extend(feed_silence(block_id))
    return found


def feed_silence(block_id: UUID | None) -> list[Automation]:
    """Per feed, a proactive trigger: no ``fundx.feed.delivered`` event for the feed within its
    period (from its contract's SLA: a day, a week or a month) plus a few hours — fires even when
    nothing runs at all (the server evaluates it)."""
    from contracts.sla.policy import all_slas

    grace = {"day": timedelta(hours=26), "week": timedelta(days=7, hours=2), "month": timedelta(days=32)}
    return [
        Automation(
            name=f"{FEED_SILENT}{feed}",
            description=(f"No delivery of {feed} recorded within {grace[sla.period]} "
                         f"(its contract's frequency: every {sla.period})."),
            tags=[TAG],
            trigger=EventTrigger(
                expect={"fundx.feed.delivered"},
                match={"prefect.resource.id": f"fundx.feed.{feed}"},
                posture=Posture.Proactive,
                threshold=1,
                within=grace[sla.period],
            ),
            actions=actions(block_id),
        )
        for feed, sla in sorted(all_slas().items())
    ]


def apply(found: list[Automation]) -> dict[str, str]:
    """Create each automation, or update the one of the same name in place when it differs (an update
    starts its trigger afresh: a night's budget would be counted again from the next event);
    ``{name: "created" | "updated" | "unchanged"}``."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    done: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        for automation in found:
            core = AutomationCore(**automation.model_dump(exclude={"id", "owner_resource"}))
            existing = client.read_automations_by_name(automation.name)
            if not existing:
                client.create_automation(automation=core)
                done[automation.name] = "created"
                continue
            first, *extra = sorted(existing, key=lambda a: str(a.id))
            for duplicate in extra:
                client.delete_automation(duplicate.id)
            if AutomationCore(**first.model_dump(exclude={"id", "owner_resource"})) == core:
                done[automation.name] = "unchanged"
            else:
                client.update_automation(automation_id=first.id, automation=core)
                done[automation.name] = "updated"
    return done
