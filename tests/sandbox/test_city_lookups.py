"""The generator's lookups that replaced comparisons over whole frames (issue 21, a province-scale city): they
answer exactly what the comparisons answered, so the generated city stays as it was (test_generator_golden.py
holds the frames to their bytes; these hold the helpers on the cases a small city may not reach)."""

from __future__ import annotations

from datetime import date

import numpy as np

from sandbox.city.custody_history import Ground
from sandbox.city.draws import RowIndex, member
from sandbox.city.place import SANDBOX_CITY, load_place
from sandbox.city.population import make_people


def test_member_is_numpy_isin_over_texts_with_missing_values() -> None:
    values = np.array(["a", None, "b", "c", np.nan, "a", ""], dtype=object)
    for keys in (set(), {"a"}, {"a", "c", ""}, {"z"}):
        assert member(values, keys).tolist() == np.isin(values, list(keys) or np.array([], dtype=object)).tolist()


def test_row_index_gives_each_values_rows_in_order() -> None:
    values = np.array(["x", "y", None, "x", "z", "y", "x"], dtype=object)
    index = RowIndex(values)
    for value in ("x", "y", "z", "w"):
        assert index.rows(value).tolist() == np.flatnonzero(values == value).tolist()
    assert index.rows(None).tolist() == []  # a missing value is no one's: the comparison never matched it either
    assert RowIndex(np.array([], dtype=object)).rows("x").tolist() == []


def test_ground_take_draws_as_the_loop_did() -> None:
    """Ground.take (vectorised, a pool's positions kept) marks and returns what the per-person loop did, and
    draws the same numbers from the stream."""
    rng = np.random.default_rng(5)
    ppl = make_people(rng, 400, 20_000, "city", unique=True, place=load_place(SANDBOX_CITY), extra=rng)
    ids = np.asarray(ppl.ids().to_numpy(zero_copy_only=False), dtype=object)
    pos_of = {str(t): i for i, t in enumerate(ids)}
    free = rng.random(400) < 0.6

    def reference(stream: np.random.Generator, free: np.ndarray, pool: np.ndarray, k: int) -> np.ndarray:
        people = np.array([pos_of[i] for i in pool], dtype=np.int64) if len(pool) else np.zeros(0, np.int64)
        order = stream.permutation(len(pool))
        chosen = [int(j) for j in order if free[people[j]]][:k]
        free[people[chosen]] = False
        return np.array(sorted(chosen), dtype=np.int64)

    ground = Ground(np.random.default_rng(9), ppl, ids, np.zeros(400), date(2026, 1, 1), 20_000, 0, free.copy(), pos_of)
    stream, ref_free = np.random.default_rng(9), free.copy()
    pool, other = ids[::3], ids[1::2]
    for p, k in ((pool, 5), (pool, 1), (other, 40), (pool, 200), (ids[:0], 3), (other, 1)):
        assert ground.take(p, k).tolist() == reference(stream, ref_free, p, k).tolist()
        assert (ground.free == ref_free).all()
    assert ground.rng.random() == stream.random()
