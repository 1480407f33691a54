"""Serve the exchange's deployments from this process: the nightly exchange at 01:30 Asia/Shanghai,
and each feed on its own (no schedule; start with `prefect deployment run 'exchange-feed/<feed>'`).

Needs a running Prefect server (schedules do not fire in ephemeral mode):
    prefect server start &           # then, in another shell:
    PREFECT_API_URL=http://127.0.0.1:4200/api python -m deployments.serve
A second night never starts while one runs: the nightly deployment has a concurrency limit of 1.
"""

from __future__ import annotations

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron

from connectors import feed_names
from flows.exchange import exchange_feed, nightly_exchange

NIGHTLY_CRON = "30 1 * * *"
TIMEZONE = "Asia/Shanghai"


def deployments() -> list:
    """The nightly deployment and one per feed; one run of each at a time."""
    one_at_a_time = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    nightly = nightly_exchange.to_deployment(
        name="nightly",
        schedule=Cron(NIGHTLY_CRON, timezone=TIMEZONE),
        concurrency_limit=one_at_a_time,
        description="Every feed, every night at 01:30 Asia/Shanghai.",
        tags=["fundx", "nightly"],
    )
    per_feed = [
        exchange_feed.to_deployment(
            name=feed,
            parameters={"feed": feed},
            concurrency_limit=one_at_a_time,
            description=f"{feed} on its own, from its watermark.",
            tags=["fundx", "feed"],
        )
        for feed in feed_names()
    ]
    return [nightly, *per_feed]


if __name__ == "__main__":
    serve(*deployments())
