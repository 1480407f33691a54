"""The checks of what a pull brings: (a) connection, (b) paging, (c) incremental, (d) rerun and (e) contract."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from connectors.base import Pull, deduplicate
from connectors.config import FeedConfig
from fundx.core.digest import content_digest
from fundx.core.timeutil import SHANGHAI, Window, aware
from onboarding.conformance.context import Context
from onboarding.conformance.probing import keys_of, plural, window_text, with_page_size
from onboarding.conformance.results import CheckFailed

#: the last days pulled by the connection check
CONNECTION_DAYS = 30


# --- (a) connection and auth ------------------------------------------------------------------


def check_connection(ctx: Context) -> str:
    start = max(ctx.window.start, ctx.window.end - timedelta(days=CONNECTION_DAYS))
    window = Window(start, ctx.window.end)
    pull = ctx.connector().extract(window)
    if list(pull.frame.columns) != list(ctx.contract.names):
        raise CheckFailed(f"{ctx.feed}: the pull's columns are not the contract's columns in contract order")
    return (f"{ctx.feed}: pulled {plural(pull.rows, 'row')} of the last {CONNECTION_DAYS} days in "
            f"{plural(pull.pages, 'page')} ({pull.duration_s:.2f} s)")


# --- (b) paging -------------------------------------------------------------------------------


@dataclass
class _Page:
    number: int
    keys: list[Any]
    total: Any = None


class _Runaway(Exception):
    """Raised from the page hook when a pull reads more pages than it possibly could."""


def _paged_pull(ctx: Context, config: FeedConfig, max_pages: int) -> tuple[Pull, list[_Page], int]:
    """A pull that records every page as the connector received it (before de-duplication).

    The REST connector's ``_page`` is wrapped on this one instance: each page's keys (and the
    total the agency announced, for page/size paging) are recorded as they arrive; a pull reading
    more than ``max_pages`` pages is stopped. The progress callback gives the raw record count.
    """
    connector = ctx.connector(config)
    pages: list[_Page] = []
    total_field = getattr(config.rest.paging, "total", None) if config.rest is not None else None
    original = getattr(connector, "_page", None)
    if original is not None:
        def page(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            body, keys = out[0], out[2]
            total = body.get(total_field) if total_field and isinstance(body, Mapping) else None
            pages.append(_Page(len(pages) + 1, list(keys), total))
            if len(pages) > max_pages:
                raise _Runaway(len(pages))
            return out

        connector._page = page  # type: ignore[attr-defined]
    received = [0]

    def progress(rows: int) -> None:
        received[0] = rows

    try:
        pull = connector.extract(ctx.window, progress=progress)
    except _Runaway:
        raise CheckFailed(
            f"{ctx.feed}: paging did not end: more than {max_pages} pages of {config.rest.paging.page_size} "  # type: ignore[union-attr]
            f"for a window the agency serves in fewer; its next-page answer must come back to an end"
        ) from None
    return pull, pages, received[0]


def _repeats(pages: list[_Page]) -> list[tuple[int, int, int, list[int]]]:
    """(page, records on it, records already received, the pages they first came on) for each repeating page."""
    first_seen: dict[Any, int] = {}
    found = []
    for page in pages:
        again = [k for k in page.keys if k in first_seen]
        if again:
            found.append((page.number, len(page.keys), len(again), sorted({first_seen[k] for k in again})))
        for k in page.keys:
            first_seen.setdefault(k, page.number)
    return found


def _paging_problems(ctx: Context, pull: Pull, pages: list[_Page], received: int, size: int) -> list[str]:
    problems = []
    for number, count, again, earlier in _repeats(pages):
        where = f"page {earlier[0]}" if len(earlier) == 1 else "pages " + ", ".join(map(str, earlier))
        problems.append(
            f"page {number} (pages of {size}) repeats {again} of its {count} records, already received on {where}; "
            f"the connector's de-duplication by key hides it"
        )
    if not pages and received > pull.rows:
        problems.append(f"{received} records arrived for {pull.rows} distinct keys (pages of {size}): records repeat")
    totals = [p.total for p in pages if p.total is not None]
    if totals:
        try:
            announced = int(totals[-1])
        except (TypeError, ValueError):
            announced = None
        if announced is not None and announced != pull.rows:
            problems.append(f"the agency announced {announced} rows, {pull.rows} distinct rows arrived (pages of {size})")
    return problems


def check_paging(ctx: Context) -> str:
    assert ctx.config.rest is not None
    configured = ctx.config.rest.paging.page_size
    expected = ctx.expected(ctx.window.start, ctx.window.end) if ctx.expected is not None else None
    rows_hint = len(expected) if expected is not None else None

    def cap(size: int) -> int:
        return 10_000 if rows_hint is None else math.ceil(rows_hint / size) * 2 + 10

    pull, pages, received = _paged_pull(ctx, ctx.config, cap(configured))
    problems = _paging_problems(ctx, pull, pages, received, configured)
    runs = [f"{len(pages) or pull.pages} {'page' if (len(pages) or pull.pages) == 1 else 'pages'} of {configured}"]
    # again in pages small enough that the window takes several: where paging bugs show
    small = max(1, min(configured, math.ceil(pull.rows / 4))) if pull.rows > 1 else None
    if small is not None and small < configured:
        small_pull, small_pages, small_received = _paged_pull(ctx, with_page_size(ctx.config, small), cap(small))
        problems += _paging_problems(ctx, small_pull, small_pages, small_received, small)
        key = ctx.contract.key
        mine, theirs = keys_of(pull.frame, key), keys_of(small_pull.frame, key)
        if mine != theirs:
            problems.append(f"pages of {small} gave {len(theirs - mine)} keys that pages of {configured} did not, "
                            f"and missed {len(mine - theirs)}")
        runs.append(f"{len(small_pages) or small_pull.pages} pages of {small}")
    if expected is not None:
        key = ctx.contract.key
        want, got = keys_of(expected, key), keys_of(pull.frame, key)
        if want != got:
            problems.append(f"{len(want - got)} of the {len(want)} rows the agency serves for the window are missing "
                            f"and {len(got - want)} it does not serve arrived")
    if problems:
        raise CheckFailed(f"{ctx.feed}: paging: " + "; ".join(problems))
    against = " = the agency's rows for the window" if expected is not None else ""
    return f"{ctx.feed}: {pull.rows} rows{against}, each received once in " + " and in ".join(runs)


# --- (c) incremental --------------------------------------------------------------------------


def _moments(values: pd.Series) -> pd.Series:
    """Incremental values as aware datetimes (naive ones are Asia/Shanghai local time); unreadable: NaT."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values.dt.tz_localize(SHANGHAI)

    def one(value: Any) -> Any:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return pd.NaT
        try:
            return pd.Timestamp(aware(value if isinstance(value, datetime) else str(value)))
        except (ValueError, TypeError):
            return pd.NaT

    return values.map(one)


def _split_point(ctx: Context, whole: Pull) -> datetime:
    """A moment inside the window that splits the feed's rows (or files) about in half."""
    start, end = ctx.window.start, ctx.window.end
    middle = start + (end - start) / 2
    connector = ctx.connector()
    arrivals = getattr(connector, "arrivals", None)
    if callable(arrivals):
        times = sorted({t for t, _, _ in arrivals(ctx.window)})
        if len(times) >= 2:
            return times[len(times) // 2]
        return middle
    column = ctx.contract.incremental
    if column is None or whole.rows == 0:
        return middle
    moments = _moments(whole.frame[column]).dropna()
    if moments.empty:
        return middle
    moment = pd.Timestamp(sorted(moments.tolist())[len(moments) // 2]).to_pydatetime()
    return moment if start < moment < end else middle


def check_incremental(ctx: Context) -> str:
    whole = ctx.full_pull()
    split = _split_point(ctx, whole)
    before, after = Window(ctx.window.start, split), Window(split, ctx.window.end)
    connector = ctx.connector()
    first = connector.extract(before)
    second = connector.extract(after)
    key = ctx.contract.key
    a, b, all_keys = keys_of(first.frame, key), keys_of(second.frame, key), keys_of(whole.frame, key)
    problems, notes = [], []
    arrivals = getattr(connector, "arrivals", None)
    if callable(arrivals):  # a file drop windows files: each file in one window, a key may be in several snapshots
        files_a = {p.name for _, p, _ in arrivals(before)}
        files_b = {p.name for _, p, _ in arrivals(after)}
        files_all = {p.name for _, p, _ in arrivals(ctx.window)}
        if files_a & files_b:
            problems.append(f"{len(files_a & files_b)} files were taken in both windows")
        if files_a | files_b != files_all:
            problems.append(f"{len(files_all - (files_a | files_b))} files of the whole window were in neither half")
        if a & b:
            notes.append(f"{len(a & b)} keys are in files of both halves (snapshots: the latest file wins)")
        unit = f"{len(files_a)} + {len(files_b)} files"
    else:
        if a & b:
            problems.append(f"{len(a & b)} keys were pulled in both {window_text(before)} and {window_text(after)}: "
                            f"a pull from the watermark brings rows again")
        unit = f"{first.rows} + {second.rows} rows"
    if a | b != all_keys:
        problems.append(f"the two halves have {len((a | b) - all_keys)} keys the whole window has not, "
                        f"and miss {len(all_keys - (a | b))} of its keys")
    joined = deduplicate(pd.concat([first.frame, second.frame], ignore_index=True), key, ctx.contract.incremental)
    if not problems and content_digest(joined) != whole.digest:
        problems.append("the two halves' rows together differ in content from the whole window's rows")
    if problems:
        raise CheckFailed(f"{ctx.feed}: incremental pull split at {split.astimezone(SHANGHAI):%Y-%m-%d %H:%M}: "
                          + "; ".join(problems))
    if first.rows == 0 or second.rows == 0:
        notes.append("one half is empty, so this says little")
    note = f" ({'; '.join(notes)})" if notes else ""
    return (f"{ctx.feed}: {window_text(before)} then {window_text(after)}: {unit}, disjoint, "
            f"together the {whole.rows} rows of the whole window{note}")


# --- (d) rerun --------------------------------------------------------------------------------


def check_rerun(ctx: Context) -> str:
    first = ctx.full_pull()
    again = ctx.connector().extract(ctx.window)
    if again.rows != first.rows or keys_of(again.frame, ctx.contract.key) != keys_of(first.frame, ctx.contract.key):
        raise CheckFailed(f"{ctx.feed}: a rerun of {window_text(ctx.window)} gave {again.rows} rows after {first.rows}, "
                          f"not the same keys")
    if again.digest != first.digest:
        raise CheckFailed(f"{ctx.feed}: a rerun of {window_text(ctx.window)} gave the same {again.rows} keys but "
                          f"different content ({again.digest[:19]}… after {first.digest[:19]}…)")
    return f"{ctx.feed}: a rerun of the window gave the same {again.rows} rows ({again.digest[:19]}…)"


# --- (e) contract -----------------------------------------------------------------------------


def check_contract(ctx: Context) -> str:
    from contracts.validate import check

    pull = ctx.full_pull()
    checked = check(ctx.contract, pull.frame, today=ctx.today)
    report = checked.report
    policy = report["policy"]
    if report.get("schema_break"):
        raise CheckFailed(f"{ctx.feed}: the rows break contract {ctx.contract.feed} {ctx.contract.version}: "
                          f"{checked.reject_reason}")
    if checked.rejected:
        raise CheckFailed(f"{ctx.feed}: contract {ctx.contract.feed} {ctx.contract.version} would hold the batch "
                          f"back: {checked.reject_reason}")
    rows = report["rows"]
    share = 100.0 * report["quarantined"] / rows if rows else 0.0
    return (f"{ctx.feed}: {rows} rows fit contract {ctx.contract.feed} {ctx.contract.version}: "
            f"{report['quarantined']} quarantined ({share:.2f} %), within its "
            f"{policy['reject_above_failed_percent']:g} % batch policy")
