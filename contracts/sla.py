"""Service levels: compiled from each feed's contract, and a pure evaluator of one night's facts.

Nothing here is kept twice: every figure comes from the contract's ``slaProperties`` (ODCS v3) or,
for the row-count band, from its ``rowCountVsHistory`` quality rule (read through
:func:`contracts.rules.contract_rules`). This module does no I/O beyond reading the contracts: the
SLA monitor fills :class:`FeedNight` and :class:`NightRun` from the ledger, calls :func:`evaluate`
with its clock, records the breached findings and notifies what :func:`transitions` says opened or
recovered.

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

Nights
======
A night is a date in Asia/Shanghai: the night D runs in the early hours of D
(:func:`fundx.ledger.runs.night_of` is the date a run started on). Deadlines are local times on D.

The rules
=========
One :class:`Finding` per rule checked — breached or met, so that recoveries can be seen; a rule
that cannot be judged yet gives no finding.

=================  =============================================================================
``late``           due night, delivered (pulled or held) after the deadline
``missing``        due night, no pull recorded at all and ``now`` at or past the deadline (before:
                   no finding). Met once a delivery is recorded. A failed pull is ``failed``, not
                   ``missing``: neither ``missing`` nor ``late`` is judged until a pull succeeds.
``failed``         every night: the night's pulls failed (judged at once: people can act before
                   the deadline); met once a pull of the night succeeds
``short``/``long`` due night, delivered, with at least ``minNights`` of history: rows below
                   ``floor(median × minRatio)`` / above ``ceil(median × maxRatio)`` of the last
                   ``nights`` counts (the formula of ``contracts.rules.row_count_bounds``)
``error_rate``     delivered: failing rows / rows above ``errorRate``; or the batch was held whole
                   and the band does not explain it (a batch held for being short is ``short``)
``event_latency``  delivered, ``event_lag_days["p90"]`` above the ``eventLatency`` threshold
``night_slow``     (feed None) the night still running past the budget, or ended after it
=================  =============================================================================

Notify once, recover once (:func:`transitions`)
===============================================
Breaches carry over nights: the state of a (feed, rule) is its finding for the newest night
evaluated. Breached and nothing open for that (feed, rule): a breach opens, keyed by its night.
Breached while one is open (the same night again, or the next night still late): nothing new.
Met for a night on or after an open breach's night: that breach recovers — a feed late on the
22nd recovers when the 23rd is on time, a missing night recovers when the delivery is recorded
(late) or when a later night is delivered (incremental feeds catch up). A finding for an older
night than the open breach changes nothing.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from contracts import Contract, contract_names, contract_path, display_path, load_contract
from contracts.rules import contract_rules, row_count_bounds
from fundx.core.errors import ConfigurationError
from fundx.core.timeutil import SHANGHAI

Severity = Literal["warning", "critical"]
Outcome = Literal["pulled", "held", "failed", "missing"]

#: the rules, in the order findings are listed
RULES: tuple[str, ...] = ("missing", "late", "failed", "short", "long", "error_rate", "event_latency", "night_slow")
OUTCOMES: tuple[str, ...] = ("pulled", "held", "failed", "missing")
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
        return self.schedule is None or _cron_day_matches(self.schedule, night)

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


def compile_sla(contract: Contract) -> FeedSla:
    """A contract's service levels; errors name the file and the key."""
    where = contract.source or display_path(contract_path(contract.feed))

    def fail(key: str, message: str) -> ConfigurationError:
        return ConfigurationError(f"{where}: {key}: {message}", feed=None,
                                  action=f"fix {key} in {where} (ODCS v3 slaProperties)")

    raw = contract.raw
    found: dict[str, tuple[int, Any]] = {}
    for i, item in enumerate(raw.slaProperties or []):
        if not item.property:
            raise fail(f"slaProperties.{i}.property", "is required")
        if item.property in found and item.property in REQUIRED:
            raise fail(f"slaProperties.{i}.property", f"{item.property} is listed twice "
                       f"(first as slaProperties.{found[item.property][0]})")
        found.setdefault(item.property, (i, item))
    for name in REQUIRED:
        if name not in found:
            raise fail("slaProperties", f"has no {name} (needed by the SLA monitor; see contracts/sla.py)")

    obj = contract.schema_object
    columns = {c.name: c for c in contract.columns}

    def column(key: str, element: str | None, *, required: bool, dated: bool = False) -> str | None:
        if not element:
            if required:
                raise fail(key, "is required: the column to measure (object.column)")
            return None
        text = str(element).strip()
        name = text
        if "." in text:
            prefix, name = text.rsplit(".", 1)
            if prefix not in (obj.name, obj.physicalName):
                raise fail(key, f"{text!r} names no object of the contract (expected {obj.name}.<column>)")
        if name not in columns:
            raise fail(key, f"{text!r} names no column of the contract")
        if dated and columns[name].logical_type not in ("date", "timestamp"):
            raise fail(key, f"{text!r} is not a date or timestamp column")
        return name

    def duration(index: int, item: Any, what: str) -> timedelta:
        value = item.value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise fail(f"slaProperties.{index}.value", f"{what} must be a positive number")
        unit = (item.unit or "").strip().lower()
        if unit not in _DURATION_UNITS:
            raise fail(f"slaProperties.{index}.unit", f"{what} needs a unit: h, d or w (got {item.unit!r})")
        return _DURATION_UNITS[unit] * float(value)

    def severity_of(index: int, item: Any) -> Severity:
        driver = (item.driver or "").strip().lower()
        if driver not in DRIVER_SEVERITY:
            raise fail(f"slaProperties.{index}.driver",
                       f"must be one of {', '.join(DRIVER_SEVERITY)} (it sets the breach's severity), got {item.driver!r}")
        return DRIVER_SEVERITY[driver]

    def clock(index: int, value: Any, what: str) -> time:
        if not isinstance(value, str):
            raise fail(f"slaProperties.{index}.value", f"{what} must be a quoted \"HH:MM\" (Asia/Shanghai)")
        match = _HHMM.match(value.strip())
        if not match:
            raise fail(f"slaProperties.{index}.value", f"{what} must be \"HH:MM\" (Asia/Shanghai), got {value!r}")
        return time(int(match.group(1)), int(match.group(2)))

    # frequency
    fi, freq = found["frequency"]
    if isinstance(freq.value, bool) or freq.value not in (1, "1", 1.0):
        raise fail(f"slaProperties.{fi}.value", "frequency must be 1 (one delivery per unit)")
    period = PERIODS.get((freq.unit or "").strip().lower())
    if period is None:
        raise fail(f"slaProperties.{fi}.unit", f"frequency unit must be d, w or m (got {freq.unit!r})")
    schedule = None
    cron_time: time | None = None
    if freq.schedule or freq.scheduler:
        if (freq.scheduler or "").strip().lower() != "cron" or not freq.schedule:
            raise fail(f"slaProperties.{fi}.schedule", "needs scheduler: cron and a schedule")
        schedule, cron_time = _check_cron(freq.schedule, period, lambda m: fail(f"slaProperties.{fi}.schedule", m))
    elif period != "day":
        raise fail(f"slaProperties.{fi}.schedule",
                   f"a {period}ly feed needs scheduler: cron and a schedule naming its due day")
    if period == "day":
        schedule = None  # every night; the cron's time is kept only as cron_time

    # time of availability
    ti, toa = found["timeOfAvailability"]
    available_time = available_day = None
    if toa.unit and toa.unit.strip().lower() in ("d", "day", "days"):
        value = toa.value
        text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
        if period != "month" or not _DAY_OF_MONTH.match(text):
            raise fail(f"slaProperties.{ti}.value",
                       "with unit d, timeOfAvailability is a day of the month (\"05\") of a monthly feed")
        available_day = int(text)
        due_days = _cron_field(schedule.split()[2], 1, 31) if schedule else None
        if due_days and min(due_days) <= available_day:
            raise fail(f"slaProperties.{ti}.value",
                       f"day {available_day} is not before the due day in the frequency's schedule")
    elif toa.unit:
        raise fail(f"slaProperties.{ti}.unit", f"timeOfAvailability takes no unit, or d for a day of the month (got {toa.unit!r})")
    else:
        available_time = clock(ti, toa.value, "timeOfAvailability")

    # latency
    li, lat = found["latency"]
    latency = duration(li, lat, "latency")
    latency_element = column(f"slaProperties.{li}.element", lat.element, required=False, dated=True)

    # error rate
    ei, err = found["errorRate"]
    rate = err.value
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise fail(f"slaProperties.{ei}.value", "errorRate must be a number (a share: 0.02 = 2 %)")
    unit = (err.unit or "").strip().lower()
    if unit in ("percent", "%"):
        rate = rate / 100.0
    elif unit:
        raise fail(f"slaProperties.{ei}.unit", f"errorRate takes no unit (a share) or percent (got {err.unit!r})")
    if not 0 <= rate <= 1:
        raise fail(f"slaProperties.{ei}.value", "errorRate must be a share between 0 and 1")

    # delivery deadline
    di, dl = found["deliveryDeadline"]
    deadline = clock(di, dl.value, "deliveryDeadline")
    if period == "day" and available_time is not None and deadline <= available_time:
        raise fail(f"slaProperties.{di}.value",
                   f"the deadline {deadline:%H:%M} is not after the time of availability {available_time:%H:%M}")
    if cron_time is not None and deadline <= cron_time:
        raise fail(f"slaProperties.{di}.value",
                   f"the deadline {deadline:%H:%M} is not after the scheduled pull {cron_time:%H:%M}")

    # business-event latency
    vi, ev = found["eventLatency"]
    event_latency = duration(vi, ev, "eventLatency")
    event_element = column(f"slaProperties.{vi}.element", ev.element, required=True, dated=True)

    # the row-count band: the contract's own quality rule
    band = None
    band_severity: Severity = "warning"
    for rule in contract_rules(contract).batch_rules:
        if rule.kind == "row_count":
            p = rule.params
            band = RowCountBand(rule.id, p["nights"], p["min_nights"], p["min_ratio"], p["max_ratio"])
            level = _quality_severity(contract, rule.key)
            if level not in QUALITY_SEVERITY:
                raise fail(f"{rule.key}.severity", f"must be one of {', '.join(QUALITY_SEVERITY)} "
                           f"(it sets the severity of short and long), got {level!r}")
            band_severity = QUALITY_SEVERITY[level]
            break

    delivery = severity_of(di, dl)
    severities = (("missing", delivery), ("late", delivery), ("failed", delivery),
                  ("short", band_severity), ("long", band_severity),
                  ("error_rate", severity_of(ei, err)), ("event_latency", severity_of(vi, ev)))
    return FeedSla(
        feed=contract.feed, source=where, version=contract.version, period=period, schedule=schedule,
        available_time=available_time, available_day=available_day, latency=latency,
        latency_element=latency_element, error_rate=float(rate), deadline=deadline,
        event_latency=event_latency, event_element=event_element or "", row_count=band,
        severities=severities, min_failed_rows=contract_rules(contract).policy.min_failed_rows,
    )


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


# --- cron (the day fields only: which nights are due) --------------------------------------------


def _cron_field(text: str, low: int, high: int) -> set[int] | None:
    """The values of one cron field; None for ``*``. ValueError when it is not understood."""
    if text == "*":
        return None
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(part)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            a, b = body.split("-", 1)
            start, end = int(a), int(b)
        else:
            start = int(body)
            end = high if step_text else start
        if not low <= start <= end <= high:
            raise ValueError(part)
        values.update(range(start, end + 1, step))
    return values


def _cron_parts(expr: str) -> tuple[set[int] | None, set[int] | None, set[int] | None, set[int] | None, set[int] | None]:
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(expr)
    minute = _cron_field(fields[0], 0, 59)
    hour = _cron_field(fields[1], 0, 23)
    dom = _cron_field(fields[2], 1, 31)
    month = _cron_field(fields[3], 1, 12)
    dow = _cron_field(fields[4], 0, 7)
    if dow is not None:
        dow = {d % 7 for d in dow}  # 0 and 7 are Sunday
    return minute, hour, dom, month, dow


def _check_cron(expr: str, period: str, fail) -> tuple[str, time | None]:
    try:
        minute, hour, dom, month, dow = _cron_parts(expr.strip())
    except ValueError:
        raise fail(f"{expr!r} is not a cron expression of five numeric fields (minute hour day month weekday)") from None
    at = time(min(hour), min(minute)) if hour and minute and len(hour) == 1 and len(minute) == 1 else None
    if period == "day" and (dom, month, dow) != (None, None, None):
        raise fail(f"a daily feed's schedule must fire every day, not {expr!r}")
    if period == "week" and not (dom is None and month is None and dow is not None and len(dow) == 1):
        raise fail(f"a weekly feed's schedule names one weekday (\"0 2 * * 2\"), not {expr!r}")
    if period == "month" and not (dow is None and month is None and dom is not None and len(dom) == 1):
        raise fail(f"a monthly feed's schedule names one day of the month (\"0 2 6 * *\"), not {expr!r}")
    return " ".join(expr.split()), at


def _cron_day_matches(expr: str, night: date) -> bool:
    _, _, dom, month, dow = _cron_parts(expr)
    if month is not None and night.month not in month:
        return False
    weekday = night.isoweekday() % 7  # cron: Sunday = 0
    if dom is not None and dow is not None:
        return night.day in dom or weekday in dow  # cron's rule: either restricted field matches
    if dom is not None:
        return night.day in dom
    if dow is not None:
        return weekday in dow
    return True


# --- the facts (filled from the ledger by the monitor) ---------------------------------------------


def _as_night(value: date | str) -> date:
    if isinstance(value, datetime):
        raise ValueError("a night is a date (Asia/Shanghai), not a datetime")
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _need_aware(name: str, value: datetime | None) -> None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")


@dataclass(frozen=True)
class FeedNight:
    """What the ledger knows of one feed on one night (counts and times only, no content).

    ``delivered_at``: when the night's delivery was recorded — the first pull of the night that
    ended ``pulled`` or ``held`` (for a weekly or monthly feed on its due night: the first such
    pull with rows, on or after that night); None when there is none (yet). ``outcome``: ``pulled``
    or ``held`` when ``delivered_at`` is set; else ``failed`` if a pull of the night failed, else
    ``missing``. ``rows``: the delivered batch's rows. ``quarantined``: its rows that failed a row
    rule (not the rows of a held batch held back with them). ``history``: row counts of the
    feed's previous due nights, oldest first, without this night. ``event_lag_days``: percentiles
    of business event -> arrival at the stage in days (``{"p50": 3.0, "p90": 9.0}``), None when not
    measured; only read when something was delivered.
    """

    feed: str
    night: date
    delivered_at: datetime | None
    outcome: Outcome
    rows: int | None = None
    quarantined: int = 0
    history: Sequence[int] = ()
    event_lag_days: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "night", _as_night(self.night))
        object.__setattr__(self, "history", tuple(int(n) for n in self.history))
        if self.outcome not in OUTCOMES:
            raise ValueError(f"{self.feed}: outcome must be one of {', '.join(OUTCOMES)}, not {self.outcome!r}")
        _need_aware("delivered_at", self.delivered_at)
        if (self.delivered_at is not None) != (self.outcome in ("pulled", "held")):
            raise ValueError(f"{self.feed}: delivered_at is set exactly when the outcome is pulled or held")
        if (self.rows is not None and self.rows < 0) or self.quarantined < 0:
            raise ValueError(f"{self.feed}: rows and quarantined cannot be negative")


@dataclass(frozen=True)
class NightRun:
    """The night's run of the whole exchange: when it started and ended (None: still running)."""

    night: date
    started_at: datetime
    ended_at: datetime | None
    outcome: str  # running | completed | failed (the ledger's runs.outcome)

    def __post_init__(self) -> None:
        object.__setattr__(self, "night", _as_night(self.night))
        _need_aware("started_at", self.started_at)
        _need_aware("ended_at", self.ended_at)


@dataclass(frozen=True)
class Finding:
    """One rule judged for one night (and feed; None for the night itself): breached or met.

    ``expected`` and ``observed`` are short content-free texts for people (figures, times, rule
    names). On a recovery from :func:`transitions`, ``night`` is the open breach's night (its key
    stays the breach's key) and ``met_on`` the night whose evaluation met the rule.
    """

    night: date
    feed: str | None
    rule: str
    severity: Severity
    expected: str
    observed: str
    breached: bool
    met_on: date | None = None

    @property
    def key(self) -> tuple[date, str | None, str]:
        """(night, feed, rule): what identifies a breach, for the ledger and the notices."""
        return (self.night, self.feed, self.rule)


# --- the evaluator ---------------------------------------------------------------------------------


def _at(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def _span(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _days(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 86400:g} d"


def _pct(share: float) -> str:
    return f"{share * 100:.1f} %"


def _evaluate_feed(sla: FeedSla, fact: FeedNight, now: datetime) -> list[Finding]:
    out: list[Finding] = []

    def add(rule: str, expected: str, observed: str, breached: bool) -> None:
        out.append(Finding(fact.night, sla.feed, rule, sla.severity(rule), expected, observed, breached))

    due = sla.due(fact.night)
    deadline = sla.deadline_at(fact.night)
    by = f"delivered by {_at(deadline)}"
    delivered_at = fact.delivered_at
    delivered = fact.outcome in ("pulled", "held")  # exactly when delivered_at is set (FeedNight checks)

    if due and fact.outcome == "missing" and now >= deadline:
        add("missing", by, f"nothing delivered at {_at(now)}", True)
    elif due and delivered and delivered_at is not None:
        add("missing", by, f"delivered {_at(delivered_at)}", False)
    if due and delivered and delivered_at is not None:
        add("late", by, f"delivered {_at(delivered_at)}", delivered_at > deadline)
    if fact.outcome == "failed":
        add("failed", "a successful pull", "the night's pulls failed", True)
    elif delivered and delivered_at is not None:
        add("failed", "a successful pull", f"pulled {_at(delivered_at)}", False)

    band_breached = False
    if due and delivered and fact.rows is not None and sla.row_count is not None:
        bounds = sla.row_count.bounds(fact.history)
        if bounds is not None:
            low, high = bounds
            band = sla.row_count
            median = band.median(fact.history)
            of = f"median {median:g} of the last {min(len(fact.history), band.nights)} deliveries"
            add("short", f">= {low} rows ({band.min_ratio:g} × {of})", f"{fact.rows} rows", fact.rows < low)
            add("long", f"<= {high} rows ({band.max_ratio:g} × {of})", f"{fact.rows} rows", fact.rows > high)
            band_breached = not low <= fact.rows <= high

    if delivered and fact.rows is not None:
        share = fact.quarantined / fact.rows if fact.rows else 0.0
        figures = f"{_pct(share)} ({fact.quarantined} of {fact.rows} rows failed the contract)"
        expected = (f"<= {_pct(sla.error_rate)} of rows failing the contract (counted from "
                    f"{sla.min_failed_rows} failing rows), batch not held")
        if fact.outcome == "held" and not band_breached:
            add("error_rate", expected, f"batch held; {figures}", True)
        else:  # one bad row of 40 is a row to look at, not an agency breaking its service level
            add("error_rate", expected, figures, share > sla.error_rate and fact.quarantined >= sla.min_failed_rows)

    lag = (fact.event_lag_days or {}).get("p90") if delivered else None
    if lag is not None:
        limit = sla.event_latency
        add("event_latency", f"p90 <= {_days(limit)} from {sla.event_element} to arrival",
            f"p90 {float(lag):g} d", float(lag) * 86400 > limit.total_seconds())
    return out


def _evaluate_night(run: NightRun, now: datetime, budget: timedelta, severity: Severity) -> list[Finding]:
    expected = f"night done within {_span(budget)}"
    if run.ended_at is None:
        running = now - run.started_at
        if running <= budget:
            return []  # still within its budget: not judged yet
        return [Finding(run.night, None, "night_slow", severity, expected, f"still running after {_span(running)}", True)]
    took = run.ended_at - run.started_at
    return [Finding(run.night, None, "night_slow", severity, expected, f"took {_span(took)}", took > budget)]


def evaluate(
    slas: Mapping[str, FeedSla],
    feed_nights: Iterable[FeedNight],
    night_run: NightRun | Iterable[NightRun] | None,
    *,
    now: datetime,
    night_budget: timedelta,
    night_severity: Severity = "warning",
) -> list[Finding]:
    """Judge every rule that can be judged at ``now``; pure and deterministic (see the module doc).

    Findings come sorted by night, then feed (the night's own ``night_slow`` last), then rule.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if night_budget <= timedelta(0):
        raise ValueError("night_budget must be positive")
    if night_severity not in DRIVER_SEVERITY.values():
        raise ValueError(f"night_severity must be warning or critical, not {night_severity!r}")
    findings: list[Finding] = []
    seen: set[tuple[str, date]] = set()
    for fact in feed_nights:
        if fact.feed not in slas:
            raise ValueError(f"no service levels for feed {fact.feed!r} (known: {', '.join(sorted(slas))})")
        if (fact.feed, fact.night) in seen:
            raise ValueError(f"{fact.feed}: night {fact.night} given twice")
        seen.add((fact.feed, fact.night))
        findings.extend(_evaluate_feed(slas[fact.feed], fact, now))
    runs = [night_run] if isinstance(night_run, NightRun) else list(night_run or ())
    for run in runs:
        findings.extend(_evaluate_night(run, now, night_budget, night_severity))
    order = {rule: i for i, rule in enumerate(RULES)}
    findings.sort(key=lambda f: (f.night, f.feed is None, f.feed or "", order[f.rule]))
    return findings


# --- notify once, recover once ---------------------------------------------------------------------


def transitions(
    previous_open: Iterable[tuple[date, str | None, str]],
    findings: Iterable[Finding],
) -> tuple[list[Finding], list[Finding]]:
    """The breaches to announce (``opened``) and the open ones that recovered (``recovered``).

    ``previous_open``: keys (night, feed, rule) of breaches opened and not yet recovered. For each
    (feed, rule) only the finding of the newest night counts (see the module doc). A recovery is
    the met finding with ``night`` set to the open breach's night and ``met_on`` to its own.
    Pure: feeding the same findings again with the updated open set yields nothing.
    """
    open_by: dict[tuple[str | None, str], list[date]] = {}
    for night, feed, rule in previous_open:
        open_by.setdefault((feed, rule), []).append(_as_night(night))
    latest: dict[tuple[str | None, str], Finding] = {}
    for f in findings:
        current = latest.get((f.feed, f.rule))
        if current is None or f.night > current.night:
            latest[(f.feed, f.rule)] = f
        elif f.night == current.night and f != current:
            raise ValueError(f"two findings for {f.night} {f.feed or 'night'} {f.rule}")
    opened: list[Finding] = []
    recovered: list[Finding] = []
    for key in sorted(latest, key=lambda k: (k[0] is None, k[0] or "", RULES.index(k[1]))):
        f = latest[key]
        nights = sorted(open_by.get(key, ()))
        if f.breached:
            if not nights:
                opened.append(f)
        else:
            recovered.extend(replace(f, night=n, met_on=f.night) for n in nights if n <= f.night)
    return opened, recovered


# --- the event latency of a batch's rows (the eventLatency property) ---------------------------------


def event_lag_days(feed: str, frame: Any, arrived: datetime) -> tuple[float, float] | None:
    """(p50, p90) days from each row's business event (the SLA's event column) to ``arrived``."""
    lag = event_lags(feed, frame, arrived)
    return None if lag is None else lag_percentiles(lag)


def event_lags(feed: str, frame: Any, arrived: datetime) -> Any:
    """Days from each row's business event to ``arrived`` (rows without one left out), or None."""
    import numpy as np
    import pandas as pd

    column = feed_sla(feed).event_element
    if column not in getattr(frame, "columns", ()) or len(frame) == 0:
        return None
    # dates read as midnight UTC, moments with their offset: a few hours do not matter in days
    moments = pd.to_datetime(frame[column].where(frame[column].notna()), errors="coerce", utc=True, format="mixed")
    lag = (pd.Timestamp(arrived).tz_convert("UTC") - moments).dt.total_seconds().to_numpy(dtype=float) / 86400.0
    return lag[~np.isnan(lag)]


def lag_percentiles(lag: Any) -> tuple[float, float] | None:
    """(p50, p90) of event lags in days, or None when there are none."""
    import numpy as np

    if lag is None or len(lag) == 0:
        return None
    p50, p90 = np.percentile(lag, [50, 90])
    return round(float(p50), 3), round(float(p90), 3)
