"""``fundx contract``: draft a contract from an agency's sample, diff two versions, release a feed's contract.

fundx/cli/__init__.py mounts it: ``app.add_typer(contract_app, name="contract")``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from fundx.cli.common import bad, console, err, fail, night_arg

contract_app = typer.Typer(
    help="Data contracts (ODCS v3): draft one from an agency's sample, diff two versions, release a feed's contract.",
    no_args_is_help=True,
)


def _headers(values: list[str] | None) -> dict[str, str]:
    out = {}
    for item in values or []:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            err.print("[red]error:[/red] --header: write it 'Name: value'")
            raise typer.Exit(2)
        out[name.strip()] = value.strip()
    return out


@contract_app.command("infer")
def contract_infer(
    sample: Annotated[str, typer.Argument(help="the agency's sample: SAMPLE.csv (UTF-8, UTF-8 with BOM or GB18030), "
                                               "SAMPLE.xlsx (first sheet), SAMPLE.json, or an http(s) URL answering JSON records")],
    feed: Annotated[str | None, typer.Option(help="the feed's name, AGENCY.FEED (default: draft.<sample name>)")] = None,
    out: Annotated[Path | None, typer.Option(help="where to write the draft (default: contracts/<feed>.odcs.yaml; "
                                                     "- for standard output)")] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
    header: Annotated[list[str] | None, typer.Option(help="an HTTP header for a URL sample, 'Name: value' "
                                                             "(repeatable; never shown)")] = None,
    max_rows: Annotated[int, typer.Option(help="rows of the sample to read at most")] = 100_000,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable summary")] = False,
) -> None:
    """Draft an ODCS v3 contract from a sample: types, required columns, the key, formats (identity numbers,
    credit codes, dates, phones) and personal data, each guess marked reviewNeeded. Shows column names, types
    and counts only, never a value."""
    from contracts import contract_path, display_path
    from contracts.infer.document import infer_contract, summary_rows
    from contracts.infer.samples import InferError, read_sample

    try:
        draft = infer_contract(read_sample(sample, headers=_headers(header), max_rows=max_rows), feed)
    except InferError as exc:
        fail(exc, 2)
    to_stdout = out is not None and str(out) == "-"
    target = None if to_stdout else (out or contract_path(draft.feed))
    if target is not None:
        if target.exists() and not force:
            err.print(f"[red]error:[/red] {escape(display_path(target))} exists; not overwriting it")
            err.print("[yellow]what to do:[/yellow] pass --out PATH for another file, or --force")
            raise typer.Exit(1)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(draft.text, encoding="utf-8")
    else:
        sys.stdout.write(draft.text)
    show = err if to_stdout else console
    written = display_path(target) if target is not None else "-"
    if as_json:
        text = json.dumps({"feed": draft.feed, "out": written, "source": draft.sample.source, "kind": draft.sample.kind,
                           "encoding": draft.sample.encoding, "rows": len(draft.sample.rows),
                           "truncated": draft.sample.truncated, "review": draft.review,
                           "columns": list(summary_rows(draft))}, ensure_ascii=False, indent=2)
        (err.print(text, markup=False, highlight=False) if to_stdout else print(text))
        return
    s = draft.sample
    table = Table(title=f"{draft.feed}: drafted from {escape(s.source)} ({s.kind}"
                        f"{', ' + s.encoding if s.encoding else ''}; {len(s.rows):,} rows"
                        f"{', truncated' if s.truncated else ''})")
    for col in ("#", "header", "name", "type", "req", "key", "empty", "format", "class", "pii", "review"):
        table.add_column(col, justify="right" if col in ("#", "empty") else "left",
                         no_wrap=col in ("header", "name", "type", "class"), overflow="fold")
    for r in summary_rows(draft):
        table.add_row(str(r["position"]), escape(r["header"]), r["name"], r["logicalType"], "yes" if r["required"] else "",
                      "yes" if r["primaryKey"] else "", f"{r['empty']:,}", r["recognised"] or "",
                      r["classification"], "" if r["pii"] == "none" else r["pii"],
                      "[yellow]review[/yellow]" if r["review"] else "")
    show.print(table)
    show.print(f"{draft.review_count} items marked [yellow]reviewNeeded[/yellow] (listed at the top of the file); "
               f"draft written to [bold]{escape(written)}[/bold]")
    show.print(f"then: set version 1.0.0, remove the marks, and [bold]fundx contract release {draft.feed}[/bold]")


def _diff_table(diff, title: str) -> Table:
    table = Table(title=title)
    for col in ("change", "field", "detail", "verdict"):
        table.add_column(col, overflow="fold" if col == "detail" else "ellipsis")
    for c in sorted(diff.changes, key=lambda c: (not c.breaking,)):
        table.add_row(c.change, escape(c.field), escape(c.detail),
                      "[red]breaking[/red]" if c.breaking else "[green]compatible[/green]")
    return table


@contract_app.command("diff")
def contract_diff(
    old: Annotated[Path, typer.Argument(help="the old contract file (e.g. contracts/released/<feed>.odcs.yaml)")],
    new: Annotated[Path, typer.Argument(help="the new contract file")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Classify each change between two contract files as breaking or compatible (docs/contracts-evolution.md).
    Exit 1 for breaking changes without a new major version, 2 for a file that cannot be read."""
    from contracts.diff import ContractReadError, diff_files

    try:
        diff = diff_files(old, new)
    except ContractReadError as exc:
        fail(exc, 2)
    if as_json:
        print(json.dumps(diff.as_dict(), ensure_ascii=False, indent=2))
        raise typer.Exit(diff.exit_code)
    if diff.changes:
        console.print(_diff_table(diff, f"{escape(diff.old)} → {escape(diff.new)}"))
    colour = "green" if not diff.breaking else ("yellow" if diff.allowed else "red")
    console.print(f"[{colour}]{escape(diff.verdict)}[/{colour}]")
    raise typer.Exit(diff.exit_code)


@contract_app.command("release")
def contract_release(
    feed: Annotated[str, typer.Argument(help="the feed whose contract (contracts/<feed>.odcs.yaml) to release")],
) -> None:
    """Copy a feed's contract to contracts/released/ (the copy the CI gate diffs against). Refused (exit 1) for
    breaking changes without a new major version and while items are marked reviewNeeded."""
    from contracts import contract_names, contract_path, display_path
    from contracts.diff import ContractReadError
    from contracts.release import ReleaseRefused, release

    if not contract_path(feed).is_file():
        err.print(f"[red]error:[/red] no contract for feed {feed!r} (known: {', '.join(contract_names()) or 'none'})")
        raise typer.Exit(2)
    try:
        check = release(feed)
    except ReleaseRefused as exc:
        if exc.feed:
            _print_breaking(feed)
        fail(exc, 1)
    except ContractReadError as exc:
        fail(exc, 2)
    target = display_path(check.released)
    if check.diff is None:
        console.print(f"{feed}: first release, version {_version(check)}: copied to [bold]{escape(target)}[/bold]")
        return
    diff = check.diff
    if diff.changes:
        console.print(_diff_table(diff, f"{feed}: released {diff.old_version} → current {diff.new_version}"))
    if not diff.changes and check.identical:
        console.print(f"{feed}: version {diff.new_version} is already released ({escape(target)})")
        return
    console.print(f"{feed}: {escape(diff.verdict)}; released to [bold]{escape(target)}[/bold]")


def _version(check) -> str:
    from contracts.diff import read_contract

    return read_contract(check.current).version


def _print_breaking(feed: str) -> None:
    from contracts.release import check_release

    try:
        check = check_release(feed)
    except Exception:  # noqa: BLE001 - the refusal itself is reported next
        return
    if check.diff is not None and check.diff.breaking and not check.diff.allowed:
        console.print(_diff_table(check.diff, f"{feed}: released {check.diff.old_version} → current {check.diff.new_version}"))


@contract_app.command("check")
def contract_check(
    feed: Annotated[str, typer.Argument(help="the feed whose contract (contracts/<feed>.odcs.yaml) to check against")],
    path: Annotated[Path, typer.Argument(help="the file: Parquet, UTF-8 CSV or xlsx (first sheet), its columns the "
                                              "contract's logical names or the agency's headers")],
    today: Annotated[str | None, typer.Option(help="the day dates may not be after, YYYY-MM-DD (default: today in "
                                                   "Asia/Shanghai)")] = None,
    docs: Annotated[Path | None, typer.Option(help="also have Great Expectations validate the results and write "
                                                   "its Data Docs (counts, no values) into this folder")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable report")] = False,
) -> None:
    """Check a local file against a feed's contract, as a night would check the feed's batch: per rule the rows
    that failed and their share, the verdict, the rows valid and quarantined — counts only, never a value.
    Exit 0 when the batch would go on (failing rows quarantined), 1 when it would be held back whole, 2 for bad
    input (unknown feed, a file that is missing or cannot be read, columns the contract does not have)."""
    day = night_arg(today, "--today")
    from contracts import contract_names, contract_path

    if not contract_path(feed).is_file():
        bad(f"no contract for feed {feed!r} (known: {', '.join(contract_names()) or 'none'})")
    if not path.is_file():
        bad(f"{feed}: {escape(str(path))}: no such file")
    from connectors.localfile import file_kind

    if file_kind(path) is None:
        bad(f"{feed}: {escape(str(path))}: not a .parquet, .csv or .xlsx file")
    _check_file(feed, path, day, docs, as_json)


def _check_file(feed: str, path: Path, day: str | None, docs: Path | None, as_json: bool) -> None:
    from datetime import date

    from connectors.localfile import read_local
    from contracts import load_contract
    from contracts.validate import check
    from fundx.core.errors import FundxError

    try:
        contract = load_contract(feed)
        frame = read_local(contract, path)
    except FundxError as exc:  # the contract cannot be read, nor the file as the feed's
        fail(exc, 2)
    checked = check(contract, frame, today=date.fromisoformat(day) if day else None, gx=bool(docs))
    report = checked.report
    index = None
    if docs is not None:
        from contracts.docs import write_feed_report

        index = write_feed_report(docs, checked)
    if as_json:
        print(json.dumps({**report, "file": str(path), "docs": str(index) if index else None},
                         ensure_ascii=False, indent=1, default=str))
        raise typer.Exit(1 if checked.rejected else 0)
    table = Table(title=f"{feed} (contract {report['contract_version']}): {escape(str(path))}, {report['rows']:,} rows")
    for col in ("rule", "kind", "failed", "of rows"):
        table.add_column(col, justify="right" if col in ("failed", "of rows") else "left")
    for rule in report["rules"]:
        percent = "" if rule["percent"] is None else f"{rule['percent']:.2f} %"
        style = "red" if rule["failed"] else ""
        table.add_row(escape(rule["rule"]), rule["kind"], f"[{style}]{rule['failed']:,}[/{style}]" if style
                      else f"{rule['failed']:,}", percent)
    console.print(table)
    changed = sum(sum(kinds.values()) for kinds in report["normalisation"].values())
    console.print(f"rows: {report['rows']:,}; valid {report['valid']:,}, quarantined {report['quarantined']:,}; "
                  f"values repaired by the contract's normalisation: {changed:,}")
    if checked.rejected:
        console.print(f"verdict: [red]held back whole[/red]: {escape(str(checked.reject_reason))}")
    else:
        console.print("verdict: [green]accepted[/green]" + (" (failing rows quarantined)" if report["quarantined"] else ""))
    if index is not None:
        console.print(f"Data Docs: [bold]{escape(str(index))}[/bold]")
    raise typer.Exit(1 if checked.rejected else 0)
