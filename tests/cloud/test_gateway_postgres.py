"""The gateway's contract on a PostgreSQL tenant store: acks after the COPY's commit, dedup.

The tests are those of ``test_gateway`` (imported, so they run here again),
with tenant ``acme`` in PostgreSQL instead of a SQLite file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.config import CloudSettings, TenantSettings
from tests.cloud.conftest import SECRET_ACME, SECRET_GLOBEX, make_settings
from tests.cloud.test_gateway import (
    test_ack_comes_only_after_the_batch_is_committed,
    test_empty_batch_is_acknowledged,
    test_happy_path_stores_exactly_what_was_sent,
    test_resent_batches_are_acknowledged_as_duplicates,
    test_two_streams_of_one_vehicle_store_each_sequence_once,
)

pytestmark = pytest.mark.postgres

__all__ = [
    "test_ack_comes_only_after_the_batch_is_committed",
    "test_empty_batch_is_acknowledged",
    "test_happy_path_stores_exactly_what_was_sent",
    "test_resent_batches_are_acknowledged_as_duplicates",
    "test_two_streams_of_one_vehicle_store_each_sequence_once",
]


@pytest.fixture
def settings(tmp_path: Path, postgres_tenant_url: str) -> CloudSettings:
    return make_settings(
        tmp_path / "data",
        tenants={
            "acme": TenantSettings(token_secret=SECRET_ACME, database_url=postgres_tenant_url),
            "globex": TenantSettings(token_secret=SECRET_GLOBEX),
        },
    )
