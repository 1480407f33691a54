"""The nightly backup as a Prefect flow: ``fundx backup create`` then ``fundx backup verify`` of what it wrote.

Deployment ``backup/nightly`` runs it after the exchange's and the matching stage's nights, so that a
restore loses at most the day since (and learns even that from the stages' answers: fundx.backup.restore).
What it returns and shows is a folder name, counts and the audit head: the backup is sealed to the backup
certificate, and the exchange cannot open it (only its verify step, where the backup key is configured).
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from fundx.core.errors import content_free
from fundx.core.settings import private_umask


@flow(name="backup", persist_result=False, validate_parameters=True)
def nightly_backup(verify: bool = True) -> dict:
    """Write a sealed backup of the ledger, the certificates and the quarantine; verify it (``verify``) when the
    backup key is on this machine — production keeps it elsewhere, where ``fundx backup verify`` runs."""
    from fundx.backup import archive
    from fundx.crypto.keys import KeyStore
    from fundx.ledger import Ledger

    private_umask()  # a worker's flow run: whatever umask the worker was started with
    logger = get_run_logger()
    try:
        made = archive.create()
        Ledger.from_settings().log_event("backup.created", made.path.name, {
            "files": made.files, "bytes": made.bytes, "ledger": made.ledger_method,
            "audit_entries": made.audit_entries, "audit_head": made.audit_head}, actor="flow")
        logger.info("backup %s: %d files, %d bytes; ledger by %s", made.path.name, made.files, made.bytes,
                    made.ledger_method)
        verified = None
        if verify and KeyStore().stage_keys(archive.BACKUP):
            verified = archive.verify(made.path).files
        elif verify:
            logger.warning("backup %s not verified here: the backup key is not on this machine", made.path.name)
    except Exception as exc:  # noqa: BLE001 - content-free: Prefect stores a failed flow's exception
        raise content_free(exc) from None
    return {"backup": made.path.name, "files": made.files, "bytes": made.bytes, "verified_files": verified}
