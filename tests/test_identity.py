"""Tests for identity numbers: check characters, validation, masking, and the vectorised builders."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from fundx.identity import (
    birth_date_of,
    civil_from_days,
    id_check_char,
    is_male,
    is_valid_id,
    is_valid_org_code,
    is_valid_uscc,
    make_id_matrix,
    make_ids,
    make_usccs,
    mask_id,
    normalize_id,
    org_code_check_char,
    uscc_check_char,
)

CLASSIC = "11010519491231002X"


@pytest.mark.parametrize(
    ("first17", "check"),
    # values worked out by hand: 176 mod 11 = 0 -> "1", 170 mod 11 = 5 -> "7"
    [("11010519491231002", "X"), ("33010619740308343", "X"), ("33010619590304526", "2"),
     ("44030419900101001", "1"), ("33010220000229123", "7")],
)
def test_id_check_char(first17: str, check: str) -> None:
    assert id_check_char(first17) == check
    assert is_valid_id(first17 + check)


@pytest.mark.parametrize(
    "value",
    [
        "11010519491231002Y",  # not a check char
        "110105194912310021",  # wrong check char
        "11010519491231002x",  # lower-case x: messy, not valid until normalised
        "１１０１０５１９４９１２３１００２Ｘ",  # full-width
        "11010519491231002X ",  # trailing space
        "11010519490231002X",  # 31 February
        "110105194912310",  # too short
        "01010519491231002X",  # area codes never start with 0
        "1.10105199001011e+17",  # what Excel leaves
        "",
        None,
        110105194912310020,
    ],
)
def test_invalid_ids(value: object) -> None:
    assert not is_valid_id(value)


def test_id_check_char_rejects_non_digits() -> None:
    with pytest.raises(ValueError):
        id_check_char("1101051949123100X")
    with pytest.raises(ValueError):
        id_check_char("１１０１０５１９４９１２３１００２")


def test_birth_date_and_gender() -> None:
    assert birth_date_of(CLASSIC) == date(1949, 12, 31)
    assert not is_male(CLASSIC)  # 17th digit 2: a woman
    assert is_male("330106195903045262") is False
    with pytest.raises(ValueError):
        birth_date_of("123")


def test_normalize_id_repairs_only_harmless_messiness() -> None:
    assert normalize_id("１１０１０５１９４９１２３１００２ｘ ") == CLASSIC
    assert normalize_id(" 11010519491231002x\u3000") == CLASSIC
    assert normalize_id(None) is None
    assert normalize_id(1.10105199001011e17) is None
    assert not is_valid_id(normalize_id("1.10105199001011e+17"))


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        (CLASSIC, "110105********002X"),
        (" 11010519491231002X ", "110105********002X"),
        ("11010519491231002x", "110105********002x"),
        ("1234", "****"),
        ("1.10105199001011e+17", "*" * 20),
        ("", "<invalid>"),
        ("x" * 500, "<invalid>"),
        (None, "<none>"),
        (110105194912310020, "<invalid>"),
        (1.10105199001011e17, "<invalid>"),
    ],
)
def test_mask_id(value: object, masked: str) -> None:
    assert mask_id(value) == masked


def test_mask_never_echoes_the_middle() -> None:
    for value in (CLASSIC, "330106195903045262", "not an id at all!!"):
        assert value[6:14] not in mask_id(value)


@pytest.mark.parametrize("code", ["91350100M000100Y43", "91110000600037341L"])
def test_known_credit_codes(code: str) -> None:
    assert is_valid_uscc(code)
    assert is_valid_uscc(code, check_org_code=True)
    assert uscc_check_char(code[:17]) == code[17]
    assert is_valid_org_code(code[8:17])


def test_credit_code_errors() -> None:
    assert not is_valid_uscc("91350100M000100Y44")
    assert not is_valid_uscc("91350100M000100Y4")
    assert not is_valid_uscc("91350100M000100I43")  # I is not in the charset
    assert not is_valid_uscc(None)
    # A right MOD 31 character on a wrong organization code passes only the lenient check.
    first17 = "91350100M000100Y5"
    code = first17 + uscc_check_char(first17)
    assert is_valid_uscc(code) and not is_valid_uscc(code, check_org_code=True)


def test_org_code_check_char() -> None:
    assert org_code_check_char("M000100Y") == "4"
    assert org_code_check_char("60003734") == "1"
    # Remainder 1 gives X and remainder 0 gives 0: find bodies that hit both.
    found = {org_code_check_char(f"{i:08d}") for i in range(200)}
    assert {"X", "0"} <= found
    with pytest.raises(ValueError):
        org_code_check_char("1234567")


def test_uscc_check_zero_when_sum_divides() -> None:
    # 31 - 0 -> 0: search a body whose weighted sum is a multiple of 31.
    for i in range(10_000):
        first17 = f"9133010{i:010d}"
        if uscc_check_char(first17) == "0":
            assert is_valid_uscc(first17 + "0")
            break
    else:
        pytest.fail("no code with check character 0 found")


def test_civil_from_days_matches_the_calendar() -> None:
    days = np.arange(-80_000, 40_000, 37)
    y, m, d = civil_from_days(days)
    for k in range(0, len(days), 97):
        expected = date(1970, 1, 1).toordinal() + int(days[k])
        assert date(int(y[k]), int(m[k]), int(d[k])) == date.fromordinal(expected)


def test_vectorised_ids_equal_scalar() -> None:
    rng = np.random.default_rng(1)
    n = 20_000
    area = rng.choice([330102, 330106, 110105, 440304], n)
    birth = np.datetime64("1920-01-01") + rng.integers(0, 35_000, n)
    seq = rng.integers(0, 1000, n)
    ids = make_ids(area, birth, seq)
    assert ids.dtype == np.dtype("<U18")
    for k in range(n):
        s = str(ids[k])
        assert s[17] == id_check_char(s[:17])
        assert is_valid_id(s)
        assert int(s[14:17]) == seq[k]
        assert int(s[:6]) == area[k]
        assert birth_date_of(s) == birth[k].astype(object)
    # yyyymmdd integers give the same numbers as datetime64 dates.
    ymd = np.array([int(str(b).replace("-", "")) for b in birth[:100]])
    assert (make_id_matrix(area[:100], ymd, seq[:100]) == make_id_matrix(area[:100], birth[:100], seq[:100])).all()


def test_vectorised_credit_codes_equal_scalar() -> None:
    rng = np.random.default_rng(2)
    n = 5000
    codes = make_usccs(rng.integers(1, 4, n), rng.choice([330102, 330182], n), rng.integers(0, 10**8, n))
    for c in codes:
        c = str(c)
        assert c[0] == "9" and c[1] in "123"
        assert is_valid_uscc(c, check_org_code=True)
        assert c[16] == org_code_check_char(c[8:16])
        assert c[17] == uscc_check_char(c[:17])
