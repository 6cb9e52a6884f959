"""A client for a Rantai node: sign and submit events, read answers, and check them without trust.

Signing happens here, on the client's side, with the member's own key: a node never sees a
private key. Given a member key, the client also signs every request (RFC 9421, see
:mod:`node.httpsig`): a node answers reads other than checkpoints, proofs and traces only to
signed requests, and only with what the member's organisation may read.

Whatever a node answers about the log can be checked here against the genesis document alone,
so a buyer or an auditor needs to trust no node:

* :func:`verify_checkpoint_note`: a checkpoint counts only when more than two thirds of the
  genesis validators (2f+1 of n) cosigned it for the genesis origin (DESIGN.md §4);
* :func:`verify_event_inclusion`: the Merkle leaf hash is recomputed from the envelope as the
  ledger computes it (``sha256(0x00 || JCS(envelope))``, never taken from the node) and its
  inclusion proof is checked against a trusted checkpoint's root;
* :func:`verify_checkpoint_consistency`: a consistency proof between two trusted checkpoints
  is checked against *their* roots, not against roots the node puts beside the proof.

The errors it raises, all :class:`~ledger.errors.LedgerError`::

    LedgerError
    ├── RefusedError          the node answered with an error status (its problem document kept)
    ├── NodeUnavailableError  the node could not be reached, or the connection failed
    ├── EncodingError         an answer that is not what the API promises (also: EpcisError)
    ├── SignatureError        a checkpoint without a quorum of valid validator signatures
    └── ProofError            a proof that does not verify, or does not fit the event or checkpoint

What it does not do: verify whole chains (``rantai verify`` and ``ledger.verifier`` do), check an
event's signatures against the member keys registered at its time (that needs the ledger state,
which ``rantai verify`` replays), or remember anything between calls (``rantai.audit`` keeps the
last trusted checkpoint of a continuous audit).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.blocks import GenesisDocument
from ledger.checkpoint import Checkpoint, check_note, parse_note, verify_checkpoint
from ledger.encoding import format_time, parse_hex, parse_json
from ledger.errors import EncodingError, LedgerError, ProofError
from ledger.events import Envelope, parse_envelope, sign_event
from ledger.keys import key_id as key_id_of
from ledger.keys import public_key_bytes
from ledger.merkle import EMPTY_ROOT, leaf_hash, verify_consistency, verify_inclusion
from node.epcis import CapturedEvent, EpcisError, capture_bodies, lot_epc_class
from node.httpsig import sign_request

__all__ = [
    "MAX_RETRY_AFTER",
    "RATE_LIMIT_RETRIES",
    "Client",
    "ConsistencyProof",
    "InclusionProof",
    "NodeUnavailableError",
    "ProvenEvent",
    "RefusedError",
    "TrustedCheckpoint",
    "build_event",
    "check_captured_lots",
    "parse_consistency_proof",
    "parse_inclusion_proof",
    "verify_checkpoint_consistency",
    "verify_checkpoint_note",
    "verify_event_inclusion",
]

RATE_LIMIT_RETRIES = 3
"""How many times a request refused with ``429`` (or ``503`` with ``Retry-After``) is sent
again."""
MAX_RETRY_AFTER = 30
"""The longest wait, in seconds, before sending a rate-limited request again."""
_HASH_SIZE = 32
_POLL_SECONDS = 0.25


class RefusedError(LedgerError):
    """The node refused a request; ``problem`` is its RFC 9457 problem document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        errors = problem.get("errors") or []
        detail = "; ".join(f"{e.get('rule')}: {e.get('detail')}" for e in errors)
        super().__init__(f"{status} {problem.get('title')}: {detail or problem.get('detail')}")
        self.status = status
        self.problem = problem


class NodeUnavailableError(LedgerError):
    """The node could not be reached, or the connection to it failed mid-answer."""


def build_event(
    network: str,
    kind: str,
    payload: dict[str, Any],
    signers: Sequence[Ed25519PrivateKey],
    *,
    created_at: _dt.datetime | None = None,
) -> Envelope:
    """A signed event with a fresh random nonce (the signer's clock unless given)."""
    moment = (created_at or _dt.datetime.now(_dt.UTC)).replace(microsecond=0)
    body = {
        "v": 1,
        "network": network,
        "type": kind,
        "nonce": os.urandom(12).hex(),
        "created_at": format_time(moment),
        "payload": payload,
    }
    return sign_event(body, signers)


# --- what a node answers, parsed -------------------------------------------------------------


def _fields(value: Any, names: Sequence[str], what: str) -> list[Any]:
    """The values of ``names`` in the JSON object ``value`` (extra fields are tolerated)."""
    if type(value) is not dict:
        raise EncodingError(f"{what} must be a JSON object")
    missing = [name for name in names if name not in value]
    if missing:
        raise EncodingError(f"{what}: missing {', '.join(missing)}")
    return [value[name] for name in names]


def _count(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise EncodingError(f"{what} must be an integer >= 0, got {value!r}")
    return value


def _hashes(value: Any, what: str) -> tuple[bytes, ...]:
    if type(value) is not list:
        raise EncodingError(f"{what} must be a list of hex hashes")
    return tuple(parse_hex(h, _HASH_SIZE, f"{what}[{i}]") for i, h in enumerate(value))


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """An inclusion proof as a node served it (``GET /v1/events/{id}/proof``); unchecked.

    Attributes:
        index: the event's log index.
        size: the tree size the proof is for.
        leaf_hash: the leaf hash the node claims (a verifier recomputes it instead).
        proof: the audit path, leaf to root.
        root: the root the node claims (a verifier uses a trusted checkpoint's instead).
    """

    index: int
    size: int
    leaf_hash: bytes
    proof: tuple[bytes, ...]
    root: bytes


def parse_inclusion_proof(value: Any) -> InclusionProof:
    """Read the JSON form ``{index, size, leaf_hash, proof: [hex], root}``.

    Raises:
        EncodingError: a field missing or malformed.
    """
    index, size, leaf, proof, root = _fields(
        value, ("index", "size", "leaf_hash", "proof", "root"), "inclusion proof"
    )
    return InclusionProof(
        index=_count(index, "inclusion proof index"),
        size=_count(size, "inclusion proof size"),
        leaf_hash=parse_hex(leaf, _HASH_SIZE, "inclusion proof leaf_hash"),
        proof=_hashes(proof, "inclusion proof"),
        root=parse_hex(root, _HASH_SIZE, "inclusion proof root"),
    )


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """A consistency proof as a node served it (``GET /v1/proofs/consistency``); unchecked.

    Attributes:
        first: the smaller tree size (the API's ``from``).
        second: the larger tree size (``to``).
        proof: the RFC 9162 consistency proof.
        first_root: the root at ``first`` the node claims.
        second_root: the root at ``second`` the node claims.
    """

    first: int
    second: int
    proof: tuple[bytes, ...]
    first_root: bytes
    second_root: bytes

    def to_json(self) -> dict[str, Any]:
        """The wire form ``{from, to, proof, root_from, root_to}``."""
        return {
            "from": self.first,
            "to": self.second,
            "proof": [h.hex() for h in self.proof],
            "root_from": self.first_root.hex(),
            "root_to": self.second_root.hex(),
        }


def parse_consistency_proof(value: Any) -> ConsistencyProof:
    """Read the JSON form ``{from, to, proof: [hex], root_from, root_to}``.

    Raises:
        EncodingError: a field missing or malformed.
    """
    first, second, proof, root_from, root_to = _fields(
        value, ("from", "to", "proof", "root_from", "root_to"), "consistency proof"
    )
    return ConsistencyProof(
        first=_count(first, "consistency proof from"),
        second=_count(second, "consistency proof to"),
        proof=_hashes(proof, "consistency proof"),
        first_root=parse_hex(root_from, _HASH_SIZE, "consistency proof root_from"),
        second_root=parse_hex(root_to, _HASH_SIZE, "consistency proof root_to"),
    )


# --- verification without trusting the node -------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustedCheckpoint:
    """A checkpoint whose signed note carries a quorum of genesis validator signatures.

    Attributes:
        note: the signed note exactly as served (evidence that can be shown to anyone).
        checkpoint: the parsed checkpoint (origin, size, root hash).
        signed_by: the validators whose signatures verify, in genesis order.
    """

    note: bytes
    checkpoint: Checkpoint
    signed_by: tuple[str, ...]

    @property
    def size(self) -> int:
        """The tree size."""
        return self.checkpoint.size

    @property
    def root_hash(self) -> bytes:
        """The tree root at that size."""
        return self.checkpoint.root_hash


def verify_checkpoint_note(note: bytes, genesis: GenesisDocument) -> TrustedCheckpoint:
    """Trust a checkpoint only if a quorum of the genesis validators cosigned it.

    Args:
        note: the signed note (``GET /v1/checkpoint``).
        genesis: the genesis document the caller trusts.

    Returns:
        The checkpoint with the names of its valid signers.

    Raises:
        EncodingError: the note or its checkpoint text is malformed.
        SignatureError: fewer than ``genesis.quorum`` validators signed it validly, a
            validator's signature is invalid, or it is signed for another origin.
    """
    checkpoint = verify_checkpoint(note, genesis.origin, genesis.note_verifiers, genesis.quorum)
    result = check_note(parse_note(note), genesis.note_verifiers, genesis.quorum)
    return TrustedCheckpoint(note=bytes(note), checkpoint=checkpoint, signed_by=result.signed_by)


def verify_event_inclusion(
    event_id: str, envelope: Any, proof: InclusionProof, checkpoint: TrustedCheckpoint
) -> Envelope:
    """Check that an event is in the log a trusted checkpoint commits to.

    The envelope must be the event asked for (its id is recomputed from its body), and its leaf
    hash is recomputed from the envelope, never taken from the node.

    Args:
        event_id: the id the caller asked about.
        envelope: the envelope the node returned (JSON value).
        proof: the node's inclusion proof, for the checkpoint's tree size.
        checkpoint: a checkpoint verified with :func:`verify_checkpoint_note`.

    Returns:
        The envelope, now proven to be at ``proof.index`` in the checkpoint's tree.

    Raises:
        EncodingError: the envelope is malformed.
        SignatureError: the envelope's signature list is malformed (no or duplicate signers).
        ProofError: another event than the one asked for, a proof for another tree size, or a
            proof that does not verify against the checkpoint's root.
    """
    parsed = parse_envelope(envelope)
    if parsed.event_id != event_id:
        raise ProofError(f"the node returned event {parsed.event_id}, not {event_id}")
    if proof.size != checkpoint.size:
        raise ProofError(
            f"the proof is for tree size {proof.size}, the checkpoint is for {checkpoint.size}"
        )
    leaf = leaf_hash(parsed.leaf)
    try:
        verify_inclusion(
            leaf, proof.index, checkpoint.size, list(proof.proof), checkpoint.root_hash
        )
    except ProofError as e:
        hint = "" if leaf == proof.leaf_hash else " (the node's leaf hash is not the envelope's)"
        raise ProofError(
            f"event {event_id} at index {proof.index} is not in the checkpoint's tree of size "
            f"{checkpoint.size}: {e}{hint}"
        ) from e
    return parsed


def verify_checkpoint_consistency(
    old: Checkpoint, new: Checkpoint, proof: ConsistencyProof | None
) -> None:
    """Check that ``new`` extends ``old``: the log only grew, nothing was rewritten.

    The proof is checked against the two checkpoints' roots; the roots a node sends beside it
    are not used. The empty tree is a prefix of every tree, and a checkpoint is consistent with
    itself; neither needs a proof (pass ``None``).

    Raises:
        ProofError: ``new`` is smaller than ``old``, same-size checkpoints with different
            roots, a proof for other sizes, or a proof that does not verify.
    """
    if new.size < old.size:
        raise ProofError(f"tree size went back from {old.size} to {new.size}")
    if old.size == 0:
        if old.root_hash != EMPTY_ROOT:
            raise ProofError("a checkpoint of size 0 must have the empty tree's root")
        return
    if old.size == new.size:
        if old.root_hash != new.root_hash:
            raise ProofError(f"two different roots for tree size {old.size}")
        return
    if proof is None:
        raise ProofError(f"no consistency proof from size {old.size} to {new.size}")
    if (proof.first, proof.second) != (old.size, new.size):
        raise ProofError(
            f"the consistency proof is from {proof.first} to {proof.second}, "
            f"not from {old.size} to {new.size}"
        )
    verify_consistency(old.size, new.size, list(proof.proof), old.root_hash, new.root_hash)


@dataclass(frozen=True, slots=True)
class ProvenEvent:
    """An event proven to be in the log of a trusted checkpoint.

    Attributes:
        envelope: the event.
        index: its log index (proven by the inclusion proof).
        height: the block height the node reports (not proven by the inclusion proof).
        checkpoint: the trusted checkpoint the proof is against.
        proof: the inclusion proof that verified.
    """

    envelope: Envelope
    index: int
    height: int | None
    checkpoint: TrustedCheckpoint
    proof: InclusionProof


# --- EPCIS capture on the client's side ------------------------------------------------------


def _created_lots(event: CapturedEvent) -> dict[str, tuple[str | None, str]]:
    """Lot id → (GTIN, unit) of the lots ``event`` creates."""
    payload = event.payload
    if event.type == "lot.create":
        return {payload["lot_id"]: (payload.get("gtin"), payload["uom"])}
    if event.type == "lot.transform":
        return {output["lot_id"]: (None, output["uom"]) for output in payload["outputs"]}
    return {}


def check_captured_lots(
    network: str,
    captured: Sequence[CapturedEvent],
    lookup: Callable[[str], Mapping[str, Any] | None],
) -> None:
    """Check the GTINs and units captured EPCIS events state against the lots they name.

    A ledger payload names existing lots by id only, so the GTIN of an EPC class and the unit of
    a quantity would be lost unchecked (``docs/epcis.md`` E4): a receipt of ``200 GRM`` into a
    lot kept in kg must be refused before anyone signs it. Lots made earlier in the same
    document are checked against what those events made; a lot nobody knows is left to the
    ledger's rules, which refuse it.

    Args:
        network: the network id (GTINs are compared through EPC classes, as GTIN-14).
        captured: the events :func:`node.epcis.capture_bodies` returned.
        lookup: a lot's current state (``GET /v1/lots/{id}``), or ``None`` if unknown.

    Raises:
        EpcisError: naming the event and the lot whose GTIN or unit does not fit.
    """
    made: dict[str, tuple[str | None, str]] = {}
    for event in captured:
        created = _created_lots(event)
        for reference in event.lots:
            where = f"the {event.type} lot {reference.lot_id}"
            if reference.lot_id in created:
                if event.type == "lot.transform" and reference.gtin is not None:
                    raise EpcisError(
                        "epcClass",
                        f"{where} has a GTIN, which the ledger cannot record for a transform "
                        "output; name it urn:rantai:…:lot:… or create it with lot.create",
                        event.position,
                    )
                continue
            known = made.get(reference.lot_id)
            if known is None:
                lot = lookup(reference.lot_id)
                if lot is None:
                    continue
                known = (lot.get("gtin"), str(lot.get("uom")))
            gtin, unit = known
            if lot_epc_class(network, reference.lot_id, gtin) != lot_epc_class(
                network, reference.lot_id, reference.gtin
            ):
                raise EpcisError(
                    "epcClass",
                    f"{where}: the event's GTIN {reference.gtin} is not the lot's ({gtin})",
                    event.position,
                )
            if reference.uom is not None and reference.uom != unit:
                raise EpcisError(
                    "uom",
                    f"{where}: the event's unit {reference.uom} is not the lot's ({unit})",
                    event.position,
                )
        made.update(created)


# --- the client ------------------------------------------------------------------------------


class Client:
    """Talks to one node's HTTP API.

    Every method raises :class:`NodeUnavailableError` when the node cannot be reached and
    :class:`RefusedError` when it answers with an error status (``401`` for a request that
    needed a signature, ``403`` for one the key's member may not read).

    Args:
        url: the node's API.
        key: a registered member's (or a validator's) key that signs every request; without
            one, requests go unsigned (enough for checkpoints, proofs, traces and submitting).
        key_id: the key's id (default: computed from the key).
        timeout: seconds per request.
    """

    def __init__(
        self,
        url: str,
        key: Ed25519PrivateKey | None = None,
        key_id: str | None = None,
        *,
        timeout: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._key = key
        self._key_id = (
            key_id if key_id is not None or key is None else key_id_of(public_key_bytes(key))
        )
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        """Close the connection."""
        self._http.close()

    def _build(self, method: str, path: str, **kwargs: Any) -> httpx.Request:
        """The request, signed when the client has a key."""
        request = self._http.build_request(method, f"{self.url}{path}", **kwargs)
        if self._key is not None and self._key_id is not None:
            target = request.url.raw_path.decode("ascii")
            created = int(time.time())
            request.headers.update(
                sign_request(
                    request.method, target, request.content, self._key, self._key_id, created
                )
            )
        return request

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send the request; over a rate limit (``429``) or while the node is too busy (``503``
        with ``Retry-After``), wait as told and send it again, signed anew, up to
        :data:`RATE_LIMIT_RETRIES` times (waiting at most :data:`MAX_RETRY_AFTER` seconds each
        time)."""
        retries = 0
        while True:
            try:
                response = self._http.send(self._build(method, path, **kwargs))
            except (httpx.HTTPError, httpx.InvalidURL) as e:
                raise NodeUnavailableError(f"cannot reach {self.url}: {e}") from e
            busy = response.status_code in (429, 503) and "retry-after" in response.headers
            if not busy or retries == RATE_LIMIT_RETRIES:
                return response
            retries += 1
            after = response.headers.get("retry-after", "")
            time.sleep(min(MAX_RETRY_AFTER, int(after)) if after.isdigit() else 1)

    def _refuse_if_error(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            problem = parse_json(response.content)
        except EncodingError:
            problem = None
        if not isinstance(problem, dict):
            problem = {"title": response.reason_phrase, "detail": response.text[:500]}
        raise RefusedError(response.status_code, problem)

    def _json(self, response: httpx.Response) -> Any:
        self._refuse_if_error(response)
        try:
            return parse_json(response.content)
        except EncodingError as e:
            raise EncodingError(f"{self.url} answered {response.url.path} with {e}") from e

    def _object(self, response: httpx.Response) -> dict[str, Any]:
        value = self._json(response)
        if type(value) is not dict:
            raise EncodingError(f"{self.url} answered {response.url.path} without a JSON object")
        return value

    # --- reading -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """``GET /v1/status``."""
        return self._object(self._request("GET", "/v1/status"))

    def event(self, event_id: str) -> dict[str, Any]:
        """``GET /v1/events/{event_id}``: ``{event_id, envelope, status, height, index}``."""
        return self._object(self._request("GET", f"/v1/events/{quote(event_id, safe='')}"))

    def lot(self, lot_id: str) -> dict[str, Any] | None:
        """``GET /v1/lots/{lot_id}``: the lot's current state, or ``None`` if it is unknown."""
        response = self._request("GET", f"/v1/lots/{quote(lot_id, safe='')}")
        if response.status_code == 404:
            return None
        return self._object(response)

    def trace(self, lot_id: str, direction: str = "back") -> dict[str, Any]:
        """``GET /v1/lots/{lot_id}/trace``."""
        response = self._request(
            "GET", f"/v1/lots/{quote(lot_id, safe='')}/trace", params={"direction": direction}
        )
        return self._object(response)

    def checkpoint(self) -> bytes:
        """``GET /v1/checkpoint``: the newest cosigned checkpoint, as the signed note's bytes."""
        response = self._request("GET", "/v1/checkpoint")
        self._refuse_if_error(response)
        return response.content

    def inclusion_proof(self, event_id: str, size: int | None = None) -> InclusionProof:
        """``GET /v1/events/{event_id}/proof``, for tree ``size`` (default: the checkpoint's)."""
        params = {} if size is None else {"size": size}
        response = self._request(
            "GET", f"/v1/events/{quote(event_id, safe='')}/proof", params=params
        )
        return parse_inclusion_proof(self._json(response))

    def consistency_proof(self, first: int, second: int) -> ConsistencyProof:
        """``GET /v1/proofs/consistency?from=first&to=second``."""
        response = self._request(
            "GET", "/v1/proofs/consistency", params={"from": first, "to": second}
        )
        return parse_consistency_proof(self._json(response))

    def export(
        self,
        sink: BinaryIO,
        *,
        start: int = 0,
        end: int | None = None,
        on_chunk: Callable[[bytes], None] | None = None,
    ) -> int:
        """Stream ``GET /v1/export`` (heights ``start``..``end``, inclusive) into ``sink``.

        Args:
            sink: where the NDJSON goes, chunk by chunk (never held in memory whole).
            start: the first block height.
            end: the last block height (default: the node's head).
            on_chunk: called with every chunk written (for a progress display).

        Returns:
            The number of bytes written.
        """
        params: dict[str, int] = {"from": start}
        if end is not None:
            params["to"] = end
        written = 0
        try:
            request = self._build("GET", "/v1/export", params=params)
            with contextlib.closing(self._http.send(request, stream=True)) as response:
                if response.status_code >= 400:
                    response.read()
                    self._refuse_if_error(response)
                for chunk in response.iter_bytes():
                    sink.write(chunk)
                    written += len(chunk)
                    if on_chunk is not None:
                        on_chunk(chunk)
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise NodeUnavailableError(f"the export from {self.url} failed: {e}") from e
        return written

    # --- verified reading --------------------------------------------------------------------

    def verified_checkpoint(self, genesis: GenesisDocument) -> TrustedCheckpoint:
        """The node's checkpoint, trusted only if a quorum of ``genesis`` validators signed it.

        Raises:
            EncodingError, SignatureError: see :func:`verify_checkpoint_note`.
        """
        return verify_checkpoint_note(self.checkpoint(), genesis)

    def prove_event(
        self, event_id: str, genesis: GenesisDocument, *, wait: float = 10.0
    ) -> ProvenEvent:
        """Fetch an event, a trusted checkpoint and an inclusion proof, and check them here.

        A checkpoint may lag the head by a block, so a just-committed event is waited for
        (up to ``wait`` seconds) until a cosigned checkpoint covers it.

        Raises:
            RefusedError: the node does not know the event (``404``), or the event needs a
                signed request (``401``) by a key whose member may read it (``403``).
            SignatureError: the checkpoint lacks a quorum of valid validator signatures.
            ProofError: the event is not covered by a checkpoint within ``wait`` seconds, or
                its proof does not verify (see :func:`verify_event_inclusion`).
            EncodingError: a malformed answer.
        """
        deadline = time.monotonic() + wait
        while True:
            trusted = self.verified_checkpoint(genesis)
            event = self.event(event_id)
            index = event.get("index")
            if type(index) is int and index < trusted.size:
                break
            if time.monotonic() >= deadline:
                where = "is still pending" if index is None else f"is at index {index}"
                raise ProofError(
                    f"event {event_id} {where}, not yet in a cosigned checkpoint "
                    f"(the newest has tree size {trusted.size}); try again shortly"
                )
            time.sleep(_POLL_SECONDS)
        proof = self.inclusion_proof(event_id, trusted.size)
        envelope = verify_event_inclusion(event_id, event.get("envelope"), proof, trusted)
        height = event.get("height")
        return ProvenEvent(
            envelope=envelope,
            index=proof.index,
            height=height if type(height) is int else None,
            checkpoint=trusted,
            proof=proof,
        )

    # --- writing -----------------------------------------------------------------------------

    def submit(
        self, envelopes: Sequence[Envelope], *, wait: bool = True, timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        """Submit a batch; with ``wait`` the answer comes once every event is committed.

        Returns:
            ``[{event_id, status, height?, index?}]`` in submission order; ``status`` is
            ``pending`` for an event not committed (yet, or within ``timeout`` when waiting).

        Raises:
            RefusedError: the batch was refused (nothing was admitted).
        """
        params: dict[str, Any] = {"wait": "commit", "timeout": timeout} if wait else {}
        response = self._request(
            "POST",
            "/v1/events",
            params=params,
            json={"events": [e.to_json() for e in envelopes]},
            timeout=timeout + 10 if wait else httpx.USE_CLIENT_DEFAULT,
        )
        events = self._object(response).get("events")
        if type(events) is not list or not all(type(e) is dict for e in events):
            raise EncodingError(f"{self.url} answered a submission without its events")
        return events

    def capture_epcis(
        self,
        document: bytes,
        signers: Sequence[Ed25519PrivateKey],
        *,
        wait: bool = True,
        created_at: _dt.datetime | None = None,
    ) -> list[tuple[CapturedEvent, dict[str, Any]]]:
        """Map an EPCIS 2.0 document to ledger events, sign them here and submit them.

        The mapping is :func:`node.epcis.capture_bodies` (all or nothing); the GTINs and units
        the document states are checked against the node's lots first
        (:func:`check_captured_lots`).

        Args:
            document: the ``EPCISDocument`` JSON bytes.
            signers: the keys that sign every event (a clerk's or producer's).
            wait: wait until every event is committed.
            created_at: the events' ``created_at`` (default: now, to the second).

        Returns:
            Each captured event with the node's answer for it, in document order.

        Raises:
            EpcisError: an event that cannot be mapped, or a GTIN or unit that does not fit.
            EncodingError: the document is not strict JSON.
            RefusedError: the node refused the batch (nothing was admitted).
        """
        network = self.status().get("network")
        if type(network) is not str:
            raise EncodingError(f"{self.url} does not say which network it serves")
        moment = (created_at or _dt.datetime.now(_dt.UTC)).replace(microsecond=0)
        captured = capture_bodies(document, network=network, created_at=format_time(moment))
        check_captured_lots(network, captured, self.lot)
        envelopes = [sign_event(event.body, signers) for event in captured]
        answers = self.submit(envelopes, wait=wait)
        return list(zip(captured, answers, strict=True))
