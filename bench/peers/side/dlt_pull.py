"""dlt's rest_api source pulling the sandbox's civil-affairs REST API (cursor paging, bearer token) into Parquet
files through its filesystem destination — its ordinary pipeline: extract, normalise, load. Prints
{"seconds": pipeline.run's, "rows": rows in the Parquet files, "version": ...} as one JSON line.

    .venv-peers/bin/python bench/peers/side/dlt_pull.py OUT_DIR --start ISO --end ISO

The agency's base URL and token come from FUNDX_CIVIL_AFFAIRS_URL and FUNDX_CIVIL_AFFAIRS_TOKEN, as for fundx.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from importlib.metadata import version
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--start", required=True)
    parser.add_argument("--end", required=True)
    args = parser.parse_args()
    out = Path(args.out).resolve()
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    import dlt
    import pyarrow.parquet as pq
    from dlt.sources.rest_api import rest_api_source

    began = time.perf_counter()
    source = rest_api_source({
        "client": {
            "base_url": os.environ["FUNDX_CIVIL_AFFAIRS_URL"],
            "auth": {"type": "bearer", "token": os.environ["FUNDX_CIVIL_AFFAIRS_TOKEN"]},
            "paginator": {"type": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"},
        },
        "resources": [{
            "name": "cremations",
            "endpoint": {"path": "api/v1/cremations", "data_selector": "data",
                         "params": {"limit": 1000, "reported_from": args.start, "reported_to": args.end}},
        }],
    })
    pipeline = dlt.pipeline(pipeline_name="fundx_bench_peers", pipelines_dir=str(out / "pipelines"),
                            destination=dlt.destinations.filesystem(bucket_url=(out / "lake").as_uri()),
                            dataset_name="civil_affairs", progress=None)
    pipeline.run(source, loader_file_format="parquet")
    seconds = time.perf_counter() - began
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in (out / "lake" / "civil_affairs" / "cremations").glob("*.parquet"))
    print(json.dumps({"seconds": seconds, "rows": rows, "version": version("dlt")}))


if __name__ == "__main__":
    main()
