"""The ledger: what the exchange did, and where each feed's next pull starts.

SQLAlchemy Core over SQLite (embedded default, a file under FUNDX_HOME) or PostgreSQL (by URL, for
several workers). It records runs, pulls and watermarks. It never stores a record's content: only
counts, sizes, digests, windows, durations and error types with their (content-free) messages.

A feed's watermark is the end of the last window it has safely completed. It moves only inside the
transaction that records the step a batch has reached, and never backwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from fundx.errors import ConfigurationError, FundxError
from fundx.timeutil import SHANGHAI, UTC, Window

metadata = sa.MetaData()


class UTCDateTime(sa.types.TypeDecorator):
    """Aware datetimes stored as naive UTC (SQLite has no time zones), returned aware in UTC."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the ledger stores timezone-aware datetimes only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("uid", sa.String(36), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),  # night | feed | backfill
    sa.Column("night", sa.String(10), nullable=False),  # YYYY-MM-DD in Asia/Shanghai
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime),
    sa.Column("outcome", sa.String(16), nullable=False),  # running | completed | failed
    sa.Column("feeds", sa.Integer, nullable=False, default=0),
    sa.Column("feeds_failed", sa.Integer, nullable=False, default=0),
    sa.Column("summary", sa.Text),
    sa.Column("flow_run_id", sa.String(64)),
)

pulls = sa.Table(
    "pulls",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("feed", sa.String(128), nullable=False),
    sa.Column("window_start", UTCDateTime, nullable=False),
    sa.Column("window_end", UTCDateTime, nullable=False),
    sa.Column("backfill", sa.Boolean, nullable=False, default=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime, nullable=False),
    sa.Column("duration_s", sa.Float, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # pulled | failed
    sa.Column("rows", sa.BigInteger),
    sa.Column("bytes", sa.BigInteger),
    sa.Column("pages", sa.Integer),
    sa.Column("retries", sa.Integer),
    sa.Column("digest", sa.String(80)),
    sa.Column("error_type", sa.String(64)),
    sa.Column("error_message", sa.Text),
    sa.Column("action", sa.Text),
    sa.Index("ix_pulls_feed_ended", "feed", "ended_at"),
)

watermarks = sa.Table(
    "watermarks",
    metadata,
    sa.Column("feed", sa.String(128), primary_key=True),
    sa.Column("value", UTCDateTime, nullable=False),
    sa.Column("pull_id", sa.Integer, sa.ForeignKey("pulls.id")),
    sa.Column("updated_at", UTCDateTime, nullable=False),
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


def _now() -> datetime:
    return datetime.now(UTC)


class Ledger:
    """Access to the ledger database; one per process is enough (engines pool connections)."""

    def __init__(self, url: str, *, create: bool = True):
        self.url = url
        action = "set FUNDX_LEDGER_URL to sqlite:///path/ledger.db or postgresql+psycopg://user@host/db"
        try:
            backend = sa.engine.make_url(url).get_backend_name()
        except sa.exc.ArgumentError:
            raise ConfigurationError("FUNDX_LEDGER_URL is not a SQLAlchemy URL", action=action) from None
        if backend not in ("sqlite", "postgresql"):
            raise ConfigurationError(f"FUNDX_LEDGER_URL: the ledger runs on SQLite or PostgreSQL, not {backend}", action=action)
        self.engine: Engine = _engine(url)
        if create:
            metadata.create_all(self.engine)

    @classmethod
    def from_settings(cls, settings=None) -> Ledger:
        from fundx.settings import get_settings

        settings = settings or get_settings()
        settings.home.mkdir(parents=True, exist_ok=True)
        return cls(settings.ledger)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()

    # runs -------------------------------------------------------------------------------------

    def start_run(self, kind: str, night: str, *, flow_run_id: str | None = None) -> int:
        with self.transaction() as conn:
            return conn.execute(
                runs.insert().values(
                    uid=str(uuid.uuid4()), kind=kind, night=night, started_at=_now(),
                    outcome="running", feeds=0, feeds_failed=0, flow_run_id=flow_run_id,
                )
            ).inserted_primary_key[0]

    def finish_run(self, run_id: int, *, feeds: int, failed: int, summary: str = "") -> None:
        with self.transaction() as conn:
            conn.execute(
                runs.update().where(runs.c.id == run_id).values(
                    ended_at=_now(), outcome="failed" if failed else "completed",
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
    ) -> int:
        """Record a completed pull and, in the same transaction, move the feed's watermark.

        The watermark becomes max(current, window end): a backfill of an old window never moves it
        backwards. ``pull`` is a connectors.base.Pull (duck-typed to keep this module light).
        """
        with self.transaction() as conn:
            pull_id = conn.execute(
                pulls.insert().values(
                    run_id=run_id, feed=pull.feed, window_start=pull.window.start,
                    window_end=pull.window.end, backfill=backfill, started_at=started_at,
                    ended_at=_now(), duration_s=pull.duration_s, outcome="pulled", rows=pull.rows,
                    bytes=pull.bytes, pages=pull.pages, retries=pull.retries, digest=pull.digest,
                )
            ).inserted_primary_key[0]
            if move_watermark:
                self._advance(conn, pull.feed, pull.window.end, pull_id)
            return pull_id

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
        ended = _now()
        with self.transaction() as conn:
            return conn.execute(
                pulls.insert().values(
                    run_id=run_id, feed=feed, window_start=window.start, window_end=window.end,
                    backfill=backfill, started_at=started_at, ended_at=ended,
                    duration_s=(ended - started_at).total_seconds(), outcome="failed",
                    error_type=type(error).__name__, error_message=message[:2000], action=action,
                )
            ).inserted_primary_key[0]

    def _advance(self, conn: Connection, feed: str, value: datetime, pull_id: int) -> None:
        dialect_insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
        stmt = dialect_insert(watermarks).values(feed=feed, value=value, pull_id=pull_id, updated_at=_now())
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
            return [_pull_record(r) for r in conn.execute(query).mappings()]

    def latest_pulls(self) -> dict[str, PullRecord]:
        """The most recent pull of every feed."""
        latest = sa.select(sa.func.max(pulls.c.id)).group_by(pulls.c.feed).scalar_subquery()
        with self.engine.connect() as conn:
            rows = conn.execute(pulls.select().where(pulls.c.id.in_(latest))).mappings()
            return {r["feed"]: _pull_record(r) for r in rows}

    def pulls_of_run(self, run_id: int) -> list[PullRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(pulls.select().where(pulls.c.run_id == run_id).order_by(pulls.c.id)).mappings()
            return [_pull_record(r) for r in rows]

    def totals(self) -> dict[str, dict[str, int]]:
        """Per feed: successful pulls, failed pulls and rows pulled in all."""
        query = sa.select(
            pulls.c.feed,
            sa.func.sum(sa.case((pulls.c.outcome == "pulled", 1), else_=0)).label("pulled"),
            sa.func.sum(sa.case((pulls.c.outcome == "failed", 1), else_=0)).label("failed"),
            sa.func.coalesce(sa.func.sum(pulls.c.rows), 0).label("rows"),
        ).group_by(pulls.c.feed)
        with self.engine.connect() as conn:
            return {r.feed: {"pulled": int(r.pulled), "failed": int(r.failed), "rows": int(r.rows)} for r in conn.execute(query)}


def _pull_record(row) -> PullRecord:
    return PullRecord(
        id=row["id"], run_id=row["run_id"], feed=row["feed"],
        window=Window(row["window_start"], row["window_end"]), backfill=bool(row["backfill"]),
        started_at=row["started_at"], duration_s=row["duration_s"], outcome=row["outcome"],
        rows=row["rows"], bytes=row["bytes"], pages=row["pages"], retries=row["retries"],
        digest=row["digest"], error_type=row["error_type"], error_message=row["error_message"],
        action=row["action"],
    )


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # WAL lets readers (status, console) run beside a night
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    connect_args = {"connect_timeout": 10} if url.startswith("postgresql") else {}
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def night_of(moment: datetime) -> str:
    """The night a run belongs to: the date it started on, in Asia/Shanghai."""
    return moment.astimezone(SHANGHAI).date().isoformat()
