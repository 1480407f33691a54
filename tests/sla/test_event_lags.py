"""Event lags read ISO 8601 the fast way and any other form the slow way, with the same days as before."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from contracts.sla.latency import event_lags


def test_iso_moments_dates_and_other_forms_give_the_same_days() -> None:
    values = ["2025-01-01T00:00:00+08:00", "2025/1/2 08:00", None, "2025-01-03", "junk", "2025-01-04 12:00:00+0000"]
    frame = pd.DataFrame({"settled_at": pd.Series(values, dtype="str")})
    lags = event_lags("medical_insurance.bills", frame, datetime(2025, 1, 10, tzinfo=UTC))
    slow = pd.to_datetime(frame["settled_at"], errors="coerce", utc=True, format="mixed")
    expected = ((pd.Timestamp("2025-01-10", tz="UTC") - slow).dt.total_seconds() / 86400.0).dropna().to_numpy()
    assert np.allclose(lags, expected) and len(lags) == 4
