"""The event latency of a batch's rows: days from each row's business event to its arrival.

The business event is the column the contract's ``eventLatency`` names (death date, admission,
settlement, deregistration); the SLA monitor judges the 90th percentile (:mod:`contracts.sla.findings`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contracts.sla.policy import feed_sla


def event_lag_days(feed: str, frame: Any, arrived: datetime) -> tuple[float, float] | None:
    """(p50, p90) days from each row's business event (the SLA's event column) to ``arrived``."""
    lag = event_lags(feed, frame, arrived)
    return None if lag is None else lag_percentiles(lag)


def event_lags(feed: str, frame: Any, arrived: datetime) -> Any:
    """Days from each row's business event to ``arrived`` (rows without one left out), or None."""
    import numpy as np
    import pandas as pd

    column = feed_sla(feed).event_element
    if column not in getattr(frame, "columns", ()) or len(frame) == 0:
        return None
    # dates read as midnight UTC, moments with their offset: a few hours do not matter in days. Checked rows
    # hold ISO 8601 (pandas parses it in C, 7x faster than "mixed"); anything else is read the slow way
    values = frame[column].where(frame[column].notna())
    moments = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    other = moments.isna().to_numpy() & values.notna().to_numpy()
    if other.any():
        moments[other] = pd.to_datetime(values[other], errors="coerce", utc=True, format="mixed")
    lag = (pd.Timestamp(arrived).tz_convert("UTC") - moments).dt.total_seconds().to_numpy(dtype=float) / 86400.0
    return lag[~np.isnan(lag)]


def lag_percentiles(lag: Any) -> tuple[float, float] | None:
    """(p50, p90) of event lags in days, or None when there are none."""
    import numpy as np

    if lag is None or len(lag) == 0:
        return None
    p50, p90 = np.percentile(lag, [50, 90])
    return round(float(p50), 3), round(float(p90), 3)
