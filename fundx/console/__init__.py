"""The stewards' console: a web page over the ledger and the sealed quarantine.

``fundx console`` serves it (:func:`fundx.console.app.serve`, on 127.0.0.1 by default):

- the nights (per feed: rows pulled, valid, quarantined, held, delivered, acknowledged, released,
  and the SLA breaches recorded) with a trend over the last 30 nights (inline SVG, no script);
- a quarantined batch: failures per rule, the night's Data Docs page, and the rows as
  :func:`fundx.exchange.quarantine.masked_view` shows them, each with the rules it broke and its decision state;
- deciding (stewards): release or reject rows — ticked ones, all open rows failing one rule, or every
  open row — with a reason, through :func:`fundx.exchange.quarantine.decide`; and unmasking one row's identity
  number with a stated reason, audited, shown once in the response and never in a URL;
- the audit trail, filtered, with its hash-chain verdict;
- the inspection cases (:mod:`fundx.console.pages.cases`): my queue, by district, overdue, a case with its masked
  evidence and steps, and the steps of the lifecycle (take, finding, first and second review, acceptance).

Every page is in Chinese unless the header's switch chose English (:mod:`fundx.console.i18n`).
Accounts and sessions live in the ledger (:mod:`fundx.console.accounts`): argon2id password hashes,
roles ``steward``, ``auditor`` (read only), ``inspector`` and ``supervisor`` (cases).
"""
