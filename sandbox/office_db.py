"""The social-insurance office's own database: its benefit roll, contributions and employer subsidies.

Not an agency feed: the matching stage reads it every night (``FUNDX_OFFICE_DB_URL``, see
docs/matching.md) as the office's snapshot. The sandbox writes it once at start, from the generated
city, as SQLite in ``<home>/social_insurance/office.db`` (mode 0600: it holds personal data), with
months as ``YYYY-MM`` text and amounts as REAL.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from pathlib import Path

import pandas as pd

from sandbox.city import City
from sandbox.city.office import CONTRIBUTION_COLUMNS, ROLL_COLUMNS, SUBSIDY_COLUMNS

#: table -> ((column, SQLite type), ...), in order; the columns are the generator's
TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "benefit_roll": tuple(
        (c, "REAL" if c == "monthly_amount" else "INTEGER" if c == "months_paid" else "TEXT") for c in ROLL_COLUMNS
    ),
    "contributions": tuple((c, "REAL" if c == "amount" else "TEXT") for c in CONTRIBUTION_COLUMNS),
    "employer_subsidies": tuple((c, "REAL" if c == "amount" else "TEXT") for c in SUBSIDY_COLUMNS),
}
INDEXES: dict[str, tuple[str, ...]] = {
    "benefit_roll": ("id_number", "bank_account"),
    "contributions": ("id_number, month",),
    "employer_subsidies": ("uscc, month",),
}


class OfficeDB:
    """The office's database file of one sandbox: written whole at start, left in place at stop."""

    def __init__(self, home: Path, city: City) -> None:
        self.path = Path(home).resolve() / "social_insurance" / "office.db"
        self.frames: dict[str, pd.DataFrame] = {
            "benefit_roll": city.roll,
            "contributions": city.contributions,
            "employer_subsidies": city.subsidies,
        }
        for table, frame in self.frames.items():
            missing = [c for c, _ in TABLES[table] if c not in frame.columns]
            if missing:
                raise ValueError(f"office table {table}: the generated frame lacks columns {missing}")

    @property
    def url(self) -> str:
        """The SQLAlchemy URL the exchange reads it with: sqlite:////abs/path/office.db."""
        return f"sqlite:///{self.path}"

    def write(self) -> None:
        """Write the three tables to a new file (0600) and put it in place atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            conn = sqlite3.connect(tmp)
            try:
                with conn:
                    for table, columns in TABLES.items():
                        names = [c for c, _ in columns]
                        conn.execute(f"CREATE TABLE {table} ({', '.join(f'{c} {t}' for c, t in columns)})")
                        conn.executemany(
                            f"INSERT INTO {table} VALUES ({', '.join('?' * len(names))})",
                            _rows(self.frames[table], columns),
                        )
                        for i, cols in enumerate(INDEXES[table]):
                            conn.execute(f"CREATE INDEX ix_{table}_{i} ON {table} ({cols})")
            finally:
                conn.close()
            os.chmod(tmp, 0o600)
            for suffix in ("-journal", "-wal", "-shm"):  # an old file's leftovers must not apply to the new one
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _rows(frame: pd.DataFrame, columns: tuple[tuple[str, str], ...]) -> list[tuple]:
    """The frame's rows as Python values (str, float, int; None where missing), in the table's column order."""
    data = []
    for name, kind in columns:
        s = frame[name]
        values: list[float | int | str | None]
        if kind == "REAL":
            values = [None if pd.isna(v) else round(float(v), 2) for v in s.tolist()]
        elif kind == "INTEGER":
            values = [None if pd.isna(v) else int(v) for v in s.tolist()]
        else:
            values = [None if pd.isna(v) else str(v) for v in s.tolist()]
        data.append(values)
    return list(zip(*data))
