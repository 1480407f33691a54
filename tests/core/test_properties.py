"""Properties of the parsers and normalisers, checked with hypothesis on generated input.

Identity numbers and credit codes (fundx.core.identity, creditcodes, idcolumns), the declared date normalisation
(contracts.normalise) and the date check that reads its result (contracts.checks.date_days), the
RFC 8288 Link-header parser (connectors.paging) and the agency error code (connectors.http). Each
parser must never raise on arbitrary text, and must give back only what its contract says.

Deterministic (derandomize) and quick: the "fundx" profile below caps examples and lifts deadlines.
"""

from __future__ import annotations

import re
import string
from datetime import date
from urllib.parse import urljoin

import numpy as np
import orjson
import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from connectors.config import LinkHeaderPaging, WindowParams
from connectors.http import _ERROR_CODE, Response
from connectors.paging import LinkHeaderPaginator, _origin, next_link
from contracts import load_contract
from contracts.checks import date_days
from contracts.normalise import normalise
from fundx.core.creditcodes import USCC_CHARS, is_valid_uscc, uscc_check_char
from fundx.core.errors import DataError, PermanentError
from fundx.core.idcolumns import NO_DAY, days_from_civil, id_column, uscc_column
from fundx.core.identity import id_check_char, is_valid_id, mask_id, normalize_id
from fundx.core.timeutil import Window

settings.register_profile(
    "fundx", max_examples=200, deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
FUNDX = settings.get_profile("fundx")

#: text as agencies send it: any printable or not, Chinese, full-width forms, spaces, no surrogates
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


BIRTH = st.dates(min_value=date(1850, 1, 1), max_value=date(2099, 12, 31))


@st.composite
def valid_ids(draw) -> str:
    area = draw(st.integers(100000, 999999))
    first17 = f"{area:06d}{draw(BIRTH):%Y%m%d}{draw(st.integers(0, 999)):03d}"
    return first17 + id_check_char(first17)


# --- fundx.core.identity, creditcodes, idcolumns -----------------------------------------------------------


@FUNDX
@given(valid_ids())
def test_any_17_digits_with_their_check_char_is_valid(number):
    assert is_valid_id(number)
    for wrong in set("0123456789X") - {number[17]}:
        assert not is_valid_id(number[:17] + wrong)


@FUNDX
@given(digits(17))
def test_validity_of_17_digits_and_check_char_is_the_date_and_the_leading_digit(first17):
    number = first17 + id_check_char(first17)
    try:
        born = date(int(first17[6:10]), int(first17[10:12]), int(first17[12:14]))
        real = born.year >= 1850
    except ValueError:
        real = False
    assert is_valid_id(number) == (real and first17[0] != "0")


@FUNDX
@given(st.lists(st.one_of(valid_ids(), digits(18), TEXT, st.just("")), max_size=20))
def test_id_column_agrees_with_is_valid_id(values):
    column = id_column(pd.Series(values, dtype=object))
    assert column.valid.tolist() == [is_valid_id(v) for v in values]


@FUNDX
@given(st.one_of(TEXT, valid_ids(), st.none(), st.integers(), st.floats()))
def test_normalize_id_is_idempotent(value):
    once = normalize_id(value)
    if not isinstance(value, str):
        assert once is None
        return
    assert normalize_id(once) == once


@FUNDX
@given(valid_ids(), st.sampled_from(["", " ", "\u3000", "\t"]), st.booleans(), st.booleans())
def test_normalize_id_undoes_full_width_spaces_and_lower_x(number, pad, wide, lower):
    messy = number
    if wide:
        messy = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in messy)
    if lower:
        messy = messy.replace("X", "x")
    assert normalize_id(pad + messy + pad) == number


@FUNDX
@given(st.one_of(valid_ids(), TEXT, st.text(min_size=18, max_size=18)), st.sampled_from(["", " ", "  "]))
def test_mask_never_reveals_the_middle_eight(value, pad):
    masked = mask_id(pad + value + pad)
    text = value.strip()
    if len(text) == 18:
        assert masked == text[:6] + "*" * 8 + text[14:]
        if "*" not in text[6:14]:
            assert text[6:14] not in masked
    else:
        assert set(masked) <= {"*"} or masked in ("<invalid>", "<none>")
        assert len(masked) == len(text) or masked == "<invalid>"
    if len(text) >= 8 and "*" not in text:
        assert text not in masked  # never the whole input


@FUNDX
@given(st.one_of(st.none(), st.integers(), st.floats(), st.binary(max_size=20), st.lists(st.integers(), max_size=3)))
def test_mask_of_anything_not_text_reveals_nothing(value):
    assert mask_id(value) in ("<none>", "<invalid>")


USCC17 = st.text(alphabet=USCC_CHARS, min_size=17, max_size=17)


@FUNDX
@given(USCC17)
def test_any_17_uscc_chars_with_their_check_char_is_a_valid_credit_code(first17):
    code = first17 + uscc_check_char(first17)
    assert is_valid_uscc(code)
    for wrong in set(USCC_CHARS) - {code[17]}:
        assert not is_valid_uscc(first17 + wrong)


@FUNDX
@given(st.lists(st.one_of(USCC17.map(lambda s: s + uscc_check_char(s)),
                          st.text(alphabet=USCC_CHARS + "IOSVZ", min_size=18, max_size=18), TEXT), max_size=20))
def test_uscc_column_agrees_with_is_valid_uscc(values):
    assert uscc_column(pd.Series(values, dtype=object)).tolist() == [is_valid_uscc(v) for v in values]


@FUNDX
@given(TEXT)
def test_uscc_validity_never_raises(value):
    assert is_valid_uscc(value) in (True, False)
    assert is_valid_uscc(value, check_org_code=True) in (True, False)


# --- contracts.normalise: dates ----------------------------------------------------------------------

CONTRACT = load_contract("justice.prisoners")  # admitted_on: trim, halfwidth, date


def normalised_dates(values: list[str | None]) -> list[str | None]:
    frame = pd.DataFrame({"admitted_on": pd.Series(values, dtype=object)})
    out, _ = normalise(CONTRACT, frame)
    return [None if pd.isna(v) else v for v in out["admitted_on"].tolist()]


AGENCY_FORMS = {
    "slash": lambda d: f"{d.year}/{d.month}/{d.day}",
    "slash-padded": lambda d: f"{d:%Y/%m/%d}",
    "chinese": lambda d: f"{d.year}年{d.month}月{d.day}日",
    "compact": lambda d: f"{d:%Y%m%d}",
    "dash": lambda d: f"{d.year}-{d.month}-{d.day}",
    "iso": lambda d: d.isoformat(),
    "full-width": lambda d: "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in f"{d.year}/{d.month}/{d.day}"),
    "spaces": lambda d: f" \u3000{d.year}年{d.month}月{d.day}日 ",
}
DATES = st.dates(min_value=date(1000, 1, 1), max_value=date(9999, 12, 31))


@FUNDX
@given(st.lists(st.tuples(DATES, st.sampled_from(sorted(AGENCY_FORMS))), min_size=1, max_size=20))
def test_agency_date_forms_round_trip_to_iso_and_to_the_same_day(pairs):
    values = [AGENCY_FORMS[form](day) for day, form in pairs]
    out = normalised_dates(values)
    assert out == [day.isoformat() for day, _ in pairs]
    days = date_days(pd.Series(out, dtype=object))
    expected = days_from_civil(np.array([d.year for d, _ in pairs]), np.array([d.month for d, _ in pairs]),
                               np.array([d.day for d, _ in pairs]))
    assert days.tolist() == expected.tolist()


@FUNDX
@given(st.lists(st.one_of(TEXT, st.none(), st.text(alphabet="0123456789/-年月日 ", max_size=12)), min_size=1, max_size=20))
@example(["2021/2/30", "2021年13月1日", "00000000", "44298", "1.10105E+17", "2021/4/12/1", "", None])
def test_date_normalisation_never_raises_and_gives_iso_or_leaves_the_value(values):
    out = normalised_dates(values)
    assert len(out) == len(values)
    for before, after in zip(values, out):
        if before is None:
            assert after is None
            continue
        assert isinstance(after, str)
        # either ISO-shaped (the check decides whether the day is real) or left as sent, only cleaned
        assert re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", after) or after == _cleaned(before)
    days = date_days(pd.Series(out, dtype=object))  # never raises; no real day -> NO_DAY
    for after, day in zip(out, days.tolist()):
        if day != NO_DAY:
            assert date.fromisoformat(after) == date(1970, 1, 1) + pd.Timedelta(days=day).to_pytimedelta()
    assert normalised_dates(out) == out  # idempotent


def _cleaned(value: str) -> str:
    """What trim and halfwidth leave of a value (white space, full-width digits and X)."""
    table = str.maketrans({chr(0xFF10 + i): str(i) for i in range(10)} | {"Ｘ": "X", "ｘ": "x", "\u3000": " "})
    out = normalised_trim_halfwidth(value, table)
    return out


def normalised_trim_halfwidth(value: str, table: dict) -> str:
    import pyarrow as pa
    import pyarrow.compute as pc

    trimmed = pc.utf8_trim_whitespace(pa.array([value], pa.large_string()))[0].as_py()
    return trimmed.translate(table) if not trimmed.isascii() else trimmed


@FUNDX
@given(st.integers(1, 99999))
def test_excel_serial_numbers_are_not_guessed_as_dates(serial):
    # Excel day numbers (44298 is 2021-04-12) are not a supported form: left as sent, no real day
    out = normalised_dates([str(serial)])
    assert out == [str(serial)]
    assert date_days(pd.Series(out, dtype=object)).tolist() == [NO_DAY]


# --- connectors.paging: Link headers -------------------------------------------------------------------

URL = "https://agency.example:8443/api/v1/notices"
HEADER_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=200) | st.text(alphabet='<>;,="\' \\relnxt', max_size=200)


@FUNDX
@given(HEADER_TEXT, st.sampled_from(["next", "prev", "NEXT", "last"]))
@example("<" * 5000 + ";" * 5000, "next")
@example("<a>" + '; rel="' + " " * 5000, "next")
@example("<a>" + ";" + " " * 5000 + "x" * 5000 + ",", "next")
def test_next_link_never_raises_and_gives_a_target_from_the_header(value, rel):
    target = next_link(value, rel)
    assert target is None or (isinstance(target, str) and target in value)


SEGMENT = st.text(alphabet=string.ascii_letters + string.digits + "-._~", min_size=1, max_size=12)
QUERY = st.dictionaries(SEGMENT, SEGMENT, max_size=3).map(lambda q: "&".join(f"{k}={v}" for k, v in q.items()))


@FUNDX
@given(st.lists(st.tuples(SEGMENT, st.sampled_from(["prev", "first", "last", "alternate"])), max_size=3),
       SEGMENT, QUERY, st.sampled_from(["absolute", "path", "query"]), st.booleans(), st.sampled_from(['"next"', "next", '"NEXT nofollow"']))
def test_next_link_finds_the_next_target_among_others_and_it_resolves_on_the_feeds_origin(
        others, path, query, kind, before, rel_value):
    target = {"absolute": f"{URL}/{path}?{query}", "path": f"/api/v1/{path}?{query}", "query": f"?{query}"}[kind]
    links = [f'<{URL}?{o}>; rel="{r}"' for o, r in others]
    mine = f"<{target}>; rel={rel_value}"
    header = ", ".join([mine, *links] if before else [*links, mine])
    assert next_link(header) == target
    paginator = LinkHeaderPaginator(LinkHeaderPaging(style="link_header", page_size=2),
                                    WindowParams(start_param="from", end_param="to"), url=URL, feed="f.x")
    paginator.first_request(Window.of("2026-10-01", "2026-10-02"))
    assert paginator.next_request({}, [{}], {"Link": header}) == {}
    assert paginator.next_url == urljoin(URL, target)
    assert _origin(paginator.next_url) == _origin(URL)


@FUNDX
@given(HEADER_TEXT)
@example("<//evil.example/steal>; rel=next")
@example("<https://agency.example:99999/x>; rel=next")
@example("<http://[::1/x>; rel=next")
def test_link_paginator_on_arbitrary_headers_follows_its_origin_or_stops_with_a_fundx_error(value):
    paginator = LinkHeaderPaginator(LinkHeaderPaging(style="link_header", page_size=2),
                                    WindowParams(start_param="from", end_param="to"), url=URL, feed="f.x")
    paginator.first_request(Window.of("2026-10-01", "2026-10-02"))
    try:
        result = paginator.next_request({}, [{}], CaseInsensitiveDict({"Link": value}))
    except PermanentError as error:
        assert error.feed == "f.x"
        return
    if result is None:
        assert paginator.next_url is None
    else:
        assert _origin(paginator.next_url) == _origin(URL)


# --- connectors.http: the agency's error code ----------------------------------------------------------

SAFE = re.compile(r"^[a-z][a-z0-9]{0,15}(?:[_.\-][a-z0-9]{1,16})*$")


def response(body: bytes, www: str | None = None) -> Response:
    headers = CaseInsensitiveDict({"WWW-Authenticate": www} if www is not None else {})
    return Response(401, headers, body, "/api/x")


CODES = st.one_of(
    TEXT,
    st.text(alphabet=string.ascii_letters + string.digits + "_.-", max_size=70),
    st.sampled_from(["invalid_token", "insufficient_scope", "330106195001011234", "eyJhbGciOiJIUzI1NiJ9.x.y"]),
)


@FUNDX
@given(st.one_of(st.binary(max_size=200), CODES.map(lambda c: orjson.dumps({"error": c})),
                 st.recursive(st.none() | st.integers(-2**63, 2**63 - 1) | TEXT, lambda kids: st.lists(kids, max_size=3)
                              | st.dictionaries(st.sampled_from(["error", "x"]), kids, max_size=2))
                 .map(orjson.dumps)),
       st.one_of(st.none(), TEXT, CODES.map(lambda c: f'Bearer realm="x", error="{c}"')))
@example(b'{"error": "110105199001011234 is not allowed"}', 'Bearer error="110105199001011234"')
@example(b"{" * 100_000, None)
def test_error_code_is_none_or_a_short_safe_word(body, www):
    code = response(body, www).error_code()
    assert code is None or (SAFE.fullmatch(code) and len(code) <= 48 and _ERROR_CODE.match(code))


@FUNDX
@given(st.binary(max_size=300))
def test_response_json_never_raises_anything_but_a_fundx_error(body):
    try:
        response(body).json(feed="f.x", what="page 1")
    except (DataError, PermanentError) as error:
        assert error.feed == "f.x"
    except Exception as error:  # noqa: BLE001 - IncompletePull is transient: a body cut short
        from fundx.core.errors import IncompletePull

        assert isinstance(error, IncompletePull)
