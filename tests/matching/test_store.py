"""Compacting a stage's store: the same rows in one file, the batches still known as loaded, and a crash at any
step leaves the table whole (never a row twice, never one lost)."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fundx.crypto.keys import KeyStore
from matching.store import INDEX, Store


@pytest.fixture
def store(home) -> Store:
    return Store("death_matching", home=home, keys=KeyStore(home=home))


def _batch(name: str, n: int) -> pa.Table:
    return pa.table({"person": [f"{name}-{i}" for i in range(n)], "batch": [name] * n})


def _rows(store: Store) -> list[str]:
    data = store.read("deaths")
    return sorted(data["person"].to_pylist()) if data is not None else []


def test_compaction_keeps_the_rows_in_one_file_and_the_batches_known(store) -> None:
    for i, n in enumerate((3, 4, 5)):
        store.write("deaths", f"b{i}", _batch(f"b{i}", n))
    before = _rows(store)
    done = store.compact("deaths")
    assert (done.files_before, done.files_after, done.rows_before, done.rows_after) == (3, 1, 12, 12)
    assert _rows(store) == before and len(list((store.dir / "deaths").glob("*.enc"))) == 1
    assert all(store.has("deaths", f"b{i}") for i in range(3)) and not store.has("deaths", "b9")
    store.write("deaths", "b3", _batch("b3", 2))  # a batch loaded after: its own file until the next night
    assert len(_rows(store)) == 14
    gone = store.compact("deaths", lambda t: t.filter(pc.invert(pc.equal(t["batch"], "b0"))))
    assert (gone.files_before, gone.rows_before, gone.rows_after) == (2, 14, 11)
    assert len(_rows(store)) == 11 and store.has("deaths", "b0")  # purged, still known: never loaded again
    assert store.compact("deaths").files_before == 1  # compact already: nothing rewritten
    assert store.compact("deaths", dry_run=True).rows_after == 11


def test_a_crash_at_any_step_of_a_compaction_leaves_the_table_whole(store, monkeypatch) -> None:
    for i in range(3):
        store.write("deaths", f"b{i}", _batch(f"b{i}", 2))
    before = _rows(store)
    # stopped after the new file, before the index: the old files stay the table
    import matching.store as module

    real = module.write_file_atomic

    def crash_on_index(path, data, mode):
        if path.name == INDEX:
            raise OSError("disk full")
        return real(path, data, mode)

    monkeypatch.setattr(module, "write_file_atomic", crash_on_index)
    with pytest.raises(OSError):
        store.compact("deaths")
    monkeypatch.undo()
    assert _rows(store) == before
    # stopped after the index, before the old files went: they are ignored, and removed next time
    monkeypatch.setattr(module.Path, "unlink", lambda self, missing_ok=False: None)
    store.compact("deaths")
    monkeypatch.undo()
    assert len(list((store.dir / "deaths").glob("*.enc"))) > 1 and _rows(store) == before
    store.compact("deaths", lambda t: t)
    assert _rows(store) == before and len(list((store.dir / "deaths").glob("*.enc"))) == 1


# --- one row per key: compaction keeps the latest, matching deduplicates only what came since ---------------


def _versions(name: str, keys: list[int], at: str) -> pa.Table:
    """roll rows (the store's columns the test needs) for entry keys, each saying which batch wrote it."""
    return pa.table({"record_key": [f"E{k}" for k in keys], "status": [name] * len(keys), "batch": [name] * len(keys),
                     "received_at": pa.array([datetime.fromisoformat(at + "+00:00")] * len(keys),
                                            pa.timestamp("us", tz="UTC"))})


def test_compaction_keeps_the_latest_row_per_key_and_reads_it_first(store) -> None:
    store.write("roll", "b1", _versions("b1", [1, 2, 3], "2026-11-01T00:00:00"))
    store.write("roll", "b2", _versions("b2", [2, 4], "2026-11-02T00:00:00"))
    assert store.read_parts("roll")[1] == [3, 2]  # nothing compacted yet: two batches in the order received
    done = store.compact("roll")
    assert (done.rows_before, done.rows_after) == (5, 4)  # entry 2's first version is gone
    store.write("roll", "a0", _versions("a0", [3, 5], "2026-11-03T00:00:00"))  # sorts before "compacted-1"
    table, parts = store.read_parts("roll")
    assert parts == [4, 2] and table is not None
    settled = parts[0]
    head = dict(zip(table["record_key"].to_pylist()[:settled], table["batch"].to_pylist()[:settled]))
    assert head == {"E1": "b1", "E2": "b2", "E3": "b1", "E4": "b2"}
    assert table["batch"].to_pylist()[settled:] == ["a0", "a0"]
    # a table the rules do not read by key is compacted whole
    store.write("notes", "n1", _batch("n1", 2))
    store.write("notes", "n2", _batch("n1", 2))
    assert store.compact("notes").rows_after == 4


@pytest.mark.parametrize("batches", [[2_000], [1_000, 1_000], [1_800, 200], [500, 700, 800], [0, 2_000],
                                     [100, 300, 600, 1_000]])
def test_the_parts_give_the_same_latest_rows_as_the_whole_window(batches) -> None:
    """matching.rules.prepare with Inputs.parts reads exactly the rows the window over the whole table gives, for
    parts that are each one row per key (a compacted head, then batches) whose later ones replace keys of
    earlier ones."""
    import duckdb
    import numpy as np

    from matching import rules

    rng = np.random.default_rng(len(batches))
    keys = np.concatenate([rng.choice(2_500, n, replace=False) for n in batches])  # one per key in each part
    at = np.repeat(np.arange(len(batches)), batches)  # each part received after the one before
    n = len(keys)
    table = pa.table({"record_key": [f"E{k}" for k in keys], "status": [f"v{i}" for i in range(n)],
                      "received_at": pa.array(at * 86_400_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC"))})
    seen = []
    for parts in ([], batches):
        con = duckdb.connect()
        rules.prepare(con, rules.Inputs({"roll": table}, {"roll": parts}), rules.parse_params(None))
        seen.append(sorted(con.sql("SELECT record_key, status FROM roll").fetchall()))
    assert seen[0] == seen[1]
    assert len(seen[0]) == len(set(keys.tolist()))


def test_a_batch_is_stored_one_row_per_key() -> None:
    from matching.sql import one_per_key_in_batch

    rows = pa.table({"feed": ["a", "a", "b", "a"], "record_key": ["1", "2", "1", "1"], "v": [1, 2, 3, 4]})
    kept, dropped = one_per_key_in_batch("deaths", rows)
    assert dropped == 1 and sorted(zip(kept["feed"].to_pylist(), kept["record_key"].to_pylist(),
                                       kept["v"].to_pylist())) == [("a", "1", 4), ("a", "2", 2), ("b", "1", 3)]
    assert one_per_key_in_batch("deaths", rows.slice(0, 3)) == (rows.slice(0, 3), 0)


def test_a_new_stores_key_is_made_once_whichever_thread_seals_first(store, monkeypatch) -> None:
    """The load seals its store files in a thread of its own (matching.load.Kept): a store with no key yet, sealed
    from several threads at once, makes one key, and its files open with the key its key file unwraps to."""
    import threading

    from matching import store as store_module

    made = []
    real = store_module.os.urandom

    def urandom(n: int) -> bytes:
        if n == 32:  # a store key: slow, so that the threads overlap
            made.append(n)
            threading.Event().wait(0.05)
        return real(n)

    monkeypatch.setattr(store_module.os, "urandom", urandom)
    barrier = threading.Barrier(4)
    sealed: list[bytes] = []

    def seal() -> None:
        barrier.wait()
        sealed.append(store._seal(b"rows", b"aad"))

    threads = [threading.Thread(target=seal) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and len(sealed) == 4
    again = Store(store.stage, home=store.home, keys=store.keys)  # the key as its key file gives it
    assert all(again._open(data, b"aad", "file") == b"rows" for data in sealed)
