"""`fundx contract check FEED PATH`: a local file checked against a feed's contract, counts only (issue 21).

The command reads the file as a connector would deliver it (text columns, logical names or the agency's
headers), calls the contract check and prints per rule the failing rows and their share, the verdict and the
rows valid/quarantined — never a value. Bad input ends in one line with exit 2; Great Expectations is loaded
only with --docs, and a command whose arguments fail never loads pandas.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from connectors.localfile import read_local
from contracts import load_contract
from contracts.validate import check
from fundx.cli import app
from sandbox.city import generate_feed

runner = CliRunner()
TODAY = "2026-11-01"


def _frame(feed: str, rows: int = 400) -> pd.DataFrame:
    return pd.concat(list(generate_feed(feed, rows, seed=11)), ignore_index=True)


@pytest.fixture(scope="module")
def police(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    frame = _frame("police.deaths")
    frame.loc[3, "name"] = None  # a required value missing: at least one failing row
    path = tmp_path_factory.mktemp("check") / "police.parquet"
    frame.to_parquet(path, index=False)
    return path, frame


def _fundx(*args: str, code: str = "") -> subprocess.CompletedProcess[str]:
    """``fundx ARGS`` in a child process; ``code`` runs there first (e.g. to look at sys.modules after)."""
    program = ("import sys, atexit\n" + code + "\nfrom fundx.cli import main\nsys.argv = ['fundx', *sys.argv[1:]]\n"
               "main()\n")
    return subprocess.run([sys.executable, "-c", program, *args], capture_output=True, text=True, timeout=300,
                          env=os.environ.copy(), stdin=subprocess.DEVNULL, check=False)


def _one_line(done: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    return lines[0]


def test_counts_per_rule_as_the_check_finds_them_and_no_value(police):
    path, frame = police
    done = runner.invoke(app, ["contract", "check", "police.deaths", str(path), "--today", TODAY, "--json"])
    assert done.exit_code in (0, 1), done.output
    report = json.loads(done.stdout)
    contract = load_contract("police.deaths")
    expected = check(contract, read_local(contract, path), today=date.fromisoformat(TODAY)).report
    assert {r["rule"]: r["failed"] for r in report["rules"]} == {r["rule"]: r["failed"] for r in expected["rules"]}
    assert (report["rows"], report["valid"], report["quarantined"]) == (len(frame), expected["valid"], expected["quarantined"])
    assert report["rules"][0]["percent"] is not None and report["quarantined"] >= 1
    assert done.exit_code == (1 if expected["rejected"] else 0)
    text = runner.invoke(app, ["contract", "check", "police.deaths", str(path), "--today", TODAY])
    assert "name.required" in text.stdout and "verdict:" in text.stdout and "quarantined" in text.stdout
    for output in (done.stdout, text.stdout):  # no identity number, name or key of a record
        for column in ("id_number", "name", "cancellation_id"):
            values = [v for v in frame[column].dropna().astype(str) if len(v) >= 2]
            assert not any(v in output for v in values), column


def test_a_csv_with_the_agencys_headers_is_read_as_its_connector_would(tmp_path):
    frame = _frame("religious_affairs.deaths", 200)
    contract = load_contract("religious_affairs.deaths")
    physical = {c.name: c.physical_name for c in contract.columns}
    path = tmp_path / "deaths.csv"
    path.write_bytes(b"\xef\xbb\xbf" + frame.rename(columns=physical).to_csv(index=False).encode("utf-8"))
    done = runner.invoke(app, ["contract", "check", "religious_affairs.deaths", str(path), "--today", TODAY, "--json"])
    report = json.loads(done.stdout)
    read = read_local(contract, path)
    assert list(read.columns) == list(frame.columns) and all(str(t) == "str" for t in read.dtypes)
    assert report["rows"] == len(frame) and not report["schema_break"]
    direct = check(contract, frame, today=date.fromisoformat(TODAY)).report
    assert {r["rule"]: r["failed"] for r in report["rules"]} == {r["rule"]: r["failed"] for r in direct["rules"]}


def test_an_xlsx_workbook_is_read_as_the_file_drop_connector_reads_one(tmp_path):
    import openpyxl

    frame = _frame("police.deaths", 60)
    book = openpyxl.Workbook()
    book.active.append(list(frame.columns))
    for row in frame.astype(object).where(frame.notna(), None).itertuples(index=False):
        book.active.append(list(row))
    path = tmp_path / "deaths.xlsx"
    book.save(path)
    read = read_local(load_contract("police.deaths"), path)
    assert read.fillna("-").astype(str).equals(frame.mask(frame == "").fillna("-").astype(str))
    done = runner.invoke(app, ["contract", "check", "police.deaths", str(path), "--today", TODAY, "--json"])
    assert json.loads(done.stdout)["rows"] == 60
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"PK\x03\x04 not a workbook")
    assert "not a readable xlsx workbook" in _one_line(_fundx("contract", "check", "police.deaths", str(broken)))


def test_bad_input_is_one_line_with_exit_2(tmp_path, police):
    path, frame = police
    missing = _one_line(_fundx("contract", "check", "police.deaths", str(tmp_path / "nope.parquet")))
    assert "police.deaths" in missing and "nope.parquet" in missing and "no such file" in missing
    assert "no contract for feed 'no.such'" in _one_line(_fundx("contract", "check", "no.such", str(path)))
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 this is not parquet at all")
    line = _one_line(_fundx("contract", "check", "police.deaths", str(garbage)))
    assert "garbage.parquet" in line and "not a readable Parquet file" in line
    extra = tmp_path / "extra.parquet"
    frame.assign(shoe_size="42").to_parquet(extra, index=False)
    line = _one_line(_fundx("contract", "check", "police.deaths", str(extra)))
    assert "shoe_size" in line and "not in the contract of police.deaths" in line
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"cancellation_id,name\n\xff\xfe\xfa,x\n")
    assert "not a well-formed UTF-8 CSV file" in _one_line(_fundx("contract", "check", "police.deaths", str(broken)))
    assert "--today" in _one_line(_fundx("contract", "check", "police.deaths", str(path), "--today", "soon"))


def test_arguments_that_fail_load_neither_pandas_nor_great_expectations(tmp_path):
    look = "atexit.register(lambda: print('LOADED', 'pandas' in sys.modules, 'great_expectations' in sys.modules))"
    for args in (("contract", "check", "police.deaths"), ("contract", "check", "police.deaths", "x.parquet",
                                                          "--today", "2026-13-01")):
        done = _fundx(*args, code=look)
        assert done.returncode == 2 and "LOADED False False" in done.stdout, done.stdout + done.stderr


def test_great_expectations_only_with_docs(police):
    path, _ = police
    look = "atexit.register(lambda: print('GX', 'great_expectations' in sys.modules))"
    done = _fundx("contract", "check", "police.deaths", str(path), "--today", TODAY, "--json", code=look)
    assert done.returncode in (0, 1), done.stderr
    assert "GX False" in done.stdout


def test_docs_are_great_expectations_pages_without_values(tmp_path, police):
    path, frame = police
    docs = tmp_path / "docs"
    done = runner.invoke(app, ["contract", "check", "police.deaths", str(path), "--today", TODAY, "--docs", str(docs)])
    assert done.exit_code in (0, 1), done.output
    assert "Data Docs:" in done.stdout
    page = (docs / "police.deaths.html").read_text(encoding="utf-8")
    assert "name.required" in (docs / "index.html").read_text(encoding="utf-8")
    assert not any(v in page for v in frame["id_number"].dropna().astype(str) if len(v) == 18)
