"""The matching stage's memory is bounded (issue 21): a received batch goes through DuckDB one part at a time,
DuckDB holds at most FUNDX_MATCHING_MEMORY and spills into a folder of the night's own, and the rules read the
store's files as Parquet scans — with the same rows as before."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fundx.core.errors import ConfigurationError, TamperedError
from fundx.core.settings import reload_settings
from fundx.crypto.keys import KeyStore
from fundx.crypto.manifest import Manifest
from matching import load, rules
from matching.sql import one_per_key, one_per_key_in_batch
from matching.store import BatchWriter, Store

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
        self.con, self.given, self.batches = con, [], []

    def register(self, name, table):
        self.given.append((name, table.num_rows))
        self.batches.extend((name, b.num_rows) for b in table.to_batches())
        return self.con.register(name, table)

    def __getattr__(self, name):
        return getattr(self.con, name)


def _load(monkeypatch, home: Path, parts: list[pa.Table], **given):
    total = sum(p.num_rows for p in parts)
    monkeypatch.setattr(load, "open_parts", lambda stage, batch, keys: (
        (_manifest(i, len(parts), total), p) for i, p in enumerate(parts, start=1)))
    monkeypatch.setattr(load, "received_at", lambda stage, batch: "2026-01-02T01:00:00+00:00")
    spy = Spy(load.connect(KeyStore(home=home)))
    return spy, load.pseudonymise(spy, SimpleNamespace(name="death_matching"), BATCH, KeyStore(home=home), **given)


def test_a_batch_is_loaded_one_part_at_a_time_with_the_rows_of_the_whole(home, monkeypatch) -> None:
    parts = [_rows(700, 0), _rows(500, 700), _rows(800, 1200)]
    monkeypatch.setattr(load, "DUCKDB_BATCH_ROWS", 256)
    spy, (manifest, table, kept, vault) = _load(monkeypatch, home, parts)
    # one part's plain rows at a time (with their tokens, load.with_tokens), as a part's values to tokenise
    assert [n for name, n in spy.given if name in ("src", "token_src")] == [700, 700, 500, 500, 800, 800]
    # in batches of DUCKDB_BATCH_ROWS at most, which DuckDB scans on all its threads (load.in_batches)
    assert max(n for name, n in spy.batches if name in ("src", "token_src", "token_in")) == 256
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
    # no automatic checkpoint recompressing the rules' tables as they are copied in (load.connect)
    assert con.sql("SELECT current_setting('checkpoint_threshold')").fetchall()[0][0] == "931.3 GiB"  # 1TB
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
    schema = pa.schema([(c, kinds[k]) for c, k in (col.strip().split(" ", 1) for col in rules.EMPTY["deaths"].split(","))]
                       + [("batch", pa.string())])  # as load.Kept stores it: no rule reads it
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
    # only the columns the rules read are copied into DuckDB (a batch id is 70 characters a row)
    copied = {c for t in ("deaths_in_first", "deaths_in_rest") for c in con.sql(f"SELECT * FROM {t}").columns}
    assert copied == {c.strip().split(" ")[0] for c in rules.EMPTY["deaths"].split(",")}


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


def test_the_ledgers_keys_never_share_a_hash_so_its_batch_is_not_compared_key_by_key(monkeypatch) -> None:
    """Kept finds a repeated key by a 64-bit hash of each row's key, comparing the keys themselves only where hashes
    repeat. DuckDB's hash of a string alone gives one in eleven of the ledger's payment ids (PM, the person, the
    month) a hash another id has, and every ledger batch took that slow path (11 s of a million people's night)."""
    import duckdb
    import numpy as np

    ids = pa.table({"record_key": [f"PM{i // 12:08d}2025{1 + i % 12:02d}" for i in range(50_000)]})
    plain = duckdb.connect().sql("SELECT count(DISTINCT hash(record_key)) FROM ids").fetchall()[0][0]
    assert plain < 46_000  # the collisions this guards against
    assert len(np.unique(load._key_hashes("payments", ids))) == 50_000
    kept = load.Kept("payments", rows=ids.num_rows)
    kept.add(ids.slice(0, 20_000))
    kept.add(ids.slice(20_000))
    monkeypatch.setattr(kept, "_written", lambda columns=None: pytest.fail("the keys were read back"))
    assert kept._unique()
    repeated = load.Kept("payments")
    repeated.add(pa.concat_tables([ids.slice(0, 3), ids.slice(1, 1)]))
    assert not repeated._unique()  # a key that does repeat is still found


def test_parts_whose_types_differ_are_stored_as_their_concatenation(home) -> None:
    store = Store("death_matching", home=home, keys=KeyStore(home=home))
    parts = [pa.table({"record_key": ["a"], "x": pa.array([None], pa.null())}), pa.table({"record_key": ["b"], "x": ["y"]})]
    kept = load.Kept("custody")
    for part in parts:
        kept.add(part)
    assert kept.store(store, "b1") == (2, 0)
    assert store.read_file("custody", "b1").equals(pa.concat_tables(parts, promote_options="default"))


def _seals(monkeypatch) -> list[int]:
    """The rows of every Parquet file the store is given to encrypt (what is whole in memory at once)."""
    given: list[int] = []
    seal = Store._seal

    def counted(self, plain, aad):
        given.append(pq.read_metadata(io.BytesIO(plain)).num_rows)
        return seal(self, plain, aad)

    monkeypatch.setattr(Store, "_seal", counted)
    return given


def test_a_batch_of_many_parts_is_stored_a_row_group_at_a_time_and_committed_once(home, monkeypatch) -> None:
    monkeypatch.setattr(load, "FILE_ROWS", 250)
    parts = [_rows(100, 100 * i) for i in range(20)]  # 2,000 rows in 20 parts
    given = _seals(monkeypatch)
    store = Store("death_matching", home=home, keys=KeyStore(home=home))
    vaults: list[tuple[int, int]] = []
    _, (_manifest_given, table, kept, vault) = _load(monkeypatch, home, parts, store=store,
                                              vault=lambda m, rows: vaults.append((m.part, rows.num_rows)))
    assert vault is None and table == "deaths"
    assert not store.has("deaths", BATCH) and store.names("deaths") == []  # written, not yet in the store
    assert kept.store(store, BATCH) == (2000, 0)
    assert store.has("deaths", BATCH) and store.names("deaths") == [BATCH]
    assert given == [300] * 6 + [200] and sum(given) == 2000  # never more than a row group and a part at once
    assert len(list((store.dir / "deaths" / BATCH).glob("*.enc"))) == 7
    assert not list((store.dir / "deaths" / ".staging").iterdir())
    _, (_, _, whole, vault_whole) = _load(monkeypatch, home, [pa.concat_tables(parts)])
    assert store.read_file("deaths", BATCH).equals(whole.rows())  # the rows of the batch loaded whole, in order
    scan = store.scan("deaths")
    assert scan is not None and scan.parts == [2000] and len(scan.files) == 7  # one part of the rules: the batch
    # the vault a part at a time: each person once (997 people, all in the first ten parts), the rest not rewritten
    assert [n for _, n in vaults] == [100] * 9 + [97] and vault_whole is not None and vault_whole.num_rows == 997


def test_the_rules_decrypt_the_store_a_file_at_a_time_and_read_the_rows_of_the_whole(home, monkeypatch) -> None:
    monkeypatch.setattr(load, "FILE_ROWS", 250)
    store = Store("death_matching", home=home, keys=KeyStore(home=home))
    _, (_, _, kept, _) = _load(monkeypatch, home, [_rows(100, 100 * i) for i in range(20)], store=store)
    kept.store(store, BATCH)
    opened: list[str] = []
    real_open = Store._open

    def counted(self, data, aad, what):
        opened.append(what)
        return real_open(self, data, aad, what)

    monkeypatch.setattr(Store, "_open", counted)
    scan = store.scan("deaths")
    assert scan is not None and len(opened) == len(scan.files) == 7 and scan.parts == [2000]  # each footer read once
    opened.clear()
    con = load.connect(KeyStore(home=home))
    registered: list[tuple[int, int]] = []  # (files decrypted so far, fragments of the dataset) at each copy
    real_register = con.register

    class Counting:
        def register(self, name, data):
            registered.append((len(opened), len(list(data.get_fragments()))))
            return real_register(name, data)

        def __getattr__(self, name):
            return getattr(con, name)

    rules.prepare(Counting(), rules.Inputs({"deaths": scan}), rules.parse_params(None))
    assert registered == [(n, 1) for n in range(1, 8)]  # the n-th file decrypted when the n-1 before were copied
    got = con.sql("SELECT record_key FROM deaths ORDER BY record_key").to_arrow_table()
    assert got.column("record_key").to_pylist() == sorted(store.read_file("deaths", BATCH).column("record_key").to_pylist())


def test_a_batch_written_but_not_committed_is_not_in_the_store_and_loads_again(home, monkeypatch) -> None:
    monkeypatch.setattr(load, "FILE_ROWS", 10)
    store = Store("death_matching", home=home, keys=KeyStore(home=home))
    parts = [_rows(30, 30 * i) for i in range(3)]
    _load(monkeypatch, home, parts, store=store)  # a crash before Kept.store: files staged, nothing committed
    assert list((store.dir / "deaths" / ".staging" / BATCH).glob("*.enc")) and not store.has("deaths", BATCH)
    _, (_, _, kept, _) = _load(monkeypatch, home, parts, store=store)  # loaded again: the staged files replaced
    assert kept.store(store, BATCH) == (90, 0) and store.read_file("deaths", BATCH).num_rows == 90
    bad = [*parts[:2], _rows(30, 60).slice(0, 20)]  # a part short of what the manifest announces: nothing staged
    monkeypatch.setattr(load, "open_parts", lambda stage, batch, keys: (
        (_manifest(i, 3, 90), p) for i, p in enumerate(bad, start=1)))
    with pytest.raises(Exception, match="the parts hold 80 rows"):
        load.pseudonymise(load.connect(KeyStore(home=home)), SimpleNamespace(name="death_matching"), "b2",
                          KeyStore(home=home), store=store)
    assert not (store.dir / "deaths" / ".staging" / "b2").exists() and not store.has("deaths", "b2")


def test_a_file_that_fails_to_be_written_stops_the_load_with_its_error_and_nothing_is_stored(home, monkeypatch):
    """The kept rows' files are encoded and sealed in a thread of their own (Kept._flush) while the next part is
    made: a file that cannot be written stops the batch's load with that file's error, nothing staged or stored;
    and the files that are written are the parts' rows in order."""
    monkeypatch.setattr(load, "FILE_ROWS", 10)
    store = Store("death_matching", home=home, keys=KeyStore(home=home))
    real_add, added = BatchWriter.add, []

    def add(self, plain: bytes) -> None:
        if len(added) == 1:
            raise OSError("No space left on device")
        added.append(pq.read_table(io.BytesIO(plain)).num_rows)
        real_add(self, plain)

    monkeypatch.setattr(BatchWriter, "add", add)
    with pytest.raises(OSError, match="No space left"):
        _load(monkeypatch, home, [_rows(30, 30 * i) for i in range(4)], store=store)
    assert added == [30] and not store.has("deaths", BATCH)
    assert not (store.dir / "deaths" / ".staging" / BATCH).exists()
    monkeypatch.setattr(BatchWriter, "add", real_add)
    parts = [_rows(30, 30 * i) for i in range(4)]
    _, (_, _, kept, _) = _load(monkeypatch, home, parts, store=store)
    assert kept.store(store, BATCH) == (120, 0)
    _, (_, _, whole, _) = _load(monkeypatch, home, [pa.concat_tables(parts)])
    assert store.read_file("deaths", BATCH).equals(whole.rows())


def test_a_batch_missing_a_file_or_with_files_swapped_does_not_open(home, monkeypatch) -> None:
    monkeypatch.setattr(load, "FILE_ROWS", 10)
    store = Store("death_matching", home=home, keys=KeyStore(home=home))
    _, (_, _, kept, _) = _load(monkeypatch, home, [_rows(30, 30 * i) for i in range(3)], store=store)
    kept.store(store, BATCH)
    folder = store.dir / "deaths" / BATCH
    files = sorted(folder.glob("*.enc"))
    first, last = files[0].read_bytes(), files[-1].read_bytes()
    files[0].write_bytes(files[1].read_bytes())  # another file of the batch in its place
    with pytest.raises(TamperedError):
        store.read_file("deaths", BATCH)
    files[0].write_bytes(first)
    files[-1].unlink()  # the last one dropped: the one before was not sealed as the last
    with pytest.raises(TamperedError):
        store.read_file("deaths", BATCH)
    files[-1].write_bytes(last)
    assert store.read_file("deaths", BATCH).num_rows == 90


def test_a_store_of_one_file_per_batch_reads_as_before_beside_batches_of_several(home, monkeypatch) -> None:
    monkeypatch.setattr(load, "FILE_ROWS", 10)
    store = Store("death_matching", home=home, keys=KeyStore(home=home))
    old = pa.table({"feed": ["f"] * 2, "record_key": ["a", "b"], "received_at": pa.array(
        [1_600_000_000_000_000] * 2, pa.timestamp("us", tz="Etc/UTC"))})
    store.write("deaths", "old", old)  # the layout before: <table>/old.enc
    _, (_, _, kept, _) = _load(monkeypatch, home, [_rows(30, 30 * i) for i in range(3)], store=store)
    kept.store(store, BATCH)
    assert store.names("deaths") == sorted([BATCH, "old"]) and store.has("deaths", "old")
    scan = store.scan("deaths")
    assert scan is not None and scan.parts == [2, 90]  # in the order received
    assert store.read("deaths").num_rows == 92 and store.compact("deaths").rows_after == 92
    assert store.names("deaths")[0].startswith("compacted-") and not (store.dir / "deaths" / BATCH).exists()
    assert store.has("deaths", BATCH) and store.has("deaths", "old")


def test_a_load_past_the_matching_memory_stops_naming_the_batch_and_the_setting(home, monkeypatch) -> None:
    store = Store("death_matching", home=home, keys=KeyStore(home=home))
    parts = [_rows(60_000, 60_000 * i) for i in range(2)]
    monkeypatch.setattr(load, "open_parts", lambda stage, batch, keys: (
        (_manifest(i, len(parts), 120_000), p) for i, p in enumerate(parts, start=1)))
    monkeypatch.setattr(load, "received_at", lambda stage, batch: "2026-01-02T01:00:00+00:00")
    con = load.connect(KeyStore(home=home))
    con.execute("SET memory_limit = '1MB'")
    with pytest.raises(ConfigurationError, match=rf"^{FEED}: batch {BATCH}: loading it needs more memory .*"
                                                 r"FUNDX_MATCHING_MEMORY: ") as caught:
        load.pseudonymise(con, SimpleNamespace(name="death_matching"), BATCH, KeyStore(home=home), store=store)
    assert "1101051949" not in str(caught.value)  # no identity number in the message
    assert not store.has("deaths", BATCH) and not (store.dir / "deaths" / ".staging" / BATCH).exists()
