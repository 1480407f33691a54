"""Fixtures for the flow, handoff and stage tests: one development PKI for the whole run."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def keys_dir(run_dir) -> Path:
    """A development PKI made once per run (RSA keys take a second); tests point FUNDX_KEYS_DIR at it."""
    from fundx.keys import init_keys

    return init_keys(run_dir / "pki").dir
