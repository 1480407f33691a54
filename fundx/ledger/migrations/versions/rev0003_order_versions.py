"""Revision 0003: an order's versions across matching nights (matching.cases).

A suspect found again on a later night no longer opens a second order: its order gets a version (the
night's months, amount and masked evidence, and why it changed), and a closed false positive reopens
only when its evidence materially changed. Orders issued before this revision have no versions: their
row is their one version.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fundx.ledger.schema import UTCDateTime

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "order_versions",
        sa.Column("order_id", sa.String(32), sa.ForeignKey("orders.order_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("night", sa.Date, primary_key=True),
        sa.Column("amount_at_risk", sa.Numeric(16, 2, asdecimal=False), nullable=False),
        sa.Column("months", sa.Integer),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("change", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("recorded_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("order_versions")
