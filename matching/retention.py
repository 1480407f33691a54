"""The nightly purge, whole: the exchange's side (:mod:`fundx.exchange.retention`) and the matching stages'.

This module sits at the matching layer because it is the one that sees both the exchange and the
stages' stores. Per stage (``FUNDX_HOME/stages/<stage>/``):

- ``store``: the store's rows of a batch go once the feed's ``retention`` has passed since the batch's
  receipt (``received_at``), **except** rows that hold the subject of an open inspection order
  (``orders.status = open``: a person's or account's token, a bill key, a credit code in any of the row's
  text columns) — the evidence of an open order stays until it closes. Cases (issue 20) will take the
  orders' place here. Every table of batch files is then **compacted** into one file
  (:meth:`matching.store.Store.compact`), so that the store does not grow a file per batch for ever.
- ``sealed``: the sealed parts a stage keeps in ``received/<batch>/`` go once ``sealedRetention`` has
  passed since the stage acknowledged the batch, and only once the batch is in the stage's store; the
  receipt and ``DONE`` stay (the stage's proof that it took the batch, which refuses a replay).

The report's counts are per feed and kind; the purge is audited once (``retention.purged``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from contracts.retention import Retention
from fundx.core.settings import get_settings
from fundx.crypto.keys import KeyStore
from fundx.exchange import retention as exchange
from fundx.exchange.retention import PurgeReport
from fundx.ledger import Ledger
from fundx.ledger.schema import orders
from fundx.stage import Stage
from fundx.wire.inbox import PART_SUFFIX
from matching.store import SNAPSHOT, Store

#: store columns that never hold an order's subject
_NOT_SUBJECTS = ("batch", "id_masked", "received_at")


def purge(*, ledger: Ledger | None = None, now: datetime | None = None, dry_run: bool = False,
          home: Path | None = None, keys: KeyStore | None = None) -> PurgeReport:
    """Remove everything past its contract's retention, compact the stores, audit it; the report says what.

    A step that fails is a problem in the report (its error type and action) and the others go on;
    ``dry_run`` counts what would go and changes nothing (no audit entry either).
    """
    ledger = ledger or Ledger.from_settings()
    home = Path(home or get_settings().home)
    keys = keys or KeyStore(home=home)
    report = exchange.new_report(now=now, dry_run=dry_run)
    periods = exchange.retentions(exchange.ledger_feeds(ledger), report)
    try:
        exchange.purge_exchange(ledger, report, periods, home=home)
    except Exception as exc:  # noqa: BLE001 - reported; the stages' purge goes on
        exchange.failed(report, "the exchange's data", exc)
    batches = _batches(ledger)
    subjects = _open_subjects(ledger)
    for stage in _stages(home):
        try:
            purge_stage(stage, report, periods, batches, subjects, home=home, keys=keys)
        except Exception as exc:  # noqa: BLE001 - reported; the other stages go on
            exchange.failed(report, f"stage {stage}", exc)
    exchange.record(ledger, report)
    return report


def purge_stage(stage_name: str, report: PurgeReport, periods: dict[str, Retention | None],
                batches: dict[str, tuple[str, datetime | None]], subjects: set[str], *, home: Path,
                keys: KeyStore) -> None:
    """One stage's store rows and received sealed parts past their retention; its store compacted."""
    store = Store(stage_name, home=home, keys=keys)
    for table in store.tables():
        if store.names(table) in ([], [SNAPSHOT]):
            continue
        dropped: dict[str, int] = {}

        def keep(rows: pa.Table, dropped: dict[str, int] = dropped) -> pa.Table:
            return _kept_rows(rows, report, periods, batches, subjects, dropped)

        done = store.compact(table, keep, dry_run=report.dry_run)
        for feed, n in dropped.items():
            report.add(feed, "store", "rows", n)
        if done.files_before != done.files_after:
            report.add(f"stage {stage_name}", "compacted", f"{table} files", done.files_before - done.files_after)
    stage = Stage(stage_name, home=home, keys=keys)
    tables = store.tables()
    for batch in stage.received():
        feed, acknowledged = batches.get(batch, ("", None))
        retention = periods.get(feed) if feed else None
        period = retention.of("sealed") if retention is not None else None
        if period is None or acknowledged is None or acknowledged >= period.cutoff(report.now):
            continue
        parts = sorted(p for p in (stage.received_dir / batch).glob(f"*{PART_SUFFIX}") if not p.is_symlink())
        if not parts:
            continue
        if not any(store.has(t, batch) for t in tables):
            report.notes.append(f"{feed}: received batch {batch} kept at {stage_name}: not in its store yet")
            continue
        report.add(feed, "sealed", "received batches")
        report.add(feed, "sealed", "received parts", len(parts))
        if not report.dry_run:
            for part in parts:
                part.unlink()


def _kept_rows(rows: pa.Table, report: PurgeReport, periods: dict[str, Retention | None],
               batches: dict[str, tuple[str, datetime | None]], subjects: set[str],
               dropped: dict[str, int]) -> pa.Table:
    if "batch" not in rows.column_names or "received_at" not in rows.column_names or not rows.num_rows:
        return rows
    received = rows.group_by("batch").aggregate([("received_at", "max")])
    expired: list[str] = []
    for batch, at in zip(received["batch"].to_pylist(), received["received_at_max"].to_pylist()):
        feed = batches.get(batch, (None, None))[0]
        retention = periods.get(feed) if feed else None
        period = retention.of("store") if retention is not None else None
        if period is not None and at is not None and at < period.cutoff(report.now):
            expired.append(batch)
    if not expired:
        return rows
    gone = pc.is_in(rows["batch"], value_set=pa.array(expired, pa.string()))
    if subjects:
        held = pa.array([False] * rows.num_rows)
        wanted = pa.array(sorted(subjects), pa.string())
        for name in rows.column_names:
            column = rows[name]
            if name in _NOT_SUBJECTS or not pa.types.is_string(column.type):
                continue
            held = pc.or_(held, pc.fill_null(pc.is_in(column, value_set=wanted), False))
        kept_for_orders = pc.and_(gone, held)
        n_held = pc.sum(pc.cast(kept_for_orders, pa.int64())).as_py() or 0
        if n_held:
            report.notes.append(f"{n_held} store rows past their retention kept: an open inspection order points at them")
        gone = pc.and_(gone, pc.invert(held))
    feeds = [batches.get(b, ("", None))[0] for b in rows["batch"].filter(gone).to_pylist()]
    for feed in feeds:
        dropped[feed] = dropped.get(feed, 0) + 1
    return rows.filter(pc.invert(gone))


def _batches(ledger: Ledger) -> dict[str, tuple[str, datetime | None]]:
    """batch id -> (feed, when its stage acknowledged it) for every delivery the ledger knows."""
    return {d.batch_id: (d.feed, d.acknowledged_at if d.status == "acknowledged" else None)
            for d in ledger.deliveries()}


def _open_subjects(ledger: Ledger) -> set[str]:
    with ledger.engine.connect() as conn:
        return set(conn.execute(sa.select(orders.c.subject).where(orders.c.status == "open")).scalars())


def _stages(home: Path) -> list[str]:
    folder = home / "stages"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.is_symlink()
                  and ((p / "store").is_dir() or (p / "received").is_dir()))


def summary_rows(report: PurgeReport) -> list[dict[str, Any]]:
    """The report as rows (feed, kind, what, count): for the CLI's table and the night's artifact."""
    return [{"feed": feed, "kind": kind, "what": what, "count": n}
            for feed, kinds in sorted(report.counts.items()) for kind, slot in sorted(kinds.items())
            for what, n in sorted(slot.items())]
