"""Fixtures for the sealing tests: a Parquet payload (the run's PKI is tests/conftest.py's), manifests."""

from __future__ import annotations

import io
from dataclasses import replace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from testkit import MARKER_ID

from fundx.crypto.manifest import Manifest, content_digest


@pytest.fixture(scope="session")
def payload() -> bytes:
    """A small Parquet file with an identity number and CR/LF bytes (binary must stay binary)."""
    table = pa.table(
        {
            "id_number": [MARKER_ID, "110105194912310018", "11010519491231003x"] * 200,
            "raw": [b"\r\n\x00\xff", b"\n", b"\r"] * 200,
            "amount": list(range(600)),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.fixture
def manifest(payload) -> Manifest:
    return Manifest(
        batch_id="police.deaths-20261122-0001",
        feed="police.deaths",
        window_start="2026-11-21T00:00:00+08:00",
        window_end="2026-11-22T00:00:00+08:00",
        part=1,
        parts=1,
        rows=600,
        content_digest=content_digest(payload),
        contract_version="1.0.0",
        recipient="death_matching",
        created_at="2026-11-22T02:00:05+08:00",
    )


@pytest.fixture
def other_manifest(manifest):
    """Build a variant of the manifest: other_manifest(recipient=..., batch_id=...)."""
    return lambda **changes: replace(manifest, **changes)
