"""The matching stage after a whole night against the sandbox: every planted truth is found by its
rule and nothing else is flagged; reruns change nothing; nothing readable is left at rest."""

from __future__ import annotations

import contextlib
import io
import json
import re
from datetime import date

import pyarrow.parquet as pq
import pytest

from fundx.crypto.keys import KeyStore
from fundx.ledger import Ledger
from matching import evaluate

pytestmark = pytest.mark.prefect

END = "2026-11-23T00:00:00+08:00"
NIGHT = date(2026, 11, 23)


@pytest.fixture(scope="module")
def sandbox(sandbox_factory):
    with sandbox_factory("matching", people=5000) as sb:
        yield sb


@contextlib.contextmanager
def office_database_out_of_reach(sandbox, monkeypatch):
    """The office's database cannot be read: its file moved away, FUNDX_OFFICE_DB_URL pointing nowhere, and
    any engine made for it refused. What the matching stage needs of the office must have been delivered."""
    import sqlalchemy as sa

    path = sandbox.home / "social_insurance" / "office.db"
    assert path.is_file()
    monkeypatch.setenv("FUNDX_OFFICE_DB_URL", "sqlite:////nonexistent/office.db")
    made = sa.create_engine

    def refuse(url, *args, **kwargs):
        if "social_insurance" in str(url) or "office" in str(url):
            raise AssertionError(f"the office's database was opened: {url}")
        return made(url, *args, **kwargs)

    monkeypatch.setattr(sa, "create_engine", refuse)
    away = path.with_name("office.db.away")  # moved, not only unreadable: file modes do not stop root
    path.rename(away)
    try:
        yield
    finally:
        away.rename(path)
        monkeypatch.setattr(sa, "create_engine", made)


def test_a_night_then_matching_finds_exactly_the_planted_cases(sandbox, home, capsys, monkeypatch):
    from typer.testing import CliRunner

    from connectors.registry import registry
    from flows.exchange import nightly_exchange
    from flows.matching import matching_night
    from fundx.cli import app
    from matching import orders
    from matching.run import output_dir

    outcomes = {o.feed: o for o in nightly_exchange(end=END)}
    office = registry().agencies["social_insurance"]
    assert len(office) == 5 and all(outcomes[f].handoff == "delivered" and outcomes[f].valid > 0 for f in office)
    status = CliRunner().invoke(app, ["status", "--json"])
    assert status.exit_code == 0, status.output
    shown = {f["feed"] for f in json.loads(status.output)["feeds"]}
    assert set(office) <= shown  # the office's feeds are feeds of the night like any other
    with office_database_out_of_reach(sandbox, monkeypatch):
        summary = matching_night(night=NIGHT)
    ledger = Ledger.from_settings()
    made = orders.orders(ledger, night=NIGHT)
    keys = KeyStore(home=home)
    key = keys.match_key()
    scores = evaluate.score([(o.rule, o.subject) for o in made], sandbox.city.truths, key)
    with capsys.disabled():
        print("\nmatching after a night (5,000 people): rule, planted, found, precision, recall")
        for s in scores:
            print(f"  {s.rule:<26} {s.planted:>4} {s.found:>4} {s.precision!s:>5} {s.recall!s:>5}")
    for s in scores:
        assert s.planted > 0, s.rule
        assert (s.precision, s.recall) == (1.0, 1.0), s
        assert s.lookalikes_flagged == 0, s
    report = CliRunner().invoke(app, ["matching", "report", "--night", str(NIGHT), "--json", "--truths",
                                      str(sandbox.home / "truth.json")])
    assert report.exit_code == 0, report.output
    planted = {p["rule"]: (p["precision"], p["recall"], p["lookalikes_flagged"]) for p in json.loads(report.output)["planted"]}
    assert planted == {s.rule: (1.0, 1.0, 0) for s in scores}
    assert summary["orders_new"] == len(made) and sum(summary["suspects"].values()) == len(made)
    assert all(o.status == "open" and o.due_on > NIGHT for o in made)

    # again: nothing new is loaded, no order is opened twice
    again = matching_night(night=NIGHT)
    assert again["orders_new"] == 0 and again["loaded"] == {}
    assert len(orders.orders(ledger, night=NIGHT)) == len(made)

    # the investigators' file holds the identity of the suspects, and only theirs
    folder = output_dir(NIGHT, home)
    from fundx.crypto.opening import open_sealed

    pairs = keys.stage_keys("investigators")
    opened = open_sealed((folder / "investigators.p7m").read_bytes(), recipient_key=pairs[0][0],
                         recipient_cert=pairs[0][1], trusted_ca=keys.ca(), crl=keys.crl(),
                         expect={"recipient": "investigators"})
    rows = pq.read_table(io.BytesIO(opened.payload)).to_pylist()
    named = {r["id_number"] for r in rows if r["id_number"]}
    truths = sandbox.city.truths
    # the rules about people and accounts: every person of their truths is named, and nobody else; the rules
    # about bills, hospitals and employers name the people of the bills and contributions they found
    about_people = {rule for rule, (_, field, _) in evaluate.TRUTHS.items() if field in ("id_number", "bank_account")}
    people = set()
    for rule in about_people:
        lists = evaluate.TRUTHS[rule][0]
        for name in (lists,) if isinstance(lists, str) else lists:
            for t in truths[name]:
                people |= {t[f] for f in ("id_number", "former_id_number") if t.get(f)} | set(t.get("id_numbers", ()))
    assert people <= named
    assert {r["id_number"] for r in rows if r["rule"] in about_people and r["id_number"]} <= people

    # nothing readable at rest: the store, the vault and the listings hold no identity number in clear
    # (a hex digest may hold 18 digits in a row: only a valid number, birth date and check character, counts)
    from fundx.core.identity import is_valid_id

    ids = re.compile(rb"\d{17}[\dX]")
    for path in [*(home / "stages").rglob("*"), *folder.rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            found = [m.decode() for m in ids.findall(data) if is_valid_id(m.decode())]
            assert not found, path

    # the next nights find the same suspects: cases, not copies (matching.cases). No second order opens, and a
    # false positive stays closed
    from datetime import timedelta

    later = matching_night(night=NIGHT + timedelta(days=1))
    assert (later["orders_new"], later["orders_reopened"]) == (0, 0)
    assert len(orders.orders(ledger)) == len(made) == len(orders.orders(ledger, status="open"))
    wrong = made[0]
    orders.close(ledger, wrong.order_id, outcome="false-positive", amount=0, actor="inspector.test")
    after = matching_night(night=NIGHT + timedelta(days=2))
    assert (after["orders_new"], after["orders_reopened"]) == (0, 0)
    assert orders.get(ledger, wrong.order_id).status == "closed" and len(orders.orders(ledger)) == len(made)


def test_the_store_opens_only_with_its_stage_key(sandbox, home):
    from flows.exchange import nightly_exchange
    from flows.matching import matching_night
    from fundx.core.errors import ConfigurationError, TamperedError
    from matching.store import Store

    nightly_exchange(end=END, feeds=["justice.prisoners"])
    matching_night(night=NIGHT)
    keys = KeyStore(home=home)
    store = Store("custody_matching", home=home, keys=keys)
    (name,) = store.names("custody")
    assert store.read_file("custody", name).num_rows > 0
    # a file moved into another stage's store does not open there
    other = Store("death_matching", home=home, keys=keys)
    moved = other.dir / "custody" / f"{name}.enc"
    moved.parent.mkdir(parents=True, exist_ok=True)
    moved.write_bytes((store.dir / "custody" / f"{name}.enc").read_bytes())
    with pytest.raises((TamperedError, ConfigurationError)):
        other.read_file("custody", name)
    # one flipped byte is caught
    path = store.dir / "custody" / f"{name}.enc"
    data = bytearray(path.read_bytes())
    data[-5] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(TamperedError, match="authentication tag"):
        Store("custody_matching", home=home, keys=keys).read_file("custody", name)
