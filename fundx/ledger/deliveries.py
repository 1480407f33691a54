"""Deliveries of sealed batches to the stages, and the stages' acknowledgements and refusals.

A delivery goes sealing -> delivered -> ready -> acknowledged | refused (or sealing -> abandoned, and
delivered -> lost); each step is one audited transaction, so that recovery after a crash knows exactly
where a batch stopped (:mod:`fundx.exchange.recovery`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fundx.core.errors import InternalError
from fundx.core.timeutil import Window
from fundx.ledger.database import utc_now
from fundx.ledger.records import HANDED_OVER, DeliveryRecord, delivery_record
from fundx.ledger.schema import acks, deliveries
from fundx.ledger.trail import AuditTrail


class Deliveries(AuditTrail):
    """Batches handed to the stages and the stages' answers (a part of :class:`fundx.ledger.Ledger`)."""

    # deliveries and acknowledgements -------------------------------------------------------------

    def delivery(self, batch_id: str, conn: Connection | None = None) -> DeliveryRecord | None:
        """The delivery of one batch, or None."""
        query = deliveries.select().where(deliveries.c.batch_id == batch_id)
        if conn is not None:
            row = conn.execute(query).mappings().one_or_none()
        else:
            with self.engine.connect() as own:
                row = own.execute(query).mappings().one_or_none()
        return None if row is None else delivery_record(row)

    def deliveries(self, feed: str | None = None, *, status: tuple[str, ...] | None = None) -> list[DeliveryRecord]:
        """Deliveries, oldest first, of one feed or all, in the given statuses or all."""
        query = deliveries.select().order_by(deliveries.c.id)
        if feed:
            query = query.where(deliveries.c.feed == feed)
        if status:
            query = query.where(deliveries.c.status.in_(status))
        with self.engine.connect() as conn:
            return [delivery_record(r) for r in conn.execute(query).mappings()]

    def begin_delivery(self, *, batch_id: str, feed: str, stage: str, window: Window, digest: str, rows: int,
                       parts: int, contract_version: str, run_id: int) -> int:
        """Step (a) of a handoff: the batch is about to be sealed (committed before any file is written).

        A batch abandoned by an earlier attempt, refused by its stage or lost, starts again under the
        same id; returns the attempt number. InternalError if the batch is in any other status.
        """
        now = utc_now()
        with self.audited() as conn:
            old = self.delivery(batch_id, conn)
            if old is None:
                conn.execute(deliveries.insert().values(
                    batch_id=batch_id, feed=feed, stage=stage, window_start=window.start, window_end=window.end,
                    digest=digest, rows=rows, parts=parts, contract_version=contract_version, status="sealing",
                    attempts=1, run_id=run_id, created_at=now, updated_at=now,
                ))
                attempt = 1
            elif old.status in ("abandoned", "refused", "lost"):
                attempt = old.attempts + 1
                conn.execute(deliveries.update().where(deliveries.c.batch_id == batch_id).values(
                    stage=stage, parts=parts, contract_version=contract_version, status="sealing",
                    attempts=attempt, run_id=run_id, pull_id=None, bytes=None, ready_sha256=None,
                    delivered_at=None, ready_at=None, acknowledged_at=None, refused_at=None, reason=None,
                    updated_at=now,
                ))
            else:
                raise InternalError(f"batch {batch_id} is {old.status}; it cannot be sealed again")
            self.audit(conn, "batch.sealing", batch_id, {
                "feed": feed, "stage": stage, "rows": rows, "parts": parts, "digest": digest, "attempt": attempt,
                "run_id": run_id,
            })
            return attempt

    def mark_delivered(self, conn: Connection, batch_id: str, *, attempt: int, pull_id: int | None,
                       sealed_bytes: int) -> None:
        """Step (c), inside the caller's audited transaction: every part is written; the pull is recorded
        (``pull_id`` None: a release of quarantined rows, which has no pull of its own)."""
        done = conn.execute(
            deliveries.update()
            .where(deliveries.c.batch_id == batch_id, deliveries.c.status == "sealing", deliveries.c.attempts == attempt)
            .values(status="delivered", pull_id=pull_id, bytes=sealed_bytes, delivered_at=utc_now(), updated_at=utc_now())
        )
        if done.rowcount != 1:
            raise InternalError(f"batch {batch_id} attempt {attempt} is no longer being sealed; nothing recorded")
        self.audit(conn, "batch.delivered", batch_id, {
            "pull_id": pull_id, "attempt": attempt, "sealed_bytes": sealed_bytes,
        })

    def mark_ready(self, batch_id: str, ready_sha256: str, *, recovered: bool = False) -> None:
        """Step (d): the READY marker is written, so the stage may take the batch."""
        with self.audited() as conn:
            done = conn.execute(
                deliveries.update().where(deliveries.c.batch_id == batch_id, deliveries.c.status == "delivered")
                .values(status="ready", ready_sha256=ready_sha256, ready_at=utc_now(), updated_at=utc_now())
            )
            if done.rowcount != 1:
                raise InternalError(f"batch {batch_id} is not awaiting its READY marker")
            self.audit(conn, "recovery.ready" if recovered else "batch.ready", batch_id,
                       {"ready_sha256": ready_sha256})

    def abandon(self, batch_id: str, reason: str, *, recovered: bool = False) -> bool:
        """A batch that was being sealed never reached the stage: its watermark never moved. True if it was."""
        with self.audited() as conn:
            done = conn.execute(
                deliveries.update().where(deliveries.c.batch_id == batch_id, deliveries.c.status == "sealing")
                .values(status="abandoned", reason=reason[:2000], updated_at=utc_now())
            )
            if done.rowcount:
                self.audit(conn, "recovery.abandoned" if recovered else "batch.abandoned", batch_id,
                           {"reason": reason[:500]})
            return bool(done.rowcount)

    def mark_lost(self, batch_id: str, reason: str) -> None:
        """A delivered batch whose parts are gone before READY: recorded once, so later runs go on."""
        with self.audited() as conn:
            conn.execute(
                deliveries.update().where(deliveries.c.batch_id == batch_id, deliveries.c.status == "delivered")
                .values(status="lost", reason=reason[:2000], updated_at=utc_now())
            )
            self.audit(conn, "recovery.lost", batch_id, {"reason": reason[:500]})

    def acks_recorded(self, stage: str) -> set[str]:
        """The acknowledgement files of a stage that are in the ledger already."""
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(acks.c.file).where(acks.c.stage == stage)).scalars())

    def record_ack(self, *, stage: str, file: str, file_sha256: str, outcome: str, batch_id: str | None,
                   reason: str | None = None, received_at: datetime | None = None, ready_sha256: str | None = None,
                   rows: int | None = None, parts: int | None = None, signer_serial: str | None = None,
                   feed: str | None = None) -> bool:
        """Record one acknowledgement or refusal; settle the delivery it answers. True if it settled one.

        It settles a delivery only if that delivery awaits an answer (``ready``), from this stage,
        about these exact files (the READY marker's SHA-256): a replayed batch's refusal never
        turns an acknowledged delivery into a refused one.
        """
        with self.audited() as conn:
            target = self.delivery(batch_id, conn) if batch_id else None
            applied = (
                outcome in ("received", "refused") and target is not None and target.status == "ready"
                and target.stage == stage and ready_sha256 is not None and target.ready_sha256 == ready_sha256
            )
            if applied:
                values: dict[str, Any] = {"updated_at": utc_now()}
                if outcome == "received":
                    values.update(status="acknowledged", acknowledged_at=received_at or utc_now())
                else:
                    values.update(status="refused", refused_at=received_at or utc_now(), reason=(reason or "")[:2000])
                conn.execute(deliveries.update().where(deliveries.c.batch_id == batch_id).values(**values))
            conn.execute(acks.insert().values(
                stage=stage, file=file, file_sha256=file_sha256, batch_id=batch_id,
                feed=target.feed if target is not None else feed, outcome=outcome, reason=reason,
                received_at=received_at, ready_sha256=ready_sha256, rows=rows, parts=parts,
                signer_serial=signer_serial, applied=applied, recorded_at=utc_now(),
            ))
            action = {"received": "ack.recorded", "refused": "refusal.recorded"}.get(outcome, "ack.invalid")
            self.audit(conn, action, batch_id or file, {
                "stage": stage, "file": file, "file_sha256": file_sha256, "applied": applied,
                **({"reason": reason[:500]} if reason else {}),
            })
            return applied

    def ack_records(self, *, stage: str | None = None, outcome: str | None = None) -> list[dict[str, Any]]:
        """Recorded acknowledgements and refusals, oldest first."""
        query = acks.select().order_by(acks.c.id)
        if stage:
            query = query.where(acks.c.stage == stage)
        if outcome:
            query = query.where(acks.c.outcome == outcome)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def delivery_counts(self) -> dict[str, dict[str, int]]:
        """Per feed: batches delivered (handed to the stage), awaiting an answer, acknowledged, refused,
        abandoned, lost, and refusals recorded (including replays and batches the exchange never sent)."""
        status = deliveries.c.status

        def count(*names: str):
            return sa.func.sum(sa.case((status.in_(names), 1), else_=0))

        query = sa.select(
            deliveries.c.feed,
            count("delivered", *HANDED_OVER).label("delivered"),
            count("delivered", "ready").label("awaiting"),
            count("acknowledged").label("acknowledged"),
            count("refused").label("refused"),
            count("abandoned").label("abandoned"),
            count("lost").label("lost"),
            sa.func.coalesce(sa.func.sum(sa.case((status.in_(HANDED_OVER), deliveries.c.rows), else_=0)), 0).label("rows"),
        ).group_by(deliveries.c.feed)
        refusals = sa.select(acks.c.feed, sa.func.count().label("n")).where(acks.c.outcome != "received").group_by(acks.c.feed)
        with self.engine.connect() as conn:
            found = {
                r.feed: {k: int(getattr(r, k) or 0) for k in ("delivered", "awaiting", "acknowledged", "refused",
                                                               "abandoned", "lost", "rows")}
                for r in conn.execute(query)
            }
            for r in conn.execute(refusals):
                key = r.feed or "(unknown)"
                found.setdefault(key, dict.fromkeys(("delivered", "awaiting", "acknowledged", "refused",
                                                     "abandoned", "lost", "rows"), 0))["refusals"] = int(r.n)
        for figures in found.values():
            figures.setdefault("refusals", 0)
        return found
