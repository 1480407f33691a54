"""Signed documents (a stage's acknowledgements): CMS SignedData that openssl verifies and fundx checks."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime

import pytest

from fundx.core.errors import CertificateError, TamperedError, UnknownSignerError
from fundx.crypto.opening import open_signed
from fundx.crypto.pki import issue_certificate, make_ca, make_crl, new_private_key
from fundx.crypto.seal import sign

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
BODY = b'{"format":"fundx.ack/1","outcome":"received"}'


def test_a_signed_document_opens_and_names_its_signer(pki):
    signed = sign(BODY, signer_key=pki.signer_key, signer_cert=pki.signer_cert)
    opened = open_signed(signed, trusted_ca=pki.ca, crl=pki.store.crl())
    assert opened.payload == BODY and opened.signer == pki.signer_cert and opened.manifest is None


def test_a_changed_byte_another_ca_or_a_revoked_signer_is_refused(pki):
    signed = bytearray(sign(BODY, signer_key=pki.signer_key, signer_cert=pki.signer_cert))
    at = bytes(signed).index(b"received")
    signed[at] ^= 0x20
    with pytest.raises(TamperedError):
        open_signed(bytes(signed), trusted_ca=pki.ca)

    other_key, other_ca = make_ca("another CA")
    key = new_private_key("signing")
    stranger = issue_certificate(other_key, other_ca, common_name="death_matching", usage="signing",
                                 public_key=key.public_key())
    with pytest.raises(UnknownSignerError, match="did not issue"):
        open_signed(sign(BODY, signer_key=key, signer_cert=stranger), trusted_ca=pki.ca)

    key = new_private_key("signing")
    revoked = issue_certificate(pki.ca_key, pki.ca, common_name="death_matching", usage="signing",
                                public_key=key.public_key())
    crl = make_crl(pki.ca_key, pki.ca, [(revoked.serial_number, datetime.now(UTC))])
    with pytest.raises(CertificateError, match="revoked"):
        open_signed(sign(BODY, signer_key=key, signer_cert=revoked), trusted_ca=pki.ca, crl=crl)


@needs_openssl
def test_openssl_verifies_what_fundx_signs_and_fundx_what_openssl_signs(pki, tmp_path):
    (tmp_path / "ack.p7s").write_bytes(sign(BODY, signer_key=pki.signer_key, signer_cert=pki.signer_cert))
    shown = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", tmp_path / "ack.p7s",
                            "-CAfile", pki.paths.ca_cert], capture_output=True, timeout=60, check=True)
    assert shown.stdout == BODY
    (tmp_path / "body.json").write_bytes(BODY)
    signed = subprocess.run(["openssl", "cms", "-sign", "-binary", "-md", "sha256", "-nodetach", "-outform", "DER",
                             "-signer", pki.paths.exchange_cert, "-inkey", pki.paths.exchange_key,
                             "-in", tmp_path / "body.json"], capture_output=True, timeout=60, check=True).stdout
    assert open_signed(signed, trusted_ca=pki.ca).payload == BODY
