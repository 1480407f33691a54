"""Certificates over their lives against the live sandbox and a PKI of the test's own (the run's shared
PKI is never rotated or revoked): a stage's certificate rotated between two nights — the batch sealed
before still opens (the stage's receive, and openssl with the retired key), the next one is sealed to the
new certificate only; acknowledgements signed by the old, still valid signer still settle; a revoked
stage certificate stops deliveries to that stage in one line naming it, before anything is sealed, while
another stage's feed goes on, and the batch goes out once the stage has a new certificate."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from testkit import make_pki
from typer.testing import CliRunner

from fundx.core.errors import CertificateError
from fundx.crypto.certificates import common_name
from fundx.crypto.keys import KeySettings, KeyStore, read_certificate
from fundx.crypto.lifecycle import revoke, rotate
from fundx.crypto.opening import recipients_among
from fundx.exchange.acks import record_acks
from fundx.exchange.run import run_feed
from fundx.ledger import Ledger
from fundx.ledger.schema import audit
from fundx.stage import Stage

DEATHS, STAGE = "police.deaths", "death_matching"
OTHER_DEATHS = "civil_affairs.deaths"  # the same stage's second feed: the next night's batch
BILLS, BILLS_STAGE = "medical_insurance.bills", "bill_review"
END = "2026-11-23T00:00:00+08:00"
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")


@pytest.fixture(scope="module")
def sandbox(sandbox_factory):
    with sandbox_factory("lifecycle", people=1500) as sb:
        yield sb


@pytest.fixture
def own(sandbox, home, tmp_path, monkeypatch):
    """A PKI of this test's own, used by the exchange and the stages (FUNDX_KEYS_DIR)."""
    pki = make_pki(tmp_path / "own", stages=(STAGE, BILLS_STAGE, "stewards"))
    monkeypatch.setenv("FUNDX_KEYS_DIR", str(pki.dir))
    return pki


def _parts(home: Path, stage: str, batch_id: str) -> list[Path]:
    for where in (home / "inboxes" / stage / batch_id, home / "stages" / stage / "received" / batch_id):
        found = sorted(where.glob("part-*.p7m"))
        if found:
            return found
    raise AssertionError(f"no parts of {batch_id}")


def _openssl_decrypts(part: Path, key: Path, cert: Path, out: Path) -> bool:
    done = subprocess.run(["openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", part, "-inkey", key,
                           "-recip", cert, "-out", out], check=False, capture_output=True, timeout=60)
    return done.returncode == 0


@needs_openssl
def test_a_rotated_stage_opens_the_old_batch_and_the_next_is_sealed_to_the_new_certificate(own, home, tmp_path):
    ledger = Ledger.from_settings()
    paths = own.paths
    old_cert = read_certificate(paths.stage_cert(STAGE))
    before = run_feed(DEATHS, end=END)
    assert before.handoff.outcome == "delivered"
    # the stage answers the first batch with its current signer, which is then replaced
    (first,) = Stage(STAGE).receive()
    assert first.outcome == "received"

    turned = rotate(STAGE, home=paths)  # the stage's encryption certificate: a new key, the old one retired
    assert turned.old_serial == format(old_cert.serial_number, "x") and turned.retired is not None
    signer = rotate(STAGE, signer=True, home=paths)  # and its acknowledgement signer
    exchange = rotate("exchange", home=paths)  # and the exchange's signing certificate
    assert signer.old_serial != signer.new_serial and exchange.old_serial != exchange.new_serial
    new_cert = read_certificate(paths.stage_cert(STAGE))
    assert new_cert.serial_number != old_cert.serial_number and common_name(new_cert) == STAGE
    assert KeyStore().recipient_certificates(STAGE) == [new_cert]

    after = run_feed(OTHER_DEATHS, end=END)  # the next delivery: sealed to the new certificate only
    assert after.handoff.outcome == "delivered" and after.handoff.batch_id != before.handoff.batch_id
    for part in _parts(home, STAGE, after.handoff.batch_id):
        assert recipients_among(part.read_bytes(), [old_cert, new_cert]) == [new_cert]
        assert _openssl_decrypts(part, paths.stage_key(STAGE), paths.stage_cert(STAGE), tmp_path / "new.p7s")
        assert not _openssl_decrypts(part, turned.retired.with_suffix(".key"), turned.retired, tmp_path / "no.p7s")
    for part in _parts(home, STAGE, before.handoff.batch_id):  # the old batch: the retired key opens it
        assert recipients_among(part.read_bytes(), [old_cert, new_cert]) == [old_cert]
        assert _openssl_decrypts(part, turned.retired.with_suffix(".key"), turned.retired, tmp_path / "old.p7s")

    (second,) = Stage(STAGE).receive()  # a new Stage: the new keys, the exchange's new signer accepted
    assert (second.outcome, second.folder, second.rows) == ("received", after.handoff.batch_id, after.valid)
    answers = record_acks()  # the first ack (old signer, still valid) and the second (new signer) both settle
    assert (answers.received, answers.invalid, answers.settled) == (2, 0, 2)
    assert [d.status for d in (*ledger.deliveries(DEATHS), *ledger.deliveries(OTHER_DEATHS))] == ["acknowledged"] * 2

    # an old batch sent again after the rotation (a backfill of a refused one) opens too; and the old
    # batch's sealed parts, kept in received/, still open with the keys the stage holds now
    pairs = KeyStore().stage_keys(STAGE)
    assert {format(c.serial_number, "x") for _, c in pairs} == {turned.old_serial, turned.new_serial}
    assert ledger.verify_audit().ok


def test_a_revoked_stage_certificate_stops_its_deliveries_in_one_line_and_the_batch_goes_out_after_renewal(
        own, home, caplog):
    from fundx.cli import app

    ledger = Ledger.from_settings()
    runner = CliRunner()
    done = runner.invoke(app, ["keys", "revoke", STAGE])
    assert done.exit_code == 0, done.output
    cert = read_certificate(own.paths.stage_cert(STAGE))
    serial = format(cert.serial_number, "x")
    assert serial in done.output

    with pytest.raises(CertificateError) as refused:
        run_feed(DEATHS, end=END)
    line = str(refused.value)
    assert "\n" not in line and f"stage {STAGE}" in line and serial in line and f"CN='{STAGE}'" in line
    assert "revoked on" in line and "fundx keys rotate" in refused.value.action
    # before anything was sealed or recorded as delivered: no folder, no delivery, the watermark where it was
    assert not (home / "inboxes" / STAGE).exists() or not any((home / "inboxes" / STAGE).iterdir())
    assert ledger.deliveries(DEATHS) == [] and ledger.watermark(DEATHS) is None

    other = run_feed(BILLS, end=END)  # another stage's feed goes on
    assert other.handoff.outcome == "delivered" and other.handoff.stage == BILLS_STAGE

    renewed = runner.invoke(app, ["keys", "rotate", STAGE])
    assert renewed.exit_code == 0, renewed.output
    again = run_feed(DEATHS, end=END)  # nothing was lost: the same rows go out, to the new certificate
    assert again.handoff.outcome == "delivered" and again.valid > 0
    (receipt,) = Stage(STAGE).receive()
    assert (receipt.outcome, receipt.rows) == ("received", again.valid)
    assert ledger.verify_audit().ok
    with ledger.engine.connect() as conn:
        audited = {(r.action, r.subject) for r in conn.execute(sa.select(audit.c.action, audit.c.subject))}
    assert {("keys.revoke", STAGE), ("keys.rotate", f"encryption:{STAGE}")} <= audited


def test_rotate_and_revoke_refuse_what_they_cannot_do_in_one_line(tmp_path, monkeypatch):
    from fundx.core.errors import ConfigurationError

    paths = make_pki(tmp_path, stages=(STAGE,)).paths
    with pytest.raises(ConfigurationError, match="the CA is not rotated"):
        rotate("ca", home=paths)
    with pytest.raises(ConfigurationError, match="stage nobody has no encryption certificate"):
        rotate("nobody", home=paths)
    paths.ca_key.rename(tmp_path / "offline-ca.key")  # the CA's key kept on another machine
    with pytest.raises(ConfigurationError, match="ca.key is not on this machine") as offline:
        rotate(STAGE, home=paths)
    assert "CA's machine" in offline.value.action
    (tmp_path / "offline-ca.key").rename(paths.ca_key)
    with pytest.raises(CertificateError, match="no such certificate with serial abc"):
        revoke(STAGE, serial="abc", home=paths)


def test_an_interrupted_rotation_is_finished_by_running_it_again(tmp_path):
    from fundx.crypto.pki import add_stage_certificate

    paths = make_pki(tmp_path, stages=(STAGE,)).paths
    old = read_certificate(paths.stage_cert(STAGE))
    add_stage_certificate(STAGE, "next", home=paths)  # what a rotation killed after its first step leaves
    nxt = read_certificate(paths.stage_cert(STAGE, "next"))
    store = KeyStore(KeySettings(dir=paths.dir))
    assert {c.serial_number for c in store.recipient_certificates(STAGE)} == {old.serial_number, nxt.serial_number}
    done = rotate(STAGE, home=paths)
    assert done.new_serial == format(nxt.serial_number, "x")  # the new certificate made before, not a third
    assert [p.name for p in paths.stage_certs(STAGE)] == [f"{STAGE}.pem"]
    assert store.recipient_certificates(STAGE) == [nxt]
    assert {format(c.serial_number, "x") for _, c in store.stage_keys(STAGE)} == {
        format(old.serial_number, "x"), format(nxt.serial_number, "x")}


def test_readers_during_rotations_always_find_a_certificate_to_seal_to_and_the_key_to_open_it(tmp_path):
    """What a night does while `fundx keys rotate` runs beside it: every read in between finds a usable
    recipient certificate, the stage holds the key of each, and the exchange's signer is a matching pair."""
    import threading

    paths = make_pki(tmp_path, stages=(STAGE,)).paths
    store = KeyStore(KeySettings(dir=paths.dir))
    stop, problems, reads = threading.Event(), [], [0]

    def read() -> None:
        while not stop.is_set():
            try:
                recipients = store.recipient_certificates(STAGE)
                held = {c.serial_number for _, c in store.stage_keys(STAGE)}
                assert recipients and all(c.serial_number in held for c in recipients)
                store.exchange_signer()
                reads[0] += 1
            except Exception as exc:  # noqa: BLE001 - collected for the assertion below
                problems.append(repr(exc))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(3):
            rotate(STAGE, home=paths)
            rotate("exchange", home=paths)
    finally:
        stop.set()
        reader.join()
    assert problems == [] and reads[0] > 0
    assert len(list(paths.retired_dir.glob(f"{STAGE}.*.key"))) == 3  # every old key kept to open old batches
