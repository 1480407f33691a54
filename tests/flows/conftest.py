"""Fixtures for the flow, handoff and stage tests: one development PKI for the whole run."""

from __future__ import annotations

from pathlib import Path

import pytest

from fundx.core.settings import reload_settings


@pytest.fixture(scope="session")
def keys_dir(run_dir) -> Path:
    """A development PKI made once per run (RSA keys take a second); tests point FUNDX_KEYS_DIR at it."""
    from fundx.crypto.pki import init_keys

    return init_keys(run_dir / "pki").dir


@pytest.fixture
def home(sandbox, keys_dir, monkeypatch, tmp_path) -> Path:
    """An exchange home and ledger of the test's own against the module's ``sandbox``; the run's PKI;
    parts of at most 64 KiB (so that the sandbox's feeds make several); FUNDX_STEWARD set."""
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    home = tmp_path / "home"
    monkeypatch.setenv("FUNDX_HOME", str(home))
    monkeypatch.delenv("FUNDX_LEDGER_URL", raising=False)
    monkeypatch.setenv("FUNDX_KEYS_DIR", str(keys_dir))
    monkeypatch.setenv("FUNDX_PART_BYTES", str(64 * 1024))
    monkeypatch.setenv("FUNDX_STEWARD", "steward-wang")
    monkeypatch.delenv("FUNDX_TEST_KILL_AT", raising=False)
    reload_settings()
    yield home
    reload_settings()
