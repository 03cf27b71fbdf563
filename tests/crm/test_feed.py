"""The CRM on the event bus: rule events published on a tenant's events subjects open
leads through ``LeadFeed`` (in-process bus), each once."""

from __future__ import annotations

from cloud.events import MemoryBus, RuleEvent
from cloud.events.envelope import encode
from crm.feed import LeadFeed
from crm.leads import LeadService
from crm.store import CrmStores
from tests.cloud.events.conftest import eventually
from tests.crm.conftest import World
from tests.crm.test_service_loop import fault


def envelope(kind: str = "fault_set", event_id: str | None = None) -> RuleEvent:
    event = fault()
    return RuleEvent(
        tenant="acme", vehicle_id=event.vehicle_id, id=event_id or event.id, event=kind,
        ts_us=event.ts_us, severity=event.severity.value, details=event.details,
    )  # fmt: skip


async def test_rule_events_on_the_bus_open_one_lead(stores: CrmStores, world: World) -> None:
    async with MemoryBus() as bus:
        feed = LeadFeed(bus, LeadService(stores))
        await feed.start(["acme", "globex"])
        opened = envelope()
        for message in (opened, opened, envelope("trip_ended", "t" * 32)):
            await bus.publish(f"telehub.acme.events.{message.event}", encode(message),
                              msg_id=message.id)  # fmt: skip
        await bus.publish("telehub.acme.events.fault_set", b"not json", msg_id="junk")
        await eventually(lambda: feed.handled + feed.skipped == 3)
    assert (feed.handled, feed.skipped) == (2, 1)
    leads = world.get("/v1/leads", world.dealer).json()["items"]
    assert [(lead["kind"], lead["state"]) for lead in leads] == [("fault_set", "open")]
