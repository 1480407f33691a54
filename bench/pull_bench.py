"""Pull speed per transport for a large death feed, against pandas + pyarrow parsing the same bytes.

Each transport's pull (sandbox agency on loopback -> connector -> deduplicated frame with a digest)
is timed next to a baseline measured in the same run on the same rows:
- REST (cursor, page/size): pyarrow.json parsing the same records as newline-delimited JSON;
- file drop (CSV, GB18030): decoding the same files and pandas.read_csv(engine="pyarrow");
- database view: pandas.read_sql of the same query with the pyarrow dtype backend.
The database transport serves the medical-insurance bills (the one database feed).
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from pathlib import Path

import orjson
import pandas as pd
import pyarrow.json as pajson

FEEDS = {
    "civil_affairs.deaths": "REST, cursor paging",
    "police.deaths": "REST, page/size paging",
    "religious_affairs.deaths": "file drop, CSV GB18030",
    "medical_insurance.bills": "database view (SQLite)",
}


def _city(rows: int):
    from sandbox.city import DEFAULT_AS_OF, DEFAULT_SEED, City, generate_city, generate_feed

    small = generate_city(people=200)
    feeds = dict(small.feeds)
    for feed in FEEDS:
        feeds[feed] = pd.concat(list(generate_feed(feed, rows)), ignore_index=True)
    return City(seed=DEFAULT_SEED, people=small.people, as_of=DEFAULT_AS_OF, roll=small.roll, feeds=feeds, truths={})


def _timed(call):
    began = time.perf_counter()
    result = call()
    return time.perf_counter() - began, result


def _baseline(feed: str, frame: pd.DataFrame, sandbox) -> float:
    if feed in ("civil_affairs.deaths", "police.deaths"):
        ndjson = b"\n".join(orjson.dumps(r) for r in frame.astype(object).where(frame.notna(), None).to_dict("records"))
        seconds, _ = _timed(lambda: pajson.read_json(io.BytesIO(ndjson)).to_pandas())
        return seconds
    if feed == "religious_affairs.deaths":
        drop = Path(sandbox.env["FUNDX_RELIGIOUS_AFFAIRS_DROP"])
        blobs = [p.read_bytes() for p in sorted(drop.glob("deaths_*.csv"))]

        def parse():
            return [pd.read_csv(io.BytesIO(b.decode("gb18030").encode("utf-8")), engine="pyarrow", dtype=str) for b in blobs]

        seconds, _ = _timed(parse)
        return seconds
    import sqlalchemy as sa

    engine = sa.create_engine(sandbox.env["FUNDX_MEDICAL_INSURANCE_DB_URL"])
    seconds, _ = _timed(lambda: pd.read_sql("SELECT * FROM v_settled_bills ORDER BY settled_at, bill_id", engine, dtype_backend="pyarrow"))
    engine.dispose()
    return seconds


def run(rows: int = 1_000_000) -> list[dict]:
    """Pull each transport's feed of ``rows`` rows; return one result per transport."""
    from connectors import connector_for
    from fundx.core.settings import reload_settings
    from fundx.core.timeutil import Window, aware
    from sandbox.agencies import Sandbox

    results = []
    with tempfile.TemporaryDirectory(prefix="fundx-bench-") as tmp:
        print(f"generating {rows:,} rows per feed ...", flush=True)
        city = _city(rows)
        with Sandbox(Path(tmp) / "agencies", city=city) as sandbox:
            os.environ.update(sandbox.env)
            reload_settings()
            window = Window(aware("2020-01-01"), aware(city.as_of))
            for feed, transport in FEEDS.items():
                pull_s, pulled = _timed(lambda feed=feed: connector_for(feed).extract(window))
                expected = len(sandbox.expected(feed, window.start, window.end))
                if pulled.rows != expected:
                    raise SystemExit(f"{feed}: pulled {pulled.rows} rows, the agency holds {expected}")
                base_s = _baseline(feed, city.feeds[feed], sandbox)
                results.append({
                    "feed": feed, "transport": transport, "rows": pulled.rows, "bytes": pulled.bytes,
                    "pages": pulled.pages, "pull_s": round(pull_s, 3), "rows_per_s": round(pulled.rows / pull_s),
                    "baseline_s": round(base_s, 3), "ratio": round(pull_s / base_s, 2),
                })
                print(f"  {feed:28} {transport:26} pull {pull_s:7.2f} s  baseline {base_s:6.2f} s  ratio {pull_s / base_s:5.1f}", flush=True)
    return results
