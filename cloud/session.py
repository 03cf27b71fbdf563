"""One vehicle's stream after authentication: the hello, then two concurrent tasks.

- The reader takes the vehicle's messages in order: batches (stored, then
  acknowledged: an Ack is sent only after the commit), fault-code reports
  (stored, then answered with a ReportAck, also when already stored), health
  reports and plan status (stored, not answered). Message kinds of newer
  agents are skipped.
- The control pusher sends the vehicle's plan and consent when the versions
  in force differ from what the car runs: first right after the Welcome
  (against the hello's versions), then whenever the ``ControlHub`` wakes it:
  a change made in this process, or one the gateway's ``ControlPoller`` found
  (without a poller, every ``control_poll_seconds``). It re-reads the store each time, so only
  the newest version is ever sent. Store failures here are logged and counted
  and retried at the next wake-up: the data path decides the stream's fate.

Between the commit and the Ack (or ReportAck) the ``CommitNotifier``, when
there is one, publishes ``BatchCommitted`` (``FaultsCommitted``) on the event
bus, for a resent duplicate too: a gateway killed after the commit but before
the publish never acked, so the car's resend publishes it then. A publish
that fails is counted by the notifier and never holds the Ack back.

Both put replies into the gateway's bounded reply queue (``send``); a slow
vehicle thus slows its own reader down instead of growing a queue. When the
vehicle closes its side, the reader ends and the pusher is cancelled.
See ``cloud.control`` for the version-0 consent rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from cloud.control import ControlHub, ControlSignal
from cloud.domain import (
    AGENT_DEFAULT_PURPOSES,
    CatalogMap,
    IngestResult,
    SignalDef,
    VehicleIdentity,
)
from cloud.errors import (
    CloudError,
    InvalidPlan,
    NotPermitted,
    ProtocolError,
    StoreError,
    UnknownVehicle,
)
from cloud.events import BatchCommitted, CommitNotifier, FaultChange, FaultsCommitted
from cloud.plans import parse_plan
from cloud.store import TenantRegistry, TenantStore
from cloud.wire import (
    catalog_from_hello,
    consent_to_wire,
    decode_batch,
    decode_fault_report,
    decode_health,
    decode_plan_status,
    plan_to_wire,
)
from telehub.v1 import telemetry_pb2

__all__ = ["VehicleSession"]

logger = logging.getLogger(__name__)

Send = Callable[[telemetry_pb2.CloudMessage], Awaitable[None]]


class VehicleSession:
    """Serves one authenticated stream; ``in_flight`` names the batch being handled."""

    def __init__(
        self,
        identity: VehicleIdentity,
        registry: TenantRegistry,
        send: Send,
        *,
        hub: ControlHub | None,
        max_batch_samples: int,
        control_poll_seconds: float,
        notifier: CommitNotifier | None = None,
    ) -> None:
        self.identity = identity
        self._notifier = notifier
        self._registry = registry
        self._send = send
        self._hub = hub
        self._max_batch_samples = max_batch_samples
        self._poll = control_poll_seconds
        #: Sequence of the batch being validated or stored, 0 between batches.
        self.in_flight = 0
        #: Control pushes that failed on a store error (retried at the next wake-up).
        self.control_errors = 0

    async def run(self, requests: AsyncIterator[telemetry_pb2.VehicleMessage]) -> None:
        """Serve the stream until the vehicle closes its side; raises ``CloudError``."""
        first = await anext(aiter(requests), None)
        if first is None:
            return  # the vehicle closed its side before saying anything
        if first.WhichOneof("body") != "hello":
            raise ProtocolError(
                f"the first message must be a hello, got {first.WhichOneof('body') or 'nothing'}"
            )
        hello = first.hello
        if hello.vehicle_id != self.identity.vehicle_id:
            raise NotPermitted(
                f"the token is for vehicle {self.identity.vehicle_id!r} "
                f"but the hello names {hello.vehicle_id!r}"
            )
        signals = catalog_from_hello(hello)
        store = await asyncio.to_thread(self._registry.store, self.identity.tenant)
        catalog, last_stored = await asyncio.to_thread(
            _open_session, store, self.identity, hello.agent_version, hello.catalog_id, signals
        )
        if hello.last_acked_sequence > last_stored:
            # The agent believes more was acknowledged than is stored: worth an
            # operator's look (a restored database, or a second deployment).
            logger.warning(
                "%s says sequence %d was acknowledged but the store ends at %d",
                self._name,
                hello.last_acked_sequence,
                last_stored,
            )
        await self._send(
            telemetry_pb2.CloudMessage(
                welcome=telemetry_pb2.Welcome(
                    tenant=self.identity.tenant,
                    last_stored_sequence=last_stored,
                    max_batch_samples=self._max_batch_samples,
                )
            )
        )
        watch = (
            self._hub.watch(self.identity.tenant, self.identity.vehicle_id)
            if self._hub is not None
            else contextlib.nullcontext(None)
        )
        with watch as signal:
            try:
                async with asyncio.TaskGroup() as tasks:
                    pusher = tasks.create_task(self._push_control(store, hello, signal))
                    await self._read(requests, store, hello.catalog_id, catalog)
                    pusher.cancel()
            except BaseExceptionGroup as group:
                raise _first_error(group) from None

    @property
    def _name(self) -> str:
        return f"{self.identity.tenant}/{self.identity.vehicle_id}"

    # ------------------------------------------------------------------ vehicle -> cloud

    async def _read(
        self,
        requests: AsyncIterator[telemetry_pb2.VehicleMessage],
        store: TenantStore,
        catalog_id: int,
        catalog: CatalogMap,
    ) -> None:
        vehicle_id = self.identity.vehicle_id
        async for message in requests:
            kind = message.WhichOneof("body")
            if kind == "batch":
                self.in_flight = message.batch.sequence
                result, committed = await asyncio.to_thread(
                    self._store_batch, store, catalog_id, catalog, message.batch
                )
                if self._notifier is not None:
                    await self._notifier.notify(committed)
                await self._send(
                    telemetry_pb2.CloudMessage(
                        ack=telemetry_pb2.Ack(
                            sequence=self.in_flight,
                            samples_stored=result.stored,
                            duplicate=result.duplicate,
                        )
                    )
                )
                self.in_flight = 0
            elif kind == "fault_codes":
                report_id, codes = decode_fault_report(message.fault_codes)
                new = await asyncio.to_thread(
                    store.store_fault_report, vehicle_id, report_id, codes
                )
                logger.debug("%s: fault report %d, %d new codes", self._name, report_id, new)
                if self._notifier is not None:
                    await self._notifier.notify(
                        FaultsCommitted(
                            tenant=self.identity.tenant,
                            vehicle_id=vehicle_id,
                            report_id=report_id,
                            codes=tuple(
                                FaultChange(
                                    code=code.code,
                                    state=code.state.value,
                                    protocol=code.protocol,
                                    bus=code.bus,
                                    source=code.source,
                                    ts_us=code.ts_us,
                                )
                                for code in codes
                            ),
                            new=new,
                        )
                    )
                await self._send(
                    telemetry_pb2.CloudMessage(
                        report_ack=telemetry_pb2.ReportAck(report_id=report_id)
                    )
                )
            elif kind == "health":
                report = decode_health(message.health)
                await asyncio.to_thread(store.record_health, vehicle_id, report)
            elif kind == "plan_status":
                status = decode_plan_status(message.plan_status)
                await asyncio.to_thread(store.record_plan_status, vehicle_id, status)
                if status.state == "rejected":
                    logger.warning(
                        "%s rejected plan version %d: %s",
                        self._name,
                        status.rejected_version,
                        status.reason,
                    )
            elif kind == "hello":
                raise ProtocolError("a stream carries one hello; reconnect to send another")
            else:
                # A newer agent's kind of message (a planned oneof arm) this gateway
                # does not know yet: skipping it keeps old gateways compatible.
                logger.debug("%s: skipped a message of unknown kind", self._name)

    def _store_batch(
        self,
        store: TenantStore,
        catalog_id: int,
        catalog: CatalogMap,
        batch: telemetry_pb2.TelemetryBatch,
    ) -> tuple[IngestResult, BatchCommitted]:
        # Runs in a worker thread: decoding a large batch is CPU work the event
        # loop should not wait for either.
        decoded = decode_batch(
            batch,
            catalog_id=catalog_id,
            signal_ids=catalog.signal_ids,
            max_samples=self._max_batch_samples,
        )
        result = store.ingest(
            self.identity.vehicle_id,
            batch.sequence,
            decoded.samples,
            evictions=decoded.evictions,
            triggers=decoded.triggers,
        )
        times = decoded.samples.ts_us
        committed = BatchCommitted(
            tenant=self.identity.tenant,
            vehicle_id=self.identity.vehicle_id,
            sequence=batch.sequence,
            samples=len(decoded.samples),
            first_ts_us=min(times, default=0),
            last_ts_us=max(times, default=0),
        )
        return result, committed

    # ------------------------------------------------------------------ cloud -> vehicle

    async def _push_control(
        self, store: TenantStore, hello: telemetry_pb2.Hello, signal: ControlSignal | None
    ) -> None:
        vehicle_id = self.identity.vehicle_id
        plan_sent = hello.plan_version
        consent_sent: int | None = hello.consent_version
        if consent_sent == 0 and store.default_consent != AGENT_DEFAULT_PURPOSES:
            # The car's version 0 is its built-in default, not this tenant's.
            consent_sent = None
        while True:
            if signal is not None:
                signal.clear()
            try:
                plan_version, consent_version = await asyncio.to_thread(
                    store.control_versions, vehicle_id
                )
                if signal is not None:
                    signal.seen = (plan_version, consent_version)
                if plan_version and plan_version != plan_sent:
                    plan_sent = await self._send_plan(store)
                if consent_version != consent_sent:
                    consent = await asyncio.to_thread(store.consent, vehicle_id)
                    await self._send(telemetry_pb2.CloudMessage(consent=consent_to_wire(consent)))
                    consent_sent = consent.version
            except StoreError as exc:
                self.control_errors += 1
                logger.warning("%s: cannot push plan or consent: %s", self._name, exc)
            if signal is None:
                await asyncio.sleep(self._poll)
            elif self._hub is not None and self._hub.polled and signal.seen is not None:
                await signal.wait(None)  # the gateway's poller wakes it on a change
            else:
                await signal.wait(self._poll)

    async def _send_plan(self, store: TenantStore) -> int:
        """Send the newest plan; returns its version (also when it could not be sent)."""
        plan = await asyncio.to_thread(store.newest_plan, self.identity.vehicle_id)
        if plan is None:
            return 0
        try:
            message = plan_to_wire(plan.version, parse_plan(plan.document))
        except InvalidPlan as exc:
            # Stored under an older, looser schema: an operator must set it again.
            logger.error("%s: stored plan version %d is invalid: %s", self._name, plan.version, exc)
            return plan.version
        await self._send(telemetry_pb2.CloudMessage(plan=message))
        return plan.version


def _open_session(
    store: TenantStore,
    identity: VehicleIdentity,
    agent_version: str,
    catalog_id: int,
    signals: Sequence[SignalDef],
) -> tuple[CatalogMap, int]:
    """Everything a hello needs from the store, in one worker-thread hop and one transaction."""
    try:
        return store.open_session(identity.vehicle_id, agent_version, catalog_id, signals)
    except UnknownVehicle:
        raise UnknownVehicle(
            f"vehicle {identity.vehicle_id!r} is not enrolled in tenant {identity.tenant!r}"
        ) from None


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that ended the session: a ``CloudError`` if any task raised one."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop(0)
        if isinstance(error, BaseExceptionGroup):
            pending[:0] = error.exceptions
        else:
            leaves.append(error)
    return next((error for error in leaves if isinstance(error, CloudError)), leaves[0])
