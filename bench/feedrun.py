"""One measured run in a process of its own, so that its peak memory is that run's only.

    python -m bench.feedrun '<json spec>'

The parent (bench/feeds_bench.py) passes the settings through the environment (FUNDX_HOME, the
agency's endpoint, FUNDX_KEYS_DIR, FUNDX_CHUNK_ROWS) and a spec naming the mode; the child prints
one line ``BENCH-RESULT {json}`` last. Modes:

- ``feed``: ``fundx.exchange.run.run_feed(feed, stream=True, end=...)`` — the streamed path — after a warm-up
  (imports, the contract check's first use on a few hundred rows of the same data); returns FeedRun's
  counts, its ``steps`` and the process's peak (VmHWM).
- ``parse``: the baseline pull — each file decoded from GB18030 and read by ``pyarrow.csv`` into pandas
  (death drop), or ``pandas.read_sql`` over the same SQLite view in chunks (bills), file by file or
  chunk by chunk, nothing kept.
- ``checks``: the baseline normalise + validate — the contract's rules as plain vectorised pandas
  (bench.validate_bench.pandas_failures) on the same rows, chunk by chunk, plus uniqueness across
  chunks; only the checks are timed, not the reading.
- ``seal``: the baseline seal — the plainest code doing the seal step's work: the same rows written as
  Parquet by pyarrow (its defaults) chunk by chunk, AES-256-GCM (cryptography's AESGCM) over those bytes
  in 1 MiB chunks, written to a file and fsynced; twice, as the exchange seals every row twice (the
  original for the backup, and the row for its stage or the stewards); reading is not timed.
- ``aesgcm``: AES-256-GCM alone over as many bytes as the feed's seal step sealed, in 1 MiB chunks (for
  the record: the cipher's share of the seal step).
- ``night``: the nightly flow (``flows.exchange.nightly_exchange``) over the night's feeds, against
  sandbox agencies started by a ``sandbox`` child; Prefect's ephemeral server is started before the
  clock starts (a deployment has a server running).
- ``sandbox``: the sandbox agencies serving a night's frames until stdin closes; prints their
  endpoints as JSON first.

Nothing printed carries a record: counts, seconds, bytes and error types only.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

RESULT = "BENCH-RESULT "
READY = "BENCH-SANDBOX "
MIB = 2**20
STEPS = ("pull", "normalise", "validate", "seal", "handoff")


# --- memory --------------------------------------------------------------------------------------


def _status(field: str) -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def vm_hwm() -> int:
    """Peak resident memory of this process since it started or since the last :func:`reset_hwm`."""
    return _status("VmHWM")


def vm_rss() -> int:
    """Resident memory of this process now."""
    return _status("VmRSS")


def reset_hwm() -> bool:
    """Start the peak over from the memory held now (Linux: /proc/self/clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


# --- the data, read plainly (baselines) ------------------------------------------------------------


def window_bounds(start: str | None, end: str | None) -> tuple[datetime, datetime]:
    """The window a first run pulls: the initial watermark (or ``start``) up to ``end``."""
    from fundx.core.settings import get_settings
    from fundx.core.timeutil import aware, now

    return (aware(start) if start else get_settings().initial_watermark), (aware(end) if end else now())


def drop_files(folder: Path, start: datetime, end: datetime) -> list[Path]:
    """The drop's data files whose done-marker arrived in [start, end), oldest first (as the connector takes them)."""
    from fundx.core.timeutil import SHANGHAI

    found = []
    for path in Path(folder).glob("deaths_*.csv"):
        marker = path.with_name(path.name + ".ok")
        if marker.is_file():
            arrived = datetime.fromtimestamp(marker.stat().st_mtime, tz=SHANGHAI)
            if start <= arrived < end:
                found.append((arrived, path.name, path))
    return [p for _, _, p in sorted(found)]


def parse_csv(data: bytes, feed: str) -> Any:
    """One dropped file as a pandas frame of logical columns: decoded (GB18030 or UTF-8, BOM dropped),
    read by pyarrow.csv with every column as text, converted to pandas."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from contracts import load_contract

    gb_bom = "\ufeff".encode("gb18030")
    if data.startswith(gb_bom):
        text = data[len(gb_bom):].decode("gb18030")
    elif data.startswith(b"\xef\xbb\xbf"):
        text = data[3:].decode("utf-8")
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("gb18030")
    payload = text.encode("utf-8")
    header = payload[: payload.find(b"\n")].decode("utf-8").strip().split(",")
    table = pacsv.read_csv(
        io.BytesIO(payload),
        convert_options=pacsv.ConvertOptions(column_types={h: pa.string() for h in header}, strings_can_be_null=True,
                                             null_values=[""]),
    )
    frame = table.to_pandas()
    mapping = load_contract(feed).physical_to_logical
    return frame.rename(columns={h: mapping.get(h, h) for h in frame.columns})


def sql_query(feed: str, start: datetime, end: datetime) -> tuple[str, tuple[str, str]]:
    """The connector's query as plain SQL text for SQLite: contract columns, window, order."""
    from connectors import load_feed
    from connectors.database import sqlite_time
    from contracts import load_contract

    config = load_feed(feed).database
    contract = load_contract(feed)
    assert config is not None
    picked = ", ".join(f'"{c.physical_name}" AS "{c.name}"' for c in contract.columns)
    incremental = contract.column(config.incremental_column).physical_name
    order = ", ".join(f'"{contract.column(n).physical_name}"' for n in config.order_by)
    sql = (f'SELECT {picked} FROM "{config.relation}" WHERE "{incremental}" >= ? AND "{incremental}" < ? '
           f"ORDER BY {order}")
    return sql, (sqlite_time(start), sqlite_time(end))


def sql_chunks(feed: str, db_path: Path, start: datetime, end: datetime, chunk_rows: int = 50_000) -> Iterator[Any]:
    """The same view read by plain pandas.read_sql over sqlite3, ``chunk_rows`` rows at a time."""
    import sqlite3

    import pandas as pd

    sql, params = sql_query(feed, start, end)
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        yield from pd.read_sql(sql, conn, params=params, chunksize=chunk_rows)
    finally:
        conn.close()


def frames(feed: str, source: Path, start: datetime, end: datetime, chunk_rows: int = 50_000,
           timer: list[float] | None = None) -> Iterator[Any]:
    """The feed's rows as plain frames, file by file (drop) or chunk by chunk (database); the time spent
    reading and parsing is added to ``timer[0]`` when given."""
    clock = timer if timer is not None else [0.0]
    if Path(source).is_dir():
        for path in drop_files(Path(source), start, end):
            began = time.perf_counter()
            frame = parse_csv(path.read_bytes(), feed)
            clock[0] += time.perf_counter() - began
            yield frame
    else:
        reader = sql_chunks(feed, Path(source), start, end, chunk_rows)
        while True:
            began = time.perf_counter()
            frame = next(reader, None)
            clock[0] += time.perf_counter() - began
            if frame is None:
                return
            yield frame


def baseline_parse(feed: str, source: Path, start: datetime, end: datetime) -> dict[str, Any]:
    """Seconds to read and parse every row plainly (pyarrow.csv / pandas.read_sql), nothing kept."""
    timer = [0.0]
    rows = chunks = 0
    for frame in frames(feed, source, start, end, timer=timer):
        rows += len(frame)
        chunks += 1
        del frame
    return {"what": "pyarrow.csv" if Path(source).is_dir() else "pandas.read_sql", "seconds": timer[0],
            "rows": rows, "chunks": chunks}


def baseline_checks(feed: str, source: Path, start: datetime, end: datetime, today: date | None = None) -> dict[str, Any]:
    """Seconds the contract's rules take as plain vectorised pandas on the same rows (normalisation included),
    chunk by chunk, and uniqueness across chunks; reading is not timed."""
    import numpy as np
    import pandas as pd

    from bench.validate_bench import pandas_failures
    from contracts import load_contract
    from contracts.rules import contract_rules
    from fundx.core.timeutil import SHANGHAI

    today = today or datetime.now(SHANGHAI).date()
    unique = [r.columns[0] for r in contract_rules(load_contract(feed)).row_rules if r.kind == "unique"]
    seconds = 0.0
    rows = failed = chunks = 0
    hashes: dict[str, list[np.ndarray]] = {c: [] for c in unique}
    warmed = False
    for frame in frames(feed, source, start, end):
        if not warmed:  # the contract's loading and first use are not the rows' cost
            pandas_failures(frame.head(500), today, feed=feed)
            warmed = True
        began = time.perf_counter()
        failed += len(pandas_failures(frame, today, feed=feed))
        for c in unique:
            values = frame[c]
            hashes[c].append(pd.util.hash_array(values.to_numpy(dtype=object, na_value=None))[values.notna().to_numpy()])
        seconds += time.perf_counter() - began
        rows += len(frame)
        chunks += 1
    began = time.perf_counter()
    across = 0
    for parts in hashes.values():
        if parts:
            _, counts = np.unique(np.concatenate(parts), return_counts=True)
            across += int(counts[counts > 1].sum())
    seconds += time.perf_counter() - began
    return {"what": "pandas checks", "seconds": seconds, "rows": rows, "failed": failed, "chunks": chunks,
            "repeated_across_chunks": across}


def baseline_aesgcm(nbytes: int, chunk: int = MIB) -> dict[str, Any]:
    """Seconds AES-256-GCM takes over ``nbytes`` bytes fed 1 MiB at a time."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aes = AESGCM(AESGCM.generate_key(bit_length=256))
    buffer = os.urandom(chunk)
    view = memoryview(buffer)
    aes.encrypt(b"\0" * 12, view[:4096], None)  # first use
    began = time.perf_counter()
    done = 0
    number = 0
    while done < nbytes:
        size = min(chunk, nbytes - done)
        number += 1
        aes.encrypt(number.to_bytes(12, "big"), view[:size], None)
        done += size
    return {"what": "AESGCM, 1 MiB chunks", "seconds": time.perf_counter() - began, "bytes": nbytes, "chunks": number}


def baseline_seal(feed: str, source: Path, start: datetime, end: datetime, chunk: int = MIB,
                  copies: int = 2) -> dict[str, Any]:
    """Seconds the plainest code takes to do the seal step's work on the same rows: each chunk written as
    Parquet (pyarrow's defaults), encrypted with AES-256-GCM in 1 MiB chunks and written to a file made
    durable (fsync) — ``copies`` times, as the exchange seals every pulled row twice: once as the original
    for the backup (seeds/004) and once for its recipient (the stage, or the stewards' quarantine). Reading
    is not timed."""
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aes = AESGCM(AESGCM.generate_key(bit_length=256))
    aes.encrypt(b"\0" * 12, b"first use", None)
    seconds = 0.0
    nbytes = rows = number = 0
    with tempfile.TemporaryDirectory() as folder:
        for frame in frames(feed, source, start, end):
            began = time.perf_counter()
            for copy in range(copies):
                sink = io.BytesIO()
                pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
                view = sink.getbuffer()
                with open(Path(folder) / f"part-{number}-{copy}", "wb") as out:
                    for at in range(0, len(view), chunk):
                        number += 1
                        out.write(aes.encrypt(number.to_bytes(12, "big"), view[at:at + chunk], None))
                    out.flush()
                    os.fsync(out.fileno())
                nbytes += len(view)
                del view
            seconds += time.perf_counter() - began
            rows += len(frame)
    return {"what": f"Parquet+AESGCM+file x{copies}", "seconds": seconds, "bytes": nbytes, "rows": rows,
            "chunks": number}


def sample_frame(feed: str, source: Path, start: datetime, end: datetime, rows: int = 500) -> Any:
    """A few hundred rows of the same data, as the connector names them (for warm-ups): the first lines of
    the first files (a newline byte never sits inside a GB18030 character), or the view's first chunk."""
    import pandas as pd

    taken, count = [], 0
    if Path(source).is_dir():
        for path in drop_files(Path(source), start, end):
            with path.open("rb") as f:
                head = f.read(256 * 1024)
            head = head[: head.rfind(b"\n") + 1]
            taken.append(parse_csv(head, feed).head(rows - count))
            count += len(taken[-1])
            if count >= rows:
                break
    else:
        taken = [next(sql_chunks(feed, Path(source), start, end, rows), None)]
        taken = [t for t in taken if t is not None]
    return pd.concat(taken, ignore_index=True) if taken else None


# --- modes -----------------------------------------------------------------------------------------


def _feed(spec: dict) -> dict[str, Any]:
    from fundx.core.settings import reload_settings

    reload_settings()
    feed = spec["feed"]
    start, end = window_bounds(None, spec.get("end"))
    began = time.perf_counter()
    from fundx.exchange.run import run_feed

    if spec.get("warm", True):
        from contracts.validate import check

        sample = sample_frame(feed, Path(spec["source"]), start, end)
        if sample is not None:
            check(feed, sample)
    from fundx.exchange.runners import runner_from_settings

    runner = runner_from_settings()
    if spec.get("warm", True) and hasattr(runner, "warm"):
        runner.warm()  # a process pool's workers import the check once, as a night's first feed has them do
    warmup = time.perf_counter() - began
    before = vm_hwm()
    rss_before = vm_rss()
    began = time.perf_counter()
    done = run_feed(feed, stream=True, end=spec.get("end"), runner=runner)
    wall = time.perf_counter() - began
    workers = runner.worker_peaks() if hasattr(runner, "worker_peaks") else []
    steps = {name: dict(values) for name, values in (getattr(done, "steps", None) or {}).items()}
    peaks = [int(s.get("peak_rss_bytes") or 0) for s in steps.values()]
    handoff = done.handoff
    return {
        "feed": feed, "rows": done.rows, "valid": done.valid, "quarantined": done.quarantined,
        "outcome": handoff.outcome, "parts": handoff.parts, "sealed_bytes": handoff.sealed_bytes,
        "steps": steps, "wall_s": wall, "warmup_s": warmup, "rss_before_bytes": rss_before,
        "warmup_peak_bytes": before, "run_peak_bytes": max([*peaks, vm_hwm()]),
        "peak_bytes": max([before, *peaks, vm_hwm()]),
        # a process pool's workers: their peaks too (memory the run needs beside this process's)
        "worker_peak_bytes": workers, "peak_with_workers_bytes": max([before, *peaks, vm_hwm()]) + sum(workers),
        "chunk_rows": _chunk_rows(), "runner": os.environ.get("FUNDX_TASK_RUNNER") or "local",
    }


def _chunk_rows() -> int | None:
    """The streamed path's chunk (FUNDX_CHUNK_ROWS or its default)."""
    from fundx.core.settings import get_settings

    return getattr(get_settings(), "chunk_rows", None)


def _parse(spec: dict) -> dict[str, Any]:
    start, end = window_bounds(None, spec.get("end"))
    return baseline_parse(spec["feed"], Path(spec["source"]), start, end)


def _checks(spec: dict) -> dict[str, Any]:
    start, end = window_bounds(None, spec.get("end"))
    return baseline_checks(spec["feed"], Path(spec["source"]), start, end)


def _aesgcm(spec: dict) -> dict[str, Any]:
    return baseline_aesgcm(int(spec["bytes"]))


def _seal(spec: dict) -> dict[str, Any]:
    start, end = window_bounds(None, spec.get("end"))
    return baseline_seal(spec["feed"], Path(spec["source"]), start, end)


def _night(spec: dict) -> dict[str, Any]:
    """The nightly flow over the night's feeds, each streamed or not as its config says; seconds from the
    flow's call to its end."""
    from fundx.core.settings import reload_settings

    reload_settings()
    began = time.perf_counter()
    from prefect import flow

    @flow(name="bench-warm-up", persist_result=False)
    def warm_up() -> int:
        return 1

    warm_up()  # starts Prefect's ephemeral server: a deployment has its server running already
    from flows.exchange import nightly_exchange
    from fundx.core.errors import NightFailed
    from fundx.ledger import Ledger

    warmup = time.perf_counter() - began
    kwargs: dict[str, Any] = {"feeds": list(spec["feeds"]), "end": spec.get("end")}
    began = time.perf_counter()
    error = None
    try:
        nightly_exchange(**kwargs)
    except NightFailed as exc:
        error = type(exc).__name__
    wall = time.perf_counter() - began
    feeds = _night_feeds(Ledger.from_settings())
    return {"wall_s": wall, "warmup_s": warmup, "error": error, "feeds": feeds, "peak_bytes": vm_hwm(),
            "chunk_rows": _chunk_rows(), "runner": os.environ.get("FUNDX_TASK_RUNNER") or "local"}


def _night_feeds(ledger: Any) -> list[dict[str, Any]]:
    """Each feed of the last run: outcome, rows, seconds from its start to its record, of which pulling."""
    import sqlalchemy as sa

    from fundx.ledger.schema import pulls

    run_id = ledger.last_runs(1)[0]["id"]
    with ledger.engine.connect() as conn:
        found = conn.execute(sa.select(pulls).where(pulls.c.run_id == run_id).order_by(pulls.c.id)).mappings().all()
    from connectors import load_feed

    return [{"feed": p["feed"], "outcome": p["outcome"], "rows": p["rows"] or 0,
             "streamed": bool(load_feed(p["feed"]).stream),
             "seconds": round((p["ended_at"] - p["started_at"]).total_seconds(), 2),
             "pull_s": round(p["duration_s"], 2), "error_type": p["error_type"]} for p in found]


def _sandbox(spec: dict) -> None:
    """Serve a night's frames from the sandbox agencies until stdin closes; print their endpoints first."""
    import dataclasses

    import pandas as pd

    from sandbox.agencies import Sandbox
    from sandbox.city import generate_city

    began = time.perf_counter()
    small = generate_city(people=int(spec.get("people", 1000)), seed=int(spec["seed"]))
    feeds = dict(small.feeds)
    for name, path in spec["frames"].items():
        feeds[name] = pd.read_parquet(path)
    city = dataclasses.replace(small, feeds=feeds, truths={})
    with Sandbox(Path(spec["home"]), city=city) as sandbox:
        env = dict(sandbox.env)
        env.update(spec.get("override") or {})  # e.g. the bills database of the night's size
        print(READY + json.dumps({"env": env, "seconds": time.perf_counter() - began}), flush=True)
        sys.stdin.read()  # until the parent closes it


MODES = {"feed": _feed, "parse": _parse, "checks": _checks, "seal": _seal, "aesgcm": _aesgcm, "night": _night}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__)
        return 2
    spec = json.loads(args[0])
    if spec["mode"] == "sandbox":
        _sandbox(spec)
        return 0
    result = MODES[spec["mode"]](spec)
    result.setdefault("peak_bytes", vm_hwm())
    print(RESULT + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
