"""After a chaos night: what the stages hold and the stewards keep, against the generator's ground truth; the ledger's books.

The truth of a feed is what its agency serves for each night's window (``Sandbox.expected`` with no
fault armed): a multiset of row keys, one per row per window — so that a prisoner who is in two
nights' snapshots is expected twice, and anything beyond that is a duplicate. What the exchange did
is read back independently of its ledger: every sealed part the stages received (opened with the
stage's key) and every quarantined batch (opened with the stewards' key). Only keys and counts leave
this module.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass
class FeedTally:
    """One feed's rows: expected by the truth, delivered to its stage, quarantined, duplicated, lost."""

    feed: str
    expected: int = 0
    delivered: int = 0
    quarantined: int = 0
    duplicated: int = 0
    lost: int = 0
    unexpected: int = 0  # rows delivered that the agency never served: must be 0
    batches: int = 0
    canary: str = "-"  # where the canary row went: delivered | quarantined | missing

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Books:
    """The ledger's side: problems found (each a sentence without personal data) and counts."""

    problems: list[str] = field(default_factory=list)
    deliveries: int = 0
    acknowledged: int = 0
    abandoned: int = 0
    attempts: int = 0
    acks: int = 0


def _key(feed: str) -> str:
    from contracts import load_contract

    return load_contract(feed).key[0]


def _keys(values: Any) -> list[str]:
    return [str(v).strip() for v in values]


def expected_keys(sandbox: Any, feed: str, windows: list[tuple[datetime, datetime]]) -> Counter[str]:
    """The truth: the keys the agency serves in each window, counted once per window."""
    key = _key(feed)
    found: Counter[str] = Counter()
    for start, end in windows:
        found.update(_keys(sandbox.expected(feed, start, end)[key]))
    return found


def received_rows(home: Path, feeds: list[str]) -> dict[str, list[Any]]:
    """{feed: [frame per received batch]}: every part the stages took, opened with the stage's key."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from connectors import load_feed
    from fundx.crypto.keys import KeySettings, KeyStore
    from fundx.crypto.opening import open_sealed

    store = KeyStore(KeySettings(), home=home)
    out: dict[str, list[Any]] = {feed: [] for feed in feeds}
    by_stage: dict[str, list[str]] = {}
    for feed in feeds:
        by_stage.setdefault(load_feed(feed).stage, []).append(feed)
    for stage, names in by_stage.items():
        key, cert = store.stage_keys(stage)[0]
        for folder in sorted((home / "stages" / stage / "received").glob("*")):
            owner = next((f for f in names if folder.name.startswith(f + "-")), None)
            if owner is None:
                continue
            tables = []
            for path in sorted(folder.glob("part-*.p7m")):
                opened = open_sealed(path.read_bytes(), recipient_key=key, recipient_cert=cert,
                                     trusted_ca=store.ca(), crl=store.crl())
                tables.append(pq.read_table(io.BytesIO(opened.payload)))
            if tables:
                out[owner].append(pa.concat_tables(tables, promote_options="permissive").to_pandas())
    return out


def tally(sandbox: Any, ledger: Any, home: Path, feeds: list[str], windows: list[tuple[datetime, datetime]],
          canary: str, canary_keys: dict[str, str]) -> list[FeedTally]:
    """Expected, delivered, quarantined, duplicated and lost rows per feed (see the module docstring)."""
    from fundx.exchange import quarantine
    from sandbox.schema import feed_schema

    received = received_rows(home, feeds)
    result = []
    for feed in feeds:
        key = _key(feed)
        t = FeedTally(feed)
        truth = expected_keys(sandbox, feed, windows)
        delivered: Counter[str] = Counter()
        canary_where = set()
        for frame in received[feed]:
            delivered.update(_keys(frame[key]))
            column = feed_schema(feed).identity
            if column is not None and column in frame.columns and (frame[column].astype(str).str.strip() == canary).any():
                canary_where.add("delivered")
        kept: Counter[str] = Counter()
        for q in quarantine.batches(ledger, feed=feed):
            rows = quarantine.read_rows(ledger, q.batch_id, home=home)
            kept.update(_keys(rows[key]))
            if canary_keys.get(feed) in set(_keys(rows[key])):
                canary_where.add("quarantined")
        t.batches = len(received[feed])
        t.expected = sum(truth.values())
        t.delivered = sum(delivered.values())
        t.quarantined = sum(kept.values())
        handed = delivered + kept
        t.duplicated = sum(max(0, n - truth[k]) for k, n in handed.items() if k in truth)
        t.lost = sum(max(0, n - handed[k]) for k, n in truth.items())
        t.unexpected = sum(n for k, n in handed.items() if k not in truth)
        t.canary = "+".join(sorted(canary_where)) or ("missing" if feed in canary_keys else "-")
        result.append(t)
    return result


def books(ledger: Any, home: Path, feeds: list[str], final_end: datetime) -> Books:
    """The ledger's books after the night: one delivery per batch, every one acknowledged, watermarks
    at the night's end and resting on a recorded pull, the audit trail unbroken, nothing left behind."""
    import sqlalchemy as sa

    from fundx.exchange import quarantine
    from fundx.exchange.handoff import batch_id_for
    from fundx.ledger.schema import pulls, watermarks

    b = Books()
    delivered = ledger.deliveries()
    ids = [d.batch_id for d in delivered]
    if len(ids) != len(set(ids)):
        b.problems.append(f"{len(ids) - len(set(ids))} batch ids with more than one delivery row")
    acked = {a["batch_id"] for a in ledger.ack_records(outcome="received")}
    b.acks = len(ledger.ack_records())
    for d in delivered:
        b.deliveries += 1
        b.attempts += d.attempts
        if d.status == "abandoned":
            b.abandoned += 1
        elif d.status == "acknowledged":
            b.acknowledged += 1
            if d.batch_id not in acked:
                b.problems.append(f"delivery {d.batch_id} is acknowledged without a recorded acknowledgement")
        else:
            b.problems.append(f"delivery {d.batch_id} ended {d.status}, not acknowledged")
    received = {p.name for p in (home / "stages").glob("*/received/*")}
    for d in delivered:
        if d.status == "acknowledged" and d.batch_id not in received:
            b.problems.append(f"delivery {d.batch_id} is acknowledged but not in its stage's received batches")
    unknown = received - {d.batch_id for d in delivered if d.status == "acknowledged"}
    if unknown:
        b.problems.append(f"{len(unknown)} received batches the ledger does not record as acknowledged")
    marks = ledger.watermarks()
    with ledger.engine.connect() as conn:
        for feed in feeds:
            if feed not in marks:
                b.problems.append(f"{feed} has no watermark")
                continue
            if marks[feed] != final_end:
                b.problems.append(f"{feed}: watermark {marks[feed].isoformat()} is not the night's end")
            mark = conn.execute(watermarks.select().where(watermarks.c.feed == feed)).mappings().one()
            pull = conn.execute(sa.select(pulls).where(pulls.c.id == mark["pull_id"])).mappings().one()
            if pull["outcome"] not in ("pulled", "held") or pull["window_end"] != mark["value"]:
                b.problems.append(f"{feed}: the watermark does not rest on a recorded pull of its window")
    handed = set(ids) | {q.batch_id for q in quarantine.batches(ledger)}
    for p in ledger.pulls(limit=1_000_000):
        if p.outcome == "pulled" and p.rows and p.digest and batch_id_for(p.feed, p.window, p.digest) not in handed:
            b.problems.append(f"pull {p.id} of {p.feed} with rows has neither a delivery nor a quarantine")
    verdict = ledger.verify_audit()
    if not verdict.ok:
        b.problems.append(f"the audit trail is broken at entry {verdict.bad_seq}")
    left = list((home / "inboxes").glob("*/*")) if (home / "inboxes").is_dir() else []
    if left:
        b.problems.append(f"{len(left)} folders left in the stages' inboxes")
    spool = list((home / "spool").glob("*")) if (home / "spool").is_dir() else []
    if spool:
        b.problems.append(f"{len(spool)} spools left behind")
    folder = home / "quarantine" / "stewards"
    on_disk = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    recorded = {q.batch_id for q in quarantine.batches(ledger)}
    if on_disk != recorded:
        b.problems.append(f"quarantine folders and records differ: {len(on_disk - recorded)} unrecorded, "
                          f"{len(recorded - on_disk)} missing")
    return b
