"""The columns each feed serves, read from the feed's contract (contracts/<feed>.odcs.yaml).

The contract is the single source of truth for column names and order, and for the Chinese
headers (``physicalName``) that the file-drop agencies write.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pandas as pd
import yaml

from contracts import contract_path


@dataclass(frozen=True)
class FeedSchema:
    """A feed's columns in contract order, their Chinese headers, its key, incremental and identity-number column."""

    feed: str
    columns: tuple[str, ...]
    headers: dict[str, str]  # logical name -> physicalName (the logical name when there is none)
    key: str
    incremental: str | None
    identity: str | None = None  # the first column classified pii: identity_number


def feed_schema(feed: str) -> FeedSchema:
    """The schema of one feed, from its contract file (contracts/, or FUNDX_CONTRACTS_DIR)."""
    path = contract_path(feed)
    if not path.is_file():
        raise ValueError(f"no contract for feed {feed!r} at {path}")
    st = path.stat()
    return _schema(feed, str(path), st.st_mtime_ns, st.st_size)


@cache
def _schema(feed: str, path: str, mtime_ns: int, size: int) -> FeedSchema:
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    props = doc["schema"][0]["properties"]
    columns = tuple(p["name"] for p in props)
    headers = {p["name"]: p.get("physicalName", p["name"]) for p in props}
    keys = sorted((p for p in props if p.get("primaryKey")), key=lambda p: p.get("primaryKeyPosition", 1))
    def first(prop: str, values: tuple[object, ...]) -> str | None:
        return next((p["name"] for p in props for cp in p.get("customProperties", [])
                     if cp.get("property") == prop and cp.get("value") in values), None)

    if not keys:
        raise ValueError(f"contract of {feed} names no primary key")
    return FeedSchema(feed, columns, headers, keys[0]["name"], first("incremental", (True, "true")),
                      first("pii", ("identity_number",)))


def plain_values(column: pd.Series) -> list[object]:
    """A column as a list of plain Python values, pandas' missing values as None."""
    values = column.astype(object)
    return values.where(column.notna(), None).tolist()
