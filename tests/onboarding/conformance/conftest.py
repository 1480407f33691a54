"""One sandbox for every conformance test file of the session (see conformance_suite.py)."""

from conformance_suite import conformance_sandbox  # noqa: F401  (the session fixture)
