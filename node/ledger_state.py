"""The supply-chain state in the node's database: read it, write effects, replay and compare.

:class:`DatabaseState` answers the rules' point lookups (:class:`ledger.state.StateView`) and the
tracer's bulk lookups (:class:`ledger.trace.LineageView`) with indexed queries, so neither the
state nor a trace ever has to fit in memory. :func:`write_effects` stores what a block changed,
inside the transaction that appends the block (see :meth:`node.store.Store.append_block`).

:func:`replay_log` rebuilds the state from the log alone; :func:`check_state` compares it with
what the database holds (by :func:`ledger.state.state_digest`), and :func:`rebuild_state`
replaces the stored state with the replayed one.
"""

from __future__ import annotations

import contextlib
import json
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ledger.blocks import Block
from ledger.encoding import canonical, parse_json, parse_time
from ledger.errors import StorageError
from ledger.rules import StateMachine, genesis_effects, verify_event_signatures
from ledger.state import (
    Certification,
    Edge,
    Effects,
    KeyRecord,
    Lot,
    LotStep,
    Member,
    MemoryState,
    Org,
    Overlay,
    Plot,
    Shipment,
    edge_id,
    state_digest,
    step_id,
)
from node.models import (
    EdgeRow,
    EpcisEventRow,
    EventRow,
    KeyRow,
    LotRow,
    MemberRow,
    OrgRow,
    PlotRow,
    ShipmentRow,
    StepLotRow,
    StepRow,
    delete_in,
    insert_rows,
    select_in,
)

if TYPE_CHECKING:
    from node.store import Store

__all__ = [
    "CachedState",
    "DatabaseState",
    "StateCheck",
    "apply_block",
    "check_state",
    "rebuild_state",
    "replay_log",
    "write_effects",
]

_STATE_TABLES = (
    EpcisEventRow,
    StepLotRow,
    StepRow,
    EdgeRow,
    ShipmentRow,
    LotRow,
    PlotRow,
    KeyRow,
    MemberRow,
    OrgRow,
)


# --- rows ↔ entities -----------------------------------------------------------------------


def _org(row: OrgRow) -> Org:
    return Org(row.org_id, row.name, row.kind, row.index)


def _member(row: MemberRow) -> Member:
    return Member(row.member_id, row.org_id, row.role, row.profile_hash, row.index)


def _key(row: KeyRow) -> KeyRecord:
    return KeyRecord(row.key_id, row.public_key, row.member_id, row.index, row.revoked_index)


def _plot(row: PlotRow) -> Plot:
    return Plot(
        row.plot_id, row.member_id, row.commodity, row.area_ha, parse_json(row.geometry), row.index
    )


def _lot(row: LotRow) -> Lot:
    return Lot(
        lot_id=row.lot_id,
        commodity=row.commodity,
        quantity=Decimal(row.quantity),
        uom=row.uom,
        owner=row.owner,
        status=row.status,
        index=row.index,
        producer=row.producer,
        plot_id=row.plot_id,
        harvested_on=row.harvested_on,
        gtin=row.gtin,
        shipment_id=row.shipment_id,
        loss=Decimal(row.loss),
        certifications=tuple(Certification(**c) for c in json.loads(row.certifications)),
    )


def _shipment(row: ShipmentRow) -> Shipment:
    return Shipment(
        row.shipment_id,
        row.lot_id,
        row.sender,
        row.to,
        Decimal(row.quantity),
        row.index,
        row.received_index,
        None if row.quantity_received is None else Decimal(row.quantity_received),
    )


def _edge(row: EdgeRow) -> Edge:
    return Edge(row.parent, row.child, Decimal(row.weight), row.index)


def _step(row: StepRow) -> LotStep:
    return LotStep(
        row.index,
        row.event_id,
        row.type,
        tuple(json.loads(row.inputs)),
        tuple(json.loads(row.outputs)),
    )


def _json_list(items: list[Any]) -> str:
    """A list as JSON text (most are empty; ``json.dumps`` costs microseconds per call)."""
    return json.dumps(items) if items else "[]"


def _replace(session: Session, model: Any, key: Any, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (attribute names as keys), replacing rows with the same primary key."""
    if not rows:
        return
    connection = session.connection()
    keys = [row[key.key] for row in rows]
    for start in range(0, len(keys), _MAX_IN):
        delete_in(connection, model, key.key, keys[start : start + _MAX_IN])
    insert_rows(session, model, rows)


def write_effects(session: Session, effects: Effects) -> None:
    """Store ``effects`` in ``session`` (inside the caller's transaction).

    Entity rows carry the same names as the entities' ``to_json`` forms, so those are used
    directly; only nested values (certifications, geometry, lineage lists) become JSON text.
    """
    _replace(session, OrgRow, OrgRow.org_id, [o.to_json() for o in effects.orgs.values()])
    _replace(
        session, MemberRow, MemberRow.member_id, [m.to_json() for m in effects.members.values()]
    )
    _replace(
        session,
        KeyRow,
        KeyRow.key_id,
        [{**k.to_json(), "public_key": k.public_key} for k in effects.keys.values()],
    )
    _replace(
        session,
        PlotRow,
        PlotRow.plot_id,
        [
            {**p.to_json(), "geometry": canonical(p.geometry).decode()}
            for p in effects.plots.values()
        ],
    )
    _replace(
        session,
        LotRow,
        LotRow.lot_id,
        [
            {
                **lot.to_json(),
                "certifications": _json_list([c.to_json() for c in lot.certifications]),
            }
            for lot in effects.lots.values()
        ],
    )
    _replace(
        session,
        ShipmentRow,
        ShipmentRow.shipment_id,
        [s.to_json() for s in effects.shipments.values()],
    )
    if effects.edges:
        insert_rows(session, EdgeRow, [e.to_json() for e in effects.edges])
    if effects.epcis:
        insert_rows(
            session,
            EpcisEventRow,
            [{"epcis_hash": h, "index": i} for h, i in effects.epcis.items()],
        )
    if effects.steps:
        insert_rows(
            session,
            StepRow,
            [
                {
                    **s.to_json(),
                    "inputs": _json_list(list(s.inputs)),
                    "outputs": _json_list(list(s.outputs)),
                }
                for s in effects.steps
            ],
        )
        insert_rows(
            session,
            StepLotRow,
            [{"lot_id": lot_id, "index": s.index} for s in effects.steps for lot_id in s.lots],
        )


# --- reading -------------------------------------------------------------------------------


_MAX_IN = 900
"""The most values one ``IN (…)`` list takes (well below every backend's parameter limit)."""


class _Row(dict[str, Any]):
    """A row by attribute name (``row.index``, ``row.to``), like the ORM object it stands for."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e


def _select_all(model: Any) -> Any:
    """``SELECT`` every column of ``model``, labelled with its attribute name."""
    return select(
        *(getattr(model, attr.key).label(attr.key) for attr in model.__mapper__.column_attrs)
    )


_SELECT_ALL = {
    model: _select_all(model)
    for model in (
        OrgRow,
        MemberRow,
        KeyRow,
        PlotRow,
        LotRow,
        ShipmentRow,
        EdgeRow,
        StepRow,
        EventRow,
        EpcisEventRow,
    )
}


class DatabaseState:
    """The committed state in the database, as a ``StateView`` and a ``LineageView``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def _one(self, model: Any, key: Any, value: str) -> Any:
        return next(iter(self._rows(model, key == value)), None)

    def _many(self, model: Any, key: Any, values: Iterable[Any], order: Any = None) -> list[Any]:
        """Rows whose ``key`` is one of ``values``, sorted by ``order``, in queries of at most
        :data:`_MAX_IN` values sent to the driver as they are (:func:`node.models.select_in`:
        these lookups run for every batch of events a node admits)."""
        wanted = list(dict.fromkeys(values))
        rows: list[Any] = []
        try:
            with self._engine.connect() as connection:
                for start in range(0, len(wanted), _MAX_IN):
                    chunk = wanted[start : start + _MAX_IN]
                    rows.extend(map(_Row, select_in(connection, model, key.key, chunk)))
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read {model.__tablename__}: {e}") from e
        if order is not None:
            rows.sort(key=lambda row: row[order.key])
        return rows

    def _rows(
        self, model: Any, condition: Any, order: Any = None, parameters: Any = None
    ) -> list[Any]:
        """Rows of ``model`` by SQLAlchemy Core (no ORM session: a lookup is on the hot path),
        with the model's attribute names as keys."""
        query = _SELECT_ALL[model].where(condition)
        if order is not None:
            query = query.order_by(order)
        try:
            with self._engine.connect() as connection:
                result = connection.execute(query, parameters)
                return [_Row(row) for row in result.mappings()]
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read {model.__tablename__}: {e}") from e

    def org(self, org_id: str) -> Org | None:
        row = self._one(OrgRow, OrgRow.org_id, org_id)
        return None if row is None else _org(row)

    def orgs(self) -> list[Org]:
        """Every organisation, by id."""
        return [_org(row) for row in self._rows(OrgRow, OrgRow.org_id.is_not(None), OrgRow.org_id)]

    def member(self, member_id: str) -> Member | None:
        row = self._one(MemberRow, MemberRow.member_id, member_id)
        return None if row is None else _member(row)

    def key(self, key_id: str) -> KeyRecord | None:
        row = self._one(KeyRow, KeyRow.key_id, key_id)
        return None if row is None else _key(row)

    def plot(self, plot_id: str) -> Plot | None:
        row = self._one(PlotRow, PlotRow.plot_id, plot_id)
        return None if row is None else _plot(row)

    def lot(self, lot_id: str) -> Lot | None:
        row = self._one(LotRow, LotRow.lot_id, lot_id)
        return None if row is None else _lot(row)

    def shipment(self, shipment_id: str) -> Shipment | None:
        row = self._one(ShipmentRow, ShipmentRow.shipment_id, shipment_id)
        return None if row is None else _shipment(row)

    def epcis_index(self, epcis_hash: str) -> int | None:
        row = self._one(EpcisEventRow, EpcisEventRow.epcis_hash, epcis_hash)
        return None if row is None else int(row.index)

    def event_index(self, event_id: str) -> int | None:
        try:
            key = bytes.fromhex(event_id)
        except ValueError:
            return None
        row = next(iter(self._rows(EventRow, EventRow.event_id == key)), None)
        return None if row is None else int(row.index)

    def parent_edges(self, lot_ids: Iterable[str]) -> list[Edge]:
        return [_edge(r) for r in self._many(EdgeRow, EdgeRow.child, lot_ids, EdgeRow.index)]

    def child_edges(self, lot_ids: Iterable[str]) -> list[Edge]:
        return [_edge(r) for r in self._many(EdgeRow, EdgeRow.parent, lot_ids, EdgeRow.index)]

    def steps_of(self, lot_ids: Iterable[str]) -> list[LotStep]:
        wanted = list(dict.fromkeys(lot_ids))
        if not wanted:
            return []
        touching = select(StepLotRow.index).where(StepLotRow.lot_id.in_(wanted))
        rows = self._rows(StepRow, StepRow.index.in_(touching.scalar_subquery()), StepRow.index)
        return [_step(row) for row in rows]

    def lots(self, lot_ids: Iterable[str]) -> list[Lot]:
        return [_lot(row) for row in self._many(LotRow, LotRow.lot_id, lot_ids)]

    def shipments(self, shipment_ids: Iterable[str]) -> list[Shipment]:
        """The shipments with these ids that exist."""
        rows = self._many(ShipmentRow, ShipmentRow.shipment_id, shipment_ids)
        return [_shipment(row) for row in rows]

    def event_indexes(self, event_ids: Iterable[str]) -> dict[str, int]:
        """The log index of each of these events that is committed."""
        keys = []
        for event_id in event_ids:
            with contextlib.suppress(ValueError):
                keys.append(bytes.fromhex(event_id))
        rows = self._many(EventRow, EventRow.event_id, keys)
        return {row.event_id.hex(): int(row.index) for row in rows}

    def epcis_indexes(self, epcis_hashes: Iterable[str]) -> dict[str, int]:
        """The log index of each of these EPCIS events that was captured."""
        rows = self._many(EpcisEventRow, EpcisEventRow.epcis_hash, epcis_hashes)
        return {row.epcis_hash: int(row.index) for row in rows}

    def shipments_of(self, lot_ids: Iterable[str]) -> list[Shipment]:
        return [_shipment(r) for r in self._many(ShipmentRow, ShipmentRow.lot_id, lot_ids)]

    def entities(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """Every entity in :func:`ledger.state.state_digest` order, streamed from the tables."""
        tables: tuple[tuple[str, Any, Any, Any], ...] = (
            ("org", OrgRow, OrgRow.org_id, _org),
            ("member", MemberRow, MemberRow.member_id, _member),
            ("key", KeyRow, KeyRow.key_id, _key),
            ("plot", PlotRow, PlotRow.plot_id, _plot),
            ("lot", LotRow, LotRow.lot_id, _lot),
            ("shipment", ShipmentRow, ShipmentRow.shipment_id, _shipment),
        )
        with Session(self._engine) as session:
            for kind, model, key, convert in tables:
                # Sorted here, not by the database: SQL collations need not be Python's order.
                rows = sorted(session.scalars(select(model)), key=lambda r: getattr(r, key.key))
                for row in rows:
                    yield kind, getattr(row, key.key), convert(row).to_json()
            edges = sorted((_edge(r) for r in session.scalars(select(EdgeRow))), key=edge_id)
            for edge in edges:
                yield "edge", edge_id(edge), edge.to_json()
            steps = sorted((_step(r) for r in session.scalars(select(StepRow))), key=step_id)
            for step in steps:
                yield "step", step_id(step), step.to_json()
            captured = sorted(session.scalars(select(EpcisEventRow)), key=lambda r: r.epcis_hash)
            for row in captured:
                yield "epcis", row.epcis_hash, {"epcis": row.epcis_hash, "index": row.index}


# --- applying blocks -------------------------------------------------------------------------


def apply_block(store: Store, block: Block) -> Effects:
    """Check a block's events (signatures and rules) and append it with its state changes.

    The block's certificate is the caller's to check (consensus, or a ``ChainVerifier`` during
    catch-up); here every event is checked against the committed state and the earlier events
    of the block, and the block, its events and the state it implies are written atomically.

    Raises:
        RuleViolation: an event breaks the rules (nothing is written).
        SignatureError: an event signature does not verify (nothing is written).
        ChainError: the block does not extend the head.
        StorageError: the database refused the write.
    """
    overlay = Overlay(DatabaseState(store.engine))
    machine = StateMachine(store.genesis, overlay)
    index = store.head().tree_size
    block_time = parse_time(block.header.time)
    for offset, envelope in enumerate(block.events):
        verify_event_signatures(overlay, envelope)
        machine.apply(envelope, index + offset, block_time)
    store.append_block(block, overlay.pending)
    return overlay.pending


# --- replay, check, rebuild ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateCheck:
    """The stored state's digest against the digest of the state replayed from the log."""

    stored: str
    replayed: str

    @property
    def ok(self) -> bool:
        """True when the stored state is exactly what the log implies."""
        return self.stored == self.replayed


def replay_log(store: Store) -> MemoryState:
    """The state the store's log implies, rebuilt in memory from genesis.

    Raises:
        RuleViolation: a stored event breaks the rules (the log itself is corrupt).
    """
    memory = MemoryState()
    memory.apply(genesis_effects(store.genesis))
    machine = StateMachine(store.genesis, memory)
    for block in store.blocks(1, store.head().height):
        index = block.header.tree_size - len(block.events)
        block_time = parse_time(block.header.time)
        for offset, envelope in enumerate(block.events):
            machine.apply(envelope, index + offset, block_time)
    return memory


def check_state(store: Store) -> StateCheck:
    """Compare the stored state with a replay of the log."""
    stored = state_digest(DatabaseState(store.engine).entities())
    replayed = state_digest(replay_log(store).entities())
    return StateCheck(stored, replayed)


def rebuild_state(store: Store) -> StateCheck:
    """Replace the stored state with the replay of the log, in one transaction.

    Raises:
        StorageError: the database refused the rewrite (the old state stays).
    """
    memory = replay_log(store)
    try:
        with Session(store.engine) as session, session.begin():
            for model in _STATE_TABLES:
                session.execute(delete(model))
            write_effects(session, memory.data)
    except SQLAlchemyError as e:
        raise StorageError(f"cannot rebuild the state: {e}") from e
    return check_state(store)


class CachedState:
    """A :class:`DatabaseState` behind bounded, write-through caches (a node's working view).

    The node is the only writer of its state, and every write goes through :meth:`apply` after
    the block's transaction committed, so a cached answer — a missing entity included — is
    never stale. Each cache keeps its most recently used entries, up to ``capacity``.
    """

    def __init__(self, database: DatabaseState, capacity: int = 10_000) -> None:
        self._database = database
        self._capacity = capacity
        self._caches: dict[str, OrderedDict[str, Any]] = {
            kind: OrderedDict()
            for kind in ("org", "member", "key", "plot", "lot", "shipment", "event", "epcis")
        }

    def _get(self, kind: str, identifier: str, load: Any) -> Any:
        cache = self._caches[kind]
        if identifier in cache:
            cache.move_to_end(identifier)
            return cache[identifier]
        value = load(identifier)
        self._put(kind, identifier, value)
        return value

    def _put(self, kind: str, identifier: str, value: Any) -> None:
        cache = self._caches[kind]
        cache[identifier] = value
        cache.move_to_end(identifier)
        if len(cache) > self._capacity:
            cache.popitem(last=False)

    def prefetch(self, event_ids: Iterable[str], named: dict[str, set[str]]) -> None:
        """Read into the caches, one query per kind, whatever of these is not cached yet.

        Args:
            event_ids: events to look up (new ones are not in the log: cached as missing).
            named: ``lot``, ``shipment`` and ``epcis`` ids (see :func:`ledger.rules.named_ids`).
        """
        database = self._database

        def load(kind: str, wanted: Iterable[str], found: dict[str, Any]) -> None:
            for identifier in wanted:
                self._put(kind, identifier, found.get(identifier))

        def missing(kind: str, identifiers: Iterable[str]) -> list[str]:
            """The identifiers not cached; the cached ones become the most recently used, so
            loading the others cannot evict them."""
            cache = self._caches[kind]
            wanted = []
            for identifier in dict.fromkeys(identifiers):
                if identifier in cache:
                    cache.move_to_end(identifier)
                else:
                    wanted.append(identifier)
            return wanted

        if wanted := missing("event", event_ids):
            load("event", wanted, database.event_indexes(wanted))
        if wanted := missing("lot", named.get("lot", ())):
            load("lot", wanted, {lot.lot_id: lot for lot in database.lots(wanted)})
        if wanted := missing("shipment", named.get("shipment", ())):
            found = {s.shipment_id: s for s in database.shipments(wanted)}
            load("shipment", wanted, found)
        if wanted := missing("epcis", named.get("epcis", ())):
            load("epcis", wanted, database.epcis_indexes(wanted))

    def apply(self, effects: Effects) -> None:
        """Take a committed block's effects into the caches."""
        for kind, table in (
            ("org", effects.orgs),
            ("member", effects.members),
            ("key", effects.keys),
            ("plot", effects.plots),
            ("lot", effects.lots),
            ("shipment", effects.shipments),
            ("event", effects.events),
            ("epcis", effects.epcis),
        ):
            for identifier, value in table.items():
                self._put(kind, identifier, value)

    def org(self, org_id: str) -> Org | None:
        return self._get("org", org_id, self._database.org)  # type: ignore[no-any-return]

    def member(self, member_id: str) -> Member | None:
        return self._get("member", member_id, self._database.member)  # type: ignore[no-any-return]

    def key(self, key_id: str) -> KeyRecord | None:
        return self._get("key", key_id, self._database.key)  # type: ignore[no-any-return]

    def plot(self, plot_id: str) -> Plot | None:
        return self._get("plot", plot_id, self._database.plot)  # type: ignore[no-any-return]

    def lot(self, lot_id: str) -> Lot | None:
        return self._get("lot", lot_id, self._database.lot)  # type: ignore[no-any-return]

    def shipment(self, shipment_id: str) -> Shipment | None:
        return self._get(  # type: ignore[no-any-return]
            "shipment", shipment_id, self._database.shipment
        )

    def event_index(self, event_id: str) -> int | None:
        return self._get(  # type: ignore[no-any-return]
            "event", event_id, self._database.event_index
        )

    def epcis_index(self, epcis_hash: str) -> int | None:
        return self._get(  # type: ignore[no-any-return]
            "epcis", epcis_hash, self._database.epcis_index
        )
