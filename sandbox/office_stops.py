"""The social-insurance office's side of the stop-payment loop (matching.stops), and its monthly payment run.

:func:`take_instructions` is what the office's system does with the exchange's stop instructions: for each
instruction in the outbox that has its READY marker and was not answered yet, it checks the file against
READY's SHA-256, opens it with the office's key (:func:`fundx.crypto.opening.open_sealed`: the GCM tag, the
signature, the signer's certificate against the CA and CRL, the manifest naming the office and the
instruction), requires the signer to be the exchange, and applies it to its roll in one transaction: each
entry named gets status ``stopped`` (terminate) or ``suspended`` (suspend), ``stop_month`` the instruction's
first month (unless it was stopped earlier) and ``updated_at`` now, so that the exchange's incremental pull of
``social_insurance.benefit_roll`` brings the change. An instruction naming an entry the roll does not have, or
a file that does not verify, is refused with the reason and changes nothing. Either answer is a CMS SignedData
signed with the office's own signing certificate (CN = social_insurance), written to the answers folder; the
office keeps what it answered (``stop_instructions_taken`` in its database), so an instruction is applied once
however often it is read, and an answer lost in a crash is written again.

:func:`pay_month` is the office's monthly payment run, so that a next night exists: a payment for the next
month to every entry the roll says is active, appended to the payment ledger with ``paid_at`` now, the entry's
``paid_through`` and ``updated_at`` moved on.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from connectors import load_feed
from fundx.core.errors import CertificateError, ManifestError, SealError, TamperedError, UnknownSignerError
from fundx.core.files import write_file_atomic
from fundx.core.timeutil import SHANGHAI, UTC
from fundx.crypto.certificates import common_name
from fundx.crypto.keys import KeyStore
from fundx.crypto.opening import open_sealed, recipients_among
from fundx.crypto.seal import sign
from fundx.wire.documents import sha256
from fundx.wire.inbox import read_regular
from matching.stops import ANSWER_FORMAT, FORMAT, OFFICE, READY_FORMAT
from sandbox.city.office_feeds import PAYMENTS, ROLL

#: what each action makes of an entry's status (fundx.core.codes.ROLL_STATUSES)
STATUS_OF = {"terminate": "stopped", "suspend": "suspended"}
TAKEN = "stop_instructions_taken"


def _table(feed: str) -> str:
    config = load_feed(feed).database
    assert config is not None
    return f"{config.relation}_rows"  # the table under the view (sandbox.view_db.ViewDB)


def _local(now: datetime) -> str:
    return now.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def _connect(db: Path) -> sqlite3.Connection:
    con = sqlite3.connect(db, timeout=30, isolation_level=None)
    con.row_factory = sqlite3.Row
    con.execute(f"CREATE TABLE IF NOT EXISTS {TAKEN} (instruction_id TEXT NOT NULL, file_sha256 TEXT NOT NULL, "
                "outcome TEXT NOT NULL, answer TEXT NOT NULL, body TEXT NOT NULL, "
                "PRIMARY KEY (instruction_id, file_sha256))")
    return con


@dataclass(frozen=True)
class Answer:
    """What the office answered to one instruction: ids and counts only."""

    instruction_id: str
    outcome: str  # acknowledged | refused
    reason: str | None
    entries: int
    monthly_amount: float
    file: str


def take_instructions(db: Path, outbox: Path, answers: Path, *, keys: KeyStore,
                      now: datetime | None = None) -> list[Answer]:
    """Apply every new instruction of ``outbox`` to the office's database ``db``; answer each in ``answers``."""
    now = now or datetime.now(UTC)
    answers.mkdir(mode=0o700, parents=True, exist_ok=True)
    con = _connect(db)
    done: list[Answer] = []
    signer = keys.stage_signer(OFFICE)
    try:
        for ready_path in sorted(outbox.glob("*.READY")) if outbox.is_dir() else []:
            named = ready_path.name[: -len(".READY")]
            announced: str | None = None
            try:
                ready = json.loads(read_regular(ready_path, what=f"READY of {named}"))
                if not isinstance(ready, dict) or ready.get("format") != READY_FORMAT \
                        or ready.get("instruction_id") != named or ready.get("file") != f"{named}.p7m":
                    raise ManifestError(f"instruction {named}: its READY is not a {READY_FORMAT} marker of it")
                announced = str(ready.get("sha256"))
            except (ValueError, SealError) as bad:
                body = _body(named, None, "refused", _reason(bad), 0, 0.0, now)
                done.append(_answer(con, answers, signer, body, named, "?", now))
                continue
            row = con.execute(f"SELECT answer, body FROM {TAKEN} WHERE instruction_id = ? AND file_sha256 = ?",
                              (named, announced)).fetchone()
            if row is not None:  # answered already: written again only if the answer was lost
                if not (answers / row["answer"]).exists():
                    write_file_atomic(answers / row["answer"], _signed(signer, json.loads(row["body"])), 0o600)
                continue
            body = _take(con, keys, outbox, named, announced, now)
            done.append(_answer(con, answers, signer, body, named, announced, now))
    finally:
        con.close()
    return done


def _reason(error: BaseException) -> str:
    kind = getattr(error, "kind", type(error).__name__)
    return f"{kind}: {error}"


def _body(sid: str, file_sha: str | None, outcome: str, reason: str | None, entries: int, amount: float,
          now: datetime) -> dict[str, Any]:
    return {"format": ANSWER_FORMAT, "office": OFFICE, "instruction_id": sid, "file_sha256": file_sha,
            "outcome": outcome, "reason": reason, "entries": entries, "monthly_amount": round(amount, 2),
            "at": now.astimezone(UTC).isoformat()}


def _signed(signer: Any, body: dict[str, Any]) -> bytes:
    key, cert = signer
    return sign(json.dumps(body, sort_keys=True, ensure_ascii=False).encode(), signer_key=key, signer_cert=cert)


def _answer(con: sqlite3.Connection, answers: Path, signer: Any, body: dict[str, Any], sid: str, file_sha: str,
            now: datetime) -> Answer:
    """Keep the answer (applied with it, for an acknowledgement: :func:`_take`), then write it signed."""
    name = f"{sid}.{body['outcome']}.{now.astimezone(UTC):%Y%m%dT%H%M%S%fZ}.p7s"
    con.execute(f"INSERT OR REPLACE INTO {TAKEN} VALUES (?, ?, ?, ?, ?)",
                (sid, file_sha, body["outcome"], name, json.dumps(body)))
    write_file_atomic(answers / name, _signed(signer, body), 0o600)
    return Answer(sid, body["outcome"], body["reason"], body["entries"], body["monthly_amount"], name)


def _take(con: sqlite3.Connection, keys: KeyStore, outbox: Path, sid: str, announced: str,
          now: datetime) -> dict[str, Any]:
    """Verify one instruction and apply it; the answer's body."""
    try:
        data = read_regular(outbox / f"{sid}.p7m", what=f"instruction {sid}")
        if sha256(data) != announced:
            raise TamperedError(f"instruction {sid}: the file's SHA-256 differs from READY (altered at rest or in transit)")
        pairs = keys.stage_keys(OFFICE)
        mine = recipients_among(data, [c for _, c in pairs])
        if not mine:
            raise TamperedError(f"instruction {sid}: not sealed for any key of the office")
        key = next(k for k, c in pairs if c is mine[0])
        opened = open_sealed(data, recipient_key=key, recipient_cert=mine[0], trusted_ca=keys.ca(), crl=keys.crl(),
                             expect={"recipient": OFFICE, "batch_id": sid})
        if opened.signer.subject != keys.exchange_certificate().subject:
            raise UnknownSignerError(f"instruction {sid} is signed by CN={common_name(opened.signer)!r}, "
                                     "not by the exchange")
        doc = json.loads(opened.payload)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("instruction_id") != sid \
                or doc.get("action") not in STATUS_OF or not isinstance(doc.get("entries"), list):
            raise ManifestError(f"instruction {sid} is not a {FORMAT} document of itself")
    except FileNotFoundError:
        return _body(sid, announced, "refused", f"MissingFile: instruction {sid}'s file is not in the outbox", 0, 0.0,
                     now)
    except (SealError, CertificateError, ValueError) as bad:
        return _body(sid, announced, "refused", _reason(bad), 0, 0.0, now)
    return _apply(con, doc, sid, announced, now)


def _apply(con: sqlite3.Connection, doc: dict[str, Any], sid: str, announced: str, now: datetime) -> dict[str, Any]:
    roll, status, month = _table(ROLL), STATUS_OF[doc["action"]], str(doc["from_month"])
    wanted = [str(e.get("entry_id")) for e in doc["entries"] if isinstance(e, dict)]
    con.execute("BEGIN IMMEDIATE")
    try:
        rows = {r["entry_id"]: r for r in con.execute(
            f"SELECT entry_id, status, stop_month, monthly_amount FROM {roll} WHERE entry_id IN "
            f"({', '.join('?' * len(wanted))})", wanted)} if wanted else {}
        unknown = [e for e in wanted if e not in rows]
        if not wanted or unknown:
            con.execute("ROLLBACK")
            return _body(sid, announced, "refused", f"UnknownEntry: {len(unknown)} of {len(wanted)} entries the "
                         "instruction names are not on the office's roll", 0, 0.0, now)
        stopped, amount = 0, 0.0
        for entry in wanted:
            r = rows[entry]
            if r["status"] == "stopped" or (r["status"] == status and r["stop_month"] and r["stop_month"] <= month):
                continue  # stopped already (from an earlier month): nothing to change
            stop = month if not r["stop_month"] or r["stop_month"] > month else r["stop_month"]
            con.execute(f"UPDATE {roll} SET status = ?, stop_month = ?, updated_at = ? WHERE entry_id = ?",
                        (status, stop, _local(now), entry))
            if r["status"] == "active":
                stopped += 1
                amount += float(r["monthly_amount"] or 0)
        body = _body(sid, announced, "acknowledged", None, stopped, amount, now)
        name = f"{sid}.acknowledged.{now.astimezone(UTC):%Y%m%dT%H%M%S%fZ}.p7s"
        con.execute(f"INSERT OR REPLACE INTO {TAKEN} VALUES (?, ?, ?, ?, ?)",  # applied and kept together
                    (sid, announced, "acknowledged", name, json.dumps(body)))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return body


@dataclass(frozen=True)
class Paid:
    """What one payment run paid: the month, payments appended and their total."""

    month: str
    payments: int
    amount: float


def _month_no(text: str) -> int:
    return int(text[:4]) * 12 + int(text[5:7]) - 1


def _month_text(number: int) -> str:
    return f"{number // 12:04d}-{number % 12 + 1:02d}"


def pay_month(db: Path, *, now: datetime | None = None, month: str | None = None) -> Paid:
    """The office's payment run: pay ``month`` (default: the month after the latest the ledger paid) to every
    active entry of the roll not paid for it yet; ``paid_at`` and the entries' ``updated_at`` are ``now``."""
    now = now or datetime.now(UTC)
    roll, payments = _table(ROLL), _table(PAYMENTS)
    con = _connect(db)
    try:
        con.execute("BEGIN IMMEDIATE")
        try:
            if month is None:
                latest = con.execute(f"SELECT max(month) FROM {payments}").fetchone()[0]
                month = _month_text(_month_no(latest) + 1)
            due = con.execute(
                f"SELECT entry_id, id_number, scheme, monthly_amount, bank_account FROM {roll} "
                "WHERE status = 'active' AND start_month <= ? AND (paid_through IS NULL OR paid_through < ?) "
                "ORDER BY entry_id", (month, month)).fetchall()
            year, number = month[:4], month[5:7]
            at = _local(now)
            con.executemany(f"INSERT OR IGNORE INTO {payments} (payment_id, entry_id, id_number, scheme, month, "
                            "amount, bank_account, paid_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [(f"PM{int(r['entry_id'][2:]):08d}{year}{number}", r["entry_id"], r["id_number"],
                              r["scheme"], month, r["monthly_amount"], r["bank_account"], at) for r in due])
            con.executemany(f"UPDATE {roll} SET paid_through = ?, updated_at = ? WHERE entry_id = ?",
                            [(month, at, r["entry_id"]) for r in due])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.close()
    return Paid(month, len(due), round(sum(float(r["monthly_amount"] or 0) for r in due), 2))
