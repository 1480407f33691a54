"""Content digests: order-independent, sensitive to content and columns, dtype-neutral for text."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fundx.core.digest import content_digest


def frame(n=1000, seed=1):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "record_id": [f"R{i:06d}" for i in range(n)],
        "name": rng.choice(["张三", "李四", None], n),
        "amount": rng.integers(0, 100, n),
    })


def test_same_rows_in_any_order_same_digest():
    f = frame()
    shuffled = f.sample(frac=1.0, random_state=7)
    assert content_digest(f) == content_digest(shuffled)
    assert content_digest(f) == content_digest(shuffled.reset_index(drop=True))


def test_digest_format():
    assert content_digest(frame()).startswith("sha256:") and len(content_digest(frame())) == 7 + 64


def test_one_changed_value_changes_the_digest():
    f = frame()
    g = f.copy()
    g.loc[3, "name"] = "王五"
    assert content_digest(f) != content_digest(g)


def test_column_names_count():
    f = frame()
    assert content_digest(f) != content_digest(f.rename(columns={"name": "full_name"}))


def test_text_dtype_does_not_matter_and_missing_is_missing():
    f = pd.DataFrame({"a": ["x", None, "z"]})
    assert content_digest(f) == content_digest(f.astype(object))
    assert content_digest(f) != content_digest(pd.DataFrame({"a": ["x", "", "z"]}))


def test_datetimes_of_any_unit_and_zone_agree():
    t = pd.DataFrame({"t": pd.to_datetime(["2026-10-12T09:30:00+08:00", None], utc=True, format="ISO8601")})
    assert content_digest(t) == content_digest(t.astype("datetime64[us, UTC]"))
    assert content_digest(t) == content_digest(pd.DataFrame({"t": t["t"].dt.tz_convert("Asia/Shanghai")}))


def test_empty_frames_differ_by_columns():
    assert content_digest(pd.DataFrame({"a": []})) != content_digest(pd.DataFrame({"b": []}))


def test_column_hashes_folded_are_the_row_hashes_and_a_key_is_a_fold_of_its_columns():
    from fundx.core.digest import column_hashes, fold, row_hashes

    f = frame(3000)
    by_column = dict(zip(f.columns, column_hashes(f)))
    assert (fold(by_column.values(), len(f)) == row_hashes(f)).all()
    assert (fold((by_column[c] for c in ("name", "record_id")), len(f)) == row_hashes(f[["name", "record_id"]])).all()


def test_row_hashes_since_hashes_again_only_what_changed_and_agrees_with_hashing_afresh():
    from fundx.core.digest import column_hashes, row_hashes, row_hashes_since

    n = 5000
    rng = np.random.default_rng(3)
    before = pd.DataFrame({
        "id": pd.Series([f"11010519491231{i:04d}" if i % 7 else f" 11010519491231{i:04d}x" for i in range(n)], dtype="str"),
        "gender": pd.Series(rng.choice(["男", "女", None], n), dtype="str"),
        "amount": rng.normal(size=n),
        "when": pd.Series(pd.to_datetime(rng.integers(0, 10**9, n), unit="s", utc=True)),
        "plain": pd.Series(rng.choice(["a", None, 3], n), dtype=object),
    }, index=np.arange(100, 100 + n))
    hashes = dict(zip(before.columns, column_hashes(before)))
    after = before.copy()
    after["id"] = after["id"].str.strip().str.upper()          # normalised: some values change
    after.loc[after.index[::11], "gender"] = None               # a value becomes missing ...
    after.loc[after.index[5::13], "amount"] = np.nan            # ... or a number goes
    after["plain"] = after["plain"].astype(str)                 # a dtype that changes: hashed afresh
    kept = after.iloc[rng.permutation(n)[: n // 2]]              # a subset, in another order
    assert (row_hashes_since(kept, before, hashes) == row_hashes(kept)).all()
    strangers = kept.set_axis(np.arange(len(kept)) + 10**6)     # rows `before` never had: hashed afresh
    assert (row_hashes_since(strangers, before, hashes) == row_hashes(strangers)).all()


def test_text_hashes_are_pandas_own_of_the_strings_whatever_their_storage():
    """Digests are in the ledger and batch ids: Arrow-backed text (hashed from its UTF-8 bytes) hashes as
    pandas hashes the strings, and a pinned frame keeps the digest it has always had."""
    from fundx.core.digest import column_hashes

    texts = ["110105194912310021", "张三", "", None, "None", "x" * 40, "😀é", 'a,b"c'] * 200
    f = pd.DataFrame({"text": pd.Series(texts, dtype="str"), "few": pd.Series(["男", "女", None, "男"] * 400, dtype="str"),
                      "n": np.arange(1600)})
    strings = pd.util.hash_array(np.array(texts, dtype=object), categorize=False)
    assert (column_hashes(f)[0] == strings).all()
    assert (column_hashes(f.astype({"text": object}))[0] == strings).all()
    assert (column_hashes(f.iloc[3:900])[0] == strings[3:900]).all()  # a slice of the Arrow data
    assert content_digest(f) == "sha256:3f343d13de0f182cc960371154164ea5140ef16a5d182d3bc7f80fb0cc43d931"


def test_columns_of_repeated_or_missing_text_hash_as_their_values_do():
    """Text with few distinct values is hashed once per value (pandas' factorize), a
    column of nothing but missing values (an optional column a source does not send) as missing values,
    in one chunk or several: the hashes pandas gives each value."""
    from fundx.core.digest import column_hashes, digest_of, row_hashes

    n = 3000
    few = ["男", "女", None, "2026-04-12"] * (n // 4)
    f = pd.DataFrame({"few": pd.Series(few, dtype="str"), "none": pd.Series([None] * n, dtype="str"),
                      "objects": pd.Series([None] * n, dtype=object), "pandas_na": pd.Series(few, dtype="string[pyarrow]")})
    chunked = pd.concat([f.iloc[:1234], f.iloc[1234:]], ignore_index=True)  # Arrow columns of two chunks
    expected = [pd.util.hash_array(np.array(few, dtype=object), categorize=False),
                pd.util.hash_array(np.array([None] * n, dtype=object), categorize=False)]
    for got in (column_hashes(f), column_hashes(chunked)):
        assert (got[0] == expected[0]).all() and (got[3] == expected[0]).all()
        assert (got[1] == expected[1]).all() and (got[2] == expected[1]).all()
    hashes = row_hashes(f)
    kept = hashes.copy()
    assert digest_of(f.columns, hashes, sort_in_place=True) == content_digest(f)
    assert (hashes == np.sort(kept)).all()  # sorted where they were, not copied
