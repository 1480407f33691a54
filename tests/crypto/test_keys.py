"""The development PKI: files and modes, idempotence, usages, validation, rotation, loading."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from testkit import make_pki

from connectors.registry import registry
from fundx.core.errors import CertificateError, ConfigurationError
from fundx.crypto.certificates import common_name, validate_certificate
from fundx.crypto.keys import (
    KeyPaths,
    KeySettings,
    KeyStore,
    load_certificate,
    load_private_key,
    recipient_certificates,
)
from fundx.crypto.pki import (
    OFFICE_RECIPIENTS,
    add_stage_certificate,
    init_keys,
    issue_certificate,
    make_ca,
    make_crl,
    new_private_key,
    recipients,
    retire_stage_certificate,
    revoke_certificate,
)

#: every recipient: the stages the feed configs deliver to, the stewards, the investigators and the backup
STAGES = recipients()


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _files(paths: KeyPaths) -> dict[str, bytes]:
    return {str(p.relative_to(paths.dir)): p.read_bytes() for p in sorted(paths.dir.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> KeyPaths:
    """init_keys with every stage, under a umask that would let anyone read what it creates."""
    old = os.umask(0)
    try:
        return init_keys(tmp_path_factory.mktemp("home"))
    finally:
        os.umask(old)


def test_init_creates_ca_crl_signer_and_one_certificate_per_stage(full):
    names = set(_files(full))
    expected = {"ca.pem", "ca.key", "crl.pem", "exchange.pem", "exchange.key"}
    expected |= {f"{folder}/{s}.{ext}" for folder in ("stages", "signers") for s in STAGES for ext in ("pem", "key")}
    expected |= {"office/match.key"}  # the office's HMAC key for pseudonymised matching
    assert names == expected
    assert STAGES == (*registry().stages, "stewards", "investigators", "backup", "social_insurance") == (*registry().stages, *OFFICE_RECIPIENTS)
    assert set(registry().stages) >= {"death_matching", "custody_matching", "bill_review", "employer_review"}


def test_private_keys_are_0600_even_under_umask_0(full):
    keys = [full.ca_key, full.exchange_key, *(full.stage_key(s) for s in STAGES), *(full.signer_key(s) for s in STAGES),
            full.match_key]
    assert {_mode(k) for k in keys} == {0o600}
    # certificates are public, but every file under FUNDX_HOME is the exchange's only (SECURITY.md)
    assert {_mode(c) for c in (full.ca_cert, full.exchange_cert, full.crl)} == {0o600}
    assert _mode(full.dir) == 0o700 and _mode(full.stages_dir) == 0o700 and _mode(full.signers_dir) == 0o700
    assert _mode(full.match_key.parent) == 0o700 and len(full.match_key.read_bytes()) == 32
    for key in keys[:-1]:
        assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8, unencrypted


def test_usages_and_algorithms(full):
    ca = load_certificate(full.ca_cert, setting="ca")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    assert ca.issuer == ca.subject and ca.verify_directly_issued_by(ca) is None
    validate_certificate(ca, ca, None, usage="ca")

    signer = load_certificate(full.exchange_cert, setting="exchange")
    usage = signer.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment and not usage.key_encipherment
    assert isinstance(signer.public_key(), ec.EllipticCurvePublicKey) and signer.public_key().curve.name == "secp256r1"
    assert not signer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    crl = x509.load_pem_x509_crl(full.crl.read_bytes())
    assert crl.is_signature_valid(ca.public_key()) and len(crl) == 0

    for stage in STAGES:
        cert = load_certificate(full.stage_cert(stage), setting=stage)
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.key_encipherment and not usage.digital_signature
        assert isinstance(cert.public_key(), rsa.RSAPublicKey) and cert.public_key().key_size == 3072
        assert common_name(cert) == stage
        validate_certificate(cert, ca, crl, usage="encryption")
        with pytest.raises(CertificateError, match=f"CN='{stage}'.*does not allow signing"):
            validate_certificate(cert, ca, crl, usage="signing")
    with pytest.raises(CertificateError, match="does not allow key transport"):
        validate_certificate(signer, ca, crl, usage="encryption")

    store = KeyStore(KeySettings(dir=full.dir))
    for stage in STAGES:  # each stage's second certificate signs its acknowledgements
        _key, cert = store.stage_signer(stage)
        assert common_name(cert) == stage and isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        unit = cert.subject.get_attributes_for_oid(x509.oid.NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert unit == "stage" and usage.digital_signature and not usage.key_encipherment
        assert store.stage_certificates(stage) == [load_certificate(full.stage_cert(stage), setting=stage)]


def test_init_is_idempotent_and_force_starts_over(tmp_path):
    paths = init_keys(tmp_path, ("death_matching",))
    before = _files(paths)
    init_keys(tmp_path, ("death_matching",))
    assert _files(paths) == before

    (paths.stage_key("death_matching")).unlink()  # a missing piece is made again, the rest is kept
    init_keys(tmp_path, ("death_matching", "stewards"))
    after = _files(paths)
    assert after["ca.pem"] == before["ca.pem"] and after["exchange.key"] == before["exchange.key"]
    assert after["stages/death_matching.key"] != before["stages/death_matching.key"]
    assert "stages/stewards.pem" in after

    add_stage_certificate("death_matching", home=tmp_path)
    init_keys(tmp_path, ("death_matching",), force=True)
    fresh = _files(paths)
    assert fresh["ca.pem"] != before["ca.pem"] and "stages/death_matching.next.pem" not in fresh
    assert _mode(paths.ca_key) == 0o600


def test_init_refuses_certificates_without_their_ca(tmp_path):
    paths = init_keys(tmp_path, ("death_matching",))
    paths.ca_cert.unlink()
    with pytest.raises(ConfigurationError, match="no ca.pem") as refused:
        init_keys(tmp_path, ("death_matching",))
    assert "--force" in refused.value.action


def test_validation_names_the_certificate_and_the_reason(pki):
    now = datetime.now(UTC)
    key = new_private_key("signing")
    cert = issue_certificate(pki.ca_key, pki.ca, common_name="fundx exchange 2", usage="signing",
                             public_key=key.public_key(), not_before=now - timedelta(days=1), days=10)
    validate_certificate(cert, pki.ca, None, usage="signing")
    future = issue_certificate(pki.ca_key, pki.ca, common_name="fundx exchange 3", usage="signing",
                               public_key=key.public_key(), not_before=now + timedelta(days=1))
    with pytest.raises(CertificateError, match=r"CN='fundx exchange 3'.*not valid before"):
        validate_certificate(future, pki.ca, None, usage="signing")
    with pytest.raises(CertificateError, match="trusted CA CN='fundx development CA' is not valid"):
        validate_certificate(cert, pki.ca, None, usage="signing", at=now - timedelta(days=2))
    with pytest.raises(CertificateError, match="expired on"):
        validate_certificate(cert, pki.ca, None, usage="signing", at=now + timedelta(days=11))

    other_key, other_ca = make_ca("another CA")
    with pytest.raises(CertificateError, match="not issued by the trusted CA"):
        validate_certificate(cert, other_ca, None, usage="signing")

    revoked = make_crl(pki.ca_key, pki.ca, [(cert.serial_number, now)], days=1)
    with pytest.raises(CertificateError, match="revoked on"):
        validate_certificate(cert, pki.ca, revoked, usage="signing")
    with pytest.raises(CertificateError, match="CRL is out of date"):
        validate_certificate(cert, pki.ca, make_crl(pki.ca_key, pki.ca, days=1), usage="signing",
                             at=now + timedelta(days=3))
    with pytest.raises(CertificateError, match="CRL is not signed by the trusted CA"):
        validate_certificate(cert, pki.ca, make_crl(other_key, pki.ca), usage="signing")


def test_revoked_and_expired_stage_certificates_are_left_out_until_none_is_left(tmp_path, caplog):
    pki = make_pki(tmp_path, stages=("bill_review",))
    [old] = pki.store.recipient_certificates("bill_review")
    add_stage_certificate("bill_review", "2027", home=tmp_path)
    assert len(recipient_certificates("bill_review", store=pki.store)) == 2

    revoke_certificate(old, home=tmp_path)
    current = pki.store.recipient_certificates("bill_review")
    assert len(current) == 1 and current[0] != old
    assert "revoked" in caplog.text and "bill_review" in caplog.text

    revoke_certificate(current[0], home=tmp_path)
    with pytest.raises(CertificateError, match="bill_review has no usable encryption certificate"):
        pki.store.recipient_certificates("bill_review")
    crl = pki.store.crl()
    assert len(crl) == 2 and crl.is_signature_valid(pki.ca.public_key())

    retire_stage_certificate("bill_review", "2027", home=tmp_path)
    retire_stage_certificate("bill_review", home=tmp_path)
    with pytest.raises(ConfigurationError, match="no encryption certificate"):
        pki.store.recipient_certificates("bill_review")
    assert {_mode(p) for p in pki.paths.retired_dir.glob("*.key")} == {0o600}


def test_a_stale_crl_is_reissued_by_init(tmp_path):
    paths = init_keys(tmp_path, ("stewards",), days=1)  # CRL next update within a day: re-issued
    first = x509.load_pem_x509_crl(paths.crl.read_bytes())
    init_keys(tmp_path, ("stewards",))
    second = x509.load_pem_x509_crl(paths.crl.read_bytes())
    number = second.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert second.next_update_utc > first.next_update_utc and number == 2


def test_loading_from_env_and_secret_references(tmp_path, monkeypatch, full):
    pem = full.stage_cert("stewards").read_text()
    monkeypatch.setenv("FUNDX_TEST_STEWARDS_CERT", pem)
    assert load_certificate("env:FUNDX_TEST_STEWARDS_CERT", setting="stewards") == load_certificate(
        full.stage_cert("stewards"), setting="stewards"
    )
    asked = []

    def fake_resolve(ref, *, setting, secret=False, feed=None):
        from pydantic import SecretStr

        asked.append((ref, setting, secret))
        return SecretStr(full.exchange_key.read_text())

    monkeypatch.setattr("fundx.core.settings.resolve", fake_resolve)
    key = load_private_key("secret:fundx-exchange-key", setting="FUNDX_KEYS_EXCHANGE_KEY")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert asked == [("secret:fundx-exchange-key", "FUNDX_KEYS_EXCHANGE_KEY", True)]

    with pytest.raises(ConfigurationError, match="setting FUNDX_KEYS_CA: cannot read"):
        load_certificate(tmp_path / "missing.pem", setting="FUNDX_KEYS_CA")
    with pytest.raises(ConfigurationError, match="not PEM"):
        load_private_key(full.exchange_cert, setting="FUNDX_KEYS_EXCHANGE_KEY")


def test_a_private_key_is_parsed_once_per_content_and_a_replaced_file_gives_the_new_key(tmp_path, full):
    path = tmp_path / "stage.key"
    path.write_bytes(full.stage_cert("bill_review").with_suffix(".key").read_bytes())
    first = load_private_key(path, setting="FUNDX_KEYS_STAGE_KEYS[bill_review]")
    assert load_private_key(path, setting="FUNDX_KEYS_STAGE_KEYS[bill_review]") is first  # the same bytes: not parsed again
    path.write_bytes(full.stage_cert("stewards").with_suffix(".key").read_bytes())  # a rotation put another key there
    second = load_private_key(path, setting="FUNDX_KEYS_STAGE_KEYS[bill_review]")
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    assert second.public_key().public_bytes(serialization.Encoding.DER, public) == load_certificate(
        full.stage_cert("stewards"), setting="stewards").public_key().public_bytes(serialization.Encoding.DER, public)
    path.write_bytes(b"not a key")
    with pytest.raises(ConfigurationError, match="not PEM"):
        load_private_key(path, setting="FUNDX_KEYS_STAGE_KEYS[bill_review]")


def test_key_settings_from_the_environment(tmp_path, monkeypatch, full):
    bundle = tmp_path / "bill_review-certs.pem"
    bundle.write_bytes(full.stage_cert("bill_review").read_bytes() + full.stage_cert("stewards").read_bytes())
    monkeypatch.setenv("FUNDX_KEYS_DIR", str(full.dir))
    monkeypatch.setenv("FUNDX_KEYS_STAGE_CERTS", json.dumps({"bill_review": str(bundle)}))
    store = KeyStore()
    assert sorted(common_name(c) for c in store.recipient_certificates("bill_review")) == ["bill_review", "stewards"]
    assert len(store.recipient_certificates("death_matching")) == 1  # from the folder
    _key, cert = store.exchange_signer()
    assert common_name(cert) == "fundx exchange"


def test_a_signing_key_that_does_not_match_its_certificate_is_a_configuration_error(tmp_path, full):
    stray = tmp_path / "stray.key"
    stray.write_bytes(
        new_private_key("signing").private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    store = KeyStore(KeySettings(dir=full.dir, exchange_key=str(stray)))
    with pytest.raises(ConfigurationError, match="does not belong"):
        store.exchange_signer()


def test_the_office_match_key_from_the_folder_env_or_refused(full, monkeypatch):
    import base64

    raw = full.match_key.read_bytes()
    assert KeyStore(KeySettings(dir=full.dir)).match_key() == raw
    monkeypatch.setenv("OFFICE_KEY", base64.b64encode(b"k" * 40).decode())
    assert KeyStore(KeySettings(dir=full.dir, match_key="env:OFFICE_KEY")).match_key() == b"k" * 40
    monkeypatch.setenv("OFFICE_KEY", base64.b64encode(b"short").decode())
    with pytest.raises(ConfigurationError, match="FUNDX_KEYS_MATCH_KEY.*5 bytes"):
        KeyStore(KeySettings(dir=full.dir, match_key="env:OFFICE_KEY")).match_key()
    with pytest.raises(ConfigurationError, match="does not exist"):
        KeyStore(KeySettings(dir=full.dir / "nowhere")).match_key()
