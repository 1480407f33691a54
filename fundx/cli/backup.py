"""``fundx backup``: sealed backups of the exchange, proving one, and rebuilding a home from one.

fundx/cli/__init__.py mounts it: ``app.add_typer(backup_app, name="backup")``. What a backup holds and how
a restore learns what the stages received since: fundx/backup/ and docs/operations.md ("Backups and restore").
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fundx.cli.common import console, fail


def _failures() -> tuple[type[BaseException], ...]:
    """What ends a backup command in one line: a fundx error (with what to do), a file or database error (by its
    type only: its message could name a value)."""
    import sqlite3

    import sqlalchemy as sa

    from fundx.core.errors import FundxError

    return FundxError, OSError, sqlite3.Error, sa.exc.SQLAlchemyError

backup_app = typer.Typer(
    help="Sealed backups (ledger, certificates, quarantine) to FUNDX_BACKUP_DIR; verify one; restore a home.",
    no_args_is_help=True,
)


@backup_app.command("create")
def backup_create() -> None:
    """Write a consistent backup of the ledger, the keys' public parts and the quarantine, sealed to the
    backup certificate, with a manifest of every file and its SHA-256."""
    from fundx.backup.archive import create
    from fundx.ledger import Ledger

    try:
        made = create()
        Ledger.from_settings().log_event("backup.created", made.path.name, {
            "files": made.files, "bytes": made.bytes, "ledger": made.ledger_method,
            "audit_entries": made.audit_entries, "audit_head": made.audit_head}, actor="cli")
    except _failures() as exc:
        fail(exc)
    console.print(f"backup written: {made.path} — {made.files} files, {made.bytes:,} bytes sealed to the backup "
                  f"certificate; ledger by {made.ledger_method} ({made.audit_entries} audit entries)", soft_wrap=True)


@backup_app.command("verify")
def backup_verify(
    path: Annotated[Path | None, typer.Argument(help="the backup's folder (default: the newest in FUNDX_BACKUP_DIR)")] = None,
) -> None:
    """Prove a backup opens with the backup key and is complete: every file present, every digest matching,
    the ledger copy opening with its audit trail intact (exit 1 naming what is wrong)."""
    from fundx.backup.archive import verify

    try:
        done = verify(path)
    except _failures() as exc:
        fail(exc)
    console.print(f"[green]backup {done.backup_id} verified[/green]: {done.files} files, {done.bytes:,} bytes, "
                  f"every digest matches; ledger copy: {done.audit}", soft_wrap=True)


@backup_app.command("restore")
def backup_restore(
    path: Annotated[Path, typer.Argument(help="the backup's folder")],
    home: Annotated[Path, typer.Option("--home", help="the home to rebuild (its ledger, keys/, quarantine/)")],
    ledger_url: Annotated[str | None, typer.Option("--ledger-url", help="restore the ledger into this database "
                                                   "instead of HOME/ledger.db (e.g. PostgreSQL)")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace a ledger that exists there")] = False,
) -> None:
    """Rebuild a home from a backup (ledger, certificates, quarantine; existing files are kept), then teach the
    restored ledger what the stages acknowledged since the backup, so that the next night sends nothing twice."""
    from fundx.backup.restore import restore

    try:
        done = restore(path, home, ledger_url=ledger_url, force=force)
    except _failures() as exc:
        fail(exc)
    r = done.reconciled
    console.print(f"restored backup {done.backup_id} into {home}: {done.written} files written, {done.kept} kept "
                  f"(the home had them)", soft_wrap=True)
    console.print(f"reconciled with the stages: {len(r.delivered)} deliveries and {len(r.quarantined)} quarantines "
                  f"made after the backup recorded, {r.acks_recorded} answers recorded"
                  + (f"; watermarks moved: {', '.join(sorted(r.watermarks))}" if r.watermarks else ""), soft_wrap=True)
