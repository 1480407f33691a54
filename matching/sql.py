"""What every matching rule is built of: the Rule record, month arithmetic in SQL, the store tables' keys.

The rules themselves live one family to a module (``matching.rules_deaths``, ``rules_custody``,
``rules_accounts``, ``rules_medical``, ``rules_employer``), each exporting ``RULES``; ``matching.rules``
puts them in one registry with their parameters, and registers the store tables they read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute


def month_no(day: date) -> int:
    """Month number (year * 12 + month - 1), as the store keeps months."""
    return day.year * 12 + day.month - 1


def sql_month(expr: str) -> str:
    return f"(year({expr}) * 12 + month({expr}) - 1)"


def sql_month_text(expr: str) -> str:
    return f"printf('%04d-%02d', ({expr}) // 12, ({expr}) % 12 + 1)"


@dataclass(frozen=True)
class Rule:
    """A named rule: its SQL (given its parameters and the night) and its default parameters."""

    name: str
    title: str
    needs: tuple[str, ...]
    defaults: dict[str, Any]
    sql: Callable[[dict[str, Any], date], str]
    doc: str = ""


#: store table -> its key column (rows of a later batch replace earlier ones with the same key: a roll entry
#: is sent again whenever the office changes it)
KEYS = {"deaths": ("feed", "record_key"), "custody": ("record_key",), "bills": ("record_key",),
        "businesses": ("record_key",), "roll": ("record_key",), "payments": ("record_key",),
        "contributions": ("record_key",), "subsidies": ("record_key",), "account_changes": ("record_key",),
        "wages": ("record_key",)}

def latest(name: str) -> str:
    """The clause that keeps the latest row per key of a store table (a later batch replaces a row)."""
    return f"QUALIFY row_number() OVER (PARTITION BY {', '.join(KEYS[name])} ORDER BY received_at DESC) = 1"


def one_per_key(name: str, rows: pa.Table) -> pa.Table:
    """A store table's rows with the latest one per key (:data:`KEYS`) only, in the order they came: what the
    rules read of it. A table without a key, or without ``received_at``, is returned as it is."""
    if name not in KEYS or "received_at" not in rows.column_names or not rows.num_rows:
        return rows
    con = duckdb.connect()
    try:
        con.register("rows_in", rows.append_column("_row", pa.array(range(rows.num_rows), pa.int64())))
        kept = con.sql(f"SELECT * FROM rows_in {latest(name)} ORDER BY _row").to_arrow_table()
    finally:
        con.close()
    return kept.drop(["_row"]).cast(rows.schema)  # the types it came with (DuckDB names UTC Etc/UTC)


def one_per_key_in_batch(name: str, rows: pa.Table) -> tuple[pa.Table, int]:
    """A batch's rows one per key (:data:`KEYS`), the last of each where a key repeats (a contract's unique key
    quarantines such rows, so this only guards the store's promise: every stored batch is one row per key),
    and how many rows were dropped."""
    if name not in KEYS or not rows.num_rows:
        return rows, 0
    cols = list(KEYS[name])
    index = rows.select(cols).append_column("_row", pa.array(range(rows.num_rows), pa.int64()))
    last = index.group_by(cols, use_threads=False).aggregate([("_row", "max")])["_row_max"]
    if len(last) == rows.num_rows:
        return rows, 0
    return rows.take(pa.compute.take(last, pa.compute.sort_indices(last))), rows.num_rows - len(last)
