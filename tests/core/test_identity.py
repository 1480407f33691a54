"""Tests for identity numbers: check characters, validation, masking, and the vectorised builders."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from fundx.core.areacodes import AREA_CODES_ADDED, RESIDENCE_PERMIT_AREAS, area_table, is_known_area_code, known_areas
from fundx.core.creditcodes import is_valid_org_code, is_valid_uscc, org_code_check_char, uscc_check_char
from fundx.core.idcolumns import civil_from_days, id_column, make_id_matrix, make_ids, make_usccs, upgrade15_rows
from fundx.core.identity import (
    NAME_DOTS,
    birth_date_of,
    id_check_char,
    is_male,
    is_valid_id,
    mask_id,
    normalize_id,
    normalize_name,
    upgrade_id15,
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


# --- area codes: the national table (GB/T 2260, with history) -----------------------------------

def test_the_area_table_is_every_county_code_that_has_existed() -> None:
    table = area_table()
    # python-stdnum 2.2's cn/loc holds 6,885 codes: 34 of provinces (xx0000), 553 of prefectures (xxxx00),
    # 9 of which have no county below them; the rest, those 9 and the codes it lacks are county-level
    assert len(table) == 6885 - 34 - (553 - 9) + len(AREA_CODES_ADDED) == 6309
    assert len({a.province for a in table.values()}) == 31
    assert not [c for c in table if c % 10000 == 0]


@pytest.mark.parametrize(("code", "name"), [
    (110105, "朝阳区"), (310115, "浦东新区"), (440304, "福田区"),  # Beijing, Shanghai, Shenzhen
    (210102, "和平区"), (210103, "沈河区"), (210112, "浑南区"),  # Shenyang (210112 was 东陵区 until 2013)
    (340104, "蜀山区"), (340102, "瑶海区"),  # Hefei (西市区, 东市区 until 2001)
    (330106, "西湖区"), (330113, "临平区"), (330114, "钱塘区"),  # Hangzhou, 2021's districts (AREA_CODES_ADDED)
    (330103, "下城区"), (330104, "江干区"), (330121, "萧山县"),  # retired: merged 2021, 2021, renamed 1987
    (110103, "崇文区"),  # merged into 东城区 in 2010
    (441900, "东莞市"), (442000, "中山市"), (620200, "嘉峪关市"),  # prefecture-level cities without counties
    (650102, "天山区"), (540102, "城关区"), (460202, "海棠区"),  # Urumqi, Lhasa, Sanya
])
def test_real_codes_of_many_provinces_are_known(code: int, name: str) -> None:
    assert is_known_area_code(code) and is_known_area_code(str(code))
    assert name in area_table()[code].names


def test_a_retired_code_stays_valid() -> None:
    xiacheng = area_table()[330103]
    assert (xiacheng.first, xiacheng.last) == (1983, 2021)
    assert not xiacheng.in_use(2022) and xiacheng.in_use(1990)
    number = "330103" + "19500101" + "123"
    assert known_areas(np.array([int(number[:6])])).all()


@pytest.mark.parametrize("code", [
    "000000", "999999", "123456", "330199", "330150", "210199",
    "330100", "210100", "340100",  # prefectures with counties below: no office issues under them
    "110000", "330000", "710000",  # provinces (台湾省 too)
    "33010", "3301066", "33O106", "", "３３０１０６",
])
def test_look_alikes_are_not_known(code: str) -> None:
    assert not is_known_area_code(code)


def test_residence_permits_of_hong_kong_macao_and_taiwan() -> None:
    assert set(RESIDENCE_PERMIT_AREAS) == {810000, 820000, 830000}
    assert all(is_known_area_code(c) for c in RESIDENCE_PERMIT_AREAS)


def test_known_areas_vectorised_equals_scalar() -> None:
    rng = np.random.default_rng(7)
    codes = np.concatenate([rng.choice(np.fromiter(area_table(), np.int64), 5000), rng.integers(-5, 1_100_000, 5000)])
    assert (known_areas(codes) == np.array([is_known_area_code(int(c)) if c >= 0 else False for c in codes])).all()
    ids = id_column(np.array(["330103195001011239", "999999195001011231", None, "x"], dtype=object))
    assert known_areas(ids.area).tolist() == [True, False, False, False]


# --- first-generation 15-digit numbers ----------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), [
    ("110105491231002", "11010519491231002X"),  # the standard's example number, in its 15-digit form
    ("330106590304526", "330106195903045262"),
    ("210102380101001", "21010219380101001" + id_check_char("21010219380101001")),
])
def test_upgrade_id15(old: str, new: str) -> None:
    assert upgrade_id15(old) == new and is_valid_id(new)


@pytest.mark.parametrize("bad", ["11010549123100", "1101054912310021", "11010549123100X", "１１０１０５４９１２３１００２", None])
def test_upgrade_id15_refuses_what_is_not_15_digits(bad: object) -> None:
    with pytest.raises(ValueError):
        upgrade_id15(bad)  # type: ignore[arg-type]


def test_upgrade15_rows_vectorised() -> None:
    rng = np.random.default_rng(3)
    n = 5000
    full = make_ids(rng.choice([330102, 110105, 210103], n), np.datetime64("1920-01-01") + rng.integers(0, 29_000, n),
                    rng.integers(0, 1000, n))
    old = [s[:6] + s[8:17] for s in full.tolist()]
    values = np.array([*old, "330106195903045262", "11010549123100X", None, "１１０１０５４９１２３１００２"], dtype=object)
    pos, mat = upgrade15_rows(values)
    assert pos.tolist() == list(range(n))  # only the rows of 15 ASCII digits
    assert [bytes(r).decode() for r in mat] == full.tolist()


# --- names ----------------------------------------------------------------------------------------


def test_the_middle_dot_in_its_forms_is_one_for_comparing() -> None:
    forms = ["买买提\u00b7艾力", "买买提\u30fb艾力", "买买提\u2022艾力", "买买提\u2027艾力", "买买提\uff65艾力",
             "买买提\u318d艾力", "买买提\uff0e艾力", "买买提.艾力", "买买提\u0387艾力", " 买买提 · 艾力\u3000"]
    assert {normalize_name(f) for f in forms} == {"买买提·艾力"}
    assert set(NAME_DOTS) >= {f[3] for f in forms[:-1]}
    assert normalize_name("王\u3000芳") == "王芳" and normalize_name("买买提艾力") == "买买提艾力"
    assert normalize_name(None) is None


def test_rare_characters_in_gb18030() -> None:
    # 𠮷 (U+20BB7) is outside the BMP: four bytes in GB18030; 堃 and 喆 are outside GB 2312 but in GBK (two)
    assert len("𠮷".encode("gb18030")) == 4 and len("堃".encode("gb18030")) == len("喆".encode("gb18030")) == 2
    for c in "堃喆𠮷":
        with pytest.raises(UnicodeEncodeError):
            c.encode("gb2312")
    # GB 2312's A1A4 is the middle dot: decoded as U+30FB there, as U+00B7 in GBK/GB18030
    assert b"\xa1\xa4".decode("gb2312") == "\u30fb" and b"\xa1\xa4".decode("gb18030") == "\u00b7"
    assert normalize_name(b"\xc2\xf2\xc2\xf2\xcc\xe1\xa1\xa4\xb0\xac\xc1\xa6".decode("gb2312")) == "买买提·艾力"
    assert normalize_name("张欣𠮷") == "张欣𠮷"


def test_mask_account_keeps_four_and_four():
    from fundx.core.identity import mask_account

    assert mask_account("6222021234567890123") == "6222***********0123"
    assert mask_account(" 6222021234567890123 ") == "6222***********0123"
    assert mask_account("1234567890") == "**********" and mask_account(None) == "<none>"
