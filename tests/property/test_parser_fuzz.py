"""Hostile input: every parser either returns or raises the error it documents.

Each parser that meets bytes from outside is fed random bytes, random JSON values, and valid
inputs mutated at the byte level (bit flips, truncations, insertions, deletions, splices) and at
the JSON level (a value replaced, a field dropped or added, a list item repeated). The valid
seeds come from ``tests/builders.py``, ``rantai.samplechain`` and ``tests/testdata``:

=============================================  ============================================
parser                                         may raise
=============================================  ============================================
``ledger.encoding.parse_json``                 ``EncodingError``
``ledger.events.parse_envelope``               ``EncodingError``, ``SignatureError``
``ledger.checkpoint.parse_note`` and           ``EncodingError`` (and ``SignatureError``
``verify_checkpoint``, ``parse_checkpoint``,   when verifying)
``parse_verifier_key``
``ledger.blocks.parse_genesis``,               ``EncodingError``
``parse_block``, ``parse_header``,
``parse_certificate``
``ledger.verifier.check_export``               nothing: it reports the first fault
``node.epcis.capture_bodies``                  ``EncodingError`` (``EpcisError`` mostly)
=============================================  ============================================

Any other exception (``KeyError``, ``TypeError``, ``ValueError``, ``IndexError``,
``RecursionError``, ``UnicodeDecodeError``, ``OverflowError``, …) is a bug. So is a
``RecursionError`` on deep nesting: 100,000 nested arrays or objects must be an
``EncodingError`` like any other bad input.

The export is mutated line by line (bytes, JSON trees, lines dropped, repeated, swapped,
unterminated) and also one event at a time, re-signed by its signer, so that the supply-chain
rules the verifier replays meet validly signed nonsense too. Run with
``--hypothesis-show-statistics`` to see how often each input was accepted or refused.
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from ledger.blocks import (
    Block,
    export_lines,
    genesis_header,
    parse_block,
    parse_certificate,
    parse_genesis,
    parse_header,
)
from ledger.checkpoint import (
    Checkpoint,
    check_note,
    format_checkpoint,
    format_note,
    format_verifier_key,
    parse_checkpoint,
    parse_note,
    parse_verifier_key,
    sign_checkpoint,
    verify_checkpoint,
)
from ledger.encoding import canonical, format_time, parse_json, parse_json_checking_floats
from ledger.errors import ChainError, EncodingError, LedgerError, SignatureError
from ledger.events import parse_envelope
from ledger.keys import EVENT_PREFIX, sign
from ledger.merkle import CompactRange
from ledger.verifier import ChainReport, check_export
from node.epcis import CommittedLotEvent, capture_bodies, export_document
from rantai.samplechain import sample_network
from tests._paths import TESTDATA
from tests.builders import (
    GOVERNANCE,
    World,
    fixture_world,
    private_key,
    public_key_hex,
    signing_key_id,
)

_T = TypeVar("_T")

# --------------------------------------------------------------------------------------------
# Valid seeds

NET = sample_network()
NETWORK = NET.network
CAPTURED_AT = "2026-11-29T06:00:00Z"
BUDI, BUDI_2, KARET_ADMIN = "koperasi-karet/budi", "koperasi-karet/budi#2", "koperasi-karet/admin-1"


@functools.cache
def _world() -> World:
    """The builders' fixture world, plus a shipment, a receipt, a transformation, a split, a
    merge, a certification and a key rotation, so that every event type is in the seeds."""
    world = fixture_world()
    world.ship("RB-BUDI-1", "SHIP-1", "pengolah-kalbar", signer="koperasi-karet/clerk")
    world.receive("RB-BUDI-1", "SHIP-1", "495", signer="pengolah-kalbar/clerk")
    world.submit(
        "lot.transform",
        {
            "inputs": [{"lot_id": "RB-BUDI-1", "quantity": "400"}],
            "outputs": [
                {"lot_id": "RSS-1", "commodity": "rubber_sheet", "quantity": "300", "uom": "kg"}
            ],
            "process": "sheeting",
        },
        ["pengolah-kalbar/clerk"],
    )
    split = {"lot_id": "RB-BUDI-2", "outputs": [{"lot_id": "RB-BUDI-2a", "quantity": "100"}]}
    world.submit("lot.split", split, ["koperasi-karet/budi"])
    world.submit(
        "lot.merge", {"inputs": ["RB-BUDI-2", "RB-BUDI-2a"], "lot_id": "RB-BUDI-M"}, [BUDI]
    )
    certify = {
        "lot_id": "KP-SITI-1",
        "scheme": "organic",
        "certificate": "ORG-2026-1",
        "valid_until": "2027-11-29",
    }
    world.submit("lot.certify", certify, ["auditor-kalbar/dewi"])
    world.submit(
        "key.add", {"member_id": BUDI, "public_key": public_key_hex(BUDI_2)}, [KARET_ADMIN]
    )
    world.submit("key.revoke", {"member_id": BUDI, "key": signing_key_id(BUDI_2)}, [BUDI])
    return world


@functools.cache
def _signing_keys() -> dict[str, Ed25519PrivateKey]:
    """Key id → private key of every key the world's events register (to re-sign mutants)."""
    labels = [GOVERNANCE, BUDI_2]
    for envelope in _world().applied:
        payload = envelope.payload
        if envelope.type == "org.register":
            labels += [f"{payload['org_id']}/admin-{n}" for n in range(1, 3)]
        elif envelope.type == "member.register":
            labels.append(payload["member_id"])
    return {signing_key_id(label): private_key(label) for label in labels}


@functools.cache
def _world_envelopes() -> list[dict[str, Any]]:
    return [envelope.to_json() for envelope in _world().applied]


@functools.cache
def _export() -> list[bytes]:
    """The world's events as a certified chain: genesis line, genesis block, three blocks."""
    events = _world().applied
    header = genesis_header(NET.genesis)
    blocks = [Block(header, (), None)]
    log = CompactRange()
    for number, chunk in enumerate((events[:10], events[10:20], events[20:]), start=1):
        blocks.append(NET.commit(header, log, list(chunk), f"2026-11-29T03:00:0{number}Z"))
        header = blocks[-1].header
    return list(export_lines(NET.genesis, blocks))


@functools.cache
def _notes() -> list[bytes]:
    checkpoint = Checkpoint(NET.genesis.origin, 7, bytes(range(32)))
    text = format_checkpoint(checkpoint)
    validators = NET.genesis.validators
    signatures = [
        sign_checkpoint(checkpoint, validator.name, key)
        for validator, key in zip(validators, NET.validator_keys, strict=True)
    ]
    with_extension = Checkpoint(NET.genesis.origin, 0, bytes(32), ("ext one", "ext two"))
    return [
        format_note(text, signatures),
        format_note(text, signatures[:1]),
        format_note(
            format_checkpoint(with_extension),
            [sign_checkpoint(with_extension, validators[0].name, NET.validator_keys[0])],
        ),
    ]


CAPTURABLE = frozenset({"lot.create", "lot.ship", "lot.receive", "lot.transform"})


@functools.cache
def _epcis_documents() -> list[bytes]:
    """A document that captures completely, and the public examples (refused somewhere deep)."""
    world = _world()
    committed = [
        CommittedLotEvent(envelope, index, "2026-11-29T03:00:01Z")
        for index, envelope in enumerate(world.applied)
        if envelope.type in CAPTURABLE
    ]
    document = export_document(committed, network=NETWORK, lots=world.memory, created=CAPTURED_AT)
    seeds = [json.dumps(document).encode()]
    examples = sorted((TESTDATA / "epcis" / "examples").glob("*.jsonld"))
    valid = sorted((TESTDATA / "epcis" / "openepcis" / "valid").glob("*.json*"))
    seeds += [path.read_bytes() for path in [*examples, *valid[:10]]]
    return seeds


def _json_seeds() -> list[bytes]:
    return [
        *(canonical(e) for e in _world_envelopes()[:5]),
        *_export()[:3],
        _epcis_documents()[0],
        b'{"a": [1, -2.5e-3, true, false, null, "\\u00e9\\ud83d\\ude00"], "b": {}}',
    ]


# --------------------------------------------------------------------------------------------
# Strategies

safe_text = st.text(st.characters(codec="utf-8"), max_size=12)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(allow_nan=False, allow_infinity=False),
    safe_text,
    st.sampled_from(
        [
            "",
            "0",
            "-1",
            "2026-11-29T03:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999Z",
            "0001-01-01T00:00:00+23:59",
            "9999-12-31T23:59:59-23:59",
            "9999-12-31",
            "00" * 32,
            "ab" * 64,
            "koperasi-karet/budi",
            "ni:///sha-256;" + "ab" * 32 + "?ver=CBV2.0",
            "urn:rantai:kalbar-coop:lot:X",
            "https://id.gs1.org/01/09521234543213/10/X",
        ]
    ),
    st.sampled_from([0, -1, 2**53 - 1, 2**53, -(2**53), 10**30, 1.5, 1e300, -0.0]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(safe_text, children, max_size=4)
    ),
    max_leaves=16,
)

INTERESTING_BYTES = [
    b'"',
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\\",
    b"\\u",
    b"\\ud800",
    b'\\udc00"',
    b"0",
    b"-",
    b"1e999",
    b".5",
    b"9007199254740993",
    b"1" * 5000,
    b"\x00",
    b"\x7f",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",  # a UTF-8-encoded surrogate
    "\u2014 ".encode(),
    b"\n",
    b"\n\n",
    b"\r",
    b" ",
    b"+",
    b"=",
    b"null",
    b"true",
    b'"a":1,',
    b"[" * 200,
]
insertions = st.one_of(st.sampled_from(INTERESTING_BYTES), st.binary(min_size=1, max_size=8))


def _mutate_bytes(data: bytes, draw: Callable[[st.SearchStrategy[Any]], Any]) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(out)))
        operation = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "splice"]))
        if operation == "flip" and out:
            bit = draw(st.integers(0, 8 * len(out) - 1))
            out[bit // 8] ^= 1 << (bit % 8)
        elif operation == "truncate":
            del out[at:]
        elif operation == "insert":
            out[at:at] = draw(insertions)
        elif operation == "delete":
            del out[at : at + draw(st.integers(1, 16))]
        else:  # repeat a slice of the input somewhere else
            start = draw(st.integers(0, len(out)))
            out[at:at] = out[start : start + draw(st.integers(1, 64))]
    return bytes(out)


@st.composite
def mutated_bytes(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a few byte-level mutations."""
    return _mutate_bytes(draw(st.sampled_from(seeds)), draw)


def _paths(value: Any) -> list[tuple[Any, Any]]:
    """Every ``(container, key)`` position inside a JSON value, the deepest first.

    Hypothesis favours the first choices of a list, and a leaf deep inside a valid document is
    where a mutation gets furthest into a parser.
    """
    found: list[tuple[Any, Any]] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            found.extend((item, key) for key in item)
            stack.extend(item.values())
        elif type(item) is list:
            found.extend((item, index) for index in range(len(item)))
            stack.extend(item)
    found.reverse()
    return found


def _mutate_tree(value: Any, draw: Callable[[st.SearchStrategy[Any]], Any]) -> Any:
    value = copy.deepcopy(value)
    for _ in range(draw(st.integers(1, 3))):
        positions = _paths(value)
        if not positions:
            return draw(json_values)
        container, key = draw(st.sampled_from(positions))
        operation = draw(st.sampled_from(["retype", "replace", "delete", "add", "repeat"]))
        if operation == "replace":
            container[key] = draw(json_values)
        elif operation == "delete":
            del container[key]
        elif operation == "add":
            if type(container) is dict:
                container[draw(st.one_of(safe_text, st.sampled_from(sorted(container))))] = draw(
                    json_values
                )
            else:
                container.insert(key, draw(json_values))
        elif operation == "repeat" and type(container) is list:
            container.insert(key, copy.deepcopy(container[key]))
        else:  # the same content as another JSON type
            old = container[key]
            container[key] = draw(
                st.sampled_from([str(old), [old], {"value": old}, None, 0, True, -1, ""])
            )
    return value


@st.composite
def mutated_trees(draw: st.DrawFn, seeds: list[Any]) -> Any:
    """A seed (a parsed JSON value) with a few structural mutations."""
    return _mutate_tree(draw(st.sampled_from(seeds)), draw)


@st.composite
def mutated_json_bytes(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A JSON seed mutated as a tree, serialised again, maybe also mutated as bytes."""
    tree = _mutate_tree(json.loads(draw(st.sampled_from(seeds))), draw)
    data = json.dumps(tree, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    return _mutate_bytes(data, draw) if draw(st.booleans()) else data


CI_EXAMPLES = 200
"""``max_examples`` of the ``ci`` profile (``tests/conftest.py``); counts below are relative."""


def _examples(count: int) -> settings:
    """``count`` examples under the ``ci`` profile, scaled to the active profile's size.

    ``dev`` (20) runs a tenth of them, ``default`` (100) half; a profile registered with, say,
    ``max_examples=20000`` runs a hundred times as many, for a long hunt.
    """
    return settings(
        max_examples=max(1, count * settings().max_examples // CI_EXAMPLES),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def _inputs(seeds: Callable[[], list[bytes]]) -> st.SearchStrategy[bytes]:
    """Random bytes, random JSON, and seeds mutated as bytes and as JSON trees."""
    return st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.deferred(lambda: mutated_bytes(seeds())),
        st.deferred(lambda: mutated_json_bytes(seeds())),
    )


def _outcome(
    allowed: type[LedgerError] | tuple[type[LedgerError], ...],
    function: Callable[..., _T],
    *args: Any,
    **kwargs: Any,
) -> _T | None:
    """``function(*args, **kwargs)``, or ``None`` when it raised an ``allowed`` error; anything
    else propagates and fails the test. The outcome is noted for
    ``--hypothesis-show-statistics``."""
    try:
        result = function(*args, **kwargs)
    except allowed as e:
        _note(f"refused: {type(e).__name__}")
        return None
    _note("accepted")
    return result


def _note(outcome: str) -> None:
    if currently_in_test_context():  # the plain tests share the helper
        event(outcome)


# --------------------------------------------------------------------------------------------
# JSON


@_examples(1000)
@given(_inputs(_json_seeds))
def test_parse_json_returns_or_raises_encoding_error(data: bytes) -> None:
    try:
        value, _ = parse_json_checking_floats(data)
    except EncodingError:
        return
    # What parses has canonical bytes, and they parse back to the same value.
    assert parse_json(canonical(value)) == value


any_text = st.one_of(
    st.text(max_size=200),
    # Lone surrogates: a str can hold them, UTF-8 cannot.
    st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=50),
    st.deferred(lambda: mutated_json_bytes(_json_seeds())).map(
        lambda b: b.decode("utf-8", "surrogateescape")
    ),
)


@_examples(400)
@given(any_text)
def test_text_parsers_take_any_text(text: str) -> None:
    _outcome(EncodingError, parse_json, text)
    _outcome((EncodingError, SignatureError), parse_envelope, text)
    _outcome(EncodingError, parse_genesis, text)
    _outcome(EncodingError, parse_block, text)
    _outcome(EncodingError, parse_checkpoint, text)
    _outcome(EncodingError, parse_verifier_key, text)


DEEP = 100_000


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(b"[" * DEEP + b"]" * DEEP, id="arrays"),
        pytest.param(b'{"a":' * DEEP + b"1" + b"}" * DEEP, id="objects"),
        pytest.param(b"[" * DEEP, id="arrays-unclosed"),
        pytest.param(b'[{"a":' * (DEEP // 2) + b"0" + b"}]" * (DEEP // 2), id="mixed"),
        pytest.param(b"[" * DEEP + b'"\\ud800"' + b"]" * DEEP, id="arrays-lone-surrogate"),
    ],
)
def test_deep_nesting_is_an_encoding_error(document: bytes) -> None:
    with pytest.raises(EncodingError):
        parse_json(document)
    with pytest.raises(EncodingError):
        parse_envelope(document)
    with pytest.raises(EncodingError):
        parse_genesis(document)
    with pytest.raises(EncodingError):
        parse_block(document)
    with pytest.raises(EncodingError):
        capture_bodies(document, network=NETWORK, created_at=CAPTURED_AT)
    report = check_export([_export()[0], document + b"\n"])
    assert isinstance(report.error, ChainError)


@pytest.mark.parametrize("depth", [900, 950, 980, 990, 995, 999, 1000, 1100])
def test_nesting_near_the_recursion_limit(depth: int) -> None:
    for document in (
        b"[" * depth + b"]" * depth,
        b"[" * depth + b'"\\ud800"' + b"]" * depth,
        b'{"body":' + b"[" * depth + b"]" * depth + b',"sigs":[]}',
    ):
        value = _outcome(EncodingError, parse_json, document)
        if value is not None:
            _outcome(EncodingError, canonical, value)
        with pytest.raises(EncodingError):
            parse_envelope(document)


def _deep_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def test_deeply_nested_values_are_encoding_errors() -> None:
    deep = _deep_list(DEEP)
    with pytest.raises(EncodingError):
        canonical(deep)
    envelope = copy.deepcopy(_world_envelopes()[0])
    envelope["body"]["payload"]["deep"] = deep
    with pytest.raises(EncodingError):
        parse_envelope(envelope)
    document = json.loads(_epcis_documents()[0])
    document["epcisBody"]["eventList"][0]["deep"] = deep
    with pytest.raises(EncodingError):
        capture_bodies(document, network=NETWORK, created_at=CAPTURED_AT)


# --------------------------------------------------------------------------------------------
# Envelopes


def _envelope_seeds() -> list[bytes]:
    return [canonical(e) for e in _world_envelopes()]


@_examples(600)
@given(_inputs(_envelope_seeds))
def test_parse_envelope_bytes(data: bytes) -> None:
    try:
        envelope = parse_envelope(data)
    except (EncodingError, SignatureError):
        return
    assert parse_envelope(envelope.leaf).event_id == envelope.event_id


@_examples(600)
@given(st.one_of(json_values, st.deferred(lambda: mutated_trees(_world_envelopes()))))
def test_parse_envelope_values(value: Any) -> None:
    _outcome((EncodingError, SignatureError), parse_envelope, value)


# --------------------------------------------------------------------------------------------
# Signed notes and checkpoints


@_examples(500)
@given(st.one_of(st.binary(max_size=300), st.deferred(lambda: mutated_bytes(_notes()))))
def test_parse_note_and_verify_checkpoint(data: bytes) -> None:
    verifiers = NET.genesis.note_verifiers
    note = _outcome(EncodingError, parse_note, data)
    if note is not None:
        check_note(note, verifiers, NET.genesis.quorum)  # reports, never raises
        _outcome(EncodingError, parse_checkpoint, note.text)
    checkpoint = _outcome(
        (EncodingError, SignatureError), verify_checkpoint, data, NET.genesis.origin, verifiers, 1
    )
    if checkpoint is not None:  # only a note some validator really signed gets this far
        assert data in _notes() or parse_note(data).text in {parse_note(n).text for n in _notes()}


def _checkpoint_texts() -> list[bytes]:
    return [parse_note(n).text.encode() for n in _notes()]


@_examples(400)
@given(
    st.one_of(
        st.text(max_size=200),
        st.deferred(lambda: mutated_bytes(_checkpoint_texts())).map(
            lambda b: b.decode("utf-8", "replace")
        ),
    )
)
def test_parse_checkpoint(text: str) -> None:
    try:
        checkpoint = parse_checkpoint(text)
    except EncodingError:
        return
    assert format_checkpoint(checkpoint) == text


def _verifier_keys() -> list[bytes]:
    return [format_verifier_key(v.name, v.public_key).encode() for v in NET.genesis.validators[:2]]


@_examples(300)
@given(
    st.one_of(
        st.text(max_size=120),
        st.deferred(lambda: mutated_bytes(_verifier_keys())).map(
            lambda b: b.decode("utf-8", "replace")
        ),
    )
)
def test_parse_verifier_key(text: str) -> None:
    try:
        verifier = parse_verifier_key(text)
    except EncodingError:
        return
    assert verifier.vkey == text


# --------------------------------------------------------------------------------------------
# Genesis documents, blocks, exports


def _genesis_seeds() -> list[bytes]:
    return [_export()[0]]


def _block_seeds() -> list[bytes]:
    return _export()[1:]


@_examples(400)
@given(_inputs(_genesis_seeds))
def test_parse_genesis(data: bytes) -> None:
    _outcome(EncodingError, parse_genesis, data)


@_examples(400)
@given(st.one_of(json_values, st.deferred(lambda: mutated_trees([NET.genesis.document]))))
def test_parse_genesis_values(value: Any) -> None:
    _outcome(EncodingError, parse_genesis, value)


@_examples(600)
@given(_inputs(_block_seeds))
def test_parse_block(data: bytes) -> None:
    try:
        block = parse_block(data)
    except EncodingError:
        return
    assert parse_block(canonical(block.to_json())) == block


def _block_values() -> list[Any]:
    return [json.loads(line) for line in _export()[1:]]


@_examples(500)
@given(st.one_of(json_values, st.deferred(lambda: mutated_trees(_block_values()))))
def test_parse_block_header_and_certificate_values(value: Any) -> None:
    for parse in (parse_block, parse_header, parse_certificate):
        _outcome(EncodingError, parse, value)
        if type(value) is dict:
            for part in ("header", "commit"):
                _outcome(EncodingError, parse, value.get(part))


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def _resigned_event_mutant(line: bytes, draw: Callable[[st.SearchStrategy[Any]], Any]) -> bytes:
    """The block line with one event's body mutated and signed again by the same keys.

    The signatures then verify, so the rules themselves meet the mutant (the block's Merkle root
    no longer matches, but that is checked after its events).
    """
    block = json.loads(line)
    events = block.get("events") if type(block) is dict else None
    if type(events) is not list or not events or type(events[-1]) is not dict:
        return line
    position = len(events) - 1 - draw(st.integers(0, len(events) - 1))
    envelope = events[position]
    if type(envelope) is not dict or type(envelope.get("body")) is not dict:
        return line
    body = _mutate_tree(envelope["body"], draw)
    keys = _signing_keys()
    old_sigs = envelope.get("sigs")
    signers = [
        s["key"]
        for s in (old_sigs if type(old_sigs) is list else [])
        if type(s) is dict and s.get("key") in keys
    ]
    try:
        signed = canonical(body)
    except EncodingError:
        signed = None
    if signed is not None and signers:
        sigs = [{"key": k, "sig": sign(keys[k], EVENT_PREFIX, signed).hex()} for k in signers]
        events[position] = {"body": body, "sigs": sigs}
    else:
        events[position] = {"body": body, "sigs": old_sigs}
    return json.dumps(block).encode() + b"\n"


@st.composite
def mutated_exports(draw: st.DrawFn) -> list[bytes]:
    lines = list(_export())
    for _ in range(draw(st.integers(1, 3))):
        # Mostly a block line (the last ones hold the most events), now and then the genesis.
        at = len(lines) - 1 - draw(st.integers(0, len(lines) - 1))
        operation = draw(
            st.sampled_from(
                ["event", "tree", "bytes", "drop", "repeat", "swap", "newline", "insert"]
            )
        )
        if operation == "event" and _parses(lines[at]):
            lines[at] = _resigned_event_mutant(lines[at], draw)
        elif operation == "bytes":
            lines[at] = _mutate_bytes(lines[at], draw)
        elif operation == "tree" and _parses(lines[at]):
            lines[at] = draw(mutated_json_bytes([lines[at]])) + b"\n"
        elif operation == "drop" and len(lines) > 1:
            del lines[at]
        elif operation == "repeat":
            lines.insert(at, lines[at])
        elif operation == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif operation == "newline":
            lines[at] = lines[at].rstrip(b"\n")
        else:
            lines.insert(at, json.dumps(draw(json_values)).encode() + b"\n")
    return lines


@_examples(600)
@given(mutated_exports(), st.booleans(), st.booleans())
def test_check_export_reports_and_never_raises(
    lines: list[bytes], rules: bool, trusted: bool
) -> None:
    genesis = NET.genesis if trusted else None
    report = check_export(lines, genesis=genesis, rules=rules)
    assert isinstance(report, ChainReport)
    assert report.error is None or isinstance(report.error, ChainError)
    if lines == _export():
        assert report.ok


def test_the_unmutated_export_verifies() -> None:
    report = check_export(_export())
    assert report.ok, report.error
    assert report.summary is not None
    assert report.summary.height == 3
    assert report.summary.tree_size == len(_world().applied)
    assert _world().genesis.digest == NET.genesis.digest


times = st.datetimes(
    min_value=_dt.datetime(1, 1, 1), max_value=_dt.datetime(9999, 12, 31, 23, 59, 59)
).map(lambda moment: format_time(moment.replace(microsecond=0, tzinfo=_dt.UTC)))
"""RFC 3339 UTC times from year 1 to the last second of year 9999 (edges included)."""


@_examples(150)
@given(times, st.integers(1, 3))
def test_check_export_at_any_block_time(time: str, height: int) -> None:
    """Times are parsed before a block's votes are checked: no time may crash the verifier."""
    lines = list(_export())
    block = json.loads(lines[height + 1])
    assume(block["header"]["time"] != time)
    block["header"]["time"] = time
    lines[height + 1] = json.dumps(block).encode() + b"\n"
    for rules in (True, False):
        report = check_export(lines, rules=rules)
        assert isinstance(report.error, ChainError)


@pytest.mark.parametrize("time", ["9999-12-31T23:55:00Z", "9999-12-31T23:59:59.999Z"])
def test_a_block_time_at_the_end_of_year_9999_is_a_chain_error(time: str) -> None:
    # Found by this file: block_time + 5 minutes raised OverflowError out of check_export.
    lines = list(_export())
    block = json.loads(lines[2])
    block["header"]["time"] = time
    lines[2] = json.dumps(block).encode() + b"\n"
    report = check_export(lines)
    assert report.error is not None
    assert report.error.height == 1


# --------------------------------------------------------------------------------------------
# EPCIS capture


def test_the_epcis_seed_captures_completely() -> None:
    captured = capture_bodies(_epcis_documents()[0], network=NETWORK, created_at=CAPTURED_AT)
    assert [c.type for c in captured] == [
        envelope.type for envelope in _world().applied if envelope.type in CAPTURABLE
    ]
    assert len(captured) == 7


@_examples(400)
@given(_inputs(_epcis_documents))
def test_capture_bodies_bytes(data: bytes) -> None:
    _outcome(EncodingError, capture_bodies, data, network=NETWORK, created_at=CAPTURED_AT)


@_examples(60)
@given(times)
def test_capture_bodies_at_any_capture_time(created_at: str) -> None:
    _outcome(
        EncodingError, capture_bodies, _epcis_documents()[0], network=NETWORK, created_at=created_at
    )


@pytest.mark.parametrize(
    ("created_at", "event_time"),
    [
        ("9999-12-31T23:59:59Z", "2026-11-20T03:00:00Z"),
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59-23:59"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00+23:59"),
        ("2026-11-29T06:00:00Z", "9999-12-31T23:59:59.999999-23:59"),
    ],
)
def test_capture_at_the_edges_of_time(created_at: str, event_time: str) -> None:
    # Found by this file: capture_time + 5 minutes raised OverflowError near the end of 9999.
    document = json.loads(_epcis_documents()[0])
    document["epcisBody"]["eventList"][0]["eventTime"] = event_time
    _outcome(EncodingError, capture_bodies, document, network=NETWORK, created_at=created_at)


def _epcis_values() -> list[Any]:
    return [json.loads(d) for d in _epcis_documents()]


@_examples(400)
@given(
    st.one_of(
        st.deferred(lambda: mutated_trees(_epcis_values()[:1])),
        st.deferred(lambda: mutated_trees(_epcis_values())),
        json_values,
    )
)
def test_capture_bodies_values(value: Any) -> None:
    _outcome(EncodingError, capture_bodies, value, network=NETWORK, created_at=CAPTURED_AT)


def test_seed_files_exist() -> None:
    paths: list[Path] = sorted((TESTDATA / "epcis" / "examples").glob("*.jsonld"))
    assert len(paths) > 5
    assert len(_epcis_documents()) > 5
