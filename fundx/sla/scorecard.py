"""The monthly SLA scorecard per agency: a table, JSON and a PNG chart, from the ledger's figures only.

:func:`scorecard` reads what the ledger recorded of a month's nights (runs, pulls, pull_figures,
quarantines, breaches — counts, times and rule names; never a row's content) and judges every
(feed, night) with the SLA monitor's own code: :func:`fundx.sla.monitor.feed_night` gives the night's
facts and :func:`contracts.sla.findings.evaluate` the findings, so "on time" here is exactly the ``late`` rule of
:mod:`contracts.sla.findings`. :func:`write_png` draws the chart (matplotlib, Agg canvas, no display) and
:func:`scorecard_command` is ``fundx sla scorecard``. An agency is the part of a feed's name before
its first dot (``police.deaths`` -> ``police``).

The nights
==========
The nights of a month are the nights (Asia/Shanghai dates, see :mod:`contracts.sla.findings`) of that month
from the first night the ledger recorded at all (a run of any kind) to today at ``now``. A night
of that span without any run counts like a night the exchange did not run: a due delivery is
missing. A month without a single recorded night (before the ledger started, in the future, or a
total outage) gives the empty scorecard, whose chart says "no nights recorded".

The figures (per feed; an agency's figures pool its feeds' nights and rows)
===========================================================================
=====================  ===========================================================================
``nights_due``         nights on which :meth:`contracts.sla.policy.FeedSla.due` says a delivery is due and it
                       can be judged at ``now``: delivered, or the deadline has passed. A due night
                       before its deadline with nothing delivered yet is ``nights_pending``, in
                       neither count.
``nights_delivered``   due nights with the night's delivery recorded (a pull ``pulled`` or
                       ``held``, at any time of the night's runs; :func:`monitor.feed_night`)
``nights_on_time``     due nights delivered whose ``late`` finding is met (recorded by the
                       contract's ``deliveryDeadline``); ``nights_missing`` / ``nights_failed``:
                       due nights past the deadline with no pull / only failed pulls
``on_time_rate``       nights_on_time / nights_due (None when nothing was due)
``completeness``       ``nights``: nights_delivered / nights_due; ``rows``: rows_delivered /
                       rows_pulled (None when there is nothing to divide by)
``rows_*``             over every regular pull (backfills aside, as in the monitor) that ended
                       ``pulled`` or ``held`` in a run of the month's nights, due or not:
                       ``rows_pulled`` the batch's rows; ``rows_quarantined`` the rows kept for
                       the stewards (every row of a held batch); ``rows_delivered`` = pulled −
                       quarantined (the valid rows that went to the stage); ``rows_failing`` the
                       rows failing a row rule, counted as the SLA's ``error_rate`` rule counts
                       them (a held batch: its rows failing a row rule, not the rows held back
                       with them)
``error_rate``         rows_failing / rows_pulled: the SLA's error rate pooled over the month
``latency_hours``      p50 and p90 (numpy's linear percentiles, as ``contracts.sla.latency.event_lag_days``) over
                       the delivered due nights of delivered_at − the time of availability:
                       ``timeOfAvailability`` on the night's date (for a weekly feed whose time
                       of availability falls after the deadline, the day before: the snapshot
                       available Monday 08:00 for Tuesday's night), or, for a monthly feed with a
                       day of the month, the end of that day in the night's month
``event_p90_days``     the business-event latency: every delivered night's p90 (pull_figures, the
                       figure the ``event_latency`` rule judges); ``max`` is the worst night (what
                       the table and chart show: the SLA judges each night), ``mean`` their mean
``breaches``           breaches recorded in the ``breaches`` table for a night of the month up to
                       today (the night a breach concerns, whether it opened then or the morning
                       after; open or since recovered), per rule; ``night_slow`` is the night's
                       own and is reported beside the agencies
=====================  ===========================================================================

Only feed and agency names, dates, counts, rates, durations and rule names appear in the scorecard,
its JSON and its chart.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from contracts.sla.findings import RULES, FeedNight, Finding, evaluate
from contracts.sla.policy import FeedSla, all_slas
from fundx.core.timeutil import SHANGHAI
from fundx.core.timeutil import now as clock_now
from fundx.ledger import Ledger
from fundx.ledger.schema import breaches, pulls, quarantines, runs
from fundx.sla import monitor

SCHEMA = "fundx.sla-scorecard/1"
#: the table's columns, in order (:meth:`Scorecard.rows`)
COLUMNS: tuple[str, ...] = ("agency", "feed", "nights due", "delivered", "on time", "completeness", "error rate",
                            "p50/p90 latency", "event p90", "breaches")
_MONTH = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")


# --- months -----------------------------------------------------------------------------------------


def parse_month(text: str) -> str:
    """``YYYY-MM`` checked (ValueError otherwise)."""
    value = str(text).strip()
    if not _MONTH.match(value):
        raise ValueError(f"{text!r} is not a month (YYYY-MM)")
    return value


def current_month(now: datetime | None = None) -> str:
    """The month of ``now`` (default: the clock) in Asia/Shanghai, ``YYYY-MM``."""
    return (now or clock_now()).astimezone(SHANGHAI).strftime("%Y-%m")


def month_nights(month: str) -> tuple[date, date]:
    """The first and last night of ``month``."""
    year, mon = (int(p) for p in parse_month(month).split("-"))
    first = date(year, mon, 1)
    following = date(year + 1, 1, 1) if mon == 12 else date(year, mon + 1, 1)
    return first, following - timedelta(days=1)


def available_at(feed_sla: FeedSla, night: date) -> datetime:
    """When the agency's data for ``night`` is available (Asia/Shanghai); see the module doc."""
    if feed_sla.available_day is not None:  # a monthly feed: "by the 5th" = by the end of the 5th
        return datetime.combine(night.replace(day=feed_sla.available_day) + timedelta(days=1), time.min,
                                tzinfo=SHANGHAI)
    moment = datetime.combine(night, feed_sla.available_time or time.min, tzinfo=SHANGHAI)
    deadline = feed_sla.deadline_at(night)
    return moment if moment <= deadline else moment - timedelta(days=1)


# --- the figures -------------------------------------------------------------------------------------


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class Score:
    """The month's figures of one feed (``feed`` set) or of one agency (``feed`` None, ``feeds`` its feeds)."""

    agency: str
    feed: str | None = None
    feeds: tuple[str, ...] = ()
    nights_due: int = 0
    nights_pending: int = 0
    nights_delivered: int = 0
    nights_on_time: int = 0
    nights_missing: int = 0
    nights_failed: int = 0
    rows_pulled: int = 0
    rows_delivered: int = 0
    rows_quarantined: int = 0
    rows_failing: int = 0
    #: delivered_at − time of availability, in hours, per delivered due night (night order)
    latencies_h: list[float] = field(default_factory=list)
    #: pull_figures.event_lag_p90 of every delivered night that has it, in days
    event_p90s_d: list[float] = field(default_factory=list)
    #: breaches recorded for the month's nights, per rule
    breaches: dict[str, int] = field(default_factory=dict)

    @property
    def on_time_rate(self) -> float | None:
        return _ratio(self.nights_on_time, self.nights_due)

    @property
    def nights_completeness(self) -> float | None:
        return _ratio(self.nights_delivered, self.nights_due)

    @property
    def rows_completeness(self) -> float | None:
        return _ratio(self.rows_delivered, self.rows_pulled)

    @property
    def error_rate(self) -> float | None:
        return _ratio(self.rows_failing, self.rows_pulled)

    @property
    def latency_p50_h(self) -> float | None:
        return _percentile(self.latencies_h, 50)

    @property
    def latency_p90_h(self) -> float | None:
        return _percentile(self.latencies_h, 90)

    @property
    def event_p90_max_d(self) -> float | None:
        return max(self.event_p90s_d) if self.event_p90s_d else None

    @property
    def event_p90_mean_d(self) -> float | None:
        return sum(self.event_p90s_d) / len(self.event_p90s_d) if self.event_p90s_d else None

    def absorb(self, other: Score) -> None:
        """Add another score's nights, rows and breaches to this one (an agency pools its feeds)."""
        for name in ("nights_due", "nights_pending", "nights_delivered", "nights_on_time", "nights_missing",
                     "nights_failed", "rows_pulled", "rows_delivered", "rows_quarantined", "rows_failing"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latencies_h.extend(other.latencies_h)
        self.event_p90s_d.extend(other.event_p90s_d)
        for rule, n in other.breaches.items():
            self.breaches[rule] = self.breaches.get(rule, 0) + n

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"agency": self.agency}
        if self.feed is not None:
            out["feed"] = self.feed
        else:
            out["feeds"] = list(self.feeds)
        out.update({
            "nights": {"due": self.nights_due, "delivered": self.nights_delivered, "on_time": self.nights_on_time,
                       "missing": self.nights_missing, "failed": self.nights_failed, "pending": self.nights_pending},
            "rows": {"pulled": self.rows_pulled, "delivered": self.rows_delivered,
                     "quarantined": self.rows_quarantined, "failing": self.rows_failing},
            "on_time_rate": _round(self.on_time_rate, 4),
            "completeness": {"nights": _round(self.nights_completeness, 4), "rows": _round(self.rows_completeness, 4)},
            "error_rate": _round(self.error_rate, 4),
            "latency_hours": {"p50": _round(self.latency_p50_h, 3), "p90": _round(self.latency_p90_h, 3),
                              "nights": len(self.latencies_h)},
            "event_p90_days": {"max": _round(self.event_p90_max_d, 3), "mean": _round(self.event_p90_mean_d, 3),
                               "nights": len(self.event_p90s_d)},
            "breaches": dict(sorted(self.breaches.items(), key=lambda kv: _rule_order(kv[0]))),
        })
        return out


def _rule_order(rule: str) -> tuple[int, str]:
    return (RULES.index(rule) if rule in RULES else len(RULES), rule)


@dataclass
class Scorecard:
    """A month's scorecard: per feed, per agency, and the night's own breaches (``night_slow``)."""

    month: str
    generated_at: datetime
    #: the nights judged (see the module doc); None for an empty scorecard
    first_night: date | None
    last_night: date | None
    #: nights of the month with at least one run in the ledger
    nights_recorded: int
    feeds: list[Score]
    agencies: list[Score]
    night_breaches: dict[str, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.first_night is None

    @property
    def title(self) -> str:
        return f"fundx SLA scorecard {self.month}"

    def rows(self) -> list[tuple[str, ...]]:
        """The table's rows in :data:`COLUMNS` order: every feed, then an agency's total when it has several."""
        out: list[tuple[str, ...]] = []
        by_agency = {a.agency: a for a in self.agencies}
        for agency in sorted(by_agency):
            feeds = [f for f in self.feeds if f.agency == agency]
            out.extend(_row(f.agency, f.feed or "", f) for f in feeds)
            if len(feeds) > 1:
                out.append(_row(agency, "(all feeds)", by_agency[agency]))
        if self.night_breaches:
            out.append(("(the night)", "", "", "", "", "", "", "", "", _breaches_text(self.night_breaches)))
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "month": self.month,
            "generated_at": self.generated_at.astimezone(SHANGHAI).isoformat(timespec="seconds"),
            "empty": self.empty,
            "nights": {"first": self.first_night.isoformat() if self.first_night else None,
                       "last": self.last_night.isoformat() if self.last_night else None,
                       "recorded": self.nights_recorded},
            "agencies": [a.as_json() for a in self.agencies],
            "feeds": [f.as_json() for f in self.feeds],
            "night_breaches": dict(sorted(self.night_breaches.items(), key=lambda kv: _rule_order(kv[0]))),
        }


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f} %"


def _hours(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _breaches_text(counts: dict[str, int]) -> str:
    items = sorted(counts.items(), key=lambda kv: _rule_order(kv[0]))
    return ", ".join(f"{rule} {n}" for rule, n in items) if items else "—"


def _row(agency: str, feed: str, s: Score) -> tuple[str, ...]:
    pending = f" (+{s.nights_pending} pending)" if s.nights_pending else ""
    latency = "—" if not s.latencies_h else f"{_hours(s.latency_p50_h)} / {_hours(s.latency_p90_h)} h"
    event = "—" if s.event_p90_max_d is None else f"{s.event_p90_max_d:g} d max"
    return (agency, feed, f"{s.nights_due}{pending}", str(s.nights_delivered),
            f"{s.nights_on_time} ({_pct(s.on_time_rate)})",
            f"nights {_pct(s.nights_completeness)}, rows {_pct(s.rows_completeness, 2)}",
            _pct(s.error_rate, 2), latency, event, _breaches_text(s.breaches))


# --- reading the ledger --------------------------------------------------------------------------------


def agency_of(feed: str) -> str:
    """The agency of a feed: its name up to the first dot."""
    return feed.split(".", 1)[0]


def scorecard(ledger: Ledger, month: str, *, now: datetime | None = None,
              slas: dict[str, FeedSla] | None = None) -> Scorecard:
    """The scorecard of ``month`` (``YYYY-MM``) at ``now`` (default: the clock); see the module doc."""
    month = parse_month(month)
    now = now or clock_now()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    slas = slas or all_slas()
    start, end = month_nights(month)
    today = now.astimezone(SHANGHAI).date()
    with ledger.engine.connect() as conn:
        first_ever = conn.execute(sa.select(sa.func.min(runs.c.night))).scalar_one_or_none()
        recorded = set(conn.execute(sa.select(runs.c.night).distinct().where(
            runs.c.night >= start.isoformat(), runs.c.night <= min(end, today).isoformat())).scalars())
    first = max(start, date.fromisoformat(first_ever)) if first_ever else None
    last = min(end, today)
    feeds = {name: Score(agency_of(name), feed=name) for name in sorted(slas)}
    if not recorded or first is None or first > last:
        return Scorecard(month, now, None, None, 0, [], [], {})

    nights = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    for night in nights:
        facts = [monitor.feed_night(ledger, name, night, slas) for name in feeds]
        found = {(f.feed, f.rule): f for f in evaluate(slas, facts, None, now=now,
                                                            night_budget=monitor.DEFAULT_NIGHT_BUDGET)}
        for fact in facts:
            _count_night(feeds[fact.feed], slas[fact.feed], fact, found, now)
    _count_rows(ledger, feeds, first, last)
    night_breaches = _count_breaches(ledger, feeds, start, last)

    agencies: dict[str, Score] = {}
    for score in feeds.values():
        total = agencies.setdefault(score.agency, Score(score.agency))
        total.feeds += (score.feed or "",)
        total.absorb(score)
    return Scorecard(month, now, first, last, len(recorded), list(feeds.values()),
                     [agencies[a] for a in sorted(agencies)], night_breaches)


def _count_night(score: Score, feed_sla: FeedSla, fact: FeedNight,
                 found: dict[tuple[str | None, str], Finding], now: datetime) -> None:
    if fact.delivered_at is not None and fact.event_lag_days and fact.event_lag_days.get("p90") is not None:
        score.event_p90s_d.append(float(fact.event_lag_days["p90"]))
    if not feed_sla.due(fact.night):
        return
    if fact.delivered_at is None:
        if now < feed_sla.deadline_at(fact.night):
            score.nights_pending += 1
            return
        score.nights_due += 1
        if fact.outcome == "failed":
            score.nights_failed += 1
        else:
            score.nights_missing += 1
        return
    score.nights_due += 1
    score.nights_delivered += 1
    late = found[(fact.feed, "late")]  # evaluate judges late on every delivered due night
    if not late.breached:
        score.nights_on_time += 1
    score.latencies_h.append((fact.delivered_at - available_at(feed_sla, fact.night)).total_seconds() / 3600.0)


def _count_rows(ledger: Ledger, feeds: dict[str, Score], first: date, last: date) -> None:
    query = (sa.select(pulls.c.feed, pulls.c.rows, quarantines.c.batch_id, quarantines.c.pulled,
                       quarantines.c.quarantined, quarantines.c.held)
             .join(runs, runs.c.id == pulls.c.run_id)
             .outerjoin(quarantines, quarantines.c.pull_id == pulls.c.id)
             .where(runs.c.night >= first.isoformat(), runs.c.night <= last.isoformat(),
                    pulls.c.backfill.is_(False), pulls.c.outcome.in_(("pulled", "held")))
             .order_by(pulls.c.id))
    with ledger.engine.connect() as conn:
        found = list(conn.execute(query).mappings())
    for r in found:
        score = feeds.get(r["feed"])
        if score is None:  # a feed without a contract any more
            continue
        rows = int(r["rows"] or 0)
        kept = int(r["quarantined"] or 0)
        score.rows_pulled += rows
        score.rows_quarantined += kept
        score.rows_delivered += max(0, rows - kept)
        if r["batch_id"] is not None:  # the same count as the monitor's error_rate rule
            held = bool(r["held"])
            score.rows_failing += monitor.failing_rows(ledger, r["batch_id"], int(r["pulled"])) if held else kept


def _count_breaches(ledger: Ledger, feeds: dict[str, Score], start: date, end: date) -> dict[str, int]:
    query = (sa.select(breaches.c.feed, breaches.c.rule, sa.func.count().label("n"))
             .where(breaches.c.night >= start.isoformat(), breaches.c.night <= end.isoformat())
             .group_by(breaches.c.feed, breaches.c.rule))
    night: dict[str, int] = {}
    with ledger.engine.connect() as conn:
        for r in conn.execute(query):
            if not r.feed:
                night[r.rule] = night.get(r.rule, 0) + int(r.n)
            elif r.feed in feeds:
                feeds[r.feed].breaches[r.rule] = int(r.n)
    return night


# --- the chart ------------------------------------------------------------------------------------------


def write_png(card: Scorecard, path: Path | str) -> Path:
    """Draw the scorecard as a PNG at ``path`` (written under a temporary name, then renamed); returns it.

    Per agency: on-time rate and completeness (nights, rows) as bars in percent, and the p90 (bar)
    and p50 (tick) of the delivery latency in hours. Uses matplotlib's ``Figure`` with the Agg
    canvas directly — never pyplot, so no display, no global backend state and no figure left
    open. Only agency names, figures and the month appear; the PNG's text chunks hold its title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from fundx.core.files import write_file_atomic

    height = 2.4 if card.empty else 2.0 + 0.7 * len(card.agencies)
    fig = Figure(figsize=(11, height), dpi=100)
    FigureCanvasAgg(fig)
    fig.text(0.5, 1 - 0.3 / height, card.title, ha="center", va="center", fontsize=14, fontweight="bold")
    if card.empty:
        fig.text(0.5, 0.45, f"no nights recorded in {card.month}", ha="center", va="center", fontsize=13,
                 color="#555555")
    else:
        _draw(fig, card, height)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={
        "Title": card.title,
        "Description": "on-time rate, completeness and delivery latency per agency (figures only)",
        "Software": "fundx",
    })
    target = Path(path)
    write_file_atomic(target, buffer.getvalue(), 0o600)  # like everything fundx writes: the owner's only
    return target


def _draw(fig: Any, card: Scorecard, height: float) -> None:
    import numpy as np

    agencies = card.agencies
    names = [a.agency for a in agencies]
    span = f"nights {card.first_night} – {card.last_night} ({card.nights_recorded} recorded)"
    slow = card.night_breaches.get("night_slow")
    if slow:
        span += f" · night_slow breaches: {slow}"
    fig.text(0.5, 1 - 0.58 / height, span, ha="center", va="center", fontsize=9, color="#555555")
    # fixed margins in inches (faster than a layout engine, and the same for every month)
    fig.subplots_adjust(left=1.55 / 11, right=1 - 0.2 / 11, top=1 - 1.2 / height, bottom=0.6 / height, wspace=0.06)
    y = np.arange(len(names))[::-1].astype(float)  # the first agency on top
    left, right = fig.subplots(1, 2, width_ratios=[3, 2], sharey=True)
    series = (("on time", "on_time_rate", "#2e7d32"), ("nights delivered", "nights_completeness", "#1565c0"),
              ("rows valid", "rows_completeness", "#90a4ae"))
    bar = 0.26
    for i, (label, attr, colour) in enumerate(series):
        offset = (1 - i) * bar
        values = [getattr(a, attr) for a in agencies]
        bars = left.barh(y + offset, [0.0 if v is None else v * 100 for v in values], height=bar * 0.95,
                         color=colour, label=label)
        for rect, v in zip(bars, values):
            text = "n/a" if v is None else f"{v * 100:.1f}"
            left.text(rect.get_width() + 1, rect.get_y() + rect.get_height() / 2, text, va="center", fontsize=8)
    left.set_xlim(0, 112)
    left.set_xticks(range(0, 101, 20))
    left.set_xlabel("percent: on time and delivered of the nights due, valid of the rows pulled")
    left.set_yticks(y, names)
    left.axvline(100, color="#bbbbbb", linewidth=0.8)
    left.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=3, fontsize=8, frameon=False, borderaxespad=0.3)

    p90 = [a.latency_p90_h for a in agencies]
    p50 = [a.latency_p50_h for a in agencies]
    top = max([v for v in p90 if v is not None] + [1.0])
    right.barh(y, [v or 0.0 for v in p90], height=0.5, color="#ef6c00", label="p90")
    right.scatter([v for v in p50 if v is not None], [yy for yy, v in zip(y, p50) if v is not None],
                  marker="|", s=300, color="black", label="p50", zorder=3)
    for yy, v90, v50, agency in zip(y, p90, p50, agencies):
        text = (f"p50 {v50:.2f} · p90 {v90:.2f} h" if v90 is not None
                else "nothing due" if not agency.nights_due else "no delivery")
        right.text(max(v90 or 0.0, 0.0) + top * 0.02, yy, text, va="center", fontsize=8)
    right.set_xlim(min(0.0, min([v for v in p50 + p90 if v is not None], default=0.0)), top * 1.7)
    right.set_xlabel("delivery latency, hours after the time of availability")
    right.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=2, fontsize=8, frameon=False, borderaxespad=0.3,
                 markerscale=0.5)
    for ax in (left, right):
        ax.grid(axis="x", color="#eeeeee")
        ax.set_axisbelow(True)


# --- the command ------------------------------------------------------------------------------------------


def _table(card: Scorecard):
    from rich.table import Table

    if card.empty:
        title = f"SLA scorecard {card.month}: no nights recorded"
    else:
        title = f"SLA scorecard {card.month} (nights {card.first_night} – {card.last_night})"
    table = Table(title=title)
    for col in COLUMNS:
        table.add_column(col, overflow="fold", justify="right" if col in ("nights due", "delivered") else "left")
    for row in card.rows():
        table.add_row(*row)
    return table


def scorecard_command(month: str | None, png: Path | None, as_json: bool, console, *,
                      now: datetime | None = None) -> int:
    """``fundx sla scorecard [--month YYYY-MM] [--png PATH] [--json]``: print the table (or JSON), write the PNG.

    Default month: the current one in Asia/Shanghai; default chart: ``FUNDX_HOME/reports/sla-YYYY-MM.png``.
    Returns the exit code: 0, 2 for a bad ``--month``, 1 when the ledger or the chart file fails.
    ``now`` (tests): the clock the month and its nights are judged at.
    """
    from rich.markup import escape

    from fundx.core.errors import FundxError

    try:
        key = current_month(now) if month is None else parse_month(month)
    except ValueError:
        console.print(f"[red]error:[/red] --month: {escape(repr(month))} is not a month (YYYY-MM, e.g. 2026-11)")
        return 2
    ledger = None
    target = png
    try:
        from fundx.core.settings import get_settings

        if target is None:
            target = get_settings().home / "reports" / f"sla-{key}.png"
        ledger = Ledger.from_settings()
        card = scorecard(ledger, key, now=now)
        write_png(card, target)
    except FundxError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        console.print(f"[yellow]what to do:[/yellow] {escape(exc.action)}")
        return 1
    except sa.exc.SQLAlchemyError as exc:  # the ledger's database is unreachable or refused the query
        console.print(f"[red]error:[/red] the ledger could not be read ({type(exc).__name__})")
        console.print("[yellow]what to do:[/yellow] check FUNDX_LEDGER_URL and that its database is up")
        return 1
    except OSError as exc:
        console.print(f"[red]error:[/red] could not write the chart {escape(str(target))}: "
                      f"{escape(exc.strerror or type(exc).__name__)}")
        return 1
    finally:
        if ledger is not None:
            ledger.dispose()
    if as_json:
        console.out(json.dumps({**card.as_json(), "png": str(target)}, ensure_ascii=False, indent=2), highlight=False)
        return 0
    console.print(_table(card))
    console.print(f"chart: {escape(str(target))}")
    return 0


__all__ = ("COLUMNS", "SCHEMA", "Score", "Scorecard", "agency_of", "available_at", "current_month",
                          "month_nights", "parse_month", "scorecard", "scorecard_command", "write_png")
