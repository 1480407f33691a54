"""Sealing a part for its stage: signed by the exchange, then encrypted for the stage's certificates.

The sealed format is plain CMS (RFC 5652), so that ``openssl cms`` reads it without fundx::

    ContentInfo authEnvelopedData (RFC 5083)
      recipientInfos: one KeyTransRecipientInfo per certificate, identified by issuer and serial
                      number, RSAES-OAEP with SHA-256 and MGF1-SHA-256
      authEncryptedContentInfo: id-data, AES-256-GCM (RFC 5084), fresh key and 12-byte nonce per part
        plaintext: ContentInfo signedData
          eContent: the payload (Parquet bytes), exactly as given
          certificates: the exchange's signing certificate
          signerInfo: SHA-256; ECDSA P-256 (or RSASSA-PSS for an RSA key); signed attributes
                      content-type, signing-time, message-digest and the fundx manifest
      mac: the 16-byte GCM tag

The manifest (batch, feed, window, part, recipient ...; :mod:`fundx.crypto.manifest`) is a signed attribute
rather than part of the content: the signature binds it to the payload, so a part cannot be replayed to
another recipient or night, while ``openssl cms -verify`` still outputs the Parquet file untouched.

Sealing streams: the payload is hashed once, then the signed structure is encrypted in 1 MiB chunks
straight into the output, so memory stays at the payload plus the sealed output. Opening
(:mod:`fundx.crypto.opening`) verifies the GCM tag, the signature, the payload digest, the signer's
certificate (chain, validity, revocation) and the manifest before it returns a single byte of the payload.
Batches are cut into parts by :mod:`fundx.crypto.parts`.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from asn1crypto import algos, core
from asn1crypto import cms as asn1cms
from asn1crypto import x509 as asn1x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fundx.core.errors import ConfigurationError
from fundx.core.files import atomic_file
from fundx.crypto import cms
from fundx.crypto.certificates import Certificate, PrivateKey, common_name
from fundx.crypto.manifest import Manifest

#: bytes fed to AES-GCM at a time
CHUNK = 1024 * 1024
#: AES-256-GCM: the key, nonce and tag sizes of every part (opening accepts no others)
KEY_BYTES, NONCE_BYTES, TAG_BYTES = 32, 12, 16

# The constant AlgorithmIdentifiers, encoded once: asn1crypto spends milliseconds on DEFAULT fields.
_SHA256_MGF1 = {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}}
_OAEP_SHA256 = asn1cms.KeyEncryptionAlgorithm(
    {"algorithm": "rsaes_oaep",
     "parameters": algos.RSAESOAEPParams({"hash_algorithm": {"algorithm": "sha256"}, "mask_gen_algorithm": _SHA256_MGF1})}
).dump()
_PSS_SHA256 = asn1cms.SignedDigestAlgorithm(
    {"algorithm": "rsassa_pss",
     "parameters": algos.RSASSAPSSParams(
         {"hash_algorithm": {"algorithm": "sha256"}, "mask_gen_algorithm": _SHA256_MGF1, "salt_length": 32})}
).dump()
_ECDSA_SHA256 = asn1cms.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}).dump()


def _asn1_cert(cert: Certificate) -> asn1x509.Certificate:
    return asn1x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _issuer_and_serial(cert: Certificate) -> asn1cms.IssuerAndSerialNumber:
    return asn1cms.IssuerAndSerialNumber(
        {"issuer": asn1x509.Name.load(cert.issuer.public_bytes()), "serial_number": cert.serial_number}
    )


def _sign(key: PrivateKey, data: bytes) -> tuple[asn1cms.SignedDigestAlgorithm, bytes]:
    """The SignerInfo signature algorithm and signature over ``data`` (the DER of the signed attributes)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return asn1cms.SignedDigestAlgorithm.load(_ECDSA_SHA256), key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
        return asn1cms.SignedDigestAlgorithm.load(_PSS_SHA256), signature
    raise ConfigurationError("the exchange's signing key must be ECDSA or RSA")


def _signed_data_parts(payload_len: int, payload_digest: bytes, manifest: Manifest | None, signer_key: PrivateKey,
                       signer_cert: Certificate) -> tuple[bytes, bytes]:
    """The DER before and after the payload of ContentInfo(SignedData) with the payload as eContent."""
    signing_time = datetime.now(UTC).replace(microsecond=0)
    attributes: list[dict[str, Any]] = [
        {"type": "content_type", "values": ["data"]},
        {"type": "signing_time", "values": [asn1cms.Time({"utc_time": signing_time})]},
        {"type": "message_digest", "values": [payload_digest]},
    ]
    if manifest is not None:
        attributes.append({"type": "fundx_manifest", "values": [manifest.to_json()]})
    attrs = asn1cms.CMSAttributes(attributes)
    signature_algorithm, signature = _sign(signer_key, attrs.dump())  # SET OF, sorted: what verifiers hash
    signer_info = asn1cms.SignerInfo(
        {
            "version": "v1",
            "sid": asn1cms.SignerIdentifier({"issuer_and_serial_number": _issuer_and_serial(signer_cert)}),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": attrs,
            "signature_algorithm": signature_algorithm,
            "signature": signature,
        }
    )
    # Everything but the eContent is built by asn1crypto: a detached SignedData lends its fields.
    template = asn1cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {"content_type": "data"},
            "certificates": [asn1cms.CertificateChoices({"certificate": _asn1_cert(signer_cert)})],
            "signer_infos": [signer_info],
        }
    )
    head = template["version"].dump() + template["digest_algorithms"].dump()
    tail = template["certificates"].dump() + template["signer_infos"].dump()
    octets = cms.header(cms.OCTET_STRING, payload_len)
    explicit = cms.header(cms.CONTEXT_0_CONSTRUCTED, len(octets) + payload_len)
    e_type = cms.oid(cms.ID_DATA)
    encap = cms.header(cms.SEQUENCE, len(e_type) + len(explicit) + len(octets) + payload_len) + e_type + explicit + octets
    sd_len = len(head) + len(encap) + payload_len + len(tail)
    sd = cms.header(cms.SEQUENCE, sd_len)
    ci_explicit = cms.header(cms.CONTEXT_0_CONSTRUCTED, len(sd) + sd_len)
    ci_type = cms.oid(cms.ID_SIGNED_DATA)
    ci = cms.header(cms.SEQUENCE, len(ci_type) + len(ci_explicit) + len(sd) + sd_len)
    return ci + ci_type + ci_explicit + sd + head + encap, tail


def _recipient_info(cert: Certificate, content_key: bytes) -> asn1cms.RecipientInfo:
    public_key = cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ConfigurationError(f"recipient certificate CN={common_name(cert)!r} has no RSA key (RSA-OAEP needs one)")
    encrypted_key = public_key.encrypt(
        content_key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    )
    return asn1cms.RecipientInfo(
        {
            "ktri": {
                "version": "v0",
                "rid": asn1cms.RecipientIdentifier({"issuer_and_serial_number": _issuer_and_serial(cert)}),
                "key_encryption_algorithm": asn1cms.KeyEncryptionAlgorithm.load(_OAEP_SHA256),
                "encrypted_key": encrypted_key,
            }
        }
    )


def _check_signer(signer_key: PrivateKey, signer_cert: Certificate) -> None:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if signer_key.public_key().public_bytes(der, spki) != signer_cert.public_key().public_bytes(der, spki):
        raise ConfigurationError(
            f"the signing key does not belong to certificate CN={common_name(signer_cert)!r}",
            action="configure the exchange's signing key and certificate as a pair",
        )


@dataclass(frozen=True)
class _Plan:
    """A part ready to be written: everything is known but the ciphertext and the tag."""

    head: bytes  # the envelope up to the first ciphertext byte
    plaintext: tuple[memoryview, ...]  # signed-data prefix, payload, signed-data suffix
    encryptor: Any
    size: int  # of the whole sealed part


def _check_inputs(manifest: Manifest, signer_key: PrivateKey, signer_cert: Certificate,
                  recipients: Sequence[Certificate]) -> None:
    if not recipients:
        raise ConfigurationError(f"batch {manifest.batch_id}: no recipient certificate to seal to")
    _check_signer(signer_key, signer_cert)


def _plan(data: memoryview, manifest: Manifest, signer_key: PrivateKey, signer_cert: Certificate,
          recipients: Sequence[Certificate]) -> _Plan:
    _check_inputs(manifest, signer_key, signer_cert, recipients)
    n = data.nbytes
    # The payload is read twice (SHA-256, then AES-GCM): the signature sits after the payload in
    # the SignedData, but its length is part of the headers in front of it.
    prefix, suffix = _signed_data_parts(n, hashlib.sha256(data).digest(), manifest, signer_key, signer_cert)
    inner_len = len(prefix) + n + len(suffix)

    # A fresh key and nonce for every part: a (key, nonce) pair is never used twice.
    content_key, nonce = os.urandom(KEY_BYTES), os.urandom(NONCE_BYTES)
    encryptor = Cipher(algorithms.AES(content_key), modes.GCM(nonce)).encryptor()
    recipient_infos = asn1cms.RecipientInfos([_recipient_info(c, content_key) for c in recipients]).dump()
    version = asn1cms.CMSVersion("v0").dump()
    e_type = cms.oid(cms.ID_DATA)
    algorithm = cms.gcm_algorithm(nonce, TAG_BYTES).dump()
    encrypted = cms.header(cms.CONTEXT_0_PRIMITIVE, inner_len)
    eci_len = len(e_type) + len(algorithm) + len(encrypted) + inner_len
    eci = cms.header(cms.SEQUENCE, eci_len)
    aed_len = len(version) + len(recipient_infos) + len(eci) + eci_len + _MAC_LEN
    aed = cms.header(cms.SEQUENCE, aed_len)
    explicit = cms.header(cms.CONTEXT_0_CONSTRUCTED, len(aed) + aed_len)
    ci_type = cms.oid(cms.ID_AUTH_ENVELOPED_DATA)
    ci = cms.header(cms.SEQUENCE, len(ci_type) + len(explicit) + len(aed) + aed_len)
    head = ci + ci_type + explicit + aed + version + recipient_infos + eci + e_type + algorithm + encrypted
    return _Plan(head, (memoryview(prefix), data, memoryview(suffix)), encryptor,
                 len(head) + inner_len + _MAC_LEN)


_MAC_LEN = len(core.OctetString(b"\0" * TAG_BYTES).dump())


def _write(plan: _Plan, out: IO[bytes] | _Hashing) -> int:
    out.write(plan.head)
    buffer = bytearray(CHUNK + 15)  # update_into wants room for one more block
    view = memoryview(buffer)
    for piece in plan.plaintext:
        for offset in range(0, piece.nbytes, CHUNK):
            count = plan.encryptor.update_into(piece[offset : offset + CHUNK], buffer)
            out.write(view[:count])
    plan.encryptor.finalize()
    out.write(core.OctetString(plan.encryptor.tag).dump())
    return plan.size


def seal_into(out: IO[bytes], payload: bytes | bytearray | memoryview, manifest: Manifest, *,
              signer_key: PrivateKey, signer_cert: Certificate, recipients: Sequence[Certificate]) -> int:
    """Write the sealed part (DER) to a binary stream in 1 MiB writes; returns the bytes written.

    The stream may be a file, an fsspec file or a BytesIO. Certificates are not checked here:
    :func:`fundx.crypto.keys.recipient_certificates` hands out only usable ones.
    """
    return _write(_plan(memoryview(payload).cast("B"), manifest, signer_key, signer_cert, recipients), out)


def seal(payload: bytes | bytearray | memoryview, manifest: Manifest, *, signer_key: PrivateKey,
         signer_cert: Certificate, recipients: Sequence[Certificate]) -> bytes:
    """The sealed part as DER bytes (memory: the payload plus the sealed part, nothing more)."""
    out = io.BytesIO()
    # BytesIO grows by realloc (mremap for large buffers: no copying, and the 1/8 it reserves ahead
    # is never touched, so it costs no resident memory); getvalue() hands the buffer over uncopied.
    # Reserving the exact size up front was measured slower: it zero-fills the pages once more.
    seal_into(out, payload, manifest, signer_key=signer_key, signer_cert=signer_cert, recipients=recipients)
    return out.getvalue()


def sign(payload: bytes | bytearray | memoryview, *, signer_key: PrivateKey, signer_cert: Certificate) -> bytes:
    """A CMS SignedData (DER) holding ``payload``, in the same profile as a part's inner layer.

    For small signed documents such as a stage's acknowledgement; ``openssl cms -verify -binary
    -inform DER -CAfile ca.pem`` prints the payload back. :func:`open_signed` verifies it.
    """
    _check_signer(signer_key, signer_cert)
    data = memoryview(payload).cast("B")
    prefix, suffix = _signed_data_parts(data.nbytes, hashlib.sha256(data).digest(), None, signer_key, signer_cert)
    return prefix + bytes(data) + suffix


class _Hashing:
    """A binary stream that hashes (SHA-256) every byte written through it."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out, self.hash = out, hashlib.sha256()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.hash.update(data)
        return self.out.write(data)


def seal_to_file(path: str | os.PathLike[str], payload: bytes | bytearray | memoryview, manifest: Manifest, *,
                 signer_key: PrivateKey, signer_cert: Certificate, recipients: Sequence[Certificate]) -> str:
    """Seal into a file atomically: a temporary name created mode 0600, fsync, rename, fsync the folder.
    Returns the SHA-256 (hex) of the file, hashed as it is written (the file is not read back)."""
    with atomic_file(Path(path), 0o600) as handle:
        hashing = _Hashing(handle)
        _write(_plan(memoryview(payload).cast("B"), manifest, signer_key, signer_cert, recipients), hashing)
    return hashing.hash.hexdigest()
