"""Revision 0005: the stop-payment loop (matching.stops).

A confirmed death or custody case gets a stop instruction for the social-insurance office (suspend or
terminate the benefit from a month), sealed for the office, delivered once and answered by the office's
own signed acknowledgement or refusal: ``stop_instructions`` holds each instruction and the office's answer,
``stop_answers`` every answer file read (an answer whose signature is refused is kept as ``invalid`` and
settles nothing). Ledgers before this revision have no instructions: nothing was ever sent.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fundx.ledger.schema import UTCDateTime

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stop_instructions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("order_id", sa.String(32), sa.ForeignKey("orders.order_id"), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("from_month", sa.String(7), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("file", sa.String(255)),
        sa.Column("file_sha256", sa.String(64)),
        sa.Column("issued_at", UTCDateTime, nullable=False),
        sa.Column("issued_by", sa.String(64), nullable=False),
        sa.Column("delivered_at", UTCDateTime),
        sa.Column("answered_at", UTCDateTime),
        sa.Column("answer_file", sa.String(255)),
        sa.Column("answer_sha256", sa.String(64)),
        sa.Column("reason", sa.Text),
        sa.Column("entries", sa.Integer),
        sa.Column("monthly_amount_stopped", sa.Numeric(16, 2, asdecimal=False)),
        sa.Column("signer_serial", sa.String(48)),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("subject", "action", "from_month", name="uq_stop_instructions_subject_action_month"),
        sa.Index("ix_stop_instructions_status", "status"),
    )
    op.create_table(
        "stop_answers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("file", sa.String(255), nullable=False, unique=True),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("instruction_id", sa.String(64)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("signer_serial", sa.String(48)),
        sa.Column("applied", sa.Boolean, nullable=False),
        sa.Column("recorded_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("stop_answers")
    op.drop_table("stop_instructions")
