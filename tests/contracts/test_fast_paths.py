"""The contract check's fast paths judge exactly as the plain code they stand for (issue 21): dates and
timestamps by their bytes against the regexes, the calendar by table against the arithmetic, the split by
Arrow against pandas' boolean indexing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from contracts.normalise import _ISO, _NAIVE_TIMESTAMP, iso_dates, maybe_naive
from contracts.validate import rows_where
from fundx.core.idcolumns import calendar_days, days_from_civil, real_dates

ODD = [None, "", " ", "2021-04-12", "2021-4-12", "2021-04-1", "2021/04/12", "２０２１-04-12", "2021-04-12 ", "20210412",
       "2021-04-12\n", "abcd-ef-gh", "2021-02-30", "0000-00-00", "9999-99-99", "2021-04-12T08:00:00",
       "2021-04-12 08:00:00", "2021-04-12T08:00:00.1", "2021-04-12T08:00:00.123456789", "2021-04-12T08:00:00.1234567890",
       "2021-04-12T08:00:00+08:00", "2021-04-12T08:00:00Z", "2021-04-12T08:00:00,123", "张三李四王五赵六钱七",
       "2021-04-12X08:00:00", "2021-04-12T08:00:0a"]


def _regex(values: list, pattern: str, null: bool) -> np.ndarray:
    arr = pa.array(values, type=pa.large_string())
    return pc.fill_null(pc.match_substring_regex(arr, pattern), null).to_numpy(zero_copy_only=False)


def test_iso_dates_by_their_bytes_are_the_regexs():
    for kind in (pa.string(), pa.large_string()):
        assert (iso_dates(pa.array(ODD, type=kind)) == _regex(ODD, _ISO, True)).all()


def test_the_naive_timestamps_looked_at_include_every_one_the_regex_finds():
    found = _regex(ODD, _NAIVE_TIMESTAMP, False)
    assert found.any()
    assert (maybe_naive(pa.array(ODD, type=pa.large_string()))[found]).all()


def test_the_calendar_by_table_is_the_arithmetic():
    year, month, day = (a.ravel() for a in np.meshgrid(np.r_[-1, 0, 1, 1600, 1850, 1900, 2000, 2024, 2100, 9999, 10000],
                                                        np.arange(-1, 15), np.arange(-1, 34), indexing="ij"))
    ok, days = calendar_days(year, month, day)
    inside = (year >= 0) & (year <= 9999)
    assert (ok == (inside & real_dates(year, month, day))).all()
    assert (days[ok] == days_from_civil(year[ok], month[ok], day[ok])).all()


def test_rows_where_is_pandas_boolean_indexing():
    frame = pd.DataFrame({"text": pd.Series(["a", None, "c", "d"], dtype="str"), "number": [1.0, 2.0, np.nan, 4.0],
                          "things": pd.Series([None, "b", 3, "d"], dtype=object)}, index=[7, 8, 9, 10])
    for keep in (np.array([True, False, True, False]), np.zeros(4, dtype=bool), np.ones(4, dtype=bool)):
        pd.testing.assert_frame_equal(rows_where(frame, keep), frame[keep].reset_index(drop=True))
