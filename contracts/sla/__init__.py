"""Service levels: compiled from each feed's contract, and a pure evaluator of one night's facts.

Nothing here is kept twice: every figure comes from the contract's ``slaProperties`` (ODCS v3) or,
for the row-count band, from its ``rowCountVsHistory`` quality rule (read through
:func:`contracts.rules.contract_rules`). This package does no I/O beyond reading the contracts: the
SLA monitor (:mod:`fundx.sla.monitor`) fills :class:`~contracts.sla.findings.FeedNight` and
:class:`~contracts.sla.findings.NightRun` from the ledger, calls
:func:`~contracts.sla.findings.evaluate` with its clock, records the breached findings and notifies
what :func:`~contracts.sla.findings.transitions` says opened or recovered.

- :mod:`contracts.sla.policy`: the slaProperties read, compiled into a :class:`~contracts.sla.policy.FeedSla`;
- :mod:`contracts.sla.cron`: the day fields of a frequency's cron (which nights a delivery is due);
- :mod:`contracts.sla.findings`: the facts of a night, the rules judged on them, notify once and recover once;
- :mod:`contracts.sla.latency`: the event latency of a batch's rows (the ``eventLatency`` property).
"""
