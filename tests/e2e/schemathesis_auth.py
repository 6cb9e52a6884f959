"""Schemathesis hooks (``SCHEMATHESIS_HOOKS``): authenticate generated requests as a real client.

``schemathesis run`` imports this module in :mod:`tests.e2e.test_schemathesis`'s signed pass.
What an operation needs is read from the document's security schemes, not from the routes:

* an ``apiKey`` scheme in the ``Signature`` header (``requestSignature``, ``api.access``): an
  RFC 9421 signature (:func:`node.httpsig.sign_request`) by the member key in the PEM file
  ``$RANTAI_SCHEMATHESIS_KEY``;
* an HTTP ``bearer`` scheme (``captureToken``, ``POST /epcis/capture``):
  ``Authorization: Bearer $RANTAI_SCHEMATHESIS_TOKEN``.

Public operations go as generated. The signature covers the request exactly as it is sent, so it
is computed over the request schemathesis prepares for the case with the serialisation its own
transport uses. Schemathesis leaves a case unauthenticated when it negates a security parameter
on purpose, and its ``ignored_auth`` check removes or spoils the ``Signature`` field of a signed
case: those requests must answer ``401``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import requests
import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.keys import key_id, public_key_bytes
from node.httpsig import sign_request
from node.keystore import load_key

__all__ = ["KEY_VARIABLE", "TOKEN_VARIABLE", "RequestCredentials"]

KEY_VARIABLE = "RANTAI_SCHEMATHESIS_KEY"
"""The PEM file of the member key that signs requests."""
TOKEN_VARIABLE = "RANTAI_SCHEMATHESIS_TOKEN"
"""The capture token of the node's ``[capture]`` configuration."""


def _schemes(case: schemathesis.Case[Any]) -> list[dict[str, Any]]:
    """The security schemes an operation requires (any one requirement of the list)."""
    raw = case.operation.schema.raw_schema
    defined: dict[str, dict[str, Any]] = raw.get("components", {}).get("securitySchemes", {})
    requirements = case.operation.definition.raw.get("security", raw.get("security", []))
    return [defined[name] for requirement in requirements for name in requirement]


def _signs(scheme: dict[str, Any]) -> bool:
    return (
        scheme.get("type") == "apiKey"
        and scheme.get("in") == "header"
        and (str(scheme.get("name", "")).lower() == "signature")
    )


def _bearer(scheme: dict[str, Any]) -> bool:
    return scheme.get("type") == "http" and str(scheme.get("scheme", "")).lower() == "bearer"


@schemathesis.auth(refresh_interval=None, retry_on=[])
class RequestCredentials:
    """Sign a case, or give it the capture token, as its operation requires."""

    def get(
        self, case: schemathesis.Case[Any], context: schemathesis.AuthContext
    ) -> Ed25519PrivateKey:
        """The signing key (read for every case: the file is tiny and this keeps no state)."""
        return load_key(Path(os.environ[KEY_VARIABLE]))

    def set(
        self,
        case: schemathesis.Case[Any],
        data: Ed25519PrivateKey,
        context: schemathesis.AuthContext,
    ) -> None:
        """Add the ``Authorization`` field or the three signature fields to the case."""
        schemes = _schemes(case)
        if any(_bearer(scheme) for scheme in schemes):
            case.headers["Authorization"] = f"Bearer {os.environ[TOKEN_VARIABLE]}"
        if any(_signs(scheme) for scheme in schemes):
            prepared = requests.Request(**case.as_transport_kwargs()).prepare()
            body = prepared.body
            if isinstance(body, str):
                body = body.encode()
            elif body is None:
                body = b""
            if not isinstance(body, bytes):
                raise TypeError(f"cannot sign a streamed body ({type(body).__name__})")
            signature = sign_request(
                str(prepared.method),
                prepared.path_url,
                body,
                data,
                key_id(public_key_bytes(data)),
                int(time.time()),
            )
            case.headers.update(signature)
