"""On a generated city: the quarantined rows are exactly the generator's planted bad rows, and no
identity number reaches the report or the Data Docs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts import load_contract
from contracts.docs import write_site
from contracts.validate import RULES_COLUMN, Checked, check
from sandbox.generator import DEFAULT_AS_OF, FEEDS, UNREPAIRABLE, City, generate_city


@pytest.fixture(scope="module")
def city() -> City:
    return generate_city(6000, seed=42)


@pytest.fixture(scope="module")
def checked(city: City) -> dict[str, Checked]:
    return {feed: check(feed, frame, today=DEFAULT_AS_OF) for feed, frame in city.feeds.items()}


@pytest.mark.parametrize("feed", FEEDS)
def test_quarantined_rows_are_exactly_the_planted_bad_rows(city: City, checked: dict[str, Checked], feed: str) -> None:
    key = load_contract(feed).key[0]
    planted = {m["key"] for m in city.truths["messy"] if m["feed"] == feed and m["kind"] in UNREPAIRABLE}
    planted |= {m["key"] for m in city.truths["invalid_ids"] if m["feed"] == feed}
    quarantined = set(checked[feed].quarantined[key])
    assert quarantined == planted
    assert len(checked[feed].valid) + len(quarantined) == len(city.feeds[feed])


def test_every_quarantined_row_has_its_reason(city: City, checked: dict[str, Checked]) -> None:
    expected = {"invalid_check": "valid", "excel_mangled": "excel_mangled"}
    for m in city.truths["invalid_ids"]:
        q = checked[m["feed"]].quarantined
        rules = q.loc[q[load_contract(m["feed"]).key[0]] == m["key"], RULES_COLUMN].iloc[0].split(";")
        assert f"{m['column']}.{expected[m['kind']]}" in rules


def test_repairable_quirks_are_normalised_not_quarantined(city: City, checked: dict[str, Checked]) -> None:
    for m in city.truths["messy"]:
        if m["kind"] in UNREPAIRABLE:
            continue
        valid = checked[m["feed"]].valid
        row = valid[valid[load_contract(m["feed"]).key[0]] == m["key"]]
        assert len(row) == 1 and row[m["column"]].iloc[0] == m["clean"], m["kind"]


def _identity_numbers(city: City) -> set[str]:
    numbers = set(city.roll["id_number"])
    for m in city.truths["messy"]:
        numbers |= {m["value"].strip(), m["clean"]} if "id" in m["column"] else set()
    for frame in city.feeds.values():
        for column in ("id_number", "legal_rep_id_number"):
            if column in frame:
                numbers |= {str(v).strip() for v in frame[column].dropna()}
    return {n for n in numbers if len(n) >= 15}


def test_no_identity_number_in_the_report_or_the_data_docs(city: City, checked: dict[str, Checked],
                                                           tmp_path: Path) -> None:
    numbers = _identity_numbers(city)
    reports = json.dumps([c.report for c in checked.values()], ensure_ascii=False, default=str)
    assert not [n for n in numbers if n in reports]
    index = write_site(tmp_path / "reports" / "2026-11-01", checked.values())
    pages = list(index.parent.glob("*.html"))
    assert {p.name for p in pages} == {"index.html"} | {f"{feed}.html" for feed in FEEDS}
    text = "".join(p.read_text(encoding="utf-8") for p in pages)
    assert "id_number.valid" in text and "%" in text
    assert not [n for n in numbers if n in text]
    names = set(city.roll["name"])
    assert not [n for n in names if len(n) >= 3 and f">{n}<" in text]
