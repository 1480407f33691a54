"""Opening a sealed part or a signed document: every check passes before a byte of the payload is returned.

:func:`open_sealed` checks, in order: this certificate is a recipient; the GCM tag over the whole
ciphertext; the SignedData structure; the signature over the signed attributes; the payload digest;
the content type; the signer's certificate (chain to the trusted CA, validity, revocation); the
manifest. :func:`open_signed` makes the same checks of a SignedData alone (a stage's acknowledgement).
Every failure is a typed error naming the batch and the reason, quoting no byte of the part. What a
part is made of: :mod:`fundx.crypto.seal`.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asn1crypto import algos
from asn1crypto import cms as asn1cms
from asn1crypto import x509 as asn1x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fundx.core.errors import (
    CertificateError,
    ConfigurationError,
    ManifestError,
    TamperedError,
    UnknownSignerError,
    UnsupportedSealError,
    WrongRecipientError,
)
from fundx.core.timeutil import aware
from fundx.crypto import cms
from fundx.crypto.certificates import Certificate, PrivateKey, common_name, issued_by, validate_certificate
from fundx.crypto.cms import CONTEXT, UNIVERSAL, MalformedError, Tlv
from fundx.crypto.manifest import MANIFEST_FIELDS, Manifest
from fundx.crypto.seal import CHUNK, KEY_BYTES, NONCE_BYTES, TAG_BYTES

#: the digests a signature, its message-digest or RSA-OAEP may use: SHA-256 or stronger
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclass(frozen=True)
class Opened:
    """A part that passed every check: its payload, its manifest (None only for foreign parts
    opened with ``require_manifest=False``) and the certificate that signed it."""

    payload: bytes
    manifest: Manifest | None
    signer: Certificate


@dataclass(frozen=True)
class _Envelope:
    """Where the pieces of an AuthEnvelopedData lie in the sealed bytes."""

    recipient_infos: bytes
    algorithm: bytes
    ciphertext: Tlv
    aad: bytes
    mac: bytes


def _parse_envelope(buf: cms.Ber, batch: str) -> _Envelope:
    top = cms.expect(cms.read_tlv(buf, 0, buf.nbytes), UNIVERSAL, 16, "a ContentInfo")
    if top.end != buf.nbytes:
        raise MalformedError("bytes after the end of the ContentInfo")
    content_type, body = cms.children(buf, top)[:2]
    kind = cms.oid_at(buf, content_type)
    if kind != cms.ID_AUTH_ENVELOPED_DATA:
        what = "EnvelopedData (AES-CBC, no integrity)" if kind == "1.2.840.113549.1.7.3" else f"content type {kind}"
        raise UnsupportedSealError(f"batch {batch}: {what} is not accepted; parts must be AuthEnvelopedData")
    cms.expect(body, CONTEXT, 0, "[0] content")
    items = cms.children(buf, cms.expect(cms.children(buf, body)[0], UNIVERSAL, 16, "AuthEnvelopedData"))
    if cms.der(buf, items[0]) != b"\x02\x01\x00":
        raise MalformedError("AuthEnvelopedData version is not 0")
    items = [i for i in items[1:] if not i.is_(CONTEXT, 0)]  # skip the optional originatorInfo
    recipient_infos = cms.expect(items[0], UNIVERSAL, 17, "recipientInfos")
    eci = cms.expect(items[1], UNIVERSAL, 16, "authEncryptedContentInfo")
    rest = items[2:]
    aad = b""
    if rest and rest[0].is_(CONTEXT, 1):
        # RFC 5083: the authenticated attributes are authenticated as a DER SET OF.
        raw = cms.der(buf, rest[0])
        aad = asn1cms.CMSAttributes.load(b"\x31" + raw[1:]).dump(force=True)
        rest = rest[1:]
    mac = cms.expect(rest[0], UNIVERSAL, 4, "mac")
    eci_items = cms.children(buf, eci)
    encrypted = [i for i in eci_items[2:] if i.is_(CONTEXT, 0)]
    if not encrypted:
        raise UnsupportedSealError(f"batch {batch}: the encrypted content is detached, not inside the part")
    if cms.oid_at(buf, eci_items[0]) != cms.ID_DATA:
        raise UnsupportedSealError(f"batch {batch}: the encrypted content type is not id-data")
    return _Envelope(
        recipient_infos=cms.der(buf, recipient_infos),
        algorithm=cms.der(buf, cms.expect(eci_items[1], UNIVERSAL, 16, "contentEncryptionAlgorithm")),
        ciphertext=encrypted[0],
        aad=aad,
        mac=b"".join(cms.octets(buf, mac)),
    )


def _subject_key_identifier(cert: Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def _identifies(identifier: asn1cms.Choice, cert: Certificate) -> bool:
    """True if a RecipientIdentifier or SignerIdentifier names ``cert`` (issuer+serial, or key id)."""
    if identifier.name == "issuer_and_serial_number":
        chosen = identifier.chosen
        return (
            chosen["serial_number"].native == cert.serial_number
            and chosen["issuer"] == asn1x509.Name.load(cert.issuer.public_bytes())
        )
    return identifier.chosen.native == _subject_key_identifier(cert)


def _oaep(parameters: Any, batch: str) -> padding.OAEP:
    if parameters.native is None:
        raise UnsupportedSealError(f"batch {batch}: RSA-OAEP without parameters means SHA-1; SHA-256 is required")
    digest = parameters["hash_algorithm"]["algorithm"].native
    mask = parameters["mask_gen_algorithm"]
    mask_digest = mask["parameters"]["algorithm"].native if mask["algorithm"].native == "mgf1" else None
    if digest not in _HASHES or mask_digest not in _HASHES:
        raise UnsupportedSealError(
            f"batch {batch}: RSA-OAEP with {digest}/MGF1-{mask_digest}; SHA-256 or stronger is required"
            " (openssl: -keyopt rsa_oaep_md:sha256)"
        )
    label = parameters["p_source_algorithm"]["parameters"].native or None
    return padding.OAEP(mgf=padding.MGF1(_HASHES[mask_digest]()), algorithm=_HASHES[digest](), label=label)


def _content_key(envelope: _Envelope, key: PrivateKey, cert: Certificate, batch: str) -> bytes:
    """Find our KeyTransRecipientInfo and decrypt the content-encryption key with RSA-OAEP."""
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigurationError("a stage's private key must be RSA (RSA-OAEP key transport)")
    mine = None
    for info in asn1cms.RecipientInfos.load(envelope.recipient_infos):
        if info.name == "ktri" and _identifies(info.chosen["rid"], cert):
            mine = info.chosen
            break
    if mine is None:
        raise WrongRecipientError(
            f"batch {batch}: not sealed for certificate CN={common_name(cert)!r} (serial {cert.serial_number:x})"
        )
    if mine["version"].native != ("v0" if mine["rid"].name == "issuer_and_serial_number" else "v2"):
        raise MalformedError("KeyTransRecipientInfo version does not fit its identifier")
    algorithm = mine["key_encryption_algorithm"]
    if algorithm["algorithm"].native != "rsaes_oaep":
        raise UnsupportedSealError(
            f"batch {batch}: key transport {algorithm['algorithm'].native} is not accepted; RSA-OAEP is required"
            " (openssl: -keyopt rsa_padding_mode:oaep -keyopt rsa_oaep_md:sha256)"
        )
    try:
        return key.decrypt(mine["encrypted_key"].native, _oaep(algorithm["parameters"], batch))
    except ValueError:
        raise TamperedError(f"batch {batch}: the content-encryption key does not decrypt with this stage's key") from None


def _decrypt(buf: cms.Ber, envelope: _Envelope, content_key: bytes, batch: str) -> bytes:
    """The plaintext, once the GCM tag has been checked over all of it."""
    algorithm = algos.EncryptionAlgorithm.load(envelope.algorithm)
    if algorithm["algorithm"].native != "aes256_gcm":
        raise UnsupportedSealError(
            f"batch {batch}: content encryption {algorithm['algorithm'].native} is not accepted; AES-256-GCM is required"
        )
    params = cms.GcmParameters.load(algorithm["parameters"].dump())
    nonce, tag_length = params["aes_nonce"].native, params["aes_icvlen"].native
    if len(nonce) != NONCE_BYTES or tag_length != TAG_BYTES or len(content_key) != KEY_BYTES:
        raise UnsupportedSealError(
            f"batch {batch}: AES-GCM with a {len(nonce)}-byte nonce, {tag_length}-byte tag and "
            f"{len(content_key)}-byte key; 12, 16 and 32 are required"
        )
    if len(envelope.mac) != tag_length:
        raise TamperedError(f"batch {batch}: the authentication tag has the wrong length")
    decryptor = Cipher(algorithms.AES(content_key), modes.GCM(nonce, envelope.mac)).decryptor()
    if envelope.aad:
        decryptor.authenticate_additional_data(envelope.aad)
    # Into a growing BytesIO through one 1 MiB buffer: a preallocated bytearray would be zero-filled
    # first, a whole extra pass over fresh memory.
    out = io.BytesIO()
    buffer = bytearray(CHUNK + 15)  # update_into wants room for one more block
    view = memoryview(buffer)
    for segment in cms.octets(buf, envelope.ciphertext):
        for offset in range(0, segment.nbytes, CHUNK):
            out.write(view[: decryptor.update_into(segment[offset : offset + CHUNK], buffer)])
    try:
        decryptor.finalize()
    except InvalidTag:
        raise TamperedError(
            f"batch {batch}: the authentication tag does not match (altered or damaged in transit or at rest)"
        ) from None
    return out.getvalue()


@dataclass(frozen=True)
class _Signed:
    """The pieces of the decrypted ContentInfo(SignedData) that verification needs."""

    content_type: str
    payload: bytes
    certificates: list[Certificate]
    signer_infos: bytes


def _parse_signed(plaintext: bytes, batch: str) -> _Signed:
    buf = cms.Ber(plaintext)
    length = buf.nbytes
    top = cms.expect(cms.read_tlv(buf, 0, length), UNIVERSAL, 16, "a ContentInfo")
    if top.end != length:
        raise MalformedError("bytes after the end of the signed ContentInfo")
    content_type, body = cms.children(buf, top)[:2]
    if cms.oid_at(buf, content_type) != cms.ID_SIGNED_DATA:
        raise UnsupportedSealError(f"batch {batch}: the encrypted content is not signed (SignedData is required)")
    items = cms.children(buf, cms.expect(cms.children(buf, body)[0], UNIVERSAL, 16, "SignedData"))
    encap = cms.children(buf, cms.expect(items[2], UNIVERSAL, 16, "encapContentInfo"))
    e_type = cms.oid_at(buf, encap[0])
    if len(encap) < 2:
        raise UnsupportedSealError(f"batch {batch}: the signature is detached; the payload must be inside")
    e_content = cms.expect(cms.children(buf, cms.expect(encap[1], CONTEXT, 0, "eContent"))[0], UNIVERSAL, 4,
                           "eContent OCTET STRING")
    segments = list(cms.octets(buf, e_content))
    payload = bytes(segments[0]) if len(segments) == 1 else b"".join(segments)
    del segments
    certificates = []
    for item in items[3:-1]:
        if item.is_(CONTEXT, 0):
            certificates = [x509.load_der_x509_certificate(cms.der(buf, c))
                            for c in cms.children(buf, item) if c.is_(UNIVERSAL, 16)]
    signer_infos = cms.der(buf, cms.expect(items[-1], UNIVERSAL, 17, "signerInfos"))
    return _Signed(e_type, payload, certificates, signer_infos)


def _verify_signature(signer_info: asn1cms.SignerInfo, cert: Certificate, data: bytes, batch: str) -> None:
    """Check the signature over the signed attributes with the signer certificate's key."""
    algorithm = signer_info["signature_algorithm"]
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    signature = signer_info["signature"].native
    public_key = cert.public_key()
    try:
        kind = algorithm.signature_algo
    except ValueError:
        raise UnsupportedSealError(f"batch {batch}: signature algorithm {algorithm['algorithm'].dotted}") from None
    try:
        if kind == "ecdsa" and isinstance(public_key, ec.EllipticCurvePublicKey):
            name = digest_name if algorithm["algorithm"].native == "ecdsa" else algorithm.hash_algo
            _require_hash(name, batch)
            public_key.verify(signature, data, ec.ECDSA(_HASHES[name]()))
        elif kind == "rsassa_pkcs1v15" and isinstance(public_key, rsa.RSAPublicKey):
            name = digest_name if algorithm["algorithm"].native == "rsassa_pkcs1v15" else algorithm.hash_algo
            _require_hash(name, batch)
            public_key.verify(signature, data, padding.PKCS1v15(), _HASHES[name]())
        elif kind == "rsassa_pss" and isinstance(public_key, rsa.RSAPublicKey):
            params = algorithm["parameters"]
            name = params["hash_algorithm"]["algorithm"].native
            mask_name = params["mask_gen_algorithm"]["parameters"]["algorithm"].native
            _require_hash(name, batch)
            _require_hash(mask_name, batch)
            pss = padding.PSS(mgf=padding.MGF1(_HASHES[mask_name]()), salt_length=params["salt_length"].native)
            public_key.verify(signature, data, pss, _HASHES[name]())
        else:
            raise UnsupportedSealError(
                f"batch {batch}: signature algorithm {kind} does not fit the signer's {type(public_key).__name__}"
            )
    except InvalidSignature:
        raise TamperedError(f"batch {batch}: the signature does not verify (signed content altered)") from None


def _require_hash(name: str | None, batch: str) -> None:
    if name not in _HASHES:
        raise UnsupportedSealError(f"batch {batch}: digest {name} is not accepted; SHA-256 or stronger is required")


def _attributes(signer_info: asn1cms.SignerInfo, batch: str) -> dict[str, Any]:
    """The signed attributes by name: each must appear once, with one value."""
    found: dict[str, Any] = {}
    for attribute in signer_info["signed_attrs"]:
        name = attribute["type"].native
        values = attribute["values"]
        if name in found or len(values) != 1:
            raise TamperedError(f"batch {batch}: signed attribute {name} appears more than once")
        found[name] = values[0]
    return found


def _matches(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, datetime):
        try:
            return aware(actual) == wanted
        except ValueError:
            return False
    return actual == wanted


def _malformed(exc: BaseException, batch: str) -> TamperedError:
    """A malformed structure as a TamperedError that quotes none of its bytes.

    asn1crypto and cryptography report malformed input as ValueError/KeyError/IndexError; their
    messages may quote the bytes, so only ours (MalformedError) are passed on.
    """
    detail = str(exc) if isinstance(exc, MalformedError) else type(exc).__name__
    return TamperedError(f"batch {batch}: not a well-formed sealed part ({detail})")


def _verify_signed(signed: _Signed, batch: str) -> tuple[Manifest | None, Certificate, str]:
    """Check a SignedData's one signature, payload digest and content type; returns its manifest (if
    any), the signer's certificate (not yet checked against a CA) and the batch name for messages."""
    signer_infos = asn1cms.SignerInfos.load(signed.signer_infos)
    if len(signer_infos) != 1:
        raise UnsupportedSealError(f"batch {batch}: {len(signer_infos)} signers; exactly one is expected")
    signer_info = signer_infos[0]
    if signer_info["signed_attrs"].native is None:
        raise UnsupportedSealError(f"batch {batch}: the signature has no signed attributes")
    attributes = _attributes(signer_info, batch)
    manifest = None
    if "fundx_manifest" in attributes:
        try:
            manifest = Manifest.from_json(attributes["fundx_manifest"].native)
        except ValueError as exc:
            raise ManifestError(f"batch {batch}: the manifest is unreadable ({exc})") from None
        batch = manifest.batch_id  # not yet verified: used only to name the part in messages
    signer = next((c for c in signed.certificates if _identifies(signer_info["sid"], c)), None)
    if signer is None:
        raise UnknownSignerError(f"batch {batch}: the signer's certificate is not included in the part")
    signed_attrs = signer_info["signed_attrs"].dump()
    _verify_signature(signer_info, signer, b"\x31" + signed_attrs[1:], batch)
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    _require_hash(digest_name, batch)
    digest = attributes.get("message_digest")
    if digest is None or not hmac.compare_digest(
        digest.native, hashlib.new(digest_name, signed.payload).digest()
    ):
        raise TamperedError(f"batch {batch}: the payload's digest does not match the signed message-digest")
    content_type = attributes.get("content_type")
    if content_type is None or content_type.dotted != signed.content_type:
        raise TamperedError(f"batch {batch}: the signed content-type does not match the content")
    if signed.content_type != cms.ID_DATA:
        raise UnsupportedSealError(f"batch {batch}: eContentType {signed.content_type}; id-data is required")
    return manifest, signer, batch


def _check_signer_certificate(signer: Certificate, trusted_ca: Certificate,
                              crl: x509.CertificateRevocationList | None, batch: str) -> None:
    """The signer chains to the trusted CA, is valid now, may sign and is not revoked."""
    if not issued_by(signer, trusted_ca):
        raise UnknownSignerError(
            f"batch {batch}: signed by CN={common_name(signer)!r}, which the trusted CA "
            f"CN={common_name(trusted_ca)!r} did not issue"
        )
    try:
        validate_certificate(signer, trusted_ca, crl, usage="signing")
    except CertificateError as refused:
        raise CertificateError(f"batch {batch}: signer {refused}") from None


def open_sealed(data: bytes | bytearray | memoryview, *, recipient_key: PrivateKey, recipient_cert: Certificate,
                trusted_ca: Certificate, crl: x509.CertificateRevocationList | None = None,
                expect: Mapping[str, Any] | None = None, require_manifest: bool = True) -> Opened:
    """Decrypt a sealed part and verify everything before handing back its payload.

    Checks, in order: this certificate is a recipient; the GCM tag; the SignedData structure; the
    signature over the signed attributes; message-digest = SHA-2 of the payload; content-type; the
    signer certificate chains to ``trusted_ca``, is valid now and is not in ``crl``; the manifest
    names this stage (``expect["recipient"]``, else the CN of ``recipient_cert``) and every field in
    ``expect`` (e.g. feed, batch_id, window_start). Any failure raises a SealError subclass (or
    CertificateError for an expired or revoked signer) naming the batch and the reason.
    A part without fundx manifest (sealed by openssl alone) opens only with ``require_manifest=False``.
    """
    wanted = dict(expect or {})
    unknown = set(wanted) - MANIFEST_FIELDS
    if unknown:
        raise TypeError(f"expect names fields a manifest does not have: {sorted(unknown)}")
    batch = str(wanted.get("batch_id", "(not yet known)"))
    buf = cms.Ber(data)
    try:
        envelope = _parse_envelope(buf, batch)
        content_key = _content_key(envelope, recipient_key, recipient_cert, batch)
        plaintext = _decrypt(buf, envelope, content_key, batch)
        signed = _parse_signed(plaintext, batch)
        del plaintext
        manifest, signer, batch = _verify_signed(signed, batch)
    except (MalformedError, ValueError, KeyError, IndexError) as exc:
        raise _malformed(exc, batch) from None
    _check_signer_certificate(signer, trusted_ca, crl, batch)

    if manifest is None:
        if require_manifest or wanted:
            raise ManifestError(f"batch {batch}: the part carries no fundx manifest")
    else:
        recipient = wanted.pop("recipient", None) or common_name(recipient_cert)
        if manifest.recipient != recipient:
            raise ManifestError(f"batch {batch}: sealed for stage {manifest.recipient!r}, not {recipient!r}")
        for name, value in wanted.items():
            if not _matches(getattr(manifest, name), value):
                raise ManifestError(f"batch {batch}: manifest {name} is {getattr(manifest, name)!r}, expected {value!r}")
    return Opened(payload=signed.payload, manifest=manifest, signer=signer)


def recipients_among(data: bytes | bytearray | memoryview, certificates: Sequence[Certificate]) -> list[Certificate]:
    """Which of ``certificates`` a sealed part is encrypted to; a stage mid-rotation picks its key with it."""
    buf = cms.Ber(data)
    try:
        envelope = _parse_envelope(buf, "(not yet known)")
        rids = [i.chosen["rid"] for i in asn1cms.RecipientInfos.load(envelope.recipient_infos) if i.name == "ktri"]
        return [c for c in certificates if any(_identifies(rid, c) for rid in rids)]
    except (MalformedError, ValueError, KeyError, IndexError) as exc:
        raise TamperedError(f"not a well-formed sealed part ({type(exc).__name__})") from None


def open_signed(data: bytes | bytearray | memoryview, *, trusted_ca: Certificate,
                crl: x509.CertificateRevocationList | None = None, what: str = "signed document") -> Opened:
    """Verify a SignedData made by :func:`sign` (or ``openssl cms -sign``) and return its payload.

    The same checks as the inner layer of :func:`open_sealed`: one signer, the signature over the
    signed attributes, the payload digest, the content type, and the signer's certificate against
    ``trusted_ca`` and ``crl``. Callers check who the signer is (``Opened.signer``).
    """
    try:
        signed = _parse_signed(bytes(data), what)
        manifest, signer, _ = _verify_signed(signed, what)
    except (MalformedError, ValueError, KeyError, IndexError) as exc:
        raise _malformed(exc, what) from None
    _check_signer_certificate(signer, trusted_ca, crl, what)
    return Opened(payload=signed.payload, manifest=manifest, signer=signer)
