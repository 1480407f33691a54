"""The feeds the city is made of, a city's defaults, and the rows a feed builder hands back.

A builder (sandbox/city/deaths.py, registers.py, payments.py) takes the people its rows are about and
returns Rows: the frame, and for each row the position of its person among the people given. Rows
come ordered by (incremental column, key); keys are unique from ``key_start`` on. The same builders
serve generate_city (the city's people, with the dates its planted cases need) and generate_feed
(people drawn for the chunk).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

#: the seed and as-of day of the sandbox's city when none is given (the demo, ``fundx sandbox``, the chaos night)
DEFAULT_SEED = 20261123
DEFAULT_AS_OF = date(2026, 11, 1)
#: the feeds a city holds, in the order their messiness and invalid rows are drawn
FEEDS: tuple[str, ...] = (
    "civil_affairs.deaths",
    "religious_affairs.deaths",
    "police.deaths",
    "justice.prisoners",
    "medical_insurance.bills",
    "market_regulation.businesses",
    "health_commission.hospital_deaths",
    "tax_bureau.wage_income",
)
HOSPITAL_DEATHS = "health_commission.hospital_deaths"
WAGE_INCOME = "tax_bureau.wage_income"
#: the four sources of deaths (a death known to two of them is no single-source death)
DEATH_FEEDS: tuple[str, ...] = ("civil_affairs.deaths", "police.deaths", "religious_affairs.deaths", HOSPITAL_DEATHS)


@dataclass
class Rows:
    """One feed's rows and, for each row, the position of its person in the people given."""

    frame: pd.DataFrame
    pos: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
