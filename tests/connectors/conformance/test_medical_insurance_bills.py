"""medical_insurance.bills passes the connector conformance suite (onboarding/conformance.py)."""

from conformance_suite import conformance_tests

globals().update(conformance_tests("medical_insurance.bills"))
