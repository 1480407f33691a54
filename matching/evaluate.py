"""Suspects against the sandbox's planted truths: per rule, what was found, missed and wrongly flagged.

The sandbox writes its truths (``truth.json``, clean identity numbers) next to its agencies; this
turns each truth list into the subjects the rule's orders are about (tokens for people and
accounts, bill ids, credit codes) so a night's suspects can be scored without reading any raw
identity out of the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from matching import pseudonym

#: rule -> (truth list or lists, the field that names the subject, whether it is tokenised)
TRUTHS: dict[str, tuple[str | tuple[str, ...], str, bool]] = {
    # pensions still paid after death, and entries stopped late whose overpayment only the ledger shows
    "paid_after_death": (("dead_but_paid", "stopped_but_overpaid"), "id_number", True),
    "paid_in_custody": ("prisoners_paid", "id_number", True),
    "shared_account": ("shared_accounts", "bank_account", True),
    "duplicate_receipt": ("duplicate_receipts", "id_number", True),
    "unemployed_contributing": ("unemployed_contributing", "id_number", True),
    "frequent_visits": ("frequent_patients", "id_number", True),
    "bill_over_mean": ("overbilled", "bill_id", False),
    "deregistered_subsidised": ("subsidised_deregistered", "uscc", False),
}


@dataclass(frozen=True)
class Score:
    """One rule against its truth: counts, precision and recall (None when undefined)."""

    rule: str
    planted: int
    found: int
    true_positive: int

    @property
    def precision(self) -> float | None:
        return self.true_positive / self.found if self.found else None

    @property
    def recall(self) -> float | None:
        return self.true_positive / self.planted if self.planted else None


def planted_subjects(truths: dict[str, Any], key: bytes) -> dict[str, set[str]]:
    """rule -> the subjects its orders would name, from the generator's truths."""
    out: dict[str, set[str]] = {}
    for rule, (names, field, tokenised) in TRUTHS.items():
        lists = (names,) if isinstance(names, str) else names
        values = {str(t[field]) for name in lists for t in truths.get(name, [])}
        out[rule] = {pseudonym.token(key, v).hex().upper() for v in values} if tokenised else values
    return out


def score(suspects: Iterable[tuple[str, str]], truths: dict[str, Any], key: bytes) -> list[Score]:
    """Per rule: (rule, subject) pairs found against the planted subjects."""
    planted = planted_subjects(truths, key)
    found: dict[str, set[str]] = {rule: set() for rule in TRUTHS}
    for rule, subject in suspects:
        found.setdefault(rule, set()).add(subject)
    return [Score(rule, len(planted[rule]), len(found[rule]), len(found[rule] & planted[rule])) for rule in TRUTHS]
