"""Scale data for the feed benchmarks, generated in bounded memory and cached under bench/data/.

Three kinds, each made chunk by chunk from :func:`sandbox.city.generate_feed` (valid identity
numbers, the usual messiness and about 1 % planted invalid rows per chunk, as the sandbox makes them)
and written exactly as the sandbox agencies write them, through their own code:

- ``deaths``: N religious-affairs death records as the bureau's monthly drop — one GB18030 CSV per
  month of registration (every other one with a BOM, CRLF) and its done-marker ``<file>.ok`` with
  ``rows=`` and ``sha256=``, file and marker stamped with the delivery time. Each chunk is planned
  and encoded by :class:`sandbox.drops.ReligiousDrop`; its rows are appended to the month's file, the
  header written once, the SHA-256 kept running. Markers are written last, as an agency would.
- ``bills``: N settled bills in the medical security bureau's SQLite database — its table
  ``setl_info`` with the bureau's column names, the index on settlement time and the view
  ``v_settled_bills`` the exchange reads (:class:`sandbox.medical_db.MedicalDB` converts each chunk
  and creates the view), inserted chunk by chunk with executemany inside one transaction.
- ``night``: the frames of a city-scale night (three death feeds, prisoners, businesses) as Parquet
  for the sandbox agencies to serve, plus a ``bills`` database of the night's size.

A dataset lives in ``bench/data/<kind>-<rows>-s<seed>-<version>/`` (``FUNDX_BENCH_DATA`` moves the
folder) and counts as made once its ``dataset.json`` is there; ``version`` digests the generator's and
this module's sources, so changing either makes fresh data. Personal data here is synthetic, but
it is plain text: bench/data/ stays out of git (.gitignore).

    python -m bench.scale_data deaths|bills ROWS [--seed S] [--chunk-rows N]
    python -m bench.scale_data night [--deaths N] [--prisoners N] [--bills N] [--businesses N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEATHS = "religious_affairs.deaths"
BILLS = "medical_insurance.bills"
#: the night's feeds whose frames the sandbox agencies serve from memory (bills come from a database)
NIGHT_FRAMES = ("civil_affairs.deaths", "police.deaths", "religious_affairs.deaths", "justice.prisoners",
                "market_regulation.businesses")
NIGHT_FEEDS = (*NIGHT_FRAMES[:4], BILLS, NIGHT_FRAMES[4])
#: a city-scale night: three death sources, prisoners, a night's bills, the business registry
CITY_NIGHT = {"civil_affairs.deaths": 50_000, "police.deaths": 50_000, "religious_affairs.deaths": 50_000,
              "justice.prisoners": 20_000, BILLS: 2_000_000, "market_regulation.businesses": 100_000}
MANIFEST = "dataset.json"
RESULT = "BENCH-RESULT "
_SOURCES = (*sorted(f"sandbox/city/{p.name}" for p in (ROOT / "sandbox" / "city").glob("*.py")),
            "sandbox/drops.py", "sandbox/medical_db.py", "sandbox/schema.py",
            "fundx/core/identity.py", "fundx/core/idcolumns.py", "fundx/core/areacodes.py", "fundx/core/creditcodes.py")
#: raise when this module writes different bytes or a different layout (the sandbox's sources are digested)
LAYOUT = 1


def data_dir() -> Path:
    """Where datasets are cached: FUNDX_BENCH_DATA, else bench/data/ in this checkout."""
    return Path(os.environ.get("FUNDX_BENCH_DATA") or ROOT / "bench" / "data").resolve()


def version() -> str:
    """A short digest of the sandbox sources that decide the data's bytes and of :data:`LAYOUT`: new sources, new data."""
    digest = hashlib.sha256(f"layout {LAYOUT}".encode())
    for name in _SOURCES:
        path = ROOT / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b""))
    return digest.hexdigest()[:10]


@dataclass
class Dataset:
    """One generated dataset: where it is, its rows, and what making it cost (never measured as a step)."""

    kind: str
    rows: int
    seed: int
    path: str  # the drop folder, the SQLite file, or the night's folder
    version: str
    chunk_rows: int
    chunks: int = 0
    max_chunk_rows: int = 0  # the largest chunk held in memory at once
    bytes: int = 0
    files: int = 0
    generated_s: float = 0.0
    generation_peak_bytes: int | None = None  # the generating process's VmHWM (when made in a child)
    cached: bool = False  # this call found it made
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of a bills database."""
        return f"sqlite:///{self.path}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _folder(kind: str, rows: int, seed: int, root: Path | None) -> Path:
    return _ignored(root or data_dir()) / f"{kind}-{rows}-s{seed}-{version()}"


def _ignored(root: Path) -> Path:
    """The data folder, with a .gitignore of its own so that gigabytes of generated rows never reach git."""
    root.mkdir(parents=True, exist_ok=True)
    marker = root / ".gitignore"
    if not marker.exists():
        marker.write_text("# generated benchmark data (bench/scale_data.py): never committed\n*\n", encoding="ascii")
    return root


def _load(folder: Path) -> Dataset | None:
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return None
    found = Dataset(**json.loads(manifest.read_text(encoding="utf-8")))
    found.cached = True
    return found


def _prune(folder: Path) -> None:
    """Remove older versions (and half-made copies) of the same kind, rows and seed."""
    stem = folder.name.rsplit("-", 1)[0] + "-"
    if not folder.parent.is_dir():
        return
    for other in folder.parent.iterdir():
        if other.is_dir() and other.name.startswith(stem) and other != folder:
            shutil.rmtree(other, ignore_errors=True)


def _finish(folder: Path, found: Dataset) -> Dataset:
    (folder / MANIFEST).write_text(json.dumps(found.as_dict(), indent=1), encoding="utf-8")
    return found


# --- deaths: the religious-affairs monthly drop -----------------------------------------------------


def build_deaths(rows: int, *, seed: int | None = None, chunk_rows: int = 500_000, root: Path | None = None,
                 as_of: date | None = None, now: datetime | None = None) -> Dataset:
    """Write ``rows`` death records as the religious-affairs drop, one generated chunk at a time."""
    from sandbox.city import DEFAULT_AS_OF, DEFAULT_SEED, generate_feed
    from sandbox.drops import DONE_SUFFIX, GB18030_BOM, ReligiousDrop
    from sandbox.faults import FaultState

    seed = DEFAULT_SEED if seed is None else seed
    as_of = as_of or DEFAULT_AS_OF
    home = _folder("deaths", rows, seed, root)
    _prune(home)
    shutil.rmtree(home, ignore_errors=True)
    drop_dir = home / "drops" / "religious_affairs"
    drop_dir.mkdir(parents=True)
    began = time.perf_counter()
    faults = FaultState("religious_affairs")
    from fundx.core.timeutil import SHANGHAI

    now = now or datetime.now(SHANGHAI)  # one delivery time for the month still open, whatever the chunk
    files: dict[str, dict[str, Any]] = {}
    chunks = biggest = 0
    for chunk in generate_feed(DEATHS, rows, seed=seed, as_of=as_of, chunk_rows=chunk_rows):
        chunks += 1
        biggest = max(biggest, len(chunk))
        drop = ReligiousDrop(drop_dir, chunk, as_of, faults, now)
        headers = [drop.schema.headers[c] for c in drop.schema.columns]
        for planned in drop.files:
            data = drop.encode(planned, headers)
            if planned.bom:
                data = data[len(GB18030_BOM):]
            head, sep, body = data.partition(b"\r\n")
            if head.decode("gb18030") != ",".join(headers):  # the header line is one line: split there
                raise RuntimeError(f"{planned.name}: unexpected CSV header from the sandbox's encoder")
            state = files.get(planned.name)
            path = drop_dir / planned.name
            if state is None:
                prefix = (GB18030_BOM if planned.bom else b"") + head + sep
                path.write_bytes(prefix)
                state = files[planned.name] = {"sha": hashlib.sha256(prefix), "rows": 0,
                                               "delivered_at": planned.delivered_at, "bytes": len(prefix)}
            elif state["delivered_at"] != planned.delivered_at:
                raise RuntimeError(f"{planned.name}: two delivery times across chunks")
            with path.open("ab") as out:
                out.write(body)
            state["sha"].update(body)
            state["rows"] += len(planned.rows)
            state["bytes"] += len(body)
        del chunk, drop
    for name, state in sorted(files.items()):  # the markers last: then a file counts as delivered
        path = drop_dir / name
        marker = drop_dir / (name + DONE_SUFFIX)
        marker.write_text(f"rows={state['rows']}\nsha256={state['sha'].hexdigest()}\n", encoding="ascii")
        stamp = int(state["delivered_at"].timestamp() * 1e9)
        os.utime(path, ns=(stamp, stamp))
        os.utime(marker, ns=(stamp, stamp))
    found = Dataset("deaths", rows, seed, str(drop_dir), version(), chunk_rows, chunks, biggest,
                    sum(s["bytes"] for s in files.values()), len(files), round(time.perf_counter() - began, 2),
                    extra={"feed": DEATHS, "as_of": as_of.isoformat(), "delivered_by": now.isoformat(),
                           "file_rows": {n: s["rows"] for n, s in sorted(files.items())}})
    return _finish(home, found)


# --- bills: the medical security bureau's settlement database ----------------------------------------


def build_bills(rows: int, *, seed: int | None = None, chunk_rows: int = 250_000, root: Path | None = None,
                as_of: date | None = None) -> Dataset:
    """Load ``rows`` settled bills into the bureau's SQLite table and view, one generated chunk at a time."""
    from sandbox.city import DEFAULT_AS_OF, DEFAULT_SEED, generate_feed
    from sandbox.faults import FaultState
    from sandbox.medical_db import COLUMNS, TABLE, MedicalDB

    seed = DEFAULT_SEED if seed is None else seed
    as_of = as_of or DEFAULT_AS_OF
    home = _folder("bills", rows, seed, root)
    _prune(home)
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    began = time.perf_counter()
    faults = FaultState("medical_insurance")
    db: MedicalDB | None = None
    columns = ", ".join(f"{bureau} {lite}" for bureau, lite, _ in COLUMNS.values())
    insert = f"INSERT INTO {TABLE} VALUES ({', '.join('?' * len(COLUMNS))})"
    path = home / "medical_insurance" / "settlement.db"
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path, isolation_level=None)
    chunks = biggest = 0
    try:
        conn.execute("PRAGMA journal_mode=WAL")  # as the sandbox's database
        conn.execute("BEGIN")
        conn.execute(f"CREATE TABLE {TABLE} ({columns})")
        for chunk in generate_feed(BILLS, rows, seed=seed, as_of=as_of, chunk_rows=chunk_rows):
            chunks += 1
            biggest = max(biggest, len(chunk))
            db = MedicalDB(home, chunk, faults)  # its path is home/medical_insurance/settlement.db
            bureau = db._bureau_frame(local_text=True)  # the sandbox's own conversion, not a copy of it
            conn.executemany(insert, bureau.itertuples(index=False, name=None))
            del chunk, bureau
        conn.execute(f"CREATE INDEX ix_{TABLE}_setl_time ON {TABLE} (setl_time, setl_id)")
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        count = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
    finally:
        conn.close()
    if db is None:
        raise ValueError("no bills generated (rows must be at least 1)")
    db.arm()  # the view v_settled_bills, as the sandbox creates it
    db.engine.dispose()
    if count != rows:
        raise RuntimeError(f"bills: {count} rows in {TABLE}, {rows} generated")
    found = Dataset("bills", rows, seed, str(path), version(), chunk_rows, chunks, biggest, path.stat().st_size, 1,
                    round(time.perf_counter() - began, 2), extra={"feed": BILLS, "as_of": as_of.isoformat()})
    return _finish(home, found)


# --- the city-scale night -------------------------------------------------------------------------


def build_night(sizes: dict[str, int], *, seed: int | None = None, root: Path | None = None,
                as_of: date | None = None) -> Dataset:
    """Parquet frames of the night's feeds the agencies serve from memory (bills: see :func:`ensure_bills`)."""
    import pandas as pd

    from sandbox.city import DEFAULT_AS_OF, DEFAULT_SEED, generate_feed

    seed = DEFAULT_SEED if seed is None else seed
    as_of = as_of or DEFAULT_AS_OF
    frames = {f: int(sizes[f]) for f in NIGHT_FRAMES}
    home = _night_folder(frames, seed, root)
    _prune(home)
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    began = time.perf_counter()
    total = 0
    for feed, n in frames.items():
        # one chunk per feed: these are city sizes (at most a few hundred thousand rows)
        frame = pd.concat(list(generate_feed(feed, n, seed=seed, as_of=as_of, chunk_rows=max(n, 1))), ignore_index=True)
        frame.to_parquet(home / f"{feed}.parquet", index=False)
        total += (home / f"{feed}.parquet").stat().st_size
    found = Dataset("night", sum(frames.values()), seed, str(home), version(), max(frames.values()), len(frames),
                    max(frames.values()), total, len(frames), round(time.perf_counter() - began, 2),
                    extra={"frames": frames, "as_of": as_of.isoformat()})
    return _finish(home, found)


def night_sizes(deaths: int, prisoners: int, bills: int, businesses: int) -> dict[str, int]:
    """A night's rows per feed: ``deaths`` for each of the three death sources."""
    return {"civil_affairs.deaths": deaths, "police.deaths": deaths, "religious_affairs.deaths": deaths,
            "justice.prisoners": prisoners, BILLS: bills, "market_regulation.businesses": businesses}


def _night_folder(frames: dict[str, int], seed: int, root: Path | None) -> Path:
    key = hashlib.sha256(json.dumps(frames, sort_keys=True).encode()).hexdigest()[:8]
    return _ignored(root or data_dir()) / f"night-{key}-s{seed}-{version()}"


# --- cached, made in a child process --------------------------------------------------------------


def ensure(kind: str, rows: int = 0, *, seed: int | None = None, chunk_rows: int | None = None,
           sizes: dict[str, int] | None = None, root: Path | None = None, quiet: bool = False) -> Dataset:
    """The dataset, from the cache or made now in a child process (its peak memory recorded)."""
    from sandbox.city import DEFAULT_SEED

    seed = DEFAULT_SEED if seed is None else seed
    if kind == "night":
        folder = _night_folder({f: int((sizes or CITY_NIGHT)[f]) for f in NIGHT_FRAMES}, seed, root)
    else:
        folder = _folder(kind, rows, seed, root)
    found = _load(folder)
    if found is not None:
        return found
    if not quiet:
        what = f"{rows:,} rows" if kind != "night" else "the night's frames"
        print(f"  generating {kind}: {what} (cached for later runs under {folder.parent}) ...", flush=True)
    spec = {"kind": kind, "rows": rows, "seed": seed, "chunk_rows": chunk_rows, "sizes": sizes,
            "root": str(root) if root else None}
    done = subprocess.run([sys.executable, "-m", "bench.scale_data", "--child", json.dumps(spec)], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"generating {kind} failed:\n{done.stderr[-3000:]}")
    result = _result(done.stdout)
    made = Dataset(**result["dataset"])
    made.generation_peak_bytes = result["peak_bytes"]
    _finish(folder, made)  # again, now with the generating process's peak
    return made


def _result(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
    raise RuntimeError("the child process printed no result")


def vm_hwm() -> int:
    """This process's peak resident memory (VmHWM) in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _child(spec: dict) -> dict:
    root = Path(spec["root"]) if spec.get("root") else None
    options: dict[str, Any] = {"seed": spec["seed"], "root": root}
    if spec.get("chunk_rows"):
        options["chunk_rows"] = spec["chunk_rows"]
    if spec["kind"] == "deaths":
        made = build_deaths(spec["rows"], **options)
    elif spec["kind"] == "bills":
        made = build_bills(spec["rows"], **options)
    elif spec["kind"] == "night":
        options.pop("chunk_rows", None)
        made = build_night(spec.get("sizes") or CITY_NIGHT, **options)
    else:
        raise ValueError(spec["kind"])
    return {"dataset": made.as_dict(), "peak_bytes": vm_hwm()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_data", description=__doc__.splitlines()[0])
    parser.add_argument("kind", nargs="?", choices=("deaths", "bills", "night"))
    parser.add_argument("rows", nargs="?", type=int, default=0)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--chunk-rows", type=int)
    parser.add_argument("--deaths", type=int, default=50_000, help="night: rows of each death source")
    parser.add_argument("--prisoners", type=int, default=CITY_NIGHT["justice.prisoners"], help="night: prisoners")
    parser.add_argument("--bills", type=int, default=CITY_NIGHT[BILLS], help="night: bills (a database of its own)")
    parser.add_argument("--businesses", type=int, default=CITY_NIGHT["market_regulation.businesses"],
                        help="night: businesses")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(RESULT + json.dumps(_child(json.loads(args.child))), flush=True)
        return 0
    if args.kind is None:
        parser.error("name a kind: deaths, bills or night")
    sizes = None
    if args.kind == "night":
        sizes = night_sizes(args.deaths, args.prisoners, args.bills, args.businesses)
        ensure("bills", sizes[BILLS], seed=args.seed)
    made = ensure(args.kind, args.rows, seed=args.seed, chunk_rows=args.chunk_rows, sizes=sizes)
    print(json.dumps(made.as_dict(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
