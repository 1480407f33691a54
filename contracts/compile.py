"""The contract -> Great Expectations compiler: a pure function, with golden files of its output.

    contract --contract_rules()--> engine-neutral rules --to_gx()--> ExpectationSuite

Each expectation carries ``meta.rule`` (the rule's id), which is how validation results are named
back to rules. Values that change from night to night are suite parameters, not compiled in:
``today`` (dates not in the future) and ``row_count_min`` / ``row_count_max`` (from the feed's
history). The same contract always compiles to the same suite, so ``tests/contracts/golden/<feed>.json``
pins what each contract means to GX. Refresh them after an intended change with::

    .venv/bin/python -m contracts.compile --write-golden
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import great_expectations.expectations as gxe
from great_expectations.core import ExpectationSuite
from great_expectations.expectations.expectation import Expectation

from contracts import Contract, contract_names, load_contract
from contracts import expectations as fx  # registers the custom expectations (must precede loading suites)
from contracts.checks import EXCEL_MANGLED
from contracts.rules import Rule, contract_rules
from fundx.core.errors import ConfigurationError

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "tests" / "contracts" / "golden"
TODAY = {"$PARAMETER": "today"}


def _required(rule: Rule) -> Expectation:
    return gxe.ExpectColumnValuesToNotBeNull(column=rule.columns[0])


def _unique(rule: Rule) -> Expectation:
    return gxe.ExpectColumnValuesToBeUnique(column=rule.columns[0])


def _pattern(rule: Rule) -> Expectation:
    return gxe.ExpectColumnValuesToMatchRegex(column=rule.columns[0], regex=rule.params["regex"])


def _length(rule: Rule) -> Expectation:
    return gxe.ExpectColumnValueLengthsToBeBetween(column=rule.columns[0], min_value=rule.params["min"],
                                                   max_value=rule.params["max"])


def _allowed(rule: Rule) -> Expectation:
    return gxe.ExpectColumnValuesToBeInSet(column=rule.columns[0], value_set=list(rule.params["values"]))


def _range(rule: Rule) -> Expectation:
    low, high = rule.params["min"], rule.params["max"]
    if rule.params["dates"]:
        return fx.ExpectColumnValuesToBeDatesBetween(column=rule.columns[0], min_date=low, max_date=high)
    return gxe.ExpectColumnValuesToBeBetween(column=rule.columns[0], min_value=low, max_value=high)


def _not_greater(rule: Rule) -> Expectation:
    column, than = rule.columns
    return gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A=than, column_B=column, or_equal=True,
                                                       ignore_row_if="either_value_is_missing")


def _row_count(rule: Rule) -> Expectation:
    return gxe.ExpectTableRowCountToBeBetween(min_value={"$PARAMETER": "row_count_min"},
                                              max_value={"$PARAMETER": "row_count_max"})


#: rule kind -> the expectation that checks it (one entry per kind; the only table to extend)
TO_GX: dict[str, Callable[[Rule], Expectation]] = {
    "required": _required,
    "unique": _unique,
    "pattern": _pattern,
    "length": _length,
    "allowed_values": _allowed,
    "range": _range,
    "date": lambda r: fx.ExpectColumnValuesToBeDates(column=r.columns[0]),
    "timestamp": lambda r: fx.ExpectColumnValuesToBeTimestamps(column=r.columns[0]),
    "not_future": lambda r: fx.ExpectColumnValuesToBeDatesBetween(column=r.columns[0], max_date=TODAY),
    "excel_mangled": lambda r: gxe.ExpectColumnValuesToNotMatchRegex(column=r.columns[0], regex=EXCEL_MANGLED),
    "identity_number": lambda r: fx.ExpectColumnValuesToBeIdentityNumbers(column=r.columns[0]),
    "area_code": lambda r: fx.ExpectColumnValuesToHaveKnownAreaCodes(column=r.columns[0]),
    "credit_code": lambda r: fx.ExpectColumnValuesToBeCreditCodes(column=r.columns[0]),
    "birth_date_matches_id": lambda r: fx.ExpectColumnPairBirthDateToMatchIdentityNumber(
        column_A=r.columns[0], column_B=r.columns[1]),
    "date_order": lambda r: fx.ExpectColumnPairDatesToBeInOrder(column_A=r.columns[0], column_B=r.columns[1]),
    "not_before_id_birth": lambda r: fx.ExpectColumnPairDateNotBeforeIdentityBirth(
        column_A=r.columns[0], column_B=r.columns[1]),
    "not_greater_than": _not_greater,
    "row_count": _row_count,
}


def to_gx(rules: tuple[Rule, ...] | list[Rule], name: str) -> ExpectationSuite:
    """A GX suite checking the rules, one expectation each, named by ``meta.rule``; the structural rules
    (row shape, key conflicts) are the transport's to find, not GX's."""
    expectations = []
    for rule in rules:
        if rule.structural:
            continue
        expectation = TO_GX[rule.kind](rule)
        expectation.meta = {"rule": rule.id}
        expectations.append(expectation)
    return ExpectationSuite(name=name, expectations=expectations, meta={"fundx": "compiled from the contract"})


def compile_suite(contract: Contract) -> ExpectationSuite:
    """The GX suite of a contract (pure: the same contract gives the same suite)."""
    return to_gx(contract_rules(contract).rules, f"{contract.feed}@{contract.version}")


def suite_document(suite: ExpectationSuite) -> dict[str, Any]:
    """A suite as plain JSON data without GX's random ids: what golden files hold and load_suite reads."""
    return {
        "name": suite.name,
        "expectations": [
            {"type": e.expectation_type, "kwargs": e.configuration.kwargs, "meta": e.meta}
            for e in suite.expectations
        ],
    }


def load_suite(document: dict[str, Any], *, where: str = "suite") -> ExpectationSuite:
    """A suite from its saved form; an expectation GX does not know is an error, never dropped."""
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    expectations = []
    for i, item in enumerate(document.get("expectations", [])):
        try:
            config = ExpectationConfiguration(type=item["type"], kwargs=item.get("kwargs", {}), meta=item.get("meta"))
            expectations.append(config.to_domain_obj())
        except ExpectationNotFoundError:
            raise ConfigurationError(
                f"{where}: expectations.{i}.type: unknown expectation {item.get('type')!r} "
                "(is its module imported? fundx's are registered in contracts/expectations.py)"
            ) from None
    suite = ExpectationSuite(name=document.get("name", "suite"), expectations=expectations)
    if len(suite.expectations) != len(document.get("expectations", [])):
        raise ConfigurationError(f"{where}: {len(document['expectations']) - len(suite.expectations)} expectation(s) were lost on loading")
    return suite


def golden_path(feed: str) -> Path:
    """Where the golden file of a feed's compiled suite lives."""
    return GOLDEN_DIR / f"{feed}.json"


def golden_text(feed: str) -> str:
    """The golden file's expected content for a feed's current contract."""
    return json.dumps(suite_document(compile_suite(load_contract(feed))), ensure_ascii=False, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print or rewrite the golden files of every contract's compiled suite."""
    parser = argparse.ArgumentParser(prog="python -m contracts.compile", description=main.__doc__)
    parser.add_argument("--write-golden", action="store_true", help="rewrite tests/contracts/golden/<feed>.json")
    parser.add_argument("feeds", nargs="*", help="feeds (default: all)")
    args = parser.parse_args(argv)
    for feed in args.feeds or contract_names():
        text = golden_text(feed)
        if args.write_golden:
            GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
            golden_path(feed).write_text(text, encoding="utf-8")
            print(f"written {golden_path(feed)}")
        else:
            sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
