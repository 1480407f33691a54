"""Which feeds the sandbox simulates, and how: the feed configs, plus one entry per feed with habits of its own.

The sandbox serves every feed of the registry (connectors.registry: ``connectors/feeds/*.yaml``, or
FUNDX_FEEDS_DIR) as its config says: a REST server with the config's paging style, auth kind and
names (sandbox/rest.py), a drop folder with its pattern, format and encoding (sandbox/drops.py), a
SQLite view named by its relation (sandbox/view_db.py); endpoints and credentials are handed to the
exchange under the environment variables the config references.

:data:`ENTRIES` is the one place for what a config does not say: a feed whose rows the city
generator builds (with the truths the matching stage must find), an agency's own file habits or
database, its rate limit. A feed without an entry gets rows drawn from its contract
(sandbox/generic.py) and generic files or tables. A feed the sandbox cannot serve (a ``secret:``
reference it cannot set, an absolute token URL, a contract rule the generic rows cannot meet) is
not simulated: :class:`sandbox.agencies.Sandbox` lists it with the reason in ``not_simulated``
(sandbox.json, ``fundx sandbox status``), and the conformance suite skips it saying why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from connectors.config import FeedConfig
from connectors.registry import registry
from sandbox.city.office_feeds import OFFICE_FEEDS
from sandbox.drops import FileDrop, JusticeDrop, ReligiousDrop
from sandbox.faults import FaultState
from sandbox.medical_db import MedicalDB
from sandbox.office_db import office_database
from sandbox.rest import RestQuirks
from sandbox.tax_db import TaxDB

__all__ = ["ENTRIES", "AgencyDB", "Entry", "SimulatedFeed", "simulated_feeds"]


class AgencyDB(Protocol):
    """What the sandbox needs of a database agency."""

    faults: FaultState

    @property
    def url(self) -> str: ...
    @property
    def public_url(self) -> str: ...

    def load(self) -> None: ...
    def arm(self) -> None: ...
    def expected(self, start: Any, end: Any) -> pd.DataFrame: ...
    def close(self) -> None: ...


#: a database agency of its own: (sandbox home, the feed's rows, its agency's faults, PostgreSQL URL or None)
DatabaseFactory = Callable[[Path, pd.DataFrame, FaultState, "str | None"], AgencyDB]


@dataclass(frozen=True)
class Entry:
    """What the sandbox knows of one feed beyond its config and contract."""

    #: its rows come from the city generator (sandbox/city/ builds them, with planted truths)
    city: bool = True
    #: a REST agency's page limit and rate limit
    rest: RestQuirks = field(default_factory=RestQuirks)
    #: a drop agency's own file plan and encoding (default: :class:`sandbox.drops.FileDrop`'s)
    drop: type[FileDrop] | None = None
    #: a database agency of its own (default: :class:`sandbox.view_db.ViewDB`)
    database: DatabaseFactory | None = None


def _medical(home: Path, frame: pd.DataFrame, faults: FaultState, postgres_url: str | None) -> AgencyDB:
    return MedicalDB(home, frame, faults, postgres_url)


def _tax(home: Path, frame: pd.DataFrame, faults: FaultState, postgres_url: str | None) -> AgencyDB:
    return TaxDB(home, frame, faults)


#: feed -> its sandbox entry (docs/agencies.md describes each agency)
ENTRIES: dict[str, Entry] = {
    "civil_affairs.deaths": Entry(),
    "police.deaths": Entry(rest=RestQuirks(max_page=1000, rate_limit=(50.0, 50))),
    "market_regulation.businesses": Entry(),
    "health_commission.hospital_deaths": Entry(),
    "religious_affairs.deaths": Entry(drop=ReligiousDrop),
    "justice.prisoners": Entry(drop=JusticeDrop),
    "medical_insurance.bills": Entry(database=_medical),
    "tax_bureau.wage_income": Entry(database=_tax),
    # the social-insurance office's system: five views of one database (sandbox/office_db.py)
    **{feed: Entry(database=office_database(feed)) for feed in OFFICE_FEEDS},
}

#: a feed without an entry: rows from its contract, the transport's generic agency
GENERIC = Entry(city=False)


@dataclass(frozen=True)
class SimulatedFeed:
    """A feed of the registry and how the sandbox serves it."""

    feed: str
    config: FeedConfig
    entry: Entry

    @property
    def agency(self) -> str:
        return self.config.agency

    @property
    def transport(self) -> str:
        return self.config.transport

    @property
    def generic(self) -> bool:
        """Whether its rows are drawn from its contract (no entry)."""
        return not self.entry.city


def simulated_feeds() -> dict[str, SimulatedFeed]:
    """Every feed of the registry with the way the sandbox serves it (its entry, or the generic one);
    a feed whose config does not load is not among them (``registry().broken`` says why)."""
    reg = registry()
    return {name: SimulatedFeed(name, reg.feeds[name], ENTRIES.get(name, GENERIC)) for name in reg.names}
