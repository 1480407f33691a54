"""`make bench-peers`: fundx side by side with the tools a data engineer would pick instead, same data, same
checks, same machine, in the same run (issue 21).

- contract check, whole process: ``datacontract test`` (datacontract-cli, DuckDB on the Parquet file) next to
  ``fundx contract check FEED FILE``, each a fresh process, median of ``repeats``;
- contract check, warm (read + check, imports and first use done): datacontract-cli's Python API, pandera on
  polars, and fundx's ``contracts.validate.check(..., gx=False)`` on the file as a connector delivers it;
- REST pull: dlt's rest_api source paging the sandbox's civil-affairs API (cursor) into Parquet next to
  fundx's connector pulling the same window into Parquet, each a fresh process against the same sandbox server
  (which serves from this process: neither client shares its interpreter).

The peers live in a side environment (``.venv-peers``, built by ``make bench-peers`` from
bench/peers/requirements.txt) and run as child processes: fundx's own environment never holds them. The
checks are the contract's standard ones (bench/peers/data.py); each peer's failing counts per check are
compared with fundx's, and the record says where they differ and why. Goals (PASS/FAIL in the record): the
contract check beats datacontract-cli whole and warm (peer/fundx > 1), stays within 2x of pandera-polars warm
(peer/fundx >= 0.5), and the REST pull beats dlt (peer/fundx > 1).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIDE = Path(__file__).resolve().parent / "side"


def peers_python() -> Path:
    """The side environment's Python: FUNDX_PEERS_PYTHON, else .venv-peers/bin/python in this checkout."""
    return Path(os.environ.get("FUNDX_PEERS_PYTHON") or ROOT / ".venv-peers" / "bin" / "python")


def peers_ready() -> bool:
    """Whether the side environment is there and whole: FUNDX_PEERS_PYTHON exists, or make's stamp
    .venv-peers/.installed does (a half-built .venv-peers has a python but not every peer)."""
    if os.environ.get("FUNDX_PEERS_PYTHON"):
        return peers_python().is_file()
    return (ROOT / ".venv-peers" / ".installed").is_file()
