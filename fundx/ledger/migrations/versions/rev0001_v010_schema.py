"""Revision 0001: the ledger's schema as fundx 0.1.0 made it (``metadata.create_all`` of that release).

The tables are written out here, frozen, rather than taken from :data:`fundx.ledger.schema.metadata`, which
moves on with later revisions. Columns are plain ``DateTime`` where the ledger's code reads them through
``UTCDateTime`` (the same column type in the database). ``tests/ledger/test_migrations.py`` proves this
schema the same, by reflection, as what fundx 0.1.0 made on SQLite and PostgreSQL.

A 0.1.0 ledger has no ``alembic_version`` table: ``fundx ledger upgrade`` recognises it by its tables,
makes the console's two if 0.1.0 never made them (it did only once the console had been imported), and
stamps it 0001 before upgrading it (:func:`fundx.ledger.migrations.upgrade`).

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None

DateTime = sa.DateTime


def schema() -> sa.MetaData:
    """Revision 0001's tables, on a metadata of their own."""
    meta = sa.MetaData()
    sa.Table(
        "runs",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uid", sa.String(36), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("night", sa.String(10), nullable=False),
        sa.Column("started_at", DateTime, nullable=False),
        sa.Column("ended_at", DateTime),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("feeds", sa.Integer, nullable=False),
        sa.Column("feeds_failed", sa.Integer, nullable=False),
        sa.Column("summary", sa.Text),
        sa.Column("flow_run_id", sa.String(64)),
    )

    sa.Table(
        "pulls",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("feed", sa.String(128), nullable=False),
        sa.Column("window_start", DateTime, nullable=False),
        sa.Column("window_end", DateTime, nullable=False),
        sa.Column("backfill", sa.Boolean, nullable=False),
        sa.Column("started_at", DateTime, nullable=False),
        sa.Column("ended_at", DateTime, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
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

    sa.Table(
        "watermarks",
        meta,
        sa.Column("feed", sa.String(128), primary_key=True),
        sa.Column("value", DateTime, nullable=False),
        sa.Column("pull_id", sa.Integer, sa.ForeignKey("pulls.id")),
        sa.Column("updated_at", DateTime, nullable=False),
    )

    sa.Table(
        "deliveries",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(200), nullable=False, unique=True),
        sa.Column("feed", sa.String(128), nullable=False),
        sa.Column("stage", sa.String(64), nullable=False),
        sa.Column("window_start", DateTime, nullable=False),
        sa.Column("window_end", DateTime, nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("parts", sa.Integer, nullable=False),
        sa.Column("bytes", sa.BigInteger),
        sa.Column("contract_version", sa.String(32)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, default=1),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("pull_id", sa.Integer, sa.ForeignKey("pulls.id")),
        sa.Column("ready_sha256", sa.String(64)),
        sa.Column("created_at", DateTime, nullable=False),
        sa.Column("delivered_at", DateTime),
        sa.Column("ready_at", DateTime),
        sa.Column("acknowledged_at", DateTime),
        sa.Column("refused_at", DateTime),
        sa.Column("reason", sa.Text),
        sa.Column("updated_at", DateTime, nullable=False),
        sa.Index("ix_deliveries_feed_status", "feed", "status"),
    )

    sa.Table(
        "acks",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("stage", sa.String(64), nullable=False),
        sa.Column("file", sa.String(255), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("batch_id", sa.String(255)),
        sa.Column("feed", sa.String(128)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("received_at", DateTime),
        sa.Column("ready_sha256", sa.String(64)),
        sa.Column("rows", sa.BigInteger),
        sa.Column("parts", sa.Integer),
        sa.Column("signer_serial", sa.String(48)),
        sa.Column("applied", sa.Boolean, nullable=False),
        sa.Column("recorded_at", DateTime, nullable=False),
        sa.UniqueConstraint("stage", "file", name="uq_acks_stage_file"),
    )

    sa.Table(
        "quarantines",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(200), nullable=False, unique=True),
        sa.Column("feed", sa.String(128), nullable=False),
        sa.Column("night", sa.String(10), nullable=False),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("pull_id", sa.Integer, sa.ForeignKey("pulls.id")),
        sa.Column("window_start", DateTime, nullable=False),
        sa.Column("window_end", DateTime, nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("contract_version", sa.String(32)),
        sa.Column("pulled", sa.BigInteger, nullable=False),
        sa.Column("valid", sa.BigInteger, nullable=False),
        sa.Column("quarantined", sa.BigInteger, nullable=False),
        sa.Column("held", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("parts", sa.Integer, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", DateTime, nullable=False),
        sa.Index("ix_quarantines_feed_night", "feed", "night"),
    )

    sa.Table(
        "rule_failures",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(200), nullable=False),
        sa.Column("feed", sa.String(128), nullable=False),
        sa.Column("night", sa.String(10), nullable=False),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("failed", sa.BigInteger, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("batch_id", "rule", name="uq_rule_failures_batch_rule"),
        sa.Index("ix_rule_failures_feed_night", "feed", "night"),
    )

    sa.Table(
        "decisions",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(200), nullable=False),
        sa.Column("feed", sa.String(128), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("rows_json", sa.Text, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("rule", sa.String(128)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("decided_at", DateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("delivered_batch_id", sa.String(220)),
        sa.Column("delivered_at", DateTime),
        sa.Index("ix_decisions_batch", "batch_id"),
        sa.Index("ix_decisions_feed_status", "feed", "status"),
    )

    sa.Table(
        "pull_figures",
        meta,
        sa.Column("pull_id", sa.Integer, sa.ForeignKey("pulls.id"), primary_key=True, autoincrement=False),
        sa.Column("event_lag_p50", sa.Float),
        sa.Column("event_lag_p90", sa.Float),
    )

    sa.Table(
        "breaches",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("night", sa.String(10), nullable=False),
        sa.Column("feed", sa.String(128), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("expected", sa.Text, nullable=False),
        sa.Column("observed", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("opened_at", DateTime, nullable=False),
        sa.Column("notified_at", DateTime),
        sa.Column("recovered_on", sa.String(10)),
        sa.Column("recovered_observed", sa.Text),
        sa.Column("recovered_at", DateTime),
        sa.Column("recovery_notified_at", DateTime),
        sa.UniqueConstraint("night", "feed", "rule", name="uq_breaches_night_feed_rule"),
        sa.Index("ix_breaches_status", "status"),
    )

    sa.Table(
        "orders",
        meta,
        sa.Column("order_id", sa.String(32), primary_key=True),
        sa.Column("night", sa.Date, nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("id_masked", sa.String(64)),
        sa.Column("area", sa.String(6), nullable=False),
        sa.Column("district", sa.String(32), nullable=False),
        sa.Column("amount_at_risk", sa.Numeric(16, 2, asdecimal=False), nullable=False),
        sa.Column("months", sa.Integer),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("due_on", sa.Date, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("outcome", sa.String(16)),
        sa.Column("amount_recovered", sa.Numeric(16, 2, asdecimal=False)),
        sa.Column("note", sa.Text),
        sa.Column("closed_at", DateTime),
        sa.Column("closed_by", sa.String(64)),
        sa.Column("created_at", DateTime, nullable=False),
        sa.UniqueConstraint("night", "rule", "subject", name="uq_orders_night_rule_subject"),
        sa.Index("ix_orders_status_area", "status", "area"),
    )

    sa.Table(
        "audit",
        meta,
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=False),
        sa.Column("at", DateTime, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )

    sa.Table(
        "audit_head",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("locked_at", DateTime),
    )

    sa.Table(
        "console_accounts",
        meta,
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", DateTime, nullable=False),
        sa.Column("password_set_at", DateTime, nullable=False),
        sa.Column("failed_logins", sa.Integer, nullable=False),
        sa.Column("locked_until", DateTime),
        sa.Column("last_login_at", DateTime),
    )

    sa.Table(
        "console_sessions",
        meta,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("account", sa.String(32), sa.ForeignKey("console_accounts.name", ondelete="CASCADE"), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", DateTime, nullable=False),
        sa.Column("seen_at", DateTime, nullable=False),
        sa.Column("expires_at", DateTime, nullable=False),
        sa.Index("ix_console_sessions_account", "account"),
    )

    return meta


def upgrade() -> None:
    schema().create_all(op.get_bind(), checkfirst=False)


def downgrade() -> None:
    schema().drop_all(op.get_bind(), checkfirst=False)
