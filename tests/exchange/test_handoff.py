"""The handoff and the stage against the live sandbox, without Prefect (the plain functions the flow runs).

openssl turns a real inbox part back into the pulled rows; the stage refuses a tampered byte, a wrong
recipient, an unknown signer, an expired certificate, a stage's own certificate and a replay, and
the ledger records each refusal; a process SIGKILLed at each point of the handoff and run again
ends with exactly one delivery holding every row once.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from killing import run_until_killed

from fundx.core.digest import content_digest
from fundx.core.errors import FeedBusy
from fundx.core.testpoints import DELIVERY_POINTS as KILL_POINTS
from fundx.core.timeutil import UTC, Window, aware
from fundx.crypto.keys import KeySettings, KeyStore
from fundx.crypto.manifest import Manifest
from fundx.crypto.opening import open_sealed
from fundx.crypto.pki import issue_certificate, make_ca, new_private_key
from fundx.exchange.acks import record_acks
from fundx.exchange.handoff import batch_id_for
from fundx.exchange.run import run_feed
from fundx.ledger import Ledger
from fundx.stage import Stage
from fundx.wire.documents import ready_document
from fundx.wire.inbox import LocalInbox, part_name

ROOT = Path(__file__).resolve().parents[2]
FEED, STAGE = "medical_insurance.bills", "bill_review"  # the sandbox's largest feed: several parts
DEATHS, DEATHS_STAGE = "police.deaths", "death_matching"
END = "2026-11-23T00:00:00+08:00"
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")


@pytest.fixture(scope="module")
def sandbox(sandbox_factory):
    with sandbox_factory("handoff", people=3000, stall_seconds=2.0) as sb:
        yield sb


def _expected(sandbox, feed: str) -> pd.DataFrame:
    return sandbox.expected(feed, aware("2020-01-01"), aware(END))


def _quarantined_keys(batch_id: str | None, key: str) -> set[str]:
    """The keys of the rows of a batch that went to the stewards' quarantine (opened with their key)."""
    from fundx.exchange import quarantine

    ledger = Ledger.from_settings()
    if not batch_id or not quarantine.batches(ledger, batch_id=batch_id):
        return set()
    return set(quarantine.read_rows(ledger, batch_id)[key])


def _received_rows(home: Path, stage: str, keys: KeyStore) -> pd.DataFrame:
    """Every row the stage holds (its received parts, opened with its key), in one frame."""
    key, cert = keys.stage_keys(stage)[0]
    tables = []
    for path in sorted((home / "stages" / stage / "received").glob("*/part-*.p7m")):
        opened = open_sealed(path.read_bytes(), recipient_key=key, recipient_cert=cert, trusted_ca=keys.ca(),
                             crl=keys.crl())
        tables.append(pq.read_table(io.BytesIO(opened.payload)))
    return pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame()


def _store() -> KeyStore:
    return KeyStore(KeySettings())


# --- openssl reads a real inbox part ---------------------------------------------------------------


@needs_openssl
def test_the_readme_openssl_commands_turn_inbox_parts_back_into_the_pulled_rows(sandbox, home, keys_dir, tmp_path):
    done = run_feed(FEED, end=END)
    assert done.handoff.outcome == "delivered" and done.handoff.stage == STAGE and done.handoff.parts >= 3
    batch = home / "inboxes" / STAGE / done.handoff.batch_id
    ready = json.loads((batch / "READY").read_text())
    assert ready["parts"] == done.handoff.parts and ready["rows"] == done.valid == done.rows - done.quarantined
    tables = []
    for entry in ready["files"]:
        part = batch / entry["name"]
        assert part.stat().st_mode & 0o777 == 0o600
        # The two commands of the README, exactly.
        subprocess.run(["openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", part,
                        "-inkey", keys_dir / "stages" / f"{STAGE}.key", "-recip", keys_dir / "stages" / f"{STAGE}.pem",
                        "-out", tmp_path / "part.p7s"], check=True, capture_output=True, timeout=60)
        subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", tmp_path / "part.p7s",
                        "-CAfile", keys_dir / "ca.pem", "-out", tmp_path / "part.parquet"],
                       check=True, capture_output=True, timeout=60)
        tables.append(pq.read_table(tmp_path / "part.parquet"))
    rows = pa.concat_tables(tables).to_pandas()
    expected = _expected(sandbox, FEED)
    assert content_digest(rows) == ready["content_digest"]  # exactly the rows READY names, whatever their order
    assert len(rows) == done.valid and rows["bill_id"].is_unique
    kept = _quarantined_keys(done.handoff.batch_id, "bill_id")
    assert len(kept) == done.quarantined and not kept & set(rows["bill_id"])
    assert set(rows["bill_id"]) | kept == set(expected["bill_id"])  # every pulled row: delivered or quarantined


# --- a night's handoff, acknowledged; reruns deliver nothing twice --------------------------------


def test_deliveries_are_acknowledged_and_reruns_backfills_and_empty_pulls_deliver_nothing_twice(sandbox, home):
    ledger = Ledger.from_settings()
    first = run_feed(FEED, end=END)
    assert ledger.watermark(FEED) == aware(END)
    again = run_feed(FEED, end=END)  # [END, END): no rows, nothing delivered, the watermark stays
    assert again.rows == 0 and again.handoff.outcome == "empty"
    same = run_feed(FEED, start="2020-01-01", end=END)  # a backfill of the very batch: delivered already
    assert same.handoff.outcome == "already_delivered" and same.handoff.batch_id == first.handoff.batch_id
    later = run_feed(FEED, end="2026-12-01T00:00:00+08:00")  # nothing new in the sandbox after END
    assert later.handoff.outcome == "empty" and ledger.watermark(FEED) == aware("2026-12-01T00:00:00+08:00")

    (receipt,) = Stage(STAGE).receive()
    assert (receipt.outcome, receipt.folder, receipt.rows) == ("received", first.handoff.batch_id, first.valid)
    assert Stage(STAGE).receive() == []  # nothing new
    answers = record_acks()
    assert (answers.received, answers.refused, answers.invalid, answers.settled) == (1, 0, 0, 1)
    (delivery,) = ledger.deliveries(FEED)
    assert delivery.status == "acknowledged" and delivery.acknowledged_at is not None and delivery.attempts == 1
    assert ledger.delivery_counts()[FEED] | {"rows": 0} == {
        "delivered": 1, "awaiting": 0, "acknowledged": 1, "refused": 0, "abandoned": 0, "lost": 0, "rows": 0,
        "refusals": 0}
    assert not any((home / "inboxes" / STAGE).iterdir())  # taken by the stage, still sealed in received/
    rows = _received_rows(home, STAGE, _store())
    assert content_digest(rows) == delivery.digest
    assert ledger.verify_audit().ok


def test_a_batch_whose_parts_vanished_before_ready_is_recorded_lost_and_a_backfill_sends_it_again(sandbox, home):
    from fundx.core.errors import DeliveryLost
    from fundx.ledger.schema import deliveries

    ledger = Ledger.from_settings()
    first = run_feed(DEATHS, end=END)
    with ledger.transaction() as conn:  # as if the run died after its commit and the folder was then deleted
        conn.execute(deliveries.update().values(status="delivered", ready_sha256=None))
    shutil.rmtree(home / "inboxes" / DEATHS_STAGE / first.handoff.batch_id)
    with pytest.raises(DeliveryLost) as lost:
        run_feed(DEATHS, end=END)
    assert lost.value.action.startswith(f"fundx backfill {DEATHS} --from 2020-01-01T00:00:00+08:00")
    assert ledger.deliveries(DEATHS)[0].status == "lost"
    assert run_feed(DEATHS, end=END).handoff.outcome == "empty"  # the feed goes on
    again = run_feed(DEATHS, start="2020-01-01", end=END)
    assert (again.handoff.outcome, again.handoff.attempt) == ("delivered", 2)
    assert [r.outcome for r in Stage(DEATHS_STAGE).receive()] == ["received"]


def test_a_second_run_of_a_busy_feed_is_refused_and_recorded(home):
    ledger = Ledger.from_settings()
    with ledger.feed_lock(FEED), pytest.raises(FeedBusy, match="another run"):
        run_feed(FEED, end=END)
    (failed,) = ledger.pulls(FEED)
    assert failed.outcome == "failed" and failed.error_type == "FeedBusy"
    assert ledger.watermark(FEED) is None and ledger.deliveries(FEED) == []


# --- refusals at the stage -------------------------------------------------------------------------


def _refusal(ledger: Ledger, stage: str, folder: str) -> dict:
    record_acks()
    (refusal,) = [a for a in ledger.ack_records(stage=stage, outcome="refused") if a["batch_id"] == folder]
    return refusal


def _nothing_received(home: Path, stage: str) -> None:
    received = home / "stages" / stage / "received"
    assert not received.exists() or not any(received.iterdir())


@pytest.mark.parametrize("fix_ready", [False, True], ids=["ready-unchanged", "ready-rewritten"])
def test_a_tampered_byte_is_refused_and_a_backfill_delivers_the_batch_again(sandbox, home, fix_ready):
    ledger = Ledger.from_settings()
    done = run_feed(DEATHS, end=END)
    batch = home / "inboxes" / DEATHS_STAGE / done.handoff.batch_id
    part = batch / part_name(1, 1)
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x01
    part.write_bytes(bytes(data))
    if fix_ready:  # whoever flipped the byte also fixed READY's checksum: the GCM tag still catches it
        ready = json.loads((batch / "READY").read_text())
        ready["files"][0]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
        (batch / "READY").write_text(json.dumps(ready))

    (receipt,) = Stage(DEATHS_STAGE).receive()
    assert receipt.outcome == "refused" and receipt.reason.startswith("TamperedError")
    _nothing_received(home, DEATHS_STAGE)
    refusal = _refusal(ledger, DEATHS_STAGE, done.handoff.batch_id)
    assert refusal["reason"].startswith("TamperedError") and refusal["applied"] == (not fix_ready)
    if fix_ready:  # READY no longer the one the exchange wrote: the refusal is recorded, the delivery waits
        return
    (delivery,) = ledger.deliveries(DEATHS)
    assert delivery.status == "refused" and delivery.reason.startswith("TamperedError")

    again = run_feed(DEATHS, start="2020-01-01", end=END)  # the way to send a refused batch again
    assert again.handoff.outcome == "delivered" and again.handoff.attempt == 2
    (receipt,) = Stage(DEATHS_STAGE).receive()
    assert receipt.outcome == "received"
    record_acks()
    (delivery,) = ledger.deliveries(DEATHS)
    assert (delivery.status, delivery.attempts) == ("acknowledged", 2)
    assert len(_received_rows(home, DEATHS_STAGE, _store())) == len(_expected(sandbox, DEATHS)) - done.quarantined


def test_a_batch_put_into_another_stages_inbox_is_refused_there(home):
    ledger = Ledger.from_settings()
    done = run_feed(DEATHS, end=END)
    source = home / "inboxes" / DEATHS_STAGE / done.handoff.batch_id
    shutil.copytree(source, home / "inboxes" / "custody_matching" / done.handoff.batch_id)

    (receipt,) = Stage("custody_matching").receive()
    assert receipt.outcome == "refused" and receipt.reason.startswith("WrongRecipientError")
    _nothing_received(home, "custody_matching")
    refusal = _refusal(ledger, "custody_matching", done.handoff.batch_id)
    assert refusal["applied"] is False  # not the stage it was delivered to: the delivery is not refused
    (receipt,) = Stage(DEATHS_STAGE).receive()  # the right stage still takes it
    assert receipt.outcome == "received"
    record_acks()
    assert ledger.deliveries(DEATHS)[0].status == "acknowledged"


def _plant(home: Path, stage: str, batch_id: str, signer_key, signer_cert, recipients) -> None:
    """A one-part batch in the stage's inbox, sealed with the given signer, with a proper READY."""
    frame = pd.DataFrame({"cancellation_id": ["C1", "C2"], "note": ["planted", "batch"]})
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    window = Window(aware("2026-01-01"), aware(END))
    digest = content_digest(frame)
    manifest = Manifest(batch_id=batch_id, feed=DEATHS, window_start=window.start.isoformat(),
                        window_end=window.end.isoformat(), part=1, parts=1, rows=2, content_digest=digest,
                        contract_version="1.0.0", recipient=stage, created_at=aware(END).isoformat())
    inbox = LocalInbox(home / "inboxes")
    written = inbox.write_part(stage, batch_id, part_name(1, 1), sink.getvalue(), manifest,
                               signer_key=signer_key, signer_cert=signer_cert, recipients=recipients)
    inbox.write_ready(stage, batch_id, ready_document(batch_id=batch_id, feed=DEATHS, stage=stage, window=window,
                                                      rows=2, digest=digest, contract_version="1.0.0", files=[written]))


def _signer(case: str, keys_dir: Path):
    store = _store()
    if case == "unknown-signer":  # a certificate of another CA, named like the exchange
        other_key, other_ca = make_ca("another CA")
        key = new_private_key("signing")
        return key, issue_certificate(other_key, other_ca, common_name="fundx exchange", usage="signing",
                                      public_key=key.public_key())
    if case == "expired-certificate":  # the real CA, the exchange's name, expired yesterday
        from cryptography.hazmat.primitives import serialization

        ca_key = serialization.load_pem_private_key((keys_dir / "ca.key").read_bytes(), password=None)
        key = new_private_key("signing")
        return key, issue_certificate(ca_key, store.ca(), common_name="fundx exchange", usage="signing",
                                      public_key=key.public_key(), days=1,
                                      not_before=datetime.now(UTC) - timedelta(days=2))
    return store.stage_signer("custody_matching")  # a valid certificate of the CA, but a stage's, not the exchange's


@pytest.mark.parametrize("case, error", [
    ("unknown-signer", "UnknownSignerError"),
    ("expired-certificate", "CertificateError"),
    ("stage-signer", "UnknownSignerError"),
])
def test_parts_not_signed_by_the_exchange_are_refused(home, keys_dir, case, error):
    key, cert = _signer(case, keys_dir)
    batch_id = f"{DEATHS}-planted-{case}"
    _plant(home, DEATHS_STAGE, batch_id, key, cert, _store().recipient_certificates(DEATHS_STAGE))

    (receipt,) = Stage(DEATHS_STAGE).receive()
    assert receipt.outcome == "refused" and receipt.reason.startswith(error), receipt.reason
    if case == "expired-certificate":
        assert "expired" in receipt.reason
    _nothing_received(home, DEATHS_STAGE)
    assert list((home / "stages" / DEATHS_STAGE / "refused").glob(f"{batch_id}.*/part-0001-of-0001.p7m"))
    refusal = _refusal(Ledger.from_settings(), DEATHS_STAGE, batch_id)
    assert refusal["reason"].startswith(error) and refusal["applied"] is False


@pytest.mark.parametrize("where", ["same-folder", "other-folder"])
def test_a_replayed_batch_is_refused_and_the_delivery_stays_acknowledged(home, where):
    ledger = Ledger.from_settings()
    done = run_feed(DEATHS, end=END)
    batch_id = done.handoff.batch_id
    inbox = home / "inboxes" / DEATHS_STAGE
    shutil.copytree(inbox / batch_id, home / "copy")  # what someone kept of the delivery
    Stage(DEATHS_STAGE).receive()
    record_acks()

    folder = batch_id if where == "same-folder" else f"{DEATHS}-replayed"
    shutil.copytree(home / "copy", inbox / folder)
    if where == "other-folder":  # the old parts under a new name, with a READY that names it
        ready = json.loads((inbox / folder / "READY").read_text())
        (inbox / folder / "READY").write_text(json.dumps({**ready, "batch_id": folder}))
    (receipt,) = Stage(DEATHS_STAGE).receive()
    assert receipt.outcome == "refused" and receipt.reason.startswith("ReplayError"), receipt.reason
    assert Stage(DEATHS_STAGE).received() == [batch_id]
    refusal = _refusal(ledger, DEATHS_STAGE, folder)
    assert refusal["reason"].startswith("ReplayError") and refusal["applied"] is False
    assert ledger.deliveries(DEATHS)[0].status == "acknowledged"
    assert ledger.delivery_counts()[DEATHS]["refusals"] == 1


def test_an_answer_signed_by_another_stage_is_recorded_invalid_and_settles_nothing(home):
    from fundx.crypto.seal import sign

    ledger = Ledger.from_settings()
    done = run_feed(DEATHS, end=END)
    ready = (home / "inboxes" / DEATHS_STAGE / done.handoff.batch_id / "READY").read_bytes()
    forged = {"format": "fundx.ack/1", "stage": DEATHS_STAGE, "batch_id": done.handoff.batch_id,
              "outcome": "received", "rows": done.valid, "parts": 1, "feed": DEATHS, "content_digest": done.digest,
              "ready_sha256": hashlib.sha256(ready).hexdigest(), "reason": None,
              "at": "2026-11-23T02:00:00+00:00"}
    key, cert = _store().stage_signer("custody_matching")  # a real stage's key, speaking for another stage
    folder = home / "acks" / DEATHS_STAGE
    folder.mkdir(parents=True)
    (folder / "forged.received.p7s").write_bytes(sign(json.dumps(forged).encode(), signer_key=key, signer_cert=cert))
    answers = record_acks()
    assert (answers.invalid, answers.received, answers.settled) == (1, 0, 0)
    (invalid,) = ledger.ack_records(outcome="invalid")
    assert invalid["reason"].startswith("UnknownSignerError") and "not by stage death_matching" in invalid["reason"]
    assert ledger.deliveries(DEATHS)[0].status == "ready"
    assert record_acks().invalid == 0  # recorded once


def test_an_interrupted_receive_is_finished_by_the_next(home, monkeypatch):
    done = run_feed(DEATHS, end=END)
    stage = Stage(DEATHS_STAGE)

    def dies(self, folder, body):
        raise KeyboardInterrupt  # stands for a crash right after the batch was renamed into received/

    with monkeypatch.context() as patched:
        patched.setattr(Stage, "_finish", dies)
        with pytest.raises(KeyboardInterrupt):
            stage.receive()
    assert not list((home / "acks").rglob("*.p7s"))
    (receipt,) = Stage(DEATHS_STAGE).receive()
    assert (receipt.outcome, receipt.folder) == ("received", done.handoff.batch_id)
    assert not (home / "inboxes" / DEATHS_STAGE / done.handoff.batch_id).exists()
    assert record_acks().settled == 1


# --- SIGKILL at each point of the handoff --------------------------------------------------------

@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_at_each_point_then_a_rerun_delivers_every_row_exactly_once(sandbox, home, point):
    run_until_killed(point, home, FEED, END)
    ledger = Ledger.from_settings()
    (killed,) = ledger.deliveries(FEED)
    committed = point in ("after_commit", "after_ready")
    assert killed.status == ("delivered" if committed else "sealing")
    assert ledger.watermark(FEED) == (aware(END).astimezone(UTC) if committed else None)
    inbox = home / "inboxes" / STAGE / killed.batch_id
    assert (inbox / "READY").exists() == (point == "after_ready")
    early = Stage(STAGE).receive()  # with READY on disk the batch is the stage's, recorded or not
    assert [r.outcome for r in early] == (["received"] if point == "after_ready" else [])
    if early:
        assert record_acks().waiting == 1  # its answer waits until the ledger has marked READY too

    sealed_quarantine = (home / "quarantine" / "stewards" / killed.batch_id).is_dir()
    rerun = run_feed(FEED, end=END)
    # a quarantine sealed before the commit is no one's: removed, and written again by the rerun
    removed = (f"{killed.batch_id}: quarantine removed",) if sealed_quarantine and not committed else ()
    assert rerun.recovered == (*removed, f"{killed.batch_id}: {'ready' if committed else 'abandoned'}")
    assert rerun.handoff.outcome == ("empty" if committed else "delivered")
    late = Stage(STAGE).receive()
    assert [r.outcome for r in late] == ([] if early else ["received"])
    record_acks()

    (delivery,) = ledger.deliveries(FEED)  # one batch for the window, whatever happened
    pulled = [p for p in ledger.pulls(FEED) if p.outcome == "pulled" and p.rows]
    assert len(pulled) == 1
    assert delivery.batch_id == batch_id_for(FEED, Window(aware("2020-01-01"), aware(END)), pulled[0].digest)
    assert delivery.status == "acknowledged" and delivery.attempts == (1 if committed else 2)
    rows = _received_rows(home, STAGE, _store())
    expected = _expected(sandbox, FEED)
    kept = _quarantined_keys(delivery.batch_id, "bill_id")
    assert len(rows) + len(kept) == len(expected) and rows["bill_id"].is_unique  # every row, none twice
    assert set(rows["bill_id"]) | kept == set(expected["bill_id"]) and not kept & set(rows["bill_id"])
    assert content_digest(rows) == delivery.digest
    from fundx.exchange import quarantine  # and the quarantine: recorded once, no folder left by the killed run

    folder = home / "quarantine" / "stewards"
    on_disk = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    assert on_disk == sorted(q.batch_id for q in quarantine.batches(ledger))
    assert ledger.verify_audit().ok


# --- the commands --------------------------------------------------------------------------------


@needs_openssl
def test_stage_receive_status_and_audit_commands(home, keys_dir):
    from typer.testing import CliRunner

    from fundx.cli import app

    done = run_feed(DEATHS, end=END)
    runner = CliRunner()
    result = runner.invoke(app, ["stage", "receive", "--all"])
    assert result.exit_code == 0, result.output
    assert "received" in result.output and "1 acknowledgements" in result.output
    status = json.loads(runner.invoke(app, ["status", "--json"]).output)
    (deaths,) = [f for f in status["feeds"] if f["feed"] == DEATHS]
    assert deaths["deliveries"]["delivered"] == deaths["deliveries"]["acknowledged"] == 1
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
    assert runner.invoke(app, ["stage", "receive"]).exit_code == 2  # a stage or --all

    # The acknowledgement is standard CMS too: openssl verifies it against the CA and prints it.
    ack = home / "acks" / DEATHS_STAGE / f"{done.handoff.batch_id}.received.p7s"
    shown = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", ack,
                            "-CAfile", keys_dir / "ca.pem"], check=True, capture_output=True, timeout=60)
    body = json.loads(shown.stdout)
    assert (body["outcome"], body["batch_id"], body["stage"]) == ("received", done.handoff.batch_id, DEATHS_STAGE)


# --- links planted in a stage's inbox (SECURITY.md: hostile input) ------------------------------------


def test_links_in_a_stage_inbox_are_refused_unread_and_the_receive_goes_on(home, keys_dir):
    """A batch folder that is a link, a part and a READY that link to the stage's private key, and an
    acknowledgement that does too: `fundx stage receive` refuses each without following it, removes the
    links (never their targets), receives the good batch after them, and runs again cleanly. The key's
    bytes appear in no file under FUNDX_HOME."""
    import os

    from typer.testing import CliRunner

    from fundx.cli import app
    from fundx.crypto.keys import KeyPaths

    store = _store()
    signer_key, signer_cert = store.exchange_signer()
    recipients = store.recipient_certificates(DEATHS_STAGE)
    stage_key = KeyPaths(keys_dir).stage_key(DEATHS_STAGE)
    secret = stage_key.read_bytes()
    inbox = home / "inboxes" / DEATHS_STAGE
    elsewhere = home.parent / "elsewhere"

    # folders sort before the good batch, so a receive that stopped at them would never reach it
    _plant(elsewhere, DEATHS_STAGE, f"{DEATHS}-a-folder", signer_key, signer_cert, recipients)
    target = elsewhere / "inboxes" / DEATHS_STAGE / f"{DEATHS}-a-folder"
    inbox.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.symlink(target, inbox / f"{DEATHS}-a-folder")  # a whole sealed batch, linked in
    os.symlink(stage_key.parent, inbox / f"{DEATHS}-a-keys")  # the stage's key folder, linked in as a batch
    _plant(home, DEATHS_STAGE, f"{DEATHS}-b-part", signer_key, signer_cert, recipients)
    part = inbox / f"{DEATHS}-b-part" / part_name(1, 1)
    part.unlink()
    os.symlink(stage_key, part)  # READY lists it: the old receive read the key and set its bytes aside
    _plant(home, DEATHS_STAGE, f"{DEATHS}-b-ready", signer_key, signer_cert, recipients)
    ready = inbox / f"{DEATHS}-b-ready" / "READY"
    ready.unlink()
    os.symlink(stage_key, ready)
    _plant(home, DEATHS_STAGE, f"{DEATHS}-c-good", signer_key, signer_cert, recipients)
    acks = home / "acks" / DEATHS_STAGE
    acks.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.symlink(stage_key, acks / f"{DEATHS}-z.received.p7s")

    runner = CliRunner()
    result = runner.invoke(app, ["stage", "receive", DEATHS_STAGE])
    assert result.exit_code == 1, result.output  # refusals: exit 1, not a crash
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception

    stage_dir = home / "stages" / DEATHS_STAGE
    assert (stage_dir / "received" / f"{DEATHS}-c-good" / "DONE").is_file()
    assert sorted(p.name for p in (stage_dir / "received").iterdir()) == [f"{DEATHS}-c-good"]
    ledger = Ledger.from_settings()
    for folder, what in ((f"{DEATHS}-a-folder", "its folder is a symbolic link"),
                         (f"{DEATHS}-a-keys", "its folder is a symbolic link"),
                         (f"{DEATHS}-b-part", "symbolic links (part-0001-of-0001.p7m)"),
                         (f"{DEATHS}-b-ready", "READY is a symbolic link")):
        refusal = _refusal(ledger, DEATHS_STAGE, folder)
        assert refusal["reason"].startswith("SymlinkError") and what in refusal["reason"], refusal["reason"]
        assert refusal["applied"] is False
    (invalid,) = ledger.ack_records(stage=DEATHS_STAGE, outcome="invalid")
    assert invalid["file"] == f"{DEATHS}-z.received.p7s" and invalid["reason"].startswith("SymlinkError")
    assert invalid["file_sha256"] == hashlib.sha256(b"").hexdigest()  # nothing was read

    assert sorted(p.name for p in inbox.iterdir()) == []  # links and refused folders gone from the inbox ...
    assert stage_key.read_bytes() == secret and (target / "READY").is_file()  # ... never what they pointed to
    leaked = [p for p in home.rglob("*") if p.is_file() and not p.is_symlink() and secret in p.read_bytes()]
    assert leaked == []
    refused = sorted(p.name.split(".2")[0] for p in (stage_dir / "refused").iterdir())
    assert refused == [f"{DEATHS}-a-folder", f"{DEATHS}-a-keys", f"{DEATHS}-b-part", f"{DEATHS}-b-ready"]
    assert not any((stage_dir / "refused").glob(f"{DEATHS}-a-*/*"))  # a linked folder: nothing set aside

    again = runner.invoke(app, ["stage", "receive", DEATHS_STAGE])
    assert again.exit_code == 0 and "nothing new" in again.output, again.output
