"""Writing the audit trail: transactions that lock the chain's head, and the entries appended in them.

Every audited write goes through :meth:`AuditTrail.audited`, which first locks the head of the audit
chain (an UPDATE of its one row: a row lock on PostgreSQL, the database's write lock on SQLite), so
two writers can never fork the chain. How an entry is hashed and the chain checked:
:mod:`fundx.ledger.audit`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fundx.core.errors import InternalError
from fundx.ledger import audit as audit_chain
from fundx.ledger.database import LedgerDatabase, utc_now
from fundx.ledger.schema import audit, audit_head


class AuditTrail(LedgerDatabase):
    """The ledger's audit trail: every part of :class:`fundx.ledger.Ledger` that writes is audited through it."""

    @contextmanager
    def audited(self) -> Iterator[Connection]:
        """A transaction that may append to the audit trail: it starts by locking the chain's head.

        The lock is an UPDATE of the head's one row, the first statement of the transaction: on
        PostgreSQL a row lock (a second writer waits at this line), on SQLite the database's write
        lock (taken before anything is read, so no writer ever works from a stale head).
        """
        with self.engine.begin() as conn:
            conn.execute(audit_head.update().where(audit_head.c.id == 1).values(locked_at=utc_now()))
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
            seq=int(head.seq) + 1, at=utc_now(), actor=actor, action=action, subject=subject,
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
