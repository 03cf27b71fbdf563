"""ControlHub (bounded, latest-wins wake-ups) and ControlService (validate, store, notify)."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from cloud.control import ControlHub, ControlPoller, ControlService
from cloud.domain import Purpose, SignalDef
from cloud.errors import InvalidPlan, UnknownTenant, UnknownVehicle
from cloud.store import TenantRegistry
from tests.cloud.conftest import VEHICLE

PLAN = {"name": "p", "signals": [{"signal": "Engine.Speed", "purpose": "diagnostics"}]}


async def test_notify_wakes_every_watcher_of_the_vehicle_only() -> None:
    hub = ControlHub()
    with (
        hub.watch("acme", "car") as first,
        hub.watch("acme", "car") as second,
        hub.watch("acme", "other") as other,
        hub.watch("globex", "car") as foreign,
    ):
        assert hub.notify("acme", "car") == 2
        assert await first.wait(1.0)
        assert await second.wait(1.0)
        assert not await other.wait(0.01)
        assert not await foreign.wait(0.01)
    assert hub.notify("acme", "car") == 0  # watchers are gone with their sessions


async def test_many_notifications_are_one_wake_up() -> None:
    hub = ControlHub()
    with hub.watch("acme", "car") as signal:
        for _ in range(1_000):
            hub.notify("acme", "car")
        assert await signal.wait(1.0)
        signal.clear()
        assert not await signal.wait(0.01)


async def test_notify_from_another_thread() -> None:
    hub = ControlHub()
    with hub.watch("acme", "car") as signal:
        thread = threading.Thread(target=hub.notify, args=("acme", "car"))
        thread.start()
        assert await signal.wait(2.0)
        thread.join()


def test_set_plan_checks_the_catalog_once_the_vehicle_said_hello(
    registry: TenantRegistry,
) -> None:
    service = ControlService(registry)
    # Never said hello: the catalog is unknown, the plan is stored as it is.
    assert service.set_plan("acme", VEHICLE, PLAN) == 1
    registry.store("acme").register_catalog(
        VEHICLE, "agent", 1, [SignalDef(0, "powertrain", "Engine", "Rpm")]
    )
    with pytest.raises(InvalidPlan, match=r"Engine\.Speed is not in the catalog"):
        service.set_plan("acme", VEHICLE, PLAN)
    renamed = {"name": "p", "signals": [{"signal": "Engine.Rpm", "purpose": "diagnostics"}]}
    assert service.set_plan("acme", VEHICLE, json.dumps(renamed)) == 2
    status = service.vehicle_status("acme", VEHICLE)
    assert status.plan is not None
    assert status.plan.version == 2


def test_set_consent_and_errors(registry: TenantRegistry) -> None:
    service = ControlService(registry)
    assert service.set_consent("acme", VEHICLE, [Purpose.ANALYTICS, Purpose.ANALYTICS]) == 1
    assert service.vehicle_status("acme", VEHICLE).consent.purposes == {Purpose.ANALYTICS}
    with pytest.raises(InvalidPlan, match="unknown consent purpose 'ads'"):
        service.set_consent("acme", VEHICLE, ["ads"])  # type: ignore[list-item]
    with pytest.raises(UnknownVehicle):
        service.set_plan("acme", "ghost", PLAN)
    with pytest.raises(UnknownTenant):
        service.set_consent("initech", VEHICLE, [])


async def test_the_service_notifies_through_its_hub(registry: TenantRegistry) -> None:
    hub = ControlHub()
    service = ControlService(registry, hub)
    with hub.watch("acme", VEHICLE) as signal:
        await asyncio.to_thread(service.set_consent, "acme", VEHICLE, [])
        assert await signal.wait(2.0)
        signal.clear()
        await asyncio.to_thread(service.set_plan, "acme", VEHICLE, PLAN)
        assert await signal.wait(2.0)


async def test_the_poller_wakes_only_sessions_whose_versions_changed(
    registry: TenantRegistry,
) -> None:
    store = registry.store("acme")
    store.enroll_vehicles(["car-2", "car-3"])
    hub = ControlHub()
    poller = ControlPoller(registry, hub, seconds=3600)
    with (
        hub.watch("acme", VEHICLE) as changed,
        hub.watch("acme", "car-2") as same,
        hub.watch("acme", "car-3") as unread,
    ):
        changed.seen = same.seen = (0, 0)  # what each session read
        # Changed by another process: no notify reaches this hub.
        await asyncio.to_thread(store.add_plan, VEHICLE, "elsewhere", {"name": "elsewhere"})
        await asyncio.to_thread(store.add_plan, "car-3", "elsewhere", {"name": "elsewhere"})
        assert await poller.poll() == 1
        assert await changed.wait(1.0)
        assert not await same.wait(0.01)
        assert not await unread.wait(0.01)  # it reads the store anyway before waiting
        changed.seen = (1, 0)
        assert await poller.poll() == 0


async def test_a_polled_hub_is_marked_while_its_poller_runs(registry: TenantRegistry) -> None:
    hub = ControlHub()
    task = asyncio.create_task(ControlPoller(registry, hub, seconds=0.01).run())
    await asyncio.sleep(0.05)
    assert hub.polled
    task.cancel()
    await asyncio.wait([task])
    assert not hub.polled


async def test_the_poller_goes_on_after_an_unexpected_error(
    registry: TenantRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    hub = ControlHub()
    poller = ControlPoller(registry, hub, seconds=0.01)
    calls = 0
    recovered = asyncio.Event()
    real_poll = poller.poll

    async def flaky() -> int:  # the first poll meets a bug, the next ones work
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        recovered.set()
        return await real_poll()

    poller.poll = flaky  # type: ignore[method-assign]
    task = asyncio.create_task(poller.run())
    try:
        async with asyncio.timeout(5):
            await recovered.wait()
        assert hub.polled
        assert poller.errors == 1
        assert "control poll failed" in caplog.text
    finally:
        task.cancel()
        await asyncio.wait([task])
