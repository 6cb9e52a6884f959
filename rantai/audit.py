"""A continuous auditor of a network's checkpoints: trust on first use, then only growth.

Like immudb's audit mode or a transparency-log monitor, the auditor keeps the last checkpoint it
trusts on disk and, each round, asks every node it watches for its newest checkpoint:

* the checkpoint must carry a quorum (2f+1 of n) of valid genesis validator signatures for the
  genesis origin, else it is a ``bad-signature`` fault;
* a node must never serve a smaller checkpoint than it served before (``rollback``);
* a larger checkpoint must be proven consistent with the trusted one by an RFC 9162 consistency
  proof checked against the two checkpoints' own roots (``rewrite`` if it is not);
* two checkpoints of the same size must have the same root, and a node's smaller checkpoint must
  be a prefix of the trusted one, whether they come from one node over time or from several
  nodes at once (``split-view``).

The first round without a state trusts the largest checkpoint with a valid quorum (trust on first
use); :class:`AuditRound` says so. A round that finds a fault keeps the old trusted state and
returns a :class:`Fault` with the evidence: the signed notes involved and the proof, which anyone
holding the genesis document can check again.

What it does not do: verify events or blocks (``rantai verify`` audits a whole export), decide
on its own that a node that cannot be reached is faulty (it is reported as unavailable), print
anything, or read a clock (callers pass the time of detection).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ledger.blocks import GenesisDocument
from ledger.encoding import parse_json
from ledger.errors import EncodingError, ProofError, SignatureError, StorageError
from rantai.client import (
    ConsistencyProof,
    NodeUnavailableError,
    RefusedError,
    TrustedCheckpoint,
    verify_checkpoint_consistency,
    verify_checkpoint_note,
)

__all__ = [
    "FAULT_KINDS",
    "AuditRound",
    "AuditState",
    "CheckpointSource",
    "Fault",
    "Sighting",
    "audit_round",
    "evidence_path",
    "load_state",
    "save_state",
    "write_evidence",
]

FAULT_KINDS = ("bad-signature", "rollback", "rewrite", "split-view")
"""What an audit round can find, each explained in the module docstring."""

_STATE_VERSION = 1


class CheckpointSource(Protocol):
    """A node as the auditor sees it (:class:`rantai.client.Client` is one)."""

    url: str

    def checkpoint(self) -> bytes:
        """The node's newest cosigned checkpoint, as a signed note."""
        ...

    def consistency_proof(self, first: int, second: int) -> ConsistencyProof:
        """A consistency proof between two tree sizes of the node's log."""
        ...


@dataclass(frozen=True, slots=True)
class Sighting:
    """A checkpoint with a valid quorum, and the node that served it.

    Attributes:
        url: the node's URL.
        trusted: the verified checkpoint and its signed note.
    """

    url: str
    trusted: TrustedCheckpoint

    @property
    def size(self) -> int:
        """The tree size."""
        return self.trusted.size

    @property
    def root_hash(self) -> bytes:
        """The root at that size."""
        return self.trusted.root_hash

    def to_json(self) -> dict[str, Any]:
        """``{url, size, root, note}`` (the note as text: it is UTF-8 by definition)."""
        return {
            "url": self.url,
            "size": self.size,
            "root": self.root_hash.hex(),
            "note": self.trusted.note.decode(),
        }


@dataclass(frozen=True, slots=True)
class AuditState:
    """What the auditor remembers between rounds.

    Attributes:
        genesis: the digest of the genesis document the state belongs to.
        trusted: the largest checkpoint proven consistent with everything trusted before.
        nodes: the last checkpoint each node served (for rollback detection).
    """

    genesis: str
    trusted: Sighting
    nodes: Mapping[str, Sighting] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The state file's content."""
        return {
            "v": _STATE_VERSION,
            "genesis": self.genesis,
            "trusted": self.trusted.to_json(),
            "nodes": {url: sighting.to_json() for url, sighting in sorted(self.nodes.items())},
        }


@dataclass(frozen=True, slots=True)
class Fault:
    """Evidence that the network (or a node) is not one append-only log.

    Attributes:
        kind: one of :data:`FAULT_KINDS`.
        summary: one sentence naming the nodes, sizes and what is wrong.
        checkpoints: ``(role, url, signed note text)`` of every checkpoint involved.
        proof: the consistency proof that failed, if one did.
        proof_url: the node that served it.
        detail: the verifier's own message.
    """

    kind: str
    summary: str
    checkpoints: tuple[tuple[str, str, str], ...]
    proof: ConsistencyProof | None = None
    proof_url: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """The evidence file's main content."""
        return {
            "kind": self.kind,
            "summary": self.summary,
            "detail": self.detail,
            "checkpoints": [
                {"role": role, "url": url, "note": note} for role, url, note in self.checkpoints
            ],
            "proof": None
            if self.proof is None
            else {"url": self.proof_url, **self.proof.to_json()},
        }


@dataclass(frozen=True, slots=True)
class AuditRound:
    """The outcome of one round.

    Attributes:
        state: the state to keep: advanced after a clean round, the old one after a fault
            (``None`` only when there is nothing to trust yet).
        fault: the first fault found, if any.
        first_contact: the round trusted a checkpoint on first use (there was no state).
        grew: ``(url, old size, new size)`` for every consistency proof that verified.
        unavailable: ``(url, reason)`` for nodes that could not be asked or could not prove
            consistency yet (not faults: nothing inconsistent was shown).
    """

    state: AuditState | None
    fault: Fault | None = None
    first_contact: bool = False
    grew: tuple[tuple[str, int, int], ...] = ()
    unavailable: tuple[tuple[str, str], ...] = ()


# --- the state file ----------------------------------------------------------------------------


def _sighting_from_json(value: Any, genesis: GenesisDocument, what: str) -> Sighting:
    if type(value) is not dict or type(value.get("url")) is not str:
        raise EncodingError(f"{what} must be an object with a url")
    note = value.get("note")
    if type(note) is not str:
        raise EncodingError(f"{what}.note must be the signed note's text")
    try:
        trusted = verify_checkpoint_note(note.encode(), genesis)
    except (EncodingError, SignatureError) as e:
        raise EncodingError(
            f"{what} holds a checkpoint the genesis validators did not sign: {e}"
        ) from e
    if value.get("size") != trusted.size or value.get("root") != trusted.root_hash.hex():
        raise EncodingError(f"{what}: size and root do not match its signed note")
    return Sighting(value["url"], trusted)


def load_state(path: Path, genesis: GenesisDocument) -> AuditState | None:
    """Read the state file, re-verifying every checkpoint in it; ``None`` if there is none.

    Raises:
        StorageError: the file exists but cannot be read.
        EncodingError: it is malformed, belongs to another genesis document, or holds a
            checkpoint without a quorum of valid signatures.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StorageError(f"cannot read {path}: {e}") from e
    value = parse_json(data)
    if type(value) is not dict or value.get("v") != _STATE_VERSION:
        raise EncodingError(f"{path} is not an audit state file (version {_STATE_VERSION})")
    if value.get("genesis") != genesis.digest:
        raise EncodingError(
            f"{path} belongs to genesis {value.get('genesis')}, not to {genesis.digest}"
        )
    nodes = value.get("nodes")
    if type(nodes) is not dict:
        raise EncodingError(f"{path}: nodes must be an object")
    return AuditState(
        genesis=genesis.digest,
        trusted=_sighting_from_json(value.get("trusted"), genesis, "trusted"),
        nodes={
            url: _sighting_from_json(item, genesis, f"nodes[{url}]") for url, item in nodes.items()
        },
    )


def _write_atomically(path: Path, data: bytes) -> None:
    """Write a new file beside ``path`` and rename it over ``path``: never a partial file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as e:
        temporary.unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {e}") from e


def save_state(path: Path, state: AuditState) -> None:
    """Write the state file atomically (a temporary file renamed over it).

    Raises:
        StorageError: it cannot be written.
    """
    _write_atomically(path, json.dumps(state.to_json(), indent=2).encode() + b"\n")


def evidence_path(state_path: Path, detected_at: str) -> Path:
    """Where the evidence of a fault detected at ``detected_at`` goes: beside the state file."""
    stamp = "".join(c for c in detected_at if c.isalnum())
    return state_path.with_name(f"{state_path.name}.evidence-{stamp}.json")


def write_evidence(path: Path, fault: Fault, genesis: GenesisDocument, detected_at: str) -> None:
    """Write a fault's evidence as JSON (atomically), with what is needed to check it again.

    Raises:
        StorageError: it cannot be written.
    """
    document = {
        "detected_at": detected_at,
        "network": genesis.network,
        "origin": genesis.origin,
        "genesis": genesis.digest,
        **fault.to_json(),
    }
    _write_atomically(path, json.dumps(document, indent=2).encode() + b"\n")


# --- one round -------------------------------------------------------------------------------


def _text(note: bytes) -> str:
    return note.decode("utf-8", errors="replace")


def _fetch(
    source: CheckpointSource, genesis: GenesisDocument
) -> tuple[Sighting | None, Fault | None, str | None]:
    """A node's checkpoint: verified, or a bad-signature fault, or why it could not be had."""
    try:
        note = source.checkpoint()
    except (NodeUnavailableError, RefusedError) as e:
        return None, None, str(e)
    try:
        return Sighting(source.url, verify_checkpoint_note(note, genesis)), None, None
    except (EncodingError, SignatureError) as e:
        fault = Fault(
            kind="bad-signature",
            summary=(
                f"{source.url} serves a checkpoint that a quorum of {genesis.quorum} of the "
                f"{len(genesis.validators)} genesis validators did not sign"
            ),
            checkpoints=(("served", source.url, _text(note)),),
            detail=str(e),
        )
        return None, fault, None


def _per_node_fault(previous: Sighting, now: Sighting) -> Fault | None:
    """A node that went back, or showed two roots for one size, compared with itself."""
    pair = (
        ("before", previous.url, _text(previous.trusted.note)),
        ("now", now.url, _text(now.trusted.note)),
    )
    if now.size < previous.size:
        return Fault(
            kind="rollback",
            summary=(
                f"{now.url} now serves a checkpoint of size {now.size}, after one of size "
                f"{previous.size}: its log went back"
            ),
            checkpoints=pair,
        )
    if now.size == previous.size and now.root_hash != previous.root_hash:
        return Fault(
            kind="split-view",
            summary=(
                f"{now.url} served two different roots for tree size {now.size}, both signed "
                "by a quorum"
            ),
            checkpoints=pair,
        )
    return None


class _Round:
    """One round's work: the trusted checkpoint so far, and what was found."""

    def __init__(self, trusted: Sighting, provers: Mapping[str, CheckpointSource]) -> None:
        self.trusted = trusted
        self.provers = provers
        self.grew: list[tuple[str, int, int]] = []
        self.unavailable: list[tuple[str, str]] = []

    def _proof(
        self, prover: CheckpointSource, older: Sighting, newer: Sighting
    ) -> tuple[bool, ConsistencyProof | None]:
        """``(True, proof)`` if a proof is at hand or none is needed; ``(False, None)`` if
        the node could not give one (it is then listed as unavailable)."""
        if not 0 < older.size < newer.size:
            return True, None
        try:
            return True, prover.consistency_proof(older.size, newer.size)
        except (NodeUnavailableError, RefusedError, EncodingError) as e:
            self.unavailable.append(
                (prover.url, f"no consistency proof from {older.size} to {newer.size}: {e}")
            )
            return False, None

    def add(self, sighting: Sighting) -> Fault | None:
        """Fit one node's checkpoint into the trusted log (sightings come largest first).

        A larger checkpoint than the trusted one must extend it (else the trusted history was
        rewritten); the same size must have the same root, and a smaller one must be a prefix
        of the trusted log (else nodes show different histories: a split view).
        """
        trusted = self.trusted
        grows = sighting.size > trusted.size
        if grows:
            older, newer, kind = trusted, sighting, "rewrite"
            prover = self.provers[sighting.url]
        else:
            older, newer, kind = sighting, trusted, "split-view"
            # The node that served the trusted checkpoint this round holds both sizes.
            prover = self.provers.get(trusted.url, self.provers[sighting.url])
        available, proof = self._proof(prover, older, newer)
        if not available:
            return None
        try:
            verify_checkpoint_consistency(older.trusted.checkpoint, newer.trusted.checkpoint, proof)
        except ProofError as e:
            return _inconsistent(
                kind, older, newer, proof, None if proof is None else prover.url, str(e)
            )
        if grows:
            self.grew.append((sighting.url, trusted.size, sighting.size))
            self.trusted = sighting
        return None


def _inconsistent(
    kind: str,
    older: Sighting,
    newer: Sighting,
    proof: ConsistencyProof | None,
    proof_url: str | None,
    detail: str,
) -> Fault:
    checkpoints = (
        ("older", older.url, _text(older.trusted.note)),
        ("newer", newer.url, _text(newer.trusted.note)),
    )
    if older.size == newer.size:
        summary = (
            f"two checkpoints of tree size {older.size} with different roots, both signed by a "
            f"quorum: {older.url} and {newer.url} show different histories"
        )
        return Fault("split-view", summary, checkpoints, detail=detail)
    what = (
        "the history the auditor trusted was rewritten"
        if kind == "rewrite"
        else "the nodes show different histories"
    )
    summary = (
        f"the checkpoint of size {newer.size} ({newer.url}) does not extend the one of size "
        f"{older.size} ({older.url}): {what}"
    )
    return Fault(kind, summary, checkpoints, proof, proof_url, detail)


def audit_round(
    genesis: GenesisDocument, state: AuditState | None, sources: Sequence[CheckpointSource]
) -> AuditRound:
    """Ask every node for its checkpoint and fit the answers into the trusted log.

    Args:
        genesis: the genesis document the auditor trusts.
        state: what was trusted after the last round (``None``: first contact).
        sources: the nodes to ask (distinct URLs).

    Returns:
        The round's outcome; its ``state`` is what to keep (see :class:`AuditRound`).
    """
    sightings: list[Sighting] = []
    unavailable: list[tuple[str, str]] = []
    for source in sources:
        sighting, fault, reason = _fetch(source, genesis)
        if fault is not None:
            return AuditRound(state, fault)
        if sighting is None:
            unavailable.append((source.url, reason or "no answer"))
            continue
        previous = state.nodes.get(source.url) if state is not None else None
        if previous is not None:
            fault = _per_node_fault(previous, sighting)
            if fault is not None:
                return AuditRound(state, fault)
        sightings.append(sighting)
    if not sightings:
        return AuditRound(state, unavailable=tuple(unavailable))
    sightings.sort(key=lambda s: s.size, reverse=True)
    first_contact = state is None
    answered = {s.url for s in sightings}
    provers = {source.url: source for source in sources if source.url in answered}
    work = _Round(sightings[0] if state is None else state.trusted, provers)
    work.unavailable.extend(unavailable)
    for sighting in sightings:
        fault = work.add(sighting)
        if fault is not None:
            return AuditRound(state, fault, unavailable=tuple(work.unavailable))
    nodes: dict[str, Sighting] = dict(state.nodes) if state is not None else {}
    nodes.update((s.url, s) for s in sightings)
    return AuditRound(
        AuditState(genesis.digest, work.trusted, nodes),
        first_contact=first_contact,
        grew=tuple(work.grew),
        unavailable=tuple(work.unavailable),
    )
