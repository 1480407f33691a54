"""What every connector shares: the Pull it returns and the shaping of a pulled frame.

A transport's connector implements one method, ``_pull(window, tally)``, that returns the rows it
received with the contract's logical column names. The base puts the columns in contract order,
fills optional columns the source does not send, drops rows repeated by the key (the last by the
incremental column wins), and computes the content digest.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import pandas as pd

from connectors.config import FeedConfig
from contracts import Contract
from fundx.core.digest import ARRIVAL, DEFECT, RESERVED_COLUMNS, content_digest
from fundx.core.errors import SourceSchemaError
from fundx.core.retry import Deadline, Retrier
from fundx.core.settings import Settings
from fundx.core.timeutil import Window

log = logging.getLogger("fundx.connectors")

Progress = Callable[[int], None]


@dataclass
class Repeats:
    """What de-duplication did with rows that share a record key (counts only)."""

    identical: int = 0  # copies of a row sent again unchanged: collapsed into one
    superseded: int = 0  # earlier versions of a record replaced by a later one (by the incremental column)
    conflicting: int = 0  # rows of key conflicts: kept, each marked key_conflict for the stewards

    def add(self, other: Repeats) -> None:
        self.identical += other.identical
        self.superseded += other.superseded
        self.conflicting += other.conflicting

    def __str__(self) -> str:
        return (f"{self.identical} identical copies collapsed, {self.superseded} earlier versions replaced, "
                f"{self.conflicting} rows in key conflicts")


@dataclass(frozen=True, eq=False, kw_only=True)
class PullFigures:
    """How one extract of a feed's window went — what the ledger records of a pull, whether its rows
    were read whole (:class:`Pull`) or in chunks through a spool (:class:`fundx.exchange.stream.SpooledPull`)."""

    feed: str
    window: Window
    rows: int
    bytes: int
    digest: str
    pages: int
    duration_s: float
    retries: int
    repeats: Repeats = field(default_factory=Repeats)  # rows sharing a record key: what became of them


@dataclass(frozen=True, eq=False, kw_only=True)
class Pull(PullFigures):
    """What one extract brought: the rows of one feed in one window, in memory, and how getting them went."""

    frame: pd.DataFrame = field(repr=False)  # records never go into a repr (logs, Prefect state messages)


@dataclass
class Tally:
    """Running counts of one pull, kept by the transport while it reads."""

    retry: Retrier
    progress: Progress | None = None
    pages: int = 0
    bytes: int = 0
    rows: int = 0

    def page(self, rows: int, size: int) -> None:
        """Count one page, chunk or file of ``rows`` rows and ``size`` bytes, and report progress."""
        self.pages += 1
        self.bytes += size
        self.rows += rows
        if self.progress is not None:
            self.progress(self.rows)

    @property
    def retries(self) -> int:
        """Retries made so far (a replayed page counts as one)."""
        return self.retry.retries

    @property
    def deadline(self) -> Deadline | None:
        """The pull's overall deadline (FUNDX_PULL_DEADLINE): each request or query stops at it."""
        return self.retry.deadline


class Connector(ABC):
    """Pulls one feed's rows for a window; one subclass per transport, configured per feed."""

    #: the transport's name, as written in feed configs
    transport: str = ""

    def __init__(self, feed: FeedConfig, contract: Contract, settings: Settings) -> None:
        self.feed = feed
        self.contract = contract
        self.settings = settings

    @property
    def name(self) -> str:
        return self.feed.feed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def extract(self, window: Window, *, progress: Progress | None = None) -> Pull:
        """Every row the agency serves for ``window``, deduplicated by the contract key.

        The whole pull — every page, query, retry and backoff — ends by FUNDX_PULL_DEADLINE, else
        DeadlineExceeded: one slow agency cannot hold back the night's other feeds.
        """
        started = time.monotonic()
        tally = Tally(retry=Retrier.for_pull(self.settings, feed=self.name), progress=progress)
        received = self._pull(window, tally)
        repeats = Repeats()
        frame = self.shape(received, repeats=repeats)
        pull = Pull(
            feed=self.name,
            window=window,
            frame=frame,
            rows=len(frame),
            bytes=tally.bytes,
            digest=content_digest(frame),
            pages=tally.pages,
            duration_s=time.monotonic() - started,
            retries=tally.retries,
            repeats=repeats,
        )
        log.info(
            "%s: pulled %d rows (%d received) in %d pages, %d bytes, %d retries, %.2f s; %s",
            self.name, pull.rows, tally.rows, pull.pages, pull.bytes, pull.retries, pull.duration_s, repeats,
        )
        return pull

    @abstractmethod
    def _pull(self, window: Window, tally: Tally) -> pd.DataFrame:
        """The rows received for ``window``, columns named by the contract's logical names."""

    # --- shared helpers ---------------------------------------------------------------------

    def check_columns(self, present: Iterable[str], *, where: str = "", physical: bool = True) -> None:
        """Raise SourceSchemaError if a required column is not among ``present`` source column names."""
        have = set(present)
        missing = [
            c for c in self.contract.columns
            if (c.required or c.primary_key) and (c.physical_name if physical else c.name) not in have
        ]
        if missing:
            names = ", ".join(
                c.name if c.physical_name == c.name else f"{c.name} ({c.physical_name})" for c in missing
            )
            place = f" in {where}" if where else ""
            raise SourceSchemaError(
                f"the source no longer has the required column{'s' if len(missing) > 1 else ''} {names}{place}",
                feed=self.name,
                action=f"ask {self.feed.agency} whether {names} was renamed, or update contracts/{self.contract.feed}.odcs.yaml",
            )

    def shape(self, frame: pd.DataFrame, *, repeats: Repeats | None = None) -> pd.DataFrame:
        """The frame in contract order, optional missing columns added, rows repeated by the key
        collapsed or marked as conflicts (:func:`deduplicate`)."""
        return deduplicate(self.shape_chunk(frame), self.contract.key, self.contract.incremental,
                           columns=self.contract.names, repeats=repeats)

    def shape_chunk(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A frame (or one chunk of a streamed pull) in contract order, optional missing columns added."""
        self.check_columns(frame.columns, physical=False)
        missing = [name for name in self.contract.names if name not in frame.columns]
        if missing:
            frame = frame.assign(**dict.fromkeys(missing))
        # a transport's marks of malformed rows (fundx.core.digest.RESERVED_COLUMNS) go on with the rows
        return frame.loc[:, [*self.contract.names, *(c for c in RESERVED_COLUMNS if c in frame.columns)]]

    # --- streaming (fundx.exchange.stream) -------------------------------------------------------------

    def chunks(self, window: Window, tally: Tally, rows: int) -> Iterator[pd.DataFrame]:
        """The rows received for ``window`` as frames of at most about ``rows`` rows, logical column
        names, not yet shaped or deduplicated (fundx.exchange.stream does both across chunks).

        A transport that can read its source piece by piece overrides this so that a pull's memory is
        bounded by ``rows``; the default reads the whole window with ``_pull`` and slices it. An
        override may raise TransientError part-way: the streamed pull then starts again from scratch.
        It bounds its reading by ``tally.deadline`` (fundx.exchange.stream checks it between chunks too).
        """
        frame = self._pull(window, tally)
        for start in range(0, len(frame), rows):
            yield frame.iloc[start:start + rows]

    #: True when :meth:`chunks` reads the source piece by piece (memory bounded by the chunk size)
    streams: bool = False


def rechunk(frames: Iterable[pd.DataFrame], rows: int) -> Iterator[pd.DataFrame]:
    """Frames of exactly ``rows`` rows (the last may be shorter) from frames of any size, in order."""
    pending: list[pd.DataFrame] = []
    held = 0
    for frame in frames:
        if len(frame) == 0:
            continue
        pending.append(frame)
        held += len(frame)
        while held >= rows:
            whole = pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0].reset_index(drop=True)
            yield whole.iloc[:rows]
            rest = whole.iloc[rows:]
            pending, held = ([rest] if len(rest) else []), len(rest)
    if pending:
        yield pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0].reset_index(drop=True)


def deduplicate(frame: pd.DataFrame, key: tuple[str, ...], incremental: str | None, *,
                columns: Sequence[str] | None = None, repeats: Repeats | None = None) -> pd.DataFrame:
    """One row per record key, in arrival order — unless the rows under a key disagree.

    Rows that share a key and agree in every column of ``columns`` (default: all but the reserved
    ones) are one row sent twice: the copies collapse, the last stays. Rows that differ are versions:
    the latest by the ``incremental`` column, then by the file it came in (:data:`fundx.core.digest.ARRIVAL`:
    a later file is the agency's later word), replaces the others. Where nothing tells the versions
    apart (no incremental column, the same moment, the same file or no files), they are a **conflict**:
    each is kept, marked ``key_conflict`` in :data:`fundx.core.digest.DEFECT`, and the contract's check
    quarantines them for the stewards (contracts.rules) — never collapsed silently. A row whose key is
    incomplete, or one already marked malformed, is never matched with another. The file ordinals
    are bookkeeping: the frame returned has none.
    """
    frame = frame.reset_index(drop=True)
    names = list(key)
    content = [c for c in (columns if columns is not None else frame.columns) if c not in RESERVED_COLUMNS]
    candidates = frame[names].notna().all(axis=1)
    if DEFECT in frame.columns:
        candidates &= frame[DEFECT].isna()
    repeated = frame.duplicated(names, keep=False) & candidates
    if not repeated.any():
        return frame.drop(columns=[ARRIVAL], errors="ignore")
    found = Repeats()
    group = frame.loc[repeated]
    copies = group.duplicated(content, keep="last")  # the same row again: only its last copy stays
    found.identical = int(copies.sum())
    drop = list(group.index[copies])
    versions = group.loc[~copies]
    if incremental is not None or ARRIVAL in versions.columns:
        # a version's place: its moment (missing: earliest), then its file; only the last place stays
        moment = (_sortable(versions[incremental]).rank(method="dense").fillna(0) if incremental is not None
                  else pd.Series(0.0, index=versions.index))
        arrival = (versions[ARRIVAL].astype("float64").fillna(0) if ARRIVAL in versions.columns
                   else pd.Series(0.0, index=versions.index))
        place = moment * (float(arrival.max()) + 1) + arrival
        last = place.groupby([versions[k] for k in names], sort=False).transform("max")
        superseded = versions.index[(place < last).to_numpy()]
        found.superseded = len(superseded)
        drop += list(superseded)
        versions = versions.drop(index=superseded)
    clash = versions.duplicated(names, keep=False)
    found.conflicting = int(clash.sum())
    kept = frame.drop(index=drop)
    if found.conflicting:
        sizes = versions.loc[clash].groupby(names, sort=False)[names[0]].transform("size")
        notes = "key_conflict: " + sizes.astype(str) + " different rows of this batch share this record key"
        if DEFECT not in kept.columns:
            kept = kept.assign(**{DEFECT: pd.Series(None, index=kept.index, dtype="str")})
        kept.loc[notes.index, DEFECT] = notes.to_numpy()
    if repeats is not None:
        repeats.add(found)
    return kept.drop(columns=[ARRIVAL], errors="ignore").reset_index(drop=True)


def _sortable(values: pd.Series) -> pd.Series:
    """Incremental values as something that sorts by time: parsed when they are text, else as they are."""
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
        parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
        if parsed.notna().sum() >= values.notna().sum():
            return parsed
        return values.astype(object).where(values.notna(), None).astype(str)
    return values
