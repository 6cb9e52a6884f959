"""Alembic environment: migrations run on the connection :func:`node.store.migrate` passes in."""

from __future__ import annotations

from alembic import context

from node.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through node.store.migrate(engine)")
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
