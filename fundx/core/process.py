"""Processes of this machine: whether one a pid file or a spool names is still running."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeGuard


def alive(pid: int | None) -> TypeGuard[int]:
    """Whether ``pid`` runs and is not a zombie (one of another user's counts as running)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
