"""Paginators: how a REST feed asks for its first page and the next one.

A paginator is a small state machine in the style of dlt's: ``first_request(window)`` gives the
query parameters of the first page; ``next_request(body, records, headers)`` reads a page's response
and gives the next page's parameters, or None when the pull is done; ``finish(distinct_rows)``
checks, when the agency announced a total, that every row arrived. A paginator that is handed whole
URLs (RFC 8288 ``Link`` headers) sets ``next_url``: the next request goes there, with the parameters
it returns added. One paginator serves one pull.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from connectors.config import (
    ChangedSincePaging,
    CursorPaging,
    LinkHeaderPaging,
    PageSizePaging,
    PagingConfig,
    WindowParams,
)
from fundx.core.errors import DataError, IncompletePull, PermanentError
from fundx.core.timeutil import SHANGHAI, Window

Params = dict[str, str]
Record = Mapping[str, Any]


def wire_time(moment: datetime) -> str:
    """A window bound as agencies read it: ISO 8601 in Asia/Shanghai with its offset."""
    return moment.astimezone(SHANGHAI).isoformat(timespec="seconds")


class Paginator(ABC):
    """Asks for the pages of one pull in order and says when it is done."""

    feed: str = ""
    #: where the next request goes when the agency named it (a Link header); None: the feed's URL
    next_url: str | None = None

    @abstractmethod
    def first_request(self, window: Window) -> Params:
        """Query parameters of the first page."""

    @abstractmethod
    def next_request(
        self, body: Mapping[str, Any], records: Sequence[Record], headers: Mapping[str, str] | None = None
    ) -> Params | None:
        """Query parameters of the page after the one just read, or None if it was the last.

        ``headers``: the page's response headers (case-insensitive), for paginators that read them.
        """

    def finish(self, distinct_rows: int) -> None:  # noqa: B027 - a hook: nothing to check by default
        """Check, after the last page, that the pull is complete (raise IncompletePull if not)."""

    def _plain(self, value: Any, what: str) -> str:
        """A value from the agency's JSON to send back as a query parameter: text or a number, never an
        object or array (whose text form is no cursor, and which str() cannot take when deeply nested)."""
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise DataError(
            f"{what} is {_json_kind(value)}, not text or a number to go on from", feed=self.feed,
            action="check the feed's paging config against the agency's API",
        )

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

    def next_request(
        self, body: Mapping[str, Any], records: Sequence[Record], headers: Mapping[str, str] | None = None
    ) -> Params | None:
        cursor = self._field(body, self.config.next_cursor)
        if cursor is None or cursor == "":
            return None
        return {**self._base, self.config.cursor_param: self._plain(cursor, f"the response's {self.config.next_cursor!r}")}


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

    def next_request(
        self, body: Mapping[str, Any], records: Sequence[Record], headers: Mapping[str, str] | None = None
    ) -> Params | None:
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

    def next_request(
        self, body: Mapping[str, Any], records: Sequence[Record], headers: Mapping[str, str] | None = None
    ) -> Params | None:
        if not self._field(body, self.config.has_more) or not records:
            return None
        last = records[-1]
        since, after = last.get(self.config.cursor_field), last.get(self.key_field)
        if since is None or after is None:
            raise DataError(
                f"the last record of a page has no {self.config.cursor_field} or {self.key_field} to go on from",
                feed=self.feed,
            )
        where = "the last record of a page"
        return {
            self.config.since_param: self._plain(since, f"{where}'s {self.config.cursor_field}"),
            self.config.until_param: self._until,
            self.config.after_param: self._plain(after, f"{where}'s {self.key_field}"),
            self.config.limit_param: str(self.config.page_size),
        }


class LinkHeaderPaginator(Paginator):
    """RFC 8288 web linking: follow the response's ``Link: <url>; rel="next"`` until a page has none.

    The first request carries the window and the page size; every later one is the linked URL as
    the agency gave it (relative links are resolved against the page that named them). A link to
    another origin than the feed's (scheme, host, port) is refused: the agency's credentials go with
    every request. A link back to a page already read, or more than ``max_pages`` pages, stops the
    pull (a loop). A replayed page (rows already received) is caught by the connector, as for the
    other styles.
    """

    def __init__(self, config: LinkHeaderPaging, window_params: WindowParams, *, url: str, feed: str = "") -> None:
        self.config, self.window_params, self.feed = config, window_params, feed
        self.url = url
        self.origin = _origin(url)
        self.next_url = None
        self.pages = 0
        self._current = url
        self._visited: set[str] = set()

    def first_request(self, window: Window) -> Params:
        params = {
            self.window_params.start_param: wire_time(window.start),
            self.window_params.end_param: wire_time(window.end),
            self.config.size_param: str(self.config.page_size),
        }
        self.next_url, self.pages, self._current = None, 1, self.url
        self._visited = {f"{self.url}?{urlencode(params)}"}
        return params

    def next_request(
        self, body: Mapping[str, Any], records: Sequence[Record], headers: Mapping[str, str] | None = None
    ) -> Params | None:
        target = next_link((headers or {}).get("Link"), self.config.rel)
        if target is None:
            self.next_url = None
            return None
        try:  # an agency's link is text from the wire: urlsplit refuses some (an unclosed IPv6 bracket)
            url = urljoin(self._current, target)
            origin = _origin(url)
        except ValueError:
            raise DataError(
                f"page {self.pages}: the agency's {self.config.rel!r} link is not a valid URL; it is not followed",
                feed=self.feed, action="ask the agency to fix the Link headers of its API",
            ) from None
        if origin != self.origin:
            raise PermanentError(
                f"page {self.pages}: the agency's {self.config.rel!r} link leads to another origin "
                f"({_origin_text(url)}, not {_origin_text(self.url)}); it is not followed",
                feed=self.feed,
                action="ask the agency why its paging links leave its API; the feed's credentials are never sent elsewhere",
            )
        if url in self._visited:
            raise DataError(
                f"page {self.pages}: the agency's {self.config.rel!r} link points back to a page already read (a loop)",
                feed=self.feed, action="ask the agency whether its paging links are stable",
            )
        if self.pages >= self.config.max_pages:
            raise DataError(
                f"more than {self.config.max_pages} pages: the pull was stopped (rest.paging.max_pages)",
                feed=self.feed,
                action="raise rest.paging.max_pages or page_size if the feed really is that large; "
                       "otherwise ask the agency whether its paging links loop",
            )
        self._visited.add(url)
        self.pages += 1
        self._current = self.next_url = url
        return {}


def _json_kind(value: Any) -> str:
    """What a decoded JSON value is, in words (never the value)."""
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, bool):
        return "true/false"
    return "null" if value is None else type(value).__name__


_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]*)*)")
_PARAM = re.compile(r';\s*([A-Za-z0-9!#$&+\-.^_`|~*]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*))?')


def next_link(value: str | None, rel: str = "next") -> str | None:
    """The target of the first link with relation ``rel`` in an RFC 8288 ``Link`` header value.

    Several links may be in one value, separated by commas; ``rel`` may list several relation
    types separated by spaces, compared without regard to case.
    """
    if not value:
        return None
    for match in _LINK.finditer(value):
        for name, raw in _PARAM.findall(match.group(2)):
            if name.lower() != "rel":
                continue
            text = raw[1:-1] if raw.startswith('"') else raw
            if rel.lower() in text.lower().split():
                return match.group(1).strip()
    return None


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the default port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1  # not a port: never the feed's origin
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def _origin_text(url: str) -> str:
    scheme, host, port = _origin(url)
    return f"{scheme}://{host}:{port}"


def paginator_for(
    paging: PagingConfig, window_params: WindowParams | None, *, key: str, feed: str, url: str = ""
) -> Paginator:
    """A fresh paginator for one pull of a feed (``url``: the feed's endpoint, for Link headers)."""
    if isinstance(paging, LinkHeaderPaging):
        assert window_params is not None
        return LinkHeaderPaginator(paging, window_params, url=url, feed=feed)
    if isinstance(paging, CursorPaging):
        assert window_params is not None  # the config requires it
        return CursorPaginator(paging, window_params, feed=feed)
    if isinstance(paging, PageSizePaging):
        assert window_params is not None
        return PageSizePaginator(paging, window_params, feed=feed)
    return ChangedSincePaginator(paging, key, feed=feed)
