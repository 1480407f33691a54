"""Certificates: the key and certificate types of the exchange, their names, and the checks before use.

Every certificate is checked by :func:`validate_certificate` before it is trusted: the signer of every
part and acknowledgement, the exchange's own signing certificate at start, and every recipient's
before a part is encrypted to it. Only certificates issued directly by the trusted CA are accepted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, NoReturn, TypeVar, cast, get_args

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import NameOID

from fundx.core.errors import CertificateError

#: what a certificate is for (:func:`validate_certificate` checks its key usage against it)
Usage = Literal["ca", "signing", "encryption"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
Certificate = x509.Certificate
CRL = x509.CertificateRevocationList


def _utcnow() -> datetime:
    return datetime.now(UTC)


def common_name(cert: Certificate) -> str:
    """The subject CN of a certificate (a stage's certificate is named after the stage)."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else "(no CN)"


def issued_by(cert: Certificate, ca: Certificate) -> bool:
    """True if ``ca`` issued ``cert``: the issuer name matches and the CA's key verifies its signature."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


_Ext = TypeVar("_Ext", bound=x509.ExtensionType)
_ISSUER_KEY_CLASSES = get_args(CertificateIssuerPublicKeyTypes)


def issuer_key(cert: Certificate) -> CertificateIssuerPublicKeyTypes:
    """The public key of an issuing certificate (a key that can sign: not X25519/X448/ML-KEM)."""
    key = cert.public_key()
    if not isinstance(key, _ISSUER_KEY_CLASSES):
        raise CertificateError(f"certificate CN={common_name(cert)!r} has a key that cannot sign ({type(key).__name__})")
    return cast(CertificateIssuerPublicKeyTypes, key)


def _extension(cert: Certificate, kind: type[_Ext]) -> _Ext | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def validate_certificate(cert: Certificate, ca: Certificate, crl: CRL | None, *, usage: Usage,
                         at: datetime | None = None) -> None:
    """Refuse a certificate that may not be used for ``usage`` at ``at`` (default now).

    Checks, in order: issued by ``ca`` (signature), ``ca`` is a valid CA, validity period, key usage
    and key type, not listed in ``crl`` (which must be signed by ``ca`` and not out of date).
    Raises CertificateError naming the subject CN and the reason. Only certificates issued directly
    by the CA are accepted (no intermediate CAs).
    """
    at = at or _utcnow()
    label = f"certificate CN={common_name(cert)!r} (serial {cert.serial_number:x})"

    def refuse(reason: str) -> NoReturn:
        raise CertificateError(f"{label}: {reason}")

    if not issued_by(cert, ca):
        refuse(f"not issued by the trusted CA CN={common_name(ca)!r}")
    constraints = _extension(ca, x509.BasicConstraints)
    ca_usage = _extension(ca, x509.KeyUsage)
    if not (constraints and constraints.ca) or (ca_usage is not None and not ca_usage.key_cert_sign):
        refuse(f"its issuer CN={common_name(ca)!r} is not a CA certificate")
    if not ca.not_valid_before_utc <= at <= ca.not_valid_after_utc:
        refuse(f"the trusted CA CN={common_name(ca)!r} is not valid at {at:%Y-%m-%d %H:%M}Z")
    if at < cert.not_valid_before_utc:
        refuse(f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M}Z")
    if at > cert.not_valid_after_utc:
        refuse(f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M}Z")

    key_usage = _extension(cert, x509.KeyUsage)
    public_key = cert.public_key()
    if usage != "ca":
        leaf_constraints = _extension(cert, x509.BasicConstraints)
        if leaf_constraints is not None and leaf_constraints.ca:
            refuse("is a CA certificate, not one for signing or encryption")
    if key_usage is None:
        refuse("has no key usage extension")
    elif usage == "signing":
        if not (key_usage.digital_signature or key_usage.content_commitment):
            refuse("key usage does not allow signing (digitalSignature)")
        if not isinstance(public_key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
            refuse("signing key is neither RSA nor ECDSA")
    elif usage == "encryption":
        if not key_usage.key_encipherment:
            refuse("key usage does not allow key transport (keyEncipherment)")
        if not isinstance(public_key, rsa.RSAPublicKey) or public_key.key_size < 2048:
            refuse("encryption key is not RSA of at least 2048 bits")
    elif not key_usage.key_cert_sign:
        refuse("key usage does not allow signing certificates (keyCertSign)")

    if crl is not None:
        if crl.issuer != ca.subject or not crl.is_signature_valid(issuer_key(ca)):
            refuse("cannot check revocation: the CRL is not signed by the trusted CA")
        if crl.next_update_utc is not None and crl.next_update_utc < at:
            refuse(f"cannot check revocation: the CRL is out of date since {crl.next_update_utc:%Y-%m-%d}")
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None:
            refuse(f"revoked on {entry.revocation_date_utc:%Y-%m-%d %H:%M}Z")
