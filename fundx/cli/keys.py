"""``fundx keys``: the development PKI under FUNDX_HOME/keys (production sets FUNDX_KEYS_* instead)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from fundx.cli.common import console

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
