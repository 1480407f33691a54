"""A streamed batch checked chunk by chunk (:func:`check_spooled`): the one verdict on its totals.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Any

import numpy as np

from fundx.core.digest import (
    digest_of,
)
from fundx.crypto.parts import PART_BYTES
from fundx.exchange.batch import CheckedBatch, Steps
from fundx.exchange.chunks import CheckJob, CheckResult, check_chunk
from fundx.exchange.parts import SpooledParts, quarantine_parts, valid_parts
from fundx.exchange.runners import Runner
from fundx.exchange.stream import SpooledPull

log = logging.getLogger("fundx.stream")


class SpooledBatch(CheckedBatch):
    """A streamed pull checked chunk by chunk (:func:`check_spooled`): its rows stay in the spool, the
    chunks' results name them; parts are sealed through ``runner``."""

    def __init__(self, pulled: SpooledPull, results: list[CheckResult], report: dict[str, Any], validation_result: Any,
                 valid_digest: str, lag: tuple[float, float] | None, runner: Runner) -> None:
        self.pulled = pulled
        self.results = results
        self.report = report
        self.validation_result = validation_result
        self._valid_digest = valid_digest
        self._lag = lag
        self.runner = runner

    def valid_digest(self) -> str:
        return self._valid_digest

    def valid_payloads(self, part_bytes: int) -> SpooledParts:
        return valid_parts(self.pulled, self.results, part_bytes)

    def original_payloads(self) -> tuple[int, Iterator[bytes]] | None:
        """The pulled rows as the chunks' jobs encoded them for the backup's originals, one part per chunk,
        each gone from the spool once read; None if a chunk's would not encode there."""
        names = [r.original for r in self.results]
        if len(names) != len(self.pulled.chunks) or any(n is None for n in names):
            return None
        spool = self.pulled.spool

        def read() -> Iterator[bytes]:
            for name in names:
                assert name is not None
                data = spool.get(name)
                spool.remove(name)
                yield data

        return len(names), read()

    def quarantine_payloads(self, part_bytes: int, *, held: bool) -> SpooledParts:
        return quarantine_parts(self.pulled, self.results, part_bytes, held=held)

    def event_lag(self) -> tuple[float, float] | None:
        return self._lag


def check_spooled(pulled: SpooledPull, *, runner: Runner, steps: Steps, history: Sequence[int] | None,
                  today: date | None = None, arrived: datetime | None = None,
                  part_bytes: int = PART_BYTES, originals: bool = True) -> SpooledBatch:
    """Check every chunk (through ``runner``), then the batch on its totals: the one verdict
    (contracts.validate.verdict) a batch read whole gets. ``history``: the feed's recent row counts.
    ``originals``: the chunks' jobs encode the pulled rows for the backup's originals (False where no backup
    certificate is configured: :func:`fundx.exchange.originals.backup_certificate_expected`)."""
    from contracts import load_contract
    from contracts.normalise import NormalisationRecord
    from contracts.rules import contract_rules
    from contracts.sla.latency import lag_percentiles
    from contracts.validate import check_report, settle_result, verdict
    from fundx.core.timeutil import SHANGHAI, now

    contract = load_contract(pulled.feed)
    rules = contract_rules(contract)
    today = today or datetime.now(SHANGHAI).date()
    arrived = arrived or now()
    jobs = [CheckJob(pulled.spool, pulled.feed, chunk, today, arrived, part_bytes, originals)
            for chunk in pulled.chunks]
    started = time.perf_counter()
    with steps.step("validate") as figures:
        results = runner.map(check_chunk, jobs)
        figures["rows"] = pulled.rows
    # The jobs also normalised their rows and encoded the valid ones as Parquet: the step's wall clock is
    # shared out in proportion to the jobs' own seconds (with parallel workers these add up to more).
    normalise_seconds = sum(r.normalise_seconds for r in results)
    encode_seconds = sum(r.encode_seconds for r in results)
    steps.share("validate", normalise=normalise_seconds, seal=encode_seconds,
                of=sum(r.seconds for r in results), rows=pulled.rows)
    rows = sum(r.rows for r in results)
    valid = sum(r.valid for r in results)
    bad = sum(r.quarantined for r in results)
    counts = {rule.id: 0 for rule in rules.rules}
    record = NormalisationRecord()
    for r in results:
        for rule_id, n in r.counts.items():
            counts[rule_id] = counts.get(rule_id, 0) + n
        for column, kinds in r.normalisation.items():
            for kind, n in kinds.items():
                record.add(column, kind, n)
    unevaluated = [u for r in results for u in r.unevaluated]
    schema_reason = next((r.schema_reason for r in results if r.schema_reason), None)
    validation_result: Any = None
    disputed: dict[str, int] = {}
    if schema_reason is None:
        with steps.step("validate"):  # Great Expectations confirms the batch's split, once
            validation_result, disputed, raised = confirm_batch(pulled, results, contract, today=today,
                                                                 failed=bad, counts=counts, rows=rows)
            unevaluated += raised
    decided = verdict(contract, rows=rows, failed=bad, history=history, unevaluated=unevaluated,
                      schema_reason=schema_reason, disputed=disputed)
    report = check_report(contract, rules, rows=rows, valid=valid, quarantined=bad, counts=counts | decided.counts,
                          record=record, rejected=decided.rejected, reason=decided.reason,
                          seconds=time.perf_counter() - started, schema=decided.schema_break)
    report["unevaluated"] = sorted(set(unevaluated))
    report["disputed"] = disputed
    report["normalise_seconds"] = round(normalise_seconds, 3)
    report["streamed"] = {"chunks": len(results)}
    lags = [r.lags for r in results if r.lags is not None and len(r.lags)]
    hashes = np.concatenate([r.valid_hashes for r in results]) if results else np.zeros(0, dtype=np.uint64)
    for r in results:
        r.valid_hashes = np.zeros(0, dtype=np.uint64)
        r.lags = None
    return SpooledBatch(
        pulled, results, report,
        settle_result(validation_result, contract, rows=rows, rows_ok=decided.rows_ok),
        digest_of(pulled.columns, hashes), lag_percentiles(np.concatenate(lags)) if lags else None, runner,
    )


def confirm_batch(pulled: SpooledPull, results: list[CheckResult], contract: Any, *, today: date, failed: int,
                  counts: dict[str, int], rows: int) -> tuple[Any, dict[str, int], list[str]]:
    """Great Expectations' one validation of a streamed batch's results (contracts.evidence): the chunks'
    failing rows and samples of their valid rows, GX's disagreements with the split, the rules it could
    not evaluate; its result carries the whole batch's counts (for Data Docs)."""
    from contracts import evidence

    pieces = ((pulled.spool.get_object(r.name) if r.quarantined else None,
               pulled.spool.get_object(r.sample) if r.sample else None) for r in results)
    found = evidence.gather(contract, pieces, failed_total=failed)
    result, disputed, raised = evidence.confirm(contract, found, today=today)
    missing: dict[str, int | None] = {}
    for r in results:
        for rule_id, n in r.missing.items():
            missing[rule_id] = None if n is None else int(missing.get(rule_id) or 0) + n
    return evidence.settle_counts(result, rows=rows, counts=counts, missing=missing), disputed, raised
