"""The core every layer stands on: errors, settings, time, identities, digests, retries, the city."""
