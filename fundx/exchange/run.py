"""One feed, start to end: :func:`run_feed` — lock, recover, deliver released rows, pull, check, deliver.

The same steps for every feed, whether its rows are read whole or streamed in chunks through the
encrypted spool (fundx.exchange.stream); the Prefect flow (flows.exchange) passes its tasks for the pull,
the check, the handoff and the releases, so every feed shows the same tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fundx.core.errors import BatchHeld, HandoffPending, content_free
from fundx.core.settings import get_settings
from fundx.core.testpoints import kill_point  # TEST ONLY: the SIGKILL tests' and the chaos night's kill points
from fundx.core.timeutil import Window, aware, now
from fundx.exchange.batch import CheckedBatch, Steps
from fundx.exchange.handoff import Handoff, check_pull, close_pull, deliver, deliver_releases, handed_over, pull_feed
from fundx.exchange.recovery import recover
from fundx.ledger import Ledger
from fundx.ledger.runs import night_of

log = logging.getLogger("fundx.handoff")


@dataclass(frozen=True)
class FeedRun:
    """What one run of a feed did: the pull's figures and the handoff (no rows: safe to return)."""

    feed: str
    window: Window
    rows: int
    bytes: int
    pages: int
    retries: int
    duration_s: float
    digest: str
    handoff: Handoff
    recovered: tuple[str, ...] = ()
    valid: int = 0
    quarantined: int = 0
    released: tuple[Handoff, ...] = ()  # batches of rows the stewards released, delivered by this run
    report: dict[str, Any] | None = None  # the contract check's report: counts per rule, no values
    #: the run's steps (pull, normalise, validate, seal, handoff): seconds, rows, peak_rss_bytes
    steps: dict[str, dict[str, Any]] | None = None


def write_report(ledger: Ledger, run_id: int, checked: Any,
                 logger: logging.Logger | logging.LoggerAdapter | None = None) -> Path | None:
    """The feed's page of the night's Data Docs (FUNDX_HOME/reports/<night>/); a failure is only logged."""
    from contracts.docs import write_feed_report

    try:
        return write_feed_report(get_settings().home / "reports" / ledger.run_night(run_id), checked)
    except Exception as exc:  # noqa: BLE001 - the report must never stop a feed's delivery
        (logger or log).error("%s: the validation report could not be written (%s)", checked.feed,
                              content_free(exc).kind)
        return None


def plan_window(ledger: Ledger, feed: str, start: str | None, end: str | None) -> tuple[Window, bool]:
    """The window to pull: from the feed's watermark to ``end`` (default now); a given start is a backfill."""
    until = aware(end) if end else now()
    if start:
        return Window(aware(start), until), True
    since = ledger.watermark(feed) or get_settings().initial_watermark
    return Window(min(since, until), until), False


def run_feed(
    feed: str,
    *,
    run_id: int | None = None,
    start: str | None = None,
    end: str | None = None,
    ledger: Ledger | None = None,
    pull: Callable[..., Any] | None = None,
    validate: Callable[..., CheckedBatch] | None = None,
    handoff: Callable[..., Handoff] | None = None,
    release: Callable[..., list[Handoff]] | None = None,
    logger: logging.Logger | logging.LoggerAdapter | None = None,
    stream: bool | None = None,
    runner: Any = None,
) -> FeedRun:
    """One feed: lock it, recover interrupted deliveries, deliver what the stewards released, pull
    its window, check the batch against its contract, hand the valid rows to its stage and the
    failing ones to the stewards' quarantine — the same steps whether its rows are read whole or, for a
    large feed, streamed in chunks through a spool (``stream``, default: the feed config's ``stream``).

    ``pull(feed, window, stream=...)``, ``validate(ledger, pulled, runner=, steps=)``,
    ``handoff(ledger, batch, ...)`` and ``release`` default to :func:`pull_feed`, :func:`check_pull`,
    :func:`deliver` and :func:`deliver_releases`; the Prefect flow passes its tasks, so every feed shows
    the same tasks. A streamed batch's chunks are checked and its parts sealed through ``runner``
    (default: FUNDX_TASK_RUNNER, see :mod:`fundx.exchange.runners`). A failure is recorded in the ledger (type and
    content-free message) and raised as a fundx error; a batch held back whole raises BatchHeld after it
    is recorded. Each step's seconds, rows and peak memory are in the result's ``steps``.
    """
    from contextlib import nullcontext

    logger = logger or log
    ledger = ledger or Ledger.from_settings()
    pull = pull or pull_feed
    validate = validate or check_pull
    handoff = handoff or deliver
    release = release or deliver_releases
    own_run = run_id is None
    if own_run:
        run_id = ledger.start_run("backfill" if start else "feed", night_of(now()))
    assert run_id is not None
    started = now()
    window: Window | None = None
    backfill = bool(start)
    streamed = _streamed(feed, stream)
    steps = Steps()
    pulled: Any = None
    batch: CheckedBatch | None = None
    try:
        with ledger.feed_lock(feed):
            recovered = recover(ledger, feed, logger=logger)
            kill_point("after_recover")
            released = tuple(release(ledger, feed, run_id=run_id, logger=logger))
            window, backfill = plan_window(ledger, feed, start, end)
            if backfill:
                ledger.log_event("backfill.requested", feed, {"window": [window.start.isoformat(), window.end.isoformat()],
                                                              "run_id": run_id})
            logger.info("%s: pulling %s%s%s", feed, window, " (backfill)" if backfill else "",
                        " in chunks" if streamed else "")
            with steps.step("pull") as figures:
                pulled = pull(feed, window, stream=streamed)
                figures["rows"] = pulled.rows
            kill_point("after_pull")
            result = handed_over(ledger, pulled, run_id=run_id, started_at=started, backfill=backfill, logger=logger)
            if result is None:
                if streamed:
                    from fundx.exchange.runners import runner_from_settings

                    runner = runner if runner is not None else runner_from_settings()
                with runner if streamed else nullcontext():  # a cluster, if the runner starts one, serves the batch
                    batch = validate(ledger, pulled, runner=runner, steps=steps)
                    kill_point("after_check")
                    write_report(ledger, run_id, batch, logger)
                    result = handoff(ledger, batch, run_id=run_id, started_at=started, backfill=backfill,
                                     steps=steps, logger=logger)
    except BaseException as exc:
        error = content_free(exc)
        if not isinstance(error, (HandoffPending, BatchHeld)):  # their pull is recorded already
            failed_window = window or Window(started, started)
            ledger.record_failure(run_id, feed, failed_window, error, started_at=started, backfill=backfill)
        if own_run:
            ledger.finish_run(run_id, feeds=1, failed=1, summary=f"{feed}: {error.kind}")
        logger.error("%s failed: %s — %s", feed, error.kind, error.action)
        if error is exc:
            raise
        raise error from None
    finally:
        close_pull(pulled)
    if own_run:
        ledger.finish_run(run_id, feeds=1, failed=0)
    figures = steps.as_dict()
    logger.info("%s: %d rows, %d bytes, %d pages, %d retries in %.1f s, %s; %s; %s", feed, pulled.rows, pulled.bytes,
                pulled.pages, pulled.retries, pulled.duration_s, pulled.digest, result.outcome.replace("_", " "),
                ", ".join(f"{name} {f['seconds']:.1f} s" + (f" (peak {f['peak_rss_bytes'] / 2**20:.0f} MiB)"
                                                             if f["peak_rss_bytes"] else "")
                          for name, f in figures.items()))
    report = batch.report if batch is not None else None
    return FeedRun(feed, window, pulled.rows, pulled.bytes, pulled.pages, pulled.retries, pulled.duration_s,
                   pulled.digest, result, tuple(recovered), valid=report["valid"] if report else 0,
                   quarantined=result.quarantined, released=released, report=report, steps=figures)


def _streamed(feed: str, stream: bool | None) -> bool:
    if stream is not None:
        return stream
    from connectors import load_feed

    return bool(load_feed(feed).stream)
