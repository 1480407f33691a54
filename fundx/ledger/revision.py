"""Where a ledger database's schema stands against this fundx's revisions, and the refusal to run on it.

The schema has revisions (Alembic's, in :mod:`fundx.ledger.migrations`; the ``alembic_version`` table holds
the ledger's). A new ledger is made at the newest, :data:`~fundx.ledger.schema.SCHEMA_HEAD`; a ledger at
another revision, or one written by fundx 0.1.0 (no revision), is refused with :class:`LedgerSchemaError`
until ``fundx ledger upgrade`` brings it to the head.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fundx.core.errors import ConfigurationError
from fundx.ledger.engine import backend_of
from fundx.ledger.schema import SCHEMA_HEAD, SCHEMA_REVISIONS, V010_TABLES, alembic_version, metadata


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


def check_schema(url: str) -> SchemaState:
    """The schema state of the ledger at ``url``, read without creating or changing anything (a SQLite
    file that does not exist yet is ``new``). Raises LedgerSchemaError unless fundx may run on it."""
    parsed = sa.engine.make_url(url)
    if backend_of(url) == "sqlite":
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
