"""Great Expectations validates every batch's results: the split's evidence, GX's verdict, Data Docs' counts.

The row-level split is computed by the compiled checks (:mod:`contracts.engine`); Great Expectations,
the contract's engine of record, then validates each batch's results once (issue 21):

- **the evidence**: the batch's failing rows (every one up to :data:`FAILED_CAP`; beyond it, the first
  :data:`EVERY_PATTERN` rows of each distinct set of broken rules and an even sample of the rest) and a
  random sample of the rows that passed (:data:`SAMPLE_VALID` per chunk; a frame of at most
  :data:`WHOLE_BELOW` rows is its own evidence, whole);
- **GX's verdict on it** must be the split's, row for row and rule for rule. Where the two disagree the
  batch is held back whole (``disputed``), as for a rule GX could not evaluate: a batch is never
  delivered on a check its engine of record did not confirm. (When the failing rows were sampled, the
  ``unique`` rules are not compared: a row's duplicates may have been left out of the sample.)
- **Data Docs** show GX's result with the whole batch's counts (:func:`settle_counts`): rows, failures
  and missing values per expectation from the split, percentages recomputed.

Rows of a malformed line (``row_shape``) are not evidence: their columns were never read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from contracts import Contract
from contracts.rules import ROW_SHAPE, contract_rules
from fundx.core.columns import DEFECT, RULE_SEPARATOR, RULES_COLUMN

#: rows that passed, sampled per chunk (or per batch checked whole) for GX to confirm
SAMPLE_VALID = 1_000
#: a frame this small is GX's evidence whole
WHOLE_BELOW = 10_000
#: failing rows GX confirms per batch before it samples them
FAILED_CAP = 50_000
#: when sampling, rows kept of each distinct set of broken rules
EVERY_PATTERN = 50


@dataclass
class Evidence:
    """Rows for GX to judge (the contract's columns, normalised), the split's codes for them, their marks."""

    frame: pd.DataFrame
    codes: np.ndarray
    defects: pd.Series | None
    sampled: bool = False


def gx_raised(item: Any) -> bool:
    """Whether GX could not evaluate an expectation. GX 1.x says so either at the top of the result's
    ``exception_info`` or, when a metric failed, under each metric's id: both count."""
    info = item.exception_info or {}
    if info.get("raised_exception"):
        return True
    return any(isinstance(v, dict) and v.get("raised_exception") for v in info.values())


def valid_sample(valid: pd.DataFrame, seed: int, size: int = SAMPLE_VALID) -> pd.DataFrame:
    """A reproducible random sample of the rows that passed (all of them when they are few)."""
    if len(valid) <= size:
        return valid
    chosen = np.sort(np.random.default_rng(seed).choice(len(valid), size, replace=False))
    return valid.iloc[chosen]


def codes_of(rules_text: pd.Series, row_ids: Sequence[str]) -> np.ndarray:
    """The rule bits of failing rows from their ``_rules`` text (``a;b``)."""
    values = rules_text.to_numpy(dtype=object)
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    distinct, inverse = np.unique(values.astype(str), return_inverse=True)
    index = {rule_id: i for i, rule_id in enumerate(row_ids)}
    mapped = np.array([sum(1 << index[r] for r in str(text).split(RULE_SEPARATOR) if r) for text in distinct],
                      dtype=np.int64)
    return mapped[inverse]


def gather(contract: Contract, pieces: Iterable[tuple[pd.DataFrame | None, pd.DataFrame | None]], *,
           failed_total: int) -> Evidence:
    """The evidence of a batch from its pieces, one per chunk, read one at a time: the chunk's failing rows
    (with ``_rules`` and ``_defect``) and its sample of valid rows. When the batch has more than
    :data:`FAILED_CAP` failing rows, each chunk's are sampled as they come (memory stays bounded)."""
    row_ids = [r.id for r in contract_rules(contract).row_rules]
    names = list(contract.names)
    sampled = failed_total > FAILED_CAP
    frames, codes, defects = [], [], []
    for k, (failed, valid) in enumerate(pieces):
        if failed is not None and len(failed):
            failed = failed[_defect_rule(failed) != ROW_SHAPE]
            if sampled:
                failed = _failed_sample(failed, seed=k, share=FAILED_CAP * len(failed) // failed_total)
            frames.append(failed[names])
            codes.append(codes_of(failed[RULES_COLUMN], row_ids))
            defects.append(failed[DEFECT] if DEFECT in failed.columns
                           else pd.Series(None, index=failed.index, dtype="str"))
        if valid is not None and len(valid):
            frames.append(valid[names])
            codes.append(np.zeros(len(valid), dtype=np.int64))
            defects.append(pd.Series(None, index=valid.index, dtype="str"))
    if not frames:
        empty = pd.DataFrame({n: pd.Series(dtype="str") for n in names})
        return Evidence(empty, np.zeros(0, dtype=np.int64), None)
    frame = pd.concat(frames, ignore_index=True)
    marks = pd.concat(defects, ignore_index=True).astype("str")
    return Evidence(frame, np.concatenate(codes), marks, sampled)


def of_frame(contract: Contract, work: pd.DataFrame, codes: np.ndarray, defects: pd.Series | None,
             seed: int = 0) -> Evidence:
    """The evidence of one frame checked whole (RangeIndex): all of it when small, else its failing rows
    and a sample of the rest."""
    keep = np.ones(len(work), dtype=bool)
    if defects is not None:
        keep &= defect_rules(defects) != ROW_SHAPE
    if len(work) > WHOLE_BELOW:
        passed = np.flatnonzero(codes == 0)
        chosen = np.zeros(len(work), dtype=bool)
        chosen[codes != 0] = True
        if len(passed) > SAMPLE_VALID:
            passed = np.random.default_rng(seed).choice(passed, SAMPLE_VALID, replace=False)
        chosen[passed] = True
        failing = np.flatnonzero(codes != 0)
        sampled = len(failing) > FAILED_CAP
        if sampled:
            codes_failing = pd.Series(codes[failing])
            first = codes_failing.groupby(codes_failing.to_numpy()).cumcount().to_numpy() < EVERY_PATTERN
            rest = np.random.default_rng(seed).random(len(failing)) < FAILED_CAP / len(failing)
            chosen[failing[~(first | rest)]] = False
        keep &= chosen
    else:
        sampled = False
    rows = np.flatnonzero(keep)
    frame = work.iloc[rows].reset_index(drop=True)
    marks = defects.iloc[rows].reset_index(drop=True) if defects is not None else None
    return Evidence(frame, codes[rows], marks, sampled)


def confirm(contract: Contract, evidence: Evidence, *, today: date,
            row_count: tuple[int, int | None] = (0, None)) -> tuple[Any, dict[str, int], list[str]]:
    """GX's validation of the evidence: its result (for Data Docs), the rows per rule where GX and the
    split disagree, and the rules GX could not evaluate."""
    from contracts.validate import gx_validate, key_unique_bits, structural_codes

    rules = contract_rules(contract)
    row_ids = [r.id for r in rules.row_rules]
    bit = {rule_id: np.int64(1) << np.int64(i) for i, rule_id in enumerate(row_ids)}
    parameters: dict[str, Any] = {"today": today.isoformat(), "row_count_min": row_count[0],
                                  "row_count_max": row_count[1]}
    result = gx_validate(contract, evidence.frame, parameters)
    found = np.zeros(len(evidence.frame), dtype=np.int64)
    raised: list[str] = []
    for item in result.results:
        rule_id = (item.expectation_config.meta or {}).get("rule")
        if gx_raised(item):
            raised.append(str(rule_id))
        elif rule_id in bit:
            failed = np.asarray(item.result.get("unexpected_index_list") or [], dtype=np.int64)
            if len(failed):
                found[failed] |= bit[rule_id]
    found = structural_codes(found, evidence.defects, bit, key_unique_bits(contract, bit))
    disputed: dict[str, int] = {}
    for rule in rules.row_rules:
        if rule.structural or rule.id in raised or (evidence.sampled and rule.kind == "unique"):
            continue
        differ = int(np.count_nonzero((found & bit[rule.id]) != (evidence.codes & bit[rule.id])))
        if differ:
            disputed[rule.id] = differ
    return result, disputed, raised


def settle_counts(result: Any, *, rows: int, counts: Mapping[str, int], missing: Mapping[str, int | None]) -> Any:
    """GX's result over the evidence with the whole batch's counts: rows, failures per rule (the split's),
    missing values; percentages and successes recomputed (mostly = 1 unless the expectation says)."""
    for item in result.results:
        rule_id = str((item.expectation_config.meta or {}).get("rule"))
        kept = item.result or {}
        if rule_id not in counts or "element_count" not in kept:
            continue  # table level (the row count): contracts.validate.settle_result
        bad = int(counts[rule_id])
        gone = missing.get(rule_id)
        kept["element_count"] = rows
        kept["unexpected_count"] = bad
        if kept.get("missing_count") is not None and gone is not None:
            kept["missing_count"] = gone
        there = rows - int(kept.get("missing_count") or 0)
        share = 100.0 * bad / there if there else 0.0
        for name, value in (("unexpected_percent", share if kept.get("missing_count") is not None
                             else (100.0 * bad / rows if rows else 0.0)),
                            ("unexpected_percent_nonmissing", share),
                            ("unexpected_percent_total", 100.0 * bad / rows if rows else 0.0),
                            ("missing_percent", 100.0 * int(kept.get("missing_count") or 0) / rows if rows else 0.0)):
            if kept.get(name) is not None:
                kept[name] = value
        for name in ("unexpected_index_list", "partial_unexpected_list", "partial_unexpected_index_list",
                     "partial_unexpected_counts", "unexpected_list"):
            kept.pop(name, None)  # rows of the evidence, not of the batch
        item.result = kept
        if not gx_raised(item):
            mostly = float((item.expectation_config.kwargs or {}).get("mostly", 1.0))
            item.success = there == 0 or (there - bad) / there >= mostly
    return result


def defect_rules(defects: pd.Series) -> np.ndarray:
    """The structural rule each row's mark names (None where a row has none)."""
    if not defects.notna().any():
        return np.full(len(defects), None, dtype=object)
    return defects.astype("str").str.split(":", n=1).str[0].to_numpy(dtype=object, na_value=None)


def _defect_rule(failed: pd.DataFrame) -> np.ndarray:
    if DEFECT not in failed.columns:
        return np.full(len(failed), None, dtype=object)
    return defect_rules(failed[DEFECT])


def _failed_sample(failed: pd.DataFrame, *, seed: int, share: int) -> pd.DataFrame:
    """The first rows of each distinct set of broken rules, and an even random share of the rest."""
    pattern = failed[RULES_COLUMN].to_numpy(dtype=object)
    first = pd.Series(pattern).groupby(pattern).cumcount().to_numpy() < EVERY_PATTERN
    rest = np.random.default_rng(seed).random(len(failed)) < (share / len(failed) if len(failed) else 0)
    return failed[first | rest]

