"""Genesis document, block headers, block hashes, votes and commit certificates (DESIGN.md §4).

A block header is hashed with JCS: ``block_hash = sha256(JCS(header))``. The genesis block
(height 0) names the genesis document by its hash and has no certificate; every later block
carries the precommit signatures of more than two thirds of the genesis validators.

This module parses, builds and checks these values. It does not decide *which* block should be
committed (that is consensus, in ``node``), and it does not check the events inside a block
(see ``events`` and the chain verifier).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.checkpoint import NoteVerifier, check_key_name
from ledger.encoding import (
    MAX_SAFE_INTEGER,
    canonical,
    parse_hex,
    parse_json,
    parse_json_checking_floats,
    parse_time,
    require_fields,
)
from ledger.errors import ConsensusError, EncodingError, SignatureError
from ledger.events import MAX_SIGNATURES, Envelope, parse_envelope
from ledger.keys import (
    VOTE_PREFIX,
    SignatureJob,
    key_id,
    public_key_bytes,
    sign,
    verify_job,
    verify_public_key,
)

__all__ = [
    "EMPTY_ROOT",
    "ZERO_HASH",
    "Block",
    "BlockEventError",
    "BlockHeader",
    "CommitCertificate",
    "GenesisDocument",
    "Validator",
    "VoteSignature",
    "block_line",
    "certificate_jobs",
    "export_lines",
    "export_of_lines",
    "genesis_header",
    "parse_block",
    "parse_certificate",
    "parse_genesis",
    "parse_header",
    "proposal_bytes",
    "quorum",
    "sign_vote",
    "verify_certificate",
    "vote_bytes",
]

ZERO_HASH = "0" * 64
EMPTY_ROOT = hashlib.sha256(b"").hexdigest()
NETWORK_ID = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")
VOTE_TYPES = frozenset({"prevote", "precommit"})


def quorum(validator_count: int) -> int:
    """Votes needed for more than two thirds of ``validator_count`` validators."""
    return 2 * validator_count // 3 + 1


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if type(value) is not int or not minimum <= value <= MAX_SAFE_INTEGER:
        raise EncodingError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def _str(value: Any, what: str) -> str:
    if type(value) is not str:
        raise EncodingError(f"{what} must be a string, got {value!r}")
    return value


def _public_key(value: Any, what: str) -> bytes:
    """A public key as hex, held to the Ed25519 policy (:func:`ledger.keys.check_public_key`)."""
    return verify_public_key(parse_hex(value, 32, what), what)


# --- genesis -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Validator:
    """A consensus validator named in the genesis document."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> str:
        """The validator's key id (hex sha256 of its public key)."""
        return key_id(self.public_key)


@dataclass(frozen=True, slots=True)
class GenesisDocument:
    """The genesis document (``genesis.json``) every node and auditor starts from.

    Attributes:
        document: the parsed JSON object as given.
        digest: ``sha256(JCS(document))`` in hex; the genesis block names it.
    """

    network: str
    origin: str
    created_at: str
    validators: tuple[Validator, ...]
    governance_admins: tuple[bytes, ...]
    governance_threshold: int
    document: dict[str, Any] = field(repr=False)
    digest: str

    @property
    def validator_keys(self) -> dict[str, bytes]:
        """Validator key id → raw public key, in genesis order."""
        return {v.key_id: v.public_key for v in self.validators}

    @property
    def quorum(self) -> int:
        """Votes needed to commit a block or trust a checkpoint."""
        return quorum(len(self.validators))

    @property
    def note_verifiers(self) -> list[NoteVerifier]:
        """The validators as checkpoint (C2SP note) verifiers, named by their key names."""
        return [NoteVerifier(v.name, v.public_key) for v in self.validators]


_GENESIS_FIELDS = frozenset({"v", "network", "origin", "created_at", "validators", "governance"})
_VALIDATOR_FIELDS = frozenset({"name", "public_key"})
_GOVERNANCE_FIELDS = frozenset({"admins", "threshold"})


def parse_genesis(value: Any) -> GenesisDocument:
    """Parse and check a genesis document (a JSON value, or its bytes or text).

    Raises:
        EncodingError: anything malformed, duplicated or out of range, or a public key that
            the Ed25519 policy refuses (:func:`ledger.keys.check_public_key`).
    """
    if isinstance(value, bytes | bytearray | str):
        value = parse_json(value)
    doc = require_fields(value, _GENESIS_FIELDS, "genesis")
    if type(doc["v"]) is not int or doc["v"] != 1:
        raise EncodingError(f"genesis.v must be 1, got {doc['v']!r}")
    network = _str(doc["network"], "genesis.network")
    if NETWORK_ID.fullmatch(network) is None:
        raise EncodingError(f"genesis.network {network!r} must match {NETWORK_ID.pattern}")
    origin = check_key_name(doc["origin"], "genesis.origin")
    if origin.startswith("rantai-"):
        raise EncodingError("genesis.origin must not start with 'rantai-'")
    parse_time(doc["created_at"], "genesis.created_at")
    raw_validators = doc["validators"]
    if type(raw_validators) is not list or not raw_validators:
        raise EncodingError("genesis.validators must be a non-empty list")
    validators = []
    for position, raw in enumerate(raw_validators):
        item = require_fields(raw, _VALIDATOR_FIELDS, f"genesis.validators[{position}]")
        name = check_key_name(item["name"], f"genesis.validators[{position}].name")
        pk = _public_key(item["public_key"], f"genesis.validators[{position}].public_key")
        validators.append(Validator(name, pk))
    if len({v.name for v in validators}) != len(validators):
        raise EncodingError("genesis.validators: names must be unique")
    if len({v.public_key for v in validators}) != len(validators):
        raise EncodingError("genesis.validators: public keys must be unique")
    governance = require_fields(doc["governance"], _GOVERNANCE_FIELDS, "genesis.governance")
    raw_admins = governance["admins"]
    if type(raw_admins) is not list or not raw_admins:
        raise EncodingError("genesis.governance.admins must be a non-empty list")
    admins = tuple(
        _public_key(a, f"genesis.governance.admins[{i}]") for i, a in enumerate(raw_admins)
    )
    if len(set(admins)) != len(admins):
        raise EncodingError("genesis.governance.admins must be unique")
    threshold = _int(governance["threshold"], "genesis.governance.threshold", minimum=1)
    if threshold > len(admins):
        raise EncodingError("genesis.governance.threshold exceeds the number of admins")
    if threshold > MAX_SIGNATURES:
        raise EncodingError(
            f"genesis.governance.threshold above {MAX_SIGNATURES}: an event carries at most "
            f"{MAX_SIGNATURES} signatures"
        )
    return GenesisDocument(
        network=network,
        origin=origin,
        created_at=doc["created_at"],
        validators=tuple(validators),
        governance_admins=admins,
        governance_threshold=threshold,
        document=doc,
        digest=hashlib.sha256(canonical(doc)).hexdigest(),
    )


# --- headers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """A block header; ``genesis`` is set only at height 0."""

    network: str
    height: int
    prev: str
    time: str
    proposer: str
    event_count: int
    tree_size: int
    tree_root: str
    genesis: str | None = None
    v: int = 1
    _hash: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        # Computed once: consensus and the verifier ask for a block's hash many times.
        object.__setattr__(self, "_hash", hashlib.sha256(self.canonical_bytes).hexdigest())

    def to_json(self) -> dict[str, Any]:
        """The header as a JSON object (the ``genesis`` field only at height 0)."""
        out: dict[str, Any] = {
            "v": self.v,
            "network": self.network,
            "height": self.height,
            "prev": self.prev,
            "time": self.time,
            "proposer": self.proposer,
            "event_count": self.event_count,
            "tree_size": self.tree_size,
            "tree_root": self.tree_root,
        }
        if self.genesis is not None:
            out["genesis"] = self.genesis
        return out

    @property
    def canonical_bytes(self) -> bytes:
        """``JCS(header)``."""
        return canonical(self.to_json())

    @property
    def block_hash(self) -> str:
        """``sha256(JCS(header))`` in hex."""
        return self._hash


_HEADER_FIELDS = frozenset(
    {"v", "network", "height", "prev", "time", "proposer", "event_count", "tree_size", "tree_root"}
)


def parse_header(value: Any) -> BlockHeader:
    """Parse a block header.

    Raises:
        EncodingError: missing or unknown fields, wrong types, bad hex; ``genesis`` present
            anywhere but height 0, or missing there.
    """
    if type(value) is not dict:
        raise EncodingError("header must be a JSON object")
    height = value.get("height")
    expected = _HEADER_FIELDS | {"genesis"} if height == 0 else _HEADER_FIELDS
    header = require_fields(value, expected, "header")
    if type(header["v"]) is not int or header["v"] != 1:
        raise EncodingError(f"header.v must be 1, got {header['v']!r}")
    height = _int(header["height"], "header.height")
    parse_hex(header["prev"], 32, "header.prev")
    parse_time(header["time"], "header.time")
    proposer = _str(header["proposer"], "header.proposer")
    if height == 0:
        if proposer != "":
            raise EncodingError("the genesis block has no proposer")
        parse_hex(header["genesis"], 32, "header.genesis")
    else:
        parse_hex(proposer, 32, "header.proposer")
    parse_hex(header["tree_root"], 32, "header.tree_root")
    return BlockHeader(
        network=_str(header["network"], "header.network"),
        height=height,
        prev=header["prev"],
        time=header["time"],
        proposer=proposer,
        event_count=_int(header["event_count"], "header.event_count"),
        tree_size=_int(header["tree_size"], "header.tree_size"),
        tree_root=header["tree_root"],
        genesis=header.get("genesis"),
    )


def genesis_header(genesis: GenesisDocument) -> BlockHeader:
    """The genesis block's header for a genesis document."""
    return BlockHeader(
        network=genesis.network,
        height=0,
        prev=ZERO_HASH,
        time=genesis.created_at,
        proposer="",
        event_count=0,
        tree_size=0,
        tree_root=EMPTY_ROOT,
        genesis=genesis.digest,
    )


# --- votes and certificates ----------------------------------------------------------------


def vote_bytes(network: str, height: int, round_: int, vote_type: str, block_hash: str) -> bytes:
    """``JCS({network, height, round, type, block_hash})``: what a vote signs (after the prefix).

    ``block_hash`` is ``""`` for a vote for no block (nil).
    """
    if vote_type not in VOTE_TYPES:
        raise EncodingError(f"vote type must be prevote or precommit, got {vote_type!r}")
    return canonical(
        {
            "network": network,
            "height": height,
            "round": round_,
            "type": vote_type,
            "block_hash": block_hash,
        }
    )


def proposal_bytes(
    network: str, height: int, round_: int, pol_round: int, block_hash: str
) -> bytes:
    """``JCS({network, height, round, pol_round, block_hash})``: what a proposal signs.

    ``pol_round`` is the round in which the proposed block got a quorum of prevotes when it
    is proposed again (Tendermint's *valid round*), else ``-1``.
    """
    return canonical(
        {
            "network": network,
            "height": height,
            "round": round_,
            "pol_round": pol_round,
            "block_hash": block_hash,
        }
    )


def sign_vote(
    private_key: Ed25519PrivateKey,
    network: str,
    height: int,
    round_: int,
    vote_type: str,
    block_hash: str,
) -> VoteSignature:
    """Sign a vote with a validator key."""
    message = vote_bytes(network, height, round_, vote_type, block_hash)
    return VoteSignature(
        key_id(public_key_bytes(private_key)), sign(private_key, VOTE_PREFIX, message)
    )


@dataclass(frozen=True, slots=True)
class VoteSignature:
    """One validator's vote signature: ``{"node": key_id, "sig": hex}``."""

    node: str
    sig: bytes

    def to_json(self) -> dict[str, str]:
        """The wire form."""
        return {"node": self.node, "sig": self.sig.hex()}


@dataclass(frozen=True, slots=True)
class CommitCertificate:
    """The precommit signatures of a quorum of validators for one block, in one round."""

    round: int
    sigs: tuple[VoteSignature, ...]

    def to_json(self) -> dict[str, Any]:
        """The wire form ``{"round": r, "sigs": [...]}``."""
        return {"round": self.round, "sigs": [s.to_json() for s in self.sigs]}


_CERT_FIELDS = frozenset({"round", "sigs"})
_VOTE_SIG_FIELDS = frozenset({"node", "sig"})


def parse_certificate(value: Any) -> CommitCertificate:
    """Parse a commit certificate.

    Raises:
        EncodingError: malformed.
    """
    cert = require_fields(value, _CERT_FIELDS, "commit")
    round_ = _int(cert["round"], "commit.round")
    raw_sigs = cert["sigs"]
    if type(raw_sigs) is not list:
        raise EncodingError("commit.sigs must be a list")
    sigs = []
    for position, raw in enumerate(raw_sigs):
        item = require_fields(raw, _VOTE_SIG_FIELDS, f"commit.sigs[{position}]")
        parse_hex(item["node"], 32, f"commit.sigs[{position}].node")
        sigs.append(VoteSignature(item["node"], parse_hex(item["sig"], 64, "commit sig")))
    return CommitCertificate(round_, tuple(sigs))


def certificate_jobs(
    certificate: CommitCertificate,
    network: str,
    height: int,
    block_hash: str,
    validators: Mapping[str, bytes],
) -> list[tuple[str, SignatureJob]]:
    """The signature checks a commit certificate needs, after checking its structure.

    Returns:
        ``(validator key id, job)`` per vote; every job must verify (see ``verify_jobs``).

    Raises:
        ConsensusError: a vote by a non-validator, a validator voting twice, or fewer
            votes than a quorum.
    """
    message = VOTE_PREFIX + vote_bytes(network, height, certificate.round, "precommit", block_hash)
    jobs: list[tuple[str, SignatureJob]] = []
    signers: set[str] = set()
    for vote in certificate.sigs:
        public_key = validators.get(vote.node)
        if public_key is None:
            raise ConsensusError(f"commit vote by {vote.node}, which is not a validator")
        if vote.node in signers:
            raise ConsensusError(f"validator {vote.node} voted twice in the commit")
        signers.add(vote.node)
        jobs.append((vote.node, (public_key, message, vote.sig)))
    needed = quorum(len(validators))
    if len(signers) < needed:
        raise ConsensusError(
            f"commit has {len(signers)} votes, a quorum is {needed} of {len(validators)}"
        )
    return jobs


def verify_certificate(
    certificate: CommitCertificate,
    network: str,
    height: int,
    block_hash: str,
    validators: Mapping[str, bytes],
) -> None:
    """Check a commit certificate completely, in-line.

    Raises:
        ConsensusError: naming what is wrong.
    """
    for node, job in certificate_jobs(certificate, network, height, block_hash, validators):
        if not verify_job(job):
            raise ConsensusError(f"commit vote by {node} does not verify")


# --- blocks --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Block:
    """A block: header, events in log order, and its commit certificate (None at height 0)."""

    header: BlockHeader
    events: tuple[Envelope, ...]
    commit: CommitCertificate | None

    def to_json(self) -> dict[str, Any]:
        """The export form ``{"header", "events", "commit"}``."""
        return {
            "header": self.header.to_json(),
            "events": [e.to_json() for e in self.events],
            "commit": None if self.commit is None else self.commit.to_json(),
        }

    @property
    def canonical_bytes(self) -> bytes:
        """``JCS(block)``: the block's line in an export, without its newline."""
        return block_line(
            self.header.canonical_bytes,
            [envelope.leaf for envelope in self.events],
            None if self.commit is None else canonical(self.commit.to_json()),
        )


def block_line(header: bytes, leaves: Iterable[bytes], commit: bytes | None) -> bytes:
    """``JCS(block)`` from the JCS bytes of its header, events (their leaves) and certificate.

    JCS writes a nested value exactly as it would on its own, and orders the members
    ``commit``, ``events``, ``header``; so a block's line is its parts' bytes joined, and
    encoding the events again would cost more than the rest of an export.
    """
    events = b",".join(leaves)
    certificate = b"null" if commit is None else commit
    return b'{"commit":' + certificate + b',"events":[' + events + b'],"header":' + header + b"}"


_BLOCK_FIELDS = frozenset({"header", "events", "commit"})


class BlockEventError(EncodingError):
    """A malformed event inside a block.

    Attributes:
        position: the bad event's place in the block.
        prefix: the block with the events before it, so that a verifier can check those
            first (an earlier fault must be reported before this one).
    """

    def __init__(self, position: int, cause: Exception, prefix: Block) -> None:
        super().__init__(f"event {position} of the block: {cause}")
        self.position = position
        self.prefix = prefix


def parse_block(value: Any) -> Block:
    """Parse one block of an export (a JSON value, or one NDJSON line).

    Raises:
        EncodingError: anything malformed (:class:`BlockEventError` for an event).
    """
    parsed_without_floats = False
    if isinstance(value, bytes | bytearray | str):
        value, has_floats = parse_json_checking_floats(value)
        parsed_without_floats = not has_floats
    block = require_fields(value, _BLOCK_FIELDS, "block")
    header = parse_header(block["header"])
    commit = None if block["commit"] is None else parse_certificate(block["commit"])
    raw_events = block["events"]
    if type(raw_events) is not list:
        raise EncodingError("block.events must be a list")
    events = []
    for position, raw in enumerate(raw_events):
        try:
            events.append(parse_envelope(raw, parsed_without_floats=parsed_without_floats))
        except (EncodingError, SignatureError) as e:
            raise BlockEventError(position, e, Block(header, tuple(events), commit)) from e
    return Block(header, tuple(events), commit)


def export_lines(genesis: GenesisDocument, blocks: Iterable[Block]) -> Iterator[bytes]:
    """The NDJSON export: the genesis document's line, then one line per block (DESIGN.md §4)."""
    return export_of_lines(genesis, (block.canonical_bytes for block in blocks))


def export_of_lines(genesis: GenesisDocument, block_lines: Iterable[bytes]) -> Iterator[bytes]:
    """The NDJSON export from each block's :func:`block_line`, as a store holds them."""
    yield canonical(genesis.document) + b"\n"
    for line in block_lines:
        yield line + b"\n"
