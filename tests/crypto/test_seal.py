"""Sealed parts: round trips, openssl in both directions, every refusal, rotation, nonce freshness."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from asn1crypto import cms as asn1cms
from cryptography.hazmat.primitives.asymmetric import rsa
from testkit import MARKER_ID, make_pki

from fundx.core.errors import (
    CertificateError,
    ConfigurationError,
    DataError,
    ManifestError,
    SealError,
    TamperedError,
    UnknownSignerError,
    UnsupportedSealError,
    WrongRecipientError,
)
from fundx.crypto import cms
from fundx.crypto.opening import _content_key, _parse_envelope, open_sealed, recipients_among
from fundx.crypto.parts import split_parts
from fundx.crypto.pki import (
    add_stage_certificate,
    issue_certificate,
    make_ca,
    make_crl,
    new_private_key,
    retire_stage_certificate,
)
from fundx.crypto.seal import seal, seal_to_file

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")


def openssl(*args: str | os.PathLike, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(["openssl", *map(str, args)], input=stdin, check=False, capture_output=True, timeout=60)
    if done.returncode:
        raise AssertionError(f"openssl {args[:2]} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


def seal_for(pki, payload, manifest, stage="death_matching", **kw):
    options = {"signer_key": pki.signer_key, "signer_cert": pki.signer_cert,
               "recipients": pki.store.recipient_certificates(stage)}
    options.update(kw)
    return seal(payload, manifest, **options)


def open_as(pki, data, stage="death_matching", **kw):
    key, cert = pki.stage(stage)
    options = {"recipient_key": key, "recipient_cert": cert, "trusted_ca": pki.ca, "crl": pki.store.crl()}
    options.update(kw)
    return open_sealed(data, **options)


def flip(data: bytes, position: int, mask: int = 0x01) -> bytes:
    changed = bytearray(data)
    changed[position] ^= mask
    return bytes(changed)


# --- round trips ---------------------------------------------------------------------------------


def test_round_trip_returns_payload_manifest_and_signer(pki, payload, manifest):
    sealed = seal_for(pki, payload, manifest)
    assert payload not in sealed and MARKER_ID.encode() not in sealed
    opened = open_as(pki, sealed, expect={"feed": "police.deaths", "batch_id": manifest.batch_id, "part": 1})
    assert opened.payload == payload
    assert opened.manifest == manifest
    assert opened.signer == pki.signer_cert


def test_sealed_part_is_der_as_asn1crypto_encodes_it(pki, payload, manifest):
    sealed = seal_for(pki, payload, manifest)
    assert asn1cms.ContentInfo.load(sealed).dump(force=True) == sealed


def test_seal_to_file_is_private_and_leaves_no_temporary_file(pki, payload, manifest, tmp_path):
    target = tmp_path / "part-0001.sealed"
    seal_to_file(target, payload, manifest, signer_key=pki.signer_key, signer_cert=pki.signer_cert,
                 recipients=pki.store.recipient_certificates("death_matching"))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    assert open_as(pki, target.read_bytes()).payload == payload


def test_seal_to_file_returns_the_sha256_of_the_file_it_wrote(pki, payload, manifest, tmp_path):
    import hashlib

    target = tmp_path / "part-0001.sealed"
    digest = seal_to_file(target, payload, manifest, signer_key=pki.signer_key, signer_cert=pki.signer_cert,
                          recipients=pki.store.recipient_certificates("death_matching"))
    assert digest == hashlib.sha256(target.read_bytes()).hexdigest()


def test_an_rsa_signer_signs_with_pss(pki, payload, manifest):
    key = new_private_key("encryption")  # any RSA key
    cert = issue_certificate(pki.ca_key, pki.ca, common_name="fundx exchange (rsa)", usage="signing",
                             public_key=key.public_key())
    sealed = seal_for(pki, payload, manifest, signer_key=key, signer_cert=cert)
    signed = _decrypt_with_fundx(pki, sealed)
    info = asn1cms.ContentInfo.load(signed)["content"]["signer_infos"][0]
    assert info["signature_algorithm"]["algorithm"].native == "rsassa_pss"
    assert open_as(pki, sealed).signer == cert


def _decrypt_with_fundx(pki, sealed: bytes) -> bytes:
    from fundx.crypto.opening import _decrypt

    key, cert = pki.stage("death_matching")
    envelope = _parse_envelope(cms.Ber(sealed), "test")
    return _decrypt(cms.Ber(sealed), envelope, _content_key(envelope, key, cert, "test"), "test")


# --- openssl reads what fundx seals, fundx reads what openssl seals ----------------------------


@needs_openssl
def test_openssl_decrypts_and_verifies_a_fundx_part(pki, payload, manifest, tmp_path):
    (tmp_path / "part.sealed").write_bytes(seal_for(pki, payload, manifest))
    keys = pki.paths
    # The two commands of the README, exactly.
    openssl("cms", "-decrypt", "-binary", "-inform", "DER", "-in", tmp_path / "part.sealed",
            "-inkey", keys.stage_key("death_matching"), "-recip", keys.stage_cert("death_matching"),
            "-out", tmp_path / "part.p7s")
    openssl("cms", "-verify", "-binary", "-inform", "DER", "-in", tmp_path / "part.p7s",
            "-CAfile", keys.ca_cert, "-out", tmp_path / "part.parquet")
    assert (tmp_path / "part.parquet").read_bytes() == payload
    # With revocation checked: openssl 3.0 cms has no -CRLfile; the CRL goes into the -CAfile bundle.
    (tmp_path / "trust.pem").write_bytes(keys.ca_cert.read_bytes() + keys.crl.read_bytes())
    openssl("cms", "-verify", "-binary", "-inform", "DER", "-in", tmp_path / "part.p7s",
            "-CAfile", tmp_path / "trust.pem", "-crl_check", "-out", tmp_path / "checked.parquet")
    assert (tmp_path / "checked.parquet").read_bytes() == payload
    signed = (tmp_path / "part.p7s").read_bytes()
    assert asn1cms.ContentInfo.load(signed).dump(force=True) == signed  # the inner layer is DER too


@needs_openssl
def test_openssl_refuses_a_fundx_part_signed_by_a_revoked_certificate(pki, payload, manifest, tmp_path):
    key = new_private_key("signing")
    cert = issue_certificate(pki.ca_key, pki.ca, common_name="revoked signer", usage="signing",
                             public_key=key.public_key())
    crl = make_crl(pki.ca_key, pki.ca, [(cert.serial_number, datetime.now(UTC))])
    from cryptography.hazmat.primitives.serialization import Encoding

    (tmp_path / "trust.pem").write_bytes(pki.paths.ca_cert.read_bytes() + crl.public_bytes(Encoding.PEM))
    (tmp_path / "part.p7s").write_bytes(
        _decrypt_with_fundx(pki, seal_for(pki, payload, manifest, signer_key=key, signer_cert=cert))
    )
    done = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", tmp_path / "part.p7s",
                           "-CAfile", tmp_path / "trust.pem", "-crl_check",
                           "-out", tmp_path / "out"], check=False, capture_output=True, timeout=60)
    assert done.returncode != 0 and b"revoked" in done.stderr


def _openssl_seal(pki, payload: bytes, tmp_path: Path, *, sign: tuple[str, ...] = (), encrypt: tuple[str, ...] = (),
                  signer: tuple[Path, Path] | None = None, stage: str = "death_matching") -> bytes:
    (tmp_path / "x.parquet").write_bytes(payload)
    cert, key = signer or (pki.paths.exchange_cert, pki.paths.exchange_key)
    signed = openssl("cms", "-sign", "-binary", "-md", "sha256", "-signer", cert, "-inkey", key,
                     "-nodetach", "-outform", "DER", "-in", tmp_path / "x.parquet", *sign)
    return openssl("cms", "-encrypt", "-binary", *(encrypt or ("-aes-256-gcm",)),
                   "-recip", pki.paths.stage_cert(stage), "-keyopt", "rsa_padding_mode:oaep",
                   "-keyopt", "rsa_oaep_md:sha256", "-outform", "DER", stdin=signed)


def _write_pair(folder: Path, key, cert) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization

    (folder / "signer.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "signer.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )
    return folder / "signer.pem", folder / "signer.key"


@needs_openssl
@pytest.mark.parametrize(
    "sign, encrypt",
    [
        ((), ()),  # the README's commands
        (("-stream",), ("-aes-256-gcm", "-stream")),  # indefinite-length BER on both layers
        ((), ("-aes-256-gcm", "-keyid")),  # recipient named by subject key identifier
        (("-keyid", "-nosmimecap"), ()),  # signer named by subject key identifier
    ],
    ids=["plain", "stream", "recipient-keyid", "signer-keyid"],
)
def test_fundx_opens_what_openssl_seals(pki, payload, tmp_path, sign, encrypt):
    sealed = _openssl_seal(pki, payload, tmp_path, sign=sign, encrypt=encrypt)
    opened = open_as(pki, sealed, require_manifest=False)
    assert opened.payload == payload and opened.manifest is None and opened.signer == pki.signer_cert
    with pytest.raises(ManifestError, match="no fundx manifest"):
        open_as(pki, sealed)
    with pytest.raises(ManifestError):
        open_as(pki, sealed, require_manifest=False, expect={"feed": "police.deaths"})


@needs_openssl
@pytest.mark.parametrize("padding", ["pkcs1", "pss"])
def test_fundx_opens_openssl_parts_signed_with_rsa(pki, payload, tmp_path, padding):
    key = new_private_key("encryption")
    cert = issue_certificate(pki.ca_key, pki.ca, common_name="rsa signer", usage="signing", public_key=key.public_key())
    sign = ("-keyopt", "rsa_padding_mode:pss") if padding == "pss" else ()
    sealed = _openssl_seal(pki, payload, tmp_path, sign=sign, signer=_write_pair(tmp_path, key, cert))
    assert open_as(pki, sealed, require_manifest=False).payload == payload


@needs_openssl
def test_fundx_refuses_openssl_parts_outside_its_profile(pki, payload, tmp_path):
    cbc = _openssl_seal(pki, payload, tmp_path, encrypt=("-aes-256-cbc",))
    with pytest.raises(UnsupportedSealError, match="EnvelopedData"):
        open_as(pki, cbc, require_manifest=False)
    (tmp_path / "x.p7s").write_bytes(openssl("cms", "-sign", "-binary", "-md", "sha256", "-signer",
                                             pki.paths.exchange_cert, "-inkey", pki.paths.exchange_key,
                                             "-nodetach", "-outform", "DER", "-in", tmp_path / "x.parquet"))
    pkcs1 = openssl("cms", "-encrypt", "-binary", "-aes-256-gcm", "-recip", pki.paths.stage_cert("death_matching"),
                    "-outform", "DER", "-in", tmp_path / "x.p7s")
    with pytest.raises(UnsupportedSealError, match="RSA-OAEP is required"):
        open_as(pki, pkcs1, require_manifest=False)


# --- refusals ------------------------------------------------------------------------------------


def test_a_flipped_byte_in_the_ciphertext_or_tag_fails_the_gcm_tag(pki, payload, manifest):
    sealed = seal_for(pki, payload, manifest)
    body = _parse_envelope(cms.Ber(sealed), "test").ciphertext
    positions = [body.body, body.body + 1000, (body.body + body.end) // 2, body.end - 1]
    positions += list(range(len(sealed) - 16, len(sealed)))  # every byte of the tag
    for position in positions:
        with pytest.raises(TamperedError, match="authentication tag") as refused:
            open_as(pki, flip(sealed, position), expect={"batch_id": manifest.batch_id})
        assert manifest.batch_id in str(refused.value)


def test_a_flipped_byte_anywhere_before_the_ciphertext_is_refused_or_harmless(pki, payload, manifest):
    """Every byte of the envelope's header: a typed refusal, or (for bytes no one relies on) the same payload."""
    sealed = seal_for(pki, payload, manifest)
    start = _parse_envelope(cms.Ber(sealed), "test").ciphertext.body
    harmless = []
    for position in range(start):
        try:
            opened = open_as(pki, flip(sealed, position))
        except SealError:
            continue
        assert opened.payload == payload
        harmless.append(position)
    # Only the NULL-vs-absent and similar encodings of hash parameters could survive; so far none does.
    assert harmless == []


@needs_openssl
@pytest.mark.parametrize("where, reason", [("payload", "digest"), ("manifest", "signature")])
def test_a_flipped_byte_in_the_signed_content_fails_the_signature(pki, payload, manifest, tmp_path, where, reason):
    """Decrypt with openssl, change one byte of the signed content, encrypt it again properly."""
    signed = _decrypt_with_fundx(pki, seal_for(pki, payload, manifest))
    anchor = payload[200:232] if where == "payload" else b'"feed":"police.deaths"'
    position = signed.index(anchor) + 10
    tampered = flip(signed, position)
    resealed = openssl("cms", "-encrypt", "-binary", "-aes-256-gcm", "-recip", pki.paths.stage_cert("death_matching"),
                       "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256", "-outform", "DER",
                       stdin=tampered)
    with pytest.raises(TamperedError, match=reason) as refused:
        open_as(pki, resealed)
    assert MARKER_ID not in str(refused.value)


def test_a_part_for_another_stage_is_refused_as_wrong_recipient(pki, payload, manifest):
    sealed = seal_for(pki, payload, manifest)
    with pytest.raises(WrongRecipientError, match="custody_matching") as refused:
        open_as(pki, sealed, stage="custody_matching", expect={"batch_id": manifest.batch_id})
    assert manifest.batch_id in str(refused.value)
    assert recipients_among(sealed, [pki.stage(s)[1] for s in ("death_matching", "custody_matching")]) == [
        pki.stage("death_matching")[1]
    ]


def test_a_signer_from_another_ca_is_unknown(pki, payload, manifest):
    other_ca_key, other_ca = make_ca("somebody else's CA")
    key = new_private_key("signing")
    cert = issue_certificate(other_ca_key, other_ca, common_name="fundx exchange", usage="signing",
                             public_key=key.public_key())
    sealed = seal_for(pki, payload, manifest, signer_key=key, signer_cert=cert)
    with pytest.raises(UnknownSignerError, match="did not issue") as refused:
        open_as(pki, sealed)
    assert manifest.batch_id in str(refused.value)


def test_an_expired_signer_certificate_is_refused(pki, payload, manifest):
    key = new_private_key("signing")
    cert = issue_certificate(pki.ca_key, pki.ca, common_name="old exchange", usage="signing",
                             public_key=key.public_key(),
                             not_before=datetime.now(UTC) - timedelta(days=30), days=1)
    sealed = seal_for(pki, payload, manifest, signer_key=key, signer_cert=cert)
    with pytest.raises(CertificateError, match="'old exchange'.*expired") as refused:
        open_as(pki, sealed)
    assert manifest.batch_id in str(refused.value)


def test_a_revoked_signer_certificate_is_refused(pki, payload, manifest):
    key = new_private_key("signing")
    cert = issue_certificate(pki.ca_key, pki.ca, common_name="stolen exchange key", usage="signing",
                             public_key=key.public_key())
    crl = make_crl(pki.ca_key, pki.ca, [(cert.serial_number, datetime.now(UTC))])
    sealed = seal_for(pki, payload, manifest, signer_key=key, signer_cert=cert)
    assert open_as(pki, sealed).payload == payload  # with the CRL that does not list it
    with pytest.raises(CertificateError, match="revoked"):
        open_as(pki, sealed, crl=crl)


def test_a_stage_certificate_cannot_sign(pki, payload, manifest):
    key, cert = pki.stage("custody_matching")
    sealed = seal_for(pki, payload, manifest, signer_key=key, signer_cert=cert)
    with pytest.raises(CertificateError, match="does not allow signing"):
        open_as(pki, sealed)


def test_a_manifest_for_another_recipient_is_refused(pki, payload, other_manifest):
    sealed = seal_for(pki, payload, other_manifest(recipient="bill_review"))  # but encrypted to death matching
    with pytest.raises(ManifestError, match="sealed for stage 'bill_review', not 'death_matching'"):
        open_as(pki, sealed)
    assert open_as(pki, sealed, expect={"recipient": "bill_review"}).manifest.recipient == "bill_review"


@pytest.mark.parametrize(
    "expect, field",
    [
        ({"batch_id": "police.deaths-20261121-0001"}, "batch_id"),  # yesterday's batch replayed
        ({"feed": "civil_affairs.deaths"}, "feed"),
        ({"window_start": datetime(2026, 11, 22, tzinfo=timezone(timedelta(hours=8)))}, "window_start"),
        ({"part": 2}, "part"),
    ],
)
def test_a_manifest_that_differs_from_what_is_expected_is_refused(pki, payload, manifest, expect, field):
    sealed = seal_for(pki, payload, manifest)
    with pytest.raises(ManifestError, match=f"manifest {field} is") as refused:
        open_as(pki, sealed, expect=expect)
    assert manifest.batch_id in str(refused.value) and MARKER_ID not in str(refused.value)


def test_expected_window_may_be_given_as_a_datetime(pki, payload, manifest):
    start = datetime(2026, 11, 20, 16, tzinfo=UTC)  # 2026-11-21T00:00+08:00
    assert open_as(pki, seal_for(pki, payload, manifest), expect={"window_start": start}).manifest == manifest


def test_expect_names_only_manifest_fields(pki, payload, manifest):
    with pytest.raises(TypeError, match="nightly"):
        open_as(pki, seal_for(pki, payload, manifest), expect={"nightly": True})


def test_not_a_sealed_part_at_all_is_tampered(pki, payload):
    for junk in (b"", b"\x30\x80", payload, b"\x30\x03\x06\x01\x00"):
        with pytest.raises(SealError):
            open_as(pki, junk)


def test_sealing_checks_the_signer_pair_and_recipients(pki, payload, manifest):
    other = new_private_key("signing")
    with pytest.raises(ConfigurationError, match="does not belong"):
        seal_for(pki, payload, manifest, signer_key=other)
    with pytest.raises(ConfigurationError, match="no recipient"):
        seal_for(pki, payload, manifest, recipients=[])
    with pytest.raises(ConfigurationError, match="RSA"):
        seal_for(pki, payload, manifest, recipients=[pki.signer_cert])


# --- rotation and key freshness ------------------------------------------------------------------


def test_rotation_seals_to_both_certificates_and_either_key_opens(tmp_path, payload, manifest):
    pki = make_pki(tmp_path, stages=("death_matching",))
    [old] = pki.store.recipient_certificates("death_matching")
    add_stage_certificate("death_matching", home=tmp_path)
    recipients = pki.store.recipient_certificates("death_matching")
    assert len(recipients) == 2
    sealed = seal(payload, manifest, signer_key=pki.signer_key, signer_cert=pki.signer_cert, recipients=recipients)
    pairs = pki.store.stage_keys("death_matching")
    assert len(pairs) == 2
    for key, cert in pairs:
        assert open_sealed(sealed, recipient_key=key, recipient_cert=cert, trusted_ca=pki.ca).payload == payload

    retire_stage_certificate("death_matching", home=tmp_path)  # the old one, without label
    [new] = pki.store.recipient_certificates("death_matching")
    assert new != old and {cert for _, cert in pairs} == {old, new}
    # the retired key still opens parts sealed before, for as long as they are kept
    [(key, cert)] = [pair for pair in pki.store.stage_keys("death_matching") if pair[1] == old]
    assert open_sealed(sealed, recipient_key=key, recipient_cert=cert, trusted_ca=pki.ca).payload == payload


def test_every_part_gets_a_fresh_key_and_nonce(pki, manifest):
    recipients = [pki.stage(s)[1] for s in ("death_matching", "custody_matching")]
    key_a, cert_a = pki.stage("death_matching")
    key_b, cert_b = pki.stage("custody_matching")
    keys, nonces = set(), set()
    count = 120
    for number in range(count):
        sealed = seal_for(pki, b"part %d" % number, manifest, recipients=recipients)
        envelope = _parse_envelope(cms.Ber(sealed), "test")
        content_key = _content_key(envelope, key_a, cert_a, "test")
        assert _content_key(envelope, key_b, cert_b, "test") == content_key  # one key per part, wrapped twice
        keys.add(content_key)
        from asn1crypto import algos

        params = cms.GcmParameters.load(algos.EncryptionAlgorithm.load(envelope.algorithm)["parameters"].dump())
        assert params["aes_icvlen"].native == 16
        nonces.add(params["aes_nonce"].native)
    assert len(keys) == count and len(nonces) == count
    assert all(len(n) == 12 for n in nonces) and all(len(k) == 32 for k in keys)


# --- splitting batches into parts ----------------------------------------------------------------


def test_split_parts_keeps_rows_in_order_within_the_limit():
    table = pa.table({"id": [f"{i:018d}" for i in range(50_000)], "amount": list(range(50_000))})
    limit = 100_000
    parts = split_parts(table, max_bytes=limit)
    assert len(parts) > 3 and all(len(p) <= limit for p in parts)
    back = pa.concat_tables(pq.read_table(io.BytesIO(p)) for p in parts)
    assert back.equals(table)
    assert len(split_parts(table)) == 1


def test_parts_have_dictionaries_only_where_values_repeat_and_read_back_equal():
    """The seal step's Parquet (fundx.crypto.parts.parquet): a column of distinct values is written plain,
    one that repeats with a dictionary, no statistics; every column reads back as it was, nulls included."""
    from fundx.crypto.parts import dictionary_columns, parquet

    rows = 20_000
    table = pa.table({
        "id_number": [f"{110105194912310000 + i}" for i in range(rows)],
        "gender": [("男", "女", None)[i % 3] for i in range(rows)],
        "amount": pa.array([i % 7 for i in range(rows)], pa.int64()),
        "note": pa.array([None] * rows, pa.null()),
        "text": pa.array([f"t{i}" for i in range(rows)], pa.large_string()),
    })
    assert dictionary_columns(table) == ["gender", "amount", "note"]
    data = parquet(table)
    assert pq.read_table(io.BytesIO(data)).equals(table)
    meta = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert not any("DICTIONARY" in e for e in encodings["id_number"]) and "RLE_DICTIONARY" in encodings["gender"]
    assert all(meta.column(i).statistics is None for i in range(meta.num_columns))
    assert dictionary_columns(pa.table({"a": ["x"] * 5})) is True  # every column: pyarrow's default
    empty = pa.table({"a": pa.array([], pa.string())})
    assert pq.read_table(io.BytesIO(parquet(empty))).equals(empty)


def test_a_table_well_under_the_part_limit_is_encoded_once(monkeypatch):
    from fundx.crypto import parts

    encoded = []
    real = parts.parquet
    monkeypatch.setattr(parts, "parquet", lambda table: encoded.append(table.num_rows) or real(table))
    table = pa.table({"id": [f"{i:018d}" for i in range(50_000)]})
    assert len(split_parts(table)) == 1 and encoded == [50_000]  # no sample encoded first
    encoded.clear()
    assert len(split_parts(table, max_bytes=100_000)) > 1 and encoded[0] == 10_000  # a sample sizes the parts


def test_split_parts_refuses_a_row_larger_than_a_part():
    with pytest.raises(DataError, match="one row"):
        split_parts(pa.table({"blob": [os.urandom(50_000)]}), max_bytes=10_000)


def test_an_rsa_key_is_needed_to_open(pki, payload, manifest):
    with pytest.raises(ConfigurationError, match="RSA"):
        open_sealed(seal_for(pki, payload, manifest), recipient_key=pki.signer_key,
                    recipient_cert=pki.stage("death_matching")[1], trusted_ca=pki.ca)
    assert isinstance(pki.stage("death_matching")[0], rsa.RSAPrivateKey)
