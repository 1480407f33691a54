"""One matching night: load what the stages received (the office's feeds among them), run the rules,
record the suspects as inspection orders, write the masked listings and the investigators' file."""

from __future__ import annotations

import io
import logging
import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fundx.core.errors import ConfigurationError, UnknownSignerError
from fundx.core.files import write_file_atomic
from fundx.core.settings import get_settings
from fundx.core.timeutil import SHANGHAI
from fundx.crypto.keys import KeyStore
from fundx.crypto.manifest import Manifest, content_digest
from fundx.crypto.opening import open_sealed, recipients_among
from fundx.crypto.seal import seal
from matching import load, rules, stops
from matching.scan import Scan
from matching.store import Store

log = logging.getLogger("fundx.matching")



def sources() -> dict[str, str]:
    """Store table -> the stage whose store holds it, for every table a rule reads (matching.rules.EMPTY):
    the feeds' tables as their configs' ``matching:`` and ``stage:`` say (connectors.registry), the
    office's (``social_insurance.*``) as every other's."""
    from connectors.registry import registry

    return {table: stage for table, stage in registry().tables.items() if table in rules.EMPTY}


INVESTIGATORS_FILE = "investigators.p7m"


@dataclass(frozen=True)
class RuleResult:
    """What one rule found in one night: counts and amounts only."""

    rule: str
    suspects: int
    amount_at_risk: float


@dataclass
class MatchingResult:
    """A matching night: rows loaded per stage, suspects per rule, orders opened (and open orders found again with
    new evidence, closed ones reopened: matching.cases), files written."""

    night: date
    loaded: dict[str, int] = field(default_factory=dict)  # stage -> rows loaded this run
    rules: list[RuleResult] = field(default_factory=list)
    orders_new: int = 0
    orders_updated: int = 0
    orders_reopened: int = 0
    escalated: int = 0  # cases put under listed supervision tonight (matching.lifecycle.escalate)
    files: list[Path] = field(default_factory=list)
    stops_delivered: int = 0  # stop instructions written to the office's outbox (matching.stops)
    stops_answered: int = 0  # the office's answers recorded


def output_dir(night: date, home: Path | None = None) -> Path:
    return Path(home or get_settings().home) / "matching" / night.isoformat()


def inputs(keys: KeyStore, home: Path) -> rules.Inputs:
    """Every table the rules read, from the stages' stores: each its files' Parquet for DuckDB to scan
    (matching.scan.Scan: each file decrypted as the rules copy it into DuckDB), with the row counts of its parts."""
    tables: dict[str, pa.Table | Scan | None] = {}
    parts: dict[str, list[int]] = {}
    for t, stage in sources().items():
        scan = Store(stage, home=home, keys=keys).scan(t)
        tables[t], parts[t] = scan, scan.parts if scan is not None else []
    return rules.Inputs(tables, parts)


def escalate(ledger, night: date):
    """Tonight's listed supervision (挂牌督办, matching.lifecycle.escalate), told to FUNDX_NOTIFY's channels; a
    notifier that cannot be set up is logged and the cases are escalated all the same (the ledger is the record)."""
    from fundx.core.errors import ConfigurationError
    from fundx.notify.notifier import Notifier
    from matching import lifecycle

    try:
        notifier = Notifier.from_settings()
    except ConfigurationError as exc:
        log.warning("listed supervision of %s: no notices (%s)", night, exc)
        notifier = None
    return lifecycle.escalate(ledger, night, notifier=notifier)


def run_matching(night: date | None = None, params: dict[str, str] | None = None, *,
                 home: Path | None = None) -> MatchingResult:
    """Load what was delivered, match, record suspects and orders, write listings and the investigators' file.
    DuckDB holds at most FUNDX_MATCHING_MEMORY and spills past it into a folder under FUNDX_HOME, removed after."""
    from matching import lifecycle

    home = Path(home or get_settings().home)
    night = night or datetime.now(SHANGHAI).date()
    parsed = rules.parse_params(params)
    due_days = lifecycle.case_settings().due()  # a bad FUNDX_CASES_DUE_DAYS stops the night before it loads anything
    keys = KeyStore(home=home)
    con = load.connect(keys)
    try:
        return _night(con, night, parsed, due_days, keys, home)
    finally:
        con.close()
        shutil.rmtree(load.spill_dir(home), ignore_errors=True)


def _night(con, night: date, parsed: dict[str, dict[str, Any]], due_days, keys: KeyStore,
           home: Path) -> MatchingResult:
    from fundx.ledger import Ledger
    from matching import orders

    result = MatchingResult(night)
    for stage in load.stages():
        for loaded in load.load_batches(stage, con=con, keys=keys, home=home):
            result.loaded[stage] = result.loaded.get(stage, 0) + loaded.rows
    load.allow_spill(con, load.spill_dir(home))  # every batch loaded: only pseudonymised rows from here on
    rules.prepare(con, inputs(keys, home), parsed)
    log.info("matching night %s: the stores' tables copied into DuckDB", night)
    found = rules.run_rules(con, parsed, night)
    log.info("matching night %s: %d rules found %d suspects", night, len(rules.RULES), found.num_rows)
    frame = found.drop(["persons"]).to_pandas()
    ledger = Ledger.from_settings()
    made = orders.record(ledger, night, frame, due_days=due_days)
    result.orders_new, result.orders_updated, result.orders_reopened = made.opened, made.updated, made.reopened
    result.escalated = len(escalate(ledger, night).order_ids)
    log.info("matching night %s: orders recorded", night)
    for name in rules.RULES:
        rows = frame[frame["rule"] == name]
        result.rules.append(RuleResult(name, len(rows), round(float(rows["amount_at_risk"].sum()), 2)))
    folder = output_dir(night, home)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    # the districts get their open cases (a closed one found again without new evidence stays with them closed)
    result.files = orders.write_dispatch(folder, [o for o in made if o.status == "open"])
    result.files.append(write_investigators(folder, found, made, keys, home))
    log.info("matching night %s: dispatch and the investigators' file written", night)
    # the stop-payment loop: the office's answers so far, then the instructions of cases confirmed since
    answered = stops.record_answers(ledger, keys=keys, home=home)
    sent = stops.deliver(ledger, keys=keys, home=home)
    result.stops_delivered = len(sent.written) + len(sent.adopted)
    result.stops_answered = answered.acknowledged + answered.refused + answered.invalid
    ledger.log_event("matching.run", night.isoformat(), {
        "loaded": result.loaded, "suspects": {r.rule: r.suspects for r in result.rules},
        "amount_at_risk": round(sum(r.amount_at_risk for r in result.rules), 2)}, actor="matching")
    log.info("matching night %s: %d suspects, %d new orders, %d updated, %d reopened, %d escalated", night,
             len(frame), result.orders_new, result.orders_updated, result.orders_reopened, result.escalated)
    return result


def read_vault(keys: KeyStore, home: Path, wanted: set[bytes]) -> dict[bytes, tuple[str, str]]:
    """token -> (identity number, name) for the wanted tokens only; needs the investigators' key."""
    pairs = keys.stage_keys(load.INVESTIGATORS)
    if not pairs:
        raise ConfigurationError("the investigators' private key is not here, so the identity vault cannot be opened",
                                 action="run the re-identification where the investigators' key is kept "
                                        "(FUNDX_KEYS_STAGE_KEYS[investigators])")
    ca, crl = keys.ca(), keys.crl()
    # the vault is sealed by the matching stages' own signers: any other CA-issued signer is refused
    signers = {keys.stage_signer(stage)[1].subject for stage in load.stages()}
    found: dict[bytes, tuple[str, str]] = {}
    wanted_tokens = pa.array(sorted(wanted), pa.binary())
    for stage_dir in sorted((home / "stages").glob("*/vault")):
        for path in sorted(stage_dir.glob("*.p7m")):
            data = path.read_bytes()
            mine = recipients_among(data, [c for _, c in pairs])
            if not mine:
                raise ConfigurationError(f"vault file {path.name} is sealed to none of the investigators' keys")
            key = next(k for k, c in pairs if c is mine[0])
            opened = open_sealed(data, recipient_key=key, recipient_cert=mine[0],
                                 trusted_ca=ca, crl=crl, expect={"recipient": load.INVESTIGATORS})
            if opened.signer.subject not in signers:
                raise UnknownSignerError(f"vault file {path.name} is not signed by a matching stage")
            table = pq.read_table(io.BytesIO(opened.payload), columns=["person", "id_number", "name"])
            person_column = table.column("person")  # Python objects made for the wanted rows only
            table = table.filter(pc.is_in(person_column, value_set=wanted_tokens.cast(person_column.type)))
            for person, id_number, name in zip(*(table.column(c).to_pylist() for c in ("person", "id_number", "name"))):
                # a feed without names (the payment ledger) gives the number only: a named source wins
                if person in wanted and (person not in found or (found[person][1] is None and name is not None)):
                    found[person] = (id_number, name)
            if len(found) == len(wanted) and all(name is not None for _, name in found.values()):
                return found
    return found


def write_investigators(folder: Path, found: pa.Table, made: list[Any], keys: KeyStore, home: Path) -> Path:
    """The night's suspects with full identity, sealed to the investigators: the only file that names them."""
    order_of = {(o.rule, o.subject): o.order_id for o in made}
    wanted = {p for persons in found.column("persons").to_pylist() for p in persons if p is not None}
    identity = read_vault(keys, home, wanted) if wanted else {}
    rows: list[dict[str, Any]] = []
    for rule, subject, persons, amount in zip(*(found.column(c).to_pylist()
                                                for c in ("rule", "subject", "persons", "amount_at_risk"))):
        for person in persons or [None]:
            id_number, name = identity.get(person, (None, None)) if person is not None else (None, None)
            rows.append({"order_id": order_of.get((rule, subject)), "rule": rule, "subject": subject,
                         "id_number": id_number, "name": name, "amount_at_risk": amount})
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("order_id", pa.string()), ("rule", pa.string()), ("subject", pa.string()), ("id_number", pa.string()),
        ("name", pa.string()), ("amount_at_risk", pa.float64())]))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    payload = buf.getvalue()
    signer_key, signer_cert = keys.stage_signer("death_matching")
    night = folder.name
    now = datetime.now(UTC).isoformat()
    manifest = Manifest(batch_id=f"suspects-{night}", feed="matching.suspects", window_start=night, window_end=night,
                        part=1, parts=1, rows=table.num_rows, content_digest=content_digest(payload),
                        contract_version="matching/1", recipient=load.INVESTIGATORS, created_at=now)
    sealed = seal(payload, manifest, signer_key=signer_key, signer_cert=signer_cert,
                  recipients=keys.recipient_certificates(load.INVESTIGATORS))
    path = folder / INVESTIGATORS_FILE
    write_file_atomic(path, sealed, 0o600)
    return path
