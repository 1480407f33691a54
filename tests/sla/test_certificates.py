"""The SLA monitor's certificate warning, with short-lived certificates of a PKI of the test's own (no
sleeping: a certificate made with days=10, and the monitor's clock moved forward where a test needs it).

One breach and one notice per certificate, named by its role and common name with the days left; not
repeated by the next check; a recovery (and its notice) once the certificate is renewed; long-lived
certificates beside it are not flagged; no key material in anything sent."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from fundx.crypto.keys import KeySettings, KeyStore
from fundx.crypto.lifecycle import rotate
from fundx.crypto.pki import init_keys
from fundx.sla import monitor

STAGE, OTHER = "death_matching", "bill_review"
WHO = f"certificate encryption CN={STAGE}"


def _store(paths) -> KeyStore:
    return KeyStore(KeySettings(dir=paths.dir))


def _cert_notices(got: list[dict]) -> list[tuple[str, str]]:
    return [(n["kind"], n["feed"]) for n in got if n["rule"] == "cert_expiry"]


def _check(ledger, notifier, store, now):
    return monitor.check(ledger, now=now, notifier=notifier, emit=False, keys=store)


def test_a_stage_certificate_with_ten_days_left_opens_one_breach_and_recovers_when_rotated(ledger, receiver, tmp_path):
    notifier, got = receiver
    paths = init_keys(tmp_path, stages=(STAGE, OTHER, "stewards"))
    rotate(STAGE, home=paths, days=10)  # the stage's encryption certificate: 10 days, everything else 825
    store = _store(paths)
    now = datetime.now(UTC)

    first = _check(ledger, notifier, store, now)
    cert_opened = [(f.feed, f.rule, f.severity) for f in first.opened if f.rule == "cert_expiry"]
    assert cert_opened == [(WHO, "cert_expiry", "warning")]
    assert {f.feed for f in first.certificates if f.breached} == {WHO}  # the look-alikes beside it are not flagged
    assert {f.feed for f in first.certificates} >= {
        "certificate ca CN=fundx development CA", "CRL of CN=fundx development CA",
        "certificate exchange-signing CN=fundx exchange", f"certificate encryption CN={OTHER}",
        f"certificate ack-signing CN={STAGE}", "certificate encryption CN=stewards", "certificate ack-signing CN=stewards"}
    (notice,) = [n for n in got if n["rule"] == "cert_expiry"]
    assert notice["kind"] == "breach" and notice["feed"] == WHO and "(9 days left)" in notice["observed"]
    assert notice["expected"] == "more than 30 days left" and "fundx keys rotate" in notice["detail"]
    sent = json.dumps(got)
    for key_file in paths.dir.rglob("*.key"):  # no key material in any notice
        body = key_file.read_bytes()
        chunk = body.split(b"\n")[1][:40] if body.startswith(b"-----") else base64.b64encode(body)[:40]
        assert chunk.decode() not in sent
    assert "PRIVATE" not in sent and "BEGIN" not in sent
    (recorded,) = [b for b in monitor.open_breaches(ledger) if b["rule"] == "cert_expiry"]
    assert recorded["feed"] == WHO and recorded["notified_at"] is not None

    # checked again that night and the next day: still open, no second notice
    assert [f for f in _check(ledger, notifier, store, now + timedelta(hours=1)).opened if f.rule == "cert_expiry"] == []
    assert [f for f in _check(ledger, notifier, store, now + timedelta(days=1)).opened if f.rule == "cert_expiry"] == []
    assert _cert_notices(got) == [("breach", WHO)]

    rotate(STAGE, home=paths)  # renewed: 825 days
    renewed = _check(ledger, notifier, store, now + timedelta(days=1, hours=1))
    assert [(f.feed, f.met_on) for f in renewed.recovered if f.rule == "cert_expiry"] == [
        (WHO, (now + timedelta(days=1, hours=1)).astimezone(monitor.SHANGHAI).date())]
    assert _cert_notices(got) == [("breach", WHO), ("recovered", WHO)]
    assert "days left" in got[-1]["observed"] and got[-1]["feed"] == WHO
    assert not [b for b in monitor.open_breaches(ledger) if b["rule"] == "cert_expiry"]
    _check(ledger, notifier, store, now + timedelta(days=2))
    assert _cert_notices(got) == [("breach", WHO), ("recovered", WHO)]
    assert ledger.verify_audit().ok


def test_every_role_is_watched_the_ca_and_the_crl_included(tmp_path):
    paths = init_keys(tmp_path, stages=("stewards", "investigators"), days=10)  # a whole PKI of 10 days
    store = _store(paths)
    now = datetime.now(UTC)
    found = monitor.certificate_findings(now.date(), now=now, store=store)
    assert sorted(f.feed for f in found if f.breached) == sorted([
        "certificate ca CN=fundx development CA", "CRL of CN=fundx development CA",
        "certificate exchange-signing CN=fundx exchange",
        "certificate encryption CN=stewards", "certificate ack-signing CN=stewards",
        "certificate encryption CN=investigators", "certificate ack-signing CN=investigators"])
    assert {f.severity for f in found} == {"warning"}
    crl = next(f for f in found if f.feed.startswith("CRL"))
    assert crl.observed.startswith("next update due") and "(in 9 days)" in crl.observed

    # the monitor's own clock, moved on: 5 days left is critical; past the end says so
    later = monitor.certificate_findings(now.date(), now=now + timedelta(days=5), store=store)
    assert {f.severity for f in later} == {"critical"} and all("(4 days left)" in f.observed or "(in 4 days)" in f.observed
                                                                for f in later)
    gone = monitor.certificate_findings(now.date(), now=now + timedelta(days=11), store=store)
    assert all(f.observed.startswith("expired on") and f.breached for f in gone)

    # the threshold is a setting; a warning 5 days ahead leaves 9 days alone
    assert not any(f.breached for f in monitor.certificate_findings(now.date(), now=now, store=store, warn_days=5))


def test_the_warning_days_come_from_the_setting(tmp_path, monkeypatch):
    paths = init_keys(tmp_path, stages=(STAGE,), days=20)
    now = datetime.now(UTC)
    monkeypatch.setenv("FUNDX_KEYS_EXPIRY_WARNING_DAYS", "7")
    assert not any(f.breached for f in monitor.certificate_findings(now.date(), now=now, store=_store(paths)))
    monkeypatch.setenv("FUNDX_KEYS_EXPIRY_WARNING_DAYS", "45")
    assert all(f.breached for f in monitor.certificate_findings(now.date(), now=now, store=_store(paths)))
    monkeypatch.setenv("FUNDX_KEYS_EXPIRY_WARNING_DAYS", "-1")
    with pytest.raises(ValueError, match="expiry_warning_days"):
        KeySettings()


def test_a_rotating_stage_counts_by_its_longest_lasting_certificate_and_one_all_revoked_is_said_so(tmp_path):
    from fundx.crypto.keys import read_certificate
    from fundx.crypto.pki import add_stage_certificate, revoke_certificate

    paths = init_keys(tmp_path, stages=(STAGE,), days=10)
    add_stage_certificate(STAGE, "next", home=paths, days=400)  # mid-rotation: old (10 days) and new
    now = datetime.now(UTC)
    found = {f.feed: f for f in monitor.certificate_findings(now.date(), now=now, store=_store(paths))}
    assert not found[WHO].breached and "days left" in found[WHO].observed
    revoke_certificate(read_certificate(paths.stage_cert(STAGE, "next")), home=paths)
    found = {f.feed: f for f in monitor.certificate_findings(now.date(), now=now, store=_store(paths))}
    assert found[WHO].breached and "(9 days left)" in found[WHO].observed
    revoke_certificate(read_certificate(paths.stage_cert(STAGE)), home=paths)  # none left: said so, critical
    found = {f.feed: f for f in monitor.certificate_findings(now.date(), now=now, store=_store(paths))}
    assert found[WHO].breached and found[WHO].observed == "revoked: no valid certificate left"
    assert found[WHO].severity == "critical"
