"""The `fundx` command as a person uses it: sandbox in the background, pull, backfill, status, demo."""

from __future__ import annotations

import json
import os
import stat

import pytest
from typer.testing import CliRunner

from connectors.registry import registry
from fundx.cli import app
from fundx.core.settings import reload_settings

pytestmark = pytest.mark.prefect
runner = CliRunner()


@pytest.fixture
def homes(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNDX_HOME", str(tmp_path / "var"))
    monkeypatch.setenv("FUNDX_SANDBOX_HOME", str(tmp_path / "agencies"))
    monkeypatch.delenv("FUNDX_LEDGER_URL", raising=False)
    reload_settings()
    yield tmp_path
    reload_settings()


def _status() -> dict:
    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    return {f["feed"]: f for f in json.loads(result.output)["feeds"]}


def test_background_sandbox_pull_backfill_status(homes):
    started = runner.invoke(app, ["sandbox", "start", "--people", "3000"])
    assert started.exit_code == 0, started.output
    try:
        assert (homes / "agencies" / "sandbox.json").is_file()
        assert runner.invoke(app, ["sandbox", "status"]).exit_code == 0
        # no FUNDX_POLICE_* in the environment: the running sandbox's exchange.env supplies them
        pulled = runner.invoke(app, ["pull", "police.deaths"])
        assert pulled.exit_code == 0, pulled.output
        assert "pulled" in pulled.output
        mark = _status()["police.deaths"]["watermark"]
        assert mark is not None

        back = runner.invoke(app, ["backfill", "police.deaths", "--from", "2020-01-01", "--to", "2026-06-01"])
        assert back.exit_code == 0, back.output
        police = _status()["police.deaths"]
        assert police["watermark"] == mark  # a backfill never moves the watermark backwards
        assert police["totals"]["pulled"] == 2
    finally:
        stopped = runner.invoke(app, ["sandbox", "stop"])
    assert stopped.exit_code == 0, stopped.output
    assert not (homes / "agencies" / "sandbox.json").exists()


def test_bad_input_gets_a_clear_error(homes):
    unknown = runner.invoke(app, ["pull", "tax.refunds"])
    assert unknown.exit_code == 2
    assert "unknown feed 'tax.refunds'" in unknown.output and "police.deaths" in unknown.output
    backwards = runner.invoke(app, ["backfill", "police.deaths", "--from", "2026-02-01", "--to", "2026-01-01"])
    assert backwards.exit_code == 2 and "ends" in backwards.output
    faults = runner.invoke(app, ["demo", "--faults", "police=meteor_strike"])
    assert faults.exit_code == 2 and "meteor_strike" in faults.output


def test_demo_runs_a_night_and_names_what_failed(homes):
    old = os.umask(0o022)  # a shell's usual umask: the command makes what it writes private all the same
    try:
        ok = runner.invoke(app, ["demo", "--people", "3000"])
    finally:
        os.umask(old)
    assert ok.exit_code == 0, ok.output
    home = homes / "var"  # keys, ledger, inboxes, stages, matching, reports: nothing for group or others
    loose = [f"{p.relative_to(home)} {stat.S_IMODE(p.lstat().st_mode):o}" for p in (home, *home.rglob("*"))
             if not p.is_symlink() and stat.S_IMODE(p.lstat().st_mode) & 0o077]
    assert (home / "keys" / "ca.key").is_file() and (home / "ledger.db").is_file() and loose == []
    feeds = registry().names
    for feed in feeds:
        assert feed in ok.output
    assert "failed: " not in ok.output and "not simulated" not in ok.output  # the tmp path itself holds "failed"
    # every stage took its sealed batches and acknowledged every one
    n = len(feeds)
    assert f"answers recorded in the ledger: {n} acknowledgements, 0 refusals; {n} deliveries settled" in ok.output

    broken = runner.invoke(app, ["demo", "--people", "3000", "--faults", "civil_affairs=expired_token"])
    assert broken.exit_code == 1
    assert "AuthError" in broken.output and "FUNDX_CIVIL_AFFAIRS_TOKEN" in broken.output
