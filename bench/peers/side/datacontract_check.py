"""datacontract-cli, warm: its Python API tests the contract ``repeats`` times in one process after a warm-up
run; prints {"seconds": [...], "counts": {fundx rule id: failed rows}, "version": ...} as one JSON line.

    .venv-peers/bin/python bench/peers/side/datacontract_check.py CONTRACT.yaml [--repeats 3]
    .venv-peers/bin/python bench/peers/side/datacontract_check.py CONTRACT.yaml --counts RESULT.json

``--counts`` reads the JSON of ``datacontract test --output-format json`` instead (the whole-process runs).
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.metadata import version
from typing import Any

#: datacontract-cli's check types -> the fundx rule id's suffix (minLength and maxLength are one fundx rule)
KINDS = {"field_required": "required", "field_unique": "unique", "field_regex": "format",
         "field_min_length": "length", "field_max_length": "length", "field_enum": "allowed_values"}


def counts(checks: list[dict[str, Any]]) -> dict[str, int | None]:
    """Failed rows per fundx rule id, from a run's checks (None where the check did not run)."""
    out: dict[str, int | None] = {}
    for check in checks:
        kind = KINDS.get(check.get("type") or "")
        if kind is None:
            continue
        rule = f"{check['field']}.{kind}"
        value = (check.get("diagnostics") or {}).get("value")
        if value is None or out.get(rule, 0) is None:
            out[rule] = None
        else:
            out[rule] = (out.get(rule) or 0) + int(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("contract")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--counts", help="a `datacontract test --output-format json` result to read counts from")
    args = parser.parse_args()
    if args.counts:
        with open(args.counts, encoding="utf-8") as f:
            run = json.load(f)
        print(json.dumps({"counts": counts(run["checks"]), "result": run.get("result")}))
        return
    from datacontract.data_contract import DataContract

    def once() -> Any:
        return DataContract(data_contract_file=args.contract, server="local").test()

    run = once()  # imports, DuckDB's start, the first read: not the batch's
    seconds = []
    for _ in range(args.repeats):
        began = time.perf_counter()
        run = once()
        seconds.append(time.perf_counter() - began)
    checks = [c.model_dump() for c in run.checks]
    print(json.dumps({"seconds": seconds, "counts": counts(checks), "result": str(run.result),
                      "version": version("datacontract-cli"), "engine": f"duckdb {version('duckdb')}"}))


if __name__ == "__main__":
    main()
