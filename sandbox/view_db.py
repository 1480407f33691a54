"""A database agency as its feed config describes it: a SQLite table of rows and the view the exchange reads.

The view is named by ``database.relation`` and has the contract's column names (the table underneath
may keep the agency's own, as the tax bureau's does: :class:`sandbox.tax_db.TaxDB`); numbers are REAL,
timestamps Asia/Shanghai local text as SQLite agencies keep them (so the contract must say
``defaultTimezone`` for the incremental column), everything else TEXT. The faults ``renamed_column``,
``empty`` and ``slow`` rewrite the view.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from connectors.config import DatabaseConfig
from contracts import Contract, load_contract
from sandbox.faults import RENAMED_IN_VIEWS, FaultState
from sandbox.generic import NotSimulated
from sandbox.medical_db import _calibrate_spin
from sandbox.schema import feed_schema

try:
    from fundx.core.timeutil import SHANGHAI
except ImportError:  # the sandbox also runs without the exchange installed
    from zoneinfo import ZoneInfo

    SHANGHAI = ZoneInfo("Asia/Shanghai")

__all__ = ["ViewDB"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SQLITE_TYPES = {"number": "REAL", "integer": "INTEGER"}


class ViewDB:
    """The agency's database: loads the rows, keeps the view as the armed faults want it."""

    def __init__(self, path: Path, feed: str, config: DatabaseConfig, frame: pd.DataFrame, faults: FaultState, *,
                 table: str | None = None, columns: dict[str, tuple[str, str]] | None = None,
                 shared: bool = False) -> None:
        if config.db_schema:
            raise NotSimulated(f"{feed}: database.schema {config.db_schema!r}: the sandbox's SQLite has no schemas")
        if not _IDENTIFIER.match(config.relation):
            raise NotSimulated(f"{feed}: database.relation {config.relation!r} is not a plain SQL name")
        contract = load_contract(feed)
        schema = feed_schema(feed)
        missing = [c for c in schema.columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{feed}: the generated frame lacks columns {missing}")
        props = {p.name: p for p in contract.schema_object.properties or []}
        self.zones = {name: str((props[name].logicalTypeOptions or {}).get("defaultTimezone") or "")
                      for name in schema.columns if contract.column(name).logical_type == "timestamp"}
        incremental = config.incremental_column
        if contract.column(incremental).logical_type == "timestamp" and self.zones.get(incremental) != "Asia/Shanghai":
            raise NotSimulated(f"{feed}: {incremental} needs logicalTypeOptions.defaultTimezone: Asia/Shanghai in its "
                               "contract (the sandbox's SQLite keeps times as Shanghai local text)")
        self.feed, self.relation, self.order_by = feed, config.relation, list(config.order_by)
        self.incremental = incremental
        self.table = table or f"{config.relation}_rows"
        key = set(contract.key)
        self.columns = columns or {
            name: (name, _SQLITE_TYPES.get(contract.column(name).logical_type, "TEXT")
                   + (" PRIMARY KEY" if key == {name} else ""))
            for name in schema.columns
        }
        self.rows = self._served(frame[list(schema.columns)].reset_index(drop=True), contract)
        self.faults = faults
        self.path = Path(path)
        self.engine = sa.create_engine(f"sqlite:///{self.path}", poolclass=sa.pool.NullPool)
        self._spin_rows = 0
        self.shared = shared  # one file holds several feeds' tables (the office's): replace ours, keep theirs

    @property
    def url(self) -> str:
        """The SQLAlchemy URL the exchange connects with."""
        return self.engine.url.render_as_string(hide_password=False)

    @property
    def public_url(self) -> str:
        """The URL for sandbox.json (a SQLite file has no password)."""
        return self.url

    def load(self) -> None:
        """Create the table, load the rows, create the view."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.shared:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
        columns = ", ".join(f"{own} {lite}" for own, lite in self.columns.values())
        values = self.rows.astype(object).where(self.rows.notna(), None)
        ordered = ", ".join(self.columns[c][0] for c in self.order_by)
        with self.engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            if self.shared:
                conn.exec_driver_sql(f"DROP VIEW IF EXISTS {self.relation}")
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.table}")
            conn.exec_driver_sql(f"CREATE TABLE {self.table} ({columns})")
            conn.exec_driver_sql(f"INSERT INTO {self.table} VALUES ({', '.join('?' * len(self.columns))})",
                                 list(values.itertuples(index=False, name=None)))
            conn.exec_driver_sql(f"CREATE INDEX ix_{self.table}_order ON {self.table} ({ordered})")
        self._spin_rows = _calibrate_spin(self.engine)
        self.arm()

    def arm(self) -> None:
        """Recreate the view for the armed faults (renamed_column, empty, slow)."""
        renamed = self.faults.has("renamed_column")
        select = ", ".join(
            f"{own} AS {RENAMED_IN_VIEWS.get(name, name) if renamed else name}" for name, (own, _) in self.columns.items()
        )
        where = []
        if self.faults.has("empty"):
            where.append("1 = 0")
        if self.faults.has("slow"):  # SQLite has no sleep(): an uncorrelated count taking about SLOW_SECONDS
            where.append("(WITH RECURSIVE spin(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM spin "
                         f"WHERE x < {self._spin_rows}) SELECT count(*) FROM spin) > 0")
        sql = f"CREATE VIEW {self.relation} AS SELECT {select} FROM {self.table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS {self.relation}")
            conn.exec_driver_sql(sql)

    def expected(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        """The rows of [start, end) by the incremental column, in the view's order, as the view serves them."""
        f = self.rows
        keep = pd.Series(not self.faults.has("empty"), index=f.index)
        if self.incremental in self.zones:
            moment = pd.to_datetime(f[self.incremental], format="%Y-%m-%d %H:%M:%S").dt.tz_localize(SHANGHAI)
            if start is not None:
                keep &= moment >= pd.Timestamp(start)
            if end is not None:
                keep &= moment < pd.Timestamp(end)
        return f[keep].sort_values(self.order_by, kind="stable").reset_index(drop=True)

    def close(self) -> None:
        """Close connections (the file stays in the sandbox home)."""
        self.engine.dispose()

    def _served(self, frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
        """The rows as the view serves them: text (None when missing), numbers as floats, times as local text."""
        out = pd.DataFrame({c: frame[c].astype(object).where(frame[c].notna(), None) for c in frame.columns})
        for name in frame.columns:
            kind = contract.column(name).logical_type
            if kind in _SQLITE_TYPES:
                numbers = pd.to_numeric(frame[name], errors="coerce").astype("float64" if kind == "number" else "Int64")
                out[name] = numbers.astype(object).where(numbers.notna(), None)
            elif self.zones.get(name) == "Asia/Shanghai":
                moments = pd.to_datetime(frame[name], format="ISO8601", utc=True).dt.tz_convert(SHANGHAI)
                out[name] = moments.dt.strftime("%Y-%m-%d %H:%M:%S").astype(object)
        return out
