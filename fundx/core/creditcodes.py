"""GB 11714 organization codes and GB 32100 unified social credit codes (USCC), one value at a time.

A credit code has 18 characters: the registration authority, the entity type, a 6-digit area code,
the 9-character GB 11714 organization code with its own check character, and a MOD 31 check
character. Column-wide checks and the sandbox's builders are in :mod:`fundx.core.idcolumns`.
"""

from __future__ import annotations

ORG_WEIGHTS: tuple[int, ...] = (3, 7, 9, 10, 5, 8, 4, 2)
ORG_CHECK_CHARS = "0123456789X0"  # index 11 - (sum mod 11): 10 -> X, 11 -> 0
_ORG_VALUES = {c: i for i, c in enumerate("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")}

USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS: tuple[int, ...] = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC_VALUES = {c: i for i, c in enumerate(USCC_CHARS)}


def org_code_check_char(first8: str) -> str:
    """The GB 11714 check character of an organization code's first 8 characters (digits, A-Z)."""
    if len(first8) != 8 or any(c not in _ORG_VALUES for c in first8):
        raise ValueError("an organization code's first 8 characters must be digits or A-Z")
    total = sum(_ORG_VALUES[c] * w for c, w in zip(first8, ORG_WEIGHTS))
    return ORG_CHECK_CHARS[11 - total % 11]


def is_valid_org_code(s: object) -> bool:
    """Whether s is a 9-character GB 11714 organization code with the right check character."""
    if not isinstance(s, str) or len(s) != 9:
        return False
    try:
        return org_code_check_char(s[:8]) == s[8]
    except ValueError:
        return False


def uscc_check_char(first17: str) -> str:
    """The GB 32100 MOD 31 check character that completes a credit code's first 17 characters."""
    if len(first17) != 17 or any(c not in _USCC_VALUES for c in first17):
        raise ValueError("a credit code's first 17 characters must come from " + USCC_CHARS)
    total = sum(_USCC_VALUES[c] * w for c, w in zip(first17, USCC_WEIGHTS))
    return USCC_CHARS[(31 - total % 31) % 31]


def is_valid_uscc(s: object, *, check_org_code: bool = False) -> bool:
    """Whether s is an 18-character unified social credit code with the right check character.

    With check_org_code, characters 9-17 must also be a valid GB 11714 organization code (true of
    codes issued to organizations; some registries' codes for individual businesses are not).
    """
    if not isinstance(s, str) or len(s) != 18:
        return False
    try:
        if uscc_check_char(s[:17]) != s[17]:
            return False
    except ValueError:
        return False
    return is_valid_org_code(s[8:17]) if check_org_code else True
