"""SQLAlchemy models of a node's database. Only :mod:`node.store` and the migrations use them.

Tables:
  * ``meta``: the genesis document and other one-off values, by key;
  * ``blocks``: one row per committed block: canonical header bytes, certificate;
  * ``events``: one row per log entry: its global index, id, block and Merkle leaf bytes
    (``JCS(envelope)`` with sorted signatures, from which the envelope is rebuilt);
  * ``merkle_nodes``: the hash of every perfect subtree of the log, keyed by
    :func:`node_key` ``(level, index)``, so any proof costs O(log n) reads.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "BlockRow", "EventRow", "MerkleNodeRow", "MetaRow", "node_key"]

_LEVEL_BITS = 6


def node_key(level: int, index: int) -> int:
    """The primary key of Merkle node ``(level, index)``: ``index << 6 | level``."""
    return (index << _LEVEL_BITS) | level


class Base(DeclarativeBase):
    """Declarative base of the node's schema."""


class MetaRow(Base):
    """One-off values: ``genesis`` (the genesis document's JSON)."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class BlockRow(Base):
    """A committed block."""

    __tablename__ = "blocks"

    height: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    block_hash: Mapped[str] = mapped_column(String(64), unique=True)
    header: Mapped[bytes] = mapped_column(LargeBinary)
    commit: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    first_index: Mapped[int] = mapped_column(BigInteger)
    event_count: Mapped[int] = mapped_column(Integer)


class EventRow(Base):
    """A committed event at its global log index."""

    __tablename__ = "events"

    index: Mapped[int] = mapped_column("idx", BigInteger, primary_key=True, autoincrement=False)
    event_id: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    height: Mapped[int] = mapped_column(BigInteger, ForeignKey("blocks.height"), index=True)
    leaf: Mapped[bytes] = mapped_column(LargeBinary)


class MerkleNodeRow(Base):
    """The hash of one perfect subtree of the log."""

    __tablename__ = "merkle_nodes"

    key: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))
