"""The chaos night (``make chaos``, ``python -m chaos``): faults, SIGKILLs and the books against the truth.

See :mod:`chaos.night` for what it does and docs/testing.md ("The chaos night") for how to read its output.
"""
