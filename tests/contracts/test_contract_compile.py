"""The compiler: pure, pinned by golden files, and suites that lose an expectation do not load."""

from __future__ import annotations

import pytest

from contracts import contract_names, load_contract
from contracts.compile import compile_suite, golden_path, golden_text, load_suite, suite_document
from contracts.expectations import CUSTOM_EXPECTATIONS
from contracts.release import released_path
from contracts.rules import contract_rules
from fundx.core.errors import ConfigurationError

REFRESH = "refresh with: .venv/bin/python -m contracts.compile --write-golden (after checking the diff)"


@pytest.mark.parametrize("feed", contract_names())
def test_golden_file_is_what_the_contract_compiles_to(feed: str) -> None:
    if not golden_path(feed).is_file() and not released_path(feed).is_file():
        # a new feed's draft contract changes until it is released: its golden file is written then
        pytest.skip(f"{feed}: not released yet, so no golden file ({REFRESH.replace('refresh', 'write it')})")
    assert golden_path(feed).is_file(), REFRESH
    assert golden_path(feed).read_text(encoding="utf-8") == golden_text(feed), REFRESH


def test_every_released_contract_has_a_golden_file() -> None:
    released = [f for f in contract_names() if released_path(f).is_file()]
    assert released and all(golden_path(f).is_file() for f in released), REFRESH


@pytest.mark.parametrize("feed", contract_names())
def test_one_expectation_per_rule_named_by_meta(feed: str) -> None:
    contract = load_contract(feed)
    suite = compile_suite(contract)
    assert [e.meta["rule"] for e in suite.expectations] == [r.id for r in contract_rules(contract).rules
                                                            if not r.structural]  # the transports' to find
    assert suite_document(compile_suite(contract)) == suite_document(suite)  # pure


def test_a_saved_suite_loads_back_whole() -> None:
    document = suite_document(compile_suite(load_contract("police.deaths")))
    assert suite_document(load_suite(document)) == document
    assert {e["type"] for e in document["expectations"]} & set(CUSTOM_EXPECTATIONS)


def test_a_suite_that_lost_an_expectation_is_an_error() -> None:
    document = suite_document(compile_suite(load_contract("police.deaths")))
    document["expectations"][6]["type"] = "expect_column_values_to_be_lucky_numbers"
    with pytest.raises(ConfigurationError, match="expectations.6.type: unknown expectation"):
        load_suite(document, where="police.deaths suite")
