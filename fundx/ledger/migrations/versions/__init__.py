"""The ledger's schema revisions, one file each (Alembic loads them by path; this file makes the folder
a package, so a wheel carries them)."""
