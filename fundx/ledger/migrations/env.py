"""Alembic's environment for the ledger: it runs on the connection fundx.ledger.migrations hands it.

Alembic loads this file for every command; fundx runs them only through :mod:`fundx.ledger.migrations`
(``fundx ledger upgrade``), which holds the ledger's schema lock on that connection, so there is no
database URL here and no offline (``--sql``) mode.
"""

from __future__ import annotations

from alembic import context

from fundx.ledger.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("the ledger's migrations run through fundx.ledger.migrations (fundx ledger upgrade), on its connection")
# the caller's transaction holds the schema lock: Alembic works inside it and commits nothing itself
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
