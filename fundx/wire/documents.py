"""What crosses between the exchange and a stage beside the sealed parts: the batch's READY marker
(which files make the batch, and their SHA-256) and a stage's signed acknowledgement or refusal.

A stage needs these without importing the exchange (fundx.stage reads READY and writes answers; the
exchange writes READY and records the answers: fundx.exchange.acks). No personal data in either.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from fundx.core.errors import SealError, UnknownSignerError
from fundx.core.settings import get_settings
from fundx.core.timeutil import SHANGHAI, Window, aware, now
from fundx.crypto.certificates import common_name
from fundx.crypto.opening import open_signed
from fundx.wire.inbox import PartFile

READY_FORMAT = "fundx.ready/1"
ACK_FORMAT = "fundx.ack/1"


def ready_document(*, batch_id: str, feed: str, stage: str, window: Window, rows: int, digest: str,
                   contract_version: str | None, files: list[PartFile]) -> bytes:
    """The READY marker: which files make the batch, and their SHA-256 — no personal data.

    The window is written as the manifests write it, so that a stage can hold one against the other.
    """
    return (json.dumps({
        "format": READY_FORMAT,
        "batch_id": batch_id,
        "feed": feed,
        "stage": stage,
        "window_start": window.start.astimezone(SHANGHAI).isoformat(),
        "window_end": window.end.astimezone(SHANGHAI).isoformat(),
        "rows": rows,
        "parts": len(files),
        "content_digest": digest,
        "contract_version": contract_version,
        "files": [{"name": f.name, "sha256": f.sha256, "bytes": f.bytes} for f in files],
        "ready_at": now().isoformat(),
    }, indent=1, ensure_ascii=False) + "\n").encode()


def sha256(data: bytes) -> str:
    """The SHA-256 of bytes, in hex (READY names each file by it)."""
    return hashlib.sha256(data).hexdigest()


def acks_root(home: Path | None = None) -> Path:
    """Where stages put their signed acknowledgements and refusals: ``FUNDX_HOME/acks/<stage>/``."""
    return Path(home or get_settings().home) / "acks"


def verified_ack(data: bytes, name: str, stage: str, ca: Any, crl: Any) -> dict[str, Any]:
    """A stage's answer, verified: signed by that stage's own signing certificate of the trusted CA, a
    ``fundx.ack/1`` document of the right shape; SealError or UnknownSignerError otherwise (no content quoted)."""
    opened = open_signed(data, trusted_ca=ca, crl=crl, what=f"acknowledgement {stage}/{name}")
    if common_name(opened.signer) != stage:
        raise UnknownSignerError(
            f"acknowledgement {stage}/{name} is signed by CN={common_name(opened.signer)!r}, not by stage {stage}"
        )
    try:
        body = json.loads(opened.payload)
    except ValueError:
        raise SealError(f"acknowledgement {stage}/{name} is not JSON") from None
    wrong = SealError(f"acknowledgement {stage}/{name} is not a {ACK_FORMAT} document of stage {stage}")
    if not isinstance(body, dict) or body.get("format") != ACK_FORMAT or body.get("stage") != stage \
            or body.get("outcome") not in ("received", "refused") or not isinstance(body.get("at"), str) \
            or not all(isinstance(body.get(k), (int, type(None))) for k in ("rows", "parts")) \
            or not all(isinstance(body.get(k), (str, type(None))) for k in ("batch_id", "reason", "ready_sha256", "feed")):
        raise wrong
    try:
        body["at"] = aware(body["at"])
    except ValueError:
        raise wrong from None
    body["signer_serial"] = format(opened.signer.serial_number, "x")
    return body
