"""Unit tests of ledger.encoding: strict JSON, RFC 8785 bytes, quantities, times, dates, hex.

Known answers for JCS come from RFC 8785 itself: the §3.2.2 example, the §3.2.3 sorting example
and the Appendix B number serialisation table (IEEE 754 bit patterns and the ECMAScript text
JCS requires for each), checked against the published text, not against the implementation.
"""

from __future__ import annotations

import datetime as dt
import struct
from decimal import Decimal
from typing import Any

import pytest

from ledger.encoding import (
    MAX_SAFE_INTEGER,
    canonical,
    canonical_reference,
    format_date,
    format_quantity,
    format_time,
    parse_date,
    parse_hex,
    parse_json,
    parse_json_checking_floats,
    parse_quantity,
    parse_time,
)
from ledger.errors import EncodingError

UTC = dt.UTC

# --------------------------------------------------------------------------------------------
# parse_json: rejections

REJECTED_JSON: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("only-whitespace", b" \n\t"),
    ("unterminated-object", b'{"a":'),
    ("unterminated-string", b'"abc'),
    ("single-quotes", b"{'a':1}"),
    ("bare-word", b"hello"),
    ("trailing-comma-array", b"[1,]"),
    ("trailing-comma-object", b'{"a":1,}'),
    ("leading-zero", b"01"),
    ("bare-dot", b"1."),
    ("leading-dot", b".5"),
    ("plus-sign", b"+1"),
    ("hex-number", b"0x10"),
    ("bad-escape", b'"\\x41"'),
    ("raw-control-char-in-string", b'"a\x01b"'),
    ("raw-newline-in-string", b'"a\nb"'),
    ("utf8-bom", b"\xef\xbb\xbf{}"),
    ("trailing-garbage", b'{"a":1} x'),
    ("trailing-second-document", b"{}{}"),
    ("trailing-number", b"[1] 2"),
    ("duplicate-key-top-level", b'{"a":1,"a":2}'),
    ("duplicate-key-same-value", b'{"a":1,"a":1}'),
    ("duplicate-key-nested", b'{"x":{"b":true,"b":false}}'),
    ("duplicate-key-in-array", b'[{"k":null,"k":null}]'),
    ("duplicate-key-via-escape", b'{"a":1,"\\u0061":2}'),
    ("nan", b"NaN"),
    ("nan-in-array", b"[1,NaN]"),
    ("infinity", b"Infinity"),
    ("minus-infinity", b"-Infinity"),
    ("infinity-as-value", b'{"x":Infinity}'),
    ("int-2^53", b"9007199254740992"),
    ("int-minus-2^53", b"-9007199254740992"),
    ("int-2^63", b"9223372036854775808"),
    ("int-nested-unsafe", b'{"a":[1,2,{"b":-9007199254740993}]}'),
    ("int-5000-digits", b"1" * 5000),
    ("int-minus-5000-digits", b"-" + b"9" * 5000),
    ("float-overflows-to-infinity", b"1e400"),
    ("float-overflows-to-minus-infinity", b"-1e400"),
    # JCS would write these as integer digits beyond 2^53, which would not parse again.
    ("float-2^53", b"9007199254740992.0"),
    ("float-1e20", b"1e20"),
    ("float-minus-1e20", b"-1e20"),
    ("float-just-below-1e21", b"999999999999999900000.0"),
    ("invalid-utf8-ff", b'"\xff"'),
    ("invalid-utf8-overlong-slash", b'"\xc0\xaf"'),
    ("invalid-utf8-truncated", b'"\xe2\x82"'),
    ("invalid-utf8-continuation-only", b'"\x80"'),
    ("utf8-encoded-surrogate", b'"\xed\xa0\x80"'),
    ("latin1-bytes", b'{"caf\xe9":1}'),
    ("lone-high-surrogate-escape", b'"\\ud800"'),
    ("lone-high-surrogate-escape-upper", b'"\\uD800"'),
    ("lone-low-surrogate-escape", b'"\\udc00"'),
    ("high-surrogate-then-bmp", b'"\\ud800\\u0041"'),
    ("low-then-high-surrogate", b'"\\udc00\\ud800"'),
    ("two-low-surrogates", b'"\\uDC00\\uDC00"'),
    ("lone-surrogate-in-key", b'{"\\ud83d":1}'),
    ("lone-surrogate-nested", b'{"a":["x","\\ude00"]}'),
    ("nested-too-deeply", b"[" * 100_000 + b"]" * 100_000),
]


def _forms(cases: list[tuple[str, bytes]]) -> list[Any]:
    """Each case as bytes, as bytearray, and (when it is valid UTF-8) as text."""
    params = []
    for name, data in cases:
        params.append(pytest.param(data, id=f"{name}-bytes"))
        params.append(pytest.param(bytearray(data), id=f"{name}-bytearray"))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        params.append(pytest.param(text, id=f"{name}-text"))
    return params


@pytest.mark.parametrize("data", _forms(REJECTED_JSON))
def test_parse_json_rejects_with_encoding_error(data: bytes | bytearray | str) -> None:
    # pytest.raises lets any other exception through, so this also proves "never another".
    with pytest.raises(EncodingError):
        parse_json(data)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('"\ud800"', id="lone-high-surrogate-char"),
        pytest.param('"\udfff"', id="lone-low-surrogate-char"),
        pytest.param('{"\udc00":1}', id="lone-surrogate-char-in-key"),
        pytest.param('["ok","a\ud83db"]', id="lone-surrogate-char-nested"),
    ],
)
def test_parse_json_rejects_lone_surrogate_in_python_text(text: str) -> None:
    with pytest.raises(EncodingError):
        parse_json(text)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b'{"a":1,"a":2}', "duplicate", id="duplicate"),
        pytest.param(b"NaN", "NaN", id="nan"),
        pytest.param(b"9007199254740992", r"outside ±\(2\^53", id="unsafe-int"),
        pytest.param(b'"\xff"', "UTF-8", id="utf8"),
        pytest.param(b'"\\ud800"', "surrogate", id="surrogate"),
        pytest.param(b"[1", "malformed", id="malformed"),
    ],
)
def test_parse_json_error_names_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(EncodingError, match=message):
        parse_json(data)


# --------------------------------------------------------------------------------------------
# parse_json: acceptances

ACCEPTED_JSON: list[tuple[str, bytes, Any]] = [
    ("surrogate-pair-escape", b'"\\ud83d\\ude00"', "\U0001f600"),
    ("surrogate-pair-escape-upper", b'"\\uD83D\\uDE00"', "\U0001f600"),
    ("surrogate-pair-in-key", b'{"\\ud83d\\ude00":1}', {"\U0001f600": 1}),
    ("astral-raw-utf8", '"\U0001f600"'.encode(), "\U0001f600"),
    ("max-code-point", b'"\\udbff\\udfff"', "\U0010ffff"),
    ("bmp-escape-below-surrogates", b'"\\ud7ff"', "\ud7ff"),
    ("bmp-escape-above-surrogates", b'"\\ue000"', "\ue000"),
    ("escaped-nul", b'"\\u0000"', "\x00"),
    ("short-escapes", b'"\\b\\f\\n\\r\\t\\"\\\\\\/"', '\b\f\n\r\t"\\/'),
    (
        "nested",
        b'{"a":[1,{"b":null,"c":[true,false]}],"d":"x","e":{}}',
        {"a": [1, {"b": None, "c": [True, False]}], "d": "x", "e": {}},
    ),
    ("whitespace-around", b' \n{ "a" : [ 1 , 2 ] }\t\r\n', {"a": [1, 2]}),
    ("float", b"1.5", 1.5),
    ("float-exponent", b"1e2", 100.0),
    ("float-negative-small", b"-2.5e-7", -2.5e-7),
    ("float-max-safe", b"9007199254740991.0", 9007199254740991.0),
    ("float-1e21-has-exponent-form", b"1e21", 1e21),
    ("float-minus-1e300", b"-1e300", -1e300),
    ("max-safe-int", b"9007199254740991", 9007199254740991),
    ("min-safe-int", b"-9007199254740991", -9007199254740991),
    ("zero", b"0", 0),
    ("minus-zero-int", b"-0", 0),
    ("empty-object", b"{}", {}),
    ("empty-array", b"[]", []),
    ("string-top-level", b'"caf\xc3\xa9"', "caf\u00e9"),
    ("null-top-level", b"null", None),
]


@pytest.mark.parametrize(
    ("data", "expected"), [pytest.param(d, e, id=name) for name, d, e in ACCEPTED_JSON]
)
def test_parse_json_accepts(data: bytes, expected: Any) -> None:
    assert parse_json(data) == expected
    assert parse_json(data.decode("utf-8")) == expected


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        pytest.param(b"1", int, id="int-stays-int"),
        pytest.param(b"1.0", float, id="point-zero-is-float"),
        pytest.param(b"1e0", float, id="exponent-is-float"),
        pytest.param(b"true", bool, id="true-is-bool"),
    ],
)
def test_parse_json_number_types(data: bytes, kind: type) -> None:
    assert type(parse_json(data)) is kind


@pytest.mark.parametrize(
    ("data", "has_floats"),
    [
        pytest.param(b'{"a":[1,2,"3.5"]}', False, id="no-floats"),
        pytest.param(b'"1.5e3"', False, id="float-text-in-string"),
        pytest.param(b"1.0", True, id="top-level-float"),
        pytest.param(b'[1,{"a":[2e1]}]', True, id="nested-float"),
        pytest.param(b'{"a":-0.0}', True, id="minus-zero-float"),
    ],
)
def test_parse_json_checking_floats_reports_floats(data: bytes, has_floats: bool) -> None:
    value, floats = parse_json_checking_floats(data)
    assert floats is has_floats
    assert value == parse_json(data)


# --------------------------------------------------------------------------------------------
# canonical: RFC 8785 known answers

RFC8785_SORTING_INPUT = b"""{
  "\\u20ac": "Euro Sign",
  "\\r": "Carriage Return",
  "\\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\\ud83d\\ude00": "Emoji: Grinning Face",
  "\\u0080": "Control",
  "\\u00f6": "Latin Small Letter O With Diaeresis"
}"""
RFC8785_SORTING_OUTPUT = (
    '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
    '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
    '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
).encode()

RFC8785_EXAMPLE_INPUT = b"""{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\\\"\\/",
  "literals": [null, true, false]
}"""
RFC8785_EXAMPLE_OUTPUT = (
    b'{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    b'"string":"\xe2\x82\xac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
)


def test_rfc8785_sorting_example() -> None:
    value = parse_json(RFC8785_SORTING_INPUT)
    assert canonical(value) == RFC8785_SORTING_OUTPUT
    assert canonical_reference(value) == RFC8785_SORTING_OUTPUT


def test_rfc8785_section_3_2_2_example() -> None:
    value = parse_json(RFC8785_EXAMPLE_INPUT)
    assert canonical(value) == RFC8785_EXAMPLE_OUTPUT
    assert canonical_reference(value) == RFC8785_EXAMPLE_OUTPUT


# RFC 8785 Appendix B: IEEE 754 bit patterns and their JCS text (the finite rows).
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def _float(bits: str) -> float:
    number: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return number


@pytest.mark.parametrize(("bits", "text"), [pytest.param(b, t, id=b) for b, t in APPENDIX_B])
def test_rfc8785_appendix_b_numbers(bits: str, text: str) -> None:
    number = _float(bits)
    assert canonical(number) == text.encode()
    assert canonical([number]) == f"[{text}]".encode()


@pytest.mark.parametrize(
    ("number", "text"),
    [
        pytest.param(1e-7, "1e-7", id="1e-7"),
        pytest.param(1e-6, "0.000001", id="1e-6"),
        pytest.param(0.000001, "0.000001", id="0.000001"),
        pytest.param(1.5e-6, "0.0000015", id="1.5e-6"),
        pytest.param(1e21, "1e+21", id="1e21"),
        pytest.param(1e20, "100000000000000000000", id="1e20"),
        pytest.param(-0.0, "0", id="minus-zero"),
        pytest.param(110.0, "110", id="110.0"),
        pytest.param(4.5, "4.5", id="4.5"),
        pytest.param(-1.25, "-1.25", id="-1.25"),
        pytest.param(106.8254321, "106.8254321", id="coordinate-7-decimals"),
        pytest.param(-0.0000001, "-1e-7", id="minus-1e-7"),
    ],
)
def test_canonical_number_serialisation(number: float, text: str) -> None:
    assert canonical(number) == text.encode()
    assert canonical({"n": number}) == b'{"n":' + text.encode() + b"}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("\x00", b'"\\u0000"', id="nul"),
        pytest.param("\x01", b'"\\u0001"', id="soh"),
        pytest.param("\x1f", b'"\\u001f"', id="unit-separator-lowercase-hex"),
        pytest.param("\x0b", b'"\\u000b"', id="vertical-tab"),
        pytest.param("\b", b'"\\b"', id="backspace"),
        pytest.param("\t", b'"\\t"', id="tab"),
        pytest.param("\n", b'"\\n"', id="newline"),
        pytest.param("\f", b'"\\f"', id="form-feed"),
        pytest.param("\r", b'"\\r"', id="carriage-return"),
        pytest.param('"', b'"\\""', id="quote"),
        pytest.param("\\", b'"\\\\"', id="backslash"),
        pytest.param("/", b'"/"', id="slash-not-escaped"),
        pytest.param("\x7f", b'"\x7f"', id="delete-not-escaped"),
        pytest.param("\u2028\u2029", b'"\xe2\x80\xa8\xe2\x80\xa9"', id="line-separators-raw"),
        pytest.param("<&>'", b'"<&>\'"', id="html-not-escaped"),
        pytest.param("caf\u00e9", b'"caf\xc3\xa9"', id="latin1-raw-utf8"),
        pytest.param("\u20ac", b'"\xe2\x82\xac"', id="euro-raw-utf8"),
        pytest.param("\ufeff", b'"\xef\xbb\xbf"', id="bom-char-raw"),
        pytest.param("\U0001f600", b'"\xf0\x9f\x98\x80"', id="astral-raw-utf8"),
    ],
)
def test_canonical_string_escaping(value: str, expected: bytes) -> None:
    assert canonical(value) == expected
    assert canonical_reference(value) == expected
    # The same string as a key and as a nested value: the escaping does not depend on position.
    assert canonical({value: [value]}) == b"{" + expected + b":[" + expected + b"]}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            {"b": 1, "a": 2, "aa": 3, "": 4, "A": 5},
            b'{"":4,"A":5,"a":2,"aa":3,"b":1}',
            id="ascii-and-prefixes",
        ),
        pytest.param(
            {"\ue000": 1, "\U00010000": 2},
            '{"\U00010000":2,"\ue000":1}'.encode(),
            id="astral-before-private-use",
        ),
        pytest.param(
            {"\uffff": 1, "\U0010ffff": 2, "\ud7ff": 3},
            '{"\ud7ff":3,"\U0010ffff":2,"\uffff":1}'.encode(),
            id="utf16-order-around-surrogate-block",
        ),
        pytest.param(
            {"z": {"y": 1, "x": [{"d": None, "c": True}]}, "a": []},
            b'{"a":[],"z":{"x":[{"c":true,"d":null}],"y":1}}',
            id="nested-objects-sorted",
        ),
        pytest.param([3, 1, 2], b"[3,1,2]", id="arrays-keep-order"),
        pytest.param((1, "x"), b'[1,"x"]', id="tuple-is-an-array"),
        pytest.param([True, False, None, 0, 1], b"[true,false,null,0,1]", id="literals"),
        pytest.param(
            [MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER],
            b"[9007199254740991,-9007199254740991]",
            id="safe-int-bounds",
        ),
    ],
)
def test_canonical_structure(value: Any, expected: bytes) -> None:
    assert canonical(value) == expected
    assert canonical_reference(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({1: "a"}, id="int-key"),
        pytest.param({None: 1}, id="none-key"),
        pytest.param({"ok": {b"k": 1}}, id="nested-bytes-key"),
        pytest.param(float("nan"), id="nan"),
        pytest.param(float("inf"), id="infinity"),
        pytest.param(float("-inf"), id="minus-infinity"),
        pytest.param({"a": [1, float("nan")]}, id="nested-nan"),
        pytest.param(2**53, id="int-2^53"),
        pytest.param(-(2**53), id="int-minus-2^53"),
        pytest.param({"a": [10**30]}, id="nested-huge-int"),
        pytest.param({1, 2}, id="set"),
        pytest.param(frozenset(), id="frozenset"),
        pytest.param(b"bytes", id="bytes"),
        pytest.param(bytearray(b"x"), id="bytearray"),
        pytest.param({"a": b"\x00"}, id="nested-bytes"),
        pytest.param(Decimal("1.5"), id="decimal"),
        pytest.param(1j, id="complex"),
        pytest.param(object(), id="object"),
        pytest.param(dt.date(2026, 11, 29), id="date"),
        pytest.param("\ud800", id="lone-surrogate-string"),
        pytest.param({"\udc00": 1}, id="lone-surrogate-key"),
        pytest.param(["ok", {"k": "a\udfffb"}], id="nested-lone-surrogate"),
    ],
)
def test_canonical_rejects(value: Any) -> None:
    with pytest.raises(EncodingError):
        canonical(value)
    with pytest.raises(EncodingError):
        canonical_reference(value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"b": [1, "x", None], "a": {"c": True}}, id="ascii"),
        pytest.param({"k\u00e9": "\u20ac", "\x1f": "\n"}, id="bmp-and-controls"),
        pytest.param({"\U0001f600": 1, "\ufb33": 2}, id="astral-keys"),
    ],
)
def test_canonical_parsed_without_floats_agrees(value: Any) -> None:
    assert canonical(value, parsed_without_floats=True) == canonical_reference(value)


# --------------------------------------------------------------------------------------------
# Quantities

ACCEPTED_QUANTITIES = [
    ("0", Decimal(0)),
    ("1", Decimal(1)),
    ("12.5", Decimal("12.5")),
    ("12.50", Decimal("12.5")),
    ("0.000001", Decimal("0.000001")),
    ("0.5", Decimal("0.5")),
    ("100", Decimal(100)),
    ("999999999999999", Decimal("999999999999999")),
    ("999999999999999.999999", Decimal("999999999999999.999999")),
]


@pytest.mark.parametrize(
    ("text", "expected"), [pytest.param(t, e, id=t) for t, e in ACCEPTED_QUANTITIES]
)
def test_parse_quantity_accepts(text: str, expected: Decimal) -> None:
    quantity = parse_quantity(text)
    assert type(quantity) is Decimal
    assert quantity == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("01", id="leading-zero"),
        pytest.param("00", id="double-zero"),
        pytest.param("1.", id="trailing-dot"),
        pytest.param(".5", id="leading-dot"),
        pytest.param("-1", id="negative"),
        pytest.param("-0", id="minus-zero"),
        pytest.param("+1", id="plus-sign"),
        pytest.param("1e3", id="exponent"),
        pytest.param("1E3", id="exponent-upper"),
        pytest.param("1.0000001", id="seven-decimals"),
        pytest.param("1000000000000000", id="sixteen-digits"),
        pytest.param("1,5", id="decimal-comma"),
        pytest.param("1_000", id="underscore"),
        pytest.param("", id="empty"),
        pytest.param(" 1", id="leading-space"),
        pytest.param("1 ", id="trailing-space"),
        pytest.param("1\n", id="trailing-newline"),
        pytest.param("\u0661\u0662", id="arabic-indic-digits"),
        pytest.param("\uff11", id="fullwidth-digit"),
        pytest.param("0x1", id="hex"),
        pytest.param("NaN", id="nan-text"),
        pytest.param("Infinity", id="infinity-text"),
        pytest.param(1.5, id="float"),
        pytest.param(12, id="int"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="none"),
        pytest.param(Decimal("1.5"), id="decimal-object"),
        pytest.param(b"1", id="bytes"),
    ],
)
def test_parse_quantity_rejects(value: object) -> None:
    with pytest.raises(EncodingError, match="quantity"):
        parse_quantity(value)


def test_parse_quantity_names_the_field() -> None:
    with pytest.raises(EncodingError, match="area_ha"):
        parse_quantity("-1", "area_ha")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(Decimal(0), "0", id="zero"),
        pytest.param(Decimal("0.000000"), "0", id="zero-with-places"),
        pytest.param(Decimal("-0"), "0", id="minus-zero"),
        pytest.param(Decimal("12.50"), "12.5", id="trailing-zero-dropped"),
        pytest.param(Decimal("1.000000"), "1", id="integral-with-places"),
        pytest.param(Decimal("1E+2"), "100", id="exponent-form"),
        pytest.param(Decimal("1E-6"), "0.000001", id="smallest"),
        pytest.param(Decimal("999999999999999.999999"), "999999999999999.999999", id="largest"),
    ],
)
def test_format_quantity(value: Decimal, text: str) -> None:
    assert format_quantity(value) == text
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(Decimal(-1), id="negative"),
        pytest.param(Decimal("-0.000001"), id="tiny-negative"),
        pytest.param(Decimal("1.0000001"), id="seven-decimals"),
        pytest.param(Decimal("0.0000001"), id="below-resolution"),
        pytest.param(Decimal("1000000000000000"), id="too-large"),
        pytest.param(Decimal("NaN"), id="nan"),
        pytest.param(Decimal("sNaN"), id="signalling-nan"),
        pytest.param(Decimal("Infinity"), id="infinity"),
    ],
)
def test_format_quantity_rejects(value: Decimal) -> None:
    with pytest.raises(EncodingError):
        format_quantity(value)


@pytest.mark.parametrize("text", ["0", "12.5", "0.000001", "999999999999999.999999", "7", "40.123"])
def test_quantity_round_trip(text: str) -> None:
    assert format_quantity(parse_quantity(text)) == text


# --------------------------------------------------------------------------------------------
# Times

ACCEPTED_TIMES = [
    ("2026-11-29T03:00:00Z", dt.datetime(2026, 11, 29, 3, 0, 0, tzinfo=UTC)),
    ("2026-11-29T03:00:00.123Z", dt.datetime(2026, 11, 29, 3, 0, 0, 123_000, tzinfo=UTC)),
    ("2026-11-29T03:00:00.000Z", dt.datetime(2026, 11, 29, 3, 0, 0, tzinfo=UTC)),
    ("2024-02-29T23:59:59.999Z", dt.datetime(2024, 2, 29, 23, 59, 59, 999_000, tzinfo=UTC)),
    ("0001-01-01T00:00:00Z", dt.datetime(1, 1, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize(
    ("text", "expected"), [pytest.param(t, e, id=t) for t, e in ACCEPTED_TIMES]
)
def test_parse_time_accepts(text: str, expected: dt.datetime) -> None:
    moment = parse_time(text)
    assert moment == expected
    assert moment.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("2026-11-29T03:00:00z", id="lowercase-z"),
        pytest.param("2026-11-29t03:00:00Z", id="lowercase-t"),
        pytest.param("2026-11-29T03:00:00+00:00", id="plus-offset"),
        pytest.param("2026-11-29T03:00:00-00:00", id="minus-offset"),
        pytest.param("2026-11-29T10:00:00+07:00", id="non-utc-offset"),
        pytest.param("2026-11-29T03:00:00", id="no-z"),
        pytest.param("2026-11-29T03:00:00.123456Z", id="microseconds"),
        pytest.param("2026-11-29T03:00:00.1Z", id="one-fraction-digit"),
        pytest.param("2026-11-29T03:00:00.12Z", id="two-fraction-digits"),
        pytest.param("2026-11-29T03:00:00.Z", id="empty-fraction"),
        pytest.param("2026-11-29T03:00:00,123Z", id="comma-fraction"),
        pytest.param("2026-02-30T00:00:00Z", id="february-30"),
        pytest.param("2025-02-29T00:00:00Z", id="not-a-leap-year"),
        pytest.param("2026-13-01T00:00:00Z", id="month-13"),
        pytest.param("2026-11-29T24:00:00Z", id="hour-24"),
        pytest.param("2026-11-29T23:60:00Z", id="minute-60"),
        pytest.param("2026-12-31T23:59:60Z", id="leap-second"),
        pytest.param("2026-11-29 03:00:00Z", id="space-instead-of-t"),
        pytest.param("2026-11-29T03:00Z", id="no-seconds"),
        pytest.param("2026-11-29", id="date-only"),
        pytest.param("26-11-29T03:00:00Z", id="two-digit-year"),
        pytest.param("+2026-11-29T03:00:00Z", id="signed-year"),
        pytest.param("20261129T030000Z", id="basic-format"),
        pytest.param(" 2026-11-29T03:00:00Z", id="leading-space"),
        pytest.param("2026-11-29T03:00:00Z\n", id="trailing-newline"),
        pytest.param("\u0662\u0660\u0662\u0666-11-29T03:00:00Z", id="arabic-indic-year"),
        pytest.param("", id="empty"),
        pytest.param(1764385200, id="unix-seconds"),
        pytest.param(None, id="none"),
        pytest.param(b"2026-11-29T03:00:00Z", id="bytes"),
        pytest.param(dt.datetime(2026, 11, 29, tzinfo=UTC), id="datetime-object"),
    ],
)
def test_parse_time_rejects(value: object) -> None:
    with pytest.raises(EncodingError):
        parse_time(value)


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        pytest.param(dt.datetime(2026, 11, 29, 3, tzinfo=UTC), "2026-11-29T03:00:00Z", id="utc"),
        pytest.param(
            dt.datetime(2026, 11, 29, 3, 0, 0, 123_000, tzinfo=UTC),
            "2026-11-29T03:00:00.123Z",
            id="milliseconds",
        ),
        pytest.param(
            dt.datetime(2026, 11, 29, 3, 0, 0, 5_000, tzinfo=UTC),
            "2026-11-29T03:00:00.005Z",
            id="milliseconds-zero-padded",
        ),
        pytest.param(
            dt.datetime(2026, 11, 29, 10, tzinfo=dt.timezone(dt.timedelta(hours=7))),
            "2026-11-29T03:00:00Z",
            id="offset-converted-to-utc",
        ),
        pytest.param(
            dt.datetime(2026, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=9))),
            "2025-12-31T16:00:00Z",
            id="offset-crosses-year",
        ),
        pytest.param(dt.datetime(999, 1, 2, tzinfo=UTC), "0999-01-02T00:00:00Z", id="year-999"),
        pytest.param(dt.datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00Z", id="year-1"),
    ],
)
def test_format_time(moment: dt.datetime, text: str) -> None:
    assert format_time(moment) == text
    assert parse_time(text) == moment


@pytest.mark.parametrize(
    "moment",
    [
        pytest.param(dt.datetime(2026, 11, 29, 3), id="naive"),
        pytest.param(dt.datetime(2026, 11, 29, 3, 0, 0, 123_456, tzinfo=UTC), id="microseconds"),
        pytest.param(dt.datetime(2026, 11, 29, 3, 0, 0, 1, tzinfo=UTC), id="one-microsecond"),
        pytest.param(
            dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            id="before-year-1-in-utc",
        ),
        pytest.param(
            dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=-2))),
            id="after-year-9999-in-utc",
        ),
    ],
)
def test_format_time_rejects(moment: dt.datetime) -> None:
    with pytest.raises(EncodingError):
        format_time(moment)


def test_format_time_omits_zero_milliseconds() -> None:
    text = format_time(dt.datetime(2026, 11, 29, 3, 0, 0, 0, tzinfo=UTC))
    assert ".000" not in text
    assert text == "2026-11-29T03:00:00Z"


# --------------------------------------------------------------------------------------------
# Dates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-11-29", dt.date(2026, 11, 29), id="ordinary"),
        pytest.param("2024-02-29", dt.date(2024, 2, 29), id="leap-day"),
        pytest.param("0001-01-01", dt.date(1, 1, 1), id="first-day"),
        pytest.param("9999-12-31", dt.date(9999, 12, 31), id="last-day"),
    ],
)
def test_parse_date_accepts(text: str, expected: dt.date) -> None:
    assert parse_date(text) == expected
    assert format_date(expected) == text


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("2025-02-29", id="not-a-leap-year"),
        pytest.param("2026-02-30", id="february-30"),
        pytest.param("2026-13-01", id="month-13"),
        pytest.param("2026-00-10", id="month-0"),
        pytest.param("2026-11-00", id="day-0"),
        pytest.param("0000-01-01", id="year-0"),
        pytest.param("2026-1-29", id="one-digit-month"),
        pytest.param("2026/11/29", id="slashes"),
        pytest.param("29-11-2026", id="day-first"),
        pytest.param("20261129", id="basic-format"),
        pytest.param("2026-11-29T00:00:00Z", id="datetime"),
        pytest.param("2026-11-29 ", id="trailing-space"),
        pytest.param("\u0662\u0660\u0662\u0666-11-29", id="arabic-indic-year"),
        pytest.param("", id="empty"),
        pytest.param(20261129, id="int"),
        pytest.param(None, id="none"),
        pytest.param(dt.date(2026, 11, 29), id="date-object"),
    ],
)
def test_parse_date_rejects(value: object) -> None:
    with pytest.raises(EncodingError):
        parse_date(value)


# --------------------------------------------------------------------------------------------
# Hex

HASH_HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("text", "size", "expected"),
    [
        pytest.param(HASH_HEX, 32, bytes.fromhex(HASH_HEX), id="hash"),
        pytest.param("00" * 64, 64, bytes(64), id="signature-zeros"),
        pytest.param("ff", 1, b"\xff", id="one-byte"),
        pytest.param("", 0, b"", id="empty"),
    ],
)
def test_parse_hex_accepts(text: str, size: int, expected: bytes) -> None:
    assert parse_hex(text, size, "hash") == expected


@pytest.mark.parametrize(
    ("value", "size"),
    [
        pytest.param(HASH_HEX.upper(), 32, id="upper-case"),
        pytest.param(HASH_HEX[:-1] + "F", 32, id="one-upper-case-char"),
        pytest.param(HASH_HEX[:-1], 32, id="odd-length"),
        pytest.param(HASH_HEX[:-2], 32, id="too-short"),
        pytest.param(HASH_HEX + "00", 32, id="too-long"),
        pytest.param("g" * 64, 32, id="not-hex"),
        pytest.param("0x" + HASH_HEX[:-2], 32, id="0x-prefix"),
        pytest.param(HASH_HEX[:-2] + " 0", 32, id="space"),
        pytest.param(HASH_HEX[:-1] + "\n", 32, id="trailing-newline"),
        pytest.param("\u0661" * 64, 32, id="arabic-indic-digits"),
        pytest.param("\uff10" * 64, 32, id="fullwidth-digits"),
        pytest.param(bytes.fromhex(HASH_HEX), 32, id="bytes"),
        pytest.param(HASH_HEX.encode(), 32, id="hex-as-bytes"),
        pytest.param(None, 32, id="none"),
        pytest.param(12, 1, id="int"),
    ],
)
def test_parse_hex_rejects(value: object, size: int) -> None:
    with pytest.raises(EncodingError, match="block_hash"):
        parse_hex(value, size, "block_hash")
