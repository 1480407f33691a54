"""The release gate: a feed's contract against its last released copy (``fundx contract release``).

``contracts/released/<feed>.odcs.yaml`` is the last released copy of each live feed's contract; the
CI test (tests/contracts/test_contract_released.py) diffs every contract against it
(:func:`check_release`, with :mod:`contracts.diff`), and :func:`release` copies a contract there only
when the gate allows it: no breaking change without a new major version, no ``reviewNeeded`` mark left.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts import CONTRACTS_DIR, Contract, contract_path, display_path
from contracts.diff import CONTRACT, ContractDiff, ContractReadError, diff_files, read_contract
from fundx.core.errors import ConfigurationError, FundxError
from fundx.core.settings import get_settings

RELEASED_DIR = CONTRACTS_DIR / "released"


class ReleaseRefused(FundxError):
    """The current contract may not be released (a breaking change without a new major version, review marks)."""

    default_action = "raise the major version for a breaking change, or make the change compatible"


def released_path(feed: str, released_dir: Path | None = None) -> Path:
    """Where the last released copy of ``feed``'s contract lives."""
    return (released_dir or _released_dir()) / f"{feed}.odcs.yaml"


def _released_dir() -> Path:
    """contracts/released, or released/ inside FUNDX_CONTRACTS_DIR when that is set."""
    moved = get_settings().contracts_dir
    return moved / "released" if moved is not None else RELEASED_DIR


@dataclass(frozen=True)
class ReleaseCheck:
    """A feed's current contract against its last released copy (``diff`` is None: never released)."""

    feed: str
    current: Path
    released: Path
    diff: ContractDiff | None
    review: tuple[str, ...] = field(default=())  # columns (or "(contract)") still marked reviewNeeded

    @property
    def is_new(self) -> bool:
        """No released copy yet: a new feed."""
        return self.diff is None

    @property
    def allowed(self) -> bool:
        """Whether the gate lets the current contract stand (new feeds: yes)."""
        return self.diff is None or self.diff.allowed

    @property
    def identical(self) -> bool:
        """The current contract is byte for byte its released copy."""
        return self.released.is_file() and self.current.read_bytes() == self.released.read_bytes()


def _review_marks(contract: Contract) -> tuple[str, ...]:
    raw = contract.raw
    marked = [CONTRACT] if _truthy(_custom_of(raw.customProperties).get("reviewNeeded")) else []
    for prop in contract.schema_object.properties or []:
        if prop.name and _truthy(_custom_of(prop.customProperties).get("reviewNeeded")):
            marked.append(prop.name)
    return tuple(marked)


def _custom_of(items: Any) -> dict[str, Any]:
    return {c.property: c.value for c in items or [] if c.property}


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "yes", "1"))


def check_release(feed: str, *, contracts_dir: Path | None = None, released_dir: Path | None = None) -> ReleaseCheck:
    """The gate for one feed: its contract diffed against its released copy (none: a new feed, no check)."""
    current = contracts_dir / f"{feed}.odcs.yaml" if contracts_dir else contract_path(feed)
    released = released_path(feed, released_dir)
    contract = read_contract(current)
    if contract.feed != feed:
        raise ContractReadError(f"{display_path(current)}: name: must be the feed's name {feed!r}")
    review = _review_marks(contract)
    if not released.is_file():
        return ReleaseCheck(feed, current, released, None, review)
    return ReleaseCheck(feed, current, released, diff_files(released, current), review)


def release(feed: str, *, contracts_dir: Path | None = None, released_dir: Path | None = None) -> ReleaseCheck:
    """Copy ``feed``'s current contract to its released copy, when the gate allows it.

    Refused (:class:`ReleaseRefused`) for breaking changes without a new major version and for a
    contract still marked ``reviewNeeded`` (a draft of ``fundx contract infer``). A contract whose
    rules do not compile is a :class:`ContractReadError`.
    """
    from contracts.rules import contract_rules

    check = check_release(feed, contracts_dir=contracts_dir, released_dir=released_dir)
    try:
        contract_rules(read_contract(check.current))
    except ConfigurationError as exc:
        raise ContractReadError(str(exc)) from None
    where = display_path(check.current)
    if check.review:
        raise ReleaseRefused(f"{where}: still marked reviewNeeded: {', '.join(check.review)}", feed=feed,
                             action="review each marked item (see the comment at the top), remove its reviewNeeded "
                                    "mark, and release again")
    if check.diff is not None and not check.diff.allowed:
        listed = "; ".join(f"{c.change} {c.field}" for c in check.diff.breaking)
        raise ReleaseRefused(f"{where}: {check.diff.verdict} [{listed}]", feed=feed,
                             action=f"set version: {check.diff.next_major} in {where} if the break is agreed with "
                                    "the agency and the stages, or make the changes compatible")
    if not check.identical:
        check.released.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(check.current, check.released)
    return check
