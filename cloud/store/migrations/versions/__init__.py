"""One Alembic script per revision of the tenant store's schema (Alembic skips this file)."""
