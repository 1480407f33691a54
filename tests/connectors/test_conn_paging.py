"""Paginators: first request, next request from a response, the end, and the completeness check."""

from __future__ import annotations

import pytest

from connectors.config import ChangedSincePaging, CursorPaging, PageSizePaging, WindowParams
from connectors.paging import (
    ChangedSincePaginator,
    CursorPaginator,
    PageSizePaginator,
    wire_time,
)
from fundx.errors import DataError, IncompletePull
from fundx.timeutil import Window

WINDOW = Window.of("2026-10-01", "2026-10-02")
PARAMS = WindowParams(start_param="from", end_param="to")


def test_wire_time_is_shanghai_with_offset():
    assert wire_time(WINDOW.start) == "2026-10-01T00:00:00+08:00"


def test_cursor_follows_next_cursor_until_null():
    p = CursorPaginator(CursorPaging(style="cursor", page_size=2), PARAMS, feed="f.x")
    first = p.first_request(WINDOW)
    assert first == {"from": "2026-10-01T00:00:00+08:00", "to": "2026-10-02T00:00:00+08:00", "limit": "2"}
    second = p.next_request({"data": [{}, {}], "next_cursor": "abc"}, [{}, {}])
    assert second == {**first, "cursor": "abc"}
    assert p.next_request({"data": [{}], "next_cursor": None}, [{}]) is None


def test_cursor_missing_field_is_a_data_error():
    p = CursorPaginator(CursorPaging(style="cursor", page_size=2), PARAMS, feed="f.x")
    p.first_request(WINDOW)
    with pytest.raises(DataError, match="next_cursor"):
        p.next_request({"data": []}, [])


def test_page_size_counts_pages_and_stops_at_total():
    p = PageSizePaginator(PageSizePaging(style="page_size", page_size=2, first_page=1), PARAMS, feed="f.x")
    assert p.first_request(WINDOW)["page"] == "1"
    assert p.next_request({"total": 5}, [{}, {}]) == {**p._base, "page": "2"}
    assert p.next_request({"total": 5}, [{}, {}])["page"] == "3"
    assert p.next_request({"total": 5}, [{}]) is None  # a short page is the last
    p.finish(5)
    with pytest.raises(IncompletePull, match="announced 5 rows but 4"):
        p.finish(4)


def test_page_size_stops_when_total_reached_by_full_pages():
    p = PageSizePaginator(PageSizePaging(style="page_size", page_size=2), PARAMS)
    p.first_request(WINDOW)
    assert p.next_request({"total": 2}, [{}, {}]) is None
    assert p.next_request({"total": 0}, []) is None


def test_page_size_total_must_be_a_number():
    p = PageSizePaginator(PageSizePaging(style="page_size", page_size=2), PARAMS)
    p.first_request(WINDOW)
    with pytest.raises(DataError, match="not a number"):
        p.next_request({"total": "many"}, [{}])


def test_changed_since_goes_on_after_the_last_record():
    config = ChangedSincePaging(style="changed_since", page_size=2, cursor_field="changed_at")
    p = ChangedSincePaginator(config, "uscc")
    first = p.first_request(WINDOW)
    assert first == {
        "changed_since": "2026-10-01T00:00:00+08:00",
        "changed_until": "2026-10-02T00:00:00+08:00",
        "limit": "2",
    }
    records = [{"uscc": "A", "changed_at": "t1"}, {"uscc": "B", "changed_at": "t2"}]
    assert p.next_request({"has_more": True}, records) == {
        "changed_since": "t2", "changed_until": "2026-10-02T00:00:00+08:00", "after": "B", "limit": "2",
    }
    assert p.next_request({"has_more": False}, records) is None
    assert p.next_request({"has_more": True}, []) is None


def test_changed_since_needs_the_fields_to_go_on():
    p = ChangedSincePaginator(ChangedSincePaging(style="changed_since", page_size=2, cursor_field="changed_at"), "uscc")
    p.first_request(WINDOW)
    with pytest.raises(DataError):
        p.next_request({"has_more": True}, [{"uscc": "A"}])
