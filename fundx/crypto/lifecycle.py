"""Certificates over their lives: which the exchange holds and when each expires, renewing one, revoking one.

:func:`held_certificates` lists every certificate the exchange depends on, by role and common name —
the CA, the CRL (its next update), the exchange's signing certificate, and per recipient (every
stage, the stewards, the office's investigators) its encryption and acknowledgement-signing
certificates — with the date it stops being usable; the SLA monitor warns before that date
(:func:`fundx.sla.monitor.certificate_findings`). A role held by several current certificates (a stage
mid-rotation) counts by the one that lasts longest: it is covered until then; a role whose every
current certificate is revoked is listed as revoked.

:func:`rotate` renews one certificate of the development PKI without stopping the night (``fundx
keys rotate``):

- a stage's **encryption** certificate: a new key and certificate are made as
  ``stages/<stage>.next.pem`` (from then on parts are sealed to both), the old pair is moved to
  ``retired/`` (the stage keeps the old key to open every batch sealed before), and the new pair
  takes the plain name ``stages/<stage>.pem``. Each step copies before it removes, so a delivery or a
  receive running meanwhile always finds a certificate to seal to and the key to open with; an
  interrupted rotation is finished by running it again.
- a **signing** certificate (the exchange's, or a stage's acknowledgement signer): the key and
  certificate are replaced (the old certificate is kept under ``retired/signers/``, its key is not:
  a signing key is simply replaced). Parts and acknowledgements signed by the old certificate stay
  acceptable while it is valid and not revoked: a stage checks the exchange's subject, not its serial,
  and the exchange checks an acknowledgement's signer by CN.
- the **CRL**: re-issued now with the same entries and a new next update.

A new CA is not a rotation: every certificate must be issued again (``fundx keys init --force`` on the
CA's machine, docs/security.md). :func:`revoke` lists a role's current certificate in the CRL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from fundx.core.errors import CertificateError, ConfigurationError
from fundx.core.files import fsync_dir, write_file_atomic
from fundx.crypto.certificates import CRL, Certificate, PrivateKey, common_name
from fundx.crypto.keys import KeyPaths, KeyStore, read_certificate
from fundx.crypto.pki import (
    _PRIVATE_MODE,
    _PUBLIC_MODE,
    DEFAULT_DAYS,
    EXCHANGE_CN,
    OFFICE_RECIPIENTS,
    _read_key,
    _utcnow,
    _write_crl,
    _write_pair,
    add_stage_certificate,
    issue_certificate,
    key_paths,
    new_private_key,
    retire_stage_certificate,
    revoke_certificate,
)

log = logging.getLogger(__name__)

#: the roles of :class:`Held`, in the order :func:`held_certificates` lists them
ROLES: tuple[str, ...] = ("ca", "crl", "exchange-signing", "encryption", "ack-signing")
_NEXT = "next"


@dataclass(frozen=True)
class Held:
    """One certificate (or the CRL) the exchange depends on: its role, common name, serial and end."""

    role: str
    name: str  # the subject CN (for the CRL: its issuer's CN)
    not_after: datetime  # for the CRL: its next update
    serial: str | None = None  # hex; None for the CRL
    revoked: bool = False  # every current certificate of the role is in the CRL (this is the newest)

    @property
    def label(self) -> str:
        """How people see it: ``certificate encryption CN=death_matching`` (never key material)."""
        return "CRL of CN=" + self.name if self.role == "crl" else f"certificate {self.role} CN={self.name}"

    def days_left(self, at: datetime) -> int:
        """Whole days from ``at`` to its end (negative once past)."""
        return (self.not_after - at).days


def _recipients() -> tuple[str, ...]:
    try:
        from fundx.crypto.pki import recipients

        return recipients()
    except Exception as exc:  # noqa: BLE001 - the feed configs may be broken; the key folder still says who
        log.warning("certificates: the feed configs cannot be read (%s); listing the key folder's stages only",
                    type(exc).__name__)
        return OFFICE_RECIPIENTS


def stages_held(store: KeyStore) -> list[str]:
    """Every recipient the exchange holds certificates of: the feed configs', the configured, the folder's."""
    names = set(_recipients()) | set(store.settings.stage_certs) | set(store.settings.stage_signer_certs)
    for folder in (store.paths.stages_dir, store.paths.signers_dir):
        if folder.is_dir():
            names |= {p.name.split(".")[0] for p in folder.glob("*.pem")}
    return sorted(names)


def _revoked(cert: Certificate, crl: CRL | None) -> bool:
    return crl is not None and crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None


def _held(role: str, certs: Sequence[Certificate], crl: CRL | None) -> Held | None:
    if not certs:
        return None
    usable = [c for c in certs if not _revoked(c, crl)]
    best = max(usable or certs, key=lambda c: c.not_valid_after_utc)
    return Held(role, common_name(best), best.not_valid_after_utc, format(best.serial_number, "x"), not usable)


def held_certificates(store: KeyStore | None = None, stages: Iterable[str] | None = None) -> list[Held]:
    """Every certificate of the exchange by role (see the module doc); what cannot be read is logged and left out."""
    store = store or KeyStore()
    try:
        ca = store.ca()
    except (ConfigurationError, OSError, ValueError) as exc:
        log.warning("certificates: the CA cannot be read (%s); no expiry is checked", exc)
        return []
    crl = store.crl()
    found: list[Held] = [Held("ca", common_name(ca), ca.not_valid_after_utc, format(ca.serial_number, "x"))]
    if crl is not None and crl.next_update_utc is not None:
        found.append(Held("crl", common_name(ca), crl.next_update_utc))

    def add(role: str, load) -> None:
        try:
            certs = load()
        except (ConfigurationError, OSError, ValueError) as exc:
            log.warning("certificates: a %s certificate cannot be read (%s)", role, exc)
            return
        held = _held(role, certs, crl)
        if held is not None:
            found.append(held)

    if store.settings.exchange_cert or store.paths.exchange_cert.exists():
        add("exchange-signing", lambda: [store.exchange_certificate()])
    for stage in stages_held(store) if stages is None else stages:
        add("encryption", lambda stage=stage: store.stage_certificates(stage))
        if stage in store.settings.stage_signer_certs or store.paths.signer_cert(stage).exists():
            add("ack-signing", lambda stage=stage: [store.stage_signer_certificate(stage)])
    return found


# --- renewing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rotated:
    """What :func:`rotate` did: the role renewed, the old and new serials (hex), the new end."""

    which: str
    role: str
    old_serial: str | None
    new_serial: str
    not_after: datetime
    retired: Path | None = None


def _copy(src: Path, dst: Path, mode: int) -> None:
    write_file_atomic(dst, src.read_bytes(), mode)


def _need_ca(paths: KeyPaths) -> tuple[PrivateKey, Certificate]:
    if not paths.ca_cert.exists():
        raise ConfigurationError(f"there is no CA in {paths.dir}",
                                 action="run `fundx keys init` (development), or use the CA's machine")
    if not paths.ca_key.exists():
        raise ConfigurationError(
            f"{paths.ca_key} is not on this machine, so no certificate can be issued here",
            action="renew it on the CA's machine (docs/security.md) and copy the certificate and key to where they are used",
        )
    return _read_key(paths.ca_key), read_certificate(paths.ca_cert)


def rotate_stage(stage: str, *, home: Path | KeyPaths | None = None, days: int = DEFAULT_DAYS) -> Rotated:
    """Renew a recipient's encryption certificate; the old key goes to ``retired/`` (see the module doc)."""
    paths = key_paths(home)
    base, nxt = paths.stage_cert(stage), paths.stage_cert(stage, _NEXT)
    if not base.exists() and not nxt.exists():
        raise ConfigurationError(f"stage {stage} has no encryption certificate in {paths.stages_dir}",
                                 action="run `fundx keys init` to give it one (a stage of the feed configs)")
    _need_ca(paths)
    old_serial = format(read_certificate(base).serial_number, "x") if base.exists() else None
    if not nxt.exists():  # else a rotation was interrupted after its new certificate: finish that one
        add_stage_certificate(stage, _NEXT, home=paths, days=days)  # sealed to old and new from now on
    retired = retire_stage_certificate(stage, home=paths) if base.exists() else None
    _copy(paths.stage_key(stage, _NEXT), paths.stage_key(stage), _PRIVATE_MODE)  # key first, as everywhere
    _copy(nxt, base, _PUBLIC_MODE)  # the same certificate twice for a moment: stage_certificates drops the copy
    nxt.unlink()
    paths.stage_key(stage, _NEXT).unlink()
    fsync_dir(paths.stages_dir)
    cert = read_certificate(base)
    return Rotated(stage, "encryption", old_serial, format(cert.serial_number, "x"), cert.not_valid_after_utc, retired)


def _rotate_signer(which: str, role: str, cert_path: Path, key_path: Path, common: str, unit: str, *,
                   paths: KeyPaths, days: int) -> Rotated:
    ca_key, ca_cert = _need_ca(paths)
    old = read_certificate(cert_path) if cert_path.exists() else None
    retired = None
    if old is not None:
        retired = paths.retired_dir / "signers" / f"{cert_path.stem}.{old.serial_number:x}.pem"
        retired.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _copy(cert_path, retired, _PUBLIC_MODE)
    key = new_private_key("signing")
    cert = issue_certificate(ca_key, ca_cert, common_name=common, usage="signing",
                             public_key=key.public_key(), days=days, unit=unit)
    _write_pair(cert_path, key_path, key, cert)  # a reader in between retries (KeyStore reads the pair again)
    return Rotated(which, role, format(old.serial_number, "x") if old else None, format(cert.serial_number, "x"),
                   cert.not_valid_after_utc, retired)


def rotate(which: str, *, signer: bool = False, home: Path | KeyPaths | None = None, days: int = DEFAULT_DAYS) -> Rotated:
    """Renew one certificate of the development PKI: ``exchange`` (its signing certificate), ``crl``, or a
    recipient's encryption certificate (its acknowledgement-signing one with ``signer``)."""
    paths = key_paths(home)
    if days <= 0:
        raise ConfigurationError("--days must be a positive number of days")
    if which == "ca":
        raise ConfigurationError(
            "the CA is not rotated: a new CA means every certificate is issued again",
            action="make the new CA on the CA's machine (`fundx keys init --force` there) and roll it out (docs/security.md)",
        )
    if which == "crl":
        ca_key, ca_cert = _need_ca(paths)
        old = x509.load_pem_x509_crl(paths.crl.read_bytes()) if paths.crl.exists() else None
        crl = _write_crl(paths, ca_key, ca_cert, old, days=days)
        assert crl.next_update_utc is not None
        return Rotated("crl", "crl", None, str(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number),
                       crl.next_update_utc)
    if which == "exchange":
        return _rotate_signer("exchange", "exchange-signing", paths.exchange_cert, paths.exchange_key, EXCHANGE_CN,
                              "exchange", paths=paths, days=days)
    if signer:
        return _rotate_signer(which, "ack-signing", paths.signer_cert(which), paths.signer_key(which), which,
                              "stage", paths=paths, days=days)
    return rotate_stage(which, home=paths, days=days)


def revoke(which: str, *, signer: bool = False, serial: str | None = None, home: Path | KeyPaths | None = None,
           at: datetime | None = None) -> tuple[Certificate, Path]:
    """List one certificate in the development CRL: ``exchange``'s, or a recipient's current encryption
    certificate (its acknowledgement signer with ``signer``; one of several by ``serial``, hex)."""
    paths = key_paths(home)
    _need_ca(paths)
    if which in ("ca", "crl"):
        raise ConfigurationError(f"{which} cannot be revoked", action="revoke an exchange or stage certificate")
    if which == "exchange":
        candidates = [paths.exchange_cert]
    elif signer:
        candidates = [paths.signer_cert(which)]
    else:
        candidates = paths.stage_certs(which)
        if paths.retired_dir.is_dir():
            candidates += sorted(paths.retired_dir.glob(f"{which}.*pem"))
    certs = [read_certificate(p) for p in candidates if p.exists()]
    if serial:
        certs = [c for c in certs if format(c.serial_number, "x") == serial.lower().removeprefix("0x")]
    elif not signer and which != "exchange":
        certs = [read_certificate(p) for p in paths.stage_certs(which)]
    if not certs:
        raise CertificateError(f"{which}: no such certificate" + (f" with serial {serial}" if serial else ""),
                               action="list them with `fundx keys list`")
    if len(certs) > 1:
        serials = ", ".join(format(c.serial_number, "x") for c in certs)
        raise ConfigurationError(f"{which} has {len(certs)} current certificates ({serials})",
                                 action="name the one to revoke with --serial")
    return certs[0], revoke_certificate(certs[0], home=paths, at=at or _utcnow())

