"""The ledger: what the exchange did, and where each feed's next pull starts.

SQLAlchemy Core over SQLite (embedded default, a file under FUNDX_HOME) or PostgreSQL (by URL, for
several workers). It records runs, pulls, watermarks, deliveries of sealed batches to the stages,
the stages' acknowledgements and refusals, the matching stage's inspection orders, and a
hash-chained audit trail. It never stores a record's content: only counts, sizes, digests, windows,
durations and error types with their (content-free) messages; an order names its subject by a
pseudonymous token (or a bill key or credit code) and a masked identity number.

The package's API is :class:`Ledger` and the records it hands out (:class:`DeliveryRecord`,
:class:`PullRecord`); everything else is imported from the module that holds it:

- :mod:`fundx.ledger.schema`: the tables (the console's too), :data:`~fundx.ledger.schema.metadata`
  and the schema's revisions;
- :mod:`fundx.ledger.revision`: where a database's schema stands against those revisions, and the
  refusal (:class:`~fundx.ledger.revision.LedgerSchemaError`) of a ledger behind or ahead of this fundx
  until ``fundx ledger upgrade`` (:mod:`fundx.ledger.migrations`) brings it to the head;
- :mod:`fundx.ledger.engine`: connecting to SQLite or PostgreSQL;
- :mod:`fundx.ledger.records`: the records;
- :mod:`fundx.ledger.database`, :mod:`fundx.ledger.trail`, :mod:`fundx.ledger.runs` and
  :mod:`fundx.ledger.deliveries`: the parts :class:`Ledger` is made of — transactions, locks and a new
  ledger; the audit trail's writing (its hash chain: :mod:`fundx.ledger.audit`); runs, pulls and
  watermarks; deliveries and acknowledgements.
"""

from __future__ import annotations

from fundx.ledger.deliveries import Deliveries
from fundx.ledger.records import DeliveryRecord, PullRecord
from fundx.ledger.runs import RunsAndPulls

__all__ = ["DeliveryRecord", "Ledger", "PullRecord"]


class Ledger(RunsAndPulls, Deliveries):
    """Access to the ledger database; one per process is enough (engines pool connections).

    ``Ledger(url)`` opens the ledger at ``url`` and makes it at the schema's head if it is new
    (:class:`~fundx.ledger.database.LedgerDatabase`); its methods come from the parts above.
    """
