"""Suspects against the sandbox's planted truths: per rule, what was found, missed and wrongly flagged.

The sandbox writes its truths (``truth.json``, clean identity numbers) next to its agencies; this
turns each truth list into the subjects the rule's orders are about (tokens for people and
accounts, bill ids, credit codes) so a night's suspects can be scored without reading any raw
identity out of the store.

The truths also hold look-alikes (``truths["lookalikes"]``: a list of ``{"rule", "kind", <the rule's
subject field>: value, ...}``): cases that resemble a rule's but must *not* be flagged (spouses on one
account, a death stopped in time, a prisoner released before the paid months). A rule that flags one
is wrong however well it does on its planted cases; :attr:`Score.lookalikes_flagged` counts them.
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
    # in custody now and paid (the roll), and paid during a past custody (released: the ledger)
    "paid_in_custody": (("prisoners_paid", "released_paid"), "id_number", True),
    "contributions_in_custody": ("contributed_in_custody", "id_number", True),
    "retired_in_custody": ("retired_in_custody", "id_number", True),
    # accounts of several people (the roll's groups, the ledger's pairs) and accounts taken over after a death
    # or an admission to custody
    "shared_account": (("shared_accounts", "shared_accounts_history", "accounts_taken_over"), "bank_account", True),
    # active double entries, and double entries of the ledger's months stopped since
    "duplicate_receipt": (("duplicate_receipts", "duplicate_receipts_ended"), "id_number", True),
    "unemployed_contributing": (("unemployed_contributing", "unemployed_contributing_history"), "id_number", True),
    # bill review: visits in a calendar month and across a month boundary; bills over the mean, the costly
    # hospital's too; the hospital itself; bills after death or in custody; stays in two hospitals at once
    "frequent_visits": (("frequent_patients", "frequent_across_months"), "id_number", True),
    "bill_over_mean": (("overbilled", "overbilled_at_hospital"), "bill_id", False),
    "deregistered_subsidised": ("subsidised_deregistered", "uscc", False),
    "hospital_over_mean": ("costly_hospitals", "hospital_code", False),
    "bill_after_death": ("billed_after_death", "id_number", True),
    "bill_in_custody": ("billed_in_custody", "id_number", True),
    "overlapping_stays": ("overlapping_stays", "id_number", True),
    "deregistered_contributing": ("deregistered_contributing", "uscc", False),
    "contributions_without_wage": ("no_wage_declared", "id_number", True),
}


@dataclass(frozen=True)
class Score:
    """One rule against its truth: counts, precision and recall (None when undefined)."""

    rule: str
    planted: int
    found: int
    true_positive: int
    lookalikes: int = 0
    lookalikes_flagged: int = 0

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


def lookalike_subjects(truths: dict[str, Any], key: bytes) -> dict[str, set[str]]:
    """rule -> the subjects of the look-alikes planted for it (which its orders must not name)."""
    out: dict[str, set[str]] = {rule: set() for rule in TRUTHS}
    for case in truths.get("lookalikes", []):
        rule = case["rule"]
        if rule not in TRUTHS:
            raise KeyError(f"a look-alike names rule {rule!r}, which evaluate.TRUTHS does not know")
        _, field, tokenised = TRUTHS[rule]
        value = str(case[field])
        out[rule].add(pseudonym.token(key, value).hex().upper() if tokenised else value)
    return out


def score(suspects: Iterable[tuple[str, str]], truths: dict[str, Any], key: bytes) -> list[Score]:
    """Per rule: (rule, subject) pairs found against the planted subjects and the planted look-alikes."""
    planted = planted_subjects(truths, key)
    alike = lookalike_subjects(truths, key)
    found: dict[str, set[str]] = {rule: set() for rule in TRUTHS}
    for rule, subject in suspects:
        found.setdefault(rule, set()).add(subject)
    return [Score(rule, len(planted[rule]), len(found[rule]), len(found[rule] & planted[rule]), len(alike[rule]),
                  len(found[rule] & alike[rule])) for rule in TRUTHS]
