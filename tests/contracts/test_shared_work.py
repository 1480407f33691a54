"""Work shared by the rules of one validation (contracts.checks.shared_work) never hands one column another's
result: a column's parsed form is keyed by its Arrow buffers, and those are kept alive with the result, so a
later column — a temporary copy of the same length, as Great Expectations makes them — cannot be given the
same addresses. Before this was so, a batch's death dates could be judged by another column's (issue 21: the
compiled checks and GX disagreed on 1,054 rows of a 1M-row feed)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from contracts.checks import column_days, column_ids, date_days, shared_work
from fundx.core.idcolumns import id_column


def _dates(i: int, rows: int = 1000) -> list[str]:
    return [f"20{10 + i % 15:02d}-0{1 + i % 9}-1{i % 10}"] * rows


def test_temporary_copies_of_equal_length_never_share_a_result() -> None:
    with shared_work():
        for i in range(100):
            values = _dates(i)
            got = column_days(pd.Series(values, dtype="str").copy())  # freed as soon as it is read
            assert np.array_equal(got, date_days(pd.Series(values, dtype="str"))), i


def test_the_same_column_is_parsed_once_per_validation() -> None:
    column = pd.Series(["110105194912310021"] * 10, dtype="str")
    calls = []

    def counted(values):
        calls.append(1)
        return id_column(values)

    from contracts import checks

    with shared_work():
        first = checks._once("ids", column, counted)
        again = checks._once("ids", column, counted)
    assert first is again and len(calls) == 1
    assert column_ids(column).shaped.all()  # outside the scope: computed, not remembered
