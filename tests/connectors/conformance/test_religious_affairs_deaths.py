"""religious_affairs.deaths passes the connector conformance suite (onboarding/conformance.py)."""

from conformance_suite import conformance_tests

globals().update(conformance_tests("religious_affairs.deaths"))
