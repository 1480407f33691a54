"""The nightly purge, the exchange's side: what its contracts say is past its retention goes.

Each feed's periods come from its contract (:mod:`contracts.retention`); a contract that states none for
a kind of data keeps that kind (the report says so), and a contract that cannot be read keeps
everything of its feed (the report says why). Removed, per feed:

- ``sealed``: a sealed batch still in a stage's inbox (``FUNDX_HOME/inboxes/<stage>/<batch>/``), only
  once the stage **acknowledged** it and ``sealedRetention`` has passed since. An unacknowledged,
  refused, lost or in-flight batch is never touched.
- ``quarantine``: a quarantined batch's sealed rows (``FUNDX_HOME/quarantine/stewards/<batch>/``), only
  once every row is **decided** (released or rejected), every release delivered, and
  ``quarantineRetention`` has passed since the last decision.
- ``answers``: the stages' signed answers (``FUNDX_HOME/acks/<stage>/<file>``, then their ledger rows)
  and the ledger's per-rule failure counts (``rule_failures``), ``answerRetention`` after they were
  recorded (the night, for the failure counts). An answer's file goes before its row, so that an
  answer is never recorded twice.

Kept whatever the contracts say: the ledger's runs, pulls, watermarks, **deliveries** (what exactly-once
recovery and the next night read: a batch the ledger knows as delivered is never sent again, see
:mod:`fundx.exchange.recovery`), quarantines and decisions (counts, for the SLA scorecard and the
stewards' record), orders, and the audit trail itself. Each purge is one audit entry
(``retention.purged``) with the counts per feed and kind, written in the transaction that deletes the
ledger rows. The matching stage's side (its store and received batches) is :mod:`matching.retention`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from contracts.retention import KINDS, Period, Retention, feed_retention
from fundx.core.errors import FundxError, content_free
from fundx.core.settings import get_settings
from fundx.core.timeutil import now as clock_now
from fundx.exchange import quarantine
from fundx.ledger import Ledger
from fundx.ledger.runs import night_of
from fundx.ledger.schema import acks, deliveries, rule_failures
from fundx.wire.documents import acks_root
from fundx.wire.inbox import Inbox, inbox_for

log = logging.getLogger("fundx.retention")


@dataclass
class PurgeReport:
    """What a purge removed (or, dry, would remove): counts per feed and kind, and what it kept and why."""

    now: datetime
    dry_run: bool
    #: feed -> kind -> {"batches"/"files"/"rows"/...: n}
    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # kept, and why (no retention stated, undecided, ...)
    problems: list[str] = field(default_factory=list)  # what could not be purged (error type and action)
    #: ledger rows chosen to go, by table (acks, rule_failures): deleted with the audit entry by :func:`record`
    ledger_rows: dict[str, list[int]] = field(default_factory=dict)

    def add(self, feed: str, kind: str, what: str, n: int = 1) -> None:
        if n:
            slot = self.counts.setdefault(feed, {}).setdefault(kind, {})
            slot[what] = slot.get(what, 0) + n

    def total(self, kind: str | None = None, what: str | None = None) -> int:
        return sum(n for kinds in self.counts.values() for k, slot in kinds.items() if kind in (None, k)
                   for w, n in slot.items() if what in (None, w))

    def details(self) -> dict[str, Any]:
        """The audit entry's details: counts, notes, problems (content-free)."""
        return {"now": self.now.isoformat(), "counts": self.counts, "kept": self.notes[:200],
                "problems": self.problems[:50]}


def retentions(feeds: Iterable[str], report: PurgeReport) -> dict[str, Retention | None]:
    """Each feed's retention from its contract; None (everything kept) when its contract cannot be read."""
    found: dict[str, Retention | None] = {}
    for feed in sorted(set(feeds)):
        try:
            found[feed] = feed_retention(feed)
        except FileNotFoundError:
            found[feed] = None
            report.notes.append(f"{feed}: no contract: everything of it kept")
            continue
        except FundxError as exc:
            found[feed] = None
            report.problems.append(f"{feed}: {exc.kind}: {exc} — everything of it kept")
            continue
        retention = found[feed]
        assert retention is not None
        for kind, name in KINDS.items():
            if retention.of(kind) is None:
                report.notes.append(f"{feed}: {kind} kept: its contract states no {name}")
    return found


def ledger_feeds(ledger: Ledger) -> set[str]:
    """The feeds the ledger holds data of (deliveries, quarantines, answers), with the contracts' feeds."""
    from contracts import contract_names
    from fundx.ledger.schema import quarantines

    with ledger.engine.connect() as conn:
        found = set(conn.execute(sa.select(deliveries.c.feed).distinct()).scalars())
        found |= set(conn.execute(sa.select(quarantines.c.feed).distinct()).scalars())
        found |= {f for f in conn.execute(sa.select(acks.c.feed).distinct()).scalars() if f}
    return found | set(contract_names())


def purge_exchange(ledger: Ledger, report: PurgeReport, periods: dict[str, Retention | None], *,
                   home: Path | None = None, inbox: Inbox | None = None) -> None:
    """Remove the exchange's sealed batches, quarantines and answers past their retention (see the module)."""
    home = Path(home or get_settings().home)
    inbox = inbox or inbox_for(home)

    def period(feed: str, kind: str) -> Period | None:
        retention = periods.get(feed)
        return None if retention is None else retention.of(kind)

    _purge_inboxes(ledger, report, period, inbox)
    _purge_quarantine(ledger, report, period, home)
    _purge_answers(ledger, report, period, home)


def _purge_inboxes(ledger: Ledger, report: PurgeReport, period, inbox: Inbox) -> None:
    for d in ledger.deliveries(status=("acknowledged",)):
        keep = period(d.feed, "sealed")
        if keep is None or d.acknowledged_at is None or d.acknowledged_at >= keep.cutoff(report.now):
            continue
        parts = inbox.parts(d.stage, d.batch_id)
        if not parts and inbox.read_ready(d.stage, d.batch_id) is None and not inbox.links(d.stage, d.batch_id):
            continue  # the stage cleared it when it took it (the usual case)
        report.add(d.feed, "sealed", "inbox batches")
        report.add(d.feed, "sealed", "inbox parts", len(parts))
        if not report.dry_run:
            inbox.remove(d.stage, d.batch_id)
    for d in ledger.deliveries(status=("ready", "delivered", "sealing", "refused")):
        keep = period(d.feed, "sealed")
        if keep is not None and d.created_at < keep.cutoff(report.now) and inbox.parts(d.stage, d.batch_id):
            report.notes.append(f"{d.feed}: batch {d.batch_id} kept past its sealedRetention: {d.status}, "
                                f"not acknowledged by {d.stage}")


def _purge_quarantine(ledger: Ledger, report: PurgeReport, period, home: Path) -> None:
    store = quarantine.store_for(home)
    present = set(store.batches(quarantine.STEWARDS))
    for q in quarantine.batches(ledger):
        if q.batch_id not in present:
            continue  # purged already (the ledger keeps its counts)
        keep = period(q.feed, "quarantine")
        if keep is None:
            continue
        if q.open or q.released_pending:
            if q.open:
                report.notes.append(f"{q.feed}: quarantined batch {q.batch_id} kept: {q.open} rows undecided")
            else:
                report.notes.append(f"{q.feed}: quarantined batch {q.batch_id} kept: "
                                    f"{q.released_pending} released rows not delivered yet")
            continue
        made = quarantine.decisions_of(ledger, batch_id=q.batch_id)
        last = max((m.decided_at for m in made), default=None)
        if last is None or last >= keep.cutoff(report.now):
            continue
        report.add(q.feed, "quarantine", "batches")
        report.add(q.feed, "quarantine", "parts", len(store.parts(quarantine.STEWARDS, q.batch_id)))
        report.add(q.feed, "quarantine", "rows", q.quarantined)
        if not report.dry_run:
            store.remove(quarantine.STEWARDS, q.batch_id)


def _purge_answers(ledger: Ledger, report: PurgeReport, period, home: Path) -> None:
    root = acks_root(home)
    gone_acks: list[int] = []
    gone_failures: list[int] = []
    with ledger.engine.connect() as conn:
        answer_rows = list(conn.execute(sa.select(acks.c.id, acks.c.stage, acks.c.file, acks.c.feed,
                                                  acks.c.recorded_at)).mappings())
        failure_rows = list(conn.execute(sa.select(rule_failures.c.id, rule_failures.c.feed,
                                                   rule_failures.c.night)).mappings())
    unowned = 0
    for row in answer_rows:
        if not row["feed"]:
            unowned += 1  # an answer whose signature was refused names no feed it could be trusted for
            continue
        keep = period(row["feed"], "answers")
        if keep is None or row["recorded_at"] >= keep.cutoff(report.now):
            continue
        path = root / row["stage"] / row["file"]
        if path.is_file() or path.is_symlink():
            report.add(row["feed"], "answers", "files")
            if not report.dry_run:
                path.unlink()  # the file before the row: a file without its row would be recorded again
        report.add(row["feed"], "answers", "ledger rows")
        gone_acks.append(row["id"])
    if unowned:
        report.notes.append(f"{unowned} answers whose signature was refused kept: they name no feed")
    for row in failure_rows:
        keep = period(row["feed"], "answers")
        if keep is None or row["night"] >= night_of(keep.cutoff(report.now)):
            continue
        report.add(row["feed"], "answers", "rule failure rows")
        gone_failures.append(row["id"])
    report.ledger_rows = {"acks": gone_acks, "rule_failures": gone_failures}


def record(ledger: Ledger, report: PurgeReport) -> None:
    """Delete the ledger rows the purge chose and audit the purge, in one transaction (nothing, dry)."""
    if report.dry_run:
        return
    with ledger.audited() as conn:
        for chunk in _chunks(report.ledger_rows.get("acks", [])):
            conn.execute(acks.delete().where(acks.c.id.in_(chunk)))
        for chunk in _chunks(report.ledger_rows.get("rule_failures", [])):
            conn.execute(rule_failures.delete().where(rule_failures.c.id.in_(chunk)))
        ledger.audit(conn, "retention.purged", night_of(report.now), report.details())


def _chunks(ids: list[int], size: int = 500) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def failed(report: PurgeReport, step: str, exc: BaseException) -> None:
    """Note a step of the purge that failed (its error type and action; never a value), and go on."""
    error = content_free(exc)
    report.problems.append(f"{step}: {error.kind}: {error.action or error}")
    log.error("retention: %s failed: %s", step, error.kind)


def new_report(*, now: datetime | None = None, dry_run: bool = False) -> PurgeReport:
    return PurgeReport(now=now or clock_now(), dry_run=dry_run)
