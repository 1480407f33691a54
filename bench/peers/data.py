"""The peers' benchmark data and checks: one Parquet file of death rows, and the contract's standard checks
written once for each tool.

Data: ``rows`` police death records from the sandbox generator, about a third broken the way
bench/validate_bench.py breaks them (wrong check characters, Excel-mangled numbers, impossible dates, missing
names), plus a few keys given twice, so that every standard check has failures to find. The rows are written
after the contract's own normalisation (trimmed, half-width, ISO dates): every tool then judges the same values
(fundx still runs its normalisation on them, finding nothing to repair — that work stays in its time). Every
column is UTF-8 text, as an agency sends it. Cached as ``<FUNDX_BENCH_DATA or bench/data>/peers-<feed>-<rows>-s<seed>-<version>.parquet``.

Checks: the standard part of the contract — required, unique, pattern, length, enum
(:data:`STANDARD_KINDS`, fundx's rule ids ``<column>.required|unique|format|length|allowed_values``) — as
(1) an ODCS v3 contract for datacontract-cli with a local server on the Parquet file (DuckDB), and (2) a
plain JSON spec the pandera-polars script turns into a DataFrameSchema. fundx checks its whole contract
(the nine rules the peers cannot express too); the counts compared are the standard rules'.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FEED = "police.deaths"
TODAY = "2026-11-01"
SEED = 7
#: the rule kinds datacontract-cli and pandera express as fundx does (contracts/rules.py)
STANDARD_KINDS = ("required", "unique", "pattern", "length", "allowed_values")
#: share of rows whose key is made the previous row's (the unique rule's failures)
DUPLICATE_SHARE = 0.001


def data_path(rows: int, seed: int = SEED) -> Path:
    """Where the file of ``rows`` rows is cached; its name digests the sources that decide its bytes (the
    generator's, bench/scale_data.py's version, this module, the breaking, the contract and its normalisation)."""
    import hashlib

    from bench.scale_data import ROOT, data_dir, version

    digest = hashlib.sha256(version().encode())
    for name in ("bench/peers/data.py", "bench/validate_bench.py", f"contracts/{FEED}.odcs.yaml", "contracts/normalise.py"):
        digest.update(name.encode() + b"\0" + (ROOT / name).read_bytes())
    return data_dir() / f"peers-{FEED}-{rows}-s{seed}-{digest.hexdigest()[:10]}.parquet"


def make_data(rows: int, seed: int = SEED) -> Path:
    """The benchmark's Parquet file, made once (see the module's docstring)."""
    path = data_path(rows, seed)
    if path.is_file():
        return path
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.validate_bench import _rows
    from contracts import load_contract
    from contracts.normalise import normalise

    contract = load_contract(FEED)
    frame = _rows(rows, seed=seed)
    key = contract.key[0]
    keys = frame[key].to_numpy(dtype=object)
    rng = np.random.default_rng(seed + 1)
    twice = np.flatnonzero(rng.random(rows) < DUPLICATE_SHARE)
    twice = twice[twice > 0]
    keys[twice] = keys[twice - 1]
    frame[key] = keys
    frame, _ = normalise(contract, frame)
    table = pa.table({c: pa.array(frame[c].to_numpy(dtype=object, na_value=None), type=pa.string())
                      for c in contract.names})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def standard_rules() -> list[dict[str, Any]]:
    """The contract's standard rules: id, kind, column and parameters (fundx's own reading of the contract)."""
    from contracts import load_contract
    from contracts.rules import contract_rules

    out = []
    for rule in contract_rules(load_contract(FEED)).row_rules:
        if rule.kind in STANDARD_KINDS:
            params = {k: v for k, v in rule.params.items() if k in ("regex", "min", "max", "values")}
            out.append({"rule": rule.id, "kind": rule.kind, "column": rule.columns[0], **params})
    return out


def spec(parquet: Path) -> dict[str, Any]:
    """The checks as plain data for the side scripts: every column of the contract, its standard checks."""
    from contracts import load_contract

    contract = load_contract(FEED)
    columns: dict[str, dict[str, Any]] = {c: {"name": c} for c in contract.names}
    for rule in standard_rules():
        column = columns[rule["column"]]
        if rule["kind"] in ("required", "unique"):
            column[rule["kind"]] = True
        elif rule["kind"] == "pattern":
            column["pattern"] = rule["regex"]
        elif rule["kind"] == "length":
            column["min_length"], column["max_length"] = rule["min"], rule["max"]
        else:
            column["enum"] = list(rule["values"])
    return {"feed": FEED, "schema": contract.schema_object.name, "parquet": str(parquet),
            "columns": list(columns.values()), "rules": [r["rule"] for r in standard_rules()]}


def odcs_contract(checks: dict[str, Any]) -> str:
    """datacontract-cli's contract (ODCS v3.1) of the same checks, its server the Parquet file (local, DuckDB).
    Every column is a string; a column's ``required``, ``unique``, ``logicalTypeOptions`` (pattern, minLength,
    maxLength) and ``enum`` are the rules'."""
    import yaml

    properties = []
    for column in checks["columns"]:
        prop: dict[str, Any] = {"name": column["name"], "logicalType": "string"}
        if column.get("required"):
            prop["required"] = True
        if column.get("unique"):
            prop["unique"] = True
        options = {k: column[o] for k, o in (("pattern", "pattern"), ("minLength", "min_length"),
                                             ("maxLength", "max_length")) if column.get(o) is not None}
        if options:
            prop["logicalTypeOptions"] = options
        if column.get("enum"):
            prop["enum"] = [{"value": v} for v in column["enum"]]
        properties.append(prop)
    document = {
        "apiVersion": "v3.1.0", "kind": "DataContract", "id": f"urn:fundx-bench:{checks['feed']}",
        "name": checks["feed"], "version": "1.0.0", "status": "active",
        "servers": [{"server": "local", "type": "local", "path": checks["parquet"], "format": "parquet"}],
        "schema": [{"name": checks["schema"], "logicalType": "object", "properties": properties}],
    }
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


def write_checks(parquet: Path, folder: Path) -> tuple[Path, Path]:
    """The spec (JSON) and datacontract-cli's contract (YAML) for ``parquet``, written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    checks = spec(parquet)
    spec_path = folder / "checks.json"
    spec_path.write_text(json.dumps(checks, ensure_ascii=False, indent=1), encoding="utf-8")
    contract_path = folder / "datacontract.odcs.yaml"
    contract_path.write_text(odcs_contract(checks), encoding="utf-8")
    return spec_path, contract_path
