"""The ledger's schema: its tables (the stewards' console's too) and the revisions it has been through.

Every table is on :data:`metadata`; a new ledger is made from it at :data:`SCHEMA_HEAD`. A change of a
table is a new revision: a file in fundx/ledger/migrations/versions, the change here, and its id in
:data:`SCHEMA_REVISIONS` (:mod:`fundx.ledger.migrations` says how). The ledger stores no record's content:
the comments beside the columns say what each holds instead.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from fundx.core.timeutil import UTC

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
    # O<YYYYMMDD>-<rule number: its place in matching.orders.RULES>-<n:04d>
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
    # the inspection lifecycle (matching.lifecycle, revision 0004): where the case stands and who did what. While a
    # finding waits for its reviews, ``outcome`` and ``amount_recovered`` hold what the inspector found; the case
    # counts as closed (``status``) only after the second review
    sa.Column("stage", sa.String(16), nullable=False, server_default="issued"),
    sa.Column("assignee", sa.String(64)),
    sa.Column("submitted_by", sa.String(64)),
    sa.Column("first_reviewer", sa.String(64)),
    sa.Column("second_reviewer", sa.String(64)),
    sa.Column("accepted_by", sa.String(64)),
    sa.Column("accepted_at", UTCDateTime),
    sa.Column("referral_to", sa.String(16)),  # police | discipline
    sa.Column("referral_no", sa.String(32)),
    sa.Column("referral_due", sa.Boolean, nullable=False, server_default=sa.false()),  # the amount crossed its threshold
    sa.Column("escalated_at", UTCDateTime),  # 挂牌督办: open 90 days after it was found
    sa.UniqueConstraint("night", "rule", "subject", name="uq_orders_night_rule_subject"),
    sa.Index("ix_orders_status_area", "status", "area"),
)

#: an order's versions: what each matching night that found its subject again saw (matching.cases): its months,
#: amount and masked evidence, and why the order changed (re-detected, reopened), the night it was issued first
order_versions = sa.Table(
    "order_versions",
    metadata,
    sa.Column("order_id", sa.String(32), sa.ForeignKey("orders.order_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("night", sa.Date, primary_key=True),
    sa.Column("amount_at_risk", sa.Numeric(16, 2, asdecimal=False), nullable=False),
    sa.Column("months", sa.Integer),
    sa.Column("detail", sa.Text, nullable=False),  # JSON: masked evidence only
    sa.Column("change", sa.String(16), nullable=False),  # issued | updated | reopened
    sa.Column("reason", sa.Text),  # what changed (sources, months, amount): no values that identify anyone
    sa.Column("recorded_at", UTCDateTime, nullable=False),
)

#: each step of a case's lifecycle (matching.lifecycle): who moved it from which stage to which, with what finding;
#: the reason is free text checked to hold no identity number. The audit trail has the same steps (order ids only)
case_events = sa.Table(
    "case_events",
    metadata,
    sa.Column("order_id", sa.String(32), sa.ForeignKey("orders.order_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("from_stage", sa.String(16), nullable=False),
    sa.Column("to_stage", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(16)),
    sa.Column("amount", sa.Numeric(16, 2, asdecimal=False)),
    sa.Column("reason", sa.Text),
)

#: the stop-payment loop (matching.stops): one instruction per confirmed death or custody case (per subject, action
#: and month) to the social-insurance office, sealed for it, and the office's signed answer
stop_instructions = sa.Table(
    "stop_instructions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # STOP-<order id>-<YYYYMM>: the file's name, deterministic
    sa.Column("order_id", sa.String(32), sa.ForeignKey("orders.order_id"), nullable=False),
    sa.Column("subject", sa.String(64), nullable=False),  # the order's pseudonymous token, never an identity
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # suspend | terminate
    sa.Column("from_month", sa.String(7), nullable=False),  # YYYY-MM: the first month not to be paid
    sa.Column("status", sa.String(16), nullable=False),  # issued -> delivered -> acknowledged | refused
    sa.Column("file", sa.String(255)),  # the sealed file in the office's outbox
    sa.Column("file_sha256", sa.String(64)),
    sa.Column("issued_at", UTCDateTime, nullable=False),
    sa.Column("issued_by", sa.String(64), nullable=False),
    sa.Column("delivered_at", UTCDateTime),
    sa.Column("answered_at", UTCDateTime),  # the office's time, as it signed its answer
    sa.Column("answer_file", sa.String(255)),
    sa.Column("answer_sha256", sa.String(64)),
    sa.Column("reason", sa.Text),  # a refusal's reason (error type and message; no values)
    sa.Column("entries", sa.Integer),  # roll entries the office stopped
    sa.Column("monthly_amount_stopped", sa.Numeric(16, 2, asdecimal=False)),  # what they paid a month: the loss stopped
    sa.Column("signer_serial", sa.String(48)),  # of the office's signing certificate
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("subject", "action", "from_month", name="uq_stop_instructions_subject_action_month"),
    sa.Index("ix_stop_instructions_status", "status"),
)

#: every answer file of the office read (its acknowledgements and refusals; ``invalid``: its signature was refused)
stop_answers = sa.Table(
    "stop_answers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("file", sa.String(255), nullable=False, unique=True),
    sa.Column("file_sha256", sa.String(64), nullable=False),
    sa.Column("instruction_id", sa.String(64)),
    sa.Column("outcome", sa.String(16), nullable=False),  # acknowledged | refused | invalid
    sa.Column("reason", sa.Text),
    sa.Column("signer_serial", sa.String(48)),
    sa.Column("applied", sa.Boolean, nullable=False),  # whether it settled an instruction awaiting it
    sa.Column("recorded_at", UTCDateTime, nullable=False),
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
    sa.Column("role", sa.String(16), nullable=False),  # steward | auditor | inspector | supervisor
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
SCHEMA_REVISIONS = ("0001", "0002", "0003", "0004", "0005")
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
