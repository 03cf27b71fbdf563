"""Looking into PostgreSQL's catalog: the partitions of ``samples`` and what they hold."""

from __future__ import annotations

from sqlalchemy import Engine, text


def partitions(engine: Engine) -> dict[str, str]:
    """Every partition of samples with its bounds, as PostgreSQL describes them."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'samples'::regclass"
            )
        )
        return {str(name): str(bound) for name, bound in rows}


def partition_counts(engine: Engine) -> dict[str, int]:
    """How many samples each partition holds (only the ones holding some)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT tableoid::regclass::text, count(*) FROM samples GROUP BY 1")
        )
        return {str(name): int(count) for name, count in rows}
