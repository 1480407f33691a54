"""Broken agencies fail the conformance suite with a message that says what is wrong; skips need reasons.

``repeat_page`` (an agency that serves a page twice, which the connector's de-duplication by key
would hide) must fail the paging check; ``echo_secret`` (an agency whose rejection echoes the
credential it received) must fail the secrets check, naming where the secret appeared without
printing it. Also ``fundx connector check`` and ``fundx connector new``.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent / "conformance"))

from conformance_suite import cases, conformance_sandbox, fresh_context  # noqa: F401

from connectors import load_feed
from connectors.config import ConformanceConfig
from connectors.registry import registry
from fundx.core.settings import reload_settings
from onboarding.conformance import CHECKS, FAILED, PASSED, SKIPPED, config_skip, run_check, run_suite

#: every REST feed of the feed configs -> its agency
REST = {feed: registry().agency_of(feed) for feed in registry().on_transport("rest")}


@contextmanager
def armed(sandbox, agency: str, faults: list[str]) -> Iterator[None]:
    sandbox.set_faults(agency, faults)
    try:
        yield
    finally:
        sandbox.set_faults(agency, [])


def assert_no_secret(sandbox, text: str) -> None:
    for name, value in sandbox.env.items():
        if any(word in name for word in ("TOKEN", "SECRET", "KEY")):
            assert value not in text, f"{name} printed"
    assert "conformance-probe-" not in text  # the probe's wrong credential


@pytest.mark.parametrize("feed", sorted(REST))
def test_repeat_page_fails_the_paging_check_naming_the_feed_and_the_page(conformance_sandbox, feed):
    with armed(conformance_sandbox, REST[feed], ["repeat_page"]):
        result = run_check("paging", fresh_context(feed, conformance_sandbox))
    assert result.status == FAILED
    assert result.message.startswith(f"{feed}: paging: page 2 ")
    assert "already received on page 1" in result.message and "de-duplication" in result.message
    assert_no_secret(conformance_sandbox, result.message)


def test_repeat_page_fails_the_suite_and_only_its_check(conformance_sandbox):
    with armed(conformance_sandbox, "police", ["repeat_page"]):
        results = run_suite("police.deaths", context=fresh_context("police.deaths", conformance_sandbox))
    assert [r.check for r in results] == list(CHECKS)
    assert {r.check: r.status for r in results if r.status != PASSED} == {"paging": FAILED}


def test_the_same_agency_without_the_fault_passes_paging(conformance_sandbox):
    assert run_check("paging", fresh_context("police.deaths", conformance_sandbox)).status == PASSED


@pytest.mark.parametrize("feed", sorted(REST))
def test_echo_secret_fails_the_secrets_check_naming_where_without_printing_it(conformance_sandbox, feed,
                                                                              monkeypatch):
    import re

    from connectors import http

    # a connector that quotes any error code the agency sends (as ours did before the check caught it)
    monkeypatch.setattr(http, "_ERROR_CODE", re.compile(r"^[A-Za-z0-9_.\-]{1,64}$"))
    with armed(conformance_sandbox, REST[feed], ["echo_secret"]):
        result = run_check("secrets", fresh_context(feed, conformance_sandbox))
    assert result.status == FAILED
    assert result.message.startswith(f"{feed}: secrets leak: the wrong rest.auth.")
    assert "sent by the probe appears in" in result.message and "AuthError message" in result.message
    assert_no_secret(conformance_sandbox, result.message)


@pytest.mark.parametrize("feed", sorted(REST))
def test_our_connectors_leave_an_echoed_secret_out_of_their_errors(conformance_sandbox, feed):
    with armed(conformance_sandbox, REST[feed], ["echo_secret"]):
        result = run_check("secrets", fresh_context(feed, conformance_sandbox))
    assert result.status == PASSED, result.message


def test_echo_secret_does_not_disturb_a_pull_with_the_right_credentials(conformance_sandbox):
    with armed(conformance_sandbox, "civil_affairs", ["echo_secret"]):
        result = run_check("connection", fresh_context("civil_affairs.deaths", conformance_sandbox))
    assert result.status == PASSED


# --- skips ---------------------------------------------------------------------------------------


def test_a_skip_needs_a_written_reason_and_a_known_check():
    with pytest.raises(ValueError, match="needs a written reason"):
        run_suite("police.deaths", skip={"paging": "  "})
    with pytest.raises(ValueError, match="unknown check 'pageing'"):
        run_suite("police.deaths", skip={"pageing": "typo"})
    police = load_feed("police.deaths")
    with pytest.raises(ValueError, match="police.deaths: conformance.skip: skipping check 'retries' needs a written"):
        config_skip(police.model_copy(update={"conformance": ConformanceConfig(skip={"retries": "  "})}))
    with pytest.raises(ValueError, match="conformance.skip: cannot skip unknown check 'retry'"):
        config_skip(police.model_copy(update={"conformance": ConformanceConfig(skip={"retry": "why"})}))


def test_a_skip_with_a_reason_is_reported_with_it(conformance_sandbox):
    context = fresh_context("religious_affairs.deaths", conformance_sandbox)
    result = run_check("rerun", context, skip={"rerun": "the agency rewrites its files every night"})
    assert result.status == SKIPPED
    assert result.message == "religious_affairs.deaths: rerun skipped: the agency rewrites its files every night"
    builtin = run_check("paging", context)
    assert builtin.status == SKIPPED and "a file drop has no pages" in builtin.message


def test_a_skip_in_the_feed_config_is_reported_with_its_reason(conformance_sandbox):
    context = fresh_context("police.deaths", conformance_sandbox)
    context.config = context.config.model_copy(
        update={"conformance": ConformanceConfig(skip={"timeouts": "the agency's gateway sets them"})})
    result = run_check("timeouts", context)
    assert (result.status, result.message) == (SKIPPED, "police.deaths: timeouts skipped: the agency's gateway sets them")


def test_the_suite_has_one_case_per_feed_of_the_registry_and_check():
    ids = [case.id for case in cases()]
    assert ids == [f"{feed}-{check}" for feed in registry().names for check in CHECKS]
    assert len(registry().names) >= 8 and "police.deaths-paging" in ids


# --- fundx connector check / new --------------------------------------------------------------------


@pytest.fixture
def cli():
    from fundx.cli.connector import connector_app

    runner = CliRunner()
    yield lambda *args: runner.invoke(connector_app, list(args))
    reload_settings()


def test_check_exit_2_for_an_unknown_feed_or_a_bad_skip(cli):
    result = cli("check", "tax.arrears")
    assert result.exit_code == 2 and "unknown feed 'tax.arrears'" in result.output
    result = cli("check", "police.deaths", "--skip", "paging")
    assert result.exit_code == 2 and "CHECK=REASON" in result.output
    result = cli("check", "police.deaths", "--skip", "paging=")
    assert result.exit_code == 2 and "needs a written reason" in result.output


def test_check_against_a_running_sandbox_uses_its_env_file_and_control_server(conformance_sandbox, cli, monkeypatch):
    # as `fundx sandbox start` + `fundx night`: nothing in the environment but FUNDX_SANDBOX_HOME
    monkeypatch.setenv("FUNDX_SANDBOX_HOME", str(conformance_sandbox.home))
    for name in conformance_sandbox.env:
        monkeypatch.delenv(name, raising=False)
    reload_settings()
    result = cli("check", "police.deaths", "--json", "--skip", "contract=checked by the feed's own suite")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passed"] is True and report["feed"] == "police.deaths"
    statuses = {c["check"]: c["status"] for c in report["checks"]}
    assert statuses["contract"] == SKIPPED and set(statuses.values()) == {PASSED, SKIPPED}
    retries = next(c for c in report["checks"] if c["check"] == "retries")["message"]
    assert "server_errors" in retries  # the faults were armed through the control server

    with armed(conformance_sandbox, "police", ["repeat_page"]):
        result = cli("check", "police.deaths", "--skip", "contract=not this time")
    assert result.exit_code == 1
    assert "paging" in result.output and "failed" in result.output and "does not conform" in result.output
    assert_no_secret(conformance_sandbox, result.output)


def test_check_without_fault_control_uses_probes_that_need_none(conformance_sandbox, cli, monkeypatch):
    for name, value in conformance_sandbox.env.items():
        monkeypatch.setenv(name, value)
    reload_settings()
    result = cli("check", "market_regulation.businesses", "--json")
    assert result.exit_code == 0, result.output
    retries = next(c for c in json.loads(result.output)["checks"] if c["check"] == "retries")
    assert retries["status"] == PASSED and "unreachable agency" in retries["message"]


def test_new_prints_the_files_and_the_next_steps(cli, monkeypatch, tmp_path):
    calls = []

    def scaffold(feed, transport, *, stage=None, force=False):
        calls.append((feed, transport, stage, force))
        return [tmp_path / "connectors" / "feeds" / f"{feed}.yaml", tmp_path / "contracts" / f"{feed}.odcs.yaml"]

    monkeypatch.setitem(sys.modules, "onboarding.scaffold", types.SimpleNamespace(scaffold=scaffold))
    result = cli("new", "tax.arrears", "--transport", "rest", "--stage", "employer_review", "--force")
    assert result.exit_code == 0, result.output
    assert calls == [("tax.arrears", "rest", "employer_review", True)]
    assert "tax.arrears.yaml" in result.output and "tax.arrears.odcs.yaml" in result.output
    assert "fundx contract infer" in result.output and "fundx connector check tax.arrears" in result.output
    assert cli("new", "tax.arrears", "--transport", "ftp").exit_code == 2
