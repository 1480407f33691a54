"""Judging one night's facts against the service levels: the findings, and which breaches open or recover.

Nights
======
A night is a date in Asia/Shanghai: the night D runs in the early hours of D
(:func:`fundx.ledger.night_of` is the date a run started on). Deadlines are local times on D.

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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Literal

from contracts.sla.policy import DRIVER_SEVERITY, FeedSla, Severity
from fundx.core.timeutil import SHANGHAI

Outcome = Literal["pulled", "held", "failed", "missing"]

#: the rules, in the order findings are listed
#: (``cert_expiry`` is the monitor's own: a certificate of the exchange close to its end, fundx.sla.monitor)
RULES: tuple[str, ...] = ("missing", "late", "failed", "short", "long", "error_rate", "event_latency", "night_slow",
                          "cert_expiry")
OUTCOMES: tuple[str, ...] = ("pulled", "held", "failed", "missing")


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
