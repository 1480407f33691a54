"""The matching stage as a Prefect flow: receive, load, match, record orders, write the lists.

Deployment ``matching-night/nightly`` runs it after the exchange's night. Its parameters are the
night's date and rule parameters (numbers); its artifact holds counts and amounts per rule only:
suspects' identities are in the investigators' sealed file, never in Prefect.
"""

from __future__ import annotations

from datetime import date

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from fundx.core.errors import content_free
from fundx.core.settings import private_umask
from matching.load import stages


@task(name="receive", persist_result=False)
def receive(stage: str) -> dict:
    """The stage takes its READY batches (verify, keep sealed, acknowledge); counts only."""
    from fundx.stage import Stage

    receipts = Stage(stage).receive()
    return {"received": sum(r.outcome == "received" for r in receipts),
            "refused": sum(r.outcome != "received" for r in receipts)}


@flow(name="matching-night", persist_result=False, validate_parameters=True)
def matching_night(night: date | None = None, params: dict[str, str] | None = None) -> dict:
    """Receive every matching stage's batches, load them, run the rules, open inspection orders."""
    from fundx.exchange.acks import record_acks
    from matching.run import run_matching

    private_umask()  # a worker's flow run: whatever umask the worker was started with
    logger = get_run_logger()
    try:
        for stage in stages():
            got = receive(stage)
            logger.info("stage %s: %d batches received, %d refused", stage, got["received"], got["refused"])
        record_acks(logger=logger)
        result = run_matching(night, params)
    except Exception as exc:  # noqa: BLE001 - content-free: Prefect stores a failed flow's exception
        raise content_free(exc) from None
    rows = [{"rule": r.rule, "suspects": r.suspects, "amount_at_risk": r.amount_at_risk} for r in result.rules]
    create_table_artifact(table=rows, key=f"matching-{result.night.isoformat()}",
                          description=f"Suspects per rule, night of {result.night}: {result.orders_new} new orders")
    return {"night": result.night.isoformat(), "loaded": result.loaded, "orders_new": result.orders_new,
            "orders_updated": result.orders_updated, "orders_reopened": result.orders_reopened,
            "escalated": result.escalated,
            "stops_delivered": result.stops_delivered, "stops_answered": result.stops_answered,
            "suspects": {r.rule: r.suspects for r in result.rules}}
