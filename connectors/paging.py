"""Paginators: how a REST feed asks for its first page and the next one.

A paginator is a small state machine in the style of dlt's: ``first_request(window)`` gives the
query parameters of the first page; ``next_request(body, records)`` reads a page's response and
gives the next page's parameters, or None when the pull is done; ``finish(distinct_rows)`` checks,
when the agency announced a total, that every row arrived. One paginator serves one pull.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from connectors.config import ChangedSincePaging, CursorPaging, PageSizePaging, PagingConfig, WindowParams
from fundx.errors import DataError, IncompletePull
from fundx.timeutil import SHANGHAI, Window

Params = dict[str, str]
Record = Mapping[str, Any]


def wire_time(moment: datetime) -> str:
    """A window bound as agencies read it: ISO 8601 in Asia/Shanghai with its offset."""
    return moment.astimezone(SHANGHAI).isoformat(timespec="seconds")


class Paginator(ABC):
    """Asks for the pages of one pull in order and says when it is done."""

    feed: str = ""

    @abstractmethod
    def first_request(self, window: Window) -> Params:
        """Query parameters of the first page."""

    @abstractmethod
    def next_request(self, body: Mapping[str, Any], records: Sequence[Record]) -> Params | None:
        """Query parameters of the page after the one just read, or None if it was the last."""

    def finish(self, distinct_rows: int) -> None:
        """Check, after the last page, that the pull is complete (raise IncompletePull if not)."""

    def _field(self, body: Mapping[str, Any], name: str) -> Any:
        if name not in body:
            raise DataError(
                f"the response has no {name!r} field", feed=self.feed,
                action="check the feed's paging config against the agency's API",
            )
        return body[name]


class CursorPaginator(Paginator):
    """Opaque cursor: ``?cursor=<next_cursor>`` until the response's cursor is null."""

    def __init__(self, config: CursorPaging, window_params: WindowParams, *, feed: str = "") -> None:
        self.config, self.window_params, self.feed = config, window_params, feed
        self._base: Params = {}

    def first_request(self, window: Window) -> Params:
        self._base = {
            self.window_params.start_param: wire_time(window.start),
            self.window_params.end_param: wire_time(window.end),
            self.config.limit_param: str(self.config.page_size),
        }
        return dict(self._base)

    def next_request(self, body: Mapping[str, Any], records: Sequence[Record]) -> Params | None:
        cursor = self._field(body, self.config.next_cursor)
        if cursor is None or cursor == "":
            return None
        return {**self._base, self.config.cursor_param: str(cursor)}


class PageSizePaginator(Paginator):
    """Numbered pages of a fixed size; the response's total says how many rows there are in all."""

    def __init__(self, config: PageSizePaging, window_params: WindowParams, *, feed: str = "") -> None:
        self.config, self.window_params, self.feed = config, window_params, feed
        self._base: Params = {}
        self._page = config.first_page
        self.total: int | None = None

    def first_request(self, window: Window) -> Params:
        self._base = {
            self.window_params.start_param: wire_time(window.start),
            self.window_params.end_param: wire_time(window.end),
            self.config.size_param: str(self.config.page_size),
        }
        self._page = self.config.first_page
        self.total = None
        return self._params()

    def _params(self) -> Params:
        return {**self._base, self.config.page_param: str(self._page)}

    def next_request(self, body: Mapping[str, Any], records: Sequence[Record]) -> Params | None:
        total = self._field(body, self.config.total)
        try:
            self.total = int(total)
        except (TypeError, ValueError):
            raise DataError(f"the response's {self.config.total!r} is not a number", feed=self.feed) from None
        pages_read = self._page - self.config.first_page + 1
        if not records or len(records) < self.config.page_size or pages_read * self.config.page_size >= self.total:
            return None
        self._page += 1
        return self._params()

    def finish(self, distinct_rows: int) -> None:
        if self.total is not None and distinct_rows != self.total:
            raise IncompletePull(
                f"the agency announced {self.total} rows but {distinct_rows} distinct rows arrived",
                feed=self.feed,
                action="pull again; if it persists, ask the agency whether its paging is stable",
            )


class ChangedSincePaginator(Paginator):
    """Keyset paging over (change time, key): each page goes on after the last record of the one before."""

    def __init__(self, config: ChangedSincePaging, key_field: str, *, feed: str = "") -> None:
        self.config, self.feed = config, feed
        self.key_field = config.after_field or key_field
        self._until = ""

    def first_request(self, window: Window) -> Params:
        self._until = wire_time(window.end)
        return {
            self.config.since_param: wire_time(window.start),
            self.config.until_param: self._until,
            self.config.limit_param: str(self.config.page_size),
        }

    def next_request(self, body: Mapping[str, Any], records: Sequence[Record]) -> Params | None:
        if not self._field(body, self.config.has_more) or not records:
            return None
        last = records[-1]
        since, after = last.get(self.config.cursor_field), last.get(self.key_field)
        if since is None or after is None:
            raise DataError(
                f"the last record of a page has no {self.config.cursor_field} or {self.key_field} to go on from",
                feed=self.feed,
            )
        return {
            self.config.since_param: str(since),
            self.config.until_param: self._until,
            self.config.after_param: str(after),
            self.config.limit_param: str(self.config.page_size),
        }


def paginator_for(paging: PagingConfig, window_params: WindowParams | None, *, key: str, feed: str) -> Paginator:
    """A fresh paginator for one pull of a feed."""
    if isinstance(paging, CursorPaging):
        assert window_params is not None  # the config requires it
        return CursorPaginator(paging, window_params, feed=feed)
    if isinstance(paging, PageSizePaging):
        assert window_params is not None
        return PageSizePaginator(paging, window_params, feed=feed)
    return ChangedSincePaginator(paging, key, feed=feed)
