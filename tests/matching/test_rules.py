"""The rules against the generator's planted truths, without the exchange: every planted case is
found by its rule and nothing else is flagged (precision and recall per rule are printed)."""

from __future__ import annotations

import os
from datetime import date

import duckdb
import pyarrow as pa
import pytest

from contracts.validate import check
from matching import evaluate, load, pseudonym, rules
from sandbox.generator import generate_city

KEY = os.urandom(32)


def _inputs(city) -> rules.Inputs:
    """The tables the stores would hold after a night: contract-valid rows, pseudonymised."""
    con = duckdb.connect()
    pseudonym.install(con, KEY)
    tables: dict[str, list[pa.Table]] = {}
    for feed, frame in city.feeds.items():
        valid = check(feed, frame).valid
        con.register("src", pa.Table.from_pandas(valid, preserve_index=False))
        table, sql, _vault = load.feed_sql(feed)
        tables.setdefault(table, []).append(
            con.sql(f"SELECT *, 'b' AS batch, TIMESTAMPTZ '2026-11-02 00:00:00+08' AS received_at FROM ({sql})")
            .to_arrow_table())
        con.unregister("src")
    office = {"roll": city.roll, "contributions": city.contributions, "subsidies": city.subsidies}
    for table, frame in office.items():
        con.register("src", pa.Table.from_pandas(frame, preserve_index=False))
        tables[table] = [con.sql(load.OFFICE[table][1]).to_arrow_table()]
        con.unregister("src")
    return rules.Inputs({t: pa.concat_tables(parts, promote_options="default") for t, parts in tables.items()})


@pytest.mark.parametrize("people,seed", [(10_000, 20261123), (25_000, 7)])
def test_every_planted_case_is_found_and_nothing_else(people, seed, capsys):
    city = generate_city(people, seed=seed)
    con = duckdb.connect()
    params = rules.parse_params(None)
    rules.prepare(con, _inputs(city), params)
    found = rules.run_rules(con, params, date(2026, 11, 23))
    pairs = list(zip(found.column("rule").to_pylist(), found.column("subject").to_pylist()))
    scores = evaluate.score(pairs, city.truths, KEY)
    with capsys.disabled():
        print(f"\ncity of {people:,} (seed {seed}): rule, planted, found, precision, recall")
        for s in scores:
            print(f"  {s.rule:<26} {s.planted:>5} {s.found:>5} {s.precision!s:>5} {s.recall!s:>5}")
    for s in scores:
        assert s.planted > 0, f"the sandbox plants no case of {s.rule}"
        assert (s.found, s.true_positive) == (s.planted, s.planted), s


def test_amounts_follow_the_truths():
    city = generate_city(10_000)
    con = duckdb.connect()
    params = rules.parse_params(None)
    rules.prepare(con, _inputs(city), params)
    found = rules.run_rules(con, params, date(2026, 11, 23)).to_pylist()
    by = {(r["rule"], r["subject"]): r for r in found}
    for t in city.truths["dead_but_paid"]:
        got = by[("paid_after_death", pseudonym.token(KEY, t["id_number"]).hex().upper())]
        assert got["months"] == t["months_after_death"]
        assert got["amount_at_risk"] == pytest.approx(t["months_after_death"] * t["monthly_amount"], abs=0.01)
        assert "*" in got["id_masked"] and t["id_number"] not in got["detail"]
    for t in city.truths["prisoners_paid"]:
        got = by[("paid_in_custody", pseudonym.token(KEY, t["id_number"]).hex().upper())]
        assert (got["months"], got["amount_at_risk"]) == (t["months"], pytest.approx(t["amount"], abs=0.01))


def test_death_consolidation_confidence():
    city = generate_city(10_000)
    con = duckdb.connect()
    rules.prepare(con, _inputs(city), rules.parse_params(None))
    view = {r["person"]: r for r in rules.deaths(con).to_pylist()}
    tok = lambda i: pseudonym.token(KEY, i).hex().upper()  # noqa: E731
    conflicts = {tok(c["id_number"]) for c in city.truths["date_conflicts"]}
    assert conflicts and all(view[p]["confidence"] == "conflict" for p in conflicts if p in view)
    for s in city.truths["single_source_deaths"]:
        p = tok(s["id_number"])
        if p in view:
            want = "confirmed" if s["feed"] == "police.deaths" else "probable"
            assert view[p]["confidence"] == want, s["feed"]
    assert {r["confidence"] for r in view.values()} == {"confirmed", "probable", "conflict"}


def test_bad_parameters_are_named():
    from fundx.errors import ConfigurationError

    assert rules.parse_params({"frequent_visits.min_visits": "20"})["frequent_visits"]["min_visits"] == 20
    for bad in ({"nope.x": "1"}, {"frequent_visits.min_visits": "many"}, {"bill_over_mean.over": "-1"}):
        with pytest.raises(ConfigurationError, match=next(iter(bad)).split(".")[0]):
            rules.parse_params(bad)


def test_every_feed_says_what_its_stage_keeps_and_a_missing_column_is_named(tmp_path, monkeypatch):
    from connectors import feed_names
    from fundx.errors import ConfigurationError

    for feed in feed_names():
        _table, sql, vault = load.feed_sql(feed)
        assert " AS id_number" not in sql and " AS name" not in sql  # never kept: the vault has them
        assert vault is None or " AS id_number" in vault
    import connectors

    real = connectors.load_feed("police.deaths")
    broken = real.model_copy(update={"matching": real.matching.model_copy(
        update={"columns": {k: v for k, v in real.matching.columns.items() if k != "death_date"}})})
    monkeypatch.setattr(connectors, "load_feed", lambda feed: broken)
    with pytest.raises(ConfigurationError, match="police.deaths.*death_date"):
        load.feed_sql("police.deaths")


def test_an_office_database_without_the_roll_is_named(tmp_path):
    import sqlite3

    from fundx.errors import ConfigurationError

    con = duckdb.connect()
    pseudonym.install(con, KEY)
    db = sqlite3.connect(tmp_path / "office.db")
    db.execute("CREATE TABLE something_else (a)")
    db.commit()
    with pytest.raises(ConfigurationError, match="has no readable table benefit_roll") as raised:
        load.load_office(con=con, keys=None, home=tmp_path, url=f"sqlite:///{tmp_path / 'office.db'}")
    assert "FUNDX_OFFICE_DB_URL" in raised.value.action
