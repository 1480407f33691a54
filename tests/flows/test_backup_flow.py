"""The nightly backup flow (deployment ``backup/nightly``): it writes a backup and verifies it where the backup
key is on the machine, and leaves the verify to the key's holder where it is not."""

from __future__ import annotations

import pytest

from fundx.core.settings import reload_settings
from fundx.ledger import Ledger

pytestmark = pytest.mark.prefect


def test_the_nightly_backup_writes_and_verifies_then_skips_the_verify_without_the_key(home, monkeypatch):
    from flows.backup import nightly_backup

    Ledger.from_settings().log_event("test.night", "a night", {})
    done = nightly_backup()
    assert done["backup"].startswith("fundx-backup-") and done["verified_files"] == done["files"] >= 2
    assert (home / "backups" / done["backup"] / "manifest.p7m").is_file()

    monkeypatch.setenv("FUNDX_KEYS_STAGE_KEYS", '{"backup": []}')  # production: the backup key lives elsewhere
    reload_settings()
    later = nightly_backup()
    assert later["verified_files"] is None and later["backup"] != done["backup"]
    assert sorted(p.name for p in (home / "backups").glob("fundx-backup-*")) == sorted([done["backup"], later["backup"]])
