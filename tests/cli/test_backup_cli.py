"""`fundx backup create | verify | restore` as an operator types them: what they print, and each refusal in one
line (the drill itself, with the stages and the next night: tests/backup/test_restore_drill.py)."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from fundx.cli import app
from fundx.exchange.run import run_feed
from fundx.ledger import Ledger

runner = CliRunner()
FEED, END = "civil_affairs.deaths", "2026-06-01T00:00:00+08:00"


def test_create_verify_restore_and_their_refusals(sandbox_factory, home, tmp_path, monkeypatch):
    from fundx.core.settings import reload_settings

    with sandbox_factory("backup-cli", people=2000) as sb:
        for key, value in sb.env.items():
            monkeypatch.setenv(key, value)
        reload_settings()
        run_feed(FEED, end=END)
    missing = runner.invoke(app, ["backup", "verify"])
    assert missing.exit_code == 1 and "no backup in" in missing.output and "fundx backup create" in missing.output

    made = runner.invoke(app, ["backup", "create"])
    assert made.exit_code == 0, made.output
    assert "sealed to the backup certificate" in made.output
    (path,) = (home / "backups").glob("fundx-backup-*")
    checked = runner.invoke(app, ["backup", "verify"])  # the newest
    assert checked.exit_code == 0, checked.output
    assert f"backup {path.name} verified" in checked.output and "audit trail intact" in checked.output
    assert "backup.created" in _actions()

    refused = runner.invoke(app, ["backup", "restore", str(path), "--home", str(home)])
    assert refused.exit_code == 1 and "a ledger exists already" in refused.output and "--force" in refused.output

    fresh = tmp_path / "restored"
    restored = runner.invoke(app, ["backup", "restore", str(path), "--home", str(fresh)])
    assert restored.exit_code == 0, restored.output
    assert (fresh / "ledger.db").is_file() and (fresh / "keys" / "ca.pem").is_file()
    assert not list((fresh / "keys").rglob("*.key"))  # public parts only
    copy = Ledger(f"sqlite:///{fresh / 'ledger.db'}")
    assert copy.watermarks() == Ledger.from_settings().watermarks() and copy.verify_audit().ok
    copy.dispose()

    again = runner.invoke(app, ["backup", "restore", str(path), "--home", str(fresh), "--force"])
    assert again.exit_code == 0, again.output

    # a manifest in the clear that is not the sealed one; a sealed file nobody listed
    forged = tmp_path / "forged"
    shutil.copytree(path, forged)
    text = json.loads((forged / "MANIFEST.json").read_text())
    text["files"] = text["files"][:1]
    (forged / "MANIFEST.json").write_text(json.dumps(text))
    bad = runner.invoke(app, ["backup", "verify", str(forged)])
    assert bad.exit_code == 1 and "MANIFEST.json differs from the sealed manifest" in bad.output
    shutil.copy(path / "MANIFEST.json", forged / "MANIFEST.json")
    shutil.copy(next((forged / "sealed").glob("*.p7m")), forged / "sealed" / "99999-0001.p7m")
    extra = runner.invoke(app, ["backup", "verify", str(forged)])
    assert extra.exit_code == 1 and "the manifest does not list" in extra.output
    assert len([line for line in extra.output.splitlines() if line.strip()]) == 1  # one line

    # a ledger whose audit trail was edited is backed up all the same (evidence), and verify says what is wrong
    import sqlalchemy as sa

    from fundx.ledger.schema import audit

    ledger = Ledger.from_settings()
    with ledger.engine.begin() as conn:
        conn.execute(sa.update(audit).where(audit.c.seq == 2).values(subject="edited"))
    ledger.dispose()
    assert runner.invoke(app, ["backup", "create"]).exit_code == 0
    edited = runner.invoke(app, ["backup", "verify"])
    assert edited.exit_code == 1 and "audit trail broken at entry 2" in edited.output


def _actions() -> list[str]:
    import sqlalchemy as sa

    from fundx.ledger.schema import audit

    ledger = Ledger.from_settings()
    with ledger.engine.connect() as conn:
        found = [r.action for r in conn.execute(sa.select(audit.c.action))]
    ledger.dispose()
    return found
