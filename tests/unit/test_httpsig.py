"""HTTP request signatures (``node.httpsig``): the RFC 9421 and RFC 9530 vectors, round trips,
every reason a request is refused, replays, and any flipped byte failing (hypothesis)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import AuthenticationError
from ledger.keys import key_id, private_key_from_pem, public_key_bytes, verify_signature
from node.httpsig import (
    ACCEPT_SIGNATURE,
    COVERED_COMPONENTS,
    MAX_SKEW_SECONDS,
    REPLAY_SLICE_SECONDS,
    BareItem,
    InnerList,
    Item,
    ReplayGuard,
    Token,
    VerifiedRequest,
    content_digest,
    parse_dictionary,
    sign_request,
    signature_base,
    signature_params,
    verify_request,
)
from rantai.samplechain import derive_key

# --- RFC 9421 Appendix B.1.4 (test-key-ed25519) and B.2.6 (signing a request using ed25519) ---

RFC_PRIVATE_KEY = b"""-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
"""
RFC_PUBLIC_KEY = base64.b64decode("MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=")[
    -32:
]
B26_VALUES = [
    ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
    ("@method", "POST"),
    ("@path", "/foo"),
    ("@authority", "example.com"),
    ("content-type", "application/json"),
    ("content-length", "18"),
]
B26_PARAMETERS: list[tuple[str, BareItem]] = [
    ("created", 1618884473),
    ("keyid", "test-key-ed25519"),
]
B26_BASE = (
    b'"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    b'"@method": POST\n'
    b'"@path": /foo\n'
    b'"@authority": example.com\n'
    b'"content-type": application/json\n'
    b'"content-length": 18\n'
    b'"@signature-params": ("date" "@method" "@path" "@authority" "content-type" '
    b'"content-length");created=1618884473;keyid="test-key-ed25519"'
)
B26_SIGNATURE_INPUT = (
    'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length")'
    ';created=1618884473;keyid="test-key-ed25519"'
)
B26_SIGNATURE = (
    "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpB"
    "KRCw==:"
)
RFC_BODY = b'{"hello": "world"}'


def test_the_rfc_9421_ed25519_signature_base() -> None:
    assert signature_base(B26_VALUES, B26_PARAMETERS) == B26_BASE


def test_the_rfc_9421_ed25519_signature() -> None:
    key = private_key_from_pem(RFC_PRIVATE_KEY)
    assert public_key_bytes(key) == RFC_PUBLIC_KEY
    signature = parse_dictionary("Signature", B26_SIGNATURE)["sig-b26"]
    assert isinstance(signature, Item)
    assert isinstance(signature.value, bytes)
    assert key.sign(B26_BASE) == signature.value  # Ed25519 is deterministic: the same bytes
    verify_signature(RFC_PUBLIC_KEY, b"", B26_BASE, signature.value)


def test_the_rfc_9421_signature_input_parses_and_serialises_back() -> None:
    member = parse_dictionary("Signature-Input", B26_SIGNATURE_INPUT)["sig-b26"]
    assert isinstance(member, InnerList)
    names = [str(item.value) for item in member.items]
    assert names == [name for name, _ in B26_VALUES]
    assert member.parameters == tuple(B26_PARAMETERS)
    assert f"sig-b26={signature_params(names, member.parameters)}" == B26_SIGNATURE_INPUT


def test_the_content_digests_of_rfc_9530_and_rfc_9421() -> None:
    assert content_digest(RFC_BODY) == "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    # RFC 9421's test-request carries a sha-512 digest of the same body; a verifier checks it.
    sha512 = (
        "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwE"
        "mTHWXvJwew==:"
    )
    headers = _headers(body=RFC_BODY)
    headers["content-digest"] = f"{content_digest(RFC_BODY)}, {sha512}"
    _resign(headers)
    assert _verify(headers, body=RFC_BODY).key_id == KEY_ID


def test_accept_signature_asks_for_this_profile() -> None:
    member = parse_dictionary("Accept-Signature", ACCEPT_SIGNATURE)["sig1"]
    assert isinstance(member, InnerList)
    assert tuple(str(item.value) for item in member.items) == COVERED_COMPONENTS
    assert dict(member.parameters) == {"created": True, "nonce": True, "alg": "ed25519"}


# --- round trips and refusals ------------------------------------------------------------------

KEY = derive_key(b"httpsig", "member")
KEY_ID = key_id(public_key_bytes(KEY))
NOW = 1_800_000_000
NONCE = "n0nce-for-the-tests-0123"


def _lookup(wanted: str) -> bytes | None:
    return public_key_bytes(KEY) if wanted == KEY_ID else None


def _headers(
    method: str = "GET", target: str = "/v1/lots/KP-1?x=1", body: bytes = b"", created: int = NOW
) -> dict[str, str]:
    signed = sign_request(method, target, body, KEY, KEY_ID, created, nonce=NONCE)
    return {name.lower(): value for name, value in signed.items()}


def _resign(
    headers: dict[str, str],
    *,
    components: tuple[str, ...] = COVERED_COMPONENTS,
    parameters: tuple[tuple[str, BareItem], ...] | None = None,
    method: str = "GET",
    path: str = "/v1/lots/KP-1",
    query: str = "x=1",
) -> None:
    """Sign ``headers`` again with other components or parameters (a signer gone astray)."""
    if parameters is None:
        parameters = (("created", NOW), ("keyid", KEY_ID), ("alg", "ed25519"), ("nonce", NONCE))
    values = {
        "@method": method,
        "@path": path,
        "@query": "?" + query,
        "content-digest": headers["content-digest"],
        "date": "Tue, 20 Apr 2021 02:07:55 GMT",
    }
    base = signature_base([(c, values[c]) for c in components], parameters)
    headers["signature-input"] = f"sig1={signature_params(components, parameters)}"
    headers["signature"] = f"sig1=:{base64.b64encode(KEY.sign(base)).decode()}:"


def _verify(
    headers: dict[str, str],
    *,
    method: str = "GET",
    path: str = "/v1/lots/KP-1",
    query: str = "x=1",
    body: bytes = b"",
    now: int = NOW,
) -> VerifiedRequest:
    return verify_request(method, path, query, headers, body, now, _lookup)


def test_a_signed_request_verifies() -> None:
    verified = _verify(_headers())
    assert verified == VerifiedRequest(KEY_ID, NOW, NONCE)


def test_a_signed_post_with_a_body_and_no_query_verifies() -> None:
    body = b'{"items": []}'
    headers = _headers("POST", "/v1/peer/inbox", body)
    assert _verify(headers, method="POST", path="/v1/peer/inbox", query="", body=body)
    assert 'created=1800000000;keyid="' in headers["signature-input"]
    assert headers["signature-input"].startswith(
        'sig1=("@method" "@path" "@query" "content-digest");created='
    )


def test_a_random_nonce_is_made_when_none_is_given() -> None:
    first = sign_request("GET", "/v1/status", b"", KEY, KEY_ID, NOW)
    second = sign_request("GET", "/v1/status", b"", KEY, KEY_ID, NOW)
    assert first["Signature-Input"] != second["Signature-Input"]
    for signed in (first, second):
        headers = {name.lower(): value for name, value in signed.items()}
        assert _verify(headers, path="/v1/status", query="").created == NOW


def test_components_may_come_in_any_order() -> None:
    headers = _headers()
    _resign(headers, components=tuple(reversed(COVERED_COMPONENTS)))
    assert _verify(headers).nonce == NONCE


Change = Callable[[dict[str, str]], None]


def _unchanged(headers: dict[str, str]) -> None:
    """Leave the headers as signed (the request itself changes)."""


def _without(name: str) -> Change:
    def change(headers: dict[str, str]) -> None:
        del headers[name]

    return change


def _set(name: str, value: str) -> Change:
    def change(headers: dict[str, str]) -> None:
        headers[name] = value

    return change


def _append(name: str, value: str) -> Change:
    def change(headers: dict[str, str]) -> None:
        headers[name] += value

    return change


def _relabel(headers: dict[str, str]) -> None:
    headers["signature"] = headers["signature"].replace("sig1", "sig2")


def _resigned(**changes: Any) -> Change:
    def change(headers: dict[str, str]) -> None:
        _resign(headers, **changes)

    return change


def _parameters(**changes: BareItem | None) -> tuple[tuple[str, BareItem], ...]:
    base: dict[str, BareItem] = {"created": NOW, "keyid": KEY_ID, "alg": "ed25519", "nonce": NONCE}
    for name, value in changes.items():
        if value is None:
            del base[name]
        else:
            base[name] = value
    return tuple(base.items())


REFUSALS: list[tuple[str, Change, dict[str, Any], str]] = [
    ("no-signature-input", _without("signature-input"), {}, "signature-missing"),
    ("no-signature", _without("signature"), {}, "signature-missing"),
    ("no-content-digest", _without("content-digest"), {}, "signature-malformed"),
    ("unparsable-input", _set("signature-input", "sig1=("), {}, "signature-malformed"),
    ("two-signatures", _append("signature", ", sig2=:AAAA:"), {}, "signature-malformed"),
    ("labels-differ", _relabel, {}, "signature-malformed"),
    ("signature-not-bytes", _set("signature", 'sig1="abc"'), {}, "signature-malformed"),
    ("short-signature", _set("signature", "sig1=:AAAA:"), {}, "signature-mismatch"),
    (
        "no-query-covered",
        _resigned(components=("@method", "@path", "content-digest")),
        {},
        "signature-components",
    ),
    (
        "no-digest-covered",
        _resigned(components=("@method", "@path", "@query")),
        {},
        "signature-components",
    ),
    (
        "an-extra-component",
        _resigned(components=(*COVERED_COMPONENTS, "date")),
        {},
        "signature-components",
    ),
    (
        "a-component-twice",
        _resigned(components=(*COVERED_COMPONENTS, "@method")),
        {},
        "signature-components",
    ),
    (
        "another-alg",
        _resigned(parameters=_parameters(alg="rsa-pss-sha512")),
        {},
        "signature-algorithm",
    ),
    ("no-alg", _resigned(parameters=_parameters(alg=None)), {}, "signature-algorithm"),
    (
        "alg-as-token",
        _resigned(parameters=_parameters(alg=Token("ed25519"))),
        {},
        "signature-algorithm",
    ),
    ("an-extra-parameter", _resigned(parameters=_parameters(tag="x")), {}, "signature-malformed"),
    ("no-created", _resigned(parameters=_parameters(created=None)), {}, "signature-malformed"),
    (
        "created-as-string",
        _resigned(parameters=_parameters(created="1")),
        {},
        "signature-malformed",
    ),
    ("no-nonce", _resigned(parameters=_parameters(nonce=None)), {}, "signature-malformed"),
    ("short-nonce", _resigned(parameters=_parameters(nonce="abc")), {}, "signature-malformed"),
    ("bad-keyid", _resigned(parameters=_parameters(keyid="test-key")), {}, "signature-malformed"),
    ("expired", _unchanged, {"now": NOW + MAX_SKEW_SECONDS + 1}, "signature-expired"),
    ("from-the-future", _unchanged, {"now": NOW - MAX_SKEW_SECONDS - 1}, "signature-future"),
    ("body-altered", _unchanged, {"body": b"x"}, "digest-mismatch"),
    (
        "digest-and-body-altered",
        _set("content-digest", content_digest(b"x")),
        {"body": b"x"},
        "signature-mismatch",
    ),
    ("sha-256-missing", _set("content-digest", "sha-512=:AAAA:"), {}, "signature-malformed"),
    ("md5-digest", _set("content-digest", "md5=:AAAA:"), {}, "signature-malformed"),
    (
        "unknown-key",
        _resigned(parameters=_parameters(keyid="0" * 64)),
        {},
        "key-unknown",
    ),
    ("path-altered", _unchanged, {"path": "/v1/lots/KP-2"}, "signature-mismatch"),
    ("query-altered", _unchanged, {"query": "x=2"}, "signature-mismatch"),
    ("query-dropped", _unchanged, {"query": ""}, "signature-mismatch"),
    ("method-altered", _unchanged, {"method": "POST"}, "signature-mismatch"),
    ("method-case-altered", _unchanged, {"method": "get"}, "signature-mismatch"),
    ("newline-in-path", _unchanged, {"path": "/v1\n"}, "signature-malformed"),
]


@pytest.mark.parametrize(
    ("change", "request_changes", "reason"),
    [case[1:] for case in REFUSALS],
    ids=[case[0] for case in REFUSALS],
)
def test_every_refusal_names_its_reason(
    change: Change, request_changes: dict[str, Any], reason: str
) -> None:
    headers = _headers()
    change(headers)
    with pytest.raises(AuthenticationError) as refused:
        _verify(headers, **request_changes)
    assert refused.value.reason == reason
    assert refused.value.detail


@pytest.mark.parametrize(
    "offset", [-MAX_SKEW_SECONDS, MAX_SKEW_SECONDS], ids=["five-minutes-ago", "five-minutes-ahead"]
)
def test_the_window_is_five_minutes_either_way(offset: int) -> None:
    assert _verify(_headers(created=NOW + offset)).created == NOW + offset


# --- structured fields -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a=1,",
        "a=1, a=2",
        "A=1",
        "a=1;b;b",
        "a=:not base64!:",
        "a=:QUJD",
        'a="unterminated',
        'a="bad \\n escape"',
        'a="tab\there"',
        "a=1.5",
        "a=1234567890123456",
        "a=(1 2",
        "a=(1,2)",
        "a=?2",
        "a=é",
        "a=@",
    ],
    ids=lambda text: text or "empty",
)
def test_malformed_structured_fields_are_refused(text: str) -> None:
    with pytest.raises(AuthenticationError) as refused:
        parse_dictionary("Signature-Input", text)
    assert refused.value.reason == "signature-malformed"


def test_structured_fields_parse() -> None:
    parsed = parse_dictionary("Example", ' a=-7;p=?1, b, c=(tok "s\\"q" :QUJD:);q=x/y:z ')
    assert parsed == {
        "a": Item(-7, (("p", True),)),
        "b": Item(True),
        "c": InnerList((Item(Token("tok")), Item('s"q'), Item(b"ABC")), (("q", Token("x/y:z")),)),
    }


# --- replays -------------------------------------------------------------------------------------


def test_a_nonce_is_refused_the_second_time_while_it_could_be_replayed() -> None:
    guard = ReplayGuard()
    request = VerifiedRequest(KEY_ID, NOW, NONCE)
    guard.remember(request, NOW)
    with pytest.raises(AuthenticationError) as replayed:
        guard.remember(request, NOW + 1)
    assert replayed.value.reason == "replayed"
    guard.remember(VerifiedRequest("0" * 64, NOW, NONCE), NOW + 1)  # another key's nonce
    with pytest.raises(AuthenticationError):
        guard.remember(request, NOW + MAX_SKEW_SECONDS)  # the signature still verifies then
    assert len(guard) == 2


def test_nonces_are_forgotten_once_their_signatures_expire() -> None:
    guard = ReplayGuard()
    for number in range(100):
        guard.remember(VerifiedRequest(KEY_ID, NOW + number, f"nonce-{number:012d}"), NOW)
    guard.remember(VerifiedRequest(KEY_ID, NOW + 200, "a-later-nonce-0000"), NOW + 200)
    assert len(guard) == 101
    guard.remember(VerifiedRequest(KEY_ID, NOW + 350, "a-later-nonce-0001"), NOW + 350)
    assert len(guard) == 52  # those created before NOW + 50 can no longer verify
    guard.remember(VerifiedRequest(KEY_ID, NOW + 1000, "a-later-nonce-0002"), NOW + 1000)
    assert len(guard) == 1


@pytest.mark.parametrize("offset", range(REPLAY_SLICE_SECONDS))
def test_a_nonce_is_refused_up_to_the_last_second_its_signature_verifies(offset: int) -> None:
    """Every position of an expiry within its slice: refused at expiry, accepted a slice later."""
    created = NOW + offset
    expires = created + MAX_SKEW_SECONDS
    for now, replayed in ((expires, True), (expires + REPLAY_SLICE_SECONDS, False)):
        guard = ReplayGuard()
        guard.remember(VerifiedRequest(KEY_ID, created, NONCE), created)
        guard.remember(VerifiedRequest(KEY_ID, now, "a-later-nonce-0000"), now)
        if replayed:
            with pytest.raises(AuthenticationError):
                guard.remember(VerifiedRequest(KEY_ID, now, NONCE), now)
        else:
            guard.remember(VerifiedRequest(KEY_ID, now, NONCE), now)


@given(
    st.lists(
        st.tuples(
            st.sampled_from([KEY_ID, "0" * 64]),
            st.sampled_from([f"nonce-{n:012d}" for n in range(4)]),
            st.integers(min_value=-MAX_SKEW_SECONDS, max_value=MAX_SKEW_SECONDS),
            st.integers(min_value=0, max_value=120),
        ),
        max_size=60,
    )
)
def test_a_nonce_is_refused_exactly_while_its_signature_could_be_replayed(
    requests: list[tuple[str, str, int, int]],
) -> None:
    """Against a model: refused while an accepted signature with that nonce still verifies,
    accepted once it expired a slice ago or was never seen, either way in between."""
    guard = ReplayGuard()
    expiry: dict[tuple[str, str], int] = {}
    now = NOW
    for key, nonce, skew, wait in requests:
        now += wait
        request = VerifiedRequest(key, now + skew, nonce)
        seen = expiry.get((key, nonce))
        refusal = None
        try:
            guard.remember(request, now)
        except AuthenticationError as e:
            refusal = e.reason
        if refusal is not None:
            assert refusal == "replayed"
            assert seen is not None
            assert now < seen + REPLAY_SLICE_SECONDS
            continue
        assert seen is None or seen < now
        expiry[(key, nonce)] = request.created + MAX_SKEW_SECONDS
    live = sum(1 for expires in expiry.values() if expires >= now)
    assert live <= len(guard) <= len(expiry)


# --- any flipped byte fails ----------------------------------------------------------------------

BODY = b'{"from":"node","items":[{"kind":"event","body":{}}]}'
PATH, QUERY = "/v1/peer/inbox", "from=1&to=64"


def _flip(data: bytes, position: int, mask: int) -> bytes:
    position %= len(data)
    return data[:position] + bytes([data[position] ^ mask]) + data[position + 1 :]


def _post_headers() -> dict[str, str]:
    return _headers("POST", f"{PATH}?{QUERY}", BODY)


@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_any_flipped_body_byte_fails(position: int, mask: int) -> None:
    with pytest.raises(AuthenticationError):
        _verify(
            _post_headers(), method="POST", path=PATH, query=QUERY, body=_flip(BODY, position, mask)
        )


@given(
    st.sampled_from(["method", "path", "query"]),
    st.integers(min_value=0),
    st.integers(min_value=1, max_value=255),
)
def test_any_flipped_method_path_or_query_byte_fails(part: str, position: int, mask: int) -> None:
    request = {"method": "POST", "path": PATH, "query": QUERY}
    request[part] = _flip(request[part].encode(), position, mask).decode("latin-1")
    with pytest.raises(AuthenticationError):
        _verify(
            _post_headers(),
            method=request["method"],
            path=request["path"],
            query=request["query"],
            body=BODY,
        )


@given(st.integers(min_value=0, max_value=63), st.integers(min_value=1, max_value=255))
def test_any_flipped_signature_byte_fails(position: int, mask: int) -> None:
    headers = _post_headers()
    signature = parse_dictionary("Signature", headers["signature"])["sig1"]
    assert isinstance(signature, Item)
    assert isinstance(signature.value, bytes)
    flipped = base64.b64encode(_flip(signature.value, position, mask)).decode()
    headers["signature"] = f"sig1=:{flipped}:"
    with pytest.raises(AuthenticationError) as refused:
        _verify(headers, method="POST", path=PATH, query=QUERY, body=BODY)
    assert refused.value.reason == "signature-mismatch"


@given(
    st.sampled_from(["signature-input", "content-digest"]),
    st.integers(min_value=0),
    st.integers(min_value=1, max_value=127),
)
def test_any_flipped_header_byte_fails(name: str, position: int, mask: int) -> None:
    headers = _post_headers()
    headers[name] = _flip(headers[name].encode(), position, mask).decode("latin-1")
    with pytest.raises(AuthenticationError):
        _verify(headers, method="POST", path=PATH, query=QUERY, body=BODY)


_FIELD_LIKE = (
    r'[a-z]{1,3}=(\(("[@a-z-]{0,8}" ?){0,4}\)|:[A-Za-z0-9+/=]{0,12}:|"[ -~]{0,10}"'
    r'|-?[0-9]{1,17}|\?[0-2])(;[a-z]{1,5}(=[0-9a-z"]{1,6})?){0,3}(, ?)?'
)


@given(st.text(max_size=200) | st.from_regex(_FIELD_LIKE, fullmatch=True))
def test_a_structured_field_parses_or_is_refused_as_malformed(text: str) -> None:
    """Never another exception: whatever a client sends is parsed or refused with a reason."""
    reason = "parsed"
    try:
        parse_dictionary("Signature-Input", text)
    except AuthenticationError as e:
        reason = e.reason
    assert reason in ("parsed", "signature-malformed")
