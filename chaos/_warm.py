"""Imported once by the chaos night's fork server: what every feed run needs, so that a forked run starts warm.

Importing Great Expectations alone costs 5-6 s (docs/libraries.md); paid once here, each of the
harness's dozens of killed runs starts in milliseconds. Nothing here starts a thread or opens a file
that a fork would share.
"""

from __future__ import annotations

import importlib

#: imported in this order by the fork server before it forks the first run
MODULES = ("pandas", "pyarrow", "pyarrow.parquet", "great_expectations", "connectors", "contracts.validate",
           "fundx.exchange.handoff", "fundx.exchange.stream", "chaos.child")

for _name in MODULES:
    importlib.import_module(_name)
