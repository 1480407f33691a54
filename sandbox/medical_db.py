"""The medical security bureau's settlement database: a table with the bureau's own column names and the view the exchange reads.

SQLite by default (dates and times as Asia/Shanghai local text, as many bureau systems keep them),
or PostgreSQL in schema ``sandbox_medical`` (``settled_at`` as timestamptz) when given a URL. The
column names follow the national medical-security coding standard (setl_id, certno, ...); the
view ``v_settled_bills`` renames them to the contract's names.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from sandbox.faults import RENAMED, SLOW_SECONDS, FaultState
from sandbox.schema import feed_schema

try:
    from fundx.core.timeutil import SHANGHAI
except ImportError:  # the sandbox also runs without the exchange installed
    from zoneinfo import ZoneInfo

    SHANGHAI = ZoneInfo("Asia/Shanghai")

FEED = "medical_insurance.bills"
TABLE = "setl_info"
VIEW = "v_settled_bills"
PG_SCHEMA = "sandbox_medical"

#: contract column -> (bureau column, SQLite type, PostgreSQL type)
COLUMNS: dict[str, tuple[str, str, str]] = {
    "bill_id": ("setl_id", "TEXT PRIMARY KEY", "text PRIMARY KEY"),
    "id_number": ("certno", "TEXT", "text"),
    "patient_name": ("psn_name", "TEXT", "text"),
    "hospital_code": ("fixmedins_code", "TEXT", "text"),
    "diagnosis_code": ("dise_codg", "TEXT", "text"),
    "admitted_on": ("adm_date", "TEXT", "date"),
    "discharged_on": ("dscg_date", "TEXT", "date"),
    "total_amount": ("medfee_sumamt", "NUMERIC(14,2)", "numeric(14,2)"),
    "fund_amount": ("fund_pay_sumamt", "NUMERIC(14,2)", "numeric(14,2)"),
    "settled_at": ("setl_time", "TEXT", "timestamptz"),
}


class MedicalDB:
    """The settlement database: loads the bills, keeps the view as the armed faults want it."""

    agency = "medical_insurance"

    def __init__(self, home: Path, frame: pd.DataFrame, faults: FaultState, url: str | None = None) -> None:
        schema = feed_schema(FEED)
        missing = [c for c in schema.columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{FEED}: the generated frame lacks columns {missing}")
        self.source = frame[list(schema.columns)].reset_index(drop=True)
        self.frame = _typed(self.source)
        self.faults = faults
        self.postgres = url is not None
        if url is None:
            self.path = home / "medical_insurance" / "settlement.db"
            url = f"sqlite:///{self.path}"
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self._spin_rows = 0  # SQLite has no sleep(): the slow view counts this many rows instead

    # -- where the exchange finds it --------------------------------------------------------------

    @property
    def url(self) -> str:
        """The SQLAlchemy URL the exchange connects with (PostgreSQL: search_path set to the schema)."""
        url = self.engine.url
        if not self.postgres:
            return url.render_as_string(hide_password=False)
        options = url.query.get("options", "")
        options = f"{options} -csearch_path={PG_SCHEMA}".strip()
        return url.update_query_dict({"options": options}).render_as_string(hide_password=False)

    @property
    def public_url(self) -> str:
        """The URL without its password, for sandbox.json."""
        return make_url(self.url).render_as_string(hide_password=True)

    # -- loading ----------------------------------------------------------------------------------

    def load(self) -> None:
        """Create the table, bulk-load the bills, create the view."""
        if self.postgres:
            self._load_postgres()
        else:
            self._load_sqlite()
        self.arm()

    def _bureau_frame(self, local_text: bool) -> pd.DataFrame:
        f = self.frame
        out = pd.DataFrame({COLUMNS[c][0]: f[c].astype(object).where(f[c].notna(), None) for c in COLUMNS})
        for c in ("admitted_on", "discharged_on"):
            out[COLUMNS[c][0]] = _text(f[c].dt.strftime("%Y-%m-%d"))
        settled = f["settled_at"].dt.tz_convert(SHANGHAI)
        out["setl_time"] = _text(settled.dt.strftime("%Y-%m-%d %H:%M:%S" if local_text else "%Y-%m-%d %H:%M:%S%z"))
        for c in ("total_amount", "fund_amount"):
            out[COLUMNS[c][0]] = f[c].round(2).astype(object).where(f[c].notna(), None)
        return out

    def _load_sqlite(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        rows = self._bureau_frame(local_text=True)
        columns = ", ".join(f"{bureau} {lite}" for bureau, lite, _ in COLUMNS.values())
        placeholders = ", ".join("?" * len(COLUMNS))
        with self.engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            conn.exec_driver_sql(f"CREATE TABLE {TABLE} ({columns})")
            conn.exec_driver_sql(
                f"INSERT INTO {TABLE} VALUES ({placeholders})", list(rows.itertuples(index=False, name=None))
            )
            conn.exec_driver_sql(f"CREATE INDEX ix_{TABLE}_setl_time ON {TABLE} (setl_time, setl_id)")
        self._spin_rows = _calibrate_spin(self.engine)

    def _load_postgres(self) -> None:
        rows = self._bureau_frame(local_text=False)
        columns = ", ".join(f"{bureau} {pg}" for bureau, _, pg in COLUMNS.values())
        data = rows.to_csv(index=False, header=False, na_rep="\\N", lineterminator="\n").encode("utf-8")
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
            conn.exec_driver_sql(f"CREATE SCHEMA {PG_SCHEMA}")
            conn.exec_driver_sql(f"CREATE TABLE {PG_SCHEMA}.{TABLE} ({columns})")
            driver = conn.connection.driver_connection
            if driver is None:
                raise RuntimeError("the PostgreSQL connection has no psycopg connection for COPY")
            cursor = driver.cursor()
            with cursor.copy(f"COPY {PG_SCHEMA}.{TABLE} FROM STDIN WITH (FORMAT csv, NULL '\\N')") as copy:
                for start in range(0, len(data), 1 << 20):
                    copy.write(data[start : start + (1 << 20)])
            conn.exec_driver_sql(f"CREATE INDEX ix_{TABLE}_setl_time ON {PG_SCHEMA}.{TABLE} (setl_time, setl_id)")
            conn.exec_driver_sql(f"ANALYZE {PG_SCHEMA}.{TABLE}")

    # -- faults -----------------------------------------------------------------------------------

    def arm(self) -> None:
        """Recreate the view for the armed faults (renamed_column, empty, slow)."""
        renamed = self.faults.has("renamed_column")
        select = ", ".join(
            f"{bureau} AS {RENAMED.get(name, name) if renamed else name}" for name, (bureau, _, _) in COLUMNS.items()
        )
        where = []
        if self.faults.has("empty"):
            where.append("1 = 0")
        if self.faults.has("slow"):
            if self.postgres:
                where.append(f"(SELECT true FROM pg_sleep({SLOW_SECONDS}))")  # an InitPlan: once per query
            else:  # an uncorrelated subquery SQLite evaluates once per query, taking about SLOW_SECONDS
                where.append(
                    "(WITH RECURSIVE spin(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM spin "
                    f"WHERE x < {self._spin_rows}) SELECT count(*) FROM spin) > 0"
                )
        prefix = f"{PG_SCHEMA}." if self.postgres else ""
        sql = f"CREATE VIEW {prefix}{VIEW} AS SELECT {select} FROM {prefix}{TABLE}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS {prefix}{VIEW}")
            conn.exec_driver_sql(sql)

    def expected(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        """The bills settled in [start, end), ordered by (settled_at, bill_id), typed as generated."""
        f = self.frame
        keep = pd.Series(not self.faults.has("empty"), index=f.index)
        if start is not None:
            keep &= f["settled_at"] >= pd.Timestamp(start)
        if end is not None:
            keep &= f["settled_at"] < pd.Timestamp(end)
        order = f[keep].sort_values(["settled_at", "bill_id"], kind="stable").index
        return self.source.loc[order].reset_index(drop=True)

    def close(self) -> None:
        """Drop the PostgreSQL schema (SQLite stays in the sandbox home) and close connections."""
        if self.postgres:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
        self.engine.dispose()


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Bills with datetime64 dates, float amounts and a tz-aware settled_at, whatever the generator handed over."""
    f = frame.reset_index(drop=True).copy()
    for c in ("admitted_on", "discharged_on"):
        f[c] = pd.to_datetime(f[c], errors="coerce")
    for c in ("total_amount", "fund_amount"):
        f[c] = pd.to_numeric(f[c], errors="coerce").astype("float64")
    settled = f["settled_at"]
    if not pd.api.types.is_datetime64_any_dtype(settled):
        settled = pd.to_datetime(settled, utc=True, format="ISO8601")
    if settled.dt.tz is None:
        settled = settled.dt.tz_localize(SHANGHAI)
    f["settled_at"] = settled.dt.tz_convert(SHANGHAI)
    return f


def _text(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), None)


def _calibrate_spin(engine: sa.Engine) -> int:
    """How many rows SQLite's recursive count needs for about SLOW_SECONDS on this machine.

    The fastest of three probes: a probe slowed by a moment of load would make the "slow" view fast
    later (CI once measured 0.098 s for a 0.2 s fault)."""
    probe = 100_000
    took = float("inf")
    with engine.connect() as conn:
        for _ in range(3):
            started = time.perf_counter()
            conn.exec_driver_sql(
                f"WITH RECURSIVE spin(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM spin WHERE x < {probe}) "
                "SELECT count(*) FROM spin"
            ).scalar()
            took = min(took, max(time.perf_counter() - started, 1e-4))
    return max(1000, int(probe * SLOW_SECONDS / took))
