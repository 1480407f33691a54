"""The peers' benchmark harness (`make bench-peers`, bench/peers/) at tiny sizes: the data is text, the
contract's standard checks are translated whole for datacontract-cli (a valid ODCS v3 contract) and pandera,
the goals are judged the right way round; and, where the side environment (.venv-peers) was built, one smoke
run in which every peer finds the failures fundx finds. CI never builds .venv-peers: that test skips there.
No timing is asserted: machines are noisy."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml
from open_data_contract_standard.model import OpenDataContractStandard

from bench.peers import ROOT, peers_ready
from bench.peers.__main__ import goals
from bench.peers.data import FEED, make_data, odcs_contract, spec, standard_rules


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNDX_BENCH_DATA", str(tmp_path / "data"))
    return make_data(2_000)


def test_the_data_is_text_and_made_once(data):
    table = pq.read_table(data)
    assert table.num_rows == 2_000 and all(str(t) == "string" for t in table.schema.types)
    stamp = data.stat().st_mtime_ns
    assert make_data(2_000) == data and data.stat().st_mtime_ns == stamp


def test_the_standard_checks_are_translated_whole(data):
    rules = standard_rules()
    assert {r["kind"] for r in rules} == {"required", "unique", "pattern", "length", "allowed_values"}
    checks = spec(data)
    assert checks["rules"] == [r["rule"] for r in rules]
    document = yaml.safe_load(odcs_contract(checks))
    OpenDataContractStandard.model_validate(document)  # a contract datacontract-cli reads
    props = {p["name"]: p for p in document["schema"][0]["properties"]}
    assert document["servers"][0] == {"server": "local", "type": "local", "path": str(data), "format": "parquet"}
    for rule in rules:
        prop = props[rule["column"]]
        if rule["kind"] in ("required", "unique"):
            assert prop[rule["kind"]] is True
        elif rule["kind"] == "pattern":
            assert prop["logicalTypeOptions"]["pattern"] == rule["regex"]
        elif rule["kind"] == "length":
            options = prop["logicalTypeOptions"]
            assert (options.get("minLength"), options.get("maxLength")) == (rule["min"], rule["max"])
        else:
            assert [e["value"] for e in prop["enum"]] == rule["values"]
    required = [r["column"] for r in rules if r["kind"] == "required"]
    assert not [n for n, p in props.items() if p.get("required") and n not in required]


def test_goals_are_judged_peer_over_fundx():
    report = {"check": {"whole_process": {"seconds": {"datacontract-cli": 3.0, "fundx": 2.0}},
                        "warm": {"seconds": {"datacontract-cli": 1.0, "pandera-polars": 0.5, "fundx": 2.0}}},
              "pull": {"seconds": {"dlt": 30.0, "fundx": 7.0}}}
    judged = {(g["job"], g["peer"]): (g["ratio"], g["status"]) for g in goals(report)}
    assert judged[("contract check, whole process", "datacontract-cli")] == (1.5, "PASS")
    assert judged[("contract check, warm (read + check)", "datacontract-cli")] == (0.5, "FAIL")
    assert judged[("contract check, warm (read + check)", "pandera-polars")] == (0.25, "FAIL")
    assert judged[("REST pull, cursor paging, to Parquet", "dlt")] == (4.29, "PASS")


@pytest.mark.skipif(not peers_ready(), reason="no side environment .venv-peers (make bench-peers builds it)")
def test_a_smoke_run_against_the_peers(tmp_path):
    env = {**os.environ, "FUNDX_BENCH_DATA": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "bench.peers", "--rows", "3k", "--repeats", "1", "--out",
                           str(tmp_path / "results")], capture_output=True, text=True, env=env, cwd=ROOT, timeout=900,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [record] = (tmp_path / "results").glob("bench-peers-*.json")
    report = json.loads(record.read_text(encoding="utf-8"))
    assert len(report["goals"]) == 4 and all(g["status"] in ("PASS", "FAIL") for g in report["goals"])
    for line in report["check"]["verification"]:
        assert line["datacontract-cli_same"] and line["pandera-polars_same"], line
    assert report["check"]["whole_process"]["fundx_rows"] == 3_000 and report["pull"]["rows"] > 0
    assert FEED in done.stdout
