"""The rows the ledger hands out: a batch's delivery to a stage, and a feed's pull.

Records are read only; :func:`delivery_record` and :func:`pull_record` make them from a row of the
``deliveries`` and ``pulls`` tables (:mod:`fundx.ledger.schema`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fundx.core.timeutil import Window

#: statuses of a delivery that the stage can see or has settled
HANDED_OVER = ("ready", "acknowledged", "refused")


@dataclass(frozen=True)
class DeliveryRecord:
    """One row of the deliveries table: a batch handed (or being handed) to a stage."""

    batch_id: str
    feed: str
    stage: str
    window: Window
    digest: str
    rows: int
    parts: int
    bytes: int | None
    contract_version: str | None
    status: str
    attempts: int
    run_id: int
    pull_id: int | None
    ready_sha256: str | None
    created_at: datetime
    delivered_at: datetime | None
    ready_at: datetime | None
    acknowledged_at: datetime | None
    refused_at: datetime | None
    reason: str | None


def delivery_record(row) -> DeliveryRecord:
    return DeliveryRecord(
        batch_id=row["batch_id"], feed=row["feed"], stage=row["stage"],
        window=Window(row["window_start"], row["window_end"]), digest=row["digest"], rows=row["rows"],
        parts=row["parts"], bytes=row["bytes"], contract_version=row["contract_version"], status=row["status"],
        attempts=row["attempts"], run_id=row["run_id"], pull_id=row["pull_id"], ready_sha256=row["ready_sha256"],
        created_at=row["created_at"], delivered_at=row["delivered_at"], ready_at=row["ready_at"],
        acknowledged_at=row["acknowledged_at"], refused_at=row["refused_at"], reason=row["reason"],
    )


@dataclass(frozen=True)
class PullRecord:
    """One row of the pulls table, as the CLI and status report show it."""

    id: int
    run_id: int
    feed: str
    window: Window
    backfill: bool
    started_at: datetime
    duration_s: float
    outcome: str
    rows: int | None
    bytes: int | None
    pages: int | None
    retries: int | None
    digest: str | None
    error_type: str | None
    error_message: str | None
    action: str | None
    repeats_identical: int = 0
    repeats_superseded: int = 0
    repeats_conflicting: int = 0


def pull_record(row) -> PullRecord:
    return PullRecord(
        id=row["id"], run_id=row["run_id"], feed=row["feed"],
        window=Window(row["window_start"], row["window_end"]), backfill=bool(row["backfill"]),
        started_at=row["started_at"], duration_s=row["duration_s"], outcome=row["outcome"],
        rows=row["rows"], bytes=row["bytes"], pages=row["pages"], retries=row["retries"],
        digest=row["digest"], error_type=row["error_type"], error_message=row["error_message"],
        action=row["action"], repeats_identical=row["repeats_identical"],
        repeats_superseded=row["repeats_superseded"], repeats_conflicting=row["repeats_conflicting"],
    )
