"""The feed benchmark's harness at tiny sizes: the generated drop and database are exactly what the sandbox
agencies write and what the real connectors take, made in bounded chunks and cached; the baselines run; the
record has its fields; the streamed run itself.
No timing is asserted: machines are noisy."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from bench import feedrun, feeds_bench, scale_data
from fundx.core.settings import reload_settings
from fundx.core.timeutil import SHANGHAI, Window, aware

ROWS, CHUNK = 3_000, 1_000
NOW = datetime(2026, 11, 20, 9, 30, tzinfo=SHANGHAI)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, scale_data.Dataset]:
    root = tmp_path_factory.mktemp("bench-data")
    return {"root": root,
            "deaths": scale_data.build_deaths(ROWS, chunk_rows=CHUNK, root=root, now=NOW),
            "bills": scale_data.build_bills(ROWS, chunk_rows=CHUNK, root=root)}


@pytest.fixture
def exchange(made, monkeypatch, tmp_path):
    """An exchange home pointed at the generated drop and database."""
    monkeypatch.setenv("FUNDX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FUNDX_SANDBOX_HOME", str(tmp_path / "no-sandbox"))
    monkeypatch.setenv("FUNDX_RELIGIOUS_AFFAIRS_DROP", made["deaths"].path)
    monkeypatch.setenv("FUNDX_MEDICAL_INSURANCE_DB_URL", made["bills"].url)
    reload_settings()
    yield Window(aware("2020-01-01"), aware("2026-11-23T00:00:00+08:00"))
    reload_settings()


def _chunks(feed: str) -> pd.DataFrame:
    from sandbox.city import generate_feed

    return pd.concat(list(generate_feed(feed, ROWS, chunk_rows=CHUNK)), ignore_index=True)


def test_the_deaths_drop_is_the_sandbox_drop_written_chunk_by_chunk(made, tmp_path):
    from sandbox.city import DEFAULT_AS_OF
    from sandbox.drops import ReligiousDrop
    from sandbox.faults import FaultState

    d = made["deaths"]
    assert (d.rows, d.chunks, d.max_chunk_rows) == (ROWS, ROWS // CHUNK, CHUNK)
    assert sum(d.extra["file_rows"].values()) == ROWS
    whole = ReligiousDrop(tmp_path / "whole", _chunks(scale_data.DEATHS), DEFAULT_AS_OF,
                          FaultState("religious_affairs"), NOW)
    whole.write()  # the agency's own drop of the same rows at once
    ours = sorted(p.name for p in Path(d.path).iterdir())
    assert ours == sorted(p.name for p in (tmp_path / "whole").iterdir())
    for name in ours:
        a, b = Path(d.path) / name, tmp_path / "whole" / name
        assert a.read_bytes() == b.read_bytes(), name
        assert a.stat().st_mtime_ns == b.stat().st_mtime_ns, name


def test_the_bills_database_is_the_sandbox_database_loaded_chunk_by_chunk(made, tmp_path):
    from sandbox.faults import FaultState
    from sandbox.medical_db import TABLE, VIEW, MedicalDB

    b = made["bills"]
    assert (b.rows, b.chunks, b.max_chunk_rows) == (ROWS, ROWS // CHUNK, CHUNK)
    whole = MedicalDB(tmp_path, _chunks(scale_data.BILLS), FaultState("medical_insurance"))
    whole.load()
    whole.close()

    def rows(path: Path, relation: str) -> list[tuple]:
        with sqlite3.connect(path) as conn:
            return conn.execute(f"SELECT * FROM {relation} ORDER BY 1").fetchall()

    assert len(rows(Path(b.path), VIEW)) == ROWS
    assert rows(Path(b.path), TABLE) == rows(whole.path, TABLE)
    assert rows(Path(b.path), VIEW) == rows(whole.path, VIEW)


def test_the_real_connectors_take_them(made, exchange):
    from connectors import connector_for
    from connectors.base import deduplicate
    from contracts import load_contract

    for feed, pages in ((scale_data.DEATHS, made["deaths"].files), (scale_data.BILLS, 1)):
        pulled = connector_for(feed).extract(exchange)
        contract = load_contract(feed)
        assert pulled.rows == len(deduplicate(_chunks(feed), contract.key, contract.incremental)), feed
        assert pulled.pages == pages, feed


def test_the_baselines_run_on_the_same_rows(made, exchange):
    start, end = exchange.start, exchange.end
    for key in ("deaths", "bills"):
        feed = scale_data.DEATHS if key == "deaths" else scale_data.BILLS
        source = Path(made[key].path)
        parsed = feedrun.baseline_parse(feed, source, start, end)
        checked = feedrun.baseline_checks(feed, source, start, end)
        assert parsed["rows"] == checked["rows"] == ROWS and parsed["seconds"] > 0
        assert 0 < checked["failed"] < ROWS // 10  # the generator plants about 1 %
        sample = feedrun.sample_frame(feed, source, start, end, rows=50)
        assert len(sample) == 50 and set(sample.columns) == set(__import__("contracts").load_contract(feed).names)
    sealed = feedrun.baseline_aesgcm(3 * feedrun.MIB + 5)
    assert sealed["bytes"] == 3 * feedrun.MIB + 5 and sealed["chunks"] == 4


def test_datasets_are_cached_and_made_in_a_child_with_its_peak(tmp_path):
    first = scale_data.ensure("deaths", 500, root=tmp_path, quiet=True)
    assert not first.cached and first.generation_peak_bytes and first.generation_peak_bytes > 0
    again = scale_data.ensure("deaths", 500, root=tmp_path, quiet=True)
    assert again.cached and again.path == first.path and again.generation_peak_bytes == first.generation_peak_bytes


def _run(rows: int, seconds: float, peak: int) -> dict:
    steps = {name: {"seconds": seconds / 5, "rows": rows, "peak_rss_bytes": peak} for name in feedrun.STEPS}
    return {"rows": rows, "valid": rows - 10, "quarantined": 10, "outcome": "delivered", "parts": 1,
            "sealed_bytes": rows * 50, "steps": steps, "wall_s": seconds, "warmup_s": 1.0, "peak_bytes": peak,
            "run_peak_bytes": peak, "chunk_rows": None}


def _baselines(seconds: float) -> dict:
    return {"pull": {"what": "pyarrow.csv", "seconds": seconds, "rows": 1, "peak_bytes": 2**27},
            "checks": {"what": "pandas checks", "seconds": seconds, "rows": 1, "failed": 0, "peak_bytes": 2**27},
            "seal": {"what": "AESGCM, 1 MiB chunks", "seconds": seconds / 10, "bytes": 1, "peak_bytes": 2**25}}


def test_the_record_has_its_fields_ratios_goals_and_capacity(capsys):
    small = feeds_bench.summarise(scale_data.DEATHS, 1_000_000, _run(1_000_000, 10.0, 900 * 2**20), _baselines(2.0))
    large = feeds_bench.summarise(scale_data.DEATHS, 10_000_000, _run(10_000_000, 91.0, 1800 * 2**20), _baselines(20.0))
    bills = feeds_bench.summarise(scale_data.BILLS, 5_000_000, _run(5_000_000, 50.0, 1000 * 2**20), _baselines(10.0))
    for record in (small, large, bills):
        assert set(record["steps"]) == set(feedrun.STEPS)
        for step in record["steps"].values():
            assert {"seconds", "rows", "rows_per_s", "peak_MiB"} <= set(step)
        assert set(record["ratios"]) == {"pull", "normalise+validate", "seal"}
        assert {"end_to_end_s", "baseline_total_s", "ratio_end_to_end", "peak_MiB", "baselines"} <= set(record)
    assert small["ratio_end_to_end"] == round(10.0 / 4.2, 2)
    cap = feeds_bench.capacity([small, large, bills])
    assert cap[scale_data.DEATHS]["seconds_fit"] == {"fixed": 1.0, "per_million": 9.0}
    assert "seconds_fit" not in cap[scale_data.BILLS] and cap[scale_data.BILLS]["points"][0]["s_per_million"] == 10.0
    night = {"wall_s": 200.0, "rows": 2_270_000}
    found = feeds_bench.goals([small, large, bills], night)
    # 2.38x > 2x; each step of each feed against 1.5x: pull 1.0x, 0.91x, 1.0x; normalise+validate two steps
    # against one baseline (2.0x, 1.82x, 2.0x); seal against a tenth (10x, 9.1x, 10x); 1.89 GB > 1 GB; 3.3 min <= 5
    assert [g["pass"] for g in found] == [False, *[True, False, False] * 3, False, True]
    pulls = [g for g in found if g["goal"].startswith("pull of ")]
    assert [(g["limit"], g["measured"]) for g in pulls] == [(1.5, 1.0), (1.5, 0.91), (1.5, 1.0)]
    assert "medical_insurance.bills (5M) <= 1.5 x pyarrow.csv" in pulls[2]["goal"]
    record = {"runs": [small, large, bills], "capacity": cap, "goals": found}
    assert json.loads(json.dumps(record)) == record
    feeds_bench.print_feed(small)
    feeds_bench.print_capacity(cap)
    feeds_bench.print_goals(found)
    printed = capsys.readouterr().out
    assert "FAIL" in printed and "PASS" in printed and "per million rows" in printed
    assert "(goal <= 1.5x: PASS)" in printed  # beside the pull step's ratio


def test_row_counts_on_the_command_line():
    assert [feeds_bench.parse_rows(t) for t in ("50k", "1M", "2.5M", "10_000_000")] == [50_000, 10**6, 2_500_000, 10**7]
    assert [feeds_bench.rows_label(n) for n in (50_000, 10**6, 2_500_000)] == ["50k", "1M", "2.5M"]


def test_a_streamed_run_reports_every_step(made, tmp_path):
    from fundx.crypto.pki import init_keys

    keys = init_keys(tmp_path / "pki").dir
    end = "2026-11-23T00:00:00+08:00"
    record = feeds_bench.measure(scale_data.DEATHS, made["deaths"], tmp=tmp_path, keys_dir=keys, end=end,
                                 warm=False, verbose=False)
    assert set(record["steps"]) == set(feedrun.STEPS)
    assert record["pulled"] == record["valid"] + record["quarantined"] and record["pulled"] > 0.9 * ROWS
    assert record["sealed_bytes"] > 0 and record["peak_MiB"] > 0
    assert record["baselines"]["cipher"]["bytes"] == record["sealed_bytes"]  # the cipher alone, for the record
    assert record["baselines"]["seal"]["rows"] == record["pulled"]  # Parquet + AESGCM + a file, every row twice


def test_the_sandbox_agencies_serve_the_night_frames(tmp_path, monkeypatch):
    from connectors import connector_for
    from fundx.crypto.pki import init_keys

    sizes = scale_data.night_sizes(300, 100, 500, 200)
    frames = scale_data.build_night(sizes, root=tmp_path / "data")
    bills = scale_data.build_bills(sizes[scale_data.BILLS], root=tmp_path / "data")
    spec = {"mode": "sandbox", "seed": frames.seed, "people": 300, "home": str(tmp_path / "agencies"),
            "frames": {f: str(Path(frames.path) / f"{f}.parquet") for f in scale_data.NIGHT_FRAMES},
            "override": {"FUNDX_MEDICAL_INSURANCE_DB_URL": bills.url}}
    env = feeds_bench.clean_env(tmp_path / "sandbox", init_keys(tmp_path / "pki").dir, None)
    with feeds_bench.Agencies(spec, env, tmp_path / "sandbox.log") as agencies:
        assert agencies.env["FUNDX_MEDICAL_INSURANCE_DB_URL"] == bills.url
        for key, value in agencies.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("FUNDX_HOME", str(tmp_path / "home"))
        reload_settings()
        window = Window(aware("2020-01-01"), aware("2026-11-23T00:00:00+08:00"))
        for feed in ("civil_affairs.deaths", "market_regulation.businesses", scale_data.BILLS):
            pulled = connector_for(feed).extract(window)
            assert sizes[feed] * 0.97 <= pulled.rows <= sizes[feed], feed
    reload_settings()
    assert agencies.proc is None  # stopped when its stdin closed
