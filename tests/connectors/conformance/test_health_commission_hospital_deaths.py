"""health_commission.hospital_deaths passes the connector conformance suite (onboarding/conformance.py)."""

from conformance_suite import conformance_tests

globals().update(conformance_tests("health_commission.hospital_deaths"))
