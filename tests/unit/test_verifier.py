"""The chain verifier names the first fault exactly: height, log index, event id and reason.

A chain of a few hundred certified blocks is built once; each test corrupts one kind of thing
and checks the report. Faults inside validly *certified* blocks (a Byzantine quorum, or a
buggy node) are built by certifying crafted blocks with the sample network's validator keys.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest

from ledger.blocks import Block, CommitCertificate, export_lines, genesis_header, sign_vote
from ledger.encoding import canonical
from ledger.errors import ChainError, EncodingError, SignatureError
from ledger.events import Envelope, sign_event
from ledger.keyring import KeyRing, announced_keys
from ledger.keys import SMALL_ORDER_ENCODINGS, key_id, public_key_bytes
from ledger.merkle import CompactRange
from ledger.verifier import ChainVerifier, check_export, verify_export
from rantai.samplechain import SampleNetwork, sample_network

BLOCKS = 300
EVENTS_PER_BLOCK = 3
FAULT_HEIGHT = 150


@pytest.fixture(scope="module")
def net() -> SampleNetwork:
    return sample_network(4)


@pytest.fixture(scope="module")
def lines(net: SampleNetwork) -> list[bytes]:
    return list(export_lines(net.genesis, net.chain(BLOCKS, EVENTS_PER_BLOCK)))


def _block(lines: list[bytes], height: int) -> dict:  # type: ignore[type-arg]
    return json.loads(lines[height + 1])


def _with_block(lines: list[bytes], height: int, block: dict) -> list[bytes]:  # type: ignore[type-arg]
    changed = list(lines)
    changed[height + 1] = canonical(block) + b"\n"
    return changed


def _first_index(height: int) -> int:
    """Log index of the first event of ``height`` in the sample chain (block 1 has 3 too)."""
    return (height - 1) * EVENTS_PER_BLOCK


def _report(lines: list[bytes], **kwargs: object) -> ChainError:
    """The fault ``check_export`` reports (with the supply-chain rules unless told otherwise)."""
    report = check_export(lines, **kwargs)  # type: ignore[arg-type]
    assert report.error is not None, "the corruption was not detected"
    return report.error


def test_intact_chain_verifies(net: SampleNetwork, lines: list[bytes]) -> None:
    summary = verify_export(lines, genesis=net.genesis)
    assert summary.height == BLOCKS
    assert summary.tree_size == BLOCKS * EVENTS_PER_BLOCK
    assert summary.blocks == BLOCKS + 1
    assert summary.tree_root == _block(lines, BLOCKS)["header"]["tree_root"]


def test_intact_chain_verifies_in_a_process_pool(lines: list[bytes]) -> None:
    with ProcessPoolExecutor(2) as pool:
        summary = verify_export(lines, executor=pool)
    assert summary.tree_size == BLOCKS * EVENTS_PER_BLOCK


# --- corruptions of the bytes of an export ------------------------------------------------


def test_changed_event_payload_is_a_signature_fault(lines: list[bytes]) -> None:
    block = _block(lines, FAULT_HEIGHT)
    block["events"][1]["body"]["payload"]["quantity"] = "999.5"
    changed_id = hashlib.sha256(canonical(block["events"][1]["body"])).hexdigest()
    error = _report(_with_block(lines, FAULT_HEIGHT, block))
    assert (error.height, error.index, error.event_id) == (
        FAULT_HEIGHT,
        _first_index(FAULT_HEIGHT) + 1,
        changed_id,
    )
    assert "does not verify" in error.reason


def test_flipped_byte_inside_an_event(lines: list[bytes]) -> None:
    line = lines[FAULT_HEIGHT + 1]
    position = line.index(b'"nonce":"') + len(b'"nonce":"')
    corrupted = line[:position] + bytes([line[position] ^ 0x01]) + line[position + 1 :]
    changed = list(lines)
    changed[FAULT_HEIGHT + 1] = corrupted
    error = _report(changed)
    assert error.height == FAULT_HEIGHT
    assert error.index == _first_index(FAULT_HEIGHT)
    assert "does not verify" in error.reason


def test_bad_event_signature(lines: list[bytes]) -> None:
    block = _block(lines, FAULT_HEIGHT)
    sig = block["events"][2]["sigs"][0]["sig"]
    block["events"][2]["sigs"][0]["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    event_id = hashlib.sha256(canonical(block["events"][2]["body"])).hexdigest()
    error = _report(_with_block(lines, FAULT_HEIGHT, block))
    assert (error.height, error.index, error.event_id) == (
        FAULT_HEIGHT,
        _first_index(FAULT_HEIGHT) + 2,
        event_id,
    )
    assert "signature by key" in error.reason


def test_malformed_event_names_its_index(lines: list[bytes]) -> None:
    block = _block(lines, FAULT_HEIGHT)
    block["events"][1]["body"]["surprise"] = 1
    error = _report(_with_block(lines, FAULT_HEIGHT, block))
    assert (error.height, error.index) == (FAULT_HEIGHT, _first_index(FAULT_HEIGHT) + 1)
    assert "unknown field surprise" in error.reason


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("time", "2026-11-29T03:02:31.001Z"),
        ("tree_root", "ab" * 32),
        ("tree_size", 1),
        ("proposer", "cd" * 32),
        ("network", "other-net"),
        ("event_count", 2),
        ("prev", "ef" * 32),
    ],
    ids=lambda v: str(v)[:12],
)
def test_changed_header_field(lines: list[bytes], field: str, value: object) -> None:
    block = _block(lines, FAULT_HEIGHT)
    block["header"][field] = value
    error = _report(_with_block(lines, FAULT_HEIGHT, block))
    assert error.height == FAULT_HEIGHT
    assert error.index is None


def test_changed_height_is_reported_where_expected(lines: list[bytes]) -> None:
    block = _block(lines, FAULT_HEIGHT)
    block["header"]["height"] = FAULT_HEIGHT + 7
    error = _report(_with_block(lines, FAULT_HEIGHT, block))
    assert error.height == FAULT_HEIGHT
    assert f"expected height {FAULT_HEIGHT}" in error.reason


def test_bad_certificate_vote(lines: list[bytes]) -> None:
    block = _block(lines, FAULT_HEIGHT)
    vote = block["commit"]["sigs"][1]
    vote["sig"] = ("0" if vote["sig"][0] != "0" else "1") + vote["sig"][1:]
    error = _report(_with_block(lines, FAULT_HEIGHT, block))
    assert error.height == FAULT_HEIGHT
    assert f"commit vote by {vote['node']} does not verify" in error.reason


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda commit: commit["sigs"].pop(), "a quorum is 3 of 4"),
        (lambda commit: commit["sigs"].append(dict(commit["sigs"][0])), "voted twice"),
        (lambda commit: commit["sigs"][0].update(node="aa" * 32), "not a validator"),
        (lambda commit: commit.update(round=1), "does not verify"),
        (lambda commit: commit.update(sigs=[]), "a quorum is 3 of 4"),
    ],
    ids=["too-few-votes", "duplicate-vote", "non-validator", "wrong-round", "no-votes"],
)
def test_certificate_faults(
    lines: list[bytes],
    mutate: Callable[[dict], object],
    expected: str,  # type: ignore[type-arg]
) -> None:
    block = _block(lines, FAULT_HEIGHT)
    mutate(block["commit"])
    error = _report(_with_block(lines, FAULT_HEIGHT, block))
    assert error.height == FAULT_HEIGHT
    assert expected in error.reason


def test_missing_certificate(lines: list[bytes]) -> None:
    block = _block(lines, FAULT_HEIGHT)
    block["commit"] = None
    error = _report(_with_block(lines, FAULT_HEIGHT, block))
    assert error.height == FAULT_HEIGHT
    assert "no commit certificate" in error.reason


def test_missing_block(lines: list[bytes]) -> None:
    changed = lines[: FAULT_HEIGHT + 1] + lines[FAULT_HEIGHT + 2 :]
    error = _report(changed)
    assert error.height == FAULT_HEIGHT
    assert f"expected height {FAULT_HEIGHT}, found height {FAULT_HEIGHT + 1}" in error.reason


def test_reordered_blocks(lines: list[bytes]) -> None:
    changed = list(lines)
    changed[FAULT_HEIGHT + 1], changed[FAULT_HEIGHT + 2] = (
        changed[FAULT_HEIGHT + 2],
        changed[FAULT_HEIGHT + 1],
    )
    error = _report(changed)
    assert error.height == FAULT_HEIGHT
    assert "expected height" in error.reason


def test_duplicated_block(lines: list[bytes]) -> None:
    changed = lines[: FAULT_HEIGHT + 2] + lines[FAULT_HEIGHT + 1 :]
    error = _report(changed)
    assert error.height == FAULT_HEIGHT + 1


def test_truncated_in_the_middle_of_a_line(lines: list[bytes]) -> None:
    last = lines[FAULT_HEIGHT + 1]
    changed = [*lines[: FAULT_HEIGHT + 1], last[: len(last) // 2]]
    report = check_export(changed)
    assert report.error is not None
    assert report.error.height == FAULT_HEIGHT
    assert "truncated" in report.error.reason
    assert report.summary is not None
    assert report.summary.height == FAULT_HEIGHT - 1


def test_truncated_final_newline(lines: list[bytes]) -> None:
    changed = [*lines[:-1], lines[-1].rstrip(b"\n")]
    error = _report(changed)
    assert error.height == BLOCKS
    assert "truncated" in error.reason


def test_empty_export_and_bad_genesis_line(net: SampleNetwork, lines: list[bytes]) -> None:
    assert "empty" in _report([]).reason
    assert "line 1" in _report([b'{"v": 1}\n', *lines[1:]]).reason


def test_other_genesis_is_refused(lines: list[bytes]) -> None:
    other = sample_network(4, seed=b"another network")
    error = _report(lines, genesis=other.genesis)
    assert "not the trusted one" in error.reason


def test_changed_genesis_block(lines: list[bytes]) -> None:
    block = _block(lines, 0)
    block["header"]["time"] = "2026-11-29T03:00:01Z"
    error = _report(_with_block(lines, 0, block))
    assert error.height == 0
    assert "genesis block header" in error.reason


def test_first_fault_wins_over_a_later_one(lines: list[bytes]) -> None:
    early = _block(lines, 20)
    early["events"][0]["sigs"][0]["sig"] = "00" * 64
    late = _block(lines, 200)
    late["header"]["height"] = 999
    changed = _with_block(_with_block(lines, 20, early), 200, late)
    with ProcessPoolExecutor(2) as pool:
        error = _report(changed, executor=pool)
    assert (error.height, error.index) == (20, _first_index(20))


def test_same_report_with_and_without_a_pool(lines: list[bytes]) -> None:
    block = _block(lines, 250)
    block["events"][2]["sigs"][0]["sig"] = "11" * 64
    changed = _with_block(lines, 250, block)
    inline = _report(changed)
    with ProcessPoolExecutor(2) as pool:
        pooled = _report(changed, executor=pool)
    assert str(inline) == str(pooled)


# --- faults inside certified blocks -------------------------------------------------------


def _certified_chain(
    net: SampleNetwork, crafted: Callable[[str], list[Envelope]], *, good_blocks: int = 5
) -> Iterator[Block]:
    """``good_blocks`` normal blocks, then one certified block holding ``crafted(time)``."""
    blocks = list(net.chain(good_blocks, 2))
    yield from blocks
    log = CompactRange()
    for block in blocks[1:]:
        for envelope in block.events:
            log.append(hashlib.sha256(b"\x00" + envelope.leaf).digest())
    previous = blocks[-1].header
    time = "2026-11-29T03:10:00Z"
    yield net.commit(previous, log, crafted(time), time)


def _event(net: SampleNetwork, signer_label: str, time: str, **body: object) -> Envelope:
    payload = {
        "lot_id": "LOT-X",
        "commodity": "coffee",
        "quantity": "1",
        "uom": "kg",
        "producer": "koperasi-kopi/siti",
        "harvested_on": "2026-11-20",
    }
    envelope = net.event("lot.create", payload, [net.key(signer_label)], "crafted", time)
    if not body:
        return envelope
    return sign_event({**envelope.body, **body}, [net.key(signer_label)])


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda net, t: [_event(net, "stranger", t)], "auth.unknown-key"),
        (lambda net, t: [_event(net, "producer", t, network="other-net")], "network"),
        (
            lambda net, t: [_event(net, "producer", t, created_at="2026-11-29T03:15:01Z")],
            "5 minutes",
        ),
    ],
    ids=["unknown-signer", "wrong-network", "created-in-the-future"],
)
@pytest.mark.parametrize("rules", [True, False], ids=["rules", "signatures-only"])
def test_certified_block_with_a_bad_event(
    net: SampleNetwork,
    make: Callable[[SampleNetwork, str], list[Envelope]],
    expected: str,
    rules: bool,
) -> None:
    chain = list(_certified_chain(net, lambda t: make(net, t)))
    error = _report(list(export_lines(net.genesis, chain)), rules=rules)
    if not rules:
        expected = expected.replace("auth.unknown-key", "unknown key")
    bad = chain[-1].events[0]
    assert (error.height, error.index, error.event_id) == (6, 10, bad.event_id)
    assert expected in error.reason


@pytest.mark.parametrize(
    ("rules", "expected"),
    [(True, "auth.revoked-key"), (False, "revoked key")],
    ids=["rules", "signatures-only"],
)
def test_revoked_key_signs_nothing_after_its_revocation(
    net: SampleNetwork, rules: bool, expected: str
) -> None:
    producer_id = key_id(public_key_bytes(net.key("producer")))

    def crafted(time: str) -> list[Envelope]:
        revoke = net.event(
            "key.revoke",
            {"member_id": "koperasi-kopi/siti", "key": producer_id},
            [net.key("admin")],
            "revoke",
            time,
        )
        return [_event(net, "producer", time), revoke, _event(net, "producer", time)]

    chain = list(_certified_chain(net, crafted))
    chain[-1] = _recertify_with_distinct_nonce(net, chain)
    error = _report(list(export_lines(net.genesis, chain)), rules=rules)
    assert (error.height, error.index) == (6, 12)
    assert expected in error.reason


def _recertify_with_distinct_nonce(net: SampleNetwork, chain: list[Block]) -> Block:
    """The last block again, its third event given another nonce (a distinct event)."""
    first, revoke, third = chain[-1].events
    third = _event(net, "producer", third.body["created_at"], nonce="crafted-2")
    log = CompactRange()
    for block in chain[1:-1]:
        for envelope in block.events:
            log.append(hashlib.sha256(b"\x00" + envelope.leaf).digest())
    return net.commit(chain[-2].header, log, [first, revoke, third], chain[-1].header.time)


def test_certified_block_with_a_wrong_root(net: SampleNetwork) -> None:
    chain = list(net.chain(3, 2))
    bad = chain[2]
    header = dataclasses.replace(bad.header, tree_root="00" * 32)
    votes = tuple(
        sign_vote(k, net.network, 2, 0, "precommit", header.block_hash)
        for k in net.validator_keys[:3]
    )
    chain[2] = Block(header, bad.events, CommitCertificate(0, votes))
    error = _report(list(export_lines(net.genesis, chain[:3])))
    assert error.height == 2
    assert "tree_root" in error.reason


def test_block_time_never_goes_back(net: SampleNetwork) -> None:
    chain = list(net.chain(2, 1))
    later = chain[2]
    earlier_time = "2026-11-29T02:00:00Z"
    log = CompactRange()
    for envelope in chain[1].events:
        log.append(hashlib.sha256(b"\x00" + envelope.leaf).digest())
    chain[2] = net.commit(chain[1].header, log, list(later.events), earlier_time)
    error = _report(list(export_lines(net.genesis, chain)))
    assert error.height == 2
    assert "before block 1" in error.reason


def test_verifier_memory_is_bounded_by_the_window(net: SampleNetwork) -> None:
    verifier = ChainVerifier(net.genesis, batch_size=4, max_pending=2)
    for block in net.chain(40, 3):
        verifier.add_block(block)
        assert len(verifier._pending) <= 2
        assert len(verifier._jobs) < 4
    assert verifier.finish().tree_size == 120


def test_genesis_header_is_fixed_by_the_document(net: SampleNetwork) -> None:
    header = genesis_header(net.genesis)
    assert header.prev == "0" * 64
    assert header.genesis == net.genesis.digest
    assert header.tree_root == hashlib.sha256(b"").hexdigest()
    assert header.time == net.genesis.created_at
    assert _dt.datetime.fromisoformat(header.time).tzinfo is not None


def test_an_earlier_bad_signature_wins_over_a_later_malformed_event(lines: list[bytes]) -> None:
    block = _block(lines, FAULT_HEIGHT)
    block["events"][0]["sigs"][0]["sig"] = "22" * 64
    block["events"][1]["body"]["nonce"] = ""
    error = _report(_with_block(lines, FAULT_HEIGHT, block))
    assert (error.height, error.index) == (FAULT_HEIGHT, _first_index(FAULT_HEIGHT))
    assert "does not verify" in error.reason


@pytest.mark.parametrize("rules", [True, False], ids=["rules", "signatures-only"])
def test_an_event_twice_in_one_block(net: SampleNetwork, rules: bool) -> None:
    chain = list(_certified_chain(net, lambda t: [_event(net, "producer", t)] * 2))
    error = _report(list(export_lines(net.genesis, chain)), rules=rules)
    assert (error.height, error.index) == (6, 11)
    assert "twice in the block" in error.reason


def test_an_event_repeated_in_a_later_block_breaks_the_rules(net: SampleNetwork) -> None:
    chain = list(net.chain(3, 2))
    repeated = chain[2].events[0]
    log = CompactRange()
    for block in chain[1:]:
        for envelope in block.events:
            log.append(hashlib.sha256(b"\x00" + envelope.leaf).digest())
    chain.append(net.commit(chain[-1].header, log, [repeated], "2026-11-29T03:10:00Z"))
    error = _report(list(export_lines(net.genesis, chain)))
    assert (error.height, error.index, error.event_id) == (4, 6, repeated.event_id)
    assert "event.duplicate" in error.reason


def test_a_member_key_cannot_register_an_organisation(net: SampleNetwork) -> None:
    def crafted(time: str) -> list[Envelope]:
        payload = {
            "org_id": "rogue",
            "name": "Rogue",
            "kind": "auditor",
            "admins": [public_key_bytes(net.key("rogue")).hex()],
        }
        return [net.event("org.register", payload, [net.key("producer")], "rogue", time)]

    chain = list(_certified_chain(net, crafted))
    error = _report(list(export_lines(net.genesis, chain)))
    assert (error.height, error.index) == (6, 10)
    assert "auth.unauthorised" in error.reason
    assert check_export(list(export_lines(net.genesis, chain)), rules=False).ok


def test_a_falsy_authority_is_still_used(net: SampleNetwork) -> None:
    class DenyAll:
        def __len__(self) -> int:
            return 0

        def signer_keys(self, envelope: Envelope) -> list[bytes]:
            raise ChainError("denied")

        def apply(self, envelope: Envelope, index: int, block_time: _dt.datetime) -> None:
            raise AssertionError("never reached")

    verifier = ChainVerifier(net.genesis, authority=DenyAll())
    blocks = list(net.chain(1, 2))
    verifier.add_block(blocks[0])
    with pytest.raises(ChainError, match="denied"):
        verifier.add_block(blocks[1])


TIME = "2026-11-29T03:00:00Z"


@pytest.mark.parametrize("encoding", sorted(SMALL_ORDER_ENCODINGS)[:3])
def test_the_keyring_refuses_keys_the_policy_refuses(net: SampleNetwork, encoding: bytes) -> None:
    """The ``--no-rules`` verifier's keyring registers keys under the same Ed25519 policy as
    the rules: an export that registers a small-order key fails either way."""
    ring = KeyRing(net.genesis.governance_admins)
    payload = {"org_id": "coop", "name": "Coop", "kind": "cooperative", "admins": [encoding.hex()]}
    event = net.event("org.register", payload, [net.governance_key], "n", TIME)
    moment = _dt.datetime(2026, 11, 29, 3, tzinfo=_dt.UTC)
    with pytest.raises(EncodingError, match=r"payload.admins\[0\] is not an acceptable Ed25519"):
        ring.apply(event, 0, moment)
    with pytest.raises(SignatureError, match="unknown key"):
        ring.signer_keys(net.event("org.register", payload, [net.key("x")], "m", TIME))


def test_announced_keys_are_the_keys_an_event_registers_unchecked(net: SampleNetwork) -> None:
    """What a catching-up node may check signatures with before it applies the registration:
    each key under its id, malformed entries left out, and no key policy (the rules apply it)."""
    good = [public_key_bytes(net.key(f"k{i}")) for i in range(3)]
    small_order = min(SMALL_ORDER_ENCODINGS)
    org = {"org_id": "coop", "name": "Coop", "kind": "cooperative"}
    cases = [
        ("org.register", org | {"admins": [good[0].hex(), "zz" * 32, 7]}, [good[0]]),
        (
            "member.register",
            {"public_keys": [good[1].hex(), small_order.hex()]},
            [good[1], small_order],
        ),
        ("key.add", {"public_key": good[2].hex()}, [good[2]]),
        ("key.add", {"public_key": good[2].hex()[:-2]}, []),
        ("org.register", org | {"admins": good[0].hex()}, []),  # not a list
        ("lot.create", {"admins": [good[0].hex()]}, []),
    ]
    for position, (kind, payload, keys) in enumerate(cases):
        event = net.event(kind, payload, [net.governance_key], f"a{position}", TIME)
        assert announced_keys(event) == {key_id(k): k for k in keys}, kind
