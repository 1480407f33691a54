"""Prefect flows of the exchange: one feed (``exchange_feed``) and a whole night (``nightly_exchange``).

Flow parameters are feed names and times only — Prefect stores them in plain text. Pulled rows
stay in this process's memory (results are never persisted) and every message that reaches
Prefect (logs, state messages, artifacts, pickled exceptions) carries counts, digests, windows and
error types, never record content.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from fundx.errors import FundxError, InternalError, NightFailed
from fundx.ledger import Ledger, night_of
from fundx.settings import get_settings
from fundx.timeutil import Window, aware, now

#: Set by the CLI to show live progress: called with (feed, rows so far). None in unattended runs.
progress_sink: Callable[[str, int], None] | None = None


@dataclass(frozen=True)
class FeedOutcome:
    """What one feed did in a run: counts and error type only (safe to log and to return)."""

    feed: str
    outcome: str  # pulled | failed
    window: str
    rows: int = 0
    bytes: int = 0
    pages: int = 0
    retries: int = 0
    duration_s: float = 0.0
    digest: str | None = None
    error_type: str | None = None
    error: str | None = None
    action: str | None = None


def _ledger() -> Ledger:
    return Ledger.from_settings()


def plan_window(ledger: Ledger, feed: str, start: str | None, end: str | None) -> tuple[Window, bool]:
    """The window to pull: from the feed's watermark to ``end`` (default now); a given start is a backfill."""
    until = aware(end) if end else now()
    if start:
        return Window(aware(start), until), True
    since = ledger.watermark(feed) or get_settings().initial_watermark
    return Window(min(since, until), until), False


def _safe(error: BaseException) -> FundxError:
    """A fundx error as it is, anything else as an InternalError that names only its type and place."""
    if isinstance(error, FundxError):
        return error
    frames = traceback.extract_tb(error.__traceback__)
    where = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else "?"
    # the original message may quote a value from a record: it is dropped on purpose
    return InternalError(f"unexpected {type(error).__name__} at {where}")


@task(name="pull", cache_policy=NO_CACHE, persist_result=False)
def pull_task(feed: str, window: Window):
    """Extract one feed's window from its agency (rows stay in memory)."""
    from connectors import connector_for

    sink = progress_sink
    progress = (lambda rows: sink(feed, rows)) if sink else None
    return connector_for(feed).extract(window, progress=progress)


@flow(name="exchange-feed", persist_result=False, validate_parameters=True)
def exchange_feed(
    feed: str,
    run_id: int | None = None,
    start: str | None = None,
    end: str | None = None,
) -> FeedOutcome:
    """Pull one feed from its watermark (or the given window, as a backfill) and record it in the ledger."""
    logger = get_run_logger()
    ledger = _ledger()
    own_run = run_id is None
    if own_run:
        run_id = ledger.start_run("backfill" if start else "feed", night_of(now()))
    window, backfill = plan_window(ledger, feed, start, end)
    started = now()
    logger.info("%s: pulling %s%s", feed, window, " (backfill)" if backfill else "")
    try:
        pulled = pull_task(feed, window)
    except BaseException as exc:  # recorded, then raised again: the flow run fails with a safe error
        error = _safe(exc)
        ledger.record_failure(run_id, feed, window, error, started_at=started, backfill=backfill)
        if own_run:
            ledger.finish_run(run_id, feeds=1, failed=1, summary=f"{feed}: {error.kind}")
        logger.error("%s failed: %s — %s", feed, error.kind, error.action)
        if error is exc:
            raise
        raise error from None
    ledger.record_pull(run_id, pulled, started_at=started, backfill=backfill)
    if own_run:
        ledger.finish_run(run_id, feeds=1, failed=0)
    logger.info(
        "%s: %d rows, %d bytes, %d pages, %d retries in %.1f s, %s",
        feed, pulled.rows, pulled.bytes, pulled.pages, pulled.retries, pulled.duration_s, pulled.digest,
    )
    return FeedOutcome(
        feed=feed, outcome="pulled", window=str(window), rows=pulled.rows, bytes=pulled.bytes,
        pages=pulled.pages, retries=pulled.retries, duration_s=pulled.duration_s, digest=pulled.digest,
    )


@flow(name="nightly-exchange", persist_result=False, validate_parameters=True)
def nightly_exchange(feeds: list[str] | None = None, end: str | None = None) -> list[FeedOutcome]:
    """Run every feed of the night; one agency failing does not stop the others.

    The night ends Failed, naming the failed feeds and why, when any feed failed.
    """
    from connectors import feed_names

    logger = get_run_logger()
    ledger = _ledger()
    names = feeds or feed_names()
    end = end or now().isoformat()
    run_id = ledger.start_run("night", night_of(aware(end)))
    outcomes: list[FeedOutcome] = []
    for name in names:
        state = exchange_feed(name, run_id=run_id, end=end, return_state=True)
        if state.is_completed():
            outcomes.append(state.result())
            continue
        error = _state_error(state)
        record = ledger.pulls_of_run(run_id)
        window = next((str(p.window) for p in reversed(record) if p.feed == name), "")
        outcomes.append(
            FeedOutcome(
                feed=name, outcome="failed", window=window, error_type=error.kind,
                error=str(error), action=error.action,
            )
        )
    failed = [o for o in outcomes if o.outcome == "failed"]
    summary = "; ".join(f"{o.feed} ({o.error_type}: {o.action})" for o in failed)
    ledger.finish_run(run_id, feeds=len(outcomes), failed=len(failed), summary=summary)
    _night_artifact(outcomes)
    if failed:
        logger.error("night finished with %d of %d feeds failed", len(failed), len(outcomes))
        raise NightFailed(f"{len(failed)} of {len(outcomes)} feeds failed: {summary}")
    logger.info("night finished: %d feeds, %d rows", len(outcomes), sum(o.rows for o in outcomes))
    return outcomes


def _state_error(state) -> FundxError:
    try:
        state.result(raise_on_failure=True)
    except BaseException as exc:  # the subflow's own exception, already recorded by exchange_feed
        return _safe(exc)
    return InternalError(f"feed ended in state {state.type.value}")


def _night_artifact(outcomes: list[FeedOutcome]) -> None:
    rows = [
        {
            "feed": o.feed, "outcome": o.outcome, "rows": o.rows, "bytes": o.bytes,
            "seconds": round(o.duration_s, 2), "error": o.error_type or "", "action": o.action or "",
        }
        for o in outcomes
    ]
    create_table_artifact(table=rows, key="night-summary", description="Rows pulled per feed (counts only)")

