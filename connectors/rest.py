"""The REST transport: JSON pages from an agency's API, with pluggable paging and auth.

One connector serves every REST feed; the feed config picks the paginator (connectors/paging.py)
and the auth (connectors/auth.py). Each page request goes through the shared retrier; a page whose
rows were all received already (the agency answered an earlier page again) is asked for again.
Each page's records become Arrow columns as they arrive (the parsed dicts are let go at once), and the
pages are one frame at the end: no per-record Python beyond what orjson builds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import partial
from operator import itemgetter
from typing import Any, TypeAlias

import pandas as pd
import pyarrow as pa

from connectors.auth import Auth, auth_for, rejected
from connectors.base import Connector, Tally
from connectors.config import FeedConfig, RestConfig
from connectors.http import HttpClient, error_for_status
from connectors.paging import paginator_for
from contracts import Contract
from fundx.core.errors import AuthError, DataError, IncompletePull
from fundx.core.settings import Settings, resolve
from fundx.core.timeutil import Window

log = logging.getLogger("fundx.connectors.rest")

#: one page's records: an Arrow table of the contract's fields as text, or the records as sent (RestConnector._columns)
Page: TypeAlias = "pa.Table | Sequence[Mapping[str, Any]]"


class RestConnector(Connector):
    """Pulls a feed from a REST JSON API, page by page."""

    transport = "rest"

    def __init__(self, feed: FeedConfig, contract: Contract, settings: Settings) -> None:
        super().__init__(feed, contract, settings)
        assert feed.rest is not None
        self.config: RestConfig = feed.rest
        self._auth: Auth | None = None  # kept across pulls: an OAuth2 token is reused until it expires
        self._auth_base = ""
        self._key_fields = [contract.column(k).physical_name for k in contract.key]
        self._key_of = itemgetter(*self._key_fields)
        #: a page's records as Arrow columns: the contract's fields, text (agencies send text or null)
        self._schema = pa.schema([(c.physical_name, pa.string()) for c in contract.columns])

    def _pull(self, window: Window, tally: Tally) -> pd.DataFrame:
        base_url = str(resolve(self.config.base_url, setting="rest.base_url", feed=self.name)).rstrip("/")
        url = base_url + self.config.path
        if self._auth is None or self._auth_base != base_url:
            self._auth = auth_for(self.config.auth, base_url=base_url, feed=self.name)
            self._auth_base = base_url
        paginator = paginator_for(self.config.paging, self.config.window, key=self._key_fields[0], feed=self.name,
                                  url=url)
        pages: list[Page] = []  # each page's records, made Arrow columns as they arrive (the dicts let go)
        seen: set[Any] = set()
        with HttpClient(self.settings, feed=self.name, deadline=tally.deadline) as http:
            params: dict[str, str] | None = paginator.first_request(window)
            number = 0
            while params is not None:
                number += 1
                what = f"page {number}"
                body, records, keys, size, headers = tally.retry(
                    partial(self._page, http, paginator.next_url or url, params, what, seen), what=what
                )
                if records:
                    self.check_columns(_fields(records), where=what)
                seen.update(keys)
                pages.append(self._columns(records))
                tally.page(len(records), size)
                log.debug("%s: %s: %d records, %d distinct so far", self.name, what, len(records), len(seen))
                params = paginator.next_request(body, records, headers)
                del body, records, keys
        paginator.finish(len(seen))
        return self._frame_of(pages)

    def _page(
        self, http: HttpClient, url: str, params: dict[str, str], what: str, seen: set[Any]
    ) -> tuple[Mapping[str, Any], Sequence[Mapping[str, Any]], list[Any], int, Mapping[str, str]]:
        """One page: its body, its records, their keys, its size and its headers; raises to be retried."""
        assert self._auth is not None
        response = http.request("GET", url, what=what, params=params, headers=self._auth.headers(http))
        refreshed = False
        if response.status == 401 and self._auth.refreshable:
            log.info("%s: %s: access token rejected, fetching a new one", self.name, what)
            self._auth.refresh(http)
            refreshed = True
            response = http.request("GET", url, what=what, params=params, headers=self._auth.headers(http))
        error = error_for_status(response, feed=self.name, what=what, renew=self._auth.renew)
        if isinstance(error, AuthError):
            raise rejected(error, self._auth, feed=self.name, agency=self.feed.agency, refreshed=refreshed)
        if error is not None:
            raise error
        body = response.json(feed=self.name, what=what)
        if not isinstance(body, dict):
            raise DataError(f"{what}: the response is not a JSON object", feed=self.name)
        records = body.get(self.config.records)
        if not isinstance(records, list) or not set(map(type, records)) <= {dict}:  # orjson's objects are dicts
            raise DataError(
                f"{what}: the response's {self.config.records!r} is not a list of records",
                feed=self.name,
                action="check rest.records in the feed config against the agency's API",
            )
        try:
            keys: list[Any] = list(map(self._key_of, records))  # as _key, at C speed
        except KeyError:  # a record without (part of) its key
            keys = [self._key(r) for r in records]
        try:
            replayed = bool(records) and set(keys) <= seen
        except TypeError:  # a key that is a JSON object or array: unhashable, no value to tell records apart by
            nested = self._nested(records, self._key_fields, where=what)
            if nested is None:
                raise
            raise nested from None
        if replayed:
            raise IncompletePull(f"{what}: the agency answered with rows already received (a replayed page)", feed=self.name)
        return body, records, keys, len(response.body), response.headers

    def _nested(self, records: Sequence[Mapping[str, Any]], fields: Sequence[str], *, where: str,
                before: int = 0) -> DataError | None:
        """DataError naming the first record and field among ``fields`` that holds a JSON object or array
        (never its content), or None when they all hold plain values. ``before``: records ahead of these."""
        for number, record in enumerate(records, before + 1):
            for name in fields:
                value = record.get(name)
                if isinstance(value, (dict, list)):
                    kind = "a JSON object" if isinstance(value, dict) else "a JSON array"
                    return DataError(
                        f"{where}: record {number} holds {kind} in its field {name}, where the contract "
                        "expects a value (text, a number, true/false or null)",
                        feed=self.name,
                        action=f"ask {self.feed.agency} why its API sends nested data in {name}",
                    )
        return None

    def _key(self, record: Mapping[str, Any]) -> Any:
        if len(self._key_fields) == 1:
            return record.get(self._key_fields[0])
        return tuple(record.get(k) for k in self._key_fields)

    def _columns(self, records: Sequence[Mapping[str, Any]]) -> Page:
        """One page's records as an Arrow table of the contract's fields (by their physical names), fields the
        contract lacks dropped and an optional field a record lacks null — or, when some field holds a number,
        a boolean, an object or an array, the records as they are (:meth:`_frame_of` keeps those as sent)."""
        try:  # Arrow converts the dicts in C++ (agencies send text or null)
            return pa.Table.from_pylist(records, schema=self._schema)
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            return records

    def _frame(self, records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """The records as columns named by the contract (:meth:`_frame_of` of them as one page)."""
        return self._frame_of([self._columns(records)])

    def _frame_of(self, pages: Sequence[Page]) -> pd.DataFrame:
        """The received pages as columns named by the contract; fields the contract lacks are dropped.

        Every page was checked for the required fields; an optional field a record lacks is None.
        """
        columns = self.contract.columns
        if all(isinstance(page, pa.Table) for page in pages):  # the fast path: every page was text or null
            tables = [page for page in pages if isinstance(page, pa.Table)]
            table = pa.concat_tables(tables).combine_chunks() if tables else self._schema.empty_table()
            frame = table.to_pandas()
            frame.columns = list(self.contract.names)
            return frame
        # a number or boolean in some field: keep it as sent, but never an object or array: the contract's
        # columns hold values, and one nested deeper than Python's recursion limit would break whatever reads
        # it next (hashing, checks, Parquet)
        before = 0
        for page in pages:
            if not isinstance(page, pa.Table):
                nested = self._nested(page, [c.physical_name for c in columns], where="the pull", before=before)
                if nested is not None:
                    raise nested from None
            before += len(page)
        return pd.DataFrame(
            {c.name: [v for page in pages for v in _values(page, c.physical_name)] for c in columns},
            columns=list(self.contract.names),
        )


def _values(page: Page, name: str) -> list[Any]:
    """One field's values in a page, as Python values."""
    if isinstance(page, pa.Table):
        return page.column(name).to_pylist()
    return [r.get(name) for r in page]


def _fields(records: Sequence[Mapping[str, Any]]) -> set[str]:
    """Every field name used by any of the records."""
    names: set[str] = set()
    return names.union(*records)

