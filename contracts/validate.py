"""Checking one batch against its contract: normalise, validate with GX, split valid from quarantined.

    checked = check("police.deaths", frame, history=[...], today=date(2026, 11, 23))
    checked.valid          # rows that go on to be sealed
    checked.quarantined    # rows for the stewards, with `_rules` naming every rule each broke
    checked.rejected       # True: hold the whole batch back (checked.reject_reason says why)
    checked.report         # counts and percentages per rule, no values: safe for logs and artifacts

One Great Expectations context serves the whole process (ephemeral, progress bars off); import and
first use cost a few seconds, so validate every feed of a night in one process. The row split uses
the fast path measured in docs/libraries.md: result format COMPLETE without ``unexpected_index_column_names``,
no index query, no unexpected values, and the frame's RangeIndex positions from
``unexpected_index_list``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from contracts import Contract, load_contract
from contracts.checks import shared_work
from contracts.compile import compile_suite
from contracts.normalise import NormalisationRecord, normalise
from contracts.rules import KEY_CONFLICT, ROW_SHAPE, ContractRules, Rule, contract_rules
from contracts.rules import row_count_bounds as contract_rules_bounds
from fundx.digest import DEFECT, RAW, RESERVED_COLUMNS
from fundx.timeutil import SHANGHAI

RULES_COLUMN = "_rules"
RULE_SEPARATOR = ";"

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
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        with shared_work():
            return batch.validate(suite, result_format=RESULT_FORMAT, expectation_parameters=parameters)


def gx_context() -> Any:
    """The process's Great Expectations context (ephemeral)."""
    return _Gx.get().context


@lru_cache(maxsize=64)
def _suite(contract: Contract) -> Any:
    return compile_suite(contract)


def row_count_bounds(rule: Rule, history: Sequence[int] | None) -> tuple[int, int | None]:
    """The rows a batch may have given the trailing history of its feed (too little history: any number)."""
    return contract_rules_bounds(rule.params, history) or (0, None)


def check(feed_or_contract: str | Contract, frame: pd.DataFrame, *, history: Sequence[int] | None = None,
          today: date | None = None) -> Checked:
    """Check a batch against its feed's contract; see the module's docstring.

    ``history``: row counts of the feed's previous batches, oldest first (for the row-count rule).
    ``today``: the day dates may not be after (default: today in Asia/Shanghai).
    Raises ConfigurationError when the contract itself is wrong; a schema break is a rejection.
    """
    started = time.perf_counter()
    contract = feed_or_contract if isinstance(feed_or_contract, Contract) else load_contract(feed_or_contract)
    rules = contract_rules(contract)
    today = today or datetime.now(SHANGHAI).date()
    record = NormalisationRecord()

    missing = [c for c in contract.required if c not in frame.columns]
    unexpected = [str(c) for c in frame.columns if c not in contract.by_name and c not in RESERVED_COLUMNS]
    if (missing or unexpected) and rules.policy.reject_on_schema_break:
        parts = []
        if missing:
            parts.append("missing required column(s) " + ", ".join(missing))
        if unexpected:
            parts.append("column(s) not in the contract " + ", ".join(unexpected))
        reason = f"schema break: {'; '.join(parts)}"
        return _finish(contract, rules, frame, frame.iloc[0:0], {}, record, True, reason, started, None, schema=True)

    # the transport's marks of structural defects (a malformed row, a key conflict): not the contract's columns
    marks = {c: frame[c].reset_index(drop=True) for c in RESERVED_COLUMNS if c in frame.columns}
    work = frame.copy(deep=False)
    for name in contract.names:
        if name not in work.columns:  # an optional column the agency left out: all missing
            work[name] = pd.Series(np.nan, index=work.index, dtype="str")
    work = work[list(contract.names)]
    normalising = time.perf_counter()
    work, record = normalise(contract, work)
    normalise_seconds = time.perf_counter() - normalising
    original_index = work.index
    work = work.reset_index(drop=True)

    parameters: dict[str, Any] = {"today": today.isoformat(), "row_count_min": 0, "row_count_max": None}
    for rule in rules.batch_rules:
        if rule.kind == "row_count":
            parameters["row_count_min"], parameters["row_count_max"] = row_count_bounds(rule, history)
    result = _Gx.get().validate(work, _suite(contract), parameters)

    by_id = {r.id: r for r in rules.rules}
    row_rules = [r.id for r in rules.row_rules]
    bit = {rule_id: np.int64(1) << np.int64(i) for i, rule_id in enumerate(row_rules)}
    if len(row_rules) > 62:
        raise ValueError("more than 62 row rules in one contract")
    codes = np.zeros(len(work), dtype=np.int64)
    counts = dict.fromkeys(by_id, 0)
    reasons: list[str] = []
    unevaluated: list[str] = []
    for item in result.results:
        rule_id = (item.expectation_config.meta or {}).get("rule")
        if rule_id not in by_id:
            continue
        if item.exception_info and item.exception_info.get("raised_exception"):
            # never trust a batch a rule could not look at; the exception text may quote values
            reasons.append(f"rule {rule_id} could not be evaluated")
            unevaluated.append(rule_id)
            continue
        rule = by_id[rule_id]
        if rule.scope == "batch":
            if not item.success:
                counts[rule_id] = 1
                observed = item.result.get("observed_value")
                reasons.append(f"rule {rule_id} failed: {observed} rows, expected "
                               f"{parameters['row_count_min']}..{parameters['row_count_max']}")
            continue
        failed = np.asarray(item.result.get("unexpected_index_list") or [], dtype=np.int64)
        if len(failed):
            codes[failed] |= bit[rule_id]
    key_unique = np.int64(0)  # a conflict breaks the key's uniqueness by definition: said once, as key_conflict
    for rule in rules.row_rules:
        if rule.kind == "unique" and set(rule.columns) <= set(contract.key):
            key_unique |= bit[rule.id]
    codes = _structural(codes, marks.get(DEFECT), bit, key_unique)
    for rule_id in row_rules:
        counts[rule_id] = int(np.count_nonzero(codes & bit[rule_id]))

    bad = codes != 0
    quarantined = work[bad].copy()
    quarantined.index = original_index[bad]
    for column in (DEFECT, RAW):  # always there, so that every chunk's quarantine has the same columns
        values = marks[column][bad].to_numpy(dtype=object) if column in marks else None
        quarantined[column] = pd.Series(values, index=quarantined.index, dtype="str")
    quarantined[RULES_COLUMN] = pd.Series(_rule_lists(codes[bad], row_rules), index=quarantined.index, dtype="str")
    valid = work[~bad]
    valid.index = original_index[~bad]
    if too_many := too_many_failed(rules, int(bad.sum()), len(work)):
        reasons.append(too_many)
    why = "; ".join(reasons) if reasons else None
    checked = _finish(contract, rules, valid, quarantined, counts, record, bool(reasons), why, started,
                      result, rows=len(work))
    checked.report["unevaluated"] = unevaluated
    checked.report["normalise_seconds"] = round(normalise_seconds, 3)
    return checked


def _structural(codes: np.ndarray, defects: pd.Series | None, bit: dict[str, np.int64],
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
    rule = defects.str.split(":", n=1).str[0].to_numpy(dtype=object, na_value=None)
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


def _rule_lists(codes: np.ndarray, rule_ids: list[str]) -> np.ndarray:
    """Each failing row's rule ids joined by ';', from its bit mask (one string per distinct mask)."""
    if len(codes) == 0:
        return np.empty(0, dtype=object)
    distinct, inverse = np.unique(codes, return_inverse=True)
    labels = np.array([RULE_SEPARATOR.join(r for i, r in enumerate(rule_ids) if int(code) >> i & 1)
                       for code in distinct], dtype=object)
    return labels[inverse]


def _finish(contract: Contract, rules: ContractRules, valid: pd.DataFrame, quarantined: pd.DataFrame,
            counts: dict[str, int], record: NormalisationRecord, rejected: bool, reason: str | None,
            started: float, result: Any, *, rows: int | None = None, schema: bool = False) -> Checked:
    rows = len(valid) + len(quarantined) if rows is None else rows
    if schema:
        valid = valid.iloc[0:0]
    report = check_report(contract, rules, rows=rows, valid=len(valid), quarantined=len(quarantined), counts=counts,
                          record=record, rejected=rejected, reason=reason, seconds=time.perf_counter() - started,
                          schema=schema)
    return Checked(contract.feed, valid, quarantined, rejected, reason, counts, record, report, result)


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
