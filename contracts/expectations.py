"""fundx's custom Great Expectations expectations, registered explicitly in this one module.

Defining an Expectation or MetricProvider subclass registers it with GX (its metaclass does); a
suite that names one of these types only loads when this module has been imported, and GX would
otherwise drop the expectation silently. So: the compiler imports this module, :func:`register`
checks every type is known, and :func:`load_suite` refuses a saved suite that lost one.

Each metric works on the whole column at once and is the very function the compiled checks use
(contracts.engine); values a rule
does not apply to (missing, or not shaped like an identity number) pass, because another rule
(``required``, ``format``) reports them: a row names every rule it breaks, and only those.
The metrics keep nulls themselves (``filter_column_isnull = False``) so GX does not copy the frame
once per expectation.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from great_expectations.compatibility import pydantic
from great_expectations.core.suite_parameters import SuiteParameterDict
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import ColumnMapExpectation, ColumnPairMapExpectation
from great_expectations.expectations.metrics import ColumnMapMetricProvider
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnPairMapMetricProvider,
    column_pair_condition_partial,
)
from great_expectations.expectations.metrics.map_metric_provider.column_condition_partial import (
    column_condition_partial,
)

from contracts.engine import (
    birth_matches_id_ok,
    credit_code_ok,
    date_ok,
    dates_between_ok,
    dates_in_order_ok,
    identity_number_ok,
    known_area_ok,
    not_before_id_birth_ok,
    timestamp_ok,
)


def _series(mask: np.ndarray, like: pd.Series) -> pd.Series:
    return pd.Series(mask, index=like.index)


# --- metrics ----------------------------------------------------------------------------------


class ColumnValuesIdentityNumber(ColumnMapMetricProvider):
    """Identity numbers with a real birth date and the right MOD 11-2 check character."""

    condition_metric_name = "column_values.fundx_identity_number"
    filter_column_isnull = False

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        return _series(identity_number_ok(column), column)


class ColumnValuesKnownAreaCode(ColumnMapMetricProvider):
    """Identity numbers issued under a county-level code that has existed in GB/T 2260 (national, with history)."""

    condition_metric_name = "column_values.fundx_known_area_code"
    filter_column_isnull = False

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        return _series(known_area_ok(column), column)


class ColumnValuesCreditCode(ColumnMapMetricProvider):
    """Unified social credit codes with the right MOD 31 check character."""

    condition_metric_name = "column_values.fundx_credit_code"
    filter_column_isnull = False

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        return _series(credit_code_ok(column), column)


class ColumnValuesDate(ColumnMapMetricProvider):
    """Real calendar dates (ISO text, date objects or datetime64)."""

    condition_metric_name = "column_values.fundx_date"
    filter_column_isnull = False

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        return _series(date_ok(column), column)


class ColumnValuesDateBetween(ColumnMapMetricProvider):
    """Dates within [min_date, max_date] (ISO strings; either may be None)."""

    condition_metric_name = "column_values.fundx_date_between"
    condition_value_keys = ("min_date", "max_date")
    filter_column_isnull = False

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, min_date: str | None = None, max_date: str | None = None,
                **kwargs: Any) -> pd.Series:
        return _series(dates_between_ok(column, min_date, max_date), column)


class ColumnValuesTimestamp(ColumnMapMetricProvider):
    """Moments with a time zone: tz-aware datetime64 or ISO 8601 text with an offset."""

    condition_metric_name = "column_values.fundx_timestamp"
    filter_column_isnull = False

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        return _series(timestamp_ok(column), column)


class ColumnPairDatesInOrder(ColumnPairMapMetricProvider):
    """Column A's date is on or before column B's (rows without both dates pass)."""

    condition_metric_name = "column_pair_values.fundx_dates_in_order"
    condition_domain_keys = ("batch_id", "table", "column_A", "column_B", "row_condition", "condition_parser",
                             "ignore_row_if")

    @column_pair_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column_A: pd.Series, column_B: pd.Series, **kwargs: Any) -> pd.Series:
        return _series(dates_in_order_ok(column_A, column_B), column_A)


class ColumnPairIdBirthDate(ColumnPairMapMetricProvider):
    """Column B (a birth date) equals the birth date written in column A (an identity number)."""

    condition_metric_name = "column_pair_values.fundx_id_birth_date"
    condition_domain_keys = ColumnPairDatesInOrder.condition_domain_keys

    @column_pair_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column_A: pd.Series, column_B: pd.Series, **kwargs: Any) -> pd.Series:
        return _series(birth_matches_id_ok(column_A, column_B), column_A)


class ColumnPairNotBeforeIdBirth(ColumnPairMapMetricProvider):
    """Column B (a date) is not before the birth date written in column A (an identity number)."""

    condition_metric_name = "column_pair_values.fundx_not_before_id_birth"
    condition_domain_keys = ColumnPairDatesInOrder.condition_domain_keys

    @column_pair_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column_A: pd.Series, column_B: pd.Series, **kwargs: Any) -> pd.Series:
        return _series(not_before_id_birth_ok(column_A, column_B), column_A)


# --- expectations -----------------------------------------------------------------------------

_NO_IGNORE = pydantic.Field(default="neither", description="fundx metrics decide about missing values themselves")
_LIBRARY: dict[str, Any] = {"maturity": "production", "tags": ["fundx"], "contributors": ["fundx"],
                                 "requirements": [], "has_full_test_suite": True, "manually_reviewed_code": True}


class ExpectColumnValuesToBeIdentityNumbers(ColumnMapExpectation):
    """Expect identity numbers (GB 11643) to have a real birth date and the right check character."""

    map_metric = "column_values.fundx_identity_number"
    success_keys = ("mostly",)
    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY


class ExpectColumnValuesToHaveKnownAreaCodes(ColumnMapExpectation):
    """Expect identity numbers to carry an area code that has existed in GB/T 2260 (anywhere in the country)."""

    map_metric = "column_values.fundx_known_area_code"
    success_keys = ("mostly",)
    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY


class ExpectColumnValuesToBeCreditCodes(ColumnMapExpectation):
    """Expect unified social credit codes (GB 32100) to have the right check character."""

    map_metric = "column_values.fundx_credit_code"
    success_keys = ("mostly",)
    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY


class ExpectColumnValuesToBeDates(ColumnMapExpectation):
    """Expect real calendar dates (after normalisation: ISO text 2021-04-12, or typed dates)."""

    map_metric = "column_values.fundx_date"
    success_keys = ("mostly",)
    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY


class ExpectColumnValuesToBeDatesBetween(ColumnMapExpectation):
    """Expect dates within bounds; ``max_date`` may be the suite parameter ``today``."""

    min_date: str | SuiteParameterDict | None = None
    max_date: str | SuiteParameterDict | None = None
    map_metric = "column_values.fundx_date_between"
    success_keys = ("min_date", "max_date", "mostly")
    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY


class ExpectColumnValuesToBeTimestamps(ColumnMapExpectation):
    """Expect moments with a time zone."""

    map_metric = "column_values.fundx_timestamp"
    success_keys = ("mostly",)
    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY


class ExpectColumnPairDatesToBeInOrder(ColumnPairMapExpectation):
    """Expect column A's date on or before column B's (death before cremation, start before end)."""

    ignore_row_if: Literal["both_values_are_missing", "either_value_is_missing", "neither"] | SuiteParameterDict = _NO_IGNORE
    map_metric = "column_pair_values.fundx_dates_in_order"
    success_keys = ("column_A", "column_B", "ignore_row_if", "mostly")
    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY


class ExpectColumnPairBirthDateToMatchIdentityNumber(ColumnPairMapExpectation):
    """Expect the birth date (column B) to equal the one in the identity number (column A)."""

    ignore_row_if: Literal["both_values_are_missing", "either_value_is_missing", "neither"] | SuiteParameterDict = _NO_IGNORE
    map_metric = "column_pair_values.fundx_id_birth_date"
    success_keys = ("column_A", "column_B", "ignore_row_if", "mostly")
    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY


class ExpectColumnPairDateNotBeforeIdentityBirth(ColumnPairMapExpectation):
    """Expect a date (column B) not before the birth date in the identity number (column A)."""

    ignore_row_if: Literal["both_values_are_missing", "either_value_is_missing", "neither"] | SuiteParameterDict = _NO_IGNORE
    map_metric = "column_pair_values.fundx_not_before_id_birth"
    success_keys = ("column_A", "column_B", "ignore_row_if", "mostly")
    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY


#: Every custom expectation, by the type name suites use. The one list to extend.
CUSTOM_EXPECTATIONS: dict[str, type] = {
    cls.expectation_type: cls
    for cls in (
        ExpectColumnValuesToBeIdentityNumbers, ExpectColumnValuesToHaveKnownAreaCodes,
        ExpectColumnValuesToBeCreditCodes, ExpectColumnValuesToBeDates, ExpectColumnValuesToBeDatesBetween,
        ExpectColumnValuesToBeTimestamps, ExpectColumnPairDatesToBeInOrder,
        ExpectColumnPairBirthDateToMatchIdentityNumber, ExpectColumnPairDateNotBeforeIdentityBirth,
    )
}


def register() -> dict[str, type]:
    """Make sure GX knows every custom expectation (raises if one is missing); returns them by type."""
    from great_expectations.expectations.registry import get_expectation_impl

    for name, cls in CUSTOM_EXPECTATIONS.items():
        if get_expectation_impl(name) is not cls:
            raise RuntimeError(f"custom expectation {name} is not registered with Great Expectations")
    return CUSTOM_EXPECTATIONS


register()
