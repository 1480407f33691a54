"""The file-drop transport: CSV or xlsx files an agency drops into a folder.

A file is taken once its done-marker (``<name>.ok``) is there; its time, for windows, is the
marker's modification time. The marker's ``rows=`` and ``sha256=`` lines are checked against the
file (a mismatch means it is still being written: IncompletePull, tried again shortly). Headers are
the agency's own (physicalName in the contract) and are renamed to the contract's logical names;
only the contract's columns are read. Every value is handed on as text, exactly as the agency wrote it.

This module is the drop folder and the markers; a file's bytes are read by :mod:`connectors.dropcsv`
(malformed rows placed back, marked) or :mod:`connectors.dropxlsx` (a hostile workbook refused), its
text decoded by :mod:`connectors.decoding`. A streamed feed reads any size of CSV in chunks.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from datetime import datetime
from functools import partial
from pathlib import Path

import pandas as pd

from connectors.base import Connector, Tally, rechunk
from connectors.config import FeedConfig, FileDropConfig
from connectors.decoding import DecodingReader, scan
from connectors.dropcsv import CsvReader
from connectors.dropxlsx import XlsxReader
from contracts import Contract
from fundx.core.digest import ARRIVAL
from fundx.core.errors import DataError, IncompletePull, NotFoundError
from fundx.core.settings import Settings, resolve
from fundx.core.timeutil import SHANGHAI, Window

log = logging.getLogger("fundx.connectors.filedrop")

#: a file whose marker does not match is looked at again after this many seconds
RECHECK_SECONDS = 1.0


def read_marker(path: Path) -> dict[str, str]:
    """``key=value`` lines of a done-marker."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip().lower()] = value.strip()
    return values


class FileDropConnector(Connector):
    """Pulls a feed from files dropped into a folder, one file at a time."""

    transport = "filedrop"

    def __init__(self, feed: FeedConfig, contract: Contract, settings: Settings) -> None:
        super().__init__(feed, contract, settings)
        assert feed.filedrop is not None
        self.config: FileDropConfig = feed.filedrop
        self._csv = CsvReader(self)
        self._xlsx = XlsxReader(self)

    def folder(self) -> Path:
        """The drop folder, resolved (symlinks and all)."""
        folder = Path(str(resolve(self.config.directory, setting="filedrop.directory", feed=self.name)))
        if not folder.is_dir():
            raise NotFoundError(
                f"the drop folder named by filedrop.directory does not exist ({folder.name})",
                feed=self.name,
                action=f"check filedrop.directory ({self.config.directory}) and that {self.feed.agency}'s drop is mounted",
            )
        return folder.resolve()

    def arrivals(self, window: Window) -> list[tuple[datetime, Path, Path]]:
        """Files whose done-marker arrived inside ``window``: (marker time, file, marker), oldest first."""
        folder = self.folder()
        found = []
        for path in folder.glob(self.config.pattern):
            if path.name.endswith(self.config.done_suffix):
                continue
            marker = path.with_name(path.name + self.config.done_suffix)
            if not _inside(path, folder) or not _inside(marker, folder):
                log.warning("%s: skipping %s: it points outside the drop folder", self.name, path.name)
                continue
            if not path.is_file() or not marker.is_file():
                continue
            arrived = datetime.fromtimestamp(marker.stat().st_mtime, tz=SHANGHAI)
            if window.contains(arrived):
                found.append((arrived, path, marker))
        found.sort(key=lambda item: (item[0], item[1].name))
        return found

    def _pull(self, window: Window, tally: Tally) -> pd.DataFrame:
        frames = []
        for number, (_, path, marker) in enumerate(self.arrivals(window), start=1):
            frame, size = tally.retry(partial(self._read, path, marker), what=f"file {number} ({path.name})")
            frames.append(frame.assign(**{ARRIVAL: number}))  # a later file is the agency's later word
            tally.page(len(frame), size)
        if not frames:
            return pd.DataFrame({name: [] for name in self.contract.names}, dtype=object)
        # the latest file comes last, so its rows win when a key repeats (see base.deduplicate)
        return pd.concat(frames, ignore_index=True)

    # --- streaming (fundx.exchange.stream) -----------------------------------------------------------

    streams = True  # CSV files are read block by block; a workbook is read whole, then sliced

    def chunks(self, window: Window, tally: Tally, rows: int) -> Iterator[pd.DataFrame]:
        """Each arrived file in frames of at most ``rows`` rows, oldest file first (see Connector.chunks).

        A CSV file is read once: decoded, parsed and renamed block by block, so memory stays bounded by
        ``rows`` whatever the file's size, and checked against its marker as it is read (SHA-256 and row
        count). A mismatch raises IncompletePull (the streamed pull starts again), as does a file that
        reads as broken (DataError) while it does not match its marker: one still being written.
        """
        yield from rechunk(self._file_frames(window, tally, rows), rows)  # a file's tail joins the next file's rows

    def _file_frames(self, window: Window, tally: Tally, rows: int) -> Iterator[pd.DataFrame]:
        for number, (_, path, marker) in enumerate(self.arrivals(window), start=1):
            if self.config.format != "csv":
                frame, size = tally.retry(partial(self._read, path, marker), what=f"file {number} ({path.name})")
                tally.page(len(frame), size)
                frame = frame.assign(**{ARRIVAL: number})
                for start in range(0, len(frame), rows):
                    yield frame.iloc[start:start + rows]
                continue
            for frame in self._csv_chunks(path, marker, rows, tally):
                yield frame.assign(**{ARRIVAL: number})

    def _csv_chunks(self, path: Path, marker: Path, rows: int, tally: Tally) -> Iterator[pd.DataFrame]:
        expected = read_marker(marker)
        count, digest = expected.get("rows"), expected.get("sha256")
        if count is None or digest is None or not count.isdigit():
            raise IncompletePull(f"{path.name}: its done-marker has no rows= and sha256= lines yet",
                                 feed=self.name, retry_after=RECHECK_SECONDS)
        # the file is read once more only where its encoding is not known before its end (UTF-8 without
        # a BOM): else it is checked against its marker's SHA-256 as it is decoded, below
        encoding, skip = self._scan(path, digest, whole=False)
        source = DecodingReader(path, encoding, skip, name=path.name, feed=self.name)
        seen = 0
        try:
            try:
                for frame in self._csv.frames(source, path.name, rows):
                    seen += len(frame)
                    tally.page(len(frame), 0)
                    yield frame
            except DataError:
                # a file still being written reads as a broken one (a character cut in two, a header
                # not yet there): it is tried again, as any file that does not match its marker
                try:
                    self._scan(path, digest)
                except IncompletePull as incomplete:
                    raise incomplete from None
                raise
        finally:
            source.close()
        tally.bytes += source.raw_bytes
        if source.sha256 != digest.lower():
            raise IncompletePull(f"{path.name}: its content does not match its done-marker's sha256 "
                                 "(still being written?)", feed=self.name, retry_after=RECHECK_SECONDS)
        if seen != int(count):
            raise IncompletePull(f"{path.name}: {seen} data rows, its done-marker says {count}",
                                 feed=self.name, retry_after=RECHECK_SECONDS)

    def _scan(self, path: Path, digest: str, *, whole: bool = True) -> tuple[str, int]:
        """Check a file against its marker's SHA-256 and find its encoding, reading it once in blocks
        (not ``whole``: only as far as its encoding needs, and checked only if that is its end)."""
        sha, encoding, skip = scan(path, self.config.encoding, whole=whole)
        if sha is not None and sha != digest.lower():
            raise IncompletePull(
                f"{path.name}: its content does not match its done-marker's sha256 (still being written?)",
                feed=self.name, retry_after=RECHECK_SECONDS,
            )
        return encoding, skip

    def _read(self, path: Path, marker: Path) -> tuple[pd.DataFrame, int]:
        """One complete file as a frame of logical columns, and its size; checks it against its marker."""
        expected = read_marker(marker)
        data = path.read_bytes()
        rows, digest = expected.get("rows"), expected.get("sha256")
        if rows is None or digest is None or not rows.isdigit():
            raise IncompletePull(
                f"{path.name}: its done-marker has no rows= and sha256= lines yet",
                feed=self.name, retry_after=RECHECK_SECONDS,
            )
        if hashlib.sha256(data).hexdigest() != digest.lower():
            raise IncompletePull(
                f"{path.name}: its content does not match its done-marker's sha256 (still being written?)",
                feed=self.name, retry_after=RECHECK_SECONDS,
            )
        if self.config.format == "csv":
            frame = self._csv.read(data, path.name)
        else:
            frame = self._xlsx.read(data, path.name)
        if len(frame) != int(rows):
            raise IncompletePull(
                f"{path.name}: {len(frame)} data rows, its done-marker says {rows}",
                feed=self.name, retry_after=RECHECK_SECONDS,
            )
        return frame, len(data)


def _inside(path: Path, folder: Path) -> bool:
    """True if ``path``, with symlinks followed, stays inside ``folder``."""
    try:
        return path.resolve().is_relative_to(folder)
    except (OSError, RuntimeError):
        return False
