"""Plans, consent, plan status and the vehicle's catalog in the store: SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from cloud.domain import AGENT_DEFAULT_PURPOSES, PlanReport, Purpose, SignalDef
from cloud.errors import UnknownVehicle
from cloud.store import TenantStore

CAR = "car-1"
OTHER = "car-2"
SIGNALS = [SignalDef(0, "powertrain", "Engine", "Speed"), SignalDef(1, "body", "Door", "Open")]


@pytest.fixture
def enrolled(store: TenantStore) -> TenantStore:
    store.enroll_vehicle(CAR)
    store.enroll_vehicle(OTHER)
    return store


def test_plan_versions_count_from_one_per_vehicle(enrolled: TenantStore) -> None:
    store = enrolled
    assert store.newest_plan(CAR) is None
    assert store.control_versions(CAR) == (0, 0)
    assert store.add_plan(CAR, "a", {"name": "a"}) == 1
    assert store.add_plan(CAR, "b", {"name": "b", "signals": []}) == 2
    assert store.add_plan(OTHER, "c", {"name": "c"}) == 1
    plan = store.newest_plan(CAR)
    assert plan is not None
    assert (plan.version, plan.name, dict(plan.document)) == (2, "b", {"name": "b", "signals": []})
    assert store.control_versions(CAR) == (2, 0)


def test_concurrent_plan_writers_get_distinct_versions(enrolled: TenantStore) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        versions = list(pool.map(lambda i: enrolled.add_plan(CAR, f"p{i}", {}), range(12)))
    assert sorted(versions) == list(range(1, 13))


def test_consent_is_the_tenant_default_until_set(enrolled: TenantStore) -> None:
    store = enrolled
    default = store.consent(CAR)
    assert (default.version, default.purposes, default.updated_at) == (
        0,
        AGENT_DEFAULT_PURPOSES,
        None,
    )
    assert store.add_consent(CAR, {Purpose.LOCATION, Purpose.DIAGNOSTICS}) == 1
    assert store.add_consent(CAR, set()) == 2
    consent = store.consent(CAR)
    assert (consent.version, consent.purposes) == (2, frozenset())
    assert consent.updated_at is not None
    assert store.control_versions(CAR) == (0, 2)
    assert store.consent(OTHER).version == 0


def test_a_store_may_have_another_default_consent(store: TenantStore) -> None:
    own = TenantStore(store.engine, default_consent=frozenset({Purpose.ANALYTICS}))
    own.enroll_vehicle(CAR)
    assert own.consent(CAR).purposes == {Purpose.ANALYTICS}
    assert own.default_consent == {Purpose.ANALYTICS}


def test_a_rejection_is_remembered_until_a_newer_plan_runs(enrolled: TenantStore) -> None:
    store = enrolled
    assert store.plan_report(CAR) is None
    store.record_plan_status(CAR, PlanReport(2, "rejected", 3, "unknown signal Foo", 1))
    store.record_plan_status(CAR, PlanReport(2, "active", consent_version=1))
    report = store.plan_report(CAR)
    assert report is not None
    assert (report.running_version, report.state, report.rejected_version, report.reason) == (
        2,
        "active",
        3,
        "unknown signal Foo",
    )
    assert report.reported_at is not None
    store.record_plan_status(CAR, PlanReport(4, "active", consent_version=2))
    report = store.plan_report(CAR)
    assert report is not None
    assert (report.running_version, report.rejected_version, report.reason) == (4, 0, "")
    assert report.consent_version == 2
    assert store.plan_report(OTHER) is None


def test_vehicle_status_gathers_plan_report_and_consent(enrolled: TenantStore) -> None:
    store = enrolled
    store.add_plan(CAR, "a", {"name": "a"})
    store.record_plan_status(CAR, PlanReport(0, "rejected", 1, "bad"))
    status = store.vehicle_status(CAR)
    assert status.plan is not None
    assert status.plan.version == 1
    assert status.reported is not None
    assert status.reported.reason == "bad"
    assert status.consent.version == 0


def test_the_vehicle_catalog_is_what_its_last_hello_registered(enrolled: TenantStore) -> None:
    store = enrolled
    assert store.vehicle_catalog(CAR) is None
    store.register_catalog(CAR, "agent/1.0", 1, SIGNALS)
    assert store.vehicle_catalog(CAR) == [
        ("body", "Door", "Open"),
        ("powertrain", "Engine", "Speed"),
    ]
    # Reconnecting with the same catalog changes nothing; a new catalog replaces it.
    store.register_catalog(CAR, "agent/1.0", 1, SIGNALS)
    store.register_catalog(CAR, "agent/2.0", 2, [SignalDef(4, "chassis", "Abs", "Slip")])
    assert store.vehicle_catalog(CAR) == [("chassis", "Abs", "Slip")]
    store.register_catalog(OTHER, "agent/1.0", 3, [])
    assert store.vehicle_catalog(OTHER) == []


def test_control_needs_an_enrolled_vehicle(store: TenantStore) -> None:
    for call in (
        lambda: store.add_plan("ghost", "a", {}),
        lambda: store.add_consent("ghost", set()),
        lambda: store.consent("ghost"),
        lambda: store.vehicle_status("ghost"),
        lambda: store.vehicle_catalog("ghost"),
        lambda: store.record_plan_status("ghost", PlanReport(1, "active")),
    ):
        with pytest.raises(UnknownVehicle):
            call()


def test_versions_of_many_vehicles_at_once(store: TenantStore) -> None:
    fleet = [f"fleet-{i:04d}" for i in range(2_345)]  # more than one query's worth
    store.enroll_vehicles(fleet)
    store.add_plan("fleet-0007", "p", {"name": "p"})
    store.add_plan("fleet-0007", "q", {"name": "q"})
    store.add_consent("fleet-2000", {Purpose.DIAGNOSTICS})
    versions = store.control_versions_of([*fleet, "ghost"])
    assert len(versions) == len(fleet)  # the unknown vehicle is left out
    assert versions["fleet-0007"] == (2, 0)
    assert versions["fleet-2000"] == (0, 1)
    assert versions["fleet-1234"] == (0, 0)
    assert all(versions[v] == store.control_versions(v) for v in fleet[::97])
    assert store.control_versions_of([]) == {}
