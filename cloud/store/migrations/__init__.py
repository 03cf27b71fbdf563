"""Alembic migrations of a tenant's database, shipped with the package.

``cloud.store.schema.upgrade_schema`` applies them whenever a tenant store is
opened; ``env.py`` is Alembic's entry point and ``versions/`` holds one
script per revision. Scripts are written by hand (``compare_metadata`` in the
tests proves that the newest revision builds exactly ``cloud.store.models``),
work on SQLite and PostgreSQL alike, and take what differs from
``cloud.store.dialect``.
"""
