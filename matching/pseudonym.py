"""Pseudonyms for matching: HMAC-SHA256 under the office's key, computed inside DuckDB.

``person`` (and ``account``) tokens are the first 16 bytes of HMAC-SHA256(key, value) as a BLOB:
the same value gives the same token in every feed and in the roll, and nobody without the key can
compute or reverse one (docs/matching.md, threat model). HMAC is written out in SQL (two SHA-256
passes over the padded key) so DuckDB computes it vectorised on every core: about 1 µs a value,
where Python's hmac takes 5.

``id_masked`` keeps the area and the last four characters: ``110105********123X``. ``name_key`` puts a
name in the form names are compared in (fundx.core.identity.normalize_name: one middle dot, no spaces),
so that 买买提·艾力 and 买买提•艾力 from two agencies give one ``name_token``.
"""

from __future__ import annotations

import hashlib
import hmac

import duckdb

from fundx.core.identity import NAME_DOT, NAME_DOTS

TOKEN_BYTES = 16
#: Python's white space (str.split) in RE2: ASCII's, \v, \x1c-\x1f, NEL and the Unicode separators (U+3000 ...)
_SPACE = "[\\s\\x{0B}\\x{1C}-\\x{1F}\\x{85}\\p{Z}]"
_DOTS = "".join(f"\\x{{{ord(c):04X}}}" for c in NAME_DOTS)  # RE2 escapes: a '.' stays a character, not "any"
_BLOCK = 64


def _pads(key: bytes) -> tuple[str, str]:
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in key).hex(), bytes(b ^ 0x5C for b in key).hex()


def install(con: duckdb.DuckDBPyConnection, key: bytes) -> None:
    """Define the macros ``token(text)``, ``id_masked(text)`` and ``account_masked(text)`` on a connection.

    The key is part of the macro text of this in-memory connection only: never written or logged.
    """
    ipad, opad = _pads(key)
    con.execute(
        f"CREATE OR REPLACE TEMP MACRO token(v) AS CASE WHEN v IS NULL THEN NULL ELSE "
        f"unhex(substr(sha256(unhex('{opad}') || unhex(sha256(unhex('{ipad}') || encode(v::VARCHAR)))), 1, "
        f"{TOKEN_BYTES * 2})) END"
    )
    con.execute(
        "CREATE OR REPLACE TEMP MACRO id_masked(v) AS CASE WHEN v IS NULL THEN NULL "
        "WHEN length(v) = 18 THEN substr(v, 1, 6) || '********' || substr(v, 15, 4) ELSE '******' END"
    )
    # fundx.core.identity.normalize_name in SQL: every middle-dot form as U+00B7, no white space
    con.execute(
        "CREATE OR REPLACE TEMP MACRO name_key(v) AS CASE WHEN v IS NULL THEN NULL ELSE "
        f"regexp_replace(regexp_replace(nfc_normalize(v), '[{_DOTS}]', '{NAME_DOT}', 'g'), '{_SPACE}', '', 'g') END"
    )
    con.execute(
        "CREATE OR REPLACE TEMP MACRO account_masked(v) AS CASE WHEN v IS NULL THEN NULL "
        "WHEN length(v) > 10 THEN substr(v, 1, 4) || repeat('*', length(v) - 8) || substr(v, -4) ELSE '****' END"
    )


def token(key: bytes, value: str) -> bytes:
    """The same token in Python (for tests and single lookups)."""
    return hmac.new(key, value.encode(), hashlib.sha256).digest()[:TOKEN_BYTES]
