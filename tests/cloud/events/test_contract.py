"""The EventBus contract, run against the in-process bus and against NATS JetStream."""

from __future__ import annotations

import asyncio

import pytest

from cloud.errors import BusFull, InvalidSubject
from cloud.events import Delivery, Idempotent
from cloud.events.subjects import batches, events, faults, tenant_subjects
from tests.cloud.events.conftest import Buses, Collector, eventually


async def test_a_subscriber_gets_what_is_published_and_it_is_acked(
    buses: Buses, tenant: str
) -> None:
    bus = await buses.open()
    collector = Collector()
    await bus.subscribe(batches(tenant), "reader", collector)
    for n in range(3):
        await bus.publish(batches(tenant), f"m{n}".encode(), msg_id=f"car:{n}")

    seen = await collector.wait_for(3)
    assert [(d.subject, d.msg_id, d.data, d.attempt) for d in seen] == [
        (batches(tenant), f"car:{n}", f"m{n}".encode(), 1) for n in range(3)
    ]
    await eventually(lambda: bus.counters.acked == 3)
    assert bus.counters.published == 3
    assert bus.counters.failed == bus.counters.dead_lettered == 0


async def test_messages_of_one_subject_arrive_in_publish_order(buses: Buses, tenant: str) -> None:
    bus = await buses.open()
    collector = Collector()
    await bus.subscribe(batches(tenant), "ordered", collector)
    for n in range(60):
        await bus.publish(batches(tenant), str(n).encode(), msg_id=str(n))
    await collector.wait_for(60)
    assert collector.data == [str(n).encode() for n in range(60)]


async def test_filters_select_subjects_and_tenants_never_mix(buses: Buses, tenant: str) -> None:
    bus = await buses.open()
    other = f"{tenant}x"
    only_events, everything, other_tenant = Collector(), Collector(), Collector()
    await bus.subscribe(f"telehub.{tenant}.events.>", "rules", only_events)
    await bus.subscribe(tenant_subjects(tenant), "audit", everything)
    await bus.subscribe(batches(other), "elsewhere", other_tenant)
    try:
        await bus.publish(batches(tenant), b"batch", msg_id="1")
        await bus.publish(faults(tenant), b"faults", msg_id="2")
        await bus.publish(events(tenant, "trip_end"), b"trip", msg_id="3")

        await everything.wait_for(3)
        await only_events.wait_for(1)
        assert everything.data == [b"batch", b"faults", b"trip"]
        assert only_events.data == [b"trip"]
        await asyncio.sleep(0.3)
        assert only_events.data == [b"trip"]
        assert other_tenant.seen == []
    finally:
        if buses.kind == "nats":
            from cloud.events.jetstream import NatsBus

            assert isinstance(bus, NatsBus)
            await bus.remove_tenant(other)


async def test_a_failing_handler_gets_the_message_again(buses: Buses, tenant: str) -> None:
    bus = await buses.open(max_deliver=5)

    async def flaky(delivery: Delivery) -> None:
        if delivery.data == b"flaky" and delivery.attempt < 3:
            raise RuntimeError("database hiccup")

    collector = Collector(flaky)
    await bus.subscribe(batches(tenant), "retrying", collector)
    await bus.publish(batches(tenant), b"flaky", msg_id="a")
    await bus.publish(batches(tenant), b"fine", msg_id="b")

    await collector.wait_for(4)
    flaky_attempts = [d.attempt for d in collector.seen if d.data == b"flaky"]
    assert flaky_attempts == [1, 2, 3]
    await eventually(lambda: bus.counters.acked == 2)
    assert bus.counters.failed == 2
    assert bus.counters.dead_lettered == 0


async def test_a_message_failing_every_attempt_is_dead_lettered_and_others_go_on(
    buses: Buses, tenant: str
) -> None:
    bus = await buses.open(max_deliver=2)

    async def poisoned(delivery: Delivery) -> None:
        if delivery.data == b"poison":
            raise ValueError("cannot handle this one")

    collector = Collector(poisoned)
    await bus.subscribe(batches(tenant), "poisoned", collector)
    await bus.publish(batches(tenant), b"poison", msg_id="p")
    await bus.publish(batches(tenant), b"after", msg_id="q")

    await eventually(lambda: bus.counters.dead_lettered == 1 and bus.counters.acked == 1)
    assert [d.attempt for d in collector.seen if d.data == b"poison"] == [1, 2]
    assert b"after" in collector.data
    await asyncio.sleep(0.3)  # and it is not delivered a third time
    assert [d.data for d in collector.seen].count(b"poison") == 2


async def test_a_durable_consumer_resumes_where_it_stopped(buses: Buses, tenant: str) -> None:
    bus = await buses.open()
    first = Collector()
    subscription = await bus.subscribe(batches(tenant), "resumer", first)
    await bus.publish(batches(tenant), b"one", msg_id="1")
    await first.wait_for(1)
    await eventually(lambda: bus.counters.acked == 1)
    await subscription.close()
    assert not subscription.running()

    # Published while no one is attached: the durable consumer keeps them.
    await bus.publish(batches(tenant), b"two", msg_id="2")
    await bus.publish(batches(tenant), b"three", msg_id="3")
    again = await buses.reopen(bus)
    second = Collector()
    await again.subscribe(batches(tenant), "resumer", second)
    await second.wait_for(2)
    await asyncio.sleep(0.2)
    assert second.data == [b"two", b"three"]
    assert first.data == [b"one"]


async def test_a_handler_cut_short_by_close_leaves_its_message_for_the_next(
    buses: Buses, tenant: str
) -> None:
    bus = await buses.open()
    stuck = asyncio.Event()

    async def hangs(delivery: Delivery) -> None:
        await stuck.wait()  # never set: the handler outlives the drain time

    first = Collector(hangs)
    subscription = await bus.subscribe(batches(tenant), "worker", first)
    await bus.publish(batches(tenant), b"work", msg_id="w")
    await first.wait_for(1)
    await subscription.close()

    again = await buses.reopen(bus)
    second = Collector()
    await again.subscribe(batches(tenant), "worker", second)
    [redelivered] = await second.wait_for(1)
    assert (redelivered.data, redelivered.msg_id, redelivered.attempt) == (b"work", "w", 2)


async def test_close_lets_the_running_handler_finish_and_acks_it(buses: Buses, tenant: str) -> None:
    bus = await buses.open()
    finished: list[bytes] = []

    async def slow(delivery: Delivery) -> None:
        await asyncio.sleep(0.3)
        finished.append(delivery.data)

    collector = Collector(slow)
    subscription = await bus.subscribe(batches(tenant), "slow", collector)
    await bus.publish(batches(tenant), b"slow", msg_id="s")
    await collector.wait_for(1)
    await subscription.close()
    assert finished == [b"slow"]
    assert bus.counters.acked == 1

    again = await buses.reopen(bus)
    later = Collector()
    await again.subscribe(batches(tenant), "slow", later)
    await asyncio.sleep(0.5)
    assert later.seen == []  # acked before the close returned: not delivered again


async def test_closing_the_bus_closes_its_subscriptions(buses: Buses, tenant: str) -> None:
    bus = await buses.open()
    subscription = await bus.subscribe(batches(tenant), "closing", Collector())
    assert subscription.running()
    await bus.close()
    assert not subscription.running()
    await bus.close()  # twice is fine


async def test_a_repeated_message_id_is_delivered_once(buses: Buses, tenant: str) -> None:
    bus = await buses.open()
    collector = Collector()
    await bus.subscribe(batches(tenant), "dedup", collector)
    await bus.publish(batches(tenant), b"first", msg_id="car:7")
    await bus.publish(batches(tenant), b"first", msg_id="car:7")  # a publisher's retry
    await bus.publish(batches(tenant), b"next", msg_id="car:8")
    await collector.wait_for(2)
    await asyncio.sleep(0.2)
    assert collector.data == [b"first", b"next"]
    assert bus.counters.publish_duplicates == 1
    assert bus.counters.published == 2


async def test_the_idempotent_consumer_drops_a_redelivered_message_it_handled(
    buses: Buses, tenant: str
) -> None:
    bus = await buses.open()
    handled: list[bytes] = []

    async def work(delivery: Delivery) -> None:
        handled.append(delivery.data)

    deduped = Idempotent(work)

    async def ack_lost_once(delivery: Delivery) -> None:
        await deduped(delivery)
        if delivery.attempt == 1 and delivery.data == b"once":
            # The work is done but the ack never arrives: the bus delivers it again.
            raise ConnectionError("ack lost")

    collector = Collector(ack_lost_once)
    await bus.subscribe(batches(tenant), "idempotent", collector)
    await bus.publish(batches(tenant), b"once", msg_id="car:1")
    await bus.publish(batches(tenant), b"twice-published", msg_id="car:2")

    await collector.wait_for(3)
    await eventually(lambda: bus.counters.acked == 2)
    assert [d.attempt for d in collector.seen if d.data == b"once"] == [1, 2]
    assert handled == [b"once", b"twice-published"]
    assert deduped.duplicates == 1


async def test_a_full_consumer_refuses_more_instead_of_dropping(buses: Buses, tenant: str) -> None:
    bus = await buses.open(capacity=3)
    release = asyncio.Event()

    async def blocked(delivery: Delivery) -> None:
        await release.wait()

    collector = Collector(blocked)
    await bus.subscribe(batches(tenant), "bounded", collector)
    for n in range(3):
        await bus.publish(batches(tenant), str(n).encode(), msg_id=str(n))
    await collector.wait_for(1)

    with pytest.raises(BusFull):
        await bus.publish(batches(tenant), b"3", msg_id="3")
    assert bus.counters.rejected_full == 1

    release.set()
    await eventually(lambda: bus.counters.acked == 3)
    await bus.publish(batches(tenant), b"3", msg_id="3")  # the retry goes through
    await collector.wait_for(4)
    assert collector.data == [b"0", b"1", b"2", b"3"]


@pytest.mark.parametrize(
    "subject",
    ["telehub.*.batches", "telehub.acme", "other.acme.batches", "telehub.ac.me.batches.>"],
)
async def test_publishing_outside_one_tenant_is_refused(buses: Buses, subject: str) -> None:
    bus = await buses.open()
    with pytest.raises(InvalidSubject):
        await bus.publish(subject, b"x", msg_id="1")


async def test_one_durable_name_cannot_change_its_filter(buses: Buses, tenant: str) -> None:
    bus = await buses.open()
    subscription = await bus.subscribe(batches(tenant), "fixed", Collector())
    await subscription.close()
    with pytest.raises(InvalidSubject, match="fixed"):
        await bus.subscribe(faults(tenant), "fixed", Collector())


async def test_a_new_consumer_starts_with_what_is_published_after_it(
    buses: Buses, tenant: str
) -> None:
    bus = await buses.open()
    await bus.publish(batches(tenant), b"before anyone listened", msg_id="0")
    collector = Collector()
    await bus.subscribe(batches(tenant), "latecomer", collector)
    await bus.publish(batches(tenant), b"after", msg_id="1")
    await collector.wait_for(1)
    await asyncio.sleep(0.2)
    assert collector.data == [b"after"]


async def test_a_consumer_outlives_quiet_periods(buses: Buses, tenant: str) -> None:
    bus = await buses.open()
    collector = Collector()
    subscription = await bus.subscribe(batches(tenant), "patient", collector)
    await bus.publish(batches(tenant), b"first", msg_id="1")
    await collector.wait_for(1)
    await asyncio.sleep(1.0)  # several empty long polls on JetStream (fetch_wait 0.2 s)
    assert subscription.running()
    await bus.publish(batches(tenant), b"later", msg_id="2")
    await collector.wait_for(2)
    assert collector.data == [b"first", b"later"]
