"""Alembic's entry point: runs the migrations on the connection ``cloud.store.schema`` hands over.

The caller owns the transaction (and the lock that keeps two processes from
migrating one database at once), so nothing here begins or commits. There is
no offline (SQL script) mode: migrations run against the live database.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from cloud.store.models import Base
from cloud.store.schema import include_name


def _run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if context.is_offline_mode() or not isinstance(_connection, Connection):
    raise RuntimeError("tenant store migrations run through cloud.store.schema.upgrade_schema")
_run_migrations(_connection)
