"""Keys and X.509 certificates of the exchange: a development PKI, loading for production, and checks.

Who holds what:
- a CA (development: made by :func:`init_keys`; production: the agencies' own) that every party trusts;
- the exchange's **signing** certificate, whose key signs every sealed part;
- one **encryption** certificate per stage (the matching stages and the data stewards); a stage may
  hold several at once while it rotates keys (``stages/<stage>.pem`` and ``stages/<stage>.next.pem``),
  and parts are encrypted to every one of them until the old one is retired;
- one **signing** certificate per stage (``signers/<stage>.pem``, CN = the stage, OU = stage), whose
  key signs the stage's acknowledgements and refusals. It is a second certificate rather than
  digitalSignature on the encryption certificate: the two keys have different lives (an encryption
  key must be kept to open old parts after it is retired; a signing key is simply replaced), and a
  key that both decrypts and signs lets one be abused as an oracle for the other;
- a CRL signed by the CA, listing revoked certificates.

Algorithms. Encryption keys are RSA 3072 (RSA-OAEP key transport is what ``openssl cms`` and every
other CMS implementation reads). The CA and the signing key are **ECDSA P-256** rather than RSA-PSS:
- the signature carries no parameters, whereas RSASSA-PSS must encode hash, MGF and salt length,
  which verifiers get wrong more often than any other part of a CMS signature;
- keys and signatures are small (64-byte signatures, 91-byte public keys) and signing costs nothing
  next to hashing 64 MB;
- ``openssl cms -verify``, BouncyCastle, .NET and Go all verify it; and a later SM2 profile is also an
  elliptic-curve profile, so the code paths stay the same shape.
ECDSA needs a good random number per signature; OpenSSL (through cryptography) provides it. A
production signing certificate may still be RSA: :mod:`fundx.crypto.seal` then signs with RSASSA-PSS.

Layout under ``FUNDX_HOME/keys`` (folders 0700, files 0600 — certificates too — created so, never chmod-ed afterwards)::

    ca.pem ca.key crl.pem exchange.pem exchange.key
    stages/<stage>.pem stages/<stage>.key stages/<stage>.<label>.pem ...   current certificates
    retired/<stage>.<label>.<serial>.pem ...                               kept to open old parts
    signers/<stage>.pem signers/<stage>.key                                 the stage's ack signer

Production may point each item elsewhere (:class:`KeySettings`): a file path, ``env:NAME`` or
``secret:BLOCK`` (a Prefect Secret block) holding the PEM text, resolved by :func:`fundx.core.settings.resolve`.
"""

from __future__ import annotations

import base64
import logging
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Literal, NoReturn, TypeVar, cast, get_args

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import NameOID
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from fundx.core.errors import CertificateError, ConfigurationError

log = logging.getLogger(__name__)

#: the recipients of sealed parts that no feed names: the data stewards (quarantine) and the office's
#: investigators (the identity vault and the suspects' identities, docs/matching.md)
OFFICE_RECIPIENTS: tuple[str, ...] = ("stewards", "investigators")
MATCH_KEY_BYTES = 32

Usage = Literal["ca", "signing", "encryption"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
Certificate = x509.Certificate
CRL = x509.CertificateRevocationList

#: the subject CN of the exchange's development signing certificate
EXCHANGE_CN = "fundx exchange"
ENCRYPTION_KEY_BITS = 3072
DEFAULT_DAYS = 825
_ORGANIZATION = "fundx development"
_CLOCK_SKEW = timedelta(minutes=5)
_PRIVATE_MODE = 0o600
_PUBLIC_MODE = 0o600  # public, but under FUNDX_HOME every file is the exchange's only


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- making keys and certificates ----------------------------------------------------------------


def new_private_key(usage: Usage) -> PrivateKey:
    """A fresh private key for a certificate of this usage (see the module docstring for why)."""
    if usage == "encryption":
        return rsa.generate_private_key(public_exponent=65537, key_size=ENCRYPTION_KEY_BITS)
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, unit: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(usage: Usage) -> x509.KeyUsage:
    flags = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    if usage == "ca":
        flags.update(key_cert_sign=True, crl_sign=True)
    elif usage == "signing":
        flags.update(digital_signature=True, content_commitment=True)
    else:
        flags.update(key_encipherment=True)
    return x509.KeyUsage(**flags)


def make_ca(common_name: str = "fundx development CA", *, days: int = DEFAULT_DAYS,
            key: PrivateKey | None = None) -> tuple[PrivateKey, Certificate]:
    """A self-signed CA (CA:true, keyCertSign and cRLSign) for development and tests."""
    key = key or new_private_key("ca")
    now = _utcnow()
    name = _name(common_name, "certificate authority")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage("ca"), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue_certificate(
    ca_key: PrivateKey,
    ca_cert: Certificate,
    *,
    common_name: str,
    usage: Usage,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    days: int = DEFAULT_DAYS,
    not_before: datetime | None = None,
    unit: str | None = None,
) -> Certificate:
    """An end-entity certificate signed by the CA: ``signing`` (digitalSignature, nonRepudiation) or
    ``encryption`` (keyEncipherment). For a stage, ``common_name`` is the stage's name; ``unit`` (the
    OU) defaults to ``exchange`` for signing and ``stage`` for encryption certificates."""
    if usage == "ca":
        raise ValueError("use make_ca for a CA certificate")
    start = not_before or _utcnow() - _CLOCK_SKEW
    unit = unit or ("exchange" if usage == "signing" else "stage")
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, unit))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(_issuer_key(ca_cert)), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def make_crl(ca_key: PrivateKey, ca_cert: Certificate, revoked: Iterable[tuple[int, datetime]] = (), *,
             days: int = DEFAULT_DAYS, number: int = 1) -> CRL:
    """A CRL signed by the CA listing ``revoked`` (serial number, revocation time) pairs."""
    now = _utcnow()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - _CLOCK_SKEW)
        .next_update(now + timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(_issuer_key(ca_cert)), critical=False
        )
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca_key, hashes.SHA256())


# --- files ---------------------------------------------------------------------------------------


def private_folder(path: Path) -> Path:
    """``path``, with every missing folder on the way made 0700 whatever the umask (``mkdir(parents=True)``
    gives the parents it makes the umask's mode); folders that exist are left as they are."""
    missing: list[Path] = []
    at = path
    while not at.is_dir() and at.parent != at:
        missing.append(at)
        at = at.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            if not folder.is_dir():
                raise
    return path


@contextmanager
def atomic_file(path: Path, mode: int) -> Iterator[BinaryIO]:
    """A file written under a temporary name created with ``mode``, then fsynced and renamed into place.

    The mode is given to ``os.open`` so that a private key or a sealed part is never readable by
    others, not even for a moment; a reader sees the old file or the whole new one.
    """
    private_folder(path.parent)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_file_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically with ``mode`` (see :func:`atomic_file`)."""
    with atomic_file(path, mode) as handle:
        handle.write(data)


def fsync_dir(folder: Path) -> None:
    """Make a rename or removal in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _label_suffix(label: str | None) -> str:
    if label is None:
        return ""
    if not label or "/" in label or "." in label or label.startswith("-"):
        raise ValueError(f"certificate label {label!r}: use letters, digits, '-' or '_'")
    return f".{label}"


@dataclass(frozen=True)
class KeyPaths:
    """Where :func:`init_keys` keeps each key and certificate under one folder."""

    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def crl(self) -> Path:
        return self.dir / "crl.pem"

    @property
    def exchange_cert(self) -> Path:
        return self.dir / "exchange.pem"

    @property
    def exchange_key(self) -> Path:
        return self.dir / "exchange.key"

    @property
    def stages_dir(self) -> Path:
        return self.dir / "stages"

    @property
    def retired_dir(self) -> Path:
        return self.dir / "retired"

    @property
    def signers_dir(self) -> Path:
        return self.dir / "signers"

    @property
    def match_key(self) -> Path:
        """The office's HMAC key that pseudonymises identity numbers for matching (32 random bytes)."""
        return self.dir / "office" / "match.key"

    def signer_cert(self, stage: str) -> Path:
        """The certificate a stage signs its acknowledgements with."""
        return self.signers_dir / f"{stage}.pem"

    def signer_key(self, stage: str) -> Path:
        return self.signers_dir / f"{stage}.key"

    def stage_cert(self, stage: str, label: str | None = None) -> Path:
        return self.stages_dir / f"{stage}{_label_suffix(label)}.pem"

    def stage_key(self, stage: str, label: str | None = None) -> Path:
        return self.stages_dir / f"{stage}{_label_suffix(label)}.key"

    def stage_certs(self, stage: str) -> list[Path]:
        """The current (not retired) certificate files of a stage: ``<stage>.pem``, ``<stage>.<label>.pem``."""
        if not self.stages_dir.is_dir():
            return []
        found = [p for p in self.stages_dir.glob(f"{stage}.*pem") if p.name.split(".")[0] == stage]
        return sorted(p for p in found if p.name.count(".") <= 2)

    @classmethod
    def under(cls, home: Path | None = None) -> KeyPaths:
        """The key folder of FUNDX_HOME (or of ``home``)."""
        if home is None:
            from fundx.core.settings import get_settings

            home = get_settings().home
        return cls(Path(home) / "keys")


def _read_cert(path: Path) -> Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _read_key(path: Path) -> PrivateKey:
    return serialization.load_pem_private_key(path.read_bytes(), password=None)  # type: ignore[return-value]


def _write_pair(cert_path: Path, key_path: Path, key: PrivateKey, cert: Certificate) -> None:
    write_file_atomic(key_path, _key_pem(key), _PRIVATE_MODE)  # key first: a cert without key is useless
    write_file_atomic(cert_path, _cert_pem(cert), _PUBLIC_MODE)


def recipients() -> tuple[str, ...]:
    """Every recipient of sealed parts: the stages the feed configs deliver to (a feed naming a new
    stage gives it keys at the next ``fundx keys init``), then :data:`OFFICE_RECIPIENTS`."""
    from connectors.registry import registry  # the feed configs sit above the key store's own needs

    return (*registry().stages, *OFFICE_RECIPIENTS)


def init_keys(home: Path, stages: Sequence[str] | None = None, *, days: int = DEFAULT_DAYS,
              force: bool = False) -> KeyPaths:
    """Create the development PKI under ``home/keys``: CA, CRL, exchange signer, and per stage (default
    :func:`recipients`) an encryption certificate and an acknowledgement-signing certificate.

    Idempotent: what exists is kept (and checked to chain to the CA); only what is missing is made,
    and a CRL past its next update is re-issued with the same entries. ``force`` starts over with a
    new CA, so every certificate issued by the old one — rotation certificates included — is removed.
    """
    paths = KeyPaths(Path(home) / "keys")
    paths.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if force:
        for folder in (paths.dir, paths.stages_dir, paths.signers_dir):
            if folder.is_dir():
                for old in folder.glob("*"):
                    if old.is_file() and old.suffix in (".pem", ".key"):
                        old.unlink()

    if paths.ca_cert.exists():
        ca_cert = _read_cert(paths.ca_cert)
        ca_key = _read_key(paths.ca_key) if paths.ca_key.exists() else None
    else:
        leftovers = [p.name for p in (paths.exchange_cert, *paths.stages_dir.glob("*.pem"),
                                      *paths.signers_dir.glob("*.pem")) if p.exists()]
        if leftovers:
            raise ConfigurationError(
                f"keys folder {paths.dir} has certificates ({', '.join(sorted(leftovers))}) but no ca.pem",
                action="run `fundx keys init --force` to start a new development PKI",
            )
        ca_key, ca_cert = make_ca(days=days)
        _write_pair(paths.ca_cert, paths.ca_key, ca_key, ca_cert)

    def need_ca_key() -> PrivateKey:
        if ca_key is None:
            raise ConfigurationError(
                f"{paths.ca_key} is missing, so no certificate can be issued",
                action="restore ca.key, or run `fundx keys init --force` (new development PKI)",
            )
        return ca_key

    def keep_or_issue(cert_path: Path, key_path: Path, common_name: str, usage: Usage, unit: str | None = None) -> None:
        if cert_path.exists() and key_path.exists():
            if not issued_by(_read_cert(cert_path), ca_cert):
                raise ConfigurationError(
                    f"{cert_path} was not issued by {paths.ca_cert}",
                    action="run `fundx keys init --force` to start a new development PKI",
                )
            return
        key = new_private_key(usage)
        cert = issue_certificate(need_ca_key(), ca_cert, common_name=common_name, usage=usage,
                                 public_key=key.public_key(), days=days, unit=unit)
        _write_pair(cert_path, key_path, key, cert)

    keep_or_issue(paths.exchange_cert, paths.exchange_key, EXCHANGE_CN, "signing")
    paths.stages_dir.mkdir(mode=0o700, exist_ok=True)
    paths.signers_dir.mkdir(mode=0o700, exist_ok=True)
    for stage in recipients() if stages is None else stages:
        keep_or_issue(paths.stage_cert(stage), paths.stage_key(stage), stage, "encryption")
        keep_or_issue(paths.signer_cert(stage), paths.signer_key(stage), stage, "signing", unit="stage")
    if not paths.match_key.exists():
        paths.match_key.parent.mkdir(mode=0o700, exist_ok=True)
        write_file_atomic(paths.match_key, os.urandom(MATCH_KEY_BYTES), 0o600)

    crl = x509.load_pem_x509_crl(paths.crl.read_bytes()) if paths.crl.exists() else None
    if crl is None or crl.next_update_utc is None or crl.next_update_utc <= _utcnow() + timedelta(days=1):
        _write_crl(paths, need_ca_key(), ca_cert, crl, days=days)
    return paths


def _write_crl(paths: KeyPaths, ca_key: PrivateKey, ca_cert: Certificate, old: CRL | None,
               extra: Iterable[tuple[int, datetime]] = (), *, days: int = DEFAULT_DAYS) -> CRL:
    entries: dict[int, datetime] = {}
    number = 1
    if old is not None and old.is_signature_valid(_issuer_key(ca_cert)):
        entries = {r.serial_number: r.revocation_date_utc for r in old}
        try:
            number = old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
        except x509.ExtensionNotFound:
            number = 1
    entries.update(extra)
    crl = make_crl(ca_key, ca_cert, sorted(entries.items()), days=days, number=number)
    write_file_atomic(paths.crl, crl.public_bytes(serialization.Encoding.PEM), _PUBLIC_MODE)
    return crl


def add_stage_certificate(stage: str, label: str = "next", *, home: Path | None = None,
                          days: int = DEFAULT_DAYS) -> tuple[Path, Path]:
    """Make another current certificate for ``stage`` (rotation): ``stages/<stage>.<label>.pem/.key``.

    From then on parts for the stage are encrypted to every current certificate, so the stage can
    open them with the old key or the new one until :func:`retire_stage_certificate` retires one.
    """
    paths = KeyPaths.under(home)
    cert_path, key_path = paths.stage_cert(stage, label), paths.stage_key(stage, label)
    if cert_path.exists():
        raise ConfigurationError(f"{cert_path} exists already", action="choose another label or retire it first")
    if not paths.ca_key.exists():
        raise ConfigurationError(f"{paths.ca_key} is missing", action="run `fundx keys init` first")
    ca_key, ca_cert = _read_key(paths.ca_key), _read_cert(paths.ca_cert)
    key = new_private_key("encryption")
    cert = issue_certificate(ca_key, ca_cert, common_name=stage, usage="encryption",
                             public_key=key.public_key(), days=days)
    _write_pair(cert_path, key_path, key, cert)
    return cert_path, key_path


def retire_stage_certificate(stage: str, label: str | None = None, *, home: Path | None = None) -> Path:
    """Stop encrypting to one of a stage's certificates; its files move to ``retired/`` (to open old parts)."""
    paths = KeyPaths.under(home)
    cert_path, key_path = paths.stage_cert(stage, label), paths.stage_key(stage, label)
    if not cert_path.exists():
        raise ConfigurationError(f"{cert_path} does not exist", action="list the stage's certificates in keys/stages")
    serial = format(_read_cert(cert_path).serial_number, "x")
    paths.retired_dir.mkdir(mode=0o700, exist_ok=True)
    target = paths.retired_dir / f"{stage}{_label_suffix(label)}.{serial}.pem"
    if key_path.exists():
        os.replace(key_path, target.with_suffix(".key"))
    os.replace(cert_path, target)
    fsync_dir(paths.stages_dir)
    fsync_dir(paths.retired_dir)
    return target


def revoke_certificate(cert: Certificate, *, home: Path | None = None, at: datetime | None = None) -> Path:
    """List ``cert`` in the development CRL (re-issued, signed by the CA); returns the CRL's path."""
    paths = KeyPaths.under(home)
    ca_key, ca_cert = _read_key(paths.ca_key), _read_cert(paths.ca_cert)
    old = x509.load_pem_x509_crl(paths.crl.read_bytes()) if paths.crl.exists() else None
    _write_crl(paths, ca_key, ca_cert, old, [(cert.serial_number, at or _utcnow())])
    return paths.crl


# --- checks --------------------------------------------------------------------------------------


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


def _issuer_key(cert: Certificate) -> CertificateIssuerPublicKeyTypes:
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
        if crl.issuer != ca.subject or not crl.is_signature_valid(_issuer_key(ca)):
            refuse("cannot check revocation: the CRL is not signed by the trusted CA")
        if crl.next_update_utc is not None and crl.next_update_utc < at:
            refuse(f"cannot check revocation: the CRL is out of date since {crl.next_update_utc:%Y-%m-%d}")
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None:
            refuse(f"revoked on {entry.revocation_date_utc:%Y-%m-%d %H:%M}Z")


# --- loading (development folder or production references) ---------------------------------------


def load_pem(ref: str | Path, *, setting: str) -> bytes:
    """The PEM bytes behind a reference: a file path, ``env:NAME`` or ``secret:BLOCK``."""
    text = str(ref)
    if text.startswith(("env:", "secret:")):
        from fundx.core.settings import resolve

        return resolve(text, setting=setting, secret=True).get_secret_value().encode()
    path = Path(text).expanduser()
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"setting {setting}: cannot read {path} ({exc.strerror or type(exc).__name__})",
            action="run `fundx keys init` (development) or point the setting at the PEM file",
        ) from None


def load_certificates(ref: str | Path, *, setting: str) -> list[Certificate]:
    """Every certificate in a PEM file or bundle (a rotating stage may list two)."""
    try:
        return x509.load_pem_x509_certificates(load_pem(ref, setting=setting))
    except ValueError:
        raise ConfigurationError(f"setting {setting}: not a PEM certificate") from None


def load_certificate(ref: str | Path, *, setting: str) -> Certificate:
    """The one certificate in a PEM file (the first, if it is a bundle)."""
    return load_certificates(ref, setting=setting)[0]


def load_private_key(ref: str | Path, *, setting: str, password: str | None = None) -> PrivateKey:
    """A PEM private key; ``password`` is a reference (``env:``/``secret:``) when the key is encrypted."""
    secret = None
    if password:
        from fundx.core.settings import resolve

        secret = resolve(password, setting=f"{setting}_password", secret=True).get_secret_value().encode()
    try:
        key = serialization.load_pem_private_key(load_pem(ref, setting=setting), password=secret)
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"setting {setting}: the private key cannot be loaded (not PEM, or wrong password)"
        ) from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ConfigurationError(f"setting {setting}: the private key is neither RSA nor ECDSA")
    return key


def load_crl(ref: str | Path, *, setting: str) -> CRL:
    """A PEM (or DER) certificate revocation list."""
    data = load_pem(ref, setting=setting)
    try:
        if data.lstrip().startswith(b"-----"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError:
        raise ConfigurationError(f"setting {setting}: not a certificate revocation list") from None


class KeySettings(BaseSettings):
    """Where the keys come from; each field is the environment variable FUNDX_KEYS_<NAME>.

    Unset items are read from the development folder (``dir``). Each item is a reference: a path,
    ``env:NAME`` or ``secret:BLOCK`` holding PEM text.
    """

    model_config = SettingsConfigDict(env_prefix="FUNDX_KEYS_", extra="ignore")

    dir: Path | None = Field(None, description="folder laid out by `fundx keys init`; default FUNDX_HOME/keys")
    ca: str | None = Field(None, description="the trusted CA certificate")
    crl: str | None = Field(None, description="the CA's revocation list; default keys/crl.pem if it exists")
    exchange_cert: str | None = Field(None, description="the exchange's signing certificate")
    exchange_key: str | None = Field(None, description="the exchange's signing key")
    exchange_key_password: str | None = Field(None, description="reference to the signing key's password")
    stage_certs: dict[str, str] = Field(
        default_factory=dict, description='stage -> PEM bundle of its current certificates, as JSON'
    )
    stage_keys: dict[str, list[str]] = Field(
        default_factory=dict, description="stage -> its private keys (stage side), as JSON"
    )
    stage_signer_certs: dict[str, str] = Field(
        default_factory=dict, description="stage -> the certificate it signs acknowledgements with, as JSON"
    )
    stage_signer_keys: dict[str, str] = Field(
        default_factory=dict, description="stage -> its acknowledgement-signing key (stage side), as JSON"
    )
    match_key: str | None = Field(
        None, description="the office's HMAC key for pseudonymised matching (32 bytes, raw or base64 text)"
    )

    @property
    def production(self) -> bool:
        """True when any key or certificate is configured explicitly (no development folder is made then)."""
        return bool(self.dir or self.ca or self.exchange_cert or self.exchange_key or self.stage_certs)


class KeyStore:
    """The keys and certificates of this process, loaded on demand from :class:`KeySettings`."""

    def __init__(self, settings: KeySettings | None = None, *, home: Path | None = None):
        self.settings = settings or KeySettings()
        self.paths = KeyPaths(self.settings.dir) if self.settings.dir else KeyPaths.under(home)

    def ca(self) -> Certificate:
        """The trusted CA certificate."""
        return load_certificate(self.settings.ca or self.paths.ca_cert, setting="FUNDX_KEYS_CA")

    def crl(self) -> CRL | None:
        """The configured CRL, or None when there is none."""
        if self.settings.crl:
            return load_crl(self.settings.crl, setting="FUNDX_KEYS_CRL")
        return load_crl(self.paths.crl, setting="FUNDX_KEYS_CRL") if self.paths.crl.exists() else None

    def exchange_certificate(self) -> Certificate:
        """The exchange's signing certificate (public): a stage accepts parts signed by this subject only."""
        return load_certificate(self.settings.exchange_cert or self.paths.exchange_cert,
                                setting="FUNDX_KEYS_EXCHANGE_CERT")

    def stage_signer(self, stage: str) -> tuple[PrivateKey, Certificate]:
        """The stage side: the key and certificate that sign the stage's acknowledgements, checked usable now."""
        cert = load_certificate(self.settings.stage_signer_certs.get(stage) or self.paths.signer_cert(stage),
                                setting=f"FUNDX_KEYS_STAGE_SIGNER_CERTS[{stage}]")
        key = load_private_key(self.settings.stage_signer_keys.get(stage) or self.paths.signer_key(stage),
                               setting=f"FUNDX_KEYS_STAGE_SIGNER_KEYS[{stage}]")
        if not _same_public_key(key, cert):
            raise ConfigurationError(f"stage {stage}: the acknowledgement-signing key does not belong to its certificate")
        if common_name(cert) != stage:
            raise ConfigurationError(
                f"stage {stage}: the acknowledgement-signing certificate is issued to CN={common_name(cert)!r}",
                action=f"issue the stage's signing certificate with CN={stage}",
            )
        validate_certificate(cert, self.ca(), self.crl(), usage="signing")
        return key, cert

    def match_key(self) -> bytes:
        """The office's HMAC key that pseudonymises identity numbers (docs/matching.md); 32+ bytes."""
        ref = self.settings.match_key or self.paths.match_key
        if isinstance(ref, Path) and not ref.exists():
            raise ConfigurationError(f"the office's matching key {ref} does not exist",
                                     action="run `fundx keys init` (development) or set FUNDX_KEYS_MATCH_KEY")
        data = load_pem(ref, setting="FUNDX_KEYS_MATCH_KEY")
        try:  # base64 text (env: and secret: hold text), else the raw bytes `fundx keys init` writes
            data = base64.b64decode(data.strip(), validate=True)
        except ValueError:
            pass
        if len(data) < MATCH_KEY_BYTES:
            raise ConfigurationError(f"setting FUNDX_KEYS_MATCH_KEY: the key has {len(data)} bytes, at least "
                                     f"{MATCH_KEY_BYTES} are needed")
        return data

    def exchange_signer(self) -> tuple[PrivateKey, Certificate]:
        """The exchange's signing key and certificate, checked to belong together and to be usable now."""
        cert = load_certificate(self.settings.exchange_cert or self.paths.exchange_cert,
                                setting="FUNDX_KEYS_EXCHANGE_CERT")
        key = load_private_key(self.settings.exchange_key or self.paths.exchange_key,
                               setting="FUNDX_KEYS_EXCHANGE_KEY", password=self.settings.exchange_key_password)
        if not _same_public_key(key, cert):
            raise ConfigurationError("FUNDX_KEYS_EXCHANGE_KEY does not belong to FUNDX_KEYS_EXCHANGE_CERT")
        validate_certificate(cert, self.ca(), self.crl(), usage="signing")
        return key, cert

    def stage_certificates(self, stage: str) -> list[Certificate]:
        """Every current (not retired) certificate of a stage, unchecked, oldest first."""
        if stage in self.settings.stage_certs:
            certs = load_certificates(self.settings.stage_certs[stage], setting=f"FUNDX_KEYS_STAGE_CERTS[{stage}]")
        else:
            certs = [_read_cert(p) for p in self.paths.stage_certs(stage)]
        return sorted(certs, key=lambda c: (c.not_valid_before_utc, c.serial_number))

    def recipient_certificates(self, stage: str, *, at: datetime | None = None) -> list[Certificate]:
        """The certificates to encrypt a stage's parts to: every current one that is valid at ``at``.

        An expired, revoked or otherwise unusable certificate is left out with a warning (the stage
        is mid-rotation and should retire it); if none is left, CertificateError.
        """
        certs = self.stage_certificates(stage)
        if not certs:
            raise ConfigurationError(
                f"stage {stage} has no encryption certificate",
                action="run `fundx keys init` (development) or set FUNDX_KEYS_STAGE_CERTS",
            )
        ca, crl = self.ca(), self.crl()
        usable, reasons = [], []
        for cert in certs:
            try:
                validate_certificate(cert, ca, crl, usage="encryption", at=at)
            except CertificateError as refused:
                log.warning("stage %s: not encrypting to %s", stage, refused)
                reasons.append(str(refused))
                continue
            usable.append(cert)
        if not usable:
            raise CertificateError(f"stage {stage} has no usable encryption certificate: {'; '.join(reasons)}")
        return usable

    def stage_keys(self, stage: str) -> list[tuple[PrivateKey, Certificate]]:
        """The stage side: each private key of ``stage`` with its certificate (current or retired)."""
        if stage in self.settings.stage_keys:
            refs: list[str | Path] = list(self.settings.stage_keys[stage])
        else:
            refs = [p.with_suffix(".key") for p in self.paths.stage_certs(stage)]
            if self.paths.retired_dir.is_dir():
                refs += sorted(p.with_suffix(".key") for p in self.paths.retired_dir.glob(f"{stage}.*pem"))
        certs = self.stage_certificates(stage)
        if self.paths.retired_dir.is_dir() and stage not in self.settings.stage_certs:
            certs += [_read_cert(p) for p in sorted(self.paths.retired_dir.glob(f"{stage}.*pem"))]
        pairs = []
        for ref in refs:
            if isinstance(ref, Path) and not ref.exists():
                continue
            key = load_private_key(ref, setting=f"FUNDX_KEYS_STAGE_KEYS[{stage}]")
            match = next((c for c in certs if _same_public_key(key, c)), None)
            if match is None:
                raise ConfigurationError(f"stage {stage}: a private key has no matching certificate")
            pairs.append((key, match))
        return pairs


def _same_public_key(key: PrivateKey, cert: Certificate) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(serialization.Encoding.DER, spki) == cert.public_key().public_bytes(
        serialization.Encoding.DER, spki
    )


def recipient_certificates(stage: str, *, store: KeyStore | None = None,
                           at: datetime | None = None) -> list[Certificate]:
    """The certificates a part for ``stage`` is encrypted to (all current ones that are usable)."""
    return (store or KeyStore()).recipient_certificates(stage, at=at)
