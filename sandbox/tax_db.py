"""The tax bureau's withholding-declaration database: a table with the bureau's own column names and the view the exchange reads.

SQLite (``{home}/tax_bureau/declarations.db``), times as Asia/Shanghai local text and amounts as
REAL, as the bureau's system keeps them. The column names are the bureau's pinyin abbreviations
(sbxh 申报序号, zjhm 证件号码, ...); the view ``v_wage_income`` renames them to the contract's names.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from sandbox.faults import RENAMED, FaultState
from sandbox.medical_db import _calibrate_spin
from sandbox.schema import feed_schema

try:
    from fundx.core.timeutil import SHANGHAI
except ImportError:  # the sandbox also runs without the exchange installed
    from zoneinfo import ZoneInfo

    SHANGHAI = ZoneInfo("Asia/Shanghai")

FEED = "tax_bureau.wage_income"
TABLE = "sb_gzxj_mx"  # 工资薪金所得申报明细
VIEW = "v_wage_income"

#: contract column -> (bureau column, SQLite type)
COLUMNS: dict[str, tuple[str, str]] = {
    "declaration_id": ("sbxh", "TEXT PRIMARY KEY"),
    "id_number": ("zjhm", "TEXT"),
    "name": ("xm", "TEXT"),
    "employer_uscc": ("kjywr_nsrsbh", "TEXT"),
    "income_month": ("sssq", "TEXT"),
    "wage_amount": ("sre", "REAL"),
    "tax_amount": ("ykjse", "REAL"),
    "declared_at": ("sbsj", "TEXT"),
}


class TaxDB:
    """The declaration database: loads the declarations, keeps the view as the armed faults want it."""

    agency = "tax_bureau"

    def __init__(self, home: Path, frame: pd.DataFrame, faults: FaultState) -> None:
        schema = feed_schema(FEED)
        missing = [c for c in schema.columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{FEED}: the generated frame lacks columns {missing}")
        self.rows = _served(frame[list(schema.columns)].reset_index(drop=True))
        self.faults = faults
        self.path = Path(home) / "tax_bureau" / "declarations.db"
        self.engine = sa.create_engine(f"sqlite:///{self.path}", poolclass=sa.pool.NullPool)
        self._spin_rows = 0

    @property
    def url(self) -> str:
        """The SQLAlchemy URL the exchange connects with."""
        return self.engine.url.render_as_string(hide_password=False)

    def load(self) -> None:
        """Create the table, load the declarations, create the view."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        columns = ", ".join(f"{bureau} {lite}" for bureau, lite in COLUMNS.values())
        values = self.rows.astype(object).where(self.rows.notna(), None)
        with self.engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            conn.exec_driver_sql(f"CREATE TABLE {TABLE} ({columns})")
            conn.exec_driver_sql(f"INSERT INTO {TABLE} VALUES ({', '.join('?' * len(COLUMNS))})",
                                 list(values.itertuples(index=False, name=None)))
            conn.exec_driver_sql(f"CREATE INDEX ix_{TABLE}_sbsj ON {TABLE} (sbsj, sbxh)")
        self._spin_rows = _calibrate_spin(self.engine)
        self.arm()

    def arm(self) -> None:
        """Recreate the view for the armed faults (renamed_column, empty, slow)."""
        renamed = self.faults.has("renamed_column")
        select = ", ".join(
            f"{bureau} AS {RENAMED.get(name, name) if renamed else name}" for name, (bureau, _) in COLUMNS.items()
        )
        where = []
        if self.faults.has("empty"):
            where.append("1 = 0")
        if self.faults.has("slow"):
            where.append("(WITH RECURSIVE spin(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM spin "
                         f"WHERE x < {self._spin_rows}) SELECT count(*) FROM spin) > 0")
        sql = f"CREATE VIEW {VIEW} AS SELECT {select} FROM {TABLE}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS {VIEW}")
            conn.exec_driver_sql(sql)

    def expected(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        """The declarations filed in [start, end), ordered by (declared_at, declaration_id), as the view serves them."""
        f = self.rows
        moment = pd.to_datetime(f["declared_at"], format="%Y-%m-%d %H:%M:%S").dt.tz_localize(SHANGHAI)
        keep = pd.Series(not self.faults.has("empty"), index=f.index)
        if start is not None:
            keep &= moment >= pd.Timestamp(start)
        if end is not None:
            keep &= moment < pd.Timestamp(end)
        return f[keep].sort_values(["declared_at", "declaration_id"], kind="stable").reset_index(drop=True)

    def close(self) -> None:
        """Close connections (the file stays in the sandbox home)."""
        self.engine.dispose()


def _served(frame: pd.DataFrame) -> pd.DataFrame:
    """The declarations as the view serves them: text (None when missing), amounts as floats, the
    declaration time as Asia/Shanghai local text."""
    out = pd.DataFrame({c: frame[c].astype(object).where(frame[c].notna(), None) for c in frame.columns})
    for c in ("wage_amount", "tax_amount"):
        amounts = pd.to_numeric(frame[c], errors="coerce").astype("float64")
        out[c] = amounts.astype(object).where(amounts.notna(), None)
    declared = pd.to_datetime(frame["declared_at"], format="ISO8601", utc=True).dt.tz_convert(SHANGHAI)
    out["declared_at"] = declared.dt.strftime("%Y-%m-%d %H:%M:%S").astype(object)
    return out
