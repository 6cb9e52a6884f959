"""Property tests of ledger.encoding.

The central one: :func:`canonical` takes a fast path through the standard library's JSON encoder
for float-free values below U+D800 and must stay byte-identical to the ``rfc8785`` reference over
every JSON value. The strategies lean on the places where the two could part: characters around
the surrogate block (where UTF-16 order and code point order diverge), astral planes, control
characters, and floats near the thresholds where ECMAScript switches notation.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any
from unittest import mock

import rfc8785
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from ledger.encoding import (
    MAX_SAFE_INTEGER,
    canonical,
    canonical_reference,
    format_date,
    format_quantity,
    format_time,
    parse_date,
    parse_json,
    parse_json_checking_floats,
    parse_quantity,
    parse_time,
)
from ledger.errors import EncodingError

# --------------------------------------------------------------------------------------------
# Strategies

# Characters that exist in UTF-8 (no surrogates), biased towards the interesting regions.
SPECIAL_CHARS = [
    '"',
    "\\",
    "/",
    "\x00",
    "\x1f",
    "\x7f",
    "\x80",
    "\u2028",
    "\u2029",
    "\ud7ff",
    "\ue000",
    "\ufb33",
    "\ufeff",
    "\uffff",
    "\U00010000",
    "\U0001f600",
    "\U0010ffff",
]
any_char = st.characters(codec="utf-8")
chars = st.one_of(
    any_char,
    st.characters(max_codepoint=0x20),  # control characters and space
    st.characters(min_codepoint=0xD700, max_codepoint=0xFFFF, codec="utf-8"),
    st.characters(min_codepoint=0x10000),  # astral planes
    st.sampled_from(SPECIAL_CHARS),
)
texts = st.text(chars, max_size=12)
# Keys that collide on prefixes and straddle the surrogate block, so sorting is exercised.
keys = st.one_of(
    texts, st.text(st.sampled_from(["a", "\ud7ff", "\ue000", "\U00010000"]), max_size=3)
)

safe_ints = st.one_of(
    st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
    st.sampled_from([0, 1, -1, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 2**31, -(2**31), 2**32]),
)
floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=1e15, max_value=1e25),  # integer digits vs exponent form (1e21)
    st.floats(min_value=1e-9, max_value=1e-5),  # 0.00000x vs exponent form (1e-7)
    st.floats(min_value=-180, max_value=180).map(lambda x: round(x, 7)),  # coordinates
    st.sampled_from([-0.0, 5e-324, 1e-7, 1e-6, 1e21, 1e20, 2.0**53, 1.7976931348623157e308]),
)


def json_values(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(keys, children, max_size=5),
        ),
        max_leaves=30,
    )


float_free_scalars = st.one_of(st.none(), st.booleans(), safe_ints, texts)
values_without_floats = json_values(float_free_scalars)
values = json_values(st.one_of(float_free_scalars, floats))

# Values that stay on the fast path: no floats, every character (keys too) below U+D800.
low_texts = st.text(
    st.one_of(st.characters(max_codepoint=0xD7FF), st.characters(max_codepoint=0x20)),
    max_size=12,
)
fast_values = st.recursive(
    st.one_of(st.none(), st.booleans(), safe_ints, low_texts),
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(low_texts, children, max_size=5)
    ),
    max_leaves=30,
)


def _has_unsafe_float(value: Any) -> bool:
    """A float that JCS writes as integer digits beyond 2^53 (parse_json refuses those)."""
    if isinstance(value, float):
        return MAX_SAFE_INTEGER < abs(value) < 1e21
    if isinstance(value, list):
        return any(_has_unsafe_float(v) for v in value)
    if isinstance(value, dict):
        return any(_has_unsafe_float(v) for v in value.values())
    return False


# --------------------------------------------------------------------------------------------
# The fast JCS path is byte-identical to the reference


@settings(max_examples=400)
@given(values)
@example({"\ue000": 1, "\U00010000": 2})
@example({"\ud7ff": "\x1f", "a": [1.5, -0.0, 1e21]})
def test_canonical_equals_reference(value: Any) -> None:
    assert canonical(value) == canonical_reference(value)


@settings(max_examples=400)
@given(values_without_floats)
def test_canonical_without_floats_equals_reference(value: Any) -> None:
    expected = canonical_reference(value)
    assert canonical(value) == expected
    assert canonical(value, parsed_without_floats=True) == expected


@settings(max_examples=300)
@given(fast_values)
@example({"\ud7ff": ["\x00", '"\\'], "": {"\x7f": MAX_SAFE_INTEGER}})
def test_fast_path_is_taken_and_matches_rfc8785(value: Any) -> None:
    # With the reference unavailable, canonical() must answer from the fast path alone, so this
    # compares the standard library encoder itself with rfc8785 (not the reference with itself).
    expected = bytes(rfc8785.dumps(value))
    with mock.patch(
        "ledger.encoding.canonical_reference", side_effect=AssertionError("slow path taken")
    ):
        assert canonical(value) == expected
        assert canonical(value, parsed_without_floats=True) == expected


# --------------------------------------------------------------------------------------------
# JCS round trip


@settings(max_examples=300)
@given(values)
def test_jcs_round_trip(value: Any) -> None:
    assume(not _has_unsafe_float(value))
    data = canonical(value)
    parsed = parse_json(data)
    assert parsed == value  # floats compare equal to the ints JCS may write them as
    assert canonical(parsed) == data
    value_again, has_floats = parse_json_checking_floats(data)
    assert value_again == value
    if not has_floats:
        assert canonical(value_again, parsed_without_floats=True) == data


@given(
    values,
    st.floats(min_value=MAX_SAFE_INTEGER + 1, max_value=1e21, exclude_max=True),
    st.booleans(),
)
def test_jcs_of_unsafe_float_is_refused_on_parse(value: Any, big: float, negate: bool) -> None:
    # The counterpart of the assume() above: a float between 2^53 and 1e21 has canonical bytes
    # (plain integer digits), and parse_json refuses them, as it refuses the float itself.
    number = -big if negate else big
    data = canonical({"value": value, "big": [number]})
    assert data.count(b'"big":[') == 1
    try:
        parse_json(data)
    except EncodingError:
        pass
    else:
        raise AssertionError(f"parse_json accepted {data!r}")
    try:
        parse_json(repr(number))
    except EncodingError:
        return
    raise AssertionError(f"parse_json accepted the float {number!r}")


# --------------------------------------------------------------------------------------------
# parse_json never raises anything but EncodingError

JSON_FRAGMENTS = [
    "{",
    "}",
    "[",
    "]",
    '"',
    ":",
    ",",
    " ",
    "0",
    "1",
    "-",
    ".",
    "e",
    "E+",
    "5",
    "true",
    "false",
    "null",
    "NaN",
    "Infinity",
    "\\",
    "\\u",
    "d800",
    "dc00",
    "DE00",
    "0041",
    "\\n",
    '"a"',
    '"a":',
    "9007199254740992",
    "1e400",
    "1e20",
    "1" * 4400,
    "\x00",
    "\ud800",
    "\U0001f600",
]
json_like_text = st.lists(st.sampled_from(JSON_FRAGMENTS), max_size=30).map("".join)
any_text = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=60)


def _parse_or_encoding_error(data: bytes | str) -> None:
    try:
        value = parse_json(data)
    except EncodingError:
        return
    # Whatever parses has a canonical form that parses back to it.
    assert parse_json(canonical(value)) == value


@settings(max_examples=300)
@given(st.binary(max_size=80))
def test_parse_json_of_bytes_returns_or_raises_encoding_error(data: bytes) -> None:
    _parse_or_encoding_error(data)


@settings(max_examples=300)
@given(st.one_of(any_text, json_like_text))
def test_parse_json_of_text_returns_or_raises_encoding_error(text: str) -> None:
    _parse_or_encoding_error(text)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        return
    _parse_or_encoding_error(data)


@settings(max_examples=300)
@given(values, st.data())
def test_parse_json_of_mutated_canonical_bytes(value: Any, data: st.DataObject) -> None:
    encoded = bytearray(canonical(value))
    position = data.draw(st.integers(0, len(encoded) - 1))
    operation = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    byte = data.draw(st.integers(0, 255))
    if operation == "replace":
        encoded[position] = byte
    elif operation == "insert":
        encoded.insert(position, byte)
    else:
        del encoded[position]
    _parse_or_encoding_error(bytes(encoded))


# --------------------------------------------------------------------------------------------
# Quantities

QUANTITY = re.compile(r"(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?")
quantity_texts = st.from_regex(QUANTITY, fullmatch=True)
quantities = st.decimals(
    min_value=Decimal(0), max_value=Decimal("999999999999999.999999"), places=6
)


@given(quantities)
def test_quantity_round_trip_from_decimal(quantity: Decimal) -> None:
    text = format_quantity(quantity)
    assert QUANTITY.fullmatch(text)
    assert parse_quantity(text) == quantity
    assert not (("." in text) and text.endswith("0"))  # shortest form


@given(quantity_texts)
def test_quantity_round_trip_from_text(text: str) -> None:
    quantity = parse_quantity(text)
    formatted = format_quantity(quantity)
    assert parse_quantity(formatted) == quantity
    expected = text.rstrip("0").rstrip(".") if "." in text else text
    assert formatted == expected


@given(st.one_of(st.text(max_size=25), json_like_text))
def test_parse_quantity_accepts_exactly_the_pattern(text: str) -> None:
    try:
        quantity = parse_quantity(text)
    except EncodingError:
        assert QUANTITY.fullmatch(text) is None
        return
    assert QUANTITY.fullmatch(text) is not None
    assert quantity == Decimal(text)


# --------------------------------------------------------------------------------------------
# Times and dates

millisecond_times = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(dt.UTC)
).map(lambda m: m.replace(microsecond=m.microsecond // 1000 * 1000))
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
time_texts = st.from_regex(
    r"[0-9]{4}-[0-1][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9](\.[0-9]{3})?Z",
    fullmatch=True,
)


@given(millisecond_times)
def test_time_round_trip(moment: dt.datetime) -> None:
    text = format_time(moment)
    assert parse_time(text) == moment
    assert text.endswith("Z")
    assert ".000" not in text
    assert len(text) in (20, 24)


@given(st.datetimes(timezones=offsets))
def test_format_time_of_any_aware_time(moment: dt.datetime) -> None:
    try:
        text = format_time(moment)
    except EncodingError:
        return
    assert moment.microsecond % 1000 == 0
    assert parse_time(text) == moment


@given(time_texts)
def test_parse_time_then_format_gives_the_text_back(text: str) -> None:
    try:
        moment = parse_time(text)
    except EncodingError:
        return
    assert format_time(moment) == text.replace(".000Z", "Z")


@given(st.dates())
def test_date_round_trip(day: dt.date) -> None:
    assert parse_date(format_date(day)) == day
