"""How long a feed's data is kept, read from its contract's ``slaProperties`` (ODCS v3).

ODCS v3 names the period data is kept ``retention`` (``value`` + ``unit``, optional ``element``); fundx
reads it and three properties of its own beside it, one per kind of data the exchange keeps:

========================  ===========================================================================
``retention``             (ODCS) the matching stage's store rows of the feed (pseudonymised evidence),
                          counted from the batch's receipt at the stage. Rows an open inspection order
                          points at are kept until the order closes (matching/retention.py).
``sealedRetention``       (fundx) the feed's sealed batches — left in a stage's inbox, or kept sealed in
                          the stage's ``received/`` — counted from the stage's acknowledgement. A batch
                          no stage has acknowledged is never removed.
``quarantineRetention``   (fundx) the sealed quarantined rows of a batch, counted from the decision on
                          its last open row. A batch with a row still undecided is never removed.
``answerRetention``       (fundx) the stages' signed answers (files and ledger rows) and the ledger's
                          per-rule failure counts, counted from when they were recorded.
========================  ===========================================================================

``unit``: ``d`` (days), ``w`` (weeks), ``m`` (calendar months) or ``y`` (calendar years), as the ODCS
examples write them (``day``/``days``, ``month``/``months``, ``year``/``years``/``yr`` too). A property
that is absent means **kept**: nothing of that kind is purged for the feed, and the purge's report
says so. A malformed one is a :class:`~fundx.core.errors.ConfigurationError` naming the file and key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from contracts import Contract, contract_path, display_path, load_contract
from fundx.core.errors import ConfigurationError

#: the kinds of data kept, each with the slaProperty that says for how long
KINDS: dict[str, str] = {
    "store": "retention",
    "sealed": "sealedRetention",
    "quarantine": "quarantineRetention",
    "answers": "answerRetention",
}
_UNITS = {"d": "d", "day": "d", "days": "d", "w": "w", "week": "w", "weeks": "w",
          "m": "m", "mo": "m", "month": "m", "months": "m", "y": "y", "yr": "y", "year": "y", "years": "y"}


@dataclass(frozen=True)
class Period:
    """A retention period: ``value`` of ``unit`` (d, w, m, y)."""

    value: int
    unit: str

    def __str__(self) -> str:
        word = dict(d="day", w="week", m="month", y="year")[self.unit]
        return f"{self.value} {word}{'' if self.value == 1 else 's'}"

    def cutoff(self, now: datetime) -> datetime:
        """The moment before which data of this period is past its retention, at ``now``."""
        if self.unit in ("d", "w"):
            return now - timedelta(days=self.value * (7 if self.unit == "w" else 1))
        months = self.value * (12 if self.unit == "y" else 1)
        total = now.year * 12 + (now.month - 1) - months
        year, month = divmod(total, 12)
        day = now.day
        while True:  # the same day of the month, or the month's last day (31 March - 1 month = 28/29 February)
            try:
                return now.replace(year=year, month=month + 1, day=day)
            except ValueError:
                day -= 1


@dataclass(frozen=True)
class Retention:
    """A feed's retention per kind of data; None: kept (the contract states no period)."""

    feed: str
    periods: dict[str, Period | None]

    def of(self, kind: str) -> Period | None:
        return self.periods.get(kind)


def retention_of(contract: Contract) -> Retention:
    """The contract's retention periods; errors name the file and the key."""
    where = contract.source or display_path(contract_path(contract.feed))
    by_name: dict[str, tuple[int, Any]] = {}
    for i, item in enumerate(contract.raw.slaProperties or []):
        name = item.property
        if name is not None and name in KINDS.values():
            if name in by_name:
                raise _fail(where, f"slaProperties.{i}.property",
                            f"{name} is listed twice (first as slaProperties.{by_name[name][0]})")
            by_name[name] = (i, item)
    periods: dict[str, Period | None] = {}
    for kind, wanted in KINDS.items():
        found = by_name.get(wanted)
        periods[kind] = None if found is None else _period(where, *found)
    return Retention(contract.feed, periods)


def feed_retention(feed: str) -> Retention:
    """The retention of ``feed``, from its contract."""
    return retention_of(load_contract(feed))


def _period(where: str, index: int, item: Any) -> Period:
    value = item.value
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(where, f"slaProperties.{index}.value", f"{item.property} must be a positive whole number")
    unit = _UNITS.get(str(item.unit or "").strip().lower())
    if unit is None:
        raise _fail(where, f"slaProperties.{index}.unit",
                    f"{item.property} needs a unit: d, w, m or y (got {item.unit!r})")
    return Period(value, unit)


def _fail(where: str, key: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"{where}: {key}: {message}",
                              action=f"fix {key} in {where} (ODCS v3 slaProperties; see contracts/retention.py)")
