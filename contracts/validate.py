"""Checking one batch against its contract: normalise, validate with GX, split valid from quarantined.

    checked = check("police.deaths", frame, history=[...], today=date(2026, 11, 23))
    checked.valid          # rows that go on to be sealed
    checked.quarantined    # rows for the stewards, with `_rules` naming every rule each broke
    checked.rejected       # True: hold the whole batch back (checked.reject_reason says why)
    checked.report         # counts and percentages per rule, no values: safe for logs and artifacts

Two steps, so that a batch read in chunks is judged exactly as one read whole: :func:`check_rows`
splits one frame's rows (a whole batch, or a chunk), and :func:`verdict` decides the batch from its
totals — a schema break, a rule that could not be evaluated, the row count against the feed's
history, the share of failing rows. :func:`check` is both, for a batch in memory.

The row split is the contract's compiled checks (:mod:`contracts.engine`: vectorised, GX's semantics,
proven equal to the GX suite by tests/contracts/test_engine_vs_gx.py). Great Expectations, the engine of
record, validates every batch's results (:mod:`contracts.evidence`: the failing rows and a sample of the
others must get GX's verdict, or the batch is held back) and its result is what Data Docs show.
``gx=False`` checks without GX (a quick look at a file: ``fundx contract check``), and never imports it.

One Great Expectations context serves the whole process (ephemeral, progress bars off); import and
first use cost a few seconds, so validate every feed of a night in one process. GX is asked for the
fast result format measured in docs/libraries.md: COMPLETE without ``unexpected_index_column_names``,
no index query, no unexpected values, and the frame's RangeIndex positions from ``unexpected_index_list``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from contracts import Contract, load_contract
from contracts import evidence as ev
from contracts.checks import shared_work
from contracts.engine import row_codes
from contracts.evidence import gx_raised
from contracts.normalise import NormalisationRecord, normalise
from contracts.rules import KEY_CONFLICT, ROW_SHAPE, ContractRules, Rule, contract_rules
from contracts.rules import row_count_bounds as contract_rules_bounds
from fundx.core.columns import DEFECT, RAW, RESERVED_COLUMNS, RULE_SEPARATOR, RULES_COLUMN
from fundx.core.threads import thread_map
from fundx.core.timeutil import SHANGHAI

#: What GX is asked to return: row positions of failures, never the failing values.
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "return_unexpected_index_query": False,
    "exclude_unexpected_values": True,
    "partial_unexpected_count": 0,
    "include_unexpected_rows": False,
}


@dataclass
class Checked:
    """A batch after its contract's checks: the split, the verdict and a report without values."""

    feed: str
    valid: pd.DataFrame
    quarantined: pd.DataFrame
    rejected: bool
    reject_reason: str | None
    counts: dict[str, int]
    normalisation: NormalisationRecord
    report: dict[str, Any] = field(default_factory=dict)
    validation_result: Any = None  # the GX ExpectationSuiteValidationResult (for Data Docs), if any
    disputed: dict[str, int] = field(default_factory=dict)  # rule -> rows where GX and the split disagree


class _Gx:
    """The process's one GX context with a pandas data source for in-memory frames."""

    _lock = threading.Lock()
    _instance: _Gx | None = None

    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )
        from great_expectations.execution_engine import pandas_execution_engine

        # GX fingerprints every frame with an MD5 over all of its values, twice per validation
        # (3 s per million rows); the fingerprint is only a batch marker, so switch it off.
        pandas_execution_engine.HASH_THRESHOLD = 0
        # No docs site in a temporary folder: Data Docs are written by contracts.docs, without values.
        config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False))
        self.context = gx.get_context(mode="ephemeral", project_config=config)
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = self.context.data_sources.add_pandas("fundx")
        self.batch_definition = source.add_dataframe_asset("batch").add_batch_definition_whole_dataframe("whole")

    @classmethod
    def get(cls) -> _Gx:
        """The context, created on first use."""
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def validate(self, frame: pd.DataFrame, suite: Any, parameters: dict[str, Any]) -> Any:
        """Validate a frame (RangeIndex) against a suite."""
        from contracts.checks import shared_work

        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        with shared_work():
            return batch.validate(suite, result_format=RESULT_FORMAT, expectation_parameters=parameters)


def gx_context() -> Any:
    """The process's Great Expectations context (ephemeral)."""
    return _Gx.get().context


@lru_cache(maxsize=64)
def _suite(contract: Contract) -> Any:
    from contracts.compile import compile_suite

    return compile_suite(contract)


def gx_validate(contract: Contract, frame: pd.DataFrame, parameters: dict[str, Any]) -> Any:
    """Great Expectations' validation of a frame (RangeIndex) against the contract's compiled suite."""
    return _Gx.get().validate(frame, _suite(contract), parameters)


def row_count_bounds(rule: Rule, history: Sequence[int] | None) -> tuple[int, int | None]:
    """The rows a batch may have given the trailing history of its feed (too little history: any number)."""
    return contract_rules_bounds(rule.params, history) or (0, None)


@dataclass
class RowCheck:
    """One frame's rows checked against the contract (a whole batch, or one chunk of a streamed one): the
    split, counts per row rule, the normalisation done, the GX result. The batch's fate is :func:`verdict`'s."""

    rows: int
    valid: pd.DataFrame
    quarantined: pd.DataFrame
    counts: dict[str, int]
    record: NormalisationRecord
    unevaluated: list[str]
    result: Any = None  # the GX suite validation result (counts, no values), for Data Docs
    schema_reason: str | None = None  # the frame's columns do not match the contract: nothing was checked
    normalise_seconds: float = 0.0
    #: per rule, the values GX counts as missing (Data Docs' counts of a batch checked in chunks)
    missing: dict[str, int | None] = field(default_factory=dict)
    #: rule -> rows of the evidence where GX's verdict is not the split's (gx=True only)
    disputed: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """What a batch's totals decide: held back whole or not, and why (the contract's batch rules and policy)."""

    rejected: bool
    reason: str | None
    counts: dict[str, int]  # each batch rule: 1 if it failed
    rows_ok: bool = True  # the row-count rule held
    schema_break: bool = False


def verdict(contract: Contract, *, rows: int, failed: int, history: Sequence[int] | None,
            unevaluated: Sequence[str] = (), schema_reason: str | None = None,
            disputed: Mapping[str, int] | None = None) -> Verdict:
    """The one verdict on a batch, whole or streamed, from its totals: a schema break; a rule that could
    not be evaluated (never trust a batch a rule could not look at); a rule whose split Great
    Expectations did not confirm (``disputed``: rule -> rows); the row count against the feed's trailing
    history (``history``, oldest first); the share of failing rows above the contract's ``batchPolicy``.
    Any of them holds the batch back whole (``rejected``)."""
    rules = contract_rules(contract)
    if schema_reason is not None:
        return Verdict(True, schema_reason, {}, schema_break=True)
    reasons = [f"rule {rule_id} could not be evaluated" for rule_id in dict.fromkeys(unevaluated)]
    reasons += [f"rule {rule_id}: Great Expectations and the compiled check disagree on {n} row(s) "
                "(the batch is held back until they agree)" for rule_id, n in sorted((disputed or {}).items())]
    counts: dict[str, int] = {}
    rows_ok = True
    for rule in rules.batch_rules:
        if rule.kind != "row_count":
            continue
        low, high = row_count_bounds(rule, history)
        counts[rule.id] = int(rows < low or (high is not None and rows > high))
        if counts[rule.id]:
            rows_ok = False
            reasons.append(f"rule {rule.id} failed: {rows} rows, expected {low}..{high}")
    if too_many := too_many_failed(rules, failed, rows):
        reasons.append(too_many)
    return Verdict(bool(reasons), "; ".join(reasons) if reasons else None, counts, rows_ok)


def settle_result(result: Any, contract: Contract, *, rows: int, rows_ok: bool) -> Any:
    """The GX suite result with its table-level row count as the verdict has it (the whole batch's rows,
    judged against the feed's history), so that Data Docs say what was decided."""
    if result is None:
        return None
    batch_rules = {r.id for r in contract_rules(contract).batch_rules}
    for item in result.results:
        if (item.expectation_config.meta or {}).get("rule") in batch_rules:
            if "observed_value" in (item.result or {}):
                item.result["observed_value"] = rows
            if not gx_raised(item):
                item.success = rows_ok
    good = sum(1 for item in result.results if item.success)
    result.success = good == len(result.results)
    if result.statistics is not None:
        result.statistics.update({"evaluated_expectations": len(result.results), "successful_expectations": good,
                                  "unsuccessful_expectations": len(result.results) - good,
                                  "success_percent": 100.0 * good / len(result.results) if result.results else None})
    return result


def check(feed_or_contract: str | Contract, frame: pd.DataFrame, *, history: Sequence[int] | None = None,
          today: date | None = None, gx: bool = True) -> Checked:
    """Check a batch against its feed's contract; see the module's docstring.

    ``history``: row counts of the feed's previous batches, oldest first (for the row-count rule).
    ``today``: the day dates may not be after (default: today in Asia/Shanghai).
    ``gx``: Great Expectations validates the results (and gives the result Data Docs show); False checks
    with the compiled checks alone (no GX import: ``validation_result`` is None).
    Raises ConfigurationError when the contract itself is wrong; a schema break is a rejection.
    """
    started = time.perf_counter()
    contract = feed_or_contract if isinstance(feed_or_contract, Contract) else load_contract(feed_or_contract)
    rules = contract_rules(contract)
    bounds = next((row_count_bounds(r, history) for r in rules.batch_rules if r.kind == "row_count"), (0, None))
    found = check_rows(contract, frame, today=today, row_count=bounds, gx=gx)
    decided = verdict(contract, rows=found.rows, failed=len(found.quarantined), history=history,
                      unevaluated=found.unevaluated, schema_reason=found.schema_reason, disputed=found.disputed)
    result = settle_result(found.result, contract, rows=found.rows, rows_ok=decided.rows_ok)
    valid = found.valid
    report = check_report(contract, rules, rows=found.rows, valid=len(valid), quarantined=len(found.quarantined),
                          counts=found.counts | decided.counts, record=found.record, rejected=decided.rejected,
                          reason=decided.reason, seconds=time.perf_counter() - started, schema=decided.schema_break)
    report["unevaluated"] = list(found.unevaluated)
    report["disputed"] = dict(found.disputed)
    report["normalise_seconds"] = round(found.normalise_seconds, 3)
    return Checked(contract.feed, valid, found.quarantined, decided.rejected, decided.reason,
                   found.counts | decided.counts, found.record, report, result, dict(found.disputed))


def schema_break(contract: Contract, columns: Sequence[object]) -> str | None:
    """Why a frame with these columns breaks the contract's schema (a required column missing, one the
    contract does not have), or None; a contract whose batch policy tolerates schema breaks never says so."""
    if not contract_rules(contract).policy.reject_on_schema_break:
        return None
    missing = [c for c in contract.required if c not in columns]
    unexpected = [str(c) for c in columns if c not in contract.by_name and c not in RESERVED_COLUMNS]
    parts = []
    if missing:
        parts.append("missing required column(s) " + ", ".join(missing))
    if unexpected:
        parts.append("column(s) not in the contract " + ", ".join(unexpected))
    return f"schema break: {'; '.join(parts)}" if parts else None


def check_rows(contract: Contract, frame: pd.DataFrame, *, today: date | None = None,
               row_count: tuple[int, int | None] = (0, None), gx: bool = True) -> RowCheck:
    """Normalise a frame's rows and split them, valid from failing, by the contract's row rules (the
    compiled checks; the structural rules from the transport's marks). Each failing row carries every
    rule it broke (``_rules``). With ``gx``, Great Expectations validates the frame's results (all of a
    small frame; the failing rows and a sample of the rest of a large one) and ``disputed`` says where
    it disagrees; a batch checked in chunks leaves that to :mod:`contracts.evidence` once per batch.
    ``row_count`` only fills the row-count expectation's parameters for Data Docs: whether the batch's
    row count holds is :func:`verdict`'s to say."""
    today = today or datetime.now(SHANGHAI).date()
    if (broken := schema_break(contract, list(frame.columns))) is not None:
        return RowCheck(len(frame), frame.iloc[0:0], frame.iloc[0:0], {}, NormalisationRecord(), [],
                        schema_reason=broken)

    # the transport's marks of structural defects (a malformed row, a key conflict): not the contract's columns
    marks = {c: frame[c].reset_index(drop=True) for c in RESERVED_COLUMNS if c in frame.columns}
    work = frame.copy(deep=False)
    for name in contract.names:
        if name not in work.columns:  # an optional column the agency left out: all missing
            work[name] = pd.Series(np.nan, index=work.index, dtype="str")
    work = work[list(contract.names)]
    with shared_work():  # the normalisation and the rules parse each column once between them (dates)
        normalising = time.perf_counter()
        work, record = normalise(contract, work)
        normalise_seconds = time.perf_counter() - normalising
        original_index = work.index
        work = work.reset_index(drop=True)

        found = row_codes(contract, work, today)
    row_rules = found.row_ids
    bit = {rule_id: np.int64(1) << np.int64(i) for i, rule_id in enumerate(row_rules)}
    codes = structural_codes(found.codes, marks.get(DEFECT), bit, key_unique_bits(contract, bit))
    failing, failing_rows = np.unique(codes[codes != 0], return_counts=True)  # the few distinct sets of rules broken
    counts = {rule_id: int(failing_rows[(failing & bit[rule_id]) != 0].sum()) for rule_id in row_rules}
    unevaluated = list(found.unevaluated)
    result: Any = None
    disputed: dict[str, int] = {}
    if gx:
        evidence = ev.of_frame(contract, work, codes, marks.get(DEFECT))
        result, disputed, raised = ev.confirm(contract, evidence, today=today, row_count=row_count)
        unevaluated += [r for r in raised if r not in unevaluated]
        result = ev.settle_counts(result, rows=len(work), counts=counts, missing=found.missing)

    bad = codes != 0
    quarantined = rows_where(work, bad)
    quarantined.index = original_index[bad]
    for column in (DEFECT, RAW):  # always there, so that every chunk's quarantine has the same columns
        values = marks[column][bad].to_numpy(dtype=object) if column in marks else None
        quarantined[column] = pd.Series(values, index=quarantined.index, dtype="str")
    quarantined[RULES_COLUMN] = pd.Series(_rule_lists(codes[bad], row_rules), index=quarantined.index, dtype="str")
    valid = rows_where(work, ~bad)
    valid.index = original_index[~bad]
    return RowCheck(len(work), valid, quarantined, counts, record, unevaluated, result,
                    normalise_seconds=normalise_seconds, missing=found.missing, disputed=disputed)


def rows_where(frame: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    """The frame's rows where ``keep`` is True, a new frame (a RangeIndex): pandas' own boolean indexing but
    Arrow text columns taken by Arrow itself (pandas takes them several times slower), side by side, the
    rows' positions found once for all of them. Every row kept: the frame's own columns, not copied."""
    if not len(frame.columns):
        return frame[keep].reset_index(drop=True)
    if keep.all():
        return frame.reset_index(drop=True)  # a new frame of the same columns (copy-on-write: never changed)
    positions = pa.array(np.flatnonzero(keep))

    def rows(column: pd.Series) -> pd.Series:
        if isinstance(column.dtype, pd.StringDtype) and column.dtype.storage == "pyarrow":
            return pd.Series(pc.take(pa.array(column.array), positions), dtype=column.dtype)
        return column[keep].reset_index(drop=True)

    kept = thread_map(rows, [frame[name] for name in frame.columns])
    return pd.DataFrame(dict(zip(frame.columns, kept, strict=True)), columns=frame.columns)


def key_unique_bits(contract: Contract, bit: dict[str, np.int64]) -> np.int64:
    """The bits of the ``unique`` rules of the record key: a key conflict breaks them by definition,
    and says so once, as ``key_conflict``."""
    key_unique = np.int64(0)
    for rule in contract_rules(contract).row_rules:
        if rule.kind == "unique" and set(rule.columns) <= set(contract.key):
            key_unique |= bit[rule.id]
    return key_unique


def structural_codes(codes: np.ndarray, defects: pd.Series | None, bit: dict[str, np.int64],
                key_unique: np.int64) -> np.ndarray:
    """The rows' rule bits with the transport's structural defects added: a malformed row broke
    ``row_shape`` and nothing else (its columns were never read, so no other rule can speak of it);
    a row of a key conflict broke ``key_conflict`` besides whatever else it broke — but not the key's
    ``unique`` rule (``key_unique``: that is what the conflict is, and a streamed batch, checked chunk by
    chunk, would not see it when the two rows fall in different chunks)."""
    if defects is None:
        return codes
    marked = defects.notna().to_numpy()
    if not marked.any():
        return codes
    rule = ev.defect_rules(defects)
    shape = marked & (rule == ROW_SHAPE)
    conflict = marked & (rule == KEY_CONFLICT)
    unknown = marked & ~shape & ~conflict
    if unknown.any():
        raise ValueError(f"{int(unknown.sum())} rows carry a structural defect no rule knows")
    codes = codes.copy()
    codes[shape] = bit[ROW_SHAPE]
    codes[conflict] = (codes[conflict] & ~key_unique) | bit[KEY_CONFLICT]
    return codes


def too_many_failed(rules: ContractRules, failed: int, rows: int) -> str | None:
    """Why the batch is held back whole for its share of failing rows (the contract's policy), or None."""
    failed_percent = 100.0 * failed / rows if rows else 0.0
    if failed_percent > rules.policy.reject_above_failed_percent and failed >= rules.policy.min_failed_rows:
        return (f"{failed_percent:.1f} % of rows ({failed} of {rows}) failed, above the "
                f"contract's {rules.policy.reject_above_failed_percent:g} %")
    return None


def _rule_lists(codes: np.ndarray, rule_ids: list[str]) -> pa.Array:
    """Each failing row's rule ids joined by ';', from its bit mask (one string per distinct mask), as Arrow text."""
    if len(codes) == 0:
        return pa.array([], type=pa.large_string())
    distinct, inverse = np.unique(codes, return_inverse=True)
    labels = pa.array([RULE_SEPARATOR.join(r for i, r in enumerate(rule_ids) if int(code) >> i & 1)
                       for code in distinct], type=pa.large_string())
    return labels.take(pa.array(inverse.astype(np.int64)))


def check_report(contract: Contract, rules: ContractRules, *, rows: int, valid: int, quarantined: int,
                 counts: dict[str, int], record: NormalisationRecord, rejected: bool, reason: str | None,
                 seconds: float, schema: bool = False) -> dict[str, Any]:
    """A check's report: counts and percentages per rule, the verdict, the policy — no values."""
    return {
        "feed": contract.feed,
        "contract_version": contract.version,
        "rows": rows,
        "valid": valid,
        "quarantined": quarantined,
        "rejected": rejected,
        "reject_reason": reason,
        "schema_break": schema,
        "policy": {"reject_on_schema_break": rules.policy.reject_on_schema_break,
                   "reject_above_failed_percent": rules.policy.reject_above_failed_percent,
                   "min_failed_rows": rules.policy.min_failed_rows},
        "rules": [
            {"rule": r.id, "kind": r.kind, "scope": r.scope, "columns": list(r.columns), "description": r.description,
             "failed": counts.get(r.id, 0),
             "percent": round(100.0 * counts.get(r.id, 0) / rows, 4) if rows and r.scope == "row" else None}
            for r in rules.rules
        ] if not schema else [],
        "normalisation": record.as_dict(),
        "seconds": round(seconds, 3),
    }
