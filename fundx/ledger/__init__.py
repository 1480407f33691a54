"""The ledger: what the exchange did, and where each feed's next pull starts.

SQLAlchemy Core over SQLite (embedded default, a file under FUNDX_HOME) or PostgreSQL (by URL, for
several workers). It records runs, pulls, watermarks, deliveries of sealed batches to the stages,
the stages' acknowledgements and refusals, the matching stage's inspection orders, and a
hash-chained audit trail. It never stores a record's content: only counts, sizes, digests, windows,
durations and error types with their (content-free) messages; an order names its subject by a
pseudonymous token (or a bill key or credit code) and a masked identity number.

A feed's watermark is the end of the last window it has safely completed. It moves only inside the
transaction that records the batch's delivery (:mod:`fundx.exchange.handoff`), and never backwards.

Every audited write goes through :meth:`Ledger.audited`, which first locks the head of the audit
chain (an UPDATE of its one row: a row lock on PostgreSQL, the database's write lock on SQLite),
so two writers can never fork the chain; see :mod:`fundx.ledger.audit`.

The schema has revisions (Alembic's, in :mod:`fundx.ledger.migrations`; the ``alembic_version`` table holds
the ledger's). A new ledger is made at the newest, :data:`SCHEMA_HEAD`; a ledger at another revision,
or one written by fundx 0.1.0 (no revision), is refused with :class:`LedgerSchemaError` until
``fundx ledger upgrade`` brings it to the head.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, CursorResult, Engine

from fundx.core.errors import ConfigurationError, FeedBusy, FundxError, InternalError
from fundx.core.timeutil import SHANGHAI, UTC, Window
from fundx.ledger import audit as audit_chain

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
    sa.Column("outcome", sa.String(16), nullable=False),  # pulled | held (the whole batch went to the stewards) | failed
    sa.Column("rows", sa.BigInteger),
    sa.Column("bytes", sa.BigInteger),
    sa.Column("pages", sa.Integer),
    sa.Column("retries", sa.Integer),
    sa.Column("digest", sa.String(80)),
    sa.Column("error_type", sa.String(64)),
    sa.Column("error_message", sa.Text),
    sa.Column("action", sa.Text),
    # rows of the pull that shared a record key (connectors.base.Repeats): copies collapsed, earlier
    # versions replaced, conflicting rows kept for the stewards. Revision 0002; 0 on older pulls.
    sa.Column("repeats_identical", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("repeats_superseded", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("repeats_conflicting", sa.Integer, nullable=False, server_default=sa.text("0")),
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


deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.String(200), nullable=False, unique=True),  # feed, window, digest: no personal data
    sa.Column("feed", sa.String(128), nullable=False),
    sa.Column("stage", sa.String(64), nullable=False),
    sa.Column("window_start", UTCDateTime, nullable=False),
    sa.Column("window_end", UTCDateTime, nullable=False),
    sa.Column("digest", sa.String(80), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("parts", sa.Integer, nullable=False),
    sa.Column("bytes", sa.BigInteger),  # sealed, all parts
    sa.Column("contract_version", sa.String(32)),
    # sealing -> delivered -> ready -> acknowledged | refused; sealing -> abandoned (crash or error);
    # delivered -> lost (its parts vanished before READY: only a backfill of its window sends it again)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=1),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("pull_id", sa.Integer, sa.ForeignKey("pulls.id")),
    sa.Column("ready_sha256", sa.String(64)),  # of the READY marker: names this attempt's exact files
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("delivered_at", UTCDateTime),
    sa.Column("ready_at", UTCDateTime),
    sa.Column("acknowledged_at", UTCDateTime),
    sa.Column("refused_at", UTCDateTime),
    sa.Column("reason", sa.Text),  # a refusal's or an abandonment's error type and message
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_deliveries_feed_status", "feed", "status"),
)

acks = sa.Table(
    "acks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("stage", sa.String(64), nullable=False),
    sa.Column("file", sa.String(255), nullable=False),
    sa.Column("file_sha256", sa.String(64), nullable=False),
    sa.Column("batch_id", sa.String(255)),
    sa.Column("feed", sa.String(128)),
    sa.Column("outcome", sa.String(16), nullable=False),  # received | refused | invalid (signature refused)
    sa.Column("reason", sa.Text),
    sa.Column("received_at", UTCDateTime),  # the stage's time, as it signed it
    sa.Column("ready_sha256", sa.String(64)),
    sa.Column("rows", sa.BigInteger),
    sa.Column("parts", sa.Integer),
    sa.Column("signer_serial", sa.String(48)),
    sa.Column("applied", sa.Boolean, nullable=False),  # whether it settled a delivery awaiting it
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("stage", "file", name="uq_acks_stage_file"),
)

quarantines = sa.Table(
    "quarantines",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.String(200), nullable=False, unique=True),  # the pulled batch's id
    sa.Column("feed", sa.String(128), nullable=False),
    sa.Column("night", sa.String(10), nullable=False),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("pull_id", sa.Integer, sa.ForeignKey("pulls.id")),
    sa.Column("window_start", UTCDateTime, nullable=False),
    sa.Column("window_end", UTCDateTime, nullable=False),
    sa.Column("digest", sa.String(80), nullable=False),
    sa.Column("contract_version", sa.String(32)),
    sa.Column("pulled", sa.BigInteger, nullable=False),
    sa.Column("valid", sa.BigInteger, nullable=False),
    sa.Column("quarantined", sa.BigInteger, nullable=False),  # rows kept for the stewards (all, if held)
    sa.Column("held", sa.Boolean, nullable=False),  # the whole batch was held back by the batch policy
    sa.Column("reason", sa.Text),  # why it was held (rule ids and figures; no values)
    sa.Column("parts", sa.Integer, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),  # sealed, all parts
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_quarantines_feed_night", "feed", "night"),
)

rule_failures = sa.Table(
    "rule_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.String(200), nullable=False),
    sa.Column("feed", sa.String(128), nullable=False),
    sa.Column("night", sa.String(10), nullable=False),
    sa.Column("rule", sa.String(128), nullable=False),
    sa.Column("failed", sa.BigInteger, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),  # rows checked
    sa.UniqueConstraint("batch_id", "rule", name="uq_rule_failures_batch_rule"),
    sa.Index("ix_rule_failures_feed_night", "feed", "night"),
)

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.String(200), nullable=False),  # the quarantined batch
    sa.Column("feed", sa.String(128), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # release | reject
    sa.Column("rows_json", sa.Text, nullable=False),  # JSON list of quarantine row numbers (1-based)
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("rule", sa.String(128)),  # the rule the rows were chosen by, if any
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("decided_at", UTCDateTime, nullable=False),
    # release: pending -> delivered (with the next handoff of the feed); reject: done
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("delivered_batch_id", sa.String(220)),
    sa.Column("delivered_at", UTCDateTime),
    sa.Index("ix_decisions_batch", "batch_id"),
    sa.Index("ix_decisions_feed_status", "feed", "status"),
)

pull_figures = sa.Table(
    "pull_figures",
    metadata,
    sa.Column("pull_id", sa.Integer, sa.ForeignKey("pulls.id"), primary_key=True, autoincrement=False),
    # days from the business event (death date, admission, settlement) to arrival, over the valid rows
    sa.Column("event_lag_p50", sa.Float),
    sa.Column("event_lag_p90", sa.Float),
)

breaches = sa.Table(
    "breaches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("night", sa.String(10), nullable=False),
    sa.Column("feed", sa.String(128), nullable=False),  # "" for the night itself (night_slow)
    sa.Column("rule", sa.String(32), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("expected", sa.Text, nullable=False),
    sa.Column("observed", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # open | recovered
    sa.Column("opened_at", UTCDateTime, nullable=False),
    sa.Column("notified_at", UTCDateTime),  # a channel accepted the breach's notice
    sa.Column("recovered_on", sa.String(10)),  # the night whose evaluation met the rule again
    sa.Column("recovered_observed", sa.Text),
    sa.Column("recovered_at", UTCDateTime),
    sa.Column("recovery_notified_at", UTCDateTime),
    sa.UniqueConstraint("night", "feed", "rule", name="uq_breaches_night_feed_rule"),
    sa.Index("ix_breaches_status", "status"),
)

orders = sa.Table(
    "orders",
    metadata,
    # O<YYYYMMDD>-<rule number 1..8>-<n:04d>, see matching.orders
    sa.Column("order_id", sa.String(32), primary_key=True),
    sa.Column("night", sa.Date, nullable=False),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(64), nullable=False),  # pseudonymous: a hex token (person, account), a bill key, a credit code
    sa.Column("id_masked", sa.String(64)),  # 110105********123X (or a masked account); never a whole number
    sa.Column("area", sa.String(6), nullable=False),
    sa.Column("district", sa.String(32), nullable=False),
    sa.Column("amount_at_risk", sa.Numeric(16, 2, asdecimal=False), nullable=False),
    sa.Column("months", sa.Integer),
    sa.Column("detail", sa.Text, nullable=False),  # JSON: masked evidence only
    sa.Column("due_on", sa.Date, nullable=False),
    sa.Column("status", sa.String(8), nullable=False),  # open | closed
    sa.Column("outcome", sa.String(16)),  # confirmed | false-positive | recovered
    sa.Column("amount_recovered", sa.Numeric(16, 2, asdecimal=False)),
    sa.Column("note", sa.Text),  # the closer's note (no identity numbers); not audited
    sa.Column("closed_at", UTCDateTime),
    sa.Column("closed_by", sa.String(64)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("night", "rule", "subject", name="uq_orders_night_rule_subject"),
    sa.Index("ix_orders_status_area", "status", "area"),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(255), nullable=False),
    sa.Column("details", sa.Text, nullable=False),  # canonical JSON, no personal data
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),  # always 1
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("locked_at", UTCDateTime),
)

# The stewards' console's accounts and sessions (fundx.console.accounts reads and writes them). They are
# defined here, with the rest of the schema, so that every ledger has them whatever was imported when it
# was made, and so that a schema revision can name them.
console_accounts = sa.Table(
    "console_accounts",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),  # steward | auditor
    sa.Column("password_hash", sa.Text, nullable=False),  # argon2id, PHC string format
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("password_set_at", UTCDateTime, nullable=False),
    sa.Column("failed_logins", sa.Integer, nullable=False, default=0),  # attempts since the last sign-in
    sa.Column("locked_until", UTCDateTime),
    sa.Column("last_login_at", UTCDateTime),
)

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # SHA-256 of the cookie's token, hex
    sa.Column("account", sa.String(32), sa.ForeignKey("console_accounts.name", ondelete="CASCADE"), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("seen_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Index("ix_console_sessions_account", "account"),
)

#: the schema's revisions, oldest first: fundx/ledger/migrations/versions holds one file for each (a test checks
#: that they agree). A new revision is added there and here.
SCHEMA_REVISIONS = ("0001", "0002")
SCHEMA_HEAD = SCHEMA_REVISIONS[-1]
#: the tables every ledger written by fundx 0.1.0 has (it made the console's two only once the console had
#: been imported): a database with these and no revision is a 0.1.0 ledger, revision 0001's schema
V010_TABLES = ("runs", "pulls", "watermarks", "deliveries", "acks", "quarantines", "rule_failures", "decisions",
               "pull_figures", "breaches", "orders", "audit", "audit_head")
#: Alembic's record of the revision, as Alembic makes it (DefaultImpl.version_table_impl): a new ledger is
#: stamped without loading Alembic. Kept out of ``metadata``: it is Alembic's table, not the exchange's.
alembic_version = sa.Table(
    "alembic_version",
    sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)

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


def _delivery_record(row) -> DeliveryRecord:
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


def _now() -> datetime:
    return datetime.now(UTC)


#: the PostgreSQL advisory lock held while the ledger's schema is made or upgraded (Ledger.schema_lock)
_SCHEMA_LOCK = int.from_bytes(hashlib.sha256(b"fundx.ledger.schema").digest()[:8], "big", signed=True)


def inserted_id(result: CursorResult[Any]) -> int:
    """The primary key of the row an INSERT just added."""
    key = result.inserted_primary_key
    if key is None:
        raise InternalError("the database returned no primary key for the inserted row")
    return key[0]


class LedgerSchemaError(ConfigurationError):
    """The ledger's schema is not this fundx's: behind it (``fundx ledger upgrade``), or ahead of it."""


@dataclass(frozen=True)
class SchemaState:
    """Where a ledger database's schema stands against this fundx's revisions.

    ``status``: ``new`` (none of the ledger's tables, no revision), ``current`` (at :data:`SCHEMA_HEAD`),
    ``behind`` (an older revision), ``v010`` (fundx 0.1.0's tables and no revision: revision 0001's
    schema, not yet stamped), ``ahead`` (a revision this fundx does not know: a newer fundx wrote it), or
    ``foreign`` (some of the ledger's tables and no revision: not a ledger fundx made).
    """

    status: str
    revision: str | None = None

    @property
    def upgradable(self) -> bool:
        return self.status in ("behind", "v010")

    def problem(self, url: str) -> str | None:
        """One line saying what is wrong and what to do, or None when fundx may run on the ledger."""
        where = sa.engine.make_url(url).render_as_string(hide_password=True)
        if self.status == "behind":
            return (f"the ledger {where} is at schema revision {self.revision}, older than this fundx's "
                    f"{SCHEMA_HEAD}: run `fundx ledger upgrade`")
        if self.status == "v010":
            return (f"the ledger {where} was written by fundx 0.1.0 (no schema revision), older than this "
                    f"fundx's {SCHEMA_HEAD}: run `fundx ledger upgrade`")
        if self.status == "ahead":
            return (f"the ledger {where} is at schema revision {self.revision}, newer than this fundx knows "
                    f"(up to {SCHEMA_HEAD}): a newer fundx wrote it; run that release or a later one")
        if self.status == "foreign":
            return (f"the database {where} holds some of the ledger's tables but no schema revision: it is not "
                    f"a ledger fundx made; point FUNDX_LEDGER_URL at the ledger's database")
        return None

    def error(self, url: str) -> LedgerSchemaError:
        action = {
            "behind": "fundx ledger upgrade", "v010": "fundx ledger upgrade",
            "ahead": "run that release or a later one",
        }.get(self.status, "point FUNDX_LEDGER_URL at the ledger's database")
        return LedgerSchemaError(self.problem(url) or f"the ledger's schema is {self.status}", action=action)


def schema_state(conn: Connection) -> SchemaState:
    """Read the revision a ledger database is at (or recognise a 0.1.0 ledger by its tables)."""
    names = set(sa.inspect(conn).get_table_names())
    revisions: list[str] = []
    if alembic_version.name in names:
        revisions = list(conn.execute(sa.select(alembic_version.c.version_num)).scalars())
    if not revisions:
        if not names & set(metadata.tables):
            return SchemaState("new")
        return SchemaState("v010" if set(V010_TABLES) <= names else "foreign")
    if revisions == [SCHEMA_HEAD]:
        return SchemaState("current", SCHEMA_HEAD)
    if len(revisions) == 1 and revisions[0] in SCHEMA_REVISIONS:
        return SchemaState("behind", revisions[0])
    return SchemaState("ahead", ", ".join(sorted(revisions)))  # unknown, or branches this fundx never made


def _backend(url: str) -> str:
    """``sqlite`` or ``postgresql``; ConfigurationError naming FUNDX_LEDGER_URL for anything else."""
    action = "set FUNDX_LEDGER_URL to sqlite:///path/ledger.db or postgresql+psycopg://user@host/db"
    try:
        backend = sa.engine.make_url(url).get_backend_name()
    except sa.exc.ArgumentError:
        raise ConfigurationError("FUNDX_LEDGER_URL is not a SQLAlchemy URL", action=action) from None
    if backend not in ("sqlite", "postgresql"):
        raise ConfigurationError(f"FUNDX_LEDGER_URL: the ledger runs on SQLite or PostgreSQL, not {backend}", action=action)
    return backend


def check_schema(url: str) -> SchemaState:
    """The schema state of the ledger at ``url``, read without creating or changing anything (a SQLite
    file that does not exist yet is ``new``). Raises LedgerSchemaError unless fundx may run on it."""
    parsed = sa.engine.make_url(url)
    if _backend(url) == "sqlite":
        database = parsed.database
        if not database or database == ":memory:" or not Path(database).exists():
            return SchemaState("new")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool,
                              connect_args={"connect_timeout": 10} if url.startswith("postgresql") else {})
    try:
        with engine.connect() as conn:
            state = schema_state(conn)
    finally:
        engine.dispose()
    if state.status not in ("new", "current"):
        raise state.error(url)
    return state


class Ledger:
    """Access to the ledger database; one per process is enough (engines pool connections)."""

    def __init__(self, url: str, *, create: bool = True):
        """Open the ledger at ``url``; make it at the schema's head if it is new. LedgerSchemaError if it is at
        another revision. ``create=False`` opens it as it is, checking nothing (fundx.ledger.migrations upgrades
        through such a Ledger)."""
        self.url = url
        _backend(url)
        self.engine: Engine = _engine(url)
        if create:
            self._create()

    @classmethod
    def from_settings(cls, settings=None) -> Ledger:
        from fundx.core.settings import get_settings, prepare_home

        settings = settings or get_settings()
        prepare_home(settings.home)
        return cls(settings.ledger)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def schema_lock(self) -> Iterator[Connection]:
        """A transaction that has the ledger's schema to itself: making a new ledger, upgrading one.

        PostgreSQL: a transaction-level advisory lock, so that of several processes opening a new ledger
        at the same moment (the workers of ``make serve-pg``, two runs started together) one creates the
        tables while the others wait, then find them (two CREATE TABLE of one name would fail with a
        unique violation in pg_type). SQLite: BEGIN IMMEDIATE, the database's write lock, taken before
        anything is read; the tables it creates are in the transaction (Python's sqlite3 commits nothing
        before DDL), so a ledger is made, or upgraded, whole or not at all.
        """
        if self.dialect == "postgresql":
            with self.engine.begin() as conn:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
                yield conn
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def _create(self) -> None:
        """A new ledger at the schema's head, stamped with it; an existing one must be at the head already.

        At the head, tables missing from it are made again (a test's clean-up may have dropped them) and
        the audit chain's head row is made if missing, as every open always did.
        """
        with self.schema_lock() as conn:
            state = schema_state(conn)
            if state.status == "new":
                metadata.create_all(conn)
                alembic_version.create(conn)
                conn.execute(alembic_version.insert().values(version_num=SCHEMA_HEAD))
            elif state.status == "current":
                metadata.create_all(conn)
            else:
                raise state.error(self.url)
            self._ensure_audit_head(conn)

    # the audit trail ----------------------------------------------------------------------------

    def _ensure_audit_head(self, conn: Connection) -> None:
        dialect_insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
        conn.execute(
            dialect_insert(audit_head)
            .values(id=1, seq=0, hash=audit_chain.GENESIS)
            .on_conflict_do_nothing(index_elements=[audit_head.c.id])
        )

    @contextmanager
    def audited(self) -> Iterator[Connection]:
        """A transaction that may append to the audit trail: it starts by locking the chain's head.

        The lock is an UPDATE of the head's one row, the first statement of the transaction: on
        PostgreSQL a row lock (a second writer waits at this line), on SQLite the database's write
        lock (taken before anything is read, so no writer ever works from a stale head).
        """
        with self.engine.begin() as conn:
            conn.execute(audit_head.update().where(audit_head.c.id == 1).values(locked_at=_now()))
            conn.info["fundx_audit_lock"] = True
            try:
                yield conn
            finally:
                conn.info.pop("fundx_audit_lock", None)

    def audit(self, conn: Connection, action: str, subject: str, details: dict[str, Any] | None = None, *,
              actor: str = "exchange") -> int:
        """Append one entry to the audit trail inside an :meth:`audited` transaction; returns its seq.

        ``details`` must be content-free: feed names, windows, counts, digests, error types.
        """
        if not conn.info.get("fundx_audit_lock"):
            raise InternalError("audit entries are written only inside Ledger.audited()")
        head = conn.execute(sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).one()
        entry = audit_chain.Entry.new(
            seq=int(head.seq) + 1, at=_now(), actor=actor, action=action, subject=subject,
            details=details or {}, prev_hash=head.hash,
        )
        conn.execute(audit.insert().values(**entry.row()))
        conn.execute(audit_head.update().where(audit_head.c.id == 1).values(seq=entry.seq, hash=entry.hash))
        return entry.seq

    def log_event(self, action: str, subject: str, details: dict[str, Any] | None = None, *,
                  actor: str = "exchange") -> int:
        """One audit entry in a transaction of its own (keys made, a backfill asked for)."""
        with self.audited() as conn:
            return self.audit(conn, action, subject, details, actor=actor)

    def verify_audit(self) -> audit_chain.Verdict:
        """Walk the audit trail from the first entry; the verdict names the first bad entry, if any."""
        with self.engine.connect() as conn:
            head = conn.execute(sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).one_or_none()
            rows = conn.execute(audit.select().order_by(audit.c.seq)).mappings()
            return audit_chain.verify(
                (audit_chain.Entry.from_row(r) for r in rows), None if head is None else (int(head.seq), head.hash)
            )

    # one feed at a time -------------------------------------------------------------------------

    @contextmanager
    def feed_lock(self, feed: str) -> Iterator[None]:
        """Hold the feed for one run: a second run of the same feed raises FeedBusy instead of waiting.

        Recovery of a crashed delivery is safe only while no other run can be sealing the same feed.
        PostgreSQL: a session advisory lock (several workers); SQLite: a file lock beside the ledger
        (one machine). Both are released by the operating system or the server if the process dies.
        """
        key = int.from_bytes(hashlib.sha256(b"fundx.feed:" + feed.encode()).digest()[:8], "big", signed=True)
        busy = FeedBusy(f"another run is exchanging {feed} right now", feed=feed)
        if self.dialect == "postgresql":
            with self.engine.connect() as conn:
                if not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                    conn.rollback()
                    raise busy
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
            return
        import fcntl

        database = sa.engine.make_url(self.url).database
        folder = Path(database).parent if database and database != ":memory:" else Path(tempfile.gettempdir())
        folder = folder / "locks"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(folder / f"{feed}.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise busy from None
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def dispose(self) -> None:
        self.engine.dispose()

    # runs -------------------------------------------------------------------------------------

    def start_run(self, kind: str, night: str, *, flow_run_id: str | None = None) -> int:
        with self.transaction() as conn:
            return inserted_id(conn.execute(
                runs.insert().values(
                    uid=str(uuid.uuid4()), kind=kind, night=night, started_at=_now(),
                    outcome="running", feeds=0, feeds_failed=0, flow_run_id=flow_run_id,
                )
            ))

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
                ended_at=_now(), duration_s=pull.duration_s, outcome=outcome, rows=pull.rows,
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
        ended = _now()
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
            sa.func.sum(sa.case((pulls.c.outcome.in_(("pulled", "held")), 1), else_=0)).label("pulled"),
            sa.func.sum(sa.case((pulls.c.outcome == "failed", 1), else_=0)).label("failed"),
            sa.func.coalesce(sa.func.sum(pulls.c.rows), 0).label("rows"),
        ).group_by(pulls.c.feed)
        with self.engine.connect() as conn:
            return {r.feed: {"pulled": int(r.pulled), "failed": int(r.failed), "rows": int(r.rows)} for r in conn.execute(query)}


    # deliveries and acknowledgements -------------------------------------------------------------

    def delivery(self, batch_id: str, conn: Connection | None = None) -> DeliveryRecord | None:
        """The delivery of one batch, or None."""
        query = deliveries.select().where(deliveries.c.batch_id == batch_id)
        if conn is not None:
            row = conn.execute(query).mappings().one_or_none()
        else:
            with self.engine.connect() as own:
                row = own.execute(query).mappings().one_or_none()
        return None if row is None else _delivery_record(row)

    def deliveries(self, feed: str | None = None, *, status: tuple[str, ...] | None = None) -> list[DeliveryRecord]:
        """Deliveries, oldest first, of one feed or all, in the given statuses or all."""
        query = deliveries.select().order_by(deliveries.c.id)
        if feed:
            query = query.where(deliveries.c.feed == feed)
        if status:
            query = query.where(deliveries.c.status.in_(status))
        with self.engine.connect() as conn:
            return [_delivery_record(r) for r in conn.execute(query).mappings()]

    def begin_delivery(self, *, batch_id: str, feed: str, stage: str, window: Window, digest: str, rows: int,
                       parts: int, contract_version: str, run_id: int) -> int:
        """Step (a) of a handoff: the batch is about to be sealed (committed before any file is written).

        A batch abandoned by an earlier attempt, refused by its stage or lost, starts again under the
        same id; returns the attempt number. InternalError if the batch is in any other status.
        """
        now = _now()
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
            .values(status="delivered", pull_id=pull_id, bytes=sealed_bytes, delivered_at=_now(), updated_at=_now())
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
                .values(status="ready", ready_sha256=ready_sha256, ready_at=_now(), updated_at=_now())
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
                .values(status="abandoned", reason=reason[:2000], updated_at=_now())
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
                .values(status="lost", reason=reason[:2000], updated_at=_now())
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
                values: dict[str, Any] = {"updated_at": _now()}
                if outcome == "received":
                    values.update(status="acknowledged", acknowledged_at=received_at or _now())
                else:
                    values.update(status="refused", refused_at=received_at or _now(), reason=(reason or "")[:2000])
                conn.execute(deliveries.update().where(deliveries.c.batch_id == batch_id).values(**values))
            conn.execute(acks.insert().values(
                stage=stage, file=file, file_sha256=file_sha256, batch_id=batch_id,
                feed=target.feed if target is not None else feed, outcome=outcome, reason=reason,
                received_at=received_at, ready_sha256=ready_sha256, rows=rows, parts=parts,
                signer_serial=signer_serial, applied=applied, recorded_at=_now(),
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


def _window_text(window: Window) -> list[str]:
    return [window.start.astimezone(UTC).isoformat(), window.end.astimezone(UTC).isoformat()]


def _pull_record(row) -> PullRecord:
    return PullRecord(
        id=row["id"], run_id=row["run_id"], feed=row["feed"],
        window=Window(row["window_start"], row["window_end"]), backfill=bool(row["backfill"]),
        started_at=row["started_at"], duration_s=row["duration_s"], outcome=row["outcome"],
        rows=row["rows"], bytes=row["bytes"], pages=row["pages"], retries=row["retries"],
        digest=row["digest"], error_type=row["error_type"], error_message=row["error_message"],
        action=row["action"], repeats_identical=row["repeats_identical"],
        repeats_superseded=row["repeats_superseded"], repeats_conflicting=row["repeats_conflicting"],
    )


def _private_sqlite(url: str) -> None:
    """Make a new SQLite ledger file 0600 before SQLite does (it would follow the umask: 0644 lets every
    user read the console's password hashes), and close an existing one of ours that others may read.

    SQLite creates the -wal, -shm and -journal files with the database file's permissions, so they
    follow; ones left from before are closed too.
    """
    from fundx.core.settings import close_to_owner

    database = sa.engine.make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.parent.is_dir():
        return  # SQLite's own error says the folder is missing
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600))
    except FileExistsError:
        pass
    for name in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
        close_to_owner(name, what="the ledger file")


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        _private_sqlite(url)
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # WAL lets readers (status, console) run beside a night
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # FULL: a commit survives a power cut. The handoff's commit is the point after which a
            # stage may see a batch; with NORMAL a power cut could undo a commit the stage acted on.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()

        return engine
    connect_args = {"connect_timeout": 10} if url.startswith("postgresql") else {}
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def night_of(moment: datetime) -> str:
    """The night a run belongs to: the date it started on, in Asia/Shanghai."""
    return moment.astimezone(SHANGHAI).date().isoformat()
