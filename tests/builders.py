"""Builders for tests of the supply-chain rules: signed events applied to an in-memory state.

:class:`World` wraps a :class:`~ledger.rules.StateMachine` over a
:class:`~ledger.state.MemoryState`. It signs events with deterministic keys named by *labels*
(a member's label is its member id, ``"koperasi-karet/budi"``; the genesis governance admin's is
:data:`GOVERNANCE`), keeps the log index (it advances only when an event is accepted, as an
invalid event never enters a block) and applies every event at one fixed block time.
:func:`fixture_world` builds a small cooperative supply chain in Kalimantan Barat to start from.

What it does not do: build blocks, verify signatures (the rules assume verified envelopes), or
hide refusals: :meth:`World.apply` lets :class:`~ledger.errors.RuleViolation` through untouched.
Keys are derived from a public seed; never use them outside tests.
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import hashlib
from collections.abc import Sequence
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.blocks import GenesisDocument, parse_genesis
from ledger.events import Envelope, sign_event
from ledger.keys import key_id, public_key_bytes
from ledger.rules import StateMachine, genesis_effects
from ledger.state import Effects, MemoryState, state_digest
from rantai.samplechain import derive_key, sample_network

__all__ = [
    "BLOCK_TIME",
    "CREATED_AT",
    "GOVERNANCE",
    "NETWORK",
    "World",
    "fixture_world",
    "make_genesis",
    "private_key",
    "profile_hash",
    "public_key_hex",
    "signing_key_id",
]

SEED: Final = b"rantai-sample"
"""The seed of :func:`rantai.samplechain.sample_network`; every label's key derives from it."""
NETWORK: Final = "kalbar-coop"
BLOCK_TIME: Final = _dt.datetime(2026, 11, 29, 3, 0, tzinfo=_dt.UTC)
"""The time of the one block every :class:`World` event is applied in."""
CREATED_AT: Final = "2026-11-29T03:00:00Z"
"""The default ``created_at`` of built events (equal to :data:`BLOCK_TIME`)."""
GOVERNANCE: Final = "governance"
"""The label of the sample network's one governance admin key."""


@functools.cache
def private_key(label: str) -> Ed25519PrivateKey:
    """The deterministic Ed25519 key of ``label`` (the same as ``sample_network().key(label)``)."""
    return derive_key(SEED, label)


def public_key_hex(label: str) -> str:
    """The raw public key of ``label`` in lowercase hex, as payloads carry it."""
    return public_key_bytes(private_key(label)).hex()


def signing_key_id(label: str) -> str:
    """The key id (``sha256`` of the raw public key, hex) of ``label``."""
    return key_id(public_key_bytes(private_key(label)))


def profile_hash(text: str) -> str:
    """A stand-in for the salted hash of a member's off-ledger profile."""
    return hashlib.sha256(b"profile:" + text.encode()).hexdigest()


def make_genesis(governance: Sequence[str] = (GOVERNANCE,), threshold: int = 1) -> GenesisDocument:
    """The sample network's genesis document with other governance admins.

    Args:
        governance: labels of the governance admin keys, in genesis order.
        threshold: how many of them must sign ``org.register``.
    """
    document = copy.deepcopy(sample_network().genesis.document)
    document["governance"] = {
        "admins": [public_key_hex(label) for label in governance],
        "threshold": threshold,
    }
    return parse_genesis(document)


class World:
    """A ledger state built event by event, with the keys to sign more events.

    Attributes:
        genesis: the network's genesis document.
        memory: the state (read it; change it only through :meth:`apply`).
        machine: the state machine applying events to ``memory``.
        index: the log index the next accepted event gets.
        applied: every accepted envelope, in log order.
    """

    def __init__(self, genesis: GenesisDocument | None = None) -> None:
        self.genesis = genesis if genesis is not None else make_genesis()
        self.memory = MemoryState()
        self.memory.apply(genesis_effects(self.genesis))
        self.machine = StateMachine(self.genesis, self.memory)
        self.index = 0
        self.applied: list[Envelope] = []
        self._nonces = 0

    def digest(self) -> str:
        """The state digest (:func:`ledger.state.state_digest`) of ``memory``."""
        return state_digest(self.memory.entities())

    def envelope(
        self,
        kind: str,
        payload: dict[str, Any],
        signers: Sequence[str],
        *,
        created_at: str = CREATED_AT,
        network: str | None = None,
        nonce: str | None = None,
    ) -> Envelope:
        """A signed event, not applied; each call gets a fresh nonce unless one is given.

        Args:
            kind: the event type, e.g. ``"lot.create"``.
            payload: the type's payload (used as given, not copied).
            signers: labels of the signing keys (see :func:`private_key`).
            created_at: the signer's clock.
            network: the network id; the genesis network when omitted.
            nonce: the body's nonce.
        """
        if nonce is None:
            self._nonces += 1
            nonce = f"n-{self._nonces}"
        body = {
            "v": 1,
            "network": self.genesis.network if network is None else network,
            "type": kind,
            "nonce": nonce,
            "created_at": created_at,
            "payload": payload,
        }
        return sign_event(body, [private_key(label) for label in signers])

    def apply(self, envelope: Envelope) -> Effects:
        """Apply ``envelope`` at the next log index in the block at :data:`BLOCK_TIME`.

        Raises:
            RuleViolation: the event is refused; the state and ``index`` are unchanged.
        """
        effects = self.machine.apply(envelope, self.index, BLOCK_TIME)
        self.index += 1
        self.applied.append(envelope)
        return effects

    def submit(self, kind: str, payload: dict[str, Any], signers: Sequence[str]) -> Effects:
        """Sign an event and apply it (see :meth:`envelope` and :meth:`apply`)."""
        return self.apply(self.envelope(kind, payload, signers))

    def register_org(
        self,
        org_id: str,
        name: str,
        kind: str,
        *,
        admins: int = 1,
        signers: Sequence[str] = (GOVERNANCE,),
    ) -> None:
        """``org.register`` with admins ``<org_id>/admin-1`` … (each keyed by its member id)."""
        keys = [public_key_hex(f"{org_id}/admin-{n}") for n in range(1, admins + 1)]
        payload = {"org_id": org_id, "name": name, "kind": kind, "admins": keys}
        self.submit("org.register", payload, signers)

    def register_member(self, member_id: str, role: str, *, signer: str | None = None) -> None:
        """``member.register`` with the key labelled ``member_id``, by ``<org>/admin-1``."""
        org_id = member_id.split("/", 1)[0]
        payload = {
            "member_id": member_id,
            "role": role,
            "public_keys": [public_key_hex(member_id)],
            "profile_hash": profile_hash(member_id),
        }
        self.submit("member.register", payload, [signer or f"{org_id}/admin-1"])

    def register_plot(
        self,
        plot_id: str,
        member_id: str,
        commodity: str,
        area_ha: str,
        geometry: dict[str, Any],
        *,
        signer: str | None = None,
    ) -> None:
        """``plot.register``, by ``<org>/admin-1`` unless another signer is given."""
        payload = {
            "plot_id": plot_id,
            "member_id": member_id,
            "commodity": commodity,
            "area_ha": area_ha,
            "geometry": geometry,
        }
        self.submit("plot.register", payload, [signer or f"{member_id.split('/')[0]}/admin-1"])

    def create_lot(
        self,
        lot_id: str,
        producer: str,
        commodity: str,
        quantity: str,
        *,
        uom: str = "kg",
        plot_id: str | None = None,
        harvested_on: str = "2026-11-20",
        signer: str | None = None,
    ) -> None:
        """``lot.create``, signed by the producer unless another signer is given."""
        payload = {
            "lot_id": lot_id,
            "commodity": commodity,
            "quantity": quantity,
            "uom": uom,
            "producer": producer,
            "harvested_on": harvested_on,
        }
        if plot_id is not None:
            payload["plot_id"] = plot_id
        self.submit("lot.create", payload, [signer or producer])

    def ship(self, lot_id: str, shipment_id: str, to: str, *, signer: str) -> None:
        """``lot.ship`` of the whole lot to party ``to``."""
        payload = {"lot_id": lot_id, "shipment_id": shipment_id, "to": to}
        self.submit("lot.ship", payload, [signer])

    def receive(self, lot_id: str, shipment_id: str, quantity: str, *, signer: str) -> None:
        """``lot.receive`` of ``quantity`` (the shortfall is recorded as loss)."""
        payload = {"lot_id": lot_id, "shipment_id": shipment_id, "quantity_received": quantity}
        self.submit("lot.receive", payload, [signer])


def fixture_world(genesis: GenesisDocument | None = None) -> World:
    """A small supply chain (20 events, log indexes 0-19) to test events against.

    Organisations (one admin each, ``<org>/admin-1``): ``koperasi-karet`` and ``koperasi-kopi``
    (cooperatives), ``pengolah-kalbar`` (processor), ``eu-buyer`` (buyer), ``auditor-kalbar``
    (auditor). Members: ``koperasi-karet/clerk``, ``koperasi-kopi/clerk`` and
    ``pengolah-kalbar/clerk`` (clerks); ``koperasi-karet/budi``, ``koperasi-karet/ani`` and
    ``koperasi-kopi/siti`` (producers); ``eu-buyer/anna`` (buyer); ``auditor-kalbar/dewi``
    (auditor).

    Plots: ``PLOT-BUDI-1`` (rubber, 1.5 ha, Point), ``PLOT-ANI-1`` (rubber, 6.25 ha, Polygon),
    ``PLOT-SITI-1`` (coffee, 2 ha, Point). Active lots, all in ``kg``: ``RB-BUDI-1`` (rubber,
    500, signed by budi), ``RB-BUDI-2`` (rubber, 300.5, recorded by the karet clerk),
    ``RB-ANI-1`` (rubber, 250), ``KP-SITI-1`` (coffee, 1200, recorded by the kopi clerk).

    Args:
        genesis: the genesis document; :func:`make_genesis` when omitted. Its governance admins
            must include the :data:`GOVERNANCE` key with threshold 1.
    """
    world = World(genesis)
    world.register_org("koperasi-karet", "Koperasi Karet Sanggau Jaya", "cooperative")
    world.register_org("koperasi-kopi", "Koperasi Kopi Liberika Kayong", "cooperative")
    world.register_org("pengolah-kalbar", "PT Pengolahan Karet Kalbar", "processor")
    world.register_org("eu-buyer", "EU Buyer GmbH", "buyer")
    world.register_org("auditor-kalbar", "Lembaga Sertifikasi Kalbar", "auditor")
    world.register_member("koperasi-karet/clerk", "clerk")
    world.register_member("koperasi-karet/budi", "producer")
    world.register_member("koperasi-karet/ani", "producer")
    world.register_member("koperasi-kopi/clerk", "clerk")
    world.register_member("koperasi-kopi/siti", "producer")
    world.register_member("pengolah-kalbar/clerk", "clerk")
    world.register_member("eu-buyer/anna", "buyer")
    world.register_member("auditor-kalbar/dewi", "auditor")
    world.register_plot(
        "PLOT-BUDI-1",
        "koperasi-karet/budi",
        "rubber",
        "1.5",
        {"type": "Point", "coordinates": [110.5912345, 0.1234567]},
        signer="koperasi-karet/clerk",
    )
    ring = [
        [110.6101234, 0.0901234],
        [110.6123234, 0.0901234],
        [110.6123234, 0.0929834],
        [110.6101234, 0.0929834],
        [110.6101234, 0.0901234],
    ]
    world.register_plot(
        "PLOT-ANI-1",
        "koperasi-karet/ani",
        "rubber",
        "6.25",
        {"type": "Polygon", "coordinates": [ring]},
    )
    world.register_plot(
        "PLOT-SITI-1",
        "koperasi-kopi/siti",
        "coffee",
        "2",
        {"type": "Point", "coordinates": [109.9876543, -1.0123456]},
    )
    world.create_lot("RB-BUDI-1", "koperasi-karet/budi", "rubber", "500", plot_id="PLOT-BUDI-1")
    world.create_lot(
        "RB-BUDI-2",
        "koperasi-karet/budi",
        "rubber",
        "300.5",
        plot_id="PLOT-BUDI-1",
        harvested_on="2026-11-21",
        signer="koperasi-karet/clerk",
    )
    world.create_lot(
        "RB-ANI-1",
        "koperasi-karet/ani",
        "rubber",
        "250",
        plot_id="PLOT-ANI-1",
        harvested_on="2026-11-22",
    )
    world.create_lot(
        "KP-SITI-1",
        "koperasi-kopi/siti",
        "coffee",
        "1200",
        plot_id="PLOT-SITI-1",
        harvested_on="2026-11-18",
        signer="koperasi-kopi/clerk",
    )
    return world
