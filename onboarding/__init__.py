"""Onboarding an agency feed: the scaffold and the conformance suite every connector passes."""
