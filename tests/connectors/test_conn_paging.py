"""Paginators: first request, next request from a response, the end, and the completeness check;
RFC 8288 Link headers also through the REST connector against a small local server."""

from __future__ import annotations

import pytest

from connectors.config import ChangedSincePaging, CursorPaging, LinkHeaderPaging, PageSizePaging, WindowParams
from connectors.paging import (
    ChangedSincePaginator,
    CursorPaginator,
    LinkHeaderPaginator,
    PageSizePaginator,
    next_link,
    wire_time,
)
from fundx.core.errors import DataError, IncompletePull, PermanentError
from fundx.core.timeutil import Window

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


# --- RFC 8288 Link headers ---------------------------------------------------------------------

URL = "https://agency.example:8443/api/v1/notices"


def link_paginator(**options) -> LinkHeaderPaginator:
    config = LinkHeaderPaging(style="link_header", page_size=2, **options)
    return LinkHeaderPaginator(config, PARAMS, url=URL, feed="f.x")


def test_next_link_reads_rfc_8288_values():
    assert next_link('<https://a/x?p=2>; rel="next"') == "https://a/x?p=2"
    assert next_link('<https://a/x?p=1>; rel="prev", <https://a/x?p=3>; rel=next') == "https://a/x?p=3"
    assert next_link('<https://a/last>; rel="last", <https://a/n>; title="a; b"; rel="NEXT nofollow"') == "https://a/n"
    assert next_link('<https://a/x?p=1>; rel="prev"') is None
    assert next_link("") is None and next_link(None) is None
    assert next_link('<https://a/other>; rel="alternate"', rel="alternate") == "https://a/other"


def test_link_header_first_request_carries_window_and_page_size():
    p = link_paginator(size_param="per_page")
    first = p.first_request(WINDOW)
    assert first == {"from": "2026-10-01T00:00:00+08:00", "to": "2026-10-02T00:00:00+08:00", "per_page": "2"}
    assert p.next_url is None


def test_link_header_follows_next_until_there_is_none():
    p = link_paginator()
    p.first_request(WINDOW)
    second = f"{URL}?after=abc&limit=2"
    assert p.next_request({}, [{}, {}], {"Link": f'<{second}>; rel="next"'}) == {}
    assert p.next_url == second
    # relative links are resolved against the page that named them
    assert p.next_request({}, [{}, {}], {"Link": '<?after=def&limit=2>; rel="next"'}) == {}
    assert p.next_url == f"{URL}?after=def&limit=2"
    assert p.next_request({}, [{}], {"Link": f'<{URL}?after=abc&limit=2>; rel="prev"'}) is None
    assert p.next_request({}, [{}], {}) is None and p.next_url is None


@pytest.mark.parametrize("target", [
    "https://evil.example:8443/api/v1/notices?after=abc",  # another host
    "http://agency.example:8443/api/v1/notices?after=abc",  # another scheme
    "https://agency.example/api/v1/notices?after=abc",  # another port (443)
    "//evil.example/steal",  # scheme-relative
    "https://agency.example.evil.example:8443/x",
])
def test_link_header_refuses_a_next_link_to_another_origin(target):
    p = link_paginator()
    p.first_request(WINDOW)
    with pytest.raises(PermanentError, match="another origin") as info:
        p.next_request({}, [{}], {"Link": f'<{target}>; rel="next"'})
    assert info.value.feed == "f.x" and str(info.value).startswith("f.x: ")
    assert "after=abc" not in str(info.value) and "steal" not in str(info.value)  # no query or path in messages


def test_link_header_default_ports_are_the_same_origin():
    config = LinkHeaderPaging(style="link_header", page_size=2)
    p = LinkHeaderPaginator(config, PARAMS, url="https://agency.example/api", feed="f.x")
    p.first_request(WINDOW)
    assert p.next_request({}, [{}], {"Link": '<https://AGENCY.example:443/api?p=2>; rel="next"'}) == {}


def test_link_header_loop_and_max_pages_stop_the_pull():
    p = link_paginator()
    p.first_request(WINDOW)
    link = {"Link": f'<{URL}?after=abc>; rel="next"'}
    p.next_request({}, [{}], link)
    with pytest.raises(DataError, match="already read"):
        p.next_request({}, [{}], link)
    p = link_paginator(max_pages=3)
    p.first_request(WINDOW)
    for n in (2, 3):
        assert p.next_request({}, [{}], {"Link": f'<{URL}?page={n}>; rel="next"'}) == {}
    with pytest.raises(DataError, match="more than 3 pages"):
        p.next_request({}, [{}], {"Link": f'<{URL}?page=4>; rel="next"'})


# --- the REST connector with Link headers, against a small local server --------------------------


class _LinkAgency:
    """A tiny agency serving civil-affairs-shaped rows, paged with Link headers (offset in the query)."""

    def __init__(self, rows: int = 7) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        self.rows = [{
            "record_id": f"MZ3301{i:010d}", "id_number": "330106195001011234", "name": f"张{i}", "gender": "男",
            "death_date": "2026-10-01", "cremation_date": None, "funeral_home": None,
            "reported_at": f"2026-10-01T08:00:{i:02d}+08:00",
        } for i in range(rows)]
        self.requests: list[str] = []
        self.replay_once = False  # answer the 2nd page once with the 1st page's rows
        self.next_host = None  # send next links to this origin instead
        agency = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                import json

                agency.requests.append(self.path)
                parts = urlsplit(self.path)
                q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                size, offset = int(q["limit"]), int(q.get("offset", 0))
                page = agency.rows[offset:offset + size]
                if offset and agency.replay_once:
                    agency.replay_once = False
                    page = agency.rows[:size]
                headers = {}
                if offset + size < len(agency.rows):
                    origin = agency.next_host or ""
                    headers["Link"] = (f'<{origin}{parts.path}?limit={size}&offset={offset + size}>; rel="next", '
                                       f'<{parts.path}?limit={size}>; rel="first"')
                body = json.dumps({"items": page}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def link_agency():
    agency = _LinkAgency()
    yield agency
    agency.close()


def _link_connector(base_url: str, page_size: int = 3):
    from connectors import build_connector
    from connectors.config import FeedConfig
    from fundx.core.settings import Settings

    config = FeedConfig.model_validate({
        "feed": "civil_affairs.deaths", "agency": "civil_affairs", "title": "t", "contract": "civil_affairs.deaths",
        "stage": "death_matching", "transport": "rest",
        "rest": {"base_url": base_url, "path": "/api/v1/cremations", "records": "items",
                 "paging": {"style": "link_header", "size_param": "limit", "page_size": page_size},
                 "window": {"start_param": "reported_from", "end_param": "reported_to"}},
    })
    return build_connector(config, Settings(retry_attempts=3, retry_base_delay=0.01, retry_max_delay=0.05))


def test_rest_connector_follows_link_headers_to_the_last_page(link_agency):
    pull = _link_connector(link_agency.url).extract(WINDOW)
    assert list(pull.frame["record_id"]) == [r["record_id"] for r in link_agency.rows]
    assert pull.pages == 3 and len(link_agency.requests) == 3
    first, *later = link_agency.requests
    assert "reported_from=" in first and "limit=3" in first
    assert [r.split("?")[1] for r in later] == ["limit=3&offset=3", "limit=3&offset=6"]  # the links, as given


def test_rest_connector_asks_again_for_a_replayed_page(link_agency):
    link_agency.replay_once = True
    pull = _link_connector(link_agency.url).extract(WINDOW)
    assert list(pull.frame["record_id"]) == [r["record_id"] for r in link_agency.rows]
    assert pull.retries == 1 and len(link_agency.requests) == 4


def test_rest_connector_refuses_a_link_to_another_origin(link_agency):
    other = _LinkAgency()
    try:
        link_agency.next_host = other.url
        with pytest.raises(PermanentError, match="another origin") as info:
            _link_connector(link_agency.url).extract(WINDOW)
        assert info.value.feed == "civil_affairs.deaths"
        assert other.requests == []  # nothing was sent there
    finally:
        other.close()
