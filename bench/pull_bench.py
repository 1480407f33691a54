"""Pull speed per transport for a large death feed, against pandas + pyarrow parsing the same bytes.

Each transport's pull (sandbox agency on loopback -> connector -> deduplicated frame with a digest)
is timed next to a baseline measured in the same run on the same rows:
- REST (cursor, page/size): pyarrow.json parsing the same records as newline-delimited JSON, and the plainest
  client of the same API (requests in a loop, Retry-After honoured, orjson, one pyarrow table): a rate-limited
  agency hands its pages out no faster to anyone, so that client is the pull's honest baseline;
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


def _plain_http(feed: str, window) -> tuple[float, int]:
    """The plainest client of the same REST API, timed: requests in a loop over the same pages (same size, same
    window, the same credentials), a 429 answered by sleeping its Retry-After, each page parsed by orjson, the
    records made one pyarrow table. For a rate-limited agency this, not parsing bytes already at hand, is what the
    pull can be held to: no client gets the pages faster than the agency hands them out. (seconds, rows)"""
    import pyarrow as pa
    import requests

    env = os.environ
    start, end = window.start.isoformat(), window.end.isoformat()
    records: list[dict] = []
    began = time.perf_counter()
    with requests.Session() as http:
        def get(url: str, **params: str) -> dict:
            while True:
                answer = http.get(url, params=params, timeout=30)
                if answer.status_code == 429:
                    time.sleep(float(answer.headers.get("Retry-After", "1")))
                    continue
                answer.raise_for_status()
                return orjson.loads(answer.content)

        if feed == "police.deaths":
            base = env["FUNDX_POLICE_URL"]
            while True:
                token = http.post(base + "/oauth2/token", data={"grant_type": "client_credentials", "scope": "hukou.read"},
                                  auth=(env["FUNDX_POLICE_CLIENT_ID"], env["FUNDX_POLICE_CLIENT_SECRET"]), timeout=30)
                if token.status_code != 429:
                    break
                time.sleep(float(token.headers.get("Retry-After", "1")))
            http.headers["Authorization"] = "Bearer " + token.json()["access_token"]
            page = 1
            while True:
                body = get(base + "/hukou/v2/death-cancellations", page=str(page), size="1000", updated_from=start,
                           updated_to=end)
                records.extend(body["rows"])
                if not body["rows"] or len(records) >= body["total"]:
                    break
                page += 1
        else:
            base = env["FUNDX_CIVIL_AFFAIRS_URL"]
            http.headers["Authorization"] = "Bearer " + env["FUNDX_CIVIL_AFFAIRS_TOKEN"]
            cursor: str | None = None
            while True:
                params = {"limit": "1000", "reported_from": start, "reported_to": end}
                if cursor:
                    params["cursor"] = cursor
                body = get(base + "/api/v1/cremations", **params)
                records.extend(body["data"])
                cursor = body.get("next_cursor")
                if not cursor:
                    break
    pa.Table.from_pylist(records)
    return time.perf_counter() - began, len(records)


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
                result = {
                    "feed": feed, "transport": transport, "rows": pulled.rows, "bytes": pulled.bytes,
                    "pages": pulled.pages, "pull_s": round(pull_s, 3), "rows_per_s": round(pulled.rows / pull_s),
                    "baseline_s": round(base_s, 3), "ratio": round(pull_s / base_s, 2),
                }
                line = f"  {feed:28} {transport:26} pull {pull_s:7.2f} s  parse {base_s:6.2f} s  ratio {pull_s / base_s:5.1f}"
                if feed in ("civil_affairs.deaths", "police.deaths"):
                    http_s, http_rows = _plain_http(feed, window)
                    if http_rows != expected:
                        raise SystemExit(f"{feed}: the plain client got {http_rows} rows, the agency holds {expected}")
                    result |= {"http_baseline_s": round(http_s, 3), "http_ratio": round(pull_s / http_s, 2)}
                    line += f"  plain client {http_s:6.2f} s  ratio {pull_s / http_s:4.2f}"
                results.append(result)
                print(line, flush=True)
    return results
