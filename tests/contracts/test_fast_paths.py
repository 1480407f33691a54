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


# --- the patterns, the key's repeats and the byte ranges (issue 21's warm check) -------------------------------

KEYS = [None, "", "HKZX33010000000001", "HKZX33010000000001\n", "HKZX3301000000001", "HKZX33010000000001 ",
        "hkzx33010000000001", "HKZX3301000000000X", "HKZX33０1000000001", "110105194912310021", "11010519491231002X",
        "11010519491231002x", "1101051949123100211", "１１０１０５１９４９１２３１００２１", "11010519491231002\n",
        "2021-04-12", "AB-123", "ab-12", "A_-9 :", "张三", "2021-04-12T08:00:00+08:00", "2021-04-12T08:00:00-05:30",
        "2021-04-12 08:00:00+08:00", "2021-04-12T08:00:00Z", "2021-04-12T08:00:00.5+08:00", "2021-04-12T08:00:00+0800",
        "2021-04-12T08:00:00+08:0", "2021-04-12T08:00:00+08:000", "2021-04-12T08:00:00 08:00", "2021-04-1２T08:00:00+08:00"]


def _contract_patterns() -> set[str]:
    from contracts import contract_names, load_contract
    from contracts.rules import contract_rules

    return {r.params["regex"] for name in contract_names() for r in contract_rules(load_contract(name)).row_rules
            if r.kind == "pattern"}


def test_patterns_of_one_fixed_width_are_judged_by_their_bytes_as_the_regex_judges_them():
    from contracts.checks import EXCEL_MANGLED, ISO_TIMESTAMP, _regex, fixed_form, matches

    fixed = {r"^[0-9]{17}[0-9X]$", r"^HKZX3301[0-9]{10}$", r"^[A-Z]{2}-[0-9]{3}$", r"^[a-z-]{2}-[0-9]{2}$",
             r"^[A-Z_ :9-]{6}$", r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}
    other = {EXCEL_MANGLED, ISO_TIMESTAMP, r"^[0-9]{17}[0-9X]", r"[0-9]{17}[0-9X]$", r"^[0-9]{1,3}$", r"^\d{3}$",
             r"^[^0-9]{3}$", r"^a|b$", r"^[0-9]+$", r"^.{3}$", r"^ab\$", r"^(ab){2}$"}
    assert all(fixed_form(p) is not None for p in fixed)
    assert all(fixed_form(p) is None for p in other)
    values = KEYS + [v + "1" for v in KEYS if v] + ["AB-1234", "ZZ-000", "az-09", "a--12", "-a-99", "A_ :9-",
                                                     "1.10105E+17", "3.301061956100938e+17", "1e5", "1.5E", "E+17",
                                                     "1.10105E+17 ", "1,5E+17", "eE"]
    for pattern in fixed | other | _contract_patterns():
        for kind in (pa.string(), pa.large_string()):
            arr = pa.array(values, type=kind)
            assert (matches(arr, pattern) == _regex(arr, pattern)).all(), pattern
            series = pd.Series(values, dtype="str")
            assert (matches(series, pattern) == _regex(arr, pattern)).all(), pattern


def test_bytes_within_is_numpys_all_over_each_row():
    from fundx.core.idcolumns import bytes_within

    rng = np.random.default_rng(5)
    for width in (1, 7, 8, 9, 17, 18, 25):
        rows = rng.integers(0, 256, (3000, width), dtype=np.uint8)
        low = rng.integers(0, 200, width).astype(np.uint8)
        span = rng.integers(0, 40, width).astype(np.uint8)
        rows[::3] = low + rng.integers(0, 40, (1000, width)).astype(np.uint8) % (span.astype(np.int64) + 1)
        expected = ((rows.astype(np.int64) >= low) & (rows.astype(np.int64) <= low.astype(np.int64) + span)).all(axis=1)
        assert expected[::3].all() and not expected.all()
        assert (bytes_within(rows, low, span) == expected).all()
        assert (bytes_within(rows[:, : width - 1 or None], low[: width - 1 or None], span[: width - 1 or None])
                == ((rows[:, : width - 1 or None].astype(np.int64) >= low[: width - 1 or None])
                    & (rows[:, : width - 1 or None].astype(np.int64)
                       <= low[: width - 1 or None].astype(np.int64) + span[: width - 1 or None])).all(axis=1)).all()


def _repeated_plainly(values: list) -> np.ndarray:
    series = pd.Series(values, dtype=object)
    return (series.notna() & series.duplicated(keep=False)).to_numpy()


def test_the_repeated_values_found_by_their_bytes_hashes_are_those_counted_by_value(monkeypatch):
    from contracts import checks

    rng = np.random.default_rng(9)
    pool = [v for v in KEYS if v is not None] + [f"HKZX3301{i:010d}" for i in range(200)]
    for size in (0, 1, 2, 50, 3000):
        values = [None if rng.random() < 0.05 else pool[int(i)] for i in rng.integers(0, len(pool), size)]
        for kind in (pa.string(), pa.large_string()):
            expected = _repeated_plainly(values)
            assert (checks.repeated(pa.array(values, type=kind)) == expected).all()
            with monkeypatch.context() as m:  # every hash the same: the texts alone decide
                m.setattr(checks, "_row_hashes", lambda mat: np.zeros(len(mat), dtype=np.uint64))
                assert (checks.repeated(pa.array(values, type=kind)) == expected).all()
    unique = [f"HKZX3301{i:010d}" for i in range(5000)]
    assert not checks.repeated(pd.Series(unique, dtype="str")).any()
    assert checks.repeated(pd.Series([*unique, unique[17]], dtype="str")).sum() == 2


def test_a_checks_normalisation_and_its_date_rules_parse_a_date_column_once(monkeypatch):
    from datetime import date

    from contracts import checks, load_contract
    from contracts.validate import check_rows
    from sandbox.city import generate_feed

    contract = load_contract("police.deaths")
    frame = pd.concat(list(generate_feed("police.deaths", 300, seed=3)), ignore_index=True)
    plain = check_rows(contract, frame, today=date(2026, 11, 1), gx=False)
    parsed = []
    real = checks._iso_form
    monkeypatch.setattr(checks, "_iso_form", lambda values: parsed.append(1) or real(values))
    again = check_rows(contract, frame, today=date(2026, 11, 1), gx=False)
    dates = [c for c in ("birth_date", "death_date", "cancelled_on") if c in frame.columns]
    assert dates and len(parsed) == len(dates)  # normalisation and the date rules: one parse per column
    pd.testing.assert_frame_equal(again.valid, plain.valid)
    pd.testing.assert_frame_equal(again.quarantined, plain.quarantined)
