"""The stewards' quarantine: rows that failed their contract, sealed, counted, and decided on.

When a batch is checked (:mod:`contracts.validate`) its failing rows — or, when the contract's batch
policy holds the batch back, all of its rows — are sealed for the ``stewards`` certificate into
``FUNDX_HOME/quarantine/stewards/<batch_id>/`` (the same CMS sealing and Parquet parts as a stage's
inbox) in the handoff's sealing step, and recorded in the ledger in the handoff's one commit
(:mod:`fundx.exchange.handoff`): the ``quarantines`` row (pulled / valid / quarantined, held or not, why),
one ``rule_failures`` row per rule that failed, and an audit entry. Nothing of a row's content
reaches the ledger: only counts, rule ids, batch ids and row numbers.

Every quarantined row has a number (``_row``, 1..n, in the order of the pulled batch), the rules it
broke (``_rules``, ``;``-separated) and its position in the pulled batch (``_position``).

Stewards decide with :func:`decide` (the CLI's ``fundx failures release|reject``): a set of rows
(all still open, some numbers, or all failing one rule) with a mandatory reason, recorded and
audited in one transaction that first re-reads what is decided already, so no row is decided twice.
A release is ``pending`` until the next run of the feed hands the released rows to the feed's stage
as a batch of their own (``<batch_id>-r<decision>``), with the same exactly-once steps as any batch:
the decision becomes ``delivered`` in the same commit that records the delivery.

The exchange reads the quarantine back (to deliver released rows) with the stewards' private key
(``FUNDX_KEYS_STAGE_KEYS[stewards]``; in development FUNDX_HOME/keys/stages/stewards.key).
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from fundx.core.columns import DEFECT, RAW
from fundx.core.errors import ConfigurationError, DecisionError, SealError, UnknownSignerError
from fundx.core.identity import has_id_like, mask_account, mask_id, mask_id_like
from fundx.core.timeutil import UTC, Window
from fundx.crypto.keys import KeyStore
from fundx.crypto.opening import open_sealed, recipients_among
from fundx.ledger import Ledger
from fundx.ledger.database import inserted_id
from fundx.ledger.schema import decisions, quarantines, rule_failures
from fundx.wire.inbox import LocalInbox, PartFile, part_name

STEWARDS = "stewards"
ROW = "_row"
POSITION = "_position"
RULES = "_rules"
BOOKKEEPING = (ROW, POSITION, RULES, DEFECT, RAW)

MIN_REASON = 8
MAX_REASON = 500


def store_for(home: Path) -> LocalInbox:
    """The quarantine's folders: ``home/quarantine/stewards/<batch_id>/``."""
    return LocalInbox(Path(home) / "quarantine")


# --- what is written ---------------------------------------------------------------------------


def quarantine_frame(checked: Any, *, held: bool) -> Any:
    """The rows to keep for the stewards, numbered, with the rules each broke.

    Normally the failing rows; for a held batch every row (passing rows have no rules).
    """

    rows = held_rows(checked.valid, checked.quarantined) if held else checked.quarantined
    rows = rows.copy()
    positions = rows.index.to_numpy()
    rows.reset_index(drop=True, inplace=True)
    rows[RULES] = rows[RULES].astype("str")
    rows.insert(0, POSITION, positions.astype("int64"))
    rows.insert(0, ROW, range(1, len(rows) + 1))
    return rows


def held_rows(valid: Any, failed: Any) -> Any:
    """A held batch's rows for the stewards, in pull order: the valid ones (no rules) with the failing
    ones, the bookkeeping columns in one order whichever part has which."""
    import pandas as pd

    rows = pd.concat([valid.assign(**{RULES: ""}), failed]).sort_index(kind="stable")
    return rows[[c for c in rows.columns if c != RULES] + [RULES]]


def record(ledger: Ledger, conn: sa.Connection, *, batch_id: str, feed: str, night: str, run_id: int,
           pull_id: int | None, window: Window, digest: str, contract_version: str | None, checked: Any,
           held: bool, reason: str | None, files: Sequence[PartFile]) -> None:
    """Record a batch's quarantine and its failures per rule, inside the handoff's commit."""
    report = checked.report
    kept = report["rows"] if held else report["quarantined"]
    if kept:
        conn.execute(quarantines.insert().values(
            batch_id=batch_id, feed=feed, night=night, run_id=run_id, pull_id=pull_id,
            window_start=window.start, window_end=window.end, digest=digest, contract_version=contract_version,
            pulled=report["rows"], valid=0 if held else report["valid"], quarantined=kept, held=held,
            reason=reason, parts=len(files), bytes=sum(f.bytes for f in files), created_at=datetime.now(UTC),
        ))
    record_rule_failures(conn, batch_id=batch_id, feed=feed, night=night, report=report)
    if kept:
        ledger.audit(conn, "quarantine.held" if held else "quarantine.recorded", batch_id, {
            "feed": feed, "rows": report["rows"], "quarantined": kept, "held": held, "reason": reason,
            "rules": {r["rule"]: r["failed"] for r in report["rules"] if r["failed"]},
        })


def record_rule_failures(conn: sa.Connection, *, batch_id: str, feed: str, night: str, report: dict[str, Any]) -> None:
    """One row per rule that failed in the batch (rules that passed are implied)."""
    failed = [r for r in report["rules"] if r["failed"]]
    if failed:
        conn.execute(rule_failures.insert(), [
            {"batch_id": batch_id, "feed": feed, "night": night, "rule": r["rule"], "failed": r["failed"],
             "rows": report["rows"]} for r in failed
        ])


# --- what the stewards see ---------------------------------------------------------------------


@dataclass(frozen=True)
class Quarantined:
    """One quarantined (or held) batch with what has been decided about it (counts only)."""

    batch_id: str
    feed: str
    night: str
    window: Window
    contract_version: str | None
    pull_id: int | None
    pulled: int
    valid: int
    quarantined: int
    held: bool
    reason: str | None
    parts: int
    released: int
    rejected: int
    released_pending: int

    @property
    def open(self) -> int:
        """Rows no steward has decided on yet."""
        return self.quarantined - self.released - self.rejected


@dataclass(frozen=True)
class Decision:
    """One steward's decision about rows of a quarantined batch."""

    id: int
    batch_id: str
    feed: str
    action: str  # release | reject
    rows: tuple[int, ...]
    rule: str | None
    reason: str
    actor: str
    decided_at: datetime
    status: str  # pending | delivered (release) | done (reject)
    delivered_batch_id: str | None

    @property
    def release_batch_id(self) -> str:
        """The id the released rows are delivered under."""
        return f"{self.batch_id}-r{self.id}"


def _decision(row: Any) -> Decision:
    return Decision(
        id=row["id"], batch_id=row["batch_id"], feed=row["feed"], action=row["action"],
        rows=tuple(json.loads(row["rows_json"])), rule=row["rule"], reason=row["reason"], actor=row["actor"],
        decided_at=row["decided_at"], status=row["status"], delivered_batch_id=row["delivered_batch_id"],
    )


def _where(query: Any, table: sa.Table, **equal: str | None) -> Any:
    """The query narrowed to rows whose columns equal the given values (None: not narrowed)."""
    for column, value in equal.items():
        if value:
            query = query.where(table.c[column] == value)
    return query


def batches(ledger: Ledger, *, feed: str | None = None, night: str | None = None,
            batch_id: str | None = None, pull_ids: Sequence[int] | None = None) -> list[Quarantined]:
    """Quarantined batches, newest first, with the rows released and rejected so far."""
    query = _where(quarantines.select().order_by(quarantines.c.id.desc()), quarantines,
                   feed=feed, night=night, batch_id=batch_id)
    if pull_ids is not None:
        query = query.where(quarantines.c.pull_id.in_(list(pull_ids)))
    with ledger.engine.connect() as conn:
        found = list(conn.execute(query).mappings())
        decided = _decided_counts(conn, [r["batch_id"] for r in found])
    return [
        Quarantined(
            batch_id=r["batch_id"], feed=r["feed"], night=r["night"], window=Window(r["window_start"], r["window_end"]),
            contract_version=r["contract_version"], pull_id=r["pull_id"], pulled=r["pulled"], valid=r["valid"],
            quarantined=r["quarantined"], held=bool(r["held"]), reason=r["reason"], parts=r["parts"],
            **decided.get(r["batch_id"], {"released": 0, "rejected": 0, "released_pending": 0}),
        )
        for r in found
    ]


def batches_by_pull(ledger: Ledger, pull_ids: Sequence[int]) -> list[Quarantined]:
    """The quarantined batches these pulls made."""
    return batches(ledger, pull_ids=pull_ids) if pull_ids else []


def _decided_counts(conn: sa.Connection, batch_ids: list[str]) -> dict[str, dict[str, int]]:
    if not batch_ids:
        return {}
    query = sa.select(decisions.c.batch_id, decisions.c.action, decisions.c.status,
                      sa.func.sum(decisions.c.rows).label("n")).where(
        decisions.c.batch_id.in_(batch_ids)).group_by(decisions.c.batch_id, decisions.c.action, decisions.c.status)
    counts: dict[str, dict[str, int]] = {}
    for r in conn.execute(query):
        c = counts.setdefault(r.batch_id, {"released": 0, "rejected": 0, "released_pending": 0})
        n = int(r.n or 0)
        if r.action == "release":
            c["released"] += n
            if r.status == "pending":
                c["released_pending"] += n
        else:
            c["rejected"] += n
    return counts


def batch(ledger: Ledger, batch_id: str) -> Quarantined:
    """One quarantined batch; DecisionError naming it if there is none."""
    found = batches(ledger, batch_id=batch_id)
    if not found:
        raise DecisionError(f"there is no quarantined batch {batch_id}",
                            action="list them with fundx failures list")
    return found[0]


def rule_counts(ledger: Ledger, *, feed: str | None = None, night: str | None = None,
                batch_id: str | None = None) -> list[dict[str, Any]]:
    """Failures per rule and batch: {batch_id, feed, night, rule, failed, rows}, newest batches first."""
    query = _where(rule_failures.select().order_by(rule_failures.c.id.desc()), rule_failures,
                   feed=feed, night=night, batch_id=batch_id)
    with ledger.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def decisions_of(ledger: Ledger, *, batch_id: str | None = None, feed: str | None = None,
                 status: str | None = None, conn: sa.Connection | None = None) -> list[Decision]:
    """Decisions, oldest first."""
    query = _where(decisions.select().order_by(decisions.c.id), decisions, batch_id=batch_id, feed=feed,
                   status=status)
    if conn is not None:
        return [_decision(r) for r in conn.execute(query).mappings()]
    with ledger.engine.connect() as own:
        return [_decision(r) for r in own.execute(query).mappings()]


def read_rows(ledger: Ledger, batch_id: str, *, keys: KeyStore | None = None, home: Path | None = None) -> Any:
    """The quarantined rows of a batch, decrypted and verified (the stewards' key), as a DataFrame.

    Every part must open with the stewards' key, be signed by a certificate of the trusted CA and
    carry a manifest naming this batch, its feed and the stewards; anything else is a SealError.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fundx.core.settings import get_settings

    record = batch(ledger, batch_id)
    home = Path(home or get_settings().home)
    keys = keys or KeyStore(home=home)
    pairs = keys.stage_keys(STEWARDS)
    if not pairs:
        raise ConfigurationError("the stewards' private key is not available",
                                 action="set FUNDX_KEYS_STAGE_KEYS for stewards (development: fundx keys init)")
    store = store_for(home)
    names = [part_name(n, record.parts) for n in range(1, record.parts + 1)]
    missing = [n for n in names if n not in set(store.parts(STEWARDS, batch_id))]
    if missing and len(missing) == record.parts and not record.open and not record.released_pending:
        raise SealError(f"quarantined batch {batch_id}: its rows were purged once decided and past the contract's "
                        f"quarantineRetention", action="the ledger keeps its counts and decisions (fundx failures show)")
    if missing:
        raise SealError(f"quarantined batch {batch_id}: {len(missing)} of its {record.parts} sealed parts are "
                        f"missing from {store.where(STEWARDS, batch_id)}",
                        action="restore the quarantine folder from backup; the ledger keeps the counts")
    ca, crl, exchange = keys.ca(), keys.crl(), keys.exchange_certificate()
    tables = []
    for number, name in enumerate(names, start=1):
        data = store.read_part(STEWARDS, batch_id, name)
        usable = recipients_among(data, [cert for _, cert in pairs])
        key, cert = next(((k, c) for k, c in pairs if c in usable), pairs[0])
        opened = open_sealed(data, recipient_key=key, recipient_cert=cert, trusted_ca=ca, crl=crl,
                             expect={"batch_id": batch_id, "feed": record.feed, "recipient": STEWARDS,
                                     "part": number, "parts": record.parts})
        if opened.signer.subject != exchange.subject:  # any CA-issued signer would verify: only the exchange seals
            raise UnknownSignerError(f"quarantined batch {batch_id}: part {number} is not signed by the exchange")
        tables.append(pq.read_table(pa.BufferReader(opened.payload)))
    frame = pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame()
    if len(frame) != record.quarantined:
        raise SealError(f"quarantined batch {batch_id}: {len(frame)} rows in its parts, "
                        f"{record.quarantined} recorded in the ledger")
    return frame


# --- deciding ----------------------------------------------------------------------------------


#: one piece of a row selection: a row number or a range of them (12 digits at most: never an identity number)
_ROW_PIECE = re.compile(r"([0-9]{1,12})(?:-([0-9]{1,12}))?")
#: the widest range one piece may name
_MAX_RANGE = 10_000_000
_ROWS_ACTION = "give row numbers as the batch shows them (fundx failures show, the console): 1,3,7-9"


def parse_rows(given: str | Iterable[str] | None) -> list[int] | None:
    """Row numbers as a steward gives them, sorted and without repeats: the CLI's ``--rows "1,3,7-9"``,
    or the console's ticked boxes ``["1", "3"]`` (each may be a list or range too).

    The one parser of both front doors. None: no rows named (:func:`decide` then takes every open
    row). Anything else must name at least one row, and every piece must be a number or a range
    ``a-b`` of numbers from 1 (ASCII digits only: no sign, no ``_``, no other scripts' digits), or it
    is a DecisionError. Whether the rows exist in the batch is for :func:`decide` to check.
    """
    if given is None:
        return None
    texts = [given] if isinstance(given, str) else [str(g) for g in given]
    rows: set[int] = set()
    for text in texts:
        for piece in text.split(","):
            piece = piece.strip()
            if not piece:
                continue
            found = _ROW_PIECE.fullmatch(piece)
            start, end = (int(found.group(1)), int(found.group(2) or found.group(1))) if found else (0, 0)
            if start < 1 or end < start:
                raise DecisionError(f"row numbers: {_piece(piece)} is not a row number from 1 or a range like 7-9",
                                    action=_ROWS_ACTION)
            if end - start >= _MAX_RANGE:
                raise DecisionError(f"row numbers: {_piece(piece)} is a range of more than {_MAX_RANGE:,} rows",
                                    action=_ROWS_ACTION)
            rows.update(range(start, end + 1))
    if not rows:
        raise DecisionError("no row numbers were given", action=_ROWS_ACTION + "; leave them out to decide every "
                                                                               "open row")
    return sorted(rows)


def _piece(piece: str) -> str:
    """A refused piece of a row selection, quoted for the message if it is short and not shaped like an
    identity number (someone may paste one where a row number belongs)."""
    return repr(piece) if len(piece) <= 16 and not has_id_like(piece) else "one of them"


def check_reason(reason: str | None) -> str:
    """A decision's reason: required, plain, and free of anything shaped like an identity number."""
    text = " ".join((reason or "").split())
    if len(text) < MIN_REASON:
        raise DecisionError(f"a decision needs a reason of at least {MIN_REASON} characters",
                            action="say why, e.g. --reason \"agency confirmed the dates by phone, ticket 4411\"")
    if len(text) > MAX_REASON:
        raise DecisionError(f"the reason is longer than {MAX_REASON} characters", action="shorten the reason")
    if has_id_like(text):
        raise DecisionError("the reason contains something shaped like an identity number; reasons are audited "
                            "in plain text", action="refer to rows by their number (fundx failures show), not by identity")
    return text


def decide(ledger: Ledger, batch_id: str, action: str, *, reason: str, actor: str, rows: Iterable[int] | None = None,
           rule: str | None = None, keys: KeyStore | None = None, home: Path | None = None) -> Decision:
    """Release or reject rows of a quarantined batch; returns the decision recorded.

    ``rows``: quarantine row numbers (from 1 to the batch's count, at least one); ``rule``: every open
    row that broke this rule; neither: every open row. A row already decided, a number out of range
    (0 and below too), an empty selection, a rule no open row broke, or a missing reason is a
    DecisionError and nothing is recorded: this is where the CLI's and the console's decisions are checked.
    """
    if action not in ("release", "reject"):
        raise DecisionError(f"unknown decision {action!r}: release or reject")
    text = check_reason(reason)
    actor = (actor or "").strip()[:64] or "unknown"
    record = batch(ledger, batch_id)
    wanted = _chosen_rows(record, rows) if rows is not None else None
    if wanted is not None and rule is not None:
        raise DecisionError("give --rows or --rule, not both")
    by_rule: set[int] | None = None
    if rule is not None:
        frame = read_rows(ledger, batch_id, keys=keys, home=home)
        broke = frame[RULES].str.split(";").apply(lambda ids: rule in ids)
        by_rule = set(frame.loc[broke, ROW].astype(int).tolist())
        if not by_rule:
            raise DecisionError(f"no row of batch {batch_id} broke rule {rule!r}",
                                action="see the rules with fundx failures show " + batch_id)
    malformed = _malformed_rows(ledger, batch_id, keys=keys, home=home) if action == "release" else set()
    with ledger.audited() as conn:  # decided rows re-read under the audit lock: no row is decided twice
        taken: dict[int, int] = {}
        for d in decisions_of(ledger, batch_id=batch_id, conn=conn):
            taken.update(dict.fromkeys(d.rows, d.id))
        open_rows = [r for r in range(1, record.quarantined + 1) if r not in taken]
        if wanted is not None:
            twice = [r for r in wanted if r in taken]
            if twice:
                ids = sorted({taken[r] for r in twice})
                raise DecisionError(f"row(s) {row_ranges(twice)} of batch {batch_id} were decided already "
                                    f"(decision {', '.join(map(str, ids))})", action="choose rows still open")
            chosen = wanted
        elif by_rule is not None:
            chosen = [r for r in open_rows if r in by_rule]
        else:
            chosen = open_rows
        if not chosen:
            raise DecisionError(f"no open rows to {action} in batch {batch_id}"
                                + (f" for rule {rule}" if rule else ""), action="nothing left to decide")
        if unreadable := sorted(malformed.intersection(chosen)):
            raise DecisionError(
                f"row(s) {row_ranges(unreadable)} of batch {batch_id} were never read into their columns "
                "(row_shape: more or fewer fields than the file's header): there is nothing to release",
                action="reject them, and ask the agency to send those rows again in a well-formed file")
        decision_id = inserted_id(conn.execute(decisions.insert().values(
            batch_id=batch_id, feed=record.feed, action=action, rows_json=json.dumps(chosen), rows=len(chosen),
            rule=rule, reason=text, actor=actor, decided_at=datetime.now(UTC),
            status="pending" if action == "release" else "done",
        )))
        ledger.audit(conn, f"failures.{action}", batch_id, {
            "decision": decision_id, "feed": record.feed, "rows": len(chosen), "row_numbers": row_ranges(chosen),
            "rule": rule, "reason": text,
        }, actor=actor)
    return _one(ledger, decision_id)


def _chosen_rows(record: Quarantined, rows: Iterable[int]) -> list[int]:
    """The row numbers a decision names, checked against the batch before anything is recorded: whole
    numbers from 1 to the batch's count, at least one. Both front doors (the CLI, the console) and any
    other caller of :func:`decide` pass through here; :func:`parse_rows` only reads their text."""
    try:
        wanted = sorted({operator.index(r) for r in rows})
    except TypeError:
        raise DecisionError("row numbers are whole numbers", action=_ROWS_ACTION) from None
    count = record.quarantined
    if not wanted:
        raise DecisionError(f"no rows of batch {record.batch_id} were chosen", action=_ROWS_ACTION)
    if wanted[0] < 1:
        raise DecisionError(f"batch {record.batch_id}: row numbers start at 1"
                            + (f", there is no row {wanted[0]}" if wanted[0] > -10**12 else ""), action=_ROWS_ACTION)
    above = [r for r in wanted if r > count]
    if above:
        named = row_ranges(above) if above[-1] < 10**12 else f"above {count}"
        raise DecisionError(f"batch {record.batch_id} has {count} quarantined rows; there is no row {named}",
                            action=_ROWS_ACTION)
    return wanted


def _malformed_rows(ledger: Ledger, batch_id: str, *, keys: KeyStore | None, home: Path | None) -> set[int]:
    """The batch's rows quarantined as malformed (``row_shape``): the quarantine is opened only if the
    ledger's counts say there are any."""
    if not any(r["rule"] == "row_shape" and r["failed"] for r in rule_counts(ledger, batch_id=batch_id)):
        return set()
    frame = read_rows(ledger, batch_id, keys=keys, home=home)
    broke = frame[RULES].fillna("").str.split(";").apply(lambda ids: "row_shape" in ids)
    return set(frame.loc[broke, ROW].astype(int).tolist())


def _one(ledger: Ledger, decision_id: int) -> Decision:
    with ledger.engine.connect() as conn:
        return _decision(conn.execute(decisions.select().where(decisions.c.id == decision_id)).mappings().one())


def row_ranges(rows: Sequence[int]) -> str:
    """[1, 2, 3, 7] -> "1-3,7"."""
    out: list[str] = []
    rows = sorted(rows)
    i = 0
    while i < len(rows):
        j = i
        while j + 1 < len(rows) and rows[j + 1] == rows[j] + 1:
            j += 1
        out.append(str(rows[i]) if i == j else f"{rows[i]}-{rows[j]}")
        i = j + 1
    return ",".join(out)


# --- releasing ---------------------------------------------------------------------------------


def pending_releases(ledger: Ledger, feed: str) -> list[Decision]:
    """The feed's releases not yet delivered, oldest first."""
    return decisions_of(ledger, feed=feed, status="pending")


def released_rows(ledger: Ledger, decision: Decision, *, keys: KeyStore | None = None,
                  home: Path | None = None) -> Any:
    """The rows a release names, in the contract's columns (no bookkeeping columns), in row order."""
    frame = read_rows(ledger, decision.batch_id, keys=keys, home=home)
    chosen = frame[frame[ROW].isin(list(decision.rows))]
    return chosen.drop(columns=list(BOOKKEEPING)).reset_index(drop=True)


def releases_of_run(ledger: Ledger, run_id: int) -> list[Decision]:
    """The releases a run delivered."""
    from fundx.ledger.schema import deliveries

    query = (decisions.select().join(deliveries, deliveries.c.batch_id == decisions.c.delivered_batch_id)
             .where(deliveries.c.run_id == run_id).order_by(decisions.c.id))
    with ledger.engine.connect() as conn:
        return [_decision(r) for r in conn.execute(query).mappings()]


def mark_release_delivered(ledger: Ledger, conn: sa.Connection, decision: Decision, delivered_batch_id: str) -> None:
    """Inside the delivery's commit: the release is delivered (it will not be delivered again)."""
    done = conn.execute(decisions.update().where(decisions.c.id == decision.id, decisions.c.status == "pending").values(
        status="delivered", delivered_batch_id=delivered_batch_id, delivered_at=datetime.now(UTC)))
    if done.rowcount != 1:
        raise DecisionError(f"release {decision.id} of batch {decision.batch_id} is not pending any more")
    ledger.audit(conn, "release.delivered", decision.batch_id, {
        "decision": decision.id, "feed": decision.feed, "rows": len(decision.rows), "batch": delivered_batch_id,
    })


def orphans(store: LocalInbox, ledger: Ledger, feed: str) -> list[str]:
    """Quarantine folders of the feed that no ledger row names (a run stopped before its commit)."""
    with ledger.engine.connect() as conn:
        known = set(conn.execute(sa.select(quarantines.c.batch_id).where(quarantines.c.feed == feed)).scalars())
    return [b for b in store.batches(STEWARDS) if b.startswith(f"{feed}-") and b not in known]


# --- what a steward may see of a row ---------------------------------------------------------------

HIDDEN = "•"


def row_status(ledger: Ledger, batch_id: str) -> dict[int, str]:
    """Each decided row's state: ``released (decision 3)``, ``delivered (decision 3)``, ``rejected (decision 4)``."""
    state: dict[int, str] = {}
    for d in decisions_of(ledger, batch_id=batch_id):
        word = {"pending": "released", "delivered": "delivered"}.get(d.status, "rejected")
        state.update(dict.fromkeys(d.rows, f"{word} ({d.id})"))
    return state


def _blank(v: object) -> bool:
    """None or NaN (the one value that differs from itself)."""
    return v is None or v != v  # noqa: PLR0124 - the NaN test that works for any object


def masked_view(frame: Any, feed: str) -> Any:
    """The rows as text a steward may see: only what the decision needs.

    Identity numbers are masked (330106********123X) and names cut to their first character; other
    restricted values (dates of death, diagnoses, amounts) are shown only in the columns the row's
    failed rules look at, and hidden (•) elsewhere; internal and public columns are shown — with
    anything shaped like an identity number masked wherever it sits, since an agency's row may put
    one in any column. A structurally defective row says where it was (``_defect``); a malformed
    row's own text is never shown.
    """
    import pandas as pd

    from contracts import load_contract
    from contracts.rules import contract_rules

    contract = load_contract(feed)
    columns_of = {r.id: set(r.columns) for r in contract_rules(contract).rules}
    looked_at = frame[RULES].fillna("").map(
        lambda ids: set().union(*(columns_of.get(i, set()) for i in ids.split(";") if i)) if ids else set())
    out = pd.DataFrame({ROW: frame[ROW].astype(int), RULES: frame[RULES].fillna("")})

    def text(v: object) -> str:
        return "" if _blank(v) else mask_id_like(str(v))

    for column in contract.columns:
        if column.name not in frame.columns:
            continue
        values = frame[column.name]
        if column.pii == "identity_number":
            shown = values.map(lambda v: "" if _blank(v) else mask_id(str(v)))
        elif column.pii == "name":
            shown = values.map(lambda v: "" if _blank(v) else str(v)[:1] + "*" * max(len(str(v)) - 1, 1))
        elif column.pii == "bank_account":
            shown = values.map(lambda v: "" if _blank(v) else mask_account(v))
        elif column.classification == "restricted":
            shown = pd.Series([text(v) if column.name in cols else HIDDEN for v, cols in zip(values, looked_at)],
                              index=frame.index)
        else:
            shown = values.map(text)
        out[column.name] = shown.astype(str)
    if DEFECT in frame.columns and frame[DEFECT].notna().any():
        out[DEFECT] = frame[DEFECT].map(lambda v: "" if _blank(v) else text(str(v).partition(": ")[2])).astype(str)
    return out
