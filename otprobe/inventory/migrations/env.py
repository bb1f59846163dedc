"""Alembic's entry point: migrate the connection `otprobe.inventory.database.upgrade` passes in.

Run by hand (`alembic` with `-x url=...`), it opens that URL instead; there is no alembic.ini to read one from.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from otprobe.inventory.schema import metadata


def _migrate(connection: object) -> None:
    # render_as_batch: SQLite alters a table by copying it, which batch mode does; PostgreSQL alters in place
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _migrate(connection)
else:
    with create_engine(context.get_x_argument(as_dictionary=True)["url"]).connect() as opened:
        _migrate(opened)
