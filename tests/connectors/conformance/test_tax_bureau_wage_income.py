"""tax_bureau.wage_income passes the connector conformance suite (onboarding/conformance.py)."""

from conformance_suite import conformance_tests

globals().update(conformance_tests("tax_bureau.wage_income"))
