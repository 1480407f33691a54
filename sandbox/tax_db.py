"""The tax bureau's withholding-declaration database: a table with the bureau's own column names and the view the exchange reads.

SQLite (``{home}/tax_bureau/declarations.db``), times as Asia/Shanghai local text and amounts as
REAL, as the bureau's system keeps them. The column names are the bureau's pinyin abbreviations
(sbxh 申报序号, zjhm 证件号码, ...); the view ``v_wage_income`` renames them to the contract's names.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from connectors import load_feed
from sandbox.faults import FaultState
from sandbox.view_db import ViewDB

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


class TaxDB(ViewDB):
    """The declaration database: its table keeps the bureau's column names, the view gives the contract's."""

    agency = "tax_bureau"

    def __init__(self, home: Path, frame: pd.DataFrame, faults: FaultState) -> None:
        config = load_feed(FEED).database
        assert config is not None and config.relation == VIEW
        super().__init__(Path(home) / "tax_bureau" / "declarations.db", FEED, config, frame, faults,
                         table=TABLE, columns=COLUMNS)
