"""Small drawing helpers the feed builders and the planted cases share: days, office hours, samples."""

from __future__ import annotations

import numpy as np

from sandbox.city.text import DAY


def past_days(rng: np.random.Generator, as_of_days: int, n: int) -> np.ndarray:
    """Days uniformly in the 365 days before as_of."""
    return as_of_days - rng.integers(1, 366, n)


def local_seconds(rng: np.random.Generator, days: np.ndarray, start_hour: int = 8, end_hour: int = 19) -> np.ndarray:
    """Wall-clock seconds on the given days, at random office-hours times."""
    return np.asarray(days, dtype=np.int64) * DAY + rng.integers(start_hour * 3600, end_hour * 3600, len(days))


def plant_count(n: int, rate: float, minimum: int) -> int:
    """How many of something to plant: rate of n, but at least minimum so small cities have examples."""
    return max(minimum, int(round(n * rate)))


def distinct_sample(rng: np.random.Generator, pool: np.ndarray, k: int) -> np.ndarray:
    """Up to k distinct members of pool, sorted (none from an empty pool)."""
    k = min(k, len(pool))
    if k <= 0:
        return np.array([], dtype=np.int64)
    return np.sort(rng.choice(pool, k, replace=False)).astype(np.int64)


def within_spans(spans: np.ndarray) -> np.ndarray:
    """0, 1, ..., span - 1 for each span, one after the other."""
    spans = np.asarray(spans, dtype=np.int64)
    return np.arange(int(spans.sum()), dtype=np.int64) - np.repeat(np.cumsum(spans) - spans, spans)
