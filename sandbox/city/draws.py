"""Small drawing helpers the feed builders and the planted cases share: days, office hours, samples."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

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


def member(values: np.ndarray, keys: Iterable[object]) -> np.ndarray:
    """Whether each value is one of ``keys``, by a set's lookup: numpy's ``isin`` over object arrays (identity
    numbers, keys) compares every value with every key, which grows with the square of a city."""
    wanted = set(keys)
    return np.fromiter((v in wanted for v in values), dtype=bool, count=len(values))


class RowIndex:
    """The rows holding each value of a column, found without reading the column again (a comparison over a
    whole frame per case grows with the square of a city): built once, in O(n log n)."""

    def __init__(self, values: np.ndarray) -> None:
        codes, uniques = pd.factorize(np.asarray(values, dtype=object))
        self._order = np.argsort(codes, kind="stable")  # each value's rows together, in the rows' order
        self._bounds = np.searchsorted(codes[self._order], np.arange(len(uniques) + 1))
        self._code = {value: k for k, value in enumerate(uniques.tolist())}

    def rows(self, value: object) -> np.ndarray:
        """The positions of the rows holding ``value``, ascending (none if no row does)."""
        k = self._code.get(value)
        if k is None:
            return np.zeros(0, dtype=np.int64)
        return self._order[self._bounds[k]:self._bounds[k + 1]].astype(np.int64)
