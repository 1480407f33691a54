"""Data Docs for a night: one GX validation page per feed and an index, with counts but no values.

``write_feed_report(folder, checked)`` writes one feed's ``<feed>.html`` (Great Expectations'
validation results page) and ``<feed>.json`` (the check's report: counts per rule, no values), then
rebuilds ``index.html`` (feeds, rows, valid, quarantined, rejected, and each rule's failures with
percentages) from every ``*.json`` in the folder — so feeds run one by one still make one night's
site. ``write_site(folder, checked_batches)`` does it for several at once. Before rendering,
every result is cut down to counts: element count, unexpected count and percentages; failing row
positions, partial value lists and observed values other than counts are dropped, so no identity
number or other value of a record can reach a page. The exchange writes into
``FUNDX_HOME/reports/<night>/``.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from contracts.validate import Checked, gx_raised

#: The only keys of an expectation's result that reach Data Docs.
SAFE_RESULT_KEYS = ("element_count", "unexpected_count", "unexpected_percent", "unexpected_percent_total",
                    "unexpected_percent_nonmissing", "missing_count", "missing_percent")


def counts_only(validation_result: Any) -> Any:
    """A copy of a GX suite validation result that keeps counts and percentages, nothing else."""
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult

    results = []
    for item in validation_result.results:
        kept = {k: item.result[k] for k in SAFE_RESULT_KEYS if k in (item.result or {})}
        observed = (item.result or {}).get("observed_value")
        if isinstance(observed, (int, float)) and not isinstance(observed, bool):
            kept["observed_value"] = observed  # table-level counts (row count)
        results.append(ExpectationValidationResult(
            success=item.success, expectation_config=item.expectation_config, result=kept,
            exception_info={"raised_exception": gx_raised(item),
                            "exception_message": None, "exception_traceback": None},
        ))
    meta = {k: v for k, v in (validation_result.meta or {}).items()
            if k in ("great_expectations_version", "expectation_suite_name", "run_id", "validation_time")}
    return ExpectationSuiteValidationResult(
        success=validation_result.success, results=results, suite_name=validation_result.suite_name,
        statistics=validation_result.statistics, meta=meta,
    )


def _feed_page(checked: Checked) -> str:
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    document = ValidationResultsPageRenderer().render(counts_only(checked.validation_result))
    return DefaultJinjaPageView().render(document)


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.2f} %"


def _index(title: str, reports: list[dict[str, Any]], folder: Path) -> str:
    esc = html.escape
    rows, details = [], []
    for r in reports:
        feed = str(r["feed"])
        verdict = "rejected: " + esc(str(r["reject_reason"])) if r["rejected"] else "accepted"
        page = f'<a href="{esc(feed)}.html">{esc(feed)}</a>' if (folder / f"{feed}.html").exists() else esc(feed)
        rows.append(f"<tr><td>{page}</td><td>{r['rows']}</td><td>{r['valid']}</td><td>{r['quarantined']}</td>"
                    f"<td>{verdict}</td></tr>")
        lines = "".join(
            f"<tr><td>{esc(rule['rule'])}</td><td>{esc(rule['description'])}</td><td>{rule['failed']}</td>"
            f"<td>{_percent(rule['percent'])}</td></tr>"
            for rule in r["rules"]
        )
        normalised = "".join(f"<li>{esc(col)}: {esc(', '.join(f'{k} {n}' for k, n in kinds.items()))}</li>"
                             for col, kinds in r["normalisation"].items())
        details.append(f"<h2>{esc(feed)} (contract {esc(str(r['contract_version']))})</h2>"
                       f"<table><tr><th>rule</th><th>what it checks</th><th>failed rows</th><th>of all rows</th></tr>"
                       f"{lines}</table><p>Normalised values:</p><ul>{normalised or '<li>none</li>'}</ul>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + esc(title) + "</title>"
            "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:2px 6px}</style></head><body><h1>" + esc(title) + "</h1>"
            "<table><tr><th>feed</th><th>rows</th><th>valid</th><th>quarantined</th><th>verdict</th></tr>"
            + "".join(rows) + "</table>" + "".join(details) + "</body></html>")


def _write(path: Path, text: str) -> None:
    """Write a page whole (temporary name, then rename): a reader never sees half a page."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _write_feed(folder: Path, checked: Checked) -> None:
    if checked.validation_result is not None:
        _write(folder / f"{checked.feed}.html", _feed_page(checked))
    else:
        (folder / f"{checked.feed}.html").unlink(missing_ok=True)
    _write(folder / f"{checked.feed}.json", json.dumps(checked.report, ensure_ascii=False, indent=1, default=str))


def write_index(folder: Path, *, title: str | None = None) -> Path:
    """(Re)write ``index.html`` from the feed reports (``*.json``) in ``folder``."""
    folder = Path(folder)
    reports = []
    for path in sorted(folder.glob("*.json")):
        try:
            reports.append(json.loads(path.read_text(encoding="utf-8")))
        except ValueError:
            continue  # a report being replaced right now: the next write includes it
    index = folder / "index.html"
    _write(index, _index(title or f"fundx validation, night of {folder.name}", reports, folder))
    return index


def write_feed_report(folder: Path, checked: Checked) -> Path:
    """Write one feed's validation page and report into ``folder`` and rebuild the index; returns the index."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_feed(folder, checked)
    return write_index(folder)


def write_site(folder: Path, batches: Iterable[Checked], *, title: str = "fundx validation") -> Path:
    """Write the validation site of several batches into ``folder``; returns the index page's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for checked in batches:
        _write_feed(folder, checked)
    return write_index(folder, title=title)
