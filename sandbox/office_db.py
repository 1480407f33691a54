"""The social-insurance office's system (社保经办) as a database agency: five views in one SQLite file.

The office delivers like any agency (docs/agencies.md): its feeds ``social_insurance.*`` are views of
its database, read incrementally by the exchange, each with the contract's column names: the benefit
roll, the payment ledger, contributions, employer subsidies and the account change log, with the
history the city generator builds for them (sandbox/city/office_feeds.py). The file is
``<home>/social_insurance/office.db`` (mode 0600: it holds personal data), its URL handed to the
exchange as ``FUNDX_SOCIAL_INSURANCE_DB_URL``; the matching stage never reads it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from connectors import load_feed
from sandbox.faults import FaultState
from sandbox.view_db import ViewDB

__all__ = ["OfficeViews", "office_database"]


def office_path(home: Path) -> Path:
    return Path(home).resolve() / "social_insurance" / "office.db"


class OfficeViews(ViewDB):
    """One of the office's views, in the office's one database file (shared by its five feeds)."""

    agency = "social_insurance"

    def __init__(self, home: Path, feed: str, frame: pd.DataFrame, faults: FaultState) -> None:
        config = load_feed(feed).database
        assert config is not None
        super().__init__(office_path(home), feed, config, frame, faults, shared=True)

    def load(self) -> None:
        super().load()
        os.chmod(self.path, 0o600)


def office_database(feed: str) -> Callable[[Path, pd.DataFrame, FaultState, str | None], OfficeViews]:
    """The sandbox entry's database factory of one of the office's feeds (sandbox/simulated.py)."""

    def make(home: Path, frame: pd.DataFrame, faults: FaultState, postgres_url: str | None) -> OfficeViews:
        return OfficeViews(home, feed, frame, faults)

    return make
