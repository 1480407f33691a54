"""The core every layer stands on: errors, settings, time, identities, digests, retries, private files, the city."""
