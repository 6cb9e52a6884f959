"""Canonical bytes and strict parsing for everything Rantai hashes or signs (DESIGN.md §2).

What it does:
  * RFC 8785 (JCS) canonical JSON. :func:`canonical` is byte-identical to the ``rfc8785``
    package; for objects without floats or characters at or above U+D800 it takes a fast path
    through the standard library's C encoder (JCS and ``json.dumps(sort_keys=True)`` agree there:
    keys sort by UTF-16 code unit, which equals code point order below U+D800). A property test
    proves the two paths identical.
  * Strict JSON parsing: duplicate keys, ``NaN``/``Infinity``, integers outside ±(2^53 - 1),
    invalid UTF-8 and lone surrogates are :class:`~ledger.errors.EncodingError`, never accepted.
  * Decimal-string quantities, RFC 3339 UTC times, ``YYYY-MM-DD`` dates, lowercase hex.

What it does not do: know about events or blocks (see ``events`` and ``blocks``), or read any
clock: times are parsed and formatted, never taken.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import re
from decimal import Decimal
from typing import Any

import rfc8785

from ledger.errors import EncodingError

__all__ = [
    "MAX_SAFE_INTEGER",
    "canonical",
    "canonical_reference",
    "format_date",
    "format_quantity",
    "format_time",
    "parse_date",
    "parse_hex",
    "parse_json",
    "parse_json_checking_floats",
    "parse_quantity",
    "parse_time",
    "require_fields",
]

MAX_SAFE_INTEGER = 2**53 - 1

_QUANTITY = re.compile(r"(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?")
_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{3})?Z"
)
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_HEX = re.compile(r"[0-9a-f]*")
_MAX_QUANTITY = Decimal("999999999999999.999999")
# Below U+D800, sorting by code point equals sorting by UTF-16 code unit (RFC 8785 §3.2.3).
_FIRST_UNSAFE_CHAR = "\ud800"

_encode_fast = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode


def canonical_reference(value: Any) -> bytes:
    """RFC 8785 bytes of ``value`` from the ``rfc8785`` package (the reference implementation).

    Raises:
        EncodingError: the value has no JCS form (non-finite float, unsafe integer, non-str key,
            lone surrogate, unsupported type).
    """
    try:
        return bytes(rfc8785.dumps(value))
    except (
        rfc8785.CanonicalizationError,
        TypeError,
        ValueError,
        UnicodeError,
        RecursionError,
    ) as e:
        raise EncodingError(f"value has no RFC 8785 canonical form: {e}") from e


def _only_fast_types(value: Any) -> bool:
    """True when ``value`` holds only dicts, lists, strs, bools, None and safe ints."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is int:
            if -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                continue
            return False
        if kind is dict:
            for key in item:
                if type(key) is not str:
                    return False
            stack.extend(item.values())
        elif kind is list or kind is tuple:
            stack.extend(item)
        else:
            return False
    return True


def canonical(value: Any, *, parsed_without_floats: bool = False) -> bytes:
    """RFC 8785 (JCS) bytes of a JSON value, byte-identical to :func:`canonical_reference`.

    Args:
        value: dicts with str keys, lists, str, int, float, bool and None.
        parsed_without_floats: the caller vouches that ``value`` came from
            :func:`parse_json_checking_floats` and holds no float, which spares the type walk
            (such a value has only str keys and safe ints by construction).

    Raises:
        EncodingError: the value has no JCS form.
    """
    try:
        if parsed_without_floats or _only_fast_types(value):
            text = _encode_fast(value)
            if text.isascii() or max(text) < _FIRST_UNSAFE_CHAR:
                return text.encode("utf-8")
        return canonical_reference(value)
    except RecursionError as e:
        raise EncodingError("value is nested too deeply to canonicalise") from e


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise EncodingError(f"duplicate object key {key!r}")
            seen.add(key)
    return result


def _reject_constant(name: str) -> Any:
    raise EncodingError(f"{name} is not valid JSON")


def _safe_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError as e:  # more digits than int() converts (sys.get_int_max_str_digits())
        raise EncodingError(f"integer of {len(text)} digits is outside ±(2^53 - 1)") from e
    if not -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
        raise EncodingError(f"integer {text} is outside ±(2^53 - 1)")
    return number


_INF = float("inf")


def parse_json(data: bytes | bytearray | str) -> Any:
    """Parse JSON strictly.

    Rejects invalid UTF-8, duplicate keys, ``NaN``/``Infinity``, unsafe integers and lone
    surrogates (which have no UTF-8 form and so could never be canonical).

    Raises:
        EncodingError: naming what is wrong.
    """
    return parse_json_checking_floats(data)[0]


def parse_json_checking_floats(data: bytes | bytearray | str) -> tuple[Any, bool]:
    """Like :func:`parse_json`, and also say whether the document held any float.

    Raises:
        EncodingError: naming what is wrong.
    """
    floats = 0

    def _finite_float(text: str) -> float:
        nonlocal floats
        floats += 1
        number = float(text)
        if number in (_INF, -_INF):
            raise EncodingError(f"number {text} is out of range")
        # JCS writes a float of magnitude 2^53 .. 1e21 as plain integer digits (2e20 ->
        # 200000000000000000000), which this parser refuses as an unsafe integer: accepting it
        # here would let a document in whose canonical bytes do not parse again.
        if MAX_SAFE_INTEGER < abs(number) < 1e21:
            raise EncodingError(f"number {text} would canonicalise to an unsafe integer")
        return number

    try:
        if isinstance(data, bytes | bytearray):
            text = data.decode("utf-8")
        else:
            text = data
            text.encode("utf-8")
        value = json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_reject_constant,
            parse_int=_safe_int,
            parse_float=_finite_float,
        )
    except UnicodeError as e:
        raise EncodingError(f"JSON is not valid UTF-8: {e}") from e
    except json.JSONDecodeError as e:
        raise EncodingError(f"malformed JSON: {e}") from e
    except RecursionError as e:
        raise EncodingError("JSON is nested too deeply") from e
    if "\\ud" in text or "\\uD" in text:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as e:
            raise EncodingError("JSON string holds a lone surrogate") from e
    return value, floats > 0


def require_fields(value: Any, fields: frozenset[str], what: str) -> dict[str, Any]:
    """``value`` as an object with exactly ``fields``.

    Raises:
        EncodingError: not an object, or a field missing or unknown (each named).
    """
    if type(value) is not dict:
        raise EncodingError(f"{what} must be a JSON object")
    if value.keys() != fields:
        problems = []
        missing = sorted(fields - value.keys())
        extra = sorted(value.keys() - fields)
        if missing:
            problems.append("missing " + ", ".join(missing))
        if extra:
            problems.append("unknown field " + ", ".join(extra))
        raise EncodingError(f"{what}: " + "; ".join(problems))
    return value


def parse_quantity(text: object, what: str = "quantity") -> Decimal:
    """Parse a decimal-string quantity (``^(0|[1-9][0-9]{0,14})(\\.[0-9]{1,6})?$``).

    Raises:
        EncodingError: not a string or not in that form (floats are refused on purpose).
    """
    if type(text) is not str or _QUANTITY.fullmatch(text) is None:
        raise EncodingError(
            f"{what} must be a decimal string like '12.5' (at most 15 integer digits "
            f"and 6 decimals, no sign, no exponent), got {text!r}"
        )
    return Decimal(text)


def format_quantity(value: Decimal) -> str:
    """The shortest decimal string for ``value`` (no exponent, no trailing zeros).

    Raises:
        EncodingError: negative, more than 6 decimals, or too large.
    """
    if not value.is_finite() or value < 0 or value > _MAX_QUANTITY:
        raise EncodingError(f"quantity {value} is out of range")
    if value != value.quantize(Decimal("0.000001")):
        raise EncodingError(f"quantity {value} has more than 6 decimals")
    text = format(value.normalize(), "f")
    return "0" if text in ("0", "-0") else text


def parse_time(text: object, what: str = "time") -> _dt.datetime:
    """Parse an RFC 3339 UTC time with ``Z`` and second or millisecond precision.

    Raises:
        EncodingError: any other form, or a date/time that does not exist.
    """
    if type(text) is not str:
        raise EncodingError(f"{what} must be RFC 3339 UTC like 2026-11-29T03:00:00Z, got {text!r}")
    try:
        return _parse_time_text(text)
    except ValueError as e:
        raise EncodingError(f"{what} {e}") from None


@functools.lru_cache(maxsize=256)
def _parse_time_text(text: str) -> _dt.datetime:
    """:func:`parse_time` for strings, cached: the events of a block mostly share a time.

    Small on purpose: every block has a time of its own, so a running node adds an entry for
    each block; 4,096 entries held about 1.2 MB, filled over a soak's first 20 minutes.

    Raises:
        ValueError: why ``text`` is not a time (:func:`parse_time` names the field).
    """
    if _TIME.fullmatch(text) is None:
        raise ValueError(
            f"must be RFC 3339 UTC like 2026-11-29T03:00:00Z or 2026-11-29T03:00:00.123Z, "
            f"got {text!r}"
        )
    try:
        return _dt.datetime.fromisoformat(text)
    except ValueError as e:
        raise ValueError(f"{text!r} is not a real time: {e}") from None


def format_time(moment: _dt.datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with ``Z`` (milliseconds only when non-zero).

    Raises:
        EncodingError: a naive datetime, or one with sub-millisecond precision.
    """
    if moment.tzinfo is None:
        raise EncodingError("time must be timezone-aware")
    try:
        moment = moment.astimezone(_dt.UTC)
    except OverflowError as e:
        raise EncodingError(f"time {moment.isoformat()} has no UTC form") from e
    if moment.microsecond % 1000:
        raise EncodingError("time has more than millisecond precision")
    # isoformat() pads the year to four digits; strftime("%Y") does not on every platform.
    text = moment.replace(tzinfo=None, microsecond=0).isoformat()
    if moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"


def parse_date(text: object, what: str = "date") -> _dt.date:
    """Parse a ``YYYY-MM-DD`` date.

    Raises:
        EncodingError: any other form or a date that does not exist.
    """
    match = _DATE.fullmatch(text) if type(text) is str else None
    if match is None:
        raise EncodingError(f"{what} must be YYYY-MM-DD, got {text!r}")
    try:
        return _dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError as e:
        raise EncodingError(f"{what} {text!r} is not a real date: {e}") from e


def format_date(day: _dt.date) -> str:
    """Format a date as ``YYYY-MM-DD``."""
    return day.isoformat()


def parse_hex(text: object, size: int, what: str) -> bytes:
    """Decode lowercase hex of exactly ``size`` bytes.

    Raises:
        EncodingError: not a string, upper case, odd length, wrong length or not hex.
    """
    if type(text) is not str or len(text) != 2 * size or _HEX.fullmatch(text) is None:
        raise EncodingError(f"{what} must be {2 * size} lowercase hex characters, got {text!r}")
    return bytes.fromhex(text)
