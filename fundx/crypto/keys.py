"""Loading the exchange's keys and certificates: from the development folder or from production references.

Who holds what:
- a CA (development: made by :func:`fundx.crypto.pki.init_keys`; production: the agencies' own) that
  every party trusts;
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

Why these algorithms: :mod:`fundx.crypto.pki`. Layout under ``FUNDX_HOME/keys`` (folders 0700, files
0600 — certificates too — created so, never chmod-ed afterwards)::

    ca.pem ca.key crl.pem exchange.pem exchange.key
    stages/<stage>.pem stages/<stage>.key stages/<stage>.<label>.pem ...   current certificates
    retired/<stage>.<label>.<serial>.pem ...                               kept to open old parts
    signers/<stage>.pem signers/<stage>.key                                 the stage's ack signer

Production may point each item elsewhere (:class:`KeySettings`): a file path, ``env:NAME`` or
``secret:BLOCK`` (a Prefect Secret block) holding the PEM text, resolved by :func:`fundx.core.settings.resolve`.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from fundx.core.errors import CertificateError, ConfigurationError
from fundx.crypto.certificates import CRL, Certificate, PrivateKey, common_name, validate_certificate

log = logging.getLogger(__name__)

_Pair = TypeVar("_Pair")
_PAIR_TRIES = 5
#: private keys parsed so far, by the SHA-256 of their PEM bytes and of their password: parsing an RSA key (with
#: its consistency checks) takes about 100 ms here, and a night reads its stages' keys for every part it opens
#: and every store it reads. The file is still read each time (a rotated key is read as the new one); the same
#: bytes give the same key.
_PARSED_KEYS: OrderedDict[tuple[bytes, bytes | None], PrivateKey] = OrderedDict()
_PARSED_KEYS_KEPT = 64
_PARSED_KEYS_LOCK = threading.Lock()  # the matching stage's load seals its store files in a thread of its own

#: bytes of the office's HMAC match key: `fundx keys init` writes this many, a configured key has at least as many
MATCH_KEY_BYTES = 32


def _label_suffix(label: str | None) -> str:
    if label is None:
        return ""
    if not label or "/" in label or "." in label or label.startswith("-"):
        raise ValueError(f"certificate label {label!r}: use letters, digits, '-' or '_'")
    return f".{label}"


@dataclass(frozen=True)
class KeyPaths:
    """Where :func:`fundx.crypto.pki.init_keys` keeps each key and certificate under one folder."""

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

    def retired_cert(self, stage: str, label: str | None, serial: str) -> Path:
        """Where a retired certificate of a stage is kept (its key beside it, ``.key``), to open old parts."""
        return self.retired_dir / f"{stage}{_label_suffix(label)}.{serial}.pem"

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


def read_certificate(path: Path) -> Certificate:
    """The certificate in a PEM file of the key folder."""
    return x509.load_pem_x509_certificate(path.read_bytes())


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
    pem = load_pem(ref, setting=setting)
    seen = (hashlib.sha256(pem).digest(), hashlib.sha256(secret).digest() if secret is not None else None)
    with _PARSED_KEYS_LOCK:
        kept = _PARSED_KEYS.get(seen)
        if kept is not None:
            _PARSED_KEYS.move_to_end(seen)
            return kept
    try:
        key = serialization.load_pem_private_key(pem, password=secret)
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"setting {setting}: the private key cannot be loaded (not PEM, or wrong password)"
        ) from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ConfigurationError(f"setting {setting}: the private key is neither RSA nor ECDSA")
    with _PARSED_KEYS_LOCK:
        _PARSED_KEYS[seen] = key
        if len(_PARSED_KEYS) > _PARSED_KEYS_KEPT:
            _PARSED_KEYS.popitem(last=False)
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
    expiry_warning_days: int = Field(
        30, ge=0, description="the SLA monitor warns this many days before a certificate or the CRL runs out"
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

    def stage_signer_certificate(self, stage: str) -> Certificate:
        """The certificate a stage signs its acknowledgements with (public; unchecked)."""
        return load_certificate(self.settings.stage_signer_certs.get(stage) or self.paths.signer_cert(stage),
                                setting=f"FUNDX_KEYS_STAGE_SIGNER_CERTS[{stage}]")

    def stage_signer(self, stage: str) -> tuple[PrivateKey, Certificate]:
        """The stage side: the key and certificate that sign the stage's acknowledgements, checked usable now."""
        def pair() -> tuple[PrivateKey, Certificate]:
            cert = self.stage_signer_certificate(stage)
            key = load_private_key(self.settings.stage_signer_keys.get(stage) or self.paths.signer_key(stage),
                                   setting=f"FUNDX_KEYS_STAGE_SIGNER_KEYS[{stage}]")
            if not _same_public_key(key, cert):
                raise ConfigurationError(f"stage {stage}: the acknowledgement-signing key does not belong to its certificate")
            return key, cert

        key, cert = _pair_settled(pair)
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
        def pair() -> tuple[PrivateKey, Certificate]:
            cert = self.exchange_certificate()
            key = load_private_key(self.settings.exchange_key or self.paths.exchange_key,
                                   setting="FUNDX_KEYS_EXCHANGE_KEY", password=self.settings.exchange_key_password)
            if not _same_public_key(key, cert):
                raise ConfigurationError("FUNDX_KEYS_EXCHANGE_KEY does not belong to FUNDX_KEYS_EXCHANGE_CERT")
            return key, cert

        key, cert = _pair_settled(pair)
        validate_certificate(cert, self.ca(), self.crl(), usage="signing")
        return key, cert

    def stage_certificates(self, stage: str) -> list[Certificate]:
        """Every current (not retired) certificate of a stage, unchecked, oldest first."""
        if stage in self.settings.stage_certs:
            return self._stage_certificates(stage)
        return self._settled(stage, lambda: self._stage_certificates(stage))

    def _stage_certificates(self, stage: str) -> list[Certificate]:
        if stage in self.settings.stage_certs:
            certs = load_certificates(self.settings.stage_certs[stage], setting=f"FUNDX_KEYS_STAGE_CERTS[{stage}]")
        else:
            certs = [read_certificate(p) for p in self.paths.stage_certs(stage)]
        unique = {(c.issuer.public_bytes(), c.serial_number): c for c in certs}  # a rotation copies one for a moment
        return sorted(unique.values(), key=lambda c: (c.not_valid_before_utc, c.serial_number))

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
            raise CertificateError(
                f"stage {stage} has no usable encryption certificate: {'; '.join(reasons)}",
                action=f"nothing was sealed for it and its rows wait (the watermark stays): give stage {stage} a valid "
                       f"certificate (development: fundx keys rotate {stage}; production: FUNDX_KEYS_STAGE_CERTS)",
            )
        return usable

    def _listing(self, stage: str) -> tuple[str, ...]:
        """The names of a stage's files in ``stages/`` and ``retired/`` (what a rotation changes)."""
        names: list[str] = []
        for folder in (self.paths.stages_dir, self.paths.retired_dir):
            if folder.is_dir():
                names += sorted(f"{folder.name}/{p.name}" for p in folder.glob(f"{stage}.*"))
        return tuple(names)

    def _settled(self, stage: str, read: Callable[[], _Pair]) -> _Pair:
        """``read()`` of a stage's files, again while ``fundx keys rotate`` moves them under it: a read is kept
        when the folder listing is the same before and after it (every rotation step changes the listing). A
        read that fails is tried again too (a key retired between the listing and its read); the last try's
        error is the one raised."""
        for attempt in range(_PAIR_TRIES):
            before = self._listing(stage)
            try:
                found = read()
            except (FileNotFoundError, ConfigurationError):  # a file moved away between the listing and its read
                found = None  # (a rotation's step; "cannot read ...": the key's loader names the file it missed)
            if found is not None and self._listing(stage) == before:
                return found
            time.sleep(0.02 * (attempt + 1))
        return read()

    def stage_keys(self, stage: str) -> list[tuple[PrivateKey, Certificate]]:
        """The stage side: each private key of ``stage`` with its certificate (current or retired)."""
        return self._settled(stage, lambda: self._stage_keys(stage))

    def _stage_keys(self, stage: str) -> list[tuple[PrivateKey, Certificate]]:
        if stage in self.settings.stage_keys:
            refs: list[str | Path] = list(self.settings.stage_keys[stage])
        else:
            refs = [p.with_suffix(".key") for p in self.paths.stage_certs(stage)]
            if self.paths.retired_dir.is_dir():
                refs += sorted(p.with_suffix(".key") for p in self.paths.retired_dir.glob(f"{stage}.*pem"))
        certs = self._stage_certificates(stage)
        if self.paths.retired_dir.is_dir() and stage not in self.settings.stage_certs:
            certs += [read_certificate(p) for p in sorted(self.paths.retired_dir.glob(f"{stage}.*pem"))]
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


def _pair_settled(load: Callable[[], _Pair]) -> _Pair:
    """``load()``, again a few times while ``fundx keys rotate`` replaces the key and its certificate (one
    file after the other, so for an instant they do not belong together); the last failure is raised."""
    for attempt in range(_PAIR_TRIES):
        try:
            return load()
        except (ConfigurationError, OSError):
            if attempt == _PAIR_TRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _same_public_key(key: PrivateKey, cert: Certificate) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(serialization.Encoding.DER, spki) == cert.public_key().public_bytes(
        serialization.Encoding.DER, spki
    )


def recipient_certificates(stage: str, *, store: KeyStore | None = None,
                           at: datetime | None = None) -> list[Certificate]:
    """The certificates a part for ``stage`` is encrypted to (all current ones that are usable)."""
    return (store or KeyStore()).recipient_certificates(stage, at=at)
