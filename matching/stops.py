"""The stop-payment loop: a confirmed death or custody case tells the social-insurance office to stop paying.

The point of the inspections is that payments stop at once: the Shanwei notice (seed 001, line 44) says that an
office that finds the fund harmed 「应当立即停止待遇支付」, and the national plan names the two cases this loop
answers (seed 002, line 14: the monthly 「死亡未停發」「服刑未暫停」 suspect lists, in its traditional characters).
So when an order of a death or custody rule is closed as ``confirmed`` (:func:`issue_for`, called in the closing
transaction: the second review of matching.lifecycle, or the one-step :func:`matching.orders.close` of programs),
a **stop instruction** is recorded in the ledger (``stop_instructions``), audited as ``stop.issued``:

- ``paid_after_death`` (死亡未停发): **terminate** the person's benefits from the first month after the month
  of death: the month of death was owed (the rule counts payments *after* it), nothing after it is;
- ``paid_in_custody`` (服刑未暂停) and ``retired_in_custody`` (服刑期间办理退休): **suspend** them from the first
  month of the custody period still running (the month after the admission's: the admission month was owed,
  as the custody rules count it; matching.rules_custody). Suspension, not termination: the entitlement comes
  back on release (the office decides on resumption). A case whose custody periods have all ended gets no
  instruction: the person is owed again, and what was paid inside is a recovery, not a stop.

At most one instruction per subject, action and first month: closing twice, reopening and confirming again,
or a second custody rule confirmed for the same person issues nothing new (a unique key in the ledger,
checked under the audit lock).

**Delivery, exactly once** (:func:`deliver`; the matching night runs it, and ``fundx stops deliver``): each
issued instruction is written to the office's outbox ``FUNDX_HOME/stops/outbox/`` as
``<instruction id>.p7m`` — a JSON document naming the roll entries (the office's own entry ids, from the
matching stage's store), the action, the first month, the order, the rule and its masked evidence — signed by
the **exchange's** signing key and encrypted for the office's certificate (:mod:`fundx.crypto.seal`, the
batches' profile: ``openssl cms`` opens it), its manifest naming the instruction and the office as recipient;
then ``<id>.READY`` (the file's SHA-256), then the ledger marks it ``delivered`` (``stop.delivered``). The
exchange's key rather than a matching stage's: the office trusts one sender, as the stages do; a stage's
signing key signs that stage's acknowledgements only; and the instruction is the supervisors' decision
recorded in the exchange's ledger, not a stage's finding. Names are deterministic (``STOP-<order>-<YYYYMM>``):
a rerun after a crash between READY and the ledger adopts the file READY names; one before READY seals it
again (the office reads nothing without READY); a delivered instruction is never written again. The office
never sees an identity number from us and nothing here writes one: the entries are the office's keys, the
evidence is masked.

**The office's answer** (:func:`record_answers`): the office opens the instruction with its key, verifies the
signature against the CA and CRL, applies it to its roll and writes a signed answer (``fundx.stop-answer/1``,
its signing certificate, CN = ``social_insurance``) to ``FUNDX_HOME/stops/answers/``: acknowledged (entries
stopped and what they paid a month) or refused with a reason. An answer counts only if its signature verifies
and its signer is the office; it settles a delivered instruction whose file it names by SHA-256. Anything else
is kept as ``invalid`` and settles nothing (``stop.acknowledged``, ``stop.refused``, ``stop.answer_invalid``).
:func:`summary` gives per rule the instructions and the monthly amount whose payment they stopped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from fundx.core.errors import CertificateError, FeedBusy, SealError, UnknownSignerError
from fundx.core.files import write_file_atomic
from fundx.core.settings import get_settings
from fundx.core.timeutil import UTC, aware
from fundx.crypto.certificates import common_name
from fundx.crypto.keys import KeyStore
from fundx.crypto.manifest import Manifest, content_digest
from fundx.crypto.opening import open_signed
from fundx.crypto.seal import seal
from fundx.ledger import Ledger
from fundx.ledger.schema import orders as orders_table
from fundx.ledger.schema import stop_answers, stop_instructions
from fundx.wire.documents import sha256
from fundx.wire.inbox import read_regular

log = logging.getLogger("fundx.matching")

#: the recipient of the instructions: the social-insurance office (fundx.crypto.pki.OFFICE_RECIPIENTS)
OFFICE = "social_insurance"
FORMAT = "fundx.stop/1"
READY_FORMAT = "fundx.stop-ready/1"
ANSWER_FORMAT = "fundx.stop-answer/1"
#: the manifest's feed and contract of an instruction
FEED, CONTRACT = "matching.stops", "stops/1"
#: rule -> what a confirmed case of it asks of the office (module docstring)
ACTIONS: dict[str, str] = {"paid_after_death": "terminate", "paid_in_custody": "suspend",
                           "retired_in_custody": "suspend"}
STATUSES: tuple[str, ...] = ("issued", "delivered", "acknowledged", "refused")
ANSWER_OUTCOMES: tuple[str, ...] = ("acknowledged", "refused")


def stops_dir(home: Path | None = None) -> Path:
    return Path(home or get_settings().home) / "stops"


def outbox_dir(home: Path | None = None) -> Path:
    """Where the office takes its instructions: ``FUNDX_HOME/stops/outbox/``."""
    return stops_dir(home) / "outbox"


def answers_dir(home: Path | None = None) -> Path:
    """Where the office puts its signed answers: ``FUNDX_HOME/stops/answers/``."""
    return stops_dir(home) / "answers"


def instruction_id(order_id: str, from_month: str) -> str:
    """``STOP-O20261123-1-0001-202609``: the order and the first month not to be paid."""
    return f"STOP-{order_id}-{from_month.replace('-', '')}"


# --- deciding -------------------------------------------------------------------------------------


def _month_after(day: str) -> str | None:
    try:
        d = date.fromisoformat(str(day)[:10])
    except ValueError:
        return None
    return f"{d.year + d.month // 12:04d}-{d.month % 12 + 1:02d}"


def decide(rule: str, detail: str | Mapping[str, Any]) -> tuple[str, str] | None:
    """(action, first month ``YYYY-MM``) a confirmed case of ``rule`` asks for, from its masked evidence; None
    when the rule stops nothing or the evidence gives no month (module docstring)."""
    action = ACTIONS.get(rule)
    if action is None:
        return None
    try:
        doc = json.loads(detail) if isinstance(detail, str) else dict(detail)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    if rule == "paid_after_death":
        month = _month_after(doc.get("death_date") or "")
    else:  # the custody period still running (no end yet), the latest admitted if several
        running = [p for p in doc.get("custody") or [] if isinstance(p, dict) and p.get("until") is None
                   and p.get("admitted_on")]
        month = _month_after(max(p["admitted_on"] for p in running)) if running else None
    return None if month is None else (action, month)


def issue_for(conn: sa.Connection, ledger: Ledger, order: Mapping[Any, Any], actor: str) -> str | None:
    """Record the stop instruction of a confirmed order, inside the caller's audited transaction (``order``: the
    order's ledger row). Returns the new instruction's id, or None when the order's rule stops nothing, its
    evidence gives no month, or an instruction for the same subject, action and month exists already."""
    decided = decide(order["rule"], order["detail"])
    if decided is None:
        return None
    action, month = decided
    t = stop_instructions
    existing = conn.execute(sa.select(t.c.id).where(t.c.subject == order["subject"], t.c.action == action,
                                                    t.c.from_month == month)).scalar()
    if existing is not None:
        return None
    sid = instruction_id(order["order_id"], month)
    now = datetime.now(UTC)
    conn.execute(t.insert().values(id=sid, order_id=order["order_id"], subject=order["subject"], rule=order["rule"],
                                   action=action, from_month=month, status="issued", issued_at=now,
                                   issued_by=(actor or "unknown")[:64], updated_at=now))
    ledger.audit(conn, "stop.issued", sid, {"order_id": order["order_id"], "rule": order["rule"], "action": action,
                                            "from_month": month}, actor=actor)
    return sid


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One stop instruction and where it stands (no identity: the subject is the order's token)."""

    id: str
    order_id: str
    rule: str
    action: str
    from_month: str
    status: str
    file: str | None
    file_sha256: str | None
    issued_at: datetime
    issued_by: str
    delivered_at: datetime | None
    answered_at: datetime | None
    reason: str | None
    entries: int | None
    monthly_amount_stopped: float | None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out


def _instruction(row: Mapping[Any, Any]) -> Instruction:
    amount = row["monthly_amount_stopped"]
    return Instruction(id=row["id"], order_id=row["order_id"], rule=row["rule"], action=row["action"],
                       from_month=row["from_month"], status=row["status"], file=row["file"],
                       file_sha256=row["file_sha256"], issued_at=row["issued_at"], issued_by=row["issued_by"],
                       delivered_at=row["delivered_at"], answered_at=row["answered_at"], reason=row["reason"],
                       entries=row["entries"], monthly_amount_stopped=None if amount is None else float(amount))


def instructions(ledger: Ledger, *, status: str | None = None, order_id: str | None = None) -> list[Instruction]:
    """The stop instructions by id, narrowed by status and order; an unknown status is a ValueError."""
    query = stop_instructions.select().order_by(stop_instructions.c.id)
    if status is not None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}: one of {', '.join(STATUSES)}")
        query = query.where(stop_instructions.c.status == status)
    if order_id is not None:
        query = query.where(stop_instructions.c.order_id == order_id)
    with ledger.engine.connect() as conn:
        return [_instruction(r) for r in conn.execute(query).mappings()]


def answers(ledger: Ledger) -> list[dict[str, Any]]:
    """Every answer file of the office recorded, oldest first (outcome, reason, whether it settled one)."""
    with ledger.engine.connect() as conn:
        return [dict(r) for r in conn.execute(stop_answers.select().order_by(stop_answers.c.id)).mappings()]


def summary(ledger: Ledger) -> list[dict[str, Any]]:
    """Per rule that stops payments: instructions issued, delivered (awaiting the office), acknowledged and
    refused, and the monthly amount the acknowledged ones stopped (the loss stopped, per month): figures only."""
    t = stop_instructions
    query = sa.select(t.c.rule, t.c.status, sa.func.count().label("n"),
                      sa.func.sum(t.c.monthly_amount_stopped).label("stopped")).group_by(t.c.rule, t.c.status)
    figures: dict[str, dict[str, Any]] = {rule: {"rule": rule, "action": action, "instructions": 0, "issued": 0, "delivered": 0,
                      "acknowledged": 0, "refused": 0, "monthly_amount_stopped": 0.0} for rule, action in ACTIONS.items()}
    with ledger.engine.connect() as conn:
        for row in conn.execute(query):
            f = figures.setdefault(row.rule, {"rule": row.rule, "action": "", "instructions": 0, "issued": 0,
                                              "delivered": 0, "acknowledged": 0, "refused": 0,
                                              "monthly_amount_stopped": 0.0})
            f["instructions"] += row.n
            f[row.status] = f.get(row.status, 0) + row.n
            if row.status == "acknowledged":
                f["monthly_amount_stopped"] = round(f["monthly_amount_stopped"] + float(row.stopped or 0), 2)
    return list(figures.values())


# --- delivering -------------------------------------------------------------------------------------


@dataclass
class Delivered:
    """What :func:`deliver` did: instructions written, adopted after a crash, waiting for the roll; ids only."""

    written: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # no roll entry of the person in the matching store yet
    busy: bool = False  # another delivery held the lock: nothing done


def _entries(keys: KeyStore, home: Path, subjects: set[str]) -> dict[str, list[dict[str, Any]]]:
    """subject -> the person's roll entries (the office's entry id and scheme), from the matching stage's store:
    the latest version of each entry, as the rules read it."""
    from matching.run import sources
    from matching.sql import one_per_key
    from matching.store import Store

    stage = sources().get("roll")
    if stage is None or not subjects:
        return {}
    roll = Store(stage, home=home, keys=keys).read("roll")
    if roll is None:
        return {}
    roll = one_per_key("roll", roll)
    wanted = {bytes.fromhex(s): s for s in subjects if _is_hex(s)}
    found: dict[str, list[dict[str, Any]]] = {}
    columns = {c: roll.column(c).to_pylist() for c in ("person", "record_key", "benefit_type")}
    for person, entry, scheme in zip(columns["person"], columns["record_key"], columns["benefit_type"]):
        if person in wanted:
            found.setdefault(wanted[person], []).append({"entry_id": entry, "scheme": scheme})
    for listed in found.values():
        listed.sort(key=lambda e: e["entry_id"])
    return found


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def _payload(row: Mapping[str, Any], order: Mapping[str, Any], entries: list[dict[str, Any]]) -> bytes:
    from matching.orders import TITLES

    try:
        evidence = json.loads(order["detail"])
    except ValueError:
        evidence = {}
    return json.dumps({
        "format": FORMAT, "instruction_id": row["id"], "order_id": row["order_id"], "rule": row["rule"],
        "title": TITLES.get(row["rule"], row["rule"]), "action": row["action"], "from_month": row["from_month"],
        "entries": entries, "id_masked": order["id_masked"], "district": order["district"],
        "evidence": {"months": order["months"], "amount_at_risk": float(order["amount_at_risk"]),
                     "detail": evidence},
        "confirmed_by": row["issued_by"], "issued_at": row["issued_at"].isoformat(),
    }, ensure_ascii=False, sort_keys=True).encode()


def _ready(sid: str, name: str, data: bytes) -> bytes:
    return (json.dumps({"format": READY_FORMAT, "instruction_id": sid, "file": name, "sha256": sha256(data),
                        "bytes": len(data), "ready_at": datetime.now(UTC).isoformat()}, indent=1) + "\n").encode()


def deliver(ledger: Ledger | None = None, *, keys: KeyStore | None = None, home: Path | None = None) -> Delivered:
    """Write every issued instruction to the office's outbox, once (module docstring), and mark it delivered."""
    home = Path(home or get_settings().home)
    ledger = ledger or Ledger.from_settings()
    keys = keys or KeyStore(home=home)
    done = Delivered()
    try:
        with ledger.feed_lock(FEED):
            _deliver(ledger, keys, home, done)
    except FeedBusy:
        done.busy = True
        log.warning("stop instructions: another delivery is running; nothing done")
    return done


def _deliver(ledger: Ledger, keys: KeyStore, home: Path, done: Delivered) -> None:
    t = stop_instructions
    with ledger.engine.connect() as conn:
        pending = [dict(r) for r in conn.execute(t.select().where(t.c.status == "issued").order_by(t.c.id)).mappings()]
        orders = {r["order_id"]: dict(r) for r in conn.execute(
            orders_table.select().where(orders_table.c.order_id.in_([p["order_id"] for p in pending]))).mappings()} \
            if pending else {}
    if not pending:
        return
    folder = outbox_dir(home)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    signer = None
    entries = _entries(keys, home, {p["subject"] for p in pending})
    for row in pending:
        sid = row["id"]
        name, ready = f"{sid}.p7m", folder / f"{sid}.READY"
        adopted = False
        if ready.exists() and (folder / name).exists():  # a crash after READY, before the ledger: READY names the file
            announced = json.loads(read_regular(ready, what=f"stop instruction {sid}'s READY"))
            data = read_regular(folder / name, what=f"stop instruction {sid}")
            if announced.get("sha256") == sha256(data):
                adopted = True
        if not adopted:
            mine = entries.get(row["subject"])
            if not mine:
                done.waiting.append(sid)
                log.warning("stop instruction %s: the matching stage's roll has no entry of the case yet; it waits",
                            sid)
                continue
            if signer is None:
                signer = (keys.exchange_signer(), keys.recipient_certificates(OFFICE))
            (key, cert), recipients = signer
            payload = _payload(row, orders[row["order_id"]], mine)
            manifest = Manifest(batch_id=sid, feed=FEED, window_start=row["from_month"], window_end=row["from_month"],
                                part=1, parts=1, rows=len(mine), content_digest=content_digest(payload),
                                contract_version=CONTRACT, recipient=OFFICE, created_at=datetime.now(UTC).isoformat())
            data = seal(payload, manifest, signer_key=key, signer_cert=cert, recipients=recipients)
            write_file_atomic(folder / name, data, 0o600)
            write_file_atomic(ready, _ready(sid, name, data), 0o600)  # the office reads nothing without it
        with ledger.audited() as conn:
            now = datetime.now(UTC)
            moved = conn.execute(t.update().where(t.c.id == sid, t.c.status == "issued").values(
                status="delivered", file=name, file_sha256=sha256(data), delivered_at=now, updated_at=now))
            if moved.rowcount == 1:
                ledger.audit(conn, "stop.delivered", sid, {"order_id": row["order_id"], "file": name,
                                                           "file_sha256": sha256(data), "adopted": adopted},
                             actor="matching")
        (done.adopted if adopted else done.written).append(sid)
    if done.written or done.adopted:
        log.info("stop instructions: %d written, %d adopted after an interruption, %d waiting", len(done.written),
                 len(done.adopted), len(done.waiting))


def resend(ledger: Ledger, sid: str, *, actor: str, home: Path | None = None) -> Instruction:
    """Send a refused instruction again (after its reason was dealt with: a file spoiled on its way, an entry the
    office's roll did not have yet): its files leave the outbox and it is ``issued`` again, audited
    (``stop.resent``); the next :func:`deliver` seals it anew, so the office sees a new file and answers it.
    Only a refused instruction is sent again: anything else is a DecisionError naming its status."""
    from fundx.core.errors import DecisionError

    home = Path(home or get_settings().home)
    t = stop_instructions
    with ledger.feed_lock(FEED):
        with ledger.engine.connect() as conn:
            row = conn.execute(t.select().where(t.c.id == sid)).mappings().one_or_none()
        if row is None:
            raise DecisionError(f"there is no stop instruction {sid}", action="see them with fundx stops list")
        if row["status"] != "refused":
            raise DecisionError(f"stop instruction {sid} is {row['status']}, not refused",
                                action="only an instruction the office refused is sent again")
        folder = outbox_dir(home)
        (folder / f"{sid}.READY").unlink(missing_ok=True)  # READY first: the office never reads a half-removed one
        (folder / f"{sid}.p7m").unlink(missing_ok=True)
        with ledger.audited() as conn:
            conn.execute(t.update().where(t.c.id == sid, t.c.status == "refused").values(
                status="issued", file=None, file_sha256=None, delivered_at=None, updated_at=datetime.now(UTC)))
            ledger.audit(conn, "stop.resent", sid, {"order_id": row["order_id"], "was": "refused",
                                                    "reason": (row["reason"] or "")[:500]}, actor=actor)
    with ledger.engine.connect() as conn:
        return _instruction(conn.execute(t.select().where(t.c.id == sid)).mappings().one())


# --- the office's answers -------------------------------------------------------------------------


def verified_answer(data: bytes, name: str, ca: Any, crl: Any) -> dict[str, Any]:
    """An answer of the office, verified: signed by the office's own signing certificate of the trusted CA, a
    ``fundx.stop-answer/1`` document; SealError or UnknownSignerError otherwise (no content quoted)."""
    opened = open_signed(data, trusted_ca=ca, crl=crl, what=f"stop answer {name}")
    if common_name(opened.signer) != OFFICE:
        raise UnknownSignerError(f"stop answer {name} is signed by CN={common_name(opened.signer)!r}, not by the office")
    try:
        body = json.loads(opened.payload)
    except ValueError:
        raise SealError(f"stop answer {name} is not JSON") from None
    wrong = SealError(f"stop answer {name} is not a {ANSWER_FORMAT} document of the office")
    if not isinstance(body, dict) or body.get("format") != ANSWER_FORMAT or body.get("office") != OFFICE \
            or body.get("outcome") not in ANSWER_OUTCOMES or not isinstance(body.get("instruction_id"), str) \
            or not isinstance(body.get("at"), str) or not isinstance(body.get("file_sha256"), (str, type(None))) \
            or not isinstance(body.get("reason"), (str, type(None))) \
            or not isinstance(body.get("entries"), (int, type(None))) \
            or not isinstance(body.get("monthly_amount"), (int, float, type(None))):
        raise wrong
    try:
        body["at"] = aware(body["at"])
    except ValueError:
        raise wrong from None
    body["signer_serial"] = format(opened.signer.serial_number, "x")
    return body


@dataclass(frozen=True)
class Answered:
    """What :func:`record_answers` recorded: counts only."""

    acknowledged: int = 0
    refused: int = 0
    invalid: int = 0
    settled: int = 0


def record_answers(ledger: Ledger | None = None, *, keys: KeyStore | None = None,
                   home: Path | None = None) -> Answered:
    """Verify every new answer file of the office and record it; settle the instruction it answers."""
    home = Path(home or get_settings().home)
    ledger = ledger or Ledger.from_settings()
    keys = keys or KeyStore(home=home)
    folder = answers_dir(home)
    counts = {"acknowledged": 0, "refused": 0, "invalid": 0, "settled": 0}
    if not folder.is_dir():
        return Answered()
    with ledger.engine.connect() as conn:
        seen = set(conn.execute(sa.select(stop_answers.c.file)).scalars())
    ca = crl = None
    for path in sorted(folder.glob("*.p7s")):
        if path.name in seen:
            continue
        if ca is None:
            ca, crl = keys.ca(), keys.crl()
        data = b""
        try:
            data = read_regular(path, what=f"stop answer {path.name}")
            body = verified_answer(data, path.name, ca, crl)
        except (SealError, CertificateError) as refused:
            _record(ledger, path.name, sha256(data), None, "invalid", f"{refused.kind}: {refused}", None, False)
            log.warning("stop answer %s refused: %s", path.name, refused.kind)
            counts["invalid"] += 1
            continue
        settled = _settle(ledger, path.name, sha256(data), body)
        counts[body["outcome"]] += 1
        counts["settled"] += int(settled)
    return Answered(**counts)


def _settle(ledger: Ledger, file: str, file_sha: str, body: dict[str, Any]) -> bool:
    t = stop_instructions
    sid, outcome = body["instruction_id"], body["outcome"]
    with ledger.audited() as conn:
        row = conn.execute(t.select().where(t.c.id == sid)).mappings().one_or_none()
        applied = row is not None and row["status"] == "delivered" and body.get("file_sha256") == row["file_sha256"]
        if applied:
            amount = body.get("monthly_amount")
            conn.execute(t.update().where(t.c.id == sid, t.c.status == "delivered").values(
                status=outcome, answered_at=body["at"], answer_file=file, answer_sha256=file_sha,
                reason=(body.get("reason") or None) if outcome == "refused" else None,
                entries=body.get("entries"), monthly_amount_stopped=None if amount is None else round(float(amount), 2),
                signer_serial=body["signer_serial"], updated_at=datetime.now(UTC)))
        _insert(conn, file, file_sha, sid, outcome, body.get("reason"), body["signer_serial"], applied)
        ledger.audit(conn, f"stop.{outcome}", sid, {
            "file": file, "file_sha256": file_sha, "applied": applied, "entries": body.get("entries"),
            "monthly_amount": body.get("monthly_amount"), **({"reason": body["reason"][:500]} if body.get("reason") else {})},
            actor=OFFICE)
    return applied


def _record(ledger: Ledger, file: str, file_sha: str, sid: str | None, outcome: str, reason: str | None,
            serial: str | None, applied: bool) -> None:
    with ledger.audited() as conn:
        _insert(conn, file, file_sha, sid, outcome, reason, serial, applied)
        ledger.audit(conn, "stop.answer_invalid", file, {"file_sha256": file_sha, "reason": (reason or "")[:500]})


def _insert(conn: sa.Connection, file: str, file_sha: str, sid: str | None, outcome: str, reason: str | None,
            serial: str | None, applied: bool) -> None:
    conn.execute(stop_answers.insert().values(file=file, file_sha256=file_sha, instruction_id=sid, outcome=outcome,
                                              reason=(reason or None) and reason[:2000], signer_serial=serial,
                                              applied=applied, recorded_at=datetime.now(UTC)))
