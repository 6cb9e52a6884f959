"""A block's export line, built from its events' leaves, is the block's JCS form."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.blocks import Block, BlockHeader, CommitCertificate, VoteSignature
from ledger.encoding import canonical_reference
from ledger.events import Envelope, sign_event
from tests.property.test_encoding_props import float_free_scalars, json_values, keys, texts

KEYS = [Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32) for n in range(1, 4)]
HEX = st.text("0123456789abcdef", min_size=64, max_size=64)

# Payloads as DESIGN.md §2 allows them in signed data: any JSON without fractions, and
# GeoJSON coordinates (floats) under ``geometry``.
coordinates = st.lists(
    st.lists(
        st.floats(min_value=-180, max_value=180).map(lambda x: round(x, 7)), min_size=2, max_size=2
    ),
    max_size=4,
)
payloads = st.one_of(
    st.dictionaries(keys, json_values(float_free_scalars), max_size=5),
    coordinates.map(lambda c: {"geometry": {"type": "LineString", "coordinates": c}}),
)


@st.composite
def envelopes(draw: st.DrawFn) -> Envelope:
    body = {
        "v": 1,
        "network": draw(st.text(min_size=1, max_size=8)),
        "type": draw(st.sampled_from(["lot.create", "lot.split", "shipment.send"])),
        "nonce": draw(st.text(min_size=1, max_size=16)),
        "created_at": "2026-11-29T03:00:00Z",
        "payload": draw(payloads),
    }
    signers = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique_by=id))
    return sign_event(body, signers)


@st.composite
def blocks(draw: st.DrawFn) -> Block:
    events = tuple(draw(st.lists(envelopes(), max_size=4)))
    header = BlockHeader(
        network=draw(texts.filter(bool)),
        height=draw(st.integers(1, 2**53 - 1)),
        prev=draw(HEX),
        time="2026-11-29T03:00:00Z",
        proposer=draw(HEX),
        event_count=len(events),
        tree_size=draw(st.integers(0, 2**53 - 1)),
        tree_root=draw(HEX),
    )
    commit = draw(
        st.none()
        | st.builds(
            CommitCertificate,
            st.integers(0, 100),
            st.lists(
                st.builds(VoteSignature, HEX, st.binary(min_size=64, max_size=64)), max_size=4
            ).map(tuple),
        )
    )
    return Block(header, events, commit)


@settings(max_examples=300)
@given(blocks())
def test_a_blocks_canonical_bytes_are_its_jcs_form(block: Block) -> None:
    value: Any = block.to_json()
    assert block.canonical_bytes == canonical_reference(value)
