"""The xlsx pull — justice's prisoner lists — next to the plainest code reading the same sheets (issue 21).

The sandbox's own justice agency (:class:`sandbox.drops.JusticeDrop`) writes its three dated snapshots of
N prisoners as xlsx workbooks with their done-markers; then, in this one process, each timed on the
same files:

- the pull: ``connector_for("justice.prisoners").extract(window)`` — every workbook read by calamine in a
  child process with its cell references checked (connectors/dropxlsx.py), the contract's text, the
  latest snapshot winning per prisoner, the digest;
- the baseline: ``pandas.read_excel(path, sheet_name=..., engine="calamine", dtype=str)`` over the same
  sheets, nothing else;
- for the record: the same with ``engine="openpyxl"`` (what fundx read xlsx with before).

Goal, printed as a ratio with PASS/FAIL and kept in the record (never asserted): the pull <= 1.5 x the
baseline.

    python -m bench --only xlsx [--prisoners 100k]
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

FEED = "justice.prisoners"
GOAL_RATIO = 1.5
DEFAULT_PRISONERS = 100_000
QUICK_PRISONERS = 5_000


def _timed(call: Any) -> tuple[float, Any]:
    began = time.perf_counter()
    result = call()
    return time.perf_counter() - began, result


def run(prisoners: int = DEFAULT_PRISONERS, *, openpyxl: bool = True, verbose: bool = True) -> dict[str, Any]:
    """Write the drop, pull it, read the same sheets plainly; the record (seconds, ratio, goal)."""
    import pandas as pd

    from connectors import connector_for, load_feed
    from fundx.core.settings import reload_settings
    from fundx.core.timeutil import SHANGHAI, Window, aware
    from sandbox.city import DEFAULT_AS_OF, generate_feed
    from sandbox.drops import JusticeDrop
    from sandbox.faults import FaultState

    config = load_feed(FEED).filedrop
    assert config is not None
    sheet = config.sheet or 0
    began = time.perf_counter()
    frame = pd.concat(list(generate_feed(FEED, prisoners)), ignore_index=True)
    saved = {k: os.environ.get(k) for k in ("FUNDX_JUSTICE_DROP",)}
    with tempfile.TemporaryDirectory(prefix="fundx-xlsx-bench-") as tmp:
        now = datetime.now(SHANGHAI)
        drop = JusticeDrop(Path(tmp) / "justice", frame, DEFAULT_AS_OF, FaultState("justice"), now)
        drop.folder.mkdir(parents=True, exist_ok=True)
        drop.write()
        files = sorted(drop.folder.glob("prisoners_*.xlsx"))
        written_s = time.perf_counter() - began
        size = sum(p.stat().st_size for p in files)
        try:
            os.environ["FUNDX_JUSTICE_DROP"] = str(drop.folder)
            settings = reload_settings()
            window = Window(aware("2000-01-01"), now + timedelta(days=1))
            connector_for(FEED, settings)  # imports and the contract's loading: not the rows' cost
            pull_s, pulled = _timed(lambda: connector_for(FEED, settings).extract(window))
            expected = len(drop.expected(window.start, window.end))
            if pulled.rows != expected:
                raise RuntimeError(f"{FEED}: pulled {pulled.rows} rows, the agency holds {expected}")

            def plain(engine: str) -> int:
                return sum(len(pd.read_excel(p, sheet_name=sheet, engine=engine, dtype=str)) for p in files)

            base_s, base_rows = _timed(lambda: plain("calamine"))
            old_s, _ = _timed(lambda: plain("openpyxl")) if openpyxl else (None, None)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            reload_settings()
    ratio = round(pull_s / base_s, 2) if base_s else None
    record: dict[str, Any] = {
        "feed": FEED, "prisoners": prisoners, "files": len(files), "bytes": size, "rows_read": base_rows,
        "pulled": pulled.rows, "written_s": round(written_s, 2),
        "pull_s": round(pull_s, 3), "baseline": "pandas.read_excel(engine='calamine', dtype=str)",
        "baseline_s": round(base_s, 3), "ratio": ratio,
        "openpyxl_s": round(old_s, 3) if old_s is not None else None,
        "openpyxl_ratio": round(old_s / pull_s, 2) if old_s else None,
        "goals": [goal(ratio, prisoners)] if ratio is not None else [],
    }
    if verbose:
        print_record(record)
    return record


def goal(ratio: float, prisoners: int) -> dict[str, Any]:
    """The xlsx pull's goal as feeds_bench keeps goals (measured, limit, of_limit, pass)."""
    return {"goal": f"xlsx pull ({prisoners:,} prisoners) <= {GOAL_RATIO:g} x calamine reading the same sheets",
            "measured": ratio, "limit": GOAL_RATIO, "unit": "x", "rows": prisoners,
            "of_limit": round(ratio / GOAL_RATIO, 2), "pass": bool(ratio <= GOAL_RATIO)}


def print_record(r: dict[str, Any]) -> None:
    print(f"  {r['feed']}: {r['prisoners']:,} prisoners, {r['files']} workbooks ({r['bytes'] / 1e6:,.1f} MB, "
          f"{r['rows_read']:,} rows), {r['pulled']:,} pulled")
    print(f"  pull {r['pull_s']:.2f} s | {r['baseline']} {r['baseline_s']:.2f} s | ratio {r['ratio']:.2f}x")
    if r["openpyxl_s"] is not None:
        print(f"  (for the record: openpyxl reads the same sheets in {r['openpyxl_s']:.2f} s, "
              f"{r['openpyxl_ratio']:.1f}x the pull)")
    for g in r["goals"]:
        print(f"  goal: {g['goal']}: {g['measured']:g} / {g['limit']:g} = {g['of_limit']:.2f}  "
              f"{'PASS' if g['pass'] else 'FAIL'}")
