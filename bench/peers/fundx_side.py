"""fundx's side of the peers' benchmark, run in a process of its own (``.venv/bin/python -m bench.peers.fundx_side``)
as the peers' scripts are: prints one JSON line.

    warm PARQUET [--repeats 3]: read the file as a connector delivers it (connectors.localfile) and check it
        against the contract without Great Expectations (contracts.validate.check(..., gx=False)), after a
        warm-up run; {"seconds": [...], "counts": {rule id: failed rows}, ...}
    pull OUT.parquet --start ISO --end ISO: the civil-affairs connector's pull of the window from the agency
        (FUNDX_CIVIL_AFFAIRS_URL/TOKEN), its frame written as Parquet; {"seconds": ..., "rows": ...}
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

from bench.peers.data import FEED, TODAY

PULL_FEED = "civil_affairs.deaths"


def warm(path: Path, repeats: int) -> dict:
    from connectors.localfile import read_local
    from contracts import load_contract
    from contracts.validate import check

    contract = load_contract(FEED)
    today = date.fromisoformat(TODAY)

    def once():
        return check(contract, read_local(contract, path), today=today, gx=False)

    checked = once()  # imports and first use: not the batch's
    seconds = []
    for _ in range(repeats):
        began = time.perf_counter()
        checked = once()
        seconds.append(time.perf_counter() - began)
    return {"seconds": seconds, "counts": {r["rule"]: r["failed"] for r in checked.report["rules"]},
            "rows": checked.report["rows"], "quarantined": checked.report["quarantined"]}


def pull(out: Path, start: str, end: str) -> dict:
    from connectors import connector_for
    from fundx.core.timeutil import Window, aware

    began = time.perf_counter()
    pulled = connector_for(PULL_FEED).extract(Window(aware(start), aware(end)))
    pulled.frame.to_parquet(out, index=False)
    return {"seconds": time.perf_counter() - began, "rows": pulled.rows, "pages": pulled.pages}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.fundx_side")
    sub = parser.add_subparsers(dest="what", required=True)
    w = sub.add_parser("warm")
    w.add_argument("path", type=Path)
    w.add_argument("--repeats", type=int, default=3)
    p = sub.add_parser("pull")
    p.add_argument("out", type=Path)
    p.add_argument("--start", required=True)
    p.add_argument("--end", required=True)
    args = parser.parse_args()
    result = warm(args.path, args.repeats) if args.what == "warm" else pull(args.out, args.start, args.end)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
