"""The audit trail's hash chain: how an entry is hashed, and how the whole chain is checked.

Each entry carries the hash of the one before it::

    hash = SHA-256( prev_hash || "\\n" || JSON [seq, at, actor, action, subject, details] )

with ``at`` in UTC to the microsecond and ``details`` the canonical JSON text stored in the ledger
(sorted keys, no spaces). The sequence number is inside the hash, so an entry moved to another
place no longer matches its hash; an entry deleted from the middle breaks the next entry's
``prev_hash``; an entry deleted from the end no longer matches the chain's head, a one-row table
that every writer updates under the same lock (:meth:`fundx.ledger.Ledger.audited`). Whoever can
rewrite the whole database can rewrite the whole chain: publish the head (``fundx audit verify``
prints it; every night logs it) somewhere else to detect that too.

Details are content-free by rule: feed names, batch ids, windows, counts, digests, error types.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: the prev_hash of the first entry
GENESIS = "0" * 64


def canonical(details: dict[str, Any]) -> str:
    """The one JSON text of ``details`` that is stored and hashed."""
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _at_text(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("audit times are timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(prev_hash: str, seq: int, at: datetime, actor: str, action: str, subject: str, details: str) -> str:
    """The hash of one entry, chained to the hash of the entry before it."""
    body = json.dumps([seq, _at_text(at), actor, action, subject, details], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One audit entry as stored in the ledger."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: str
    prev_hash: str
    hash: str

    @classmethod
    def new(cls, *, seq: int, at: datetime, actor: str, action: str, subject: str, details: dict[str, Any],
            prev_hash: str) -> Entry:
        """The next entry of the chain, its hash computed."""
        text = canonical(details)
        return cls(seq, at, actor, action, subject, text, prev_hash,
                   entry_hash(prev_hash, seq, at, actor, action, subject, text))

    @classmethod
    def from_row(cls, row: Any) -> Entry:
        """An entry read back from the ledger's audit table."""
        return cls(int(row["seq"]), row["at"], row["actor"], row["action"], row["subject"], row["details"],
                   row["prev_hash"], row["hash"])

    def row(self) -> dict[str, Any]:
        """The values to insert into the audit table."""
        return {"seq": self.seq, "at": self.at, "actor": self.actor, "action": self.action, "subject": self.subject,
                "details": self.details, "prev_hash": self.prev_hash, "hash": self.hash}

    def recomputed(self) -> str:
        return entry_hash(self.prev_hash, self.seq, self.at, self.actor, self.action, self.subject, self.details)


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking the chain: ``ok``, or the first bad entry and what is wrong with it."""

    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    bad_seq: int | None = None
    problem: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"audit trail intact: {self.entries} entries, head seq {self.head_seq} hash {self.head_hash}"
        return f"audit trail broken at entry {self.bad_seq}: {self.problem}"


def verify(entries: Iterable[Entry], head: tuple[int, str] | None) -> Verdict:
    """Check entries in sequence order against each other and against the recorded head."""
    count, prev_seq, prev_hash = 0, 0, GENESIS
    for entry in entries:
        count += 1
        if entry.recomputed() != entry.hash:
            return Verdict(False, count, prev_seq, prev_hash, entry.seq,
                           "its hash does not match its content (edited, or moved from another place)")
        if entry.seq != prev_seq + 1:
            return Verdict(False, count, prev_seq, prev_hash, entry.seq,
                           f"it follows entry {prev_seq}: entries {prev_seq + 1}..{entry.seq - 1} were deleted")
        if entry.prev_hash != prev_hash:
            return Verdict(False, count, prev_seq, prev_hash, entry.seq,
                           f"it does not chain to entry {prev_seq} (an entry before it was deleted or replaced)")
        prev_seq, prev_hash = entry.seq, entry.hash
    if head is not None and head != (prev_seq, prev_hash):
        return Verdict(False, count, prev_seq, prev_hash, prev_seq + 1 if head[0] > prev_seq else head[0],
                       f"the chain ends at entry {prev_seq} but its head records entry {head[0]} "
                       "(entries at the end were deleted, or the head was changed)")
    return Verdict(True, count, prev_seq, prev_hash)
