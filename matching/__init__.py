"""The matching stage: the stages' stores, death consolidation, the rules, suspect lists and orders.

See docs/matching.md for the design and the threat model of the pseudonymised matching.
"""
