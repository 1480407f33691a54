"""The file-drop agencies: a folder of CSV or xlsx files, as the feed config's ``filedrop:`` says (file
pattern, format, encoding, delimiter, sheet, done-marker suffix).

Each data file is followed by its done-marker ``<file><done_suffix>`` (``rows=`` and ``sha256=``
lines); the marker's modification time is the time the file was delivered, which is what a window
selects. Delivery times are fixed when the drop is planned, so rewriting a file (a fault armed or
disarmed) never moves it to another window.

:class:`FileDrop` plans any feed's files generically (three deliveries over the last two months); an
agency with its own habits has its sandbox entry (sandbox/simulated.py): monthly GB18030 CSV files
(religious affairs, :class:`ReligiousDrop`) and dated xlsx snapshots (justice, :class:`JusticeDrop`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import re
import threading
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pandas as pd
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell

from connectors import load_feed
from connectors.config import FileDropConfig
from sandbox.faults import RENAMED, FaultState
from sandbox.generic import NotSimulated
from sandbox.schema import FeedSchema, feed_schema, plain_values

try:
    from fundx.core.timeutil import SHANGHAI
except ImportError:  # the sandbox also runs without the exchange installed
    from zoneinfo import ZoneInfo

    SHANGHAI = ZoneInfo("Asia/Shanghai")

GB18030_BOM = "\ufeff".encode("gb18030")  # b"\x84\x31\x95\x33"
DONE_SUFFIX = ".ok"
EXCEL_NUMBER = re.compile(r"^\s*\d(?:\.\d+)?[eE]\+?\d+\s*$")  # 1.10105E+17: an id Excel made a number
_DAY = re.compile(r"^(\d{4})\s*[-/.年]?\s*(\d{1,2})\s*[-/.月]?\s*(\d{1,2})")


def parse_days(values: pd.Series) -> pd.Series:
    """Dates as agencies write them (2021-04-12, 2021/4/12, 2021年4月12日, full-width digits) -> datetime64; NaT if not."""
    text = values.astype(object).where(values.notna(), "").astype(str).str.normalize("NFKC").str.strip()
    parts = text.str.extract(_DAY)
    return pd.to_datetime(
        {"year": parts[0], "month": parts[1], "day": parts[2]}, errors="coerce"
    ) if len(parts) else pd.Series([], dtype="datetime64[ns]")


@dataclass
class DropFile:
    """One planned data file: its name, rows (contract columns), delivery time, and whether it has a BOM."""

    name: str
    rows: pd.DataFrame
    delivered_at: datetime
    bom: bool = False


class FileDrop:
    """A folder an agency drops files into, and the faults it can show (truncated, renamed_column, empty).

    ``feed`` and ``config`` default to the class's feed and that feed's config (the agencies with a
    class of their own)."""

    feed = ""
    #: the generic plan: files delivered this many days before as-of (the last the day before), at 06:00
    deliveries = (61, 31, 1)

    def __init__(self, folder: Path, frame: pd.DataFrame, as_of: date, faults: FaultState,
                 now: datetime | None = None, *, feed: str | None = None, config: FileDropConfig | None = None) -> None:
        self.feed = feed or self.feed
        self.config = config or _filedrop(self.feed)
        self.folder = folder
        self.schema: FeedSchema = feed_schema(self.feed)
        missing = [c for c in self.schema.columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{self.feed}: the generated frame lacks columns {missing}")
        self.faults = faults
        self.now = now or datetime.now(SHANGHAI)
        self.files = self.plan(frame[list(self.schema.columns)].reset_index(drop=True), as_of)
        self._variant: str | None = None  # what is on disk: normal | renamed | empty
        self._restore: threading.Timer | None = None
        self._restore_lock = threading.Lock()
        self._truncated: tuple[Path, bytes] | None = None

    # -- what an agency with habits of its own overrides ---------------------------------------

    def plan(self, frame: pd.DataFrame, as_of: date) -> list[DropFile]:
        """The files this agency delivers, with their rows and delivery times: generically, the rows in
        order split into one file per delivery, each named by the config's pattern and its day."""
        order = [self.schema.incremental] if self.schema.incremental else []
        rows = frame.sort_values([*order, self.schema.key], kind="stable").reset_index(drop=True)
        days = [as_of - timedelta(days=d) for d in self.deliveries]
        if "*" not in self.config.pattern:
            days = days[-1:]  # one fixed file name: one file
        files = []
        for i, day in enumerate(days):
            part = rows.iloc[i * len(rows) // len(days): (i + 1) * len(rows) // len(days)]
            files.append(DropFile(self.file_name(day), part.reset_index(drop=True),
                                  self.delivered(_at(day, 6))))
        return files

    def file_name(self, day: date) -> str:
        """The config's pattern with its first ``*`` the day (YYYYMMDD), other wildcards filled plainly."""
        name = self.config.pattern.replace("*", f"{day:%Y%m%d}", 1).replace("*", "").replace("?", "0")
        name = re.sub(r"\[!?([^\]])[^\]]*\]", lambda m: m.group(1) if not m.group(0).startswith("[!") else "_", name)
        if not fnmatch.fnmatchcase(name, self.config.pattern):
            raise NotSimulated(f"{self.feed}: filedrop.pattern {self.config.pattern!r}: the sandbox cannot name "
                               "files that match it")
        return name

    def encode(self, file: DropFile, headers: list[str]) -> bytes:
        """A file's bytes, in the config's format: CSV (its encoding, UTF-8 for auto; its delimiter; CRLF)
        or xlsx (its sheet)."""
        if self.config.format == "xlsx":
            return _workbook(self.config.sheet or "Sheet1", headers,
                             [plain_values(file.rows[c]) for c in self.schema.columns])
        encoding = "utf-8" if self.config.encoding == "auto" else self.config.encoding
        text = file.rows.set_axis(headers, axis=1).to_csv(index=False, sep=self.config.delimiter,
                                                         lineterminator="\r\n")
        return text.encode(encoding)

    # -- shared ----------------------------------------------------------------------------------

    @property
    def done_suffix(self) -> str:
        return self.config.done_suffix

    def ours(self, name: str) -> bool:
        """Whether a file in the folder is one of this feed's data files or markers."""
        pattern = self.config.pattern
        return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, pattern + self.done_suffix)

    def delivered(self, natural: datetime) -> datetime:
        """A delivery time never later than now (a drop cannot have arrived in the future)."""
        return min(natural, self.now)

    def write(self) -> None:
        """Write the folder as the armed faults want it (called at start and on every arming)."""
        self.restore_now()
        variant = "empty" if self.faults.has("empty") else "renamed" if self.faults.has("renamed_column") else "normal"
        if variant != self._variant:
            self._write_variant(variant)
            self._variant = variant
        if self.faults.has("truncated") and variant != "empty":  # an emptied folder has no file to cut short
            self._truncate_newest()

    def _write_variant(self, variant: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for path in self.folder.iterdir():  # files of an earlier start or variant
            if path.is_file() and self.ours(path.name):
                path.unlink()
        if variant == "empty":
            return
        headers = [self.schema.headers[c] for c in self.schema.columns]
        if variant == "renamed":
            headers = [RENAMED.get(h, h) for h in headers]
        for file in self.files:
            data = self.encode(file, headers)
            path = self.folder / file.name
            path.write_bytes(data)
            marker = self.folder / (file.name + self.done_suffix)
            marker.write_text(f"rows={len(file.rows)}\nsha256={hashlib.sha256(data).hexdigest()}\n", encoding="ascii")
            stamp = int(file.delivered_at.timestamp() * 1e9)
            os.utime(path, ns=(stamp, stamp))
            os.utime(marker, ns=(stamp, stamp))

    def newest(self) -> DropFile | None:
        """The file delivered last."""
        return max(self.files, key=lambda f: (f.delivered_at, f.name), default=None)

    def _truncate_newest(self) -> None:
        """The ``truncated`` fault: cut the newest file to half its bytes, restore it 1 s later."""
        file = self.newest()
        if file is None:
            return
        path = self.folder / file.name
        data = path.read_bytes()
        stat = path.stat()
        with self._restore_lock:
            path.write_bytes(data[: len(data) // 2])
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            self._truncated = (path, data)
            self._restore = threading.Timer(1.0, self.restore_now)
            self._restore.daemon = True
            self._restore.start()

    def restore_now(self) -> None:
        """Put a truncated file back whole (the end of the ``truncated`` fault)."""
        with self._restore_lock:
            if self._restore is not None:
                self._restore.cancel()
                self._restore = None
            if self._truncated is not None:
                path, data = self._truncated
                stat = path.stat()
                path.write_bytes(data)
                os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
                self._truncated = None

    def selected(self, start: datetime | None, end: datetime | None) -> list[DropFile]:
        """The files whose delivery time falls in [start, end), in delivery order."""
        if self.faults.has("empty"):
            return []
        chosen = [
            f for f in self.files
            if (start is None or f.delivered_at >= start) and (end is None or f.delivered_at < end)
        ]
        return sorted(chosen, key=lambda f: (f.delivered_at, f.name))

    def expected(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        """The rows of the files delivered in the window, file after file."""
        files = self.selected(start, end)
        if not files:
            return pd.DataFrame({c: pd.Series([], dtype=object) for c in self.schema.columns})
        return pd.concat([f.rows for f in files], ignore_index=True)


def _at(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=SHANGHAI)


class ReligiousDrop(FileDrop):
    """民族和宗教事务局: one CSV per month of registration, GB18030, CRLF, every other month with a BOM."""

    feed = "religious_affairs.deaths"

    def plan(self, frame: pd.DataFrame, as_of: date) -> list[DropFile]:
        registered = parse_days(frame["registered_on"])
        # a registration date no monthly file can be for (unreadable, a typo before 1970 or after
        # as-of) goes into the file of the as-of month, as the bureau sent that row then
        registered = registered.where((registered >= pd.Timestamp(1970, 1, 1)) & (registered <= pd.Timestamp(as_of)))
        month = (registered.dt.year * 100 + registered.dt.month).fillna(as_of.year * 100 + as_of.month).astype(int)
        files = []
        for ym, rows in frame.groupby(month.to_numpy(), sort=True):
            year, mon = divmod(int(ym), 100)
            first_of_next = date(year + mon // 12, mon % 12 + 1, 1)
            # delivered on the 1st of the next month; the current month's file is delivered by now
            files.append(DropFile(
                name=f"deaths_{year:04d}{mon:02d}.csv",
                rows=rows.reset_index(drop=True),
                delivered_at=self.delivered(_at(first_of_next, 6)),
                bom=(year * 12 + mon) % 2 == 0,
            ))
        return files

    def encode(self, file: DropFile, headers: list[str]) -> bytes:
        text = file.rows.set_axis(headers, axis=1).to_csv(index=False, lineterminator="\r\n")
        data = text.encode("gb18030")
        return GB18030_BOM + data if file.bom else data


class JusticeDrop(FileDrop):
    """司法局: an xlsx list of the prisoners on each of three dates — the day before as-of and the two month-ends before.

    The list on the last date is the generated feed itself. An earlier list has the prisoners
    admitted by then, and shows those released since as still in custody (在押): across files a
    prisoner's row changes, which is why the latest file wins.
    """

    feed = "justice.prisoners"
    snapshots = 3
    released = "刑满释放"
    in_custody = "在押"

    def plan(self, frame: pd.DataFrame, as_of: date) -> list[DropFile]:
        admitted = parse_days(frame["admitted_on"])
        ends = parse_days(frame["sentence_end"])
        days = [as_of - timedelta(days=1)]
        while len(days) < self.snapshots:
            days.insert(0, days[0].replace(day=1) - timedelta(days=1))  # the month-end before
        files = []
        for i, day in enumerate(days):
            stamp = pd.Timestamp(day)
            rows = frame
            if i < len(days) - 1:
                # admitted by then (an unreadable date does not exclude); released later: still in custody then
                on = (admitted.isna() | (admitted <= stamp)).to_numpy()
                rows = frame[on].copy()
                later = ((rows["custody_status"] == self.released) & (ends[on] > stamp)).to_numpy()
                rows.loc[later, "custody_status"] = self.in_custody
            files.append(DropFile(
                name=f"prisoners_{day:%Y%m%d}.xlsx",
                rows=rows.reset_index(drop=True),
                delivered_at=self.delivered(_at(day + timedelta(days=1), 8)),
            ))
        return files

    def encode(self, file: DropFile, headers: list[str]) -> bytes:
        return _workbook(self.config.sheet or "Sheet1", headers, [plain_values(file.rows[c]) for c in self.schema.columns],
                         excel_numbers=self.schema.columns.index("id_number"))

    def expected(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        """The prisoners of the files delivered in the window; for one prisoner, the latest file wins."""
        rows = super().expected(start, end)
        key = self.schema.key
        return rows.drop_duplicates(key, keep="last").sort_values(key, kind="stable").reset_index(drop=True)


def _filedrop(feed: str) -> FileDropConfig:
    config = load_feed(feed).filedrop
    if config is None:
        raise NotSimulated(f"{feed}: its config has no filedrop: section")
    return config


def _workbook(sheet: str, headers: list[str], columns: list[list[object]], *, excel_numbers: int | None = None) -> bytes:
    """An xlsx file of one sheet: the header row, then the rows. ``excel_numbers``: the column whose
    long numbers Excel turned into floating-point numbers (1.10105E+17), as some agencies' files have them."""
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet)
    ws.append(headers)
    for row in zip(*columns):
        cells: list[object] = list(row)
        value = cells[excel_numbers] if excel_numbers is not None else None
        if isinstance(value, str) and EXCEL_NUMBER.match(value):
            cell = WriteOnlyCell(ws, value=float(value))  # what Excel did to a long number
            cell.number_format = "0.#####E+00"
            cells[excel_numbers] = cell  # type: ignore[index]
        ws.append(cells)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
