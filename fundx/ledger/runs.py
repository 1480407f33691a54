"""Runs, the pulls of their feeds, and the watermarks the pulls move.

A run is one night (or one feed, or a backfill) of the exchange; each pull it makes is recorded,
completed or failed, with counts, sizes, the digest and the error's type, never a record's content.
A feed's watermark is the end of the last window it has safely completed. It moves only inside the
transaction that records the batch's delivery (:mod:`fundx.exchange.handoff`), and never backwards.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from fundx.core.errors import FundxError
from fundx.core.timeutil import SHANGHAI, UTC, Window
from fundx.ledger.database import inserted_id, utc_now
from fundx.ledger.records import PullRecord, pull_record
from fundx.ledger.schema import pulls, runs, watermarks
from fundx.ledger.trail import AuditTrail


def night_of(moment: datetime) -> str:
    """The night a run belongs to: the date it started on, in Asia/Shanghai."""
    return moment.astimezone(SHANGHAI).date().isoformat()


class RunsAndPulls(AuditTrail):
    """The runs of the exchange, their pulls and the feeds' watermarks (a part of :class:`fundx.ledger.Ledger`)."""

    # runs -------------------------------------------------------------------------------------

    def start_run(self, kind: str, night: str, *, flow_run_id: str | None = None) -> int:
        with self.transaction() as conn:
            return inserted_id(conn.execute(
                runs.insert().values(
                    uid=str(uuid.uuid4()), kind=kind, night=night, started_at=utc_now(),
                    outcome="running", feeds=0, feeds_failed=0, flow_run_id=flow_run_id,
                )
            ))

    def finish_run(self, run_id: int, *, feeds: int, failed: int, summary: str = "") -> None:
        with self.transaction() as conn:
            conn.execute(
                runs.update().where(runs.c.id == run_id).values(
                    ended_at=utc_now(), outcome="failed" if failed else "completed",
                    feeds=feeds, feeds_failed=failed, summary=summary,
                )
            )

    def last_runs(self, limit: int = 10) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(runs.select().order_by(runs.c.id.desc()).limit(limit)).mappings()
            return [dict(r) for r in rows]

    # watermarks and pulls ---------------------------------------------------------------------

    def watermark(self, feed: str, conn: Connection | None = None) -> datetime | None:
        query = sa.select(watermarks.c.value).where(watermarks.c.feed == feed)
        if conn is not None:
            return conn.execute(query).scalar_one_or_none()
        with self.engine.connect() as c:
            return c.execute(query).scalar_one_or_none()

    def watermarks(self) -> dict[str, datetime]:
        with self.engine.connect() as conn:
            return {r.feed: r.value for r in conn.execute(sa.select(watermarks.c.feed, watermarks.c.value))}

    def record_pull(
        self,
        run_id: int,
        pull,
        *,
        started_at: datetime,
        backfill: bool = False,
        move_watermark: bool = True,
        outcome: str = "pulled",
        conn: Connection | None = None,
    ) -> int:
        """Record a completed pull and, in the same transaction, move the feed's watermark.

        ``outcome`` is ``pulled``, or ``held`` when the batch policy held the whole batch back for
        the stewards (its rows are in the quarantine, so the watermark moves all the same).

        The watermark becomes max(current, window end): a backfill of an old window never moves it
        backwards. ``pull`` is a connectors.base.Pull (duck-typed to keep this module light).
        With ``conn`` (from :meth:`audited`) the pull becomes part of the caller's transaction: the
        handoff records a batch's delivery, its pull and the watermark in one commit.
        """
        if conn is None:
            with self.audited() as own:
                return self.record_pull(run_id, pull, started_at=started_at, backfill=backfill,
                                        move_watermark=move_watermark, outcome=outcome, conn=own)
        repeats = getattr(pull, "repeats", None)  # a Pull or SpooledPull has them; other callers' objects may not
        pull_id = inserted_id(conn.execute(
            pulls.insert().values(
                run_id=run_id, feed=pull.feed, window_start=pull.window.start,
                window_end=pull.window.end, backfill=backfill, started_at=started_at,
                ended_at=utc_now(), duration_s=pull.duration_s, outcome=outcome, rows=pull.rows,
                bytes=pull.bytes, pages=pull.pages, retries=pull.retries, digest=pull.digest,
                repeats_identical=getattr(repeats, "identical", 0) or 0,
                repeats_superseded=getattr(repeats, "superseded", 0) or 0,
                repeats_conflicting=getattr(repeats, "conflicting", 0) or 0,
            )
        ))
        if move_watermark:
            self._advance(conn, pull.feed, pull.window.end, pull_id)
        self.audit(conn, "pull.recorded", pull.feed, {
            "pull_id": pull_id, "run_id": run_id, "window": _window_text(pull.window), "rows": pull.rows,
            "digest": pull.digest, "backfill": backfill, "watermark_moved": move_watermark, "outcome": outcome,
        })
        return pull_id

    def row_history(self, feed: str, *, limit: int, min_hours: float = 12.0, before: int | None = None) -> list[int]:
        """Row counts of the feed's recent nightly batches, oldest first (for the row-count rule).

        Only whole nights' batches count: completed pulls (``pulled`` or ``held``) that brought rows,
        were not backfills and whose window spans at least ``min_hours`` — a rerun an hour later is
        not a night, and the empty nights of a weekly or monthly feed are not batches. ``before``: only
        pulls recorded before this pull id (the history a night's batch was judged against).
        """
        query = (
            sa.select(pulls.c.rows, pulls.c.window_start, pulls.c.window_end)
            .where(pulls.c.feed == feed, pulls.c.outcome.in_(("pulled", "held")), pulls.c.backfill.is_(False))
            .order_by(pulls.c.id.desc())
            .limit(limit * 4)
        )
        if before is not None:
            query = query.where(pulls.c.id < before)
        with self.engine.connect() as conn:
            rows = [r.rows for r in conn.execute(query)
                    if (r.window_end - r.window_start).total_seconds() >= min_hours * 3600 and r.rows]
        return [int(n) for n in reversed(rows[:limit])]

    def run_night(self, run_id: int) -> str:
        """The night (YYYY-MM-DD) a run belongs to."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(runs.c.night).where(runs.c.id == run_id)).scalar_one()

    def record_failure(
        self,
        run_id: int,
        feed: str,
        window: Window,
        error: BaseException,
        *,
        started_at: datetime,
        backfill: bool = False,
    ) -> int:
        """Record a failed pull. The watermark stays where it was, so the next run retries the window."""
        action = error.action if isinstance(error, FundxError) else None
        message = str(error) if isinstance(error, FundxError) else f"unexpected {type(error).__name__}"
        ended = utc_now()
        with self.audited() as conn:
            pull_id = inserted_id(conn.execute(
                pulls.insert().values(
                    run_id=run_id, feed=feed, window_start=window.start, window_end=window.end,
                    backfill=backfill, started_at=started_at, ended_at=ended,
                    duration_s=(ended - started_at).total_seconds(), outcome="failed",
                    error_type=type(error).__name__, error_message=message[:2000], action=action,
                )
            ))
            self.audit(conn, "pull.failed", feed, {
                "pull_id": pull_id, "run_id": run_id, "window": _window_text(window),
                "error_type": type(error).__name__, "backfill": backfill,
            })
            return pull_id

    def _advance(self, conn: Connection, feed: str, value: datetime, pull_id: int) -> None:
        dialect_insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
        stmt = dialect_insert(watermarks).values(feed=feed, value=value, pull_id=pull_id, updated_at=utc_now())
        newer = stmt.excluded.value > watermarks.c.value
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[watermarks.c.feed],
                set_={
                    "value": sa.case((newer, stmt.excluded.value), else_=watermarks.c.value),
                    "pull_id": sa.case((newer, stmt.excluded.pull_id), else_=watermarks.c.pull_id),
                    "updated_at": stmt.excluded.updated_at,
                },
            )
        )

    def pulls(self, feed: str | None = None, *, limit: int = 50) -> list[PullRecord]:
        query = pulls.select().order_by(pulls.c.id.desc()).limit(limit)
        if feed:
            query = query.where(pulls.c.feed == feed)
        with self.engine.connect() as conn:
            return [pull_record(r) for r in conn.execute(query).mappings()]

    def latest_pulls(self) -> dict[str, PullRecord]:
        """The most recent pull of every feed."""
        latest = sa.select(sa.func.max(pulls.c.id)).group_by(pulls.c.feed).scalar_subquery()
        with self.engine.connect() as conn:
            rows = conn.execute(pulls.select().where(pulls.c.id.in_(latest))).mappings()
            return {r["feed"]: pull_record(r) for r in rows}

    def pulls_of_run(self, run_id: int) -> list[PullRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(pulls.select().where(pulls.c.run_id == run_id).order_by(pulls.c.id)).mappings()
            return [pull_record(r) for r in rows]

    def totals(self) -> dict[str, dict[str, int]]:
        """Per feed: successful pulls, failed pulls and rows pulled in all."""
        query = sa.select(
            pulls.c.feed,
            sa.func.sum(sa.case((pulls.c.outcome.in_(("pulled", "held")), 1), else_=0)).label("pulled"),
            sa.func.sum(sa.case((pulls.c.outcome == "failed", 1), else_=0)).label("failed"),
            sa.func.coalesce(sa.func.sum(pulls.c.rows), 0).label("rows"),
        ).group_by(pulls.c.feed)
        with self.engine.connect() as conn:
            return {r.feed: {"pulled": int(r.pulled), "failed": int(r.failed), "rows": int(r.rows)} for r in conn.execute(query)}


def _window_text(window: Window) -> list[str]:
    return [window.start.astimezone(UTC).isoformat(), window.end.astimezone(UTC).isoformat()]
