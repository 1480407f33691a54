"""Compacting a stage's store: the same rows in one file, the batches still known as loaded, and a crash at any
step leaves the table whole (never a row twice, never one lost)."""

from __future__ import annotations

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
