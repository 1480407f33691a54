"""Time in fundx: always timezone-aware, Asia/Shanghai for people, UTC in storage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
__all__ = ["SHANGHAI", "UTC", "Window", "aware", "now"]  # UTC is re-exported: fundx imports it from here


def now() -> datetime:
    """The current time in Asia/Shanghai."""
    return datetime.now(SHANGHAI)


def aware(value: datetime | date | str) -> datetime:
    """A timezone-aware datetime from a datetime, a date (its midnight) or an ISO string.

    Naive values are taken as Asia/Shanghai local time, which is what agencies send.
    """
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 10:
            value = date.fromisoformat(text)
        else:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=SHANGHAI)
    return datetime.combine(value, time.min, tzinfo=SHANGHAI)


@dataclass(frozen=True, order=True)
class Window:
    """A half-open interval [start, end) of the time a feed's records became available."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if self.end < self.start:
            raise ValueError(f"window ends ({self.end.isoformat()}) before it starts ({self.start.isoformat()})")

    @classmethod
    def of(cls, start: datetime | date | str, end: datetime | date | str) -> Window:
        return cls(aware(start), aware(end))

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def __str__(self) -> str:
        fmt = "%Y-%m-%d %H:%M:%S%z"
        return f"[{self.start.astimezone(SHANGHAI).strftime(fmt)}, {self.end.astimezone(SHANGHAI).strftime(fmt)})"
