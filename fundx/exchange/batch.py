"""A checked batch, whichever way its rows were read: what delivering it needs (:func:`fundx.exchange.handoff.deliver`).

A feed's pull is read whole into memory (:class:`connectors.base.Pull`) or in chunks through an
encrypted spool (:class:`fundx.exchange.stream.SpooledPull`); :func:`fundx.exchange.handoff.check_pull` checks either
against its contract and hands back a :class:`CheckedBatch`. The delivery asks the same of both:

- the pull's figures (``pulled``: feed, window, digest, rows — what the ledger records);
- the contract's verdict and report (``report``: counts per rule, held back whole or not and why);
- the valid rows as Parquet part payloads of at most ``part_bytes``, and their content digest;
- the stewards' rows (the failing ones, or every row of a batch held back) as payloads;
- the event latency of the valid rows, for the SLA.

:class:`WholeBatch` answers from the frames in memory; :class:`fundx.exchange.spooled.SpooledBatch` from the
spool, its parts sealed through a task runner. Neither carries a record into a repr.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from fundx.core.errors import content_free

log = logging.getLogger("fundx.batch")

#: a run's steps, in order (fundx.exchange.run.run_feed)
STEPS = ("pull", "normalise", "validate", "seal", "handoff")


class CheckedBatch(ABC):
    """A pull checked against its contract, ready to deliver (see the module's docstring)."""

    #: the pull's figures (a connectors.base.PullFigures: Pull or SpooledPull)
    pulled: Any
    #: the check's report: counts per rule, the verdict, no values (contracts.validate.check_report)
    report: dict[str, Any]
    #: the Great Expectations suite result, counts only, for Data Docs (None when nothing was checked)
    validation_result: Any = None
    #: seals the batch's parts (fundx.exchange.runners), or None: in this process, one at a time
    runner: Any = None

    @property
    def feed(self) -> str:
        return str(self.pulled.feed)

    @property
    def rows(self) -> int:
        return int(self.report["rows"])

    @property
    def valid_rows(self) -> int:
        return int(self.report["valid"])

    @property
    def quarantined_rows(self) -> int:
        return int(self.report["quarantined"])

    @property
    def rejected(self) -> bool:
        """Held back whole by the contract's batch rules or policy (every row goes to the stewards)."""
        return bool(self.report["rejected"])

    @property
    def reject_reason(self) -> str | None:
        return self.report["reject_reason"]

    @property
    def schema_break(self) -> bool:
        return bool(self.report["schema_break"])

    @abstractmethod
    def valid_digest(self) -> str:
        """The content digest of the valid rows as the stage gets them (normalised)."""

    @abstractmethod
    def valid_payloads(self, part_bytes: int) -> Sequence[bytes]:
        """The valid rows as Parquet parts of at most ``part_bytes`` (at least one part)."""

    @abstractmethod
    def quarantine_payloads(self, part_bytes: int, *, held: bool) -> Sequence[bytes]:
        """The stewards' rows as Parquet parts, numbered (``_row``): the failing ones, or every row when
        the batch is ``held`` back (fundx.exchange.quarantine)."""

    def original_payloads(self) -> tuple[int, Iterator[bytes]] | None:
        """The pulled rows as Parquet parts for the backup's originals (how many, and the parts), if the
        check encoded them already; None: fundx.exchange.originals encodes them from the pull."""
        return None

    @abstractmethod
    def event_lag(self) -> tuple[float, float] | None:
        """(p50, p90) days from the valid rows' business events to now, for the SLA; None if none."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.feed}: {self.rows} rows>"


class WholeBatch(CheckedBatch):
    """A pull read whole and checked in memory (contracts.validate.check)."""

    def __init__(self, pulled: Any, checked: Any) -> None:
        self.pulled = pulled
        self.checked = checked  # contracts.validate.Checked: the frames
        self.report = checked.report
        self.validation_result = checked.validation_result

    def valid_digest(self) -> str:
        from fundx.core.digest import content_digest

        return content_digest(self.checked.valid)

    def valid_payloads(self, part_bytes: int) -> Sequence[bytes]:
        from fundx.wire.inbox import parquet_parts

        return parquet_parts(self.checked.valid, self.feed, part_bytes)

    def quarantine_payloads(self, part_bytes: int, *, held: bool) -> Sequence[bytes]:
        from fundx.exchange import quarantine
        from fundx.wire.inbox import parquet_parts

        return parquet_parts(quarantine.quarantine_frame(self.checked, held=held), self.feed, part_bytes)

    def event_lag(self) -> tuple[float, float] | None:
        from contracts.sla.latency import event_lag_days
        from fundx.core.timeutil import now

        try:
            return event_lag_days(self.feed, self.checked.valid, now())
        except Exception as exc:  # noqa: BLE001 - the SLA's event latency never stops a delivery
            log.warning("%s: the event latency could not be measured (%s)", self.feed, content_free(exc).kind)
            return None


# --- per-step figures of a run ---------------------------------------------------------------------


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def _peak() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class Steps:
    """Seconds, rows and peak resident memory of each step of a streamed run (no personal data)."""

    def __init__(self) -> None:
        self.figures: dict[str, dict[str, Any]] = {}
        #: seconds of a step done ahead inside another (the check encodes the Parquet the seal step seals)
        self.carried: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        figures = self.figures.setdefault(name, {"seconds": round(self.carried.pop(name, 0.0), 3), "rows": 0,
                                                 "peak_rss_bytes": None})
        _reset_peak()
        started = time.perf_counter()
        try:
            yield figures
        finally:
            figures["seconds"] = round(figures["seconds"] + time.perf_counter() - started, 3)
            peak = _peak()
            if peak is not None:
                figures["peak_rss_bytes"] = max(figures["peak_rss_bytes"] or 0, peak)

    def share(self, step: str, *, normalise: float, seal: float, of: float, rows: int) -> None:
        """Share a check step's wall clock out: its jobs also normalised their rows (``normalise`` seconds
        of their own ``of``) and encoded the valid ones as Parquet for the seal step (``seal``); with
        parallel workers the jobs' seconds add up to more than the wall clock, hence the proportion."""
        wall = self.figures[step]["seconds"]
        part = wall / max(of, wall, 1e-9) if of else 0.0
        self.figures[step]["seconds"] = round(max(0.0, wall - (normalise + seal) * part), 3)
        self.figures["normalise"] = {"seconds": round(normalise * part, 3), "rows": rows,
                                     "peak_rss_bytes": self.figures[step]["peak_rss_bytes"]}
        self.carried["seal"] = self.carried.get("seal", 0.0) + seal * part  # added when the seal step is timed

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dict(self.figures[name]) for name in STEPS if name in self.figures}
