"""A REST pull reads page by page: each page's records become Arrow columns as they arrive, one watchdog
thread bounds every request of a client, and the environment's proxies are read once per host."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pytest
import requests.sessions

from connectors import build_connector, connector_for
from connectors.config import FeedConfig
from connectors.http import HttpClient
from fundx.core.errors import DataError, TransientError
from fundx.core.settings import Settings
from fundx.core.timeutil import Window

FEED = "civil_affairs.deaths"
WINDOW = Window.of("2026-01-01", "2027-01-01")


class Agency:
    """Answers every GET with ``body``, or stalls ``stall`` seconds after the headers."""

    def __init__(self) -> None:
        self.body = b"{}"
        self.stall = 0.0
        self.requests = 0
        agency = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                agency.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(agency.body)))
                self.end_headers()
                if agency.stall:
                    time.sleep(agency.stall)
                try:
                    self.wfile.write(agency.body)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def agency():
    server = Agency()
    yield server
    server.close()


def rest_connector(base_url: str):
    config = FeedConfig.model_validate({
        "feed": FEED, "agency": "civil_affairs", "title": "t", "contract": FEED,
        "stage": "death_matching", "transport": "rest",
        "rest": {"base_url": base_url, "path": "/api/v1/cremations", "records": "items",
                 "paging": {"style": "link_header", "size_param": "limit", "page_size": 100},
                 "window": {"start_param": "reported_from", "end_param": "reported_to"}},
    })
    return build_connector(config, Settings(retry_attempts=1, retry_base_delay=0.01, retry_max_delay=0.05))


def watchdogs() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "fundx-http-watch"]


# --- pages as Arrow columns -------------------------------------------------------------------------------


def test_text_pages_become_arrow_tables_and_one_frame_as_if_read_whole():
    connector = connector_for(FEED)
    first = [{"record_id": "R1", "id_number": "x", "extra": "dropped"}, {"record_id": "R2"}]
    second = [{"record_id": "R3", "name": "n"}]
    pages = [connector._columns(first), connector._columns(second)]
    assert all(isinstance(page, pa.Table) for page in pages)
    frame = connector._frame_of(pages)
    assert frame.equals(connector._frame(first + second))
    assert frame["record_id"].tolist() == ["R1", "R2", "R3"] and frame["name"].tolist()[2] == "n"


def test_a_number_on_a_later_page_keeps_every_page_as_sent():
    connector = connector_for(FEED)
    first = [{"record_id": "R1", "id_number": "x"}]
    second = [{"record_id": "R2", "id_number": 1.10105e17, "cremation_date": False}]
    pages = [connector._columns(first), connector._columns(second)]
    assert isinstance(pages[0], pa.Table) and pages[1] is second  # kept as sent
    frame = connector._frame_of(pages)
    assert frame["id_number"].tolist() == ["x", 1.10105e17]
    assert frame["cremation_date"].tolist() == [None, False]
    assert frame.equals(connector._frame(first + second))


def test_no_pages_give_the_contracts_empty_frame():
    connector = connector_for(FEED)
    frame = connector._frame_of([])
    assert list(frame.columns) == list(connector.contract.names) and len(frame) == 0


def test_a_nested_value_on_a_later_page_names_its_record_counted_across_pages():
    connector = connector_for(FEED)
    pages = [connector._columns([{"record_id": "R1"}, {"record_id": "R2"}]),
             connector._columns([{"record_id": "R3", "name": {"given": "x"}}])]
    with pytest.raises(DataError, match="record 3 holds a JSON object in its field name"):
        connector._frame_of(pages)


def test_a_record_without_its_key_is_read_as_before(agency):
    """The keys are read at C speed; a record without one falls back to the same None as before."""
    row = {"id_number": "a", "name": "n", "death_date": "2026-03-01", "reported_at": "2026-03-02T08:00:00+08:00"}
    agency.body = json.dumps({"items": [{"record_id": "MZ1", **row}, row]}).encode()
    pull = rest_connector(agency.url).extract(WINDOW)
    assert pull.rows == 2 and pull.frame["record_id"].tolist()[0] == "MZ1"
    assert pull.frame["record_id"].isna().tolist() == [False, True]


# --- one watchdog per client ----------------------------------------------------------------------------------


def test_one_watchdog_thread_serves_every_request_of_a_client_and_goes_with_it(agency):
    agency.body = b'{"items": []}'
    before = len(watchdogs())
    with HttpClient(Settings(), feed=FEED) as http:
        for _ in range(20):
            assert http.request("GET", agency.url + "/x", what="page").status == 200
            assert len(watchdogs()) <= before + 1
    for _ in range(100):  # closed: its watchdog ends at once, not after its idle time
        if len(watchdogs()) <= before:
            break
        time.sleep(0.01)
    assert len(watchdogs()) <= before


def test_a_request_past_its_deadline_is_cut_and_the_next_one_is_watched_again(agency):
    agency.body = b'{"items": []}'
    with HttpClient(Settings(http_request_deadline=0.3), feed=FEED) as http:
        agency.stall = 2.0
        began = time.monotonic()
        with pytest.raises(TransientError, match="no complete response from /x within 0.3 s"):
            http.request("GET", agency.url + "/x", what="page 1")
        assert time.monotonic() - began < 1.5
        agency.stall = 0.0
        assert http.request("GET", agency.url + "/x", what="page 2").status == 200
        agency.stall = 2.0
        with pytest.raises(TransientError, match="within 0.3 s"):
            http.request("GET", agency.url + "/x", what="page 3")


# --- the environment read once per host ---------------------------------------------------------------------


def test_the_environments_proxies_are_read_once_per_host(agency, monkeypatch):
    calls = []
    real = requests.sessions.get_environ_proxies

    def counted(url, no_proxy=None):
        calls.append(url)
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counted)
    with HttpClient(Settings(), feed=FEED) as http:
        for page in range(5):
            http.request("GET", agency.url + "/x", what="page", params={"page": str(page)})
    assert len(calls) == 1 and agency.requests == 5


def test_a_proxy_in_the_environment_is_still_used(agency, monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens on the discard port
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with HttpClient(Settings(http_connect_timeout=2), feed=FEED) as http, pytest.raises(TransientError):
        http.request("GET", agency.url + "/x", what="page 1")
    assert agency.requests == 0
