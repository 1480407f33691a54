"""Backups of the exchange and the restore drill: ``fundx backup create | verify | restore``.

:mod:`fundx.backup.archive` makes a sealed backup (the ledger, the keys' public parts, the quarantine) and
proves one opens and is complete; :mod:`fundx.backup.ledger_copy` copies the ledger consistently out of
SQLite or PostgreSQL and back into either; :mod:`fundx.backup.restore` rebuilds a home and reconciles the
restored ledger with what the stages acknowledged since. The originals of every pulled batch are kept by
the exchange itself (:mod:`fundx.exchange.originals`).
"""
