"""Revision 0002: each pull's repeats, the rows that shared a record key (connectors.base.Repeats).

Three counts on ``pulls``: copies of a row sent again unchanged and collapsed into one
(``repeats_identical``), earlier versions of a record replaced by a later one (``repeats_superseded``),
and rows of key conflicts kept for the stewards (``repeats_conflicting``). Pulls recorded before this
revision hold 0: their repeats were not counted.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None

COLUMNS = ("repeats_identical", "repeats_superseded", "repeats_conflicting")


def upgrade() -> None:
    # NOT NULL with a server default: SQLite and PostgreSQL (11+) add such a column without rewriting the table
    for name in COLUMNS:
        op.add_column("pulls", sa.Column(name, sa.Integer(), nullable=False, server_default=sa.text("0")))


def downgrade() -> None:
    for name in reversed(COLUMNS):  # SQLite 3.35+ drops a column in place
        op.drop_column("pulls", name)
