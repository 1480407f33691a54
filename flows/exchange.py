"""Prefect flows of the exchange: one feed (``exchange_feed``) and a whole night (``nightly_exchange``).

A feed's run is :func:`fundx.exchange.run.run_feed` — lock the feed, recover interrupted deliveries,
deliver rows the stewards released, pull, check the batch against its contract, seal and hand the
valid rows to the stage and the failing ones to the stewards' quarantine — with the release, the
pull, the check and the handoff as Prefect tasks, for every feed alike (a large feed's pull is
streamed in chunks through the encrypted spool: the same tasks). Each check leaves a table artifact per feed
(``contract-<feed>``: rows failing each rule, no values) and the night's Data Docs page under
FUNDX_HOME/reports/<night>/.

Flow parameters are feed names and times only — Prefect stores them in plain text. Pulled rows
stay in this process's memory until they are sealed (results are never persisted) and every
message that reaches Prefect (logs, state messages, artifacts, pickled exceptions) carries counts,
digests, batch ids, windows and error types, never record content.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingResult

from fundx.core.errors import FundxError, InternalError, NightFailed, content_free
from fundx.core.settings import private_umask
from fundx.core.timeutil import Window, aware, now
from fundx.exchange import acks, handoff, run
from fundx.ledger import Ledger
from fundx.ledger.runs import night_of

#: Set by the CLI to show live progress: called with (feed, rows so far). None in unattended runs.
progress_sink: Callable[[str, int], None] | None = None


@dataclass(frozen=True)
class FeedOutcome:
    """What one feed did in a run: counts and error type only (safe to log and to return)."""

    feed: str
    outcome: str  # pulled | held (whole batch held for the stewards) | failed
    window: str
    rows: int = 0
    valid: int = 0
    quarantined: int = 0
    released: int = 0  # rows the stewards released, delivered in this run
    bytes: int = 0
    pages: int = 0
    retries: int = 0
    duration_s: float = 0.0
    digest: str | None = None
    error_type: str | None = None
    error: str | None = None
    action: str | None = None
    handoff: str | None = None  # delivered | already_delivered | empty
    batch_id: str | None = None
    stage: str | None = None
    parts: int = 0


def _ledger() -> Ledger:
    return Ledger.from_settings()




@task(name="pull", cache_policy=NO_CACHE, persist_result=False)
def pull_task(feed: str, window: Window, stream: bool = False):
    """Extract one feed's window from its agency: rows in memory, or in chunks through the encrypted spool."""
    sink = progress_sink
    progress = (lambda rows: sink(feed, rows)) if sink else None
    try:
        return handoff.pull_feed(feed, window, stream=stream, progress=progress)
    except Exception as exc:  # noqa: BLE001 - re-raised content-free: Prefect may persist the task's own exception
        raise content_free(exc) from None


@task(name="validate", cache_policy=NO_CACHE, persist_result=False)
def validate_task(ledger: Ledger, pulled, runner=None, steps=None):
    """Check the pulled batch against its contract (Great Expectations), whole or chunk by chunk."""
    try:
        checked = handoff.check_pull(ledger, pulled, runner=runner, steps=steps)
    except Exception as exc:  # noqa: BLE001 - re-raised content-free: Prefect may persist the task's own exception
        raise content_free(exc) from None
    _contract_artifact(checked.report)
    return checked


@task(name="release", cache_policy=NO_CACHE, persist_result=False)
def release_task(ledger: Ledger, feed: str, **kwargs) -> list[handoff.Handoff]:
    """Deliver the rows the stewards released since the feed's last run (see fundx.exchange.quarantine)."""
    try:
        return handoff.deliver_releases(ledger, feed, **kwargs)
    except Exception as exc:  # noqa: BLE001 - re-raised content-free: Prefect may persist the task's own exception
        raise content_free(exc) from None


@task(name="handoff", cache_policy=NO_CACHE, persist_result=False)
def handoff_task(ledger: Ledger, batch, **kwargs) -> handoff.Handoff:
    """Seal the checked batch and hand it to its stage exactly once (see fundx.exchange.handoff)."""
    try:
        return handoff.deliver(ledger, batch, **kwargs)
    except Exception as exc:  # noqa: BLE001 - re-raised content-free: Prefect may persist the task's own exception
        raise content_free(exc) from None


@flow(name="exchange-feed", persist_result=False, validate_parameters=True)
def exchange_feed(
    feed: str,
    run_id: int | None = None,
    start: str | None = None,
    end: str | None = None,
) -> FeedOutcome:
    """Pull one feed from its watermark (or the given window, as a backfill), seal it, hand it to its stage."""
    done = run.run_feed(feed, run_id=run_id, start=start, end=end, ledger=_ledger(), pull=pull_task,
                            validate=validate_task, handoff=handoff_task, release=release_task,
                            logger=get_run_logger())
    h = done.handoff
    _delivered_event(feed, done)
    return FeedOutcome(
        feed=feed, outcome="pulled", window=str(done.window), rows=done.rows, valid=done.valid,
        quarantined=done.quarantined, released=sum(r.rows for r in done.released), bytes=done.bytes,
        pages=done.pages, retries=done.retries, duration_s=done.duration_s, digest=done.digest,
        handoff=h.outcome, batch_id=h.batch_id, stage=h.stage, parts=h.parts,
    )


@flow(name="nightly-exchange", persist_result=False, validate_parameters=True)
def nightly_exchange(feeds: list[str] | None = None, end: str | None = None) -> list[FeedOutcome]:
    """Run every feed of the night; one agency failing does not stop the others.

    The night ends Failed, naming the failed feeds and why, when any feed failed.
    """
    from connectors import feed_names

    private_umask()  # a worker's flow run: whatever umask the worker was started with
    logger = get_run_logger()
    ledger = _ledger()
    names = feeds or feed_names()
    end = end or now().isoformat()
    from prefect.runtime import flow_run

    run_id = ledger.start_run("night", night_of(aware(end)), flow_run_id=str(flow_run.id) if flow_run.id else None)
    outcomes: list[FeedOutcome] = []
    for name in names:
        state = exchange_feed(name, run_id=run_id, end=end, return_state=True)
        if state.is_completed():
            try:
                outcomes.append(state.result())
            except MissingResult:
                # Prefect can hand back a completed subflow's state as its API stored it, without the
                # (never persisted) result, when the flow run's connection to the server lagged under
                # load; the feed's work is done and in the ledger, which says what it was
                outcomes.append(_outcome_from_ledger(ledger, run_id, name))
            continue
        error = _state_error(state)
        record = next((p for p in reversed(ledger.pulls_of_run(run_id)) if p.feed == name), None)
        held = record is not None and record.outcome == "held"
        held_rows = (record.rows or 0) if record is not None and held else 0
        outcomes.append(
            FeedOutcome(
                feed=name, outcome="held" if held else "failed", window=str(record.window) if record else "",
                rows=held_rows, quarantined=held_rows,
                error_type=error.kind, error=str(error), action=error.action,
            )
        )
    failed = [o for o in outcomes if o.outcome in ("failed", "held")]
    summary = "; ".join(f"{o.feed} ({o.error_type}: {o.action})" for o in failed)
    ledger.finish_run(run_id, feeds=len(outcomes), failed=len(failed), summary=summary)
    _record_answers(ledger, logger)
    _night_artifact(outcomes)
    _check_service_levels(run_id, ledger, logger)
    _purge(ledger, logger, end)
    verdict = ledger.verify_audit()  # logged, so that the head is kept outside the ledger too
    logger.info("audit head: entry %d, hash %s%s", verdict.head_seq, verdict.head_hash,
                "" if verdict.ok else f" — BROKEN at entry {verdict.bad_seq}: {verdict.problem}")
    if failed:
        logger.error("night finished with %d of %d feeds failed", len(failed), len(outcomes))
        raise NightFailed(f"{len(failed)} of {len(outcomes)} feeds failed: {summary}")
    logger.info("night finished: %d feeds, %d rows pulled, %d valid, %d quarantined", len(outcomes),
                sum(o.rows for o in outcomes), sum(o.valid for o in outcomes), sum(o.quarantined for o in outcomes))
    return outcomes


def _delivered_event(feed: str, done) -> None:
    """``fundx.feed.delivered`` for the feed: what the proactive SLA automation waits for."""
    from prefect.events import emit_event

    try:
        emit_event(event="fundx.feed.delivered",
                   resource={"prefect.resource.id": f"fundx.feed.{feed}", "prefect.resource.name": feed},
                   payload={"rows": done.rows, "valid": done.valid, "quarantined": done.quarantined,
                            "window_end": done.window.end.isoformat()})
    except Exception:  # noqa: BLE001, S110 - an event is a convenience; the ledger holds the delivery
        pass


def _check_service_levels(run_id: int, ledger: Ledger, logger) -> None:
    """The SLA monitor for this night; its failure is logged and does not change the night's outcome."""
    from flows.monitor import table_artifact
    from fundx.sla import monitor

    try:
        done = monitor.check(ledger, night=ledger.run_night(run_id), logger=logger)
        table_artifact(done)
    except Exception as exc:  # noqa: BLE001 - the monitor's failure is logged; the night's deliveries stand
        logger.error("the SLA monitor could not judge the night: %s — %s", content_free(exc).kind,
                     content_free(exc).action)


@task(name="purge", cache_policy=NO_CACHE, persist_result=False)
def purge_task(end: str) -> dict:
    """Remove what is past its contract's retention and compact the stores (see matching.retention)."""
    from matching.retention import purge, summary_rows

    report = purge(ledger=_ledger(), now=aware(end))
    return {"rows": summary_rows(report), "kept": report.notes, "problems": report.problems}


def _purge(ledger: Ledger, logger, end: str) -> None:
    """The nightly purge, as of the night's end; its failure is logged and does not change the night's outcome."""
    state = purge_task(end, return_state=True)
    if not state.is_completed():
        error = _state_error(state)
        logger.error("the nightly purge did not run: %s — %s", error.kind, error.action)
        return
    done = state.result()
    rows = done["rows"]
    logger.info("purge: %d removed (%s); %d kept with a reason", sum(r["count"] for r in rows),
                ", ".join(sorted({r["kind"] for r in rows})) or "nothing past its retention", len(done["kept"]))
    for problem in done["problems"]:
        logger.error("purge: %s", problem)
    try:
        create_table_artifact(table=rows or [{"feed": "", "kind": "", "what": "nothing past its retention", "count": 0}],
                              key="retention", description="What the night's purge removed, per feed and kind (counts only)")
    except Exception:  # noqa: BLE001, S110 - an artifact is a convenience; the audit trail holds the counts
        pass


def _record_answers(ledger: Ledger, logger) -> None:
    """Record the stages' answers to earlier nights (and to this one, if a stage was quick).

    A failure here does not undo the night's deliveries: it is logged with what to do, and the
    answers are recorded by the next night or by `fundx stage receive`.
    """
    try:
        answers = acks.record_acks(ledger, logger=logger)
    except FundxError as error:
        logger.error("the stages' answers could not be recorded: %s — %s", error.kind, error.action)
        return
    if answers.invalid or answers.refused:
        logger.warning("stages' answers: %d refusals, %d answers whose signature was refused",
                       answers.refused, answers.invalid)


def _outcome_from_ledger(ledger: Ledger, run_id: int, feed: str) -> FeedOutcome:
    """A completed feed's outcome from its pull recorded in this run (counts only)."""
    record = next((p for p in reversed(ledger.pulls_of_run(run_id)) if p.feed == feed), None)
    if record is None:
        return FeedOutcome(feed=feed, outcome="pulled", window="")
    return FeedOutcome(feed=feed, outcome=record.outcome, window=str(record.window), rows=record.rows or 0,
                       bytes=record.bytes or 0, pages=record.pages or 0, retries=record.retries or 0,
                       duration_s=record.duration_s, digest=record.digest)


def _state_error(state) -> FundxError:
    try:
        state.result(raise_on_failure=True)
    except BaseException as exc:  # noqa: BLE001 - the subflow's own exception, already recorded by exchange_feed
        return content_free(exc)
    return InternalError(f"feed ended in state {state.type.value}")


def _contract_artifact(report: dict) -> None:
    """A table artifact per feed and run: rows failing each rule of its contract (counts, never values)."""
    rows = [
        {"rule": r["rule"], "kind": r["kind"], "failed": r["failed"],
         "percent": "" if r["percent"] is None else f"{r['percent']:.2f}", "what it checks": r["description"]}
        for r in report["rules"]
    ]
    verdict = f"held back whole: {report['reject_reason']}" if report["rejected"] else "accepted"
    create_table_artifact(
        table=rows, key="contract-" + re.sub(r"[^a-z0-9-]+", "-", report["feed"].lower()),
        description=(f"{report['feed']} (contract {report['contract_version']}): {report['rows']} rows, "
                     f"{report['valid']} valid, {report['quarantined']} quarantined; {verdict}"),
    )


def _night_artifact(outcomes: list[FeedOutcome]) -> None:
    rows = [
        {
            "feed": o.feed, "outcome": o.outcome, "rows": o.rows, "valid": o.valid, "quarantined": o.quarantined,
            "released": o.released, "bytes": o.bytes,
            "seconds": round(o.duration_s, 2), "handoff": o.handoff or "", "batch": o.batch_id or "",
            "parts": o.parts, "error": o.error_type or "", "action": o.action or "",
        }
        for o in outcomes
    ]
    create_table_artifact(table=rows, key="night-summary",
                          description="Rows pulled, valid, quarantined and handed over per feed (counts and ids only)")

