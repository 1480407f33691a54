"""Revision 0004: the inspection lifecycle (matching.lifecycle).

An order becomes a case that is taken, worked, reviewed twice by different accounts, closed and accepted by a
supervisor: ``orders`` gets the stage and who did each step, the referral and the escalation; ``case_events``
keeps every step. Orders made before it: an open one is ``issued``, a closed one ``closed`` (closed by one
person before two-person review existed: its reviewers stay empty).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fundx.ledger.schema import UTCDateTime

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None

_COLUMNS = ("stage", "assignee", "submitted_by", "first_reviewer", "second_reviewer", "accepted_by", "accepted_at",
            "referral_to", "referral_no", "referral_due", "escalated_at")


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("stage", sa.String(16), nullable=False, server_default="issued"))
        for name in ("assignee", "submitted_by", "first_reviewer", "second_reviewer", "accepted_by"):
            batch.add_column(sa.Column(name, sa.String(64)))
        batch.add_column(sa.Column("accepted_at", UTCDateTime))
        batch.add_column(sa.Column("referral_to", sa.String(16)))
        batch.add_column(sa.Column("referral_no", sa.String(32)))
        batch.add_column(sa.Column("referral_due", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("escalated_at", UTCDateTime))
    op.execute("UPDATE orders SET stage = 'closed' WHERE status = 'closed'")
    op.create_table(
        "case_events",
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


def downgrade() -> None:
    op.drop_table("case_events")
    with op.batch_alter_table("orders") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
