"""The development PKI: a CA, its CRL, and the certificates it issues, made under ``FUNDX_HOME/keys``.

``fundx keys init`` (:func:`init_keys`) makes the CA, the exchange's signing certificate, for every
recipient an encryption and an acknowledgement-signing certificate, the office's match key and the CRL;
a stage's key is rotated with :func:`add_stage_certificate` and :func:`retire_stage_certificate`, and a
certificate revoked with :func:`revoke_certificate`. Production brings its own PKI and loads it through
:class:`fundx.crypto.keys.KeyStore`; tests make CAs and certificates of their own with :func:`make_ca`,
:func:`issue_certificate` and :func:`make_crl`.

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
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from fundx.core.errors import ConfigurationError
from fundx.core.files import fsync_dir, write_file_atomic
from fundx.crypto.certificates import CRL, Certificate, PrivateKey, Usage, issued_by, issuer_key
from fundx.crypto.keys import MATCH_KEY_BYTES, KeyPaths, read_certificate

#: the recipients of sealed parts that no feed names: the data stewards (quarantine), the office's
#: investigators (the identity vault and the suspects' identities, docs/matching.md) and the backup
#: (`fundx backup create` and the originals of every pulled batch, docs/operations.md: its private key
#: belongs off the exchange's machine, with whoever restores) and the social-insurance office that pays the
#: benefits (the stop instructions of confirmed death and custody cases, matching.stops: it opens them with its
#: encryption key and signs its answers with its signing certificate, CN = social_insurance)
OFFICE_RECIPIENTS: tuple[str, ...] = ("stewards", "investigators", "backup", "social_insurance")

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
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key(ca_cert)), critical=False
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
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key(ca_cert)), critical=False
        )
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca_key, hashes.SHA256())


# --- the development folder ----------------------------------------------------------------------


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


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
        ca_cert = read_certificate(paths.ca_cert)
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
            if not issued_by(read_certificate(cert_path), ca_cert):
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
    if old is not None and old.is_signature_valid(issuer_key(ca_cert)):
        entries = {r.serial_number: r.revocation_date_utc for r in old}
        try:
            number = old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
        except x509.ExtensionNotFound:
            number = 1
    entries.update(extra)
    crl = make_crl(ca_key, ca_cert, sorted(entries.items()), days=days, number=number)
    write_file_atomic(paths.crl, crl.public_bytes(serialization.Encoding.PEM), _PUBLIC_MODE)
    return crl


def key_paths(home: Path | KeyPaths | None = None) -> KeyPaths:
    """The key folder: ``home`` if it is one (FUNDX_KEYS_DIR's), else ``home/keys`` (default FUNDX_HOME's)."""
    return home if isinstance(home, KeyPaths) else KeyPaths.under(home)


def add_stage_certificate(stage: str, label: str = "next", *, home: Path | KeyPaths | None = None,
                          days: int = DEFAULT_DAYS) -> tuple[Path, Path]:
    """Make another current certificate for ``stage`` (rotation): ``stages/<stage>.<label>.pem/.key``.

    From then on parts for the stage are encrypted to every current certificate, so the stage can
    open them with the old key or the new one until :func:`retire_stage_certificate` retires one.
    """
    paths = key_paths(home)
    cert_path, key_path = paths.stage_cert(stage, label), paths.stage_key(stage, label)
    if cert_path.exists():
        raise ConfigurationError(f"{cert_path} exists already", action="choose another label or retire it first")
    if not paths.ca_key.exists():
        raise ConfigurationError(f"{paths.ca_key} is missing", action="run `fundx keys init` first")
    ca_key, ca_cert = _read_key(paths.ca_key), read_certificate(paths.ca_cert)
    key = new_private_key("encryption")
    cert = issue_certificate(ca_key, ca_cert, common_name=stage, usage="encryption",
                             public_key=key.public_key(), days=days)
    _write_pair(cert_path, key_path, key, cert)
    return cert_path, key_path


def retire_stage_certificate(stage: str, label: str | None = None, *, home: Path | KeyPaths | None = None) -> Path:
    """Stop encrypting to one of a stage's certificates; its files move to ``retired/`` (to open old parts).

    Copied first, removed after (the certificate, then its key): at every moment the stage finds the
    key of every part sealed to it, current or retired, so a night that runs meanwhile loses nothing."""
    paths = key_paths(home)
    cert_path, key_path = paths.stage_cert(stage, label), paths.stage_key(stage, label)
    if not cert_path.exists():
        raise ConfigurationError(f"{cert_path} does not exist", action="list the stage's certificates in keys/stages")
    serial = format(read_certificate(cert_path).serial_number, "x")
    paths.retired_dir.mkdir(mode=0o700, exist_ok=True)
    target = paths.retired_cert(stage, label, serial)
    if key_path.exists():
        write_file_atomic(target.with_suffix(".key"), key_path.read_bytes(), _PRIVATE_MODE)
    write_file_atomic(target, cert_path.read_bytes(), _PUBLIC_MODE)
    cert_path.unlink()
    key_path.unlink(missing_ok=True)
    fsync_dir(paths.stages_dir)
    return target


def revoke_certificate(cert: Certificate, *, home: Path | KeyPaths | None = None, at: datetime | None = None) -> Path:
    """List ``cert`` in the development CRL (re-issued, signed by the CA); returns the CRL's path."""
    paths = key_paths(home)
    ca_key, ca_cert = _read_key(paths.ca_key), read_certificate(paths.ca_cert)
    old = x509.load_pem_x509_crl(paths.crl.read_bytes()) if paths.crl.exists() else None
    _write_crl(paths, ca_key, ca_cert, old, [(cert.serial_number, at or _utcnow())])
    return paths.crl
