"""The ledger's schema revisions (Alembic), driven from code: no ``alembic.ini`` to find.

``versions/`` holds one file per revision, oldest first: 0001 is the schema fundx 0.1.0 made, 0002 adds
each pull's repeats. :func:`config` builds Alembic's configuration in Python with ``script_location``
pointing at this package, so the revisions work from an installed wheel as from a checkout.

- A new ledger is made at the head by :class:`fundx.ledger.Ledger` itself (``metadata.create_all`` and
  the head stamped, under the schema lock); ``tests/ledger/test_migrations.py`` proves that the same,
  table by table, as running every revision.
- An older ledger is refused by the code (:class:`fundx.ledger.revision.LedgerSchemaError`) until
  :func:`upgrade` (``fundx ledger upgrade``) brings it to the head: in one transaction under the schema
  lock and the audit chain's lock, audited as ``ledger.upgraded``. A ledger written by fundx 0.1.0 has
  no revision: it is recognised by its tables, given the console's two if it lacks them, and stamped
  0001 first.

A new revision: copy the newest file in ``versions/`` (or ``alembic.command.revision(config(),
message, rev_id="0003")``), write its ``upgrade`` and ``downgrade`` with ``alembic.op``, change the tables
of :mod:`fundx.ledger.schema` to match, and add its id to :data:`fundx.ledger.schema.SCHEMA_REVISIONS`; the
tests then check that a ledger upgraded to it and one made new are the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from fundx.core.errors import InternalError
from fundx.core.timeutil import now
from fundx.ledger import Ledger
from fundx.ledger.revision import SchemaState, schema_state
from fundx.ledger.schema import SCHEMA_HEAD, audit_head

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection

HERE = Path(__file__).resolve().parent


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the ledger; ``connection`` is the one env.py runs the revisions on."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("path_separator", "os")
    # rev0003_<slug>.py: a module name mypy and the wheel's build take (Alembic's default starts with a digit)
    cfg.set_main_option("file_template", "rev%%(rev)s_%%(slug)s")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def scripts() -> ScriptDirectory:
    """The revisions in ``versions/``."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config())


def revision_one() -> sa.MetaData:
    """Revision 0001's tables: the schema fundx 0.1.0 made."""
    script = scripts().get_revision("0001")
    assert script is not None and script.module is not None
    return script.module.schema()


@dataclass(frozen=True)
class Upgrade:
    """What :func:`upgrade` did."""

    before: str | None  # the revision the ledger was at: None for a new ledger or one of fundx 0.1.0
    after: str
    applied: tuple[str, ...] = ()  # the revisions run, oldest first
    created: bool = False  # there was no ledger: a new one was made at the head
    adopted: bool = False  # a ledger of fundx 0.1.0, stamped 0001 before its upgrade
    made_tables: tuple[str, ...] = ()  # revision 0001's tables such a ledger lacked (the console's)

    @property
    def changed(self) -> bool:
        return self.created or bool(self.applied) or self.adopted


def status(ledger: Ledger) -> SchemaState:
    """Where the ledger's schema stands (read only)."""
    with ledger.engine.connect() as conn:
        return schema_state(conn)


#: a SQLite upgrade that met "database is locked" outside the busy timeout's reach is tried again this often
_SQLITE_TRIES = 5


def upgrade(ledger: Ledger, *, actor: str) -> Upgrade:
    """Bring the ledger to this fundx's head revision; nothing to do at the head already.

    On SQLite, an upgrade that meets "database is locked" where the busy timeout does not wait (SQLite
    answers at once when waiting could deadlock, e.g. while another upgrader's first connection turns
    the file to WAL) is tried again, whole: it is one transaction, and the second try finds the ledger
    current if the other upgrader got there first.
    """
    for attempt in range(1, _SQLITE_TRIES + 1):
        try:
            return _upgrade(ledger, actor=actor)
        except sa.exc.OperationalError as exc:
            if ledger.dialect != "sqlite" or "locked" not in str(exc.orig) or attempt == _SQLITE_TRIES:
                raise
            time.sleep(0.2 * attempt)
    raise InternalError("unreachable")  # the loop returns or raises


def _upgrade(ledger: Ledger, *, actor: str) -> Upgrade:
    """:func:`upgrade`, once.

    Open the ledger with ``Ledger(url, create=False)``: an older ledger is refused otherwise. One
    transaction holds the schema lock (Ledger.schema_lock) and then the audit chain's head, taken before
    any table changes: a writer of the old release that still runs waits for the upgrade instead of
    deadlocking with it. The revisions, the stamp and the ``ledger.upgraded`` audit entry commit
    together, or nothing does. LedgerSchemaError for a ledger ahead of this fundx, or a database that
    is not a ledger.
    """
    if status(ledger).status == "new":
        ledger._create()  # the schema lock decides between several upgraders of a new ledger
        return Upgrade(before=None, after=SCHEMA_HEAD, created=True)
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    with ledger.schema_lock() as conn:
        state = schema_state(conn)  # again under the lock: another upgrade may have finished meanwhile
        if state.status == "current":
            return Upgrade(before=SCHEMA_HEAD, after=SCHEMA_HEAD)
        if not state.upgradable:
            raise state.error(ledger.url)
        ledger._ensure_audit_head(conn)
        conn.execute(audit_head.update().where(audit_head.c.id == 1).values(locked_at=now()))
        made: tuple[str, ...] = ()
        script = scripts()
        if state.status == "v010":
            one = revision_one()
            present = set(sa.inspect(conn).get_table_names())
            missing = [t for t in one.sorted_tables if t.name not in present]
            one.create_all(conn, tables=missing, checkfirst=False)
            made = tuple(t.name for t in missing)
            MigrationContext.configure(conn).stamp(script, "0001")
        start = state.revision or "0001"
        applied = tuple(reversed([s.revision for s in script.iterate_revisions("head", start)]))
        command.upgrade(config(conn), "head")
        after = schema_state(conn)
        if after.status != "current":
            raise InternalError(f"the ledger's upgrade ended at {after.status} {after.revision}, not {SCHEMA_HEAD}")
        done = Upgrade(before=state.revision, after=SCHEMA_HEAD, applied=applied, adopted=state.status == "v010",
                       made_tables=made)
        conn.info["fundx_audit_lock"] = True  # the chain's head is locked above, as Ledger.audited() does
        try:
            ledger.audit(conn, "ledger.upgraded", "ledger", {
                "from": state.revision or "fundx 0.1.0 (no revision)", "to": SCHEMA_HEAD, "revisions": list(applied),
                "tables_made": list(made),
            }, actor=actor)
        finally:
            conn.info.pop("fundx_audit_lock", None)
        return done
