"""Alembic environment.

Nodes migrate through :func:`node.store.migrate`, which passes its open connection in
``config.attributes["connection"]``. From the command line (``alembic -x url=sqlite:///n.db
upgrade head``, or ``alembic revision --autogenerate -m ...`` while developing) the URL comes
from ``-x url=...`` or ``sqlalchemy.url`` in ``alembic.ini``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from node.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is not None:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give a database: alembic -x url=sqlite:///node.db upgrade head")
    with create_engine(url).connect() as own_connection:
        context.configure(connection=own_connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
        own_connection.commit()
