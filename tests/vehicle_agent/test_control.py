"""AgentControl: plans and consent applied, rejected, persisted and purged."""

from __future__ import annotations

from pathlib import Path

import pytest

from telehub.v1 import telemetry_pb2 as pb
from vehicle_agent.batching import Batch, Batcher
from vehicle_agent.buffer import BatchBuffer
from vehicle_agent.catalog import DbcSpec
from vehicle_agent.consent import DEFAULT_CONSENT, Purpose
from vehicle_agent.control import AgentControl
from vehicle_agent.decoding import Decoder
from vehicle_agent.outbox import Outbox
from vehicle_agent.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]
DRIVE_DBC = ROOT / "tools" / "demo_data" / "drive-gnss" / "canmod-gps.dbc"


def _plan(version: int, *signals: tuple[str, int], condition: str = "") -> pb.CollectionPlan:
    msg = pb.CollectionPlan(version=version, name=f"plan {version}")
    for name, purpose in signals:
        msg.signals.add(signal=pb.SignalRef(name=name), purpose=purpose)
    if condition:
        msg.triggers.add(name="t", condition=condition, capture=[pb.SignalRef(name="Speed")])
    return msg


def _control(queue: BatchBuffer | Outbox) -> tuple[AgentControl, Pipeline, Decoder]:
    decoder = Decoder([DbcSpec(DRIVE_DBC)])
    control = AgentControl(decoder.catalog, queue)
    pipeline = Pipeline(
        decoder,
        Batcher(decoder.catalog.catalog_id),
        control.plan,
        control.consent,
    )
    control.attach(pipeline, lambda: False)
    return control, pipeline, decoder


async def test_starts_on_the_default_plan_and_consent() -> None:
    control, _, decoder = _control(BatchBuffer())
    assert control.versions() == (0, 0)
    assert control.consent == DEFAULT_CONSENT
    assert control.plan.needed == frozenset(range(len(decoder.catalog)))
    status = control.plan_status()
    assert status.state == pb.PLAN_STATE_ACTIVE
    assert status.plan_version == 0


async def test_a_plan_is_applied_persisted_and_a_bad_one_keeps_the_previous() -> None:
    queue = BatchBuffer()
    control, pipeline, decoder = _control(queue)
    await control.on_plan(_plan(3, ("Speed", pb.PURPOSE_DIAGNOSTICS)))
    speed = decoder.catalog.index_of("can", "gnss_speed", "Speed")
    assert control.versions()[0] == 3
    assert pipeline.plan.needed == {speed}
    assert decoder.selected == frozenset({speed})

    await control.on_plan(_plan(4, ("NoSuchSignal", pb.PURPOSE_DIAGNOSTICS)))
    status = control.plan_status()
    assert status.state == pb.PLAN_STATE_REJECTED
    assert (status.plan_version, status.rejected_version) == (3, 4)
    assert "NoSuchSignal" in status.reason
    assert pipeline.plan.plan.version == 3

    await control.on_plan(_plan(5, ("Speed", pb.PURPOSE_DIAGNOSTICS), condition="Speed >"))
    status = control.plan_status()
    assert (status.plan_version, status.rejected_version) == (3, 5)
    assert status.reason

    await control.on_plan(_plan(2, ("Altitude", pb.PURPOSE_DIAGNOSTICS)))
    assert control.plan_status().rejected_version == 2
    assert "older" in control.plan_status().reason

    # A fresh control on the same queue runs the saved plan before any cloud contact.
    again, _, _ = _control(queue)
    assert again.versions()[0] == 3
    assert again.plan.needed == {speed}


async def test_withdrawing_consent_purges_pending_samples_of_that_purpose(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite") as queue:
        control, _, decoder = _control(queue)
        await control.on_plan(
            _plan(1, ("Speed", pb.PURPOSE_ANALYTICS), ("Satellites", pb.PURPOSE_DIAGNOSTICS))
        )
        speed = decoder.catalog.index_of("can", "gnss_speed", "Speed")
        satellites = decoder.catalog.index_of("can", "gnss_status", "Satellites")
        batch = Batch(decoder.catalog.catalog_id)
        for n in range(10):
            batch.append(speed, n, float(n))
            batch.append(satellites, n, 7.0)
        await queue.put(batch)
        await control.on_consent(pb.ConsentUpdate(version=2, granted=[pb.PURPOSE_DIAGNOSTICS]))
        assert control.consent.granted == {Purpose.DIAGNOSTICS}
        assert queue.stats.purged_samples == 10
        assert control.purged_samples == 10
        left = await queue.next_after(0)
        assert set(left.signal_index) == {satellites}
        # The same version again changes nothing; an older one is ignored.
        await control.on_consent(pb.ConsentUpdate(version=1, granted=[]))
        assert control.consent.version == 2
    with Outbox(tmp_path / "outbox.sqlite") as reopened:
        control, _, _ = _control(reopened)
        assert control.versions() == (1, 2)
        assert control.consent.granted == {Purpose.DIAGNOSTICS}


@pytest.mark.parametrize("purpose", [0, 99])
async def test_a_plan_with_an_unknown_purpose_is_rejected(purpose: int) -> None:
    control, _, _ = _control(BatchBuffer())
    await control.on_plan(_plan(1, ("Speed", purpose)))
    status = control.plan_status()
    assert status.state == pb.PLAN_STATE_REJECTED
    assert "purpose" in status.reason
