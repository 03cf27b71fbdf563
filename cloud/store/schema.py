"""The tenant store's schema: Alembic migrations, applied when a store is opened.

``upgrade_schema`` brings a tenant's database to the newest revision (an
empty database, one made by ``metadata.create_all`` before migrations
existed, or one of an older release alike). It costs one query when the
database is already there. Otherwise it takes the database's schema lock
first (see ``cloud.store.dialect.schema_transaction``), so several gateway
processes starting at once against one PostgreSQL database migrate it once,
and the others wait and find it done.
"""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from cloud.store.dialect import is_sample_partition, schema_transaction

__all__ = [
    "current_revision",
    "downgrade_schema",
    "head_revision",
    "include_name",
    "upgrade_schema",
]

_MIGRATIONS = Path(__file__).with_name("migrations")


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Migrate the database behind ``engine`` to ``revision`` (the newest by default)."""
    target = head_revision() if revision == "head" else revision
    with engine.connect() as conn:
        if current_revision(conn) == target:
            return
    with schema_transaction(engine) as conn:
        command.upgrade(_config(conn), revision)


def downgrade_schema(engine: Engine, revision: str) -> None:
    """Migrate the database behind ``engine`` back to ``revision`` (``"base"``: nothing left)."""
    with schema_transaction(engine) as conn:
        command.downgrade(_config(conn), revision)


def current_revision(conn: Connection) -> str | None:
    """The revision the database is at; ``None`` for one Alembic never migrated."""
    return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest revision this release knows."""
    head = _scripts().get_current_head()
    assert head is not None, "the migrations folder has no revision"
    return head


def include_name(name: str | None, type_: str, _parents: object) -> bool:
    """What schema comparisons look at: a partition of ``samples`` is data, not schema."""
    return not (type_ == "table" and name is not None and is_sample_partition(name))


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config(None))


def _config(conn: Connection | None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = conn
    return config
