"""``fundx keys``: the development PKI under FUNDX_HOME/keys (production sets FUNDX_KEYS_* instead)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from fundx.cli.common import console, fail

if TYPE_CHECKING:
    from fundx.crypto.keys import KeyPaths

keys_app = typer.Typer(help="Keys and X.509 certificates (a development PKI under FUNDX_HOME/keys).", no_args_is_help=True)


@keys_app.command("init")
def keys_init(
    force: Annotated[bool, typer.Option("--force", help="start over with a new CA (every certificate is re-issued)")] = False,
) -> None:
    """Create the development PKI under FUNDX_HOME/keys: CA, CRL, exchange signer, per stage an
    encryption and an acknowledgement-signing certificate (private keys mode 0600). Development only."""
    from fundx.core.settings import get_settings
    from fundx.crypto.pki import init_keys, recipients
    from fundx.ledger import Ledger

    settings = get_settings()
    paths = init_keys(settings.home, force=force)
    Ledger.from_settings().log_event("keys.init", str(paths.dir), {"development": True, "force": force}, actor="cli")
    table = Table(title=f"development PKI in {paths.dir}")
    table.add_column("who")
    table.add_column("certificate")
    table.add_column("private key")
    table.add_row("CA", str(paths.ca_cert), str(paths.ca_key))
    table.add_row("exchange (signs parts)", str(paths.exchange_cert), str(paths.exchange_key))
    for stage in recipients():
        table.add_row(f"{stage} (decrypts)", str(paths.stage_cert(stage)), str(paths.stage_key(stage)))
        table.add_row(f"{stage} (signs answers)", str(paths.signer_cert(stage)), str(paths.signer_key(stage)))
    console.print(table)
    console.print(f"revocation list: {paths.crl}. Production sets FUNDX_KEYS_* instead (files, env: or secret:).")


_WHICH = "exchange, crl, or a stage's name (also stewards, investigators)"


def _home() -> Path:
    from fundx.core.settings import get_settings

    return get_settings().home


def _paths() -> KeyPaths:
    """The key folder rotate and revoke work on: FUNDX_KEYS_DIR, else FUNDX_HOME/keys."""
    from fundx.crypto.keys import KeyStore

    return KeyStore(home=_home()).paths


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Every certificate the exchange holds, by role and common name, with its serial and the days left
    (FUNDX_KEYS_* or FUNDX_HOME/keys); the CRL by its next update. Reads only."""
    import json
    from datetime import UTC, datetime

    from fundx.core.errors import FundxError
    from fundx.crypto.keys import KeySettings, KeyStore
    from fundx.crypto.lifecycle import held_certificates

    settings = KeySettings()
    store = KeyStore(settings, home=_home())
    try:
        store.ca()
    except FundxError as exc:
        fail(exc)
    now = datetime.now(UTC)
    held = held_certificates(store)
    if as_json:
        print(json.dumps([{"role": h.role, "name": h.name, "serial": h.serial, "not_after": h.not_after.isoformat(),
                           "days_left": h.days_left(now), "revoked": h.revoked} for h in held], indent=2))
        return
    table = Table(title=f"certificates (warning {settings.expiry_warning_days} days before the end)")
    for col in ("role", "common name", "serial", "until", "days left"):
        table.add_column(col)
    for h in held:
        left = h.days_left(now)
        shown = f"[red]{left}[/red]" if left < settings.expiry_warning_days else str(left)
        if h.revoked:
            shown = "[red]revoked[/red]"
        table.add_row(h.role, h.name, h.serial or "", f"{h.not_after:%Y-%m-%d}", shown)
    console.print(table)


@keys_app.command("rotate")
def keys_rotate(
    which: Annotated[str, typer.Argument(help=_WHICH)],
    signer: Annotated[bool, typer.Option("--signer", help="a stage's acknowledgement-signing certificate, "
                                                          "not its encryption certificate")] = False,
    days: Annotated[int, typer.Option(help="how long the new certificate (or CRL) is valid")] = 825,
) -> None:
    """Renew one certificate and key of the development PKI while nights go on: new deliveries use the new
    certificate; a stage keeps its old key (keys/retired) to open batches sealed before; parts and
    acknowledgements signed by an old, still valid certificate stay accepted. Needs ca.key on this machine."""
    from fundx.core.errors import FundxError
    from fundx.crypto.lifecycle import rotate
    from fundx.ledger import Ledger

    try:
        done = rotate(which, signer=signer, home=_paths(), days=days)
    except FundxError as exc:
        fail(exc)
    Ledger.from_settings().log_event("keys.rotate", f"{done.role}:{done.which}", {
        "old_serial": done.old_serial, "new_serial": done.new_serial, "not_after": done.not_after.isoformat()},
        actor="cli")
    if done.role == "crl":
        console.print(f"CRL re-issued (number {done.new_serial}), next update {done.not_after:%Y-%m-%d}")
        return
    console.print(f"{done.which} {done.role}: new certificate serial {done.new_serial}, valid until "
                  f"{done.not_after:%Y-%m-%d}" + (f"; the old one ({done.old_serial}) kept in {done.retired}"
                                                  if done.retired else ""))


@keys_app.command("revoke")
def keys_revoke(
    which: Annotated[str, typer.Argument(help="exchange, or a stage's name")],
    signer: Annotated[bool, typer.Option("--signer", help="the stage's acknowledgement-signing certificate")] = False,
    serial: Annotated[str | None, typer.Option(help="which certificate (hex), when there are several")] = None,
) -> None:
    """List a certificate in the development CRL (a lost or compromised key). Deliveries to a stage whose
    encryption certificate is revoked stop, each with one line naming it, until `fundx keys rotate STAGE`
    gives it a new one; its batches wait (the watermark does not move) and go out then."""
    from fundx.core.errors import FundxError
    from fundx.crypto.certificates import common_name
    from fundx.crypto.lifecycle import revoke
    from fundx.ledger import Ledger

    try:
        cert, crl = revoke(which, signer=signer, serial=serial, home=_paths())
    except FundxError as exc:
        fail(exc)
    serial_hex = format(cert.serial_number, "x")
    Ledger.from_settings().log_event("keys.revoke", f"{which}{':signer' if signer else ''}",
                                     {"serial": serial_hex, "cn": common_name(cert)}, actor="cli")
    console.print(f"revoked CN={common_name(cert)} serial {serial_hex}; CRL {crl}")
