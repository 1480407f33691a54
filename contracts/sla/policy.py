"""A feed's service levels, compiled from its contract's ``slaProperties`` (never written anywhere else).

The slaProperties read
======================

=====================  ==========================================================================
``frequency``          ``value: 1`` and ``unit`` ``d`` (every night), ``w`` or ``m``; ``scheduler:
                       cron`` with a ``schedule`` whose day fields say on which nights a delivery is
                       due (required for ``w`` and ``m``: ``"0 2 * * 2"`` = every Tuesday,
                       ``"0 2 6 * *"`` = the 6th). A daily schedule must fire every day.
``timeOfAvailability`` when the agency's data is available, Asia/Shanghai: ``"HH:MM"`` (quoted:
                       YAML 1.1 reads 6:00 unquoted as 360), or ``"DD"`` with ``unit: d`` for a
                       monthly feed ("by the 5th": in by the end of that day of the month).
``latency``            ``value`` + ``unit`` (``h``, ``d``, ``w``): the data of day D is in by
                       D + latency, D read from ``element`` (a column of the contract).
``errorRate``          the largest share of a batch's rows that may fail the contract (0.02 = 2 %;
                       ``unit: percent`` for 0..100), counted from the batch policy's
                       ``minFailedRows`` failing rows on. ``driver`` gives the severity.
``deliveryDeadline``   (fundx) ``"HH:MM"``: on a night a delivery is due, the night's batch must be
                       recorded delivered by then, local time on the night's date. It is after the
                       time of availability (daily feeds) and after the schedule's pull time; the
                       processing allowance is the difference. ``driver`` gives the severity of
                       ``late``, ``missing`` and ``failed``.
``eventLatency``       (fundx) ``value`` + ``unit``: the 90th percentile of the time from the business
                       event in ``element`` (death date, admission, settlement, deregistration) to
                       the row's arrival at the stage. ``driver`` gives the severity.
=====================  ==========================================================================

Severity: ``driver: regulatory`` -> ``critical``; ``operational`` and ``analytics`` -> ``warning``.
The row-count band (``short``/``long``) takes the ``severity`` of the contract's
``rowCountVsHistory`` quality rule: ``error`` -> ``critical``, ``warning``/``info`` -> ``warning``.
The night's own budget (``night_slow``) is ``warning`` unless the caller says otherwise. A missing
or malformed property is a :class:`~fundx.core.errors.ConfigurationError` naming the contract file and
the key (``contracts/police.deaths.odcs.yaml: slaProperties.5.value: ...``).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from contracts import Contract, contract_names, contract_path, display_path, load_contract
from contracts.rules import contract_rules, row_count_bounds
from contracts.sla.cron import check_cron, cron_day_matches, cron_field
from fundx.core.errors import ConfigurationError
from fundx.core.timeutil import SHANGHAI

Severity = Literal["warning", "critical"]

#: ODCS ``driver`` of an SLA property -> severity of its breaches
DRIVER_SEVERITY: dict[str, Severity] = {"regulatory": "critical", "operational": "warning", "analytics": "warning"}
#: ODCS ``severity`` of a quality rule -> severity of its breaches
QUALITY_SEVERITY: dict[str, Severity] = {"error": "critical", "critical": "critical", "warning": "warning",
                                         "info": "warning"}
#: the slaProperties every contract must have
REQUIRED = ("frequency", "timeOfAvailability", "latency", "errorRate", "deliveryDeadline", "eventLatency")
PERIODS = {"d": "day", "day": "day", "days": "day", "w": "week", "week": "week", "weeks": "week",
           "m": "month", "mo": "month", "month": "month", "months": "month"}
_DURATION_UNITS = {"h": timedelta(hours=1), "hour": timedelta(hours=1), "hours": timedelta(hours=1),
                   "d": timedelta(days=1), "day": timedelta(days=1), "days": timedelta(days=1),
                   "w": timedelta(weeks=1), "week": timedelta(weeks=1), "weeks": timedelta(weeks=1)}
_HHMM = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")
_DAY_OF_MONTH = re.compile(r"^(0?[1-9]|[12][0-9])$")  # a day of the month, 1..29


# --- the compiled service levels ---------------------------------------------------------------


@dataclass(frozen=True)
class RowCountBand:
    """The contract's ``rowCountVsHistory`` rule: rows within a factor of the trailing median."""

    rule: str  # the quality rule's id (``row_count``)
    nights: int
    min_nights: int
    min_ratio: float
    max_ratio: float

    def bounds(self, history: Sequence[int]) -> tuple[int, int] | None:
        """(lowest, highest) rows allowed after ``history`` (oldest first); None: too little history."""
        return row_count_bounds({"nights": self.nights, "min_nights": self.min_nights, "min_ratio": self.min_ratio,
                                 "max_ratio": self.max_ratio}, history)

    def median(self, history: Sequence[int]) -> float:
        return float(statistics.median([int(n) for n in history][-self.nights:]))


@dataclass(frozen=True)
class FeedSla:
    """A feed's service levels, compiled from its contract (never written anywhere else)."""

    feed: str
    source: str  # the contract file, as messages name it
    version: str
    #: ``day``, ``week`` or ``month``: how often a new delivery is due
    period: str
    #: the frequency's cron (its day fields say which nights are due); None: every night
    schedule: str | None
    #: the time of day the agency's data is available (``HH:MM``), or None for a day of the month
    available_time: time | None
    #: the day of the month by whose end a monthly feed's data is available, else None
    available_day: int | None
    #: the data of day D is in by D + latency (D read from ``latency_element``)
    latency: timedelta
    latency_element: str | None
    #: the largest share (0..1) of a batch's rows that may fail the contract
    error_rate: float
    #: local time on a due night by which the delivery must be recorded
    deadline: time
    #: p90 of business event -> arrival at the stage may not exceed this
    event_latency: timedelta
    #: the column holding the business event (``death_date``)
    event_element: str
    #: None when the contract has no rowCountVsHistory rule (then short/long are never judged)
    row_count: RowCountBand | None
    #: (rule, severity) for every feed rule
    severities: tuple[tuple[str, Severity], ...] = field(default=())
    #: the error rate counts from this many failing rows on (the contract's batchPolicy minFailedRows)
    min_failed_rows: int = 1

    def severity(self, rule: str) -> Severity:
        """The severity of a breach of ``rule`` for this feed."""
        return dict(self.severities)[rule]

    def due(self, night: date) -> bool:
        """Whether a new delivery of this feed is due on ``night``."""
        return self.schedule is None or cron_day_matches(self.schedule, night)

    def deadline_at(self, night: date) -> datetime:
        """The moment (Asia/Shanghai) by which ``night``'s delivery must be recorded."""
        return datetime.combine(night, self.deadline, tzinfo=SHANGHAI)

    @property
    def allowance(self) -> timedelta | None:
        """Processing time between availability and the deadline, for feeds available the same night."""
        if self.period != "day" or self.available_time is None:
            return None
        return datetime.combine(date.min, self.deadline) - datetime.combine(date.min, self.available_time)


def feed_sla(feed: str) -> FeedSla:
    """The service levels of ``feed``, compiled from ``contracts/<feed>.odcs.yaml`` (cached while the file
    is unchanged; FUNDX_CONTRACTS_DIR may point elsewhere)."""
    return _cached(feed, *_stamp(contract_path(feed)))


def _stamp(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return str(path), 0, 0  # load_contract says what is missing
    return str(path), st.st_mtime_ns, st.st_size


@lru_cache(maxsize=64)
def _cached(feed: str, path: str, mtime_ns: int, size: int) -> FeedSla:
    return compile_sla(load_contract(feed))


def _all() -> tuple[FeedSla, ...]:
    return tuple(feed_sla(feed) for feed in contract_names())


def all_slas() -> dict[str, FeedSla]:
    """Every feed's service levels, by feed (cached per contract file; a fresh dict each call)."""
    return {s.feed: s for s in _all()}


# --- compiling a contract's slaProperties ---------------------------------------------------------


class _Properties:
    """A contract's slaProperties by name (each with its index), and how to read one; errors name the
    file and the key."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.where = contract.source or display_path(contract_path(contract.feed))
        found: dict[str, tuple[int, Any]] = {}
        for i, item in enumerate(contract.raw.slaProperties or []):
            if not item.property:
                raise self.fail(f"slaProperties.{i}.property", "is required")
            if item.property in found and item.property in REQUIRED:
                raise self.fail(f"slaProperties.{i}.property", f"{item.property} is listed twice "
                                f"(first as slaProperties.{found[item.property][0]})")
            found.setdefault(item.property, (i, item))
        for name in REQUIRED:
            if name not in found:
                raise self.fail("slaProperties", f"has no {name} (needed by the SLA monitor; see contracts/sla/policy.py)")
        self.found = found
        self.obj = contract.schema_object
        self.columns = {c.name: c for c in contract.columns}

    def __getitem__(self, name: str) -> tuple[int, Any]:
        """(index, item) of the property ``name``."""
        return self.found[name]

    def fail(self, key: str, message: str) -> ConfigurationError:
        """The error for ``key`` of this contract."""
        return ConfigurationError(f"{self.where}: {key}: {message}", feed=None,
                                  action=f"fix {key} in {self.where} (ODCS v3 slaProperties)")

    def column(self, key: str, element: str | None, *, required: bool, dated: bool = False) -> str | None:
        """The column an ``element`` (``object.column`` or ``column``) names; None when there is none."""
        if not element:
            if required:
                raise self.fail(key, "is required: the column to measure (object.column)")
            return None
        text = str(element).strip()
        name = text
        if "." in text:
            prefix, name = text.rsplit(".", 1)
            if prefix not in (self.obj.name, self.obj.physicalName):
                raise self.fail(key, f"{text!r} names no object of the contract (expected {self.obj.name}.<column>)")
        if name not in self.columns:
            raise self.fail(key, f"{text!r} names no column of the contract")
        if dated and self.columns[name].logical_type not in ("date", "timestamp"):
            raise self.fail(key, f"{text!r} is not a date or timestamp column")
        return name

    def duration(self, index: int, item: Any, what: str) -> timedelta:
        """A ``value`` + ``unit`` (h, d, w) as a time span."""
        value = item.value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise self.fail(f"slaProperties.{index}.value", f"{what} must be a positive number")
        unit = (item.unit or "").strip().lower()
        if unit not in _DURATION_UNITS:
            raise self.fail(f"slaProperties.{index}.unit", f"{what} needs a unit: h, d or w (got {item.unit!r})")
        return _DURATION_UNITS[unit] * float(value)

    def severity_of(self, index: int, item: Any) -> Severity:
        """The severity of the property's breaches, from its ``driver``."""
        driver = (item.driver or "").strip().lower()
        if driver not in DRIVER_SEVERITY:
            raise self.fail(f"slaProperties.{index}.driver",
                            f"must be one of {', '.join(DRIVER_SEVERITY)} (it sets the breach's severity), "
                            f"got {item.driver!r}")
        return DRIVER_SEVERITY[driver]

    def clock(self, index: int, value: Any, what: str) -> time:
        """A quoted ``"HH:MM"`` (Asia/Shanghai) as a time of day."""
        if not isinstance(value, str):
            raise self.fail(f"slaProperties.{index}.value", f"{what} must be a quoted \"HH:MM\" (Asia/Shanghai)")
        match = _HHMM.match(value.strip())
        if not match:
            raise self.fail(f"slaProperties.{index}.value", f"{what} must be \"HH:MM\" (Asia/Shanghai), got {value!r}")
        return time(int(match.group(1)), int(match.group(2)))


def compile_sla(contract: Contract) -> FeedSla:
    """A contract's service levels; errors name the file and the key."""
    sla = _Properties(contract)
    period, schedule, cron_time = _frequency(sla)
    available_time, available_day = _availability(sla, period, schedule)

    li, lat = sla["latency"]
    latency = sla.duration(li, lat, "latency")
    latency_element = sla.column(f"slaProperties.{li}.element", lat.element, required=False, dated=True)

    ei, err = sla["errorRate"]
    rate = _error_rate(sla)
    di, dl = sla["deliveryDeadline"]
    deadline = _deadline(sla, period, available_time, cron_time)

    # business-event latency
    vi, ev = sla["eventLatency"]
    event_latency = sla.duration(vi, ev, "eventLatency")
    event_element = sla.column(f"slaProperties.{vi}.element", ev.element, required=True, dated=True)

    band, band_severity = _row_count_band(sla)
    delivery = sla.severity_of(di, dl)
    severities = (("missing", delivery), ("late", delivery), ("failed", delivery),
                  ("short", band_severity), ("long", band_severity),
                  ("error_rate", sla.severity_of(ei, err)), ("event_latency", sla.severity_of(vi, ev)))
    return FeedSla(
        feed=contract.feed, source=sla.where, version=contract.version, period=period, schedule=schedule,
        available_time=available_time, available_day=available_day, latency=latency,
        latency_element=latency_element, error_rate=float(rate), deadline=deadline,
        event_latency=event_latency, event_element=event_element or "", row_count=band,
        severities=severities, min_failed_rows=contract_rules(contract).policy.min_failed_rows,
    )


def _frequency(sla: _Properties) -> tuple[str, str | None, time | None]:
    """``frequency``: the period, the cron naming the due nights (None: every night), the cron's time."""
    fi, freq = sla["frequency"]
    if isinstance(freq.value, bool) or freq.value not in (1, "1", 1.0):
        raise sla.fail(f"slaProperties.{fi}.value", "frequency must be 1 (one delivery per unit)")
    period = PERIODS.get((freq.unit or "").strip().lower())
    if period is None:
        raise sla.fail(f"slaProperties.{fi}.unit", f"frequency unit must be d, w or m (got {freq.unit!r})")
    schedule: str | None = None
    cron_time: time | None = None
    if freq.schedule or freq.scheduler:
        if (freq.scheduler or "").strip().lower() != "cron" or not freq.schedule:
            raise sla.fail(f"slaProperties.{fi}.schedule", "needs scheduler: cron and a schedule")
        schedule, cron_time = check_cron(freq.schedule, period, lambda m: sla.fail(f"slaProperties.{fi}.schedule", m))
    elif period != "day":
        raise sla.fail(f"slaProperties.{fi}.schedule",
                       f"a {period}ly feed needs scheduler: cron and a schedule naming its due day")
    if period == "day":
        schedule = None  # every night; the cron's time is kept only as cron_time
    return period, schedule, cron_time


def _availability(sla: _Properties, period: str, schedule: str | None) -> tuple[time | None, int | None]:
    """``timeOfAvailability``: a time of day, or (monthly feeds, ``unit: d``) a day of the month."""
    ti, toa = sla["timeOfAvailability"]
    available_time: time | None = None
    available_day: int | None = None
    if toa.unit and toa.unit.strip().lower() in ("d", "day", "days"):
        value = toa.value
        text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
        if period != "month" or not _DAY_OF_MONTH.match(text):
            raise sla.fail(f"slaProperties.{ti}.value",
                           "with unit d, timeOfAvailability is a day of the month (\"05\") of a monthly feed")
        available_day = int(text)
        due_days = cron_field(schedule.split()[2], 1, 31) if schedule else None
        if due_days and min(due_days) <= available_day:
            raise sla.fail(f"slaProperties.{ti}.value",
                           f"day {available_day} is not before the due day in the frequency's schedule")
    elif toa.unit:
        raise sla.fail(f"slaProperties.{ti}.unit",
                       f"timeOfAvailability takes no unit, or d for a day of the month (got {toa.unit!r})")
    else:
        available_time = sla.clock(ti, toa.value, "timeOfAvailability")
    return available_time, available_day


def _error_rate(sla: _Properties) -> Any:
    """``errorRate``: the largest share (0..1) of a batch's rows that may fail (``unit: percent``: 0..100)."""
    ei, err = sla["errorRate"]
    rate = err.value
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise sla.fail(f"slaProperties.{ei}.value", "errorRate must be a number (a share: 0.02 = 2 %)")
    unit = (err.unit or "").strip().lower()
    if unit in ("percent", "%"):
        rate = rate / 100.0
    elif unit:
        raise sla.fail(f"slaProperties.{ei}.unit", f"errorRate takes no unit (a share) or percent (got {err.unit!r})")
    if not 0 <= rate <= 1:
        raise sla.fail(f"slaProperties.{ei}.value", "errorRate must be a share between 0 and 1")
    return rate


def _deadline(sla: _Properties, period: str, available_time: time | None, cron_time: time | None) -> time:
    """``deliveryDeadline``: after the time of availability (daily feeds) and after the scheduled pull."""
    di, dl = sla["deliveryDeadline"]
    deadline = sla.clock(di, dl.value, "deliveryDeadline")
    if period == "day" and available_time is not None and deadline <= available_time:
        raise sla.fail(f"slaProperties.{di}.value",
                       f"the deadline {deadline:%H:%M} is not after the time of availability {available_time:%H:%M}")
    if cron_time is not None and deadline <= cron_time:
        raise sla.fail(f"slaProperties.{di}.value",
                       f"the deadline {deadline:%H:%M} is not after the scheduled pull {cron_time:%H:%M}")
    return deadline


def _row_count_band(sla: _Properties) -> tuple[RowCountBand | None, Severity]:
    """The row-count band (the contract's own rowCountVsHistory quality rule) and its severity."""
    band = None
    band_severity: Severity = "warning"
    for rule in contract_rules(sla.contract).batch_rules:
        if rule.kind == "row_count":
            p = rule.params
            band = RowCountBand(rule.id, p["nights"], p["min_nights"], p["min_ratio"], p["max_ratio"])
            level = _quality_severity(sla.contract, rule.key)
            if level not in QUALITY_SEVERITY:
                raise sla.fail(f"{rule.key}.severity", f"must be one of {', '.join(QUALITY_SEVERITY)} "
                               f"(it sets the severity of short and long), got {level!r}")
            band_severity = QUALITY_SEVERITY[level]
            break
    return band, band_severity


def _quality_severity(contract: Contract, key: str) -> str | None:
    """The ``severity`` of the quality rule at ``key`` (``schema.0.quality.3``)."""
    node: Any = contract.raw
    for part in key.split("."):
        if part.isdigit():
            node = node[int(part)]
        else:
            node = getattr(node, "schema_" if part == "schema" else part)
    level = getattr(node, "severity", None)
    return level.strip().lower() if isinstance(level, str) else level
