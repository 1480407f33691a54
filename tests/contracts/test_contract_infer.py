"""fundx contract infer: a draft contract from an agency's sample (CSV in three encodings, xlsx, a JSON URL)
that loads, compiles to rules and SLAs, is valid ODCS, mirrors the live contracts' conventions, marks
every guess for review, and never shows a sample value."""

from __future__ import annotations

import csv
import json
import threading
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import jsonschema
import numpy as np
import pytest
import yaml
from open_data_contract_standard.model import OpenDataContractStandard
from typer.testing import CliRunner

from contracts import load_contract
from contracts.infer.columns import snake_case
from contracts.infer.document import infer_contract
from contracts.infer.samples import InferError, read_sample, records_sample
from contracts.infer.values import ID_PATTERN, USCC_PATTERN
from contracts.rules import contract_rules
from contracts.sla.policy import compile_sla
from fundx.cli.contract import contract_app
from fundx.core.idcolumns import make_ids, make_usccs

SCHEMA = jsonschema.Draft201909Validator(json.loads(OpenDataContractStandard.json_schema()))
ROWS = 40
NAMES = ["张伟", "王芳", "李秀英", "刘洋", "欧阳明月", "陈静", "杨磊", "赵敏"]
TODAY = date(2026, 11, 1)


def _ids(n: int = ROWS, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    birth = np.datetime64("1940-01-01") + rng.integers(0, 25_000, n)
    return [str(x) for x in make_ids(np.full(n, 330106), birth, rng.integers(0, 999, n))]


def _deaths_rows() -> tuple[list[str], list[list[str]]]:
    ids = _ids()
    header = ["登记编号", "公民身份号码", "姓名", "性别", "死亡日期", "宗教活动场所", "登记日期", "联系电话", "家庭住址", "备用"]
    rows = []
    for i in range(ROWS):
        death = ("2021/4/{d}", "2021年4月{d}日", "2021-04-{d:02d}")[i % 3].format(d=1 + i % 28)
        rows.append([f"ZJ3301{i:010d}", ids[i], NAMES[i % len(NAMES)], "男" if i % 2 else "女", death,
                     "" if i % 4 else "寺院", f"2021-05-{1 + i % 28:02d}", f"139{i:08d}",
                     f"杭州市西湖区文三路{i + 1}号", ""])
    return header, rows


def _write_csv(path: Path, header: list[str], rows: list[list], encoding: str) -> Path:
    with path.open("w", encoding=encoding, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _load(tmp_path: Path, text: str, feed: str):
    path = tmp_path / f"{feed}.odcs.yaml"
    path.write_text(text, encoding="utf-8")
    contract = load_contract(feed, path=path)
    document = yaml.safe_load(text)
    OpenDataContractStandard.model_validate(document)
    assert [f"{list(e.absolute_path)}: {e.message}" for e in SCHEMA.iter_errors(document)] == []
    contract_rules(contract)  # the rules compile
    return contract


def _values(rows: list[list]) -> set[str]:
    """Sample values that must never be shown (personal data and codes)."""
    return {str(v) for row in rows for v in row if isinstance(v, str) and len(v) >= 2}


@pytest.mark.parametrize("encoding", ["gb18030", "utf-8-sig", "utf-8"])
def test_a_csv_with_chinese_headers_drafts_a_contract_that_loads(tmp_path: Path, encoding: str) -> None:
    header, rows = _deaths_rows()
    sample = read_sample(_write_csv(tmp_path / "deaths_202104.csv", header, rows, encoding))
    assert sample.encoding == encoding and len(sample.rows) == ROWS
    draft = infer_contract(sample, "religious_affairs.sample", today=TODAY)
    contract = _load(tmp_path, draft.text, "religious_affairs.sample")
    assert contract.names == ("record_id", "id_number", "name", "gender", "death_date", "venue", "registered_on",
                              "phone", "address", "col_10")
    assert contract.physical_to_logical["公民身份号码"] == "id_number"
    assert contract.key == ("record_id",)
    cols = contract.by_name
    assert [cols[c].logical_type for c in contract.names] == ["string", "string", "string", "string", "date", "string",
                                                               "date", "string", "string", "string"]
    assert {c: (cols[c].classification, cols[c].pii) for c in contract.names} == {
        "record_id": ("internal", None), "id_number": ("restricted", "identity_number"), "name": ("restricted", "name"),
        "gender": ("restricted", "gender"), "death_date": ("restricted", "event_date"),
        "venue": ("restricted", "religion"), "registered_on": ("internal", None), "phone": ("restricted", "phone"),
        "address": ("restricted", "address"), "col_10": ("internal", None)}
    assert [c for c in contract.names if cols[c].required] == [
        "record_id", "id_number", "name", "gender", "death_date", "registered_on", "phone", "address"]
    props = {p.name: p for p in contract.raw.schema_[0].properties}
    assert props["id_number"].logicalTypeOptions == {"pattern": ID_PATTERN}
    assert props["record_id"].logicalTypeOptions == {"pattern": "^[A-Z]{2}[0-9]{14}$"}  # a shape, not a value
    assert [q.name for q in props["id_number"].quality] == ["excel_mangled", "valid", "area_code"]
    assert [e.value for e in props["gender"].enum] == ["男", "女"]
    assert props["death_date"].logicalTypeOptions["format"] == "yyyy-MM-dd"
    rules = {r.id for r in contract_rules(contract).rules}
    assert {"id_number.valid", "id_number.area_code", "death_date.not_future", "death_not_before_birth", "row_count"} <= rules
    custom = {c.property: c for c in props["death_date"].customProperties}
    assert custom["normalise"].value == ["trim", "halfwidth", "date"]
    assert custom["reviewNeeded"].value is True and "yyyy/M/d" in custom["reviewNeeded"].description
    assert "yyyy年M月d日" in custom["reviewNeeded"].description
    assert compile_sla(contract).event_element == "death_date"
    # every personal-data guess is marked for review, and listed in the comment at the top
    for name in ("id_number", "name", "gender", "death_date", "venue", "phone", "address", "record_id", "col_10"):
        assert any(c.property == "reviewNeeded" and c.value is True for c in props[name].customProperties), name
    head = draft.text.split("\napiVersion:")[0]
    assert head.startswith("# DRAFT") and "id_number (公民身份号码)" in head and "reviewNeeded" in head
    assert not [v for v in _values(rows) if v in draft.text]


def test_an_english_csv_with_typed_columns(tmp_path: Path) -> None:
    codes = [str(c) for c in make_usccs(np.full(ROWS, 1), np.full(ROWS, 330106), np.arange(ROWS) + 1000)]
    header = ["CompanyId", "UnifiedCode", "Company Name", "Employees", "Capital", "Active", "UpdatedAt", "note"]
    rows = [[str(i + 1), codes[i], f"杭州某某科技有限公司{i}", str(10 + i), f"{1000 + i}.50", "true" if i % 2 else "false",
             f"2025-11-01 07:{i % 60:02d}:00", "" if i % 5 else "x"] for i in range(ROWS)]
    draft = infer_contract(read_sample(_write_csv(tmp_path / "companies.csv", header, rows, "utf-8")),
                           "market_regulation.sample", today=TODAY)
    contract = _load(tmp_path, draft.text, "market_regulation.sample")
    assert contract.names == ("company_id", "unified_code", "company_name", "employees", "capital", "active",
                              "updated_at", "note")
    types = {c.name: c.logical_type for c in contract.columns}
    assert types == {"company_id": "integer", "unified_code": "string", "company_name": "string", "employees": "integer",
                     "capital": "number", "active": "boolean", "updated_at": "timestamp", "note": "string"}
    props = {p.name: p for p in contract.raw.schema_[0].properties}
    assert props["unified_code"].logicalTypeOptions == {"pattern": USCC_PATTERN}
    assert [q.implementation["rule"] for q in props["unified_code"].quality] == ["creditCode"]
    assert props["updated_at"].logicalTypeOptions == {"timezone": True, "defaultTimezone": "Asia/Shanghai"}
    assert contract.incremental == "updated_at"
    assert contract.key == ("unified_code",)  # a credit code is a business's key; the other unique columns are listed
    key_note = next(c.description for c in props["unified_code"].customProperties if c.property == "reviewNeeded")
    assert "other candidates: company_id, company_name, employees." in key_note
    assert contract.column("company_name").pii is None  # a business's name is not a person's
    assert not contract.column("note").required


def test_an_xlsx_sample_reads_its_first_sheet(tmp_path: Path) -> None:
    from openpyxl import Workbook

    ids = _ids(seed=2)
    book = Workbook()
    sheet = book.active
    sheet.title = "在押人员"
    sheet.append(["罪犯编号", "身份证号码", "姓名", "入监日期", "刑期止日", "余刑月数", "更新时间"])
    for i in range(ROWS):
        sheet.append([f"ZF3301{i:010d}", ids[i], NAMES[i % len(NAMES)], datetime(2015, 1, 1 + i % 28),
                      datetime(2031, 6, 1 + i % 28), 12 + i, datetime(2026, 10, 1, 3, i % 60)])
    other = book.create_sheet("说明")
    other.append(["not", "this", "sheet"])
    path = tmp_path / "prisoners.xlsx"
    book.save(path)
    sample = read_sample(path)
    assert sample.kind == "xlsx" and sample.object_name == "在押人员" and len(sample.rows) == ROWS
    draft = infer_contract(sample, "justice.sample", today=TODAY)
    contract = _load(tmp_path, draft.text, "justice.sample")
    assert contract.names == ("prisoner_id", "id_number", "name", "admitted_on", "sentence_end", "col_6", "updated_at")
    assert contract.raw.schema_[0].physicalName == "在押人员"
    types = {c.name: c.logical_type for c in contract.columns}
    assert types == {"prisoner_id": "string", "id_number": "string", "name": "string", "admitted_on": "date",
                     "sentence_end": "date", "col_6": "integer", "updated_at": "timestamp"}
    assert contract.column("prisoner_id").pii is None and contract.key == ("prisoner_id",)
    assert contract.column("sentence_end").pii == "criminal_record"
    assert contract.column("admitted_on").pii == "criminal_record"
    props = {p.name: p for p in contract.raw.schema_[0].properties}
    assert [q.name for q in props["admitted_on"].quality or []] == ["not_future"]
    assert not props["sentence_end"].quality  # the sample has sentences ending after today: no not_future
    assert not [v for v in _values(sample.rows) if v in draft.text]


class _Records(BaseHTTPRequestHandler):
    payloads: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = self.payloads.get(self.path.split("?")[0])
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body or b"{}")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Records)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", _Records.payloads
    finally:
        httpd.shutdown()
        httpd.server_close()
        _Records.payloads.clear()


def test_a_url_answering_json_records(server, tmp_path: Path) -> None:
    base, payloads = server
    ids = _ids(seed=3)
    records = [{"noticeId": f"WJ{i:08d}", "idNumber": ids[i], "name": NAMES[i % len(NAMES)], "deathDate": f"2026-0{1 + i % 9}-15",
                "age": 60 + i % 30, "score": 0.5 + i, "verified": bool(i % 2), "notifiedAt": f"2026-10-0{1 + i % 9}T08:00:00+08:00"}
               for i in range(ROWS)]
    payloads["/api/deaths"] = json.dumps({"total": ROWS, "page": 1, "data": records}).encode()
    payloads["/api/list"] = json.dumps(records).encode()
    payloads["/api/bad"] = b"<html>"
    payloads["/api/two"] = json.dumps({"a": records, "b": records}).encode()
    sample = read_sample(f"{base}/api/deaths?token=secret")
    assert sample.kind == "json" and len(sample.rows) == ROWS and "secret" not in sample.source
    draft = infer_contract(sample, "health_commission.sample", today=TODAY)
    contract = _load(tmp_path, draft.text, "health_commission.sample")
    assert contract.names == ("notice_id", "id_number", "name", "death_date", "age", "score", "verified", "notified_at")
    types = [c.logical_type for c in contract.columns]
    assert types == ["string", "string", "string", "date", "integer", "number", "boolean", "timestamp"]
    assert contract.column("id_number").pii == "identity_number" and contract.key == ("notice_id",)
    assert len(read_sample(f"{base}/api/list").rows) == ROWS
    for path, message in (("/api/bad", "not JSON"), ("/api/two", "exactly one list of records"), ("/api/none", "HTTP 404")):
        with pytest.raises(InferError, match=message):
            read_sample(f"{base}{path}")
    result = CliRunner().invoke(contract_app, ["infer", f"{base}/api/bad?token=secret", "--out", str(tmp_path / "x.yaml")])
    assert result.exit_code == 2 and "not JSON" in result.output and "secret" not in result.output


def test_identity_numbers_need_a_valid_check_character() -> None:
    ids = _ids()
    broken = [i[:17] + ("0" if i[17] != "0" else "1") for i in ids]  # right shape, wrong check character
    sample = records_sample([{"code": b, "other": a} for a, b in zip(ids, broken)], "x.json")
    draft = infer_contract(sample, "a.b", today=TODAY)
    code, other = draft.columns
    assert code.pii == "none" and code.recognised == "shape" and code.options == {"pattern": "^[0-9]{18}$"}
    assert other.pii == "identity_number" and other.classification == "restricted"
    # named like identity numbers: still personal data, with the count of invalid ones to review
    draft = infer_contract(records_sample([{"身份证号": b if n % 4 else a} for n, (a, b) in enumerate(zip(ids, broken))],
                                          "x.json"), "a.b", today=TODAY)
    col = draft.columns[0]
    assert col.name == "id_number" and col.pii == "identity_number"
    assert "named like identity numbers but only 10 of 40 values are valid ones" in col.review


def test_first_generation_and_numbers_from_anywhere(tmp_path: Path) -> None:
    """A paper-born register: numbers of several provinces, a few still 15 digits. The draft gets the
    national area-code rule and the upgrade15 step, with a note to confirm it; no value is shown."""
    rng = np.random.default_rng(5)
    areas = rng.choice([330106, 110105, 210102, 340104, 330103, 650102], ROWS)
    ids = [str(x) for x in make_ids(areas, np.datetime64("1930-01-01") + rng.integers(0, 7000, ROWS),
                                     rng.integers(0, 999, ROWS))]
    written = [i[:6] + i[8:17] if n % 8 == 0 else i for n, i in enumerate(ids)]  # 5 of 40 in 15 digits
    header, rows = _deaths_rows()
    rows = [[*r[:1], w, *r[2:]] for r, w in zip(rows, written)]
    sample = read_sample(_write_csv(tmp_path / "deaths_202104.csv", header, rows, "gb18030"))
    draft = infer_contract(sample, "religious_affairs.sample", today=TODAY)
    col = next(c for c in draft.columns if c.name == "id_number")
    assert col.recognised == "identity_number" and col.normalise == ["trim", "halfwidth", "upperX", "upgrade15"]
    assert "5 first-generation 15-digit numbers: upgrade15 added (GB 11643-1999); confirm that the agency's register " \
           "still holds them" in col.review
    assert [q["name"] for q in col.quality] == ["excel_mangled", "valid", "area_code"]
    assert col.quality[2]["implementation"] == {"rule": "knownAreaCode"}
    contract = _load(tmp_path, draft.text, "religious_affairs.sample")
    assert "id_number.area_code" in {r.id for r in contract_rules(contract).rules}
    assert not [v for v in _values(rows) if v in draft.text and len(v) >= 15]


def test_header_names() -> None:
    assert snake_case("DeathDate") == "death_date"
    assert snake_case("Death Date ") == "death_date"
    assert snake_case("HTTPStatus") == "http_status"
    assert snake_case("1st") == "col_1st"
    assert snake_case("死亡日期") is None
    sample = records_sample([{"死亡日期": "2021-04-12", "某某字段": "a", "住址": "1", "地址": "2"}], "x.json")
    draft = infer_contract(sample, "a.b", today=TODAY)
    assert [c.name for c in draft.columns] == ["death_date", "col_2", "address", "address_2"]


def test_the_cli_writes_the_draft_and_shows_no_value(tmp_path: Path) -> None:
    header, rows = _deaths_rows()
    path = _write_csv(tmp_path / "deaths.csv", header, rows, "gb18030")
    out = tmp_path / "drafts" / "religious_affairs.sample.odcs.yaml"
    runner = CliRunner()
    result = runner.invoke(contract_app, ["infer", str(path), "--feed", "religious_affairs.sample", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "reviewNeeded" in result.output and "公民身份号码" in result.output
    assert not [v for v in _values(rows) if v in result.output]
    _load(tmp_path, out.read_text(encoding="utf-8"), "religious_affairs.sample")
    again = runner.invoke(contract_app, ["infer", str(path), "--feed", "religious_affairs.sample", "--out", str(out)])
    assert again.exit_code == 1 and "exists" in again.output
    forced = runner.invoke(contract_app, ["infer", str(path), "--feed", "religious_affairs.sample", "--out", str(out),
                                          "--force", "--json"])
    assert forced.exit_code == 0, forced.output
    summary = json.loads(forced.output)
    assert summary["rows"] == ROWS and summary["encoding"] == "gb18030"
    assert [c["name"] for c in summary["columns"]][:3] == ["record_id", "id_number", "name"]
    assert not [v for v in _values(rows) if v in forced.output]
    stdout = runner.invoke(contract_app, ["infer", str(path), "--feed", "religious_affairs.sample", "--out", "-"])
    assert stdout.exit_code == 0 and "apiVersion: v3.1.0" in stdout.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["infer", "{tmp}/sample.parquet"], "unknown kind of sample"),
    (["infer", "{tmp}/missing.csv"], "no such file"),
    (["infer", "{tmp}/dup.csv", "--feed", "a.b"], "have the same header"),
    (["infer", "{tmp}/dup.csv", "--feed", "Police Deaths"], "agency.feed"),
])
def test_the_cli_names_what_it_cannot_read(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "sample.parquet").write_bytes(b"PAR1")
    _write_csv(tmp_path / "dup.csv", ["姓名", "姓名"], [["a", "b"]], "utf-8")
    result = CliRunner().invoke(contract_app, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.parametrize("feed", ["police.deaths", "justice.prisoners", "medical_insurance.bills"])
def test_a_draft_from_a_live_feeds_rows_agrees_with_its_contract(feed: str) -> None:
    """The sandbox's rows of a live feed: the draft finds the live contract's types, key and identity numbers."""
    import pandas as pd

    from sandbox.city import generate_feed

    live = load_contract(feed)
    frame = pd.concat(list(generate_feed(feed, 300, seed=3)), ignore_index=True)[list(live.names)]
    rows = frame.astype(object).where(frame.notna(), None).values.tolist()
    draft = infer_contract(records_sample([dict(zip(live.names, r)) for r in rows], "rows.json"), feed, today=TODAY)
    guessed = {c.name: c for c in draft.columns}
    assert {n: guessed[n].logical_type for n in live.names} == {c.name: c.logical_type for c in live.columns}
    assert tuple(n for n in live.names if guessed[n].primary_key) == live.key
    for column in live.columns:
        if column.pii in ("identity_number", "name"):
            assert (guessed[column.name].pii, guessed[column.name].classification) == (column.pii, column.classification)
