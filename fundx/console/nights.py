"""What the console shows of the nights: per feed and night, figures read from the ledger (counts only).

A night is the date a run started on in Asia/Shanghai (``runs.night``). Per feed and night, over the
pulls of that night's runs (backfills aside, as the SLA monitor counts them):

- pulled: rows of the completed pulls (``pulled`` or ``held``);
- quarantined: rows kept for the stewards from batches that went on; held: rows of batches the batch
  policy held back whole (the CLI's "rejected"); valid: pulled less both;
- delivered / acknowledged: rows of those pulls' batches handed to the stage / acknowledged by it;
- released: rows the stewards released that the night's runs delivered;
- breaches: the SLA breaches the monitor recorded for the feed and night (open or recovered).

:func:`trend` draws the same figures over the last nights as an inline SVG's geometry; the template
renders it (no script, no external asset).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from fundx.ledger import Ledger
from fundx.ledger.records import HANDED_OVER
from fundx.ledger.schema import breaches, deliveries, pulls, quarantines, runs


@dataclass
class FeedNight:
    """One feed's figures on one night."""

    feed: str
    night: str
    pulls: int = 0
    failed: list[str] = field(default_factory=list)  # error types of failed pulls
    pulled: int = 0
    quarantined: int = 0
    held: int = 0
    delivered: int = 0
    acknowledged: int = 0
    released: int = 0
    batches: list[dict[str, Any]] = field(default_factory=list)  # quarantined batches: id, rows, held
    breaches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def valid(self) -> int:
        return max(self.pulled - self.quarantined - self.held, 0)

    @property
    def open_breaches(self) -> list[dict[str, Any]]:
        return [b for b in self.breaches if b["status"] == "open"]

    @property
    def sla(self) -> str:
        """``breached`` (an open breach), ``recovered`` (breaches, all recovered), ``no breach`` (none recorded:
        the monitor judges a night after it, so a night still running has none yet) or ``not pulled``."""
        if self.open_breaches:
            return "breached"
        if self.breaches:
            return "recovered"
        return "no breach" if self.pulls else "not pulled"


def nights(ledger: Ledger, limit: int = 30) -> list[str]:
    """The last ``limit`` nights that had a run, newest first."""
    query = sa.select(runs.c.night).group_by(runs.c.night).order_by(runs.c.night.desc()).limit(limit)
    with ledger.engine.connect() as conn:
        return [r.night for r in conn.execute(query)]


def figures(ledger: Ledger, wanted: list[str]) -> dict[tuple[str, str], FeedNight]:
    """(night, feed) -> the feed's figures that night, for the given nights (every feed the ledger saw)."""
    out: dict[tuple[str, str], FeedNight] = {}
    if not wanted:
        return out

    def one(night: str, feed: str) -> FeedNight:
        return out.setdefault((night, feed), FeedNight(feed=feed, night=night))

    with ledger.engine.connect() as conn:
        found = conn.execute(
            sa.select(pulls.c.id, pulls.c.feed, pulls.c.outcome, pulls.c.rows, pulls.c.error_type, runs.c.night)
            .join(runs, runs.c.id == pulls.c.run_id)
            .where(runs.c.night.in_(wanted), pulls.c.backfill.is_(False))).mappings().all()
        pull_night = {}
        for p in found:
            f = one(p["night"], p["feed"])
            f.pulls += 1
            if p["outcome"] in ("pulled", "held"):
                f.pulled += int(p["rows"] or 0)
                pull_night[p["id"]] = p["night"]
            else:
                f.failed.append(p["error_type"] or "failed")
        ids = list(pull_night)
        for chunk in _chunks(ids):
            for q in conn.execute(sa.select(quarantines).where(quarantines.c.pull_id.in_(chunk))).mappings():
                f = one(pull_night[q["pull_id"]], q["feed"])
                if q["held"]:
                    f.held += int(q["quarantined"])
                else:
                    f.quarantined += int(q["quarantined"])
                f.batches.append({"batch_id": q["batch_id"], "rows": int(q["quarantined"]), "held": bool(q["held"])})
            for d in conn.execute(sa.select(deliveries.c.feed, deliveries.c.pull_id, deliveries.c.rows,
                                            deliveries.c.status).where(deliveries.c.pull_id.in_(chunk))).mappings():
                f = one(pull_night[d["pull_id"]], d["feed"])
                if d["status"] in ("delivered", *HANDED_OVER):
                    f.delivered += int(d["rows"])
                if d["status"] == "acknowledged":
                    f.acknowledged += int(d["rows"])
        released = conn.execute(
            sa.select(deliveries.c.feed, deliveries.c.rows, deliveries.c.status, runs.c.night)
            .join(runs, runs.c.id == deliveries.c.run_id)
            .where(runs.c.night.in_(wanted), deliveries.c.pull_id.is_(None))).mappings()
        for d in released:  # a release has no pull of its own; it goes out with a run of the feed
            if d["status"] in ("delivered", *HANDED_OVER):
                f = one(d["night"], d["feed"])
                f.released += int(d["rows"])
                f.delivered += int(d["rows"])
                if d["status"] == "acknowledged":
                    f.acknowledged += int(d["rows"])
        for b in conn.execute(breaches.select().where(breaches.c.night.in_(wanted)).order_by(breaches.c.id)).mappings():
            if b["feed"]:
                one(b["night"], b["feed"]).breaches.append(dict(b))
    return out


def night_breaches(ledger: Ledger, night: str) -> list[dict[str, Any]]:
    """The breaches of the night itself (``night_slow``: recorded with no feed)."""
    with ledger.engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            breaches.select().where(breaches.c.night == night, breaches.c.feed == "")).mappings()]


def night_table(ledger: Ledger, night: str, feeds: list[str]) -> list[FeedNight]:
    """Every known feed's figures on one night (a feed not pulled that night has zeros)."""
    found = figures(ledger, [night])
    names = sorted(set(feeds) | {feed for _, feed in found})
    return [found.get((night, feed)) or FeedNight(feed=feed, night=night) for feed in names]


def trend(ledger: Ledger, *, feed: str | None = None, limit: int = 30, width: int = 760,
          height: int = 220) -> dict[str, Any]:
    """The last ``limit`` nights as stacked bars (valid, quarantined, held) with breach marks: SVG geometry."""
    wanted = list(reversed(nights(ledger, limit)))
    found = figures(ledger, wanted)
    per_night: list[dict[str, Any]] = []
    for night in wanted:
        items = [f for (n, name), f in found.items() if n == night and (feed is None or name == feed)]
        per_night.append({
            "night": night,
            "valid": sum(f.valid for f in items), "quarantined": sum(f.quarantined for f in items),
            "held": sum(f.held for f in items), "pulled": sum(f.pulled for f in items),
            "breaches": sum(len(f.breaches) for f in items),
            "open": sum(len(f.open_breaches) for f in items),
            "failed": sum(len(f.failed) for f in items),
        })
    left, right, top, bottom = 56, 12, 18, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = max((n["pulled"] for n in per_night), default=0) or 1
    slot = plot_w / max(len(per_night), 1)
    bar = max(min(slot * 0.7, 28), 2)
    bars = []
    for i, n in enumerate(per_night):
        x = left + i * slot + (slot - bar) / 2
        y = top + plot_h
        pieces = []
        for kind in ("valid", "quarantined", "held"):
            h = plot_h * n[kind] / top_value
            if n[kind]:
                h = max(h, 1.5)  # a few failing rows among thousands stay visible
            y -= h
            pieces.append({"kind": kind, "y": round(y, 1), "h": round(h, 1)})
        bars.append({**n, "x": round(x, 1), "w": round(bar, 1), "pieces": pieces, "mark_y": round(max(y - 8, 6), 1),
                     "cx": round(x + bar / 2, 1),
                     "label": n["night"][5:] if len(per_night) <= 10 or i % max(len(per_night) // 8, 1) == 0 else ""})
    return {"width": width, "height": height, "left": left, "top": top, "plot_w": plot_w, "plot_h": plot_h,
            "base": top + plot_h, "max": top_value, "bars": bars, "feed": feed}


def _chunks(items: list[Any], size: int = 500):
    for i in range(0, len(items), size):
        yield items[i:i + size]
