"""Onboarding a feed is its config and its contract: nothing else names it.

The shipped feeds and contracts are copied into a folder of the test's own (FUNDX_FEEDS_DIR,
FUNDX_CONTRACTS_DIR), and a ninth feed is added there by two files: ``veterans_affairs.pensioner_deaths``,
the veterans affairs bureau's (退役军人事务局) deaths of the pensioners it pays, a REST API with an API
key in a header of its own and cursor paging under names of its own, delivered to death matching. It
has no sandbox entry: the sandbox serves it from its config, with rows drawn from its contract. With
no other edit the registry, the sandbox and the conformance suite pick it up and pass it, a whole
night pulls, checks, seals and delivers it, the stage receives it and the matching stage keeps it in
its deaths table as the config's ``matching:`` section says. A feed naming a new stage gives that
stage keys; a feed the sandbox cannot serve is listed with the reason and skipped by the suite.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

import connectors
import contracts
from connectors.registry import registry
from fundx.core.settings import reload_settings
from fundx.core.timeutil import aware

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "onboarding" / "conformance"))

from conformance_suite import cases, fresh_context  # noqa: E402

NINTH = "veterans_affairs.pensioner_deaths"
#: the shipped feeds (connectors/feeds/), before the ninth is added
SHIPPED = registry().names
END = "2026-11-23T00:00:00+08:00"

CONFIG = """\
# yaml-language-server: $schema=../feed.schema.json
# 退役军人事务局 deaths of the pensioners it pays: REST JSON, cursor paging, an API key header.
feed: veterans_affairs.pensioner_deaths
agency: veterans_affairs
title: Deaths of veterans' pension recipients (优抚对象死亡信息)
contract: veterans_affairs.pensioner_deaths
stage: death_matching
transport: rest
rest:
  base_url: env:FUNDX_VETERANS_AFFAIRS_URL
  path: /v1/pensioners/deaths
  records: records
  auth:
    type: api_key
    header: X-Access-Key
    key: env:FUNDX_VETERANS_AFFAIRS_KEY
  paging:
    style: cursor
    cursor_param: next
    next_cursor: next_page
    limit_param: count
    page_size: 40
  window:
    start_param: recorded_from
    end_param: recorded_to
matching:
  table: deaths
  columns: {record_key: record_no, id_number: id_number, name: name, death_date: death_date}
"""

CONTRACT = """\
apiVersion: v3.1.0
kind: DataContract
id: urn:fundx:contract:veterans_affairs.pensioner_deaths
name: veterans_affairs.pensioner_deaths
version: 1.0.0
status: active
domain: deaths
description:
  purpose: Deaths of the pensioners the veterans affairs bureau pays, for death matching.
customProperties:
  - {property: batchPolicy, value: {rejectOnSchemaBreak: true, rejectAboveFailedPercent: 10, minFailedRows: 5}}
schema:
  - name: veterans_affairs_pensioner_deaths
    physicalName: pensioner_deaths
    logicalType: object
    properties:
      - name: record_no
        logicalType: string
        logicalTypeOptions: {pattern: '^TY3301[0-9]{10}$'}
        required: true
        unique: true
        primaryKey: true
        primaryKeyPosition: 1
        classification: internal
        customProperties: [{property: pii, value: none}, {property: normalise, value: [trim]}]
      - name: id_number
        logicalType: string
        logicalTypeOptions: {pattern: '^[0-9]{17}[0-9X]$'}
        required: true
        classification: restricted
        customProperties: [{property: pii, value: identity_number}, {property: normalise, value: [trim, halfwidth, upperX]}]
        quality:
          - {name: valid, type: custom, engine: fundx, dimension: accuracy, severity: error, implementation: {rule: identityNumber}}
          - {name: area_code, type: custom, engine: fundx, dimension: accuracy, severity: error, implementation: {rule: knownAreaCode}}
      - name: name
        logicalType: string
        logicalTypeOptions: {minLength: 1, maxLength: 50}
        required: true
        classification: restricted
        customProperties: [{property: pii, value: name}, {property: normalise, value: [trim]}]
      - name: gender
        logicalType: string
        required: false
        classification: restricted
        enum: [{value: 男}, {value: 女}]
        customProperties: [{property: pii, value: gender}, {property: normalise, value: [trim]}]
      - name: death_date
        logicalType: date
        logicalTypeOptions: {format: yyyy-MM-dd, minimum: '1900-01-01'}
        required: true
        classification: restricted
        customProperties: [{property: pii, value: event_date}, {property: normalise, value: [trim, halfwidth, date]}]
        quality:
          - {name: not_future, type: custom, engine: fundx, dimension: accuracy, severity: error, implementation: {rule: notFuture}}
      - name: pension_stopped_on
        logicalType: date
        logicalTypeOptions: {format: yyyy-MM-dd}
        required: false
        classification: internal
        customProperties: [{property: pii, value: none}, {property: normalise, value: [trim, halfwidth, date]}]
      - name: recorded_at
        logicalType: timestamp
        logicalTypeOptions: {timezone: true, defaultTimezone: Asia/Shanghai}
        required: true
        classification: internal
        customProperties: [{property: pii, value: none}, {property: incremental, value: true}, {property: normalise, value: [trim]}]
    quality:
      - name: death_not_before_birth
        type: custom
        engine: fundx
        dimension: consistency
        severity: error
        implementation: {rule: notBeforeIdBirth, column: death_date, idNumber: id_number}
      - name: stopped_after_death
        type: custom
        engine: fundx
        dimension: consistency
        severity: error
        implementation: {rule: dateOrder, earlier: death_date, later: pension_stopped_on}
slaProperties:
  - {property: frequency, value: 1, unit: d, scheduler: cron, schedule: "0 2 * * *"}
  - {property: timeOfAvailability, value: "01:00", element: veterans_affairs_pensioner_deaths.recorded_at}
  - {property: latency, value: 3, unit: d, element: veterans_affairs_pensioner_deaths.recorded_at}
  - {property: errorRate, value: 0.02, driver: operational}
  - {property: deliveryDeadline, value: "06:00", driver: regulatory}
  - {property: eventLatency, value: 14, unit: d, element: veterans_affairs_pensioner_deaths.death_date, driver: regulatory}
"""


def copy_feeds(folder: Path) -> tuple[Path, Path]:
    """The shipped feed configs and contracts (with their released copies), copied into ``folder``."""
    feeds, contract_dir = folder / "feeds", folder / "contracts"
    shutil.copytree(connectors.FEEDS_DIR, feeds)
    contract_dir.mkdir()
    for path in contracts.CONTRACTS_DIR.glob("*.odcs.yaml"):
        shutil.copy(path, contract_dir)
    shutil.copytree(contracts.CONTRACTS_DIR / "released", contract_dir / "released")
    return feeds, contract_dir


def add_feed(feeds: Path, contract_dir: Path, name: str, config: str, contract: str) -> None:
    """Onboarding: a config and a contract, nothing else."""
    (feeds / f"{name}.yaml").write_text(config, encoding="utf-8")
    (contract_dir / f"{name}.odcs.yaml").write_text(contract, encoding="utf-8")


def point_at(monkeypatch: pytest.MonkeyPatch, feeds: Path, contract_dir: Path) -> None:
    monkeypatch.setenv("FUNDX_FEEDS_DIR", str(feeds))
    monkeypatch.setenv("FUNDX_CONTRACTS_DIR", str(contract_dir))
    reload_settings()


@pytest.fixture(scope="module")
def nine(tmp_path_factory):
    """A feeds folder and a contracts folder: the shipped feeds and the ninth."""
    feeds, contract_dir = copy_feeds(tmp_path_factory.mktemp("onboarding"))
    add_feed(feeds, contract_dir, NINTH, CONFIG, CONTRACT)
    return feeds, contract_dir


@pytest.fixture(scope="module")
def sandbox(nine, sandbox_factory):
    """The sandbox of the nine feeds (a small city: every feed has rows)."""
    with pytest.MonkeyPatch.context() as mp:  # the folders while it starts; it serves what it read then
        point_at(mp, *nine)
        sb = sandbox_factory("onboarding", people=1000, stall_seconds=2.0).start()
    reload_settings()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture
def env(nine, sandbox, monkeypatch, tmp_path, keys_dir):
    """The nine feeds' folders, the sandbox's endpoints, an exchange home and ledger of the test's own."""
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FUNDX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FUNDX_KEYS_DIR", str(keys_dir))
    monkeypatch.setenv("FUNDX_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    point_at(monkeypatch, *nine)
    yield
    reload_settings()


def test_the_registry_and_the_sandbox_take_the_ninth_feed_from_its_two_files(sandbox, env):
    reg = registry()
    assert reg.names == tuple(sorted([*connectors.feed_names()])) and len(reg.names) == len(SHIPPED) + 1 and NINTH in reg.names
    assert reg.agencies["veterans_affairs"] == (NINTH,) and reg.transports["veterans_affairs"] == ("rest",)
    shipped = [f for f in SHIPPED if registry().stage_of(f) == "death_matching"]
    assert reg.feeds_of("death_matching") == tuple(sorted([*shipped, NINTH])) and reg.tables["deaths"] == "death_matching"
    assert sandbox.feeds == list(reg.names) and sandbox.not_simulated == {}
    assert {"FUNDX_VETERANS_AFFAIRS_URL", "FUNDX_VETERANS_AFFAIRS_KEY"} <= set(sandbox.env)
    assert sandbox.urls["veterans_affairs"] == sandbox.env["FUNDX_VETERANS_AFFAIRS_URL"]
    served = sandbox.expected(NINTH)
    assert len(served) >= 60 and served["record_no"].str.fullmatch(r"TY3301[0-9]{10}").all()
    assert "veterans_affairs" in sandbox.faults  # faults can be armed at the new agency too


def test_the_conformance_suite_picks_the_ninth_feed_up_and_it_passes(sandbox, env):
    from onboarding.conformance import CHECKS, FAILED, PASSED, run_check

    ninth = [case.values for case in cases() if case.values[0] == NINTH]
    assert [check for _, check in ninth] == list(CHECKS)  # every check, without a test file of its own
    context = fresh_context(NINTH, sandbox)
    results = {check: run_check(check, context) for _, check in ninth}
    assert {c: r.status for c, r in results.items() if r.status != PASSED} == {}, [
        r.message for r in results.values() if r.status == FAILED]
    assert "server_errors" in results["retries"].message  # the sandbox's faults reached the new agency


@pytest.mark.prefect
def test_a_night_pulls_checks_seals_and_delivers_the_ninth_feed_and_matching_keeps_it(sandbox, env):
    from flows.exchange import nightly_exchange
    from fundx.crypto.keys import KeyStore
    from fundx.exchange.acks import record_acks
    from fundx.ledger import Ledger
    from fundx.stage import Stage
    from matching import load

    outcomes = {o.feed: o for o in nightly_exchange(end=END)}
    assert sorted(outcomes) == list(registry().names)
    ninth = outcomes[NINTH]
    expected = sandbox.expected(NINTH, aware("2020-01-01"), aware(END))
    assert (ninth.outcome, ninth.rows, ninth.valid, ninth.quarantined) == ("pulled", len(expected), len(expected), 0)
    assert (ninth.handoff, ninth.stage, ninth.parts) == ("delivered", "death_matching", 1)
    assert all(o.outcome == "pulled" and o.handoff == "delivered" for o in outcomes.values())
    home = reload_settings().home
    (batch,) = [p for p in (home / "inboxes" / "death_matching").iterdir() if p.name.startswith(NINTH)]
    assert (batch / "READY").is_file()

    receipts = {r.folder: r.outcome for r in Stage("death_matching").receive()}
    assert receipts[batch.name] == "received" and set(receipts.values()) == {"received"}
    record_acks()
    ledger = Ledger.from_settings()
    assert ledger.delivery_counts()[NINTH]["acknowledged"] == 1
    assert ledger.watermarks()[NINTH] == aware(END)

    keys = KeyStore(home=home)
    loaded = {d.name: d for d in load.load_batches("death_matching", con=load.connect(keys), keys=keys, home=home)}
    assert (loaded[batch.name].table, loaded[batch.name].rows) == ("deaths", len(expected))


def test_a_feed_naming_a_new_stage_gives_the_stage_keys(tmp_path, monkeypatch):
    from fundx.crypto.pki import OFFICE_RECIPIENTS, init_keys, recipients

    feeds, contract_dir = copy_feeds(tmp_path)
    add_feed(feeds, contract_dir, NINTH, CONFIG.replace("stage: death_matching", "stage: pension_review"), CONTRACT)
    point_at(monkeypatch, feeds, contract_dir)
    try:
        assert "pension_review" in registry().stages and recipients()[-len(OFFICE_RECIPIENTS):] == OFFICE_RECIPIENTS
        paths = init_keys(tmp_path / "home", stages=["pension_review"])
        assert paths.stage_cert("pension_review").is_file() and paths.signer_key("pension_review").is_file()
        assert "pension_review" in recipients()
    finally:
        monkeypatch.undo()
        reload_settings()


def test_a_feed_the_sandbox_cannot_serve_is_listed_and_skipped_with_the_reason(tmp_path, monkeypatch, run_dir):
    from conformance_suite import run_case

    from sandbox.agencies import Sandbox

    feeds, contract_dir = copy_feeds(tmp_path)
    secret = CONFIG.replace("key: env:FUNDX_VETERANS_AFFAIRS_KEY", "key: secret:veterans-affairs-key")
    add_feed(feeds, contract_dir, NINTH, secret, CONTRACT)
    point_at(monkeypatch, feeds, contract_dir)
    try:
        with Sandbox(tmp_path / "agencies", people=300) as sb:
            assert NINTH not in sb.feeds and sb.feeds == list(SHIPPED)
            assert sb.not_simulated == {NINTH: f"{NINTH}: rest.auth.key is secret:, not an env: reference the "
                                               "sandbox could set"}
            with pytest.raises(pytest.skip.Exception, match=f"{NINTH} is not simulated by the sandbox: .*secret:"):
                run_case(NINTH, "connection", sb)
            with pytest.raises(ValueError, match="is not simulated"):
                sb.expected(NINTH)
    finally:
        monkeypatch.undo()
        reload_settings()
