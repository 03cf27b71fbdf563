"""The spine end to end into PostgreSQL: real recordings, agent, gateway, COPY into partitions.

The comparison with an independent decode of ``tests/test_end_to_end.py``
(imported, so it runs here again) with the tenant's store in PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.config import CloudSettings, TenantSettings
from tests.conftest import E2E_SECRET, E2E_TENANT
from tests.test_end_to_end import test_stored_samples_equal_an_independent_decode

pytestmark = pytest.mark.postgres

__all__ = ["test_stored_samples_equal_an_independent_decode"]


@pytest.fixture
def settings(tmp_path: Path, postgres_tenant_url: str) -> CloudSettings:
    return CloudSettings(
        listen="127.0.0.1:0",
        data_dir=tmp_path,
        tenants={
            E2E_TENANT: TenantSettings(token_secret=E2E_SECRET, database_url=postgres_tenant_url)
        },
    )
