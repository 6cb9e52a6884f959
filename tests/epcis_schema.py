"""The EPCIS 2.0 JSON Schema as a validator that really checks ``uri`` and ``date-time``.

jsonschema checks those formats only with optional packages this project does not install;
without them every string would pass as a URI (a bizStep "transforming" included).
"""

from __future__ import annotations

import datetime as _dt
import json
import re

import jsonschema

from tests._paths import TESTDATA

_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]*")
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})"
)


def _is_uri(value: object) -> bool:
    return not isinstance(value, str) or _URI.fullmatch(value) is not None


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if _DATE_TIME.fullmatch(value) is None:
        return False
    try:
        _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def epcis_schema_validator() -> jsonschema.protocols.Validator:
    """A draft-07 validator of ``EPCIS-JSON-Schema.json`` with both formats enforced."""
    raw = json.loads((TESTDATA / "epcis" / "schema" / "EPCIS-JSON-Schema.json").read_text())
    validator_class = jsonschema.validators.validator_for(raw)
    assert validator_class is jsonschema.Draft7Validator  # the schema's $schema is draft-07
    validator_class.check_schema(raw)
    formats = jsonschema.FormatChecker()
    formats.checks("uri")(_is_uri)
    formats.checks("date-time")(_is_date_time)
    return validator_class(raw, format_checker=formats)
