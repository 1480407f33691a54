"""The matching stage's memory is bounded (issue 21): a received batch goes through DuckDB one part at a time,
DuckDB holds at most FUNDX_MATCHING_MEMORY and spills into a folder of the night's own, and the rules read the
store's files as Parquet scans — with the same rows as before."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest

from fundx.core.errors import ConfigurationError
from fundx.core.settings import reload_settings
from fundx.crypto.keys import KeyStore
from fundx.crypto.manifest import Manifest
from matching import load, rules
from matching.sql import one_per_key, one_per_key_in_batch
from matching.store import Store

FEED = "civil_affairs.deaths"
BATCH = "civil_affairs.deaths-20260101T000000-20260102T000000-0123456789ab"


def _rows(n: int, start: int = 0) -> pa.Table:
    people = [f"11010519491231{i % 997:03d}X" for i in range(start, start + n)]  # people repeat across parts
    return pa.table({"record_id": [f"D{i:06d}" for i in range(start, start + n)], "id_number": people,
                     "name": [f"张{i % 997}" for i in range(start, start + n)],
                     "death_date": [f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(start, start + n)]})


def _manifest(part: int, parts: int, rows: int) -> Manifest:
    return Manifest(batch_id=BATCH, feed=FEED, window_start="2026-01-01", window_end="2026-01-02", part=part,
                    parts=parts, rows=rows, content_digest="sha256:" + "0" * 64, contract_version="1.0.0",
                    recipient="death_matching", created_at="2026-01-02T00:00:00+00:00")


class Spy:
    """A DuckDB connection that counts the rows of every Arrow table it is given."""

    def __init__(self, con) -> None:
        self.con, self.given = con, []

    def register(self, name, table):
        self.given.append((name, table.num_rows))
        return self.con.register(name, table)

    def __getattr__(self, name):
        return getattr(self.con, name)


def _load(monkeypatch, home: Path, parts: list[pa.Table]):
    total = sum(p.num_rows for p in parts)
    monkeypatch.setattr(load, "open_parts", lambda stage, batch, keys: (
        (_manifest(i, len(parts), total), p) for i, p in enumerate(parts, start=1)))
    monkeypatch.setattr(load, "received_at", lambda stage, batch: "2026-01-02T01:00:00+00:00")
    spy = Spy(load.connect(KeyStore(home=home)))
    return spy, load.pseudonymise(spy, SimpleNamespace(name="death_matching"), BATCH, KeyStore(home=home))


def test_a_batch_is_loaded_one_part_at_a_time_with_the_rows_of_the_whole(home, monkeypatch) -> None:
    parts = [_rows(700, 0), _rows(500, 700), _rows(800, 1200)]
    spy, (manifest, table, kept, vault) = _load(monkeypatch, home, parts)
    assert [n for name, n in spy.given if name == "src"] == [700, 500, 800]  # one part's plain rows at a time
    _, (_, _, kept_whole, vault_whole) = _load(monkeypatch, home, [pa.concat_tables(parts)])
    assert (manifest.batch_id, table) == (BATCH, "deaths")
    assert kept.rows().equals(kept_whole.rows())  # the same rows, in the same order, as the batch loaded whole
    key = lambda t: sorted(zip(*(t.column(c).to_pylist() for c in t.column_names)))  # noqa: E731
    assert vault is not None and vault_whole is not None and key(vault) == key(vault_whole)
    assert vault.num_rows == 997  # one row per person, however many parts they are in


def test_a_batch_whose_parts_miss_rows_is_refused_before_anything_is_written(home, monkeypatch) -> None:
    parts = [_rows(10), _rows(10, 10)]
    monkeypatch.setattr(load, "open_parts", lambda stage, batch, keys: (
        (_manifest(i, 2, 25), p) for i, p in enumerate(parts, start=1)))
    monkeypatch.setattr(load, "received_at", lambda stage, batch: "2026-01-02T01:00:00+00:00")
    with pytest.raises(Exception, match="the parts hold 20 rows, the manifest announces 25"):
        load.pseudonymise(load.connect(KeyStore(home=home)), SimpleNamespace(name="death_matching"), BATCH,
                          KeyStore(home=home))


@pytest.mark.parametrize(("given", "kept"), [("1GB", "1GB"), ("512 mb", "512MB"), ("2gib", "2GiB"), ("1.5GB", "1.5GB")])
def test_the_matching_memory_setting_is_duckdbs_memory_limit(home, monkeypatch, given, kept) -> None:
    monkeypatch.setenv("FUNDX_MATCHING_MEMORY", given)
    assert reload_settings().matching_memory == kept
    con = load.connect(KeyStore(home=home))
    setting = "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
    limit, folder = con.sql(setting).fetchall()[0]
    assert limit != "" and folder == ""  # loading batches (plain identity numbers): nothing spills
    load.allow_spill(con, load.spill_dir(home))
    assert con.sql(setting).fetchall()[0][1] == str(load.spill_dir(home)) and load.spill_dir(home).is_dir()
    con.close()


@pytest.mark.parametrize("bad", ["lots", "1", "0GB", "-1GB", "1 PB", "10MB"])
def test_a_bad_matching_memory_stops_with_one_line_naming_it(home, monkeypatch, bad) -> None:
    monkeypatch.setenv("FUNDX_MATCHING_MEMORY", bad)
    with pytest.raises(ConfigurationError) as caught:
        reload_settings()
    assert str(caught.value).startswith("invalid settings: FUNDX_MATCHING_MEMORY:") and "\n" not in str(caught.value)
    monkeypatch.delenv("FUNDX_MATCHING_MEMORY")
    reload_settings()


def test_the_rules_read_the_store_as_scans_with_the_same_latest_rows(home) -> None:
    store = Store("death_matching", home=home, keys=KeyStore(home=home))
    con = load.connect(KeyStore(home=home))
    kinds = {"VARCHAR": pa.string(), "BLOB": pa.binary(), "DATE": pa.date32(),
             "TIMESTAMPTZ": pa.timestamp("us", tz="UTC")}
    schema = pa.schema([(c, kinds[k]) for c, k in (col.strip().split(" ", 1) for col in rules.EMPTY["deaths"].split(","))])
    batches = []
    for n, (start, size) in enumerate([(0, 50), (30, 40), (60, 30)]):  # later batches replace earlier keys
        at = pa.scalar(1_700_000_000_000_000 + n, pa.timestamp("us", tz="UTC"))
        given = {"feed": ["f"] * size, "record_key": [f"k{i}" for i in range(start, start + size)],
                 "person": [bytes([n, i]) for i in range(size)], "received_at": [at.as_py()] * size}
        batch = pa.table({c.name: given.get(c.name, [None] * size) for c in schema}, schema=schema)
        store.write("deaths", f"b{n}", batch)
        batches.append(batch)
    scan = store.scan("deaths")
    assert scan is not None and scan.parts == [50, 40, 30] and scan.num_rows == 120
    rules.prepare(con, rules.Inputs({"deaths": scan}), rules.parse_params(None))
    got = con.sql("SELECT feed, record_key, person FROM deaths ORDER BY record_key").to_arrow_table()
    want = one_per_key("deaths", pa.concat_tables(batches)).select(["feed", "record_key", "person"])
    assert got.equals(want.sort_by("record_key"))
    assert sorted(got["record_key"].to_pylist()) == sorted(f"k{i}" for i in range(90))


@pytest.mark.parametrize(("repeat", "group"), [(False, 1024 * 1024), (True, 1024 * 1024), (False, 2), (True, 2)])
def test_the_kept_rows_are_stored_as_the_whole_batch_would_be(home, monkeypatch, repeat, group) -> None:
    monkeypatch.setattr(load, "ROW_GROUP", group)  # 2: parts written a row group at a time as they come
    store = Store("death_matching", home=home, keys=KeyStore(home=home))
    parts = [pa.table({"feed": ["f"] * 3, "record_key": ["a", "b", "c"], "n": [1, 2, 3]}),
             pa.table({"feed": ["f"] * 2, "record_key": ["b" if repeat else "d", "e"], "n": [4, 5]}),
             pa.table({"feed": ["f"], "record_key": ["g"], "n": pa.array([None], pa.int64())})]
    kept = load.Kept("deaths")
    for part in parts:
        kept.add(part)
    rows, dropped = kept.store(store, "b1")
    want, repeated = one_per_key_in_batch("deaths", pa.concat_tables(parts))
    assert store.read_file("deaths", "b1").equals(want) and (rows, dropped) == (want.num_rows, repeated)
    assert dropped == (1 if repeat else 0)


def test_parts_whose_types_differ_are_stored_as_their_concatenation(home) -> None:
    store = Store("death_matching", home=home, keys=KeyStore(home=home))
    parts = [pa.table({"record_key": ["a"], "x": pa.array([None], pa.null())}), pa.table({"record_key": ["b"], "x": ["y"]})]
    kept = load.Kept("custody")
    for part in parts:
        kept.add(part)
    assert kept.store(store, "b1") == (2, 0)
    assert store.read_file("custody", "b1").equals(pa.concat_tables(parts, promote_options="default"))
