"""pandera on polars, warm: the same checks as a DataFrameSchema; reading the Parquet file and validating it
(lazily: every failure collected, as fundx finds every failing row) ``repeats`` times in one process after a
warm-up run. Prints {"seconds": [...], "counts": {fundx rule id: failed rows}, "version": ...} as one JSON line.

    .venv-peers/bin/python bench/peers/side/pandera_check.py CHECKS.json [--repeats 3]

CHECKS.json is bench/peers/data.py's spec: per column required, unique, pattern, min/max length, enum.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.metadata import version
from typing import Any

import pandera.polars as pa
import polars as pl

#: pandera's check names (the start of its failure cases' ``check``) -> the fundx rule id's suffix
KINDS = {"not_nullable": "required", "field_uniqueness": "unique", "str_contains": "format", "str_length": "length",
         "isin": "allowed_values"}


def schema(spec: dict[str, Any]) -> pa.DataFrameSchema:
    """The DataFrameSchema of the spec's checks (every column text)."""
    columns = {}
    for column in spec["columns"]:
        checks = []
        if column.get("pattern"):
            checks.append(pa.Check.str_contains(column["pattern"]))  # the pattern is anchored (^...$)
        if column.get("min_length") is not None or column.get("max_length") is not None:
            checks.append(pa.Check.str_length(column.get("min_length"), column.get("max_length")))
        if column.get("enum"):
            checks.append(pa.Check.isin(column["enum"]))
        columns[column["name"]] = pa.Column(pl.Utf8, checks=checks, nullable=not column.get("required"),
                                            unique=bool(column.get("unique")))
    return pa.DataFrameSchema(columns, strict=True)


def rule_of(column: str, check: str) -> str | None:
    """The fundx rule id of one of pandera's failure cases (None: a check the spec did not ask for)."""
    kind = next((k for name, k in KINDS.items() if check == name or check.startswith(name + "(")), None)
    return f"{column}.{kind}" if kind else None


def failures(frame: pl.DataFrame, checked: pa.DataFrameSchema) -> pl.DataFrame | None:
    """pandera's failure cases of a lazy validation (None: none failed)."""
    try:
        checked.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return exc.failure_cases
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with open(args.spec, encoding="utf-8") as f:
        spec = json.load(f)
    checked = schema(spec)

    def once() -> pl.DataFrame | None:
        return failures(pl.read_parquet(spec["parquet"]), checked)

    cases = once()  # imports and first use: not the batch's
    seconds = []
    for _ in range(args.repeats):
        began = time.perf_counter()
        cases = once()
        seconds.append(time.perf_counter() - began)
    counts: dict[str, int] = dict.fromkeys(spec["rules"], 0)
    unmapped: dict[str, int] = {}
    if cases is not None:
        for row in cases.group_by(["column", "check"]).len().iter_rows(named=True):
            rule = rule_of(str(row["column"]), str(row["check"]))
            if rule is None:
                unmapped[f"{row['column']}:{row['check']}"] = int(row["len"])
            else:
                counts[rule] = counts.get(rule, 0) + int(row["len"])
    print(json.dumps({"seconds": seconds, "counts": counts, "unmapped": unmapped, "version": version("pandera"),
                      "engine": f"polars {version('polars')}"}, ensure_ascii=False))


if __name__ == "__main__":
    main()
