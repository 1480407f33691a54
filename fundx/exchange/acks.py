"""Recording the stages' signed answers (acknowledgements and refusals) in the ledger."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from fundx.core.errors import CertificateError, SealError
from fundx.core.settings import get_settings
from fundx.crypto.keys import KeyStore
from fundx.ledger import Ledger
from fundx.wire.documents import acks_root, sha256, verified_ack
from fundx.wire.inbox import read_regular

log = logging.getLogger("fundx.handoff")


@dataclass(frozen=True)
class AckSummary:
    """What :func:`record_acks` recorded: acknowledgements, refusals, unverifiable files, deliveries settled."""

    received: int = 0
    refused: int = 0
    invalid: int = 0
    settled: int = 0
    waiting: int = 0  # answers about batches whose READY the ledger has not marked yet: recorded next time


def record_acks(ledger: Ledger | None = None, *, keys: KeyStore | None = None, root: Path | None = None,
                logger: logging.Logger | logging.LoggerAdapter | None = None) -> AckSummary:
    """Verify every new acknowledgement and refusal the stages wrote, and record it in the ledger.

    An answer counts only if its CMS signature verifies against the trusted CA (and CRL) and its
    signer is the signing certificate of the stage it speaks for (CN = the stage). Anything else is
    recorded as ``invalid`` with the reason, and settles nothing.
    """
    logger = logger or log
    ledger = ledger or Ledger.from_settings()
    keys = keys or KeyStore(home=get_settings().home)
    root = root or acks_root()
    counts = {"received": 0, "refused": 0, "invalid": 0, "settled": 0, "waiting": 0}
    if not root.is_dir():
        return AckSummary()
    ca, crl = keys.ca(), keys.crl()
    for stage_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        stage = stage_dir.name
        seen = ledger.acks_recorded(stage)
        for path in sorted(stage_dir.glob("*.p7s")):
            if path.name in seen:
                continue
            data = b""  # a link is not read (what it points to may be a key): recorded with the SHA-256 of nothing
            try:
                data = read_regular(path, what=f"acknowledgement {stage}/{path.name}")
                body = verified_ack(data, path.name, stage, ca, crl)
            except (SealError, CertificateError) as refused:
                file_sha = sha256(data)
                ledger.record_ack(stage=stage, file=path.name, file_sha256=file_sha, outcome="invalid", batch_id=None,
                                  reason=f"{refused.kind}: {refused}")
                logger.warning("acknowledgement %s/%s refused: %s", stage, path.name, refused.kind)
                counts["invalid"] += 1
                continue
            file_sha = sha256(data)
            batch_id = body.get("batch_id")
            pending = ledger.delivery(batch_id) if isinstance(batch_id, str) else None
            if pending is not None and pending.status in ("sealing", "delivered"):
                counts["waiting"] += 1
                continue
            settled = ledger.record_ack(
                stage=stage, file=path.name, file_sha256=file_sha, outcome=body["outcome"], batch_id=batch_id,
                reason=body.get("reason"), received_at=body["at"], ready_sha256=body.get("ready_sha256"),
                rows=body.get("rows"), parts=body.get("parts"), signer_serial=body["signer_serial"],
                feed=body.get("feed"),
            )
            counts[body["outcome"]] += 1
            counts["settled"] += int(settled)
    summary = AckSummary(**counts)
    if summary.received or summary.refused or summary.invalid:
        logger.info("acknowledgements recorded: %d received, %d refused, %d invalid; %d deliveries settled",
                    summary.received, summary.refused, summary.invalid, summary.settled)
    return summary
