"""The suite's vocabulary: the checks, when one does not apply, a check's Result, and the skips asked for."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.config import FeedConfig

#: a Result's status
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
#: the checks, in the order they run
CHECKS: tuple[str, ...] = (
    "connection", "paging", "incremental", "rerun", "contract", "secrets", "timeouts", "retries",
)
#: (check, transport) -> why the check does not apply
NOT_APPLICABLE: dict[tuple[str, str], str] = {
    ("paging", "filedrop"): "a file drop has no pages: each file is read whole (incremental checks the files)",
    ("paging", "database"): "a database relation is read with one ordered query, not in pages the agency serves",
    ("secrets", "filedrop"): "a file drop takes no credentials",
    ("timeouts", "filedrop"): "a file drop reads a local folder: there is no connection to time out",
}


@dataclass(frozen=True)
class Result:
    """The outcome of one check for one feed."""

    feed: str
    check: str
    status: str  # passed | failed | skipped
    message: str
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.check

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    def as_dict(self) -> dict[str, Any]:
        return {"feed": self.feed, "check": self.check, "status": self.status, "message": self.message,
                "seconds": round(self.seconds, 3)}


class CheckFailed(Exception):
    """Raised inside a check: the check failed, for the reason given."""


class CheckSkipped(Exception):
    """Raised inside a check: the check does not apply, for the reason given."""


def suite_passed(results: Iterable[Result]) -> bool:
    """True when no check failed (skipped ones do not count against)."""
    return not any(r.failed for r in results)


def check_skip(skip: Mapping[str, str] | None) -> dict[str, str]:
    """``skip`` checked: known check names, each with a written reason; ValueError naming the problem."""
    checked: dict[str, str] = {}
    for name, reason in (skip or {}).items():
        if name not in CHECKS:
            raise ValueError(f"cannot skip unknown check {name!r} (checks: {', '.join(CHECKS)})")
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"skipping check {name!r} needs a written reason, e.g. skip={{{name!r}: 'why'}}")
        checked[name] = reason.strip()
    return checked


def config_skip(config: FeedConfig) -> dict[str, str]:
    """The checks the feed's config skips (``conformance: skip:``), with their reasons; ValueError naming
    the config for an unknown check."""
    try:
        return check_skip(config.conformance.skip if config.conformance is not None else None)
    except ValueError as exc:
        raise ValueError(f"{config.feed}: conformance.skip: {exc}") from None
