"""Which collection plan runs and which consent is enforced, persisted on the car.

:class:`AgentControl` is the uplink's :class:`~vehicle_agent.uplink.Control`: it
receives the plans and consent updates the cloud pushes, checks them, saves
them in the pending queue's state (so a restarted agent runs the same plan
under the same consent before it reaches the cloud again), puts them in force
in the reader's :class:`~vehicle_agent.pipeline.Pipeline` without a restart,
and answers with the plan status.

Rules:

* A plan is compiled against the catalog before anything changes; a plan that
  fails (unknown signal, bad expression...) is rejected with the reason and the
  running plan keeps running. The same version again changes nothing; an older
  version is rejected.
* A consent update applies to the next batch: the open batch is filtered, and
  the samples of withdrawn purposes already waiting in the outbox are purged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future

from google.protobuf.message import DecodeError

from telehub.v1 import telemetry_pb2 as pb
from vehicle_agent import wire
from vehicle_agent.catalog import Catalog
from vehicle_agent.consent import DEFAULT_CONSENT, Consent, Purpose
from vehicle_agent.errors import PlanError
from vehicle_agent.pending import PendingQueue
from vehicle_agent.pipeline import Pipeline
from vehicle_agent.plan import CompiledPlan, compile_plan, default_plan

__all__ = ["CONSENT_STATE", "PLAN_STATE", "AgentControl"]

log = logging.getLogger(__name__)

PLAN_STATE = "plan"
CONSENT_STATE = "consent"


class AgentControl:
    """Plan and consent of one agent; built before the pipeline, attached to it after."""

    def __init__(
        self,
        catalog: Catalog,
        queue: PendingQueue,
        *,
        location_quantum: float = 0.0,
        default_purpose: Purpose = Purpose.DIAGNOSTICS,
        health: Callable[[], pb.AgentHealth] | None = None,
    ) -> None:
        self.catalog = catalog
        self.queue = queue
        self.location_quantum = location_quantum
        self.rejected_version = 0
        self.rejected_reason = ""
        self.purged_samples = 0
        self._health = health
        self._pipeline: Pipeline | None = None
        self._reader_alive: Callable[[], bool] = lambda: False
        self.plan = self._initial_plan(default_purpose)
        self.consent = self._initial_consent()

    # ------------------------------------------------------------ start-up

    def _initial_plan(self, default_purpose: Purpose) -> CompiledPlan:
        fallback = compile_plan(
            default_plan(self.catalog, default_purpose),
            self.catalog,
            location_quantum=self.location_quantum,
        )
        saved = self.queue.load_state(PLAN_STATE)
        if saved is None:
            return fallback
        try:
            message = pb.CollectionPlan.FromString(saved)
            return compile_plan(
                wire.plan_from_wire(message), self.catalog, location_quantum=self.location_quantum
            )
        except (DecodeError, PlanError) as exc:
            # The DBC files changed under a saved plan: run the default until the
            # cloud sends a plan that fits, and say why.
            log.warning("the saved collection plan no longer applies: %s", exc)
            self.rejected_reason = f"saved plan no longer applies: {exc}"
            return fallback

    def _initial_consent(self) -> Consent:
        saved = self.queue.load_state(CONSENT_STATE)
        if saved is None:
            return DEFAULT_CONSENT
        try:
            return wire.consent_from_wire(pb.ConsentUpdate.FromString(saved))
        except DecodeError:
            log.warning("the saved consent is unreadable; using the default until the cloud's")
            return DEFAULT_CONSENT

    def attach(self, pipeline: Pipeline, reader_alive: Callable[[], bool]) -> None:
        """Let changes reach *pipeline*; *reader_alive* tells whether its reader runs."""
        self._pipeline = pipeline
        self._reader_alive = reader_alive

    # ------------------------------------------------------------ uplink.Control

    def versions(self) -> tuple[int, int]:
        return self.plan.plan.version, self.consent.version

    def plan_status(self) -> pb.PlanStatus:
        return wire.plan_status(
            self.plan.plan.version,
            self.consent.version,
            self.rejected_version,
            self.rejected_reason,
        )

    def health(self) -> pb.AgentHealth:
        return self._health() if self._health is not None else pb.AgentHealth()

    async def on_plan(self, message: pb.CollectionPlan) -> None:
        running = self.plan.plan.version
        if message.version == running:
            return
        if message.version < running:
            self._reject(message.version, f"older than the running plan {running}")
            return
        try:
            compiled = compile_plan(
                wire.plan_from_wire(message), self.catalog, location_quantum=self.location_quantum
            )
        except PlanError as exc:
            self._reject(message.version, str(exc))
            return
        self.queue.save_state(PLAN_STATE, message.SerializeToString())
        if self._pipeline is not None:
            await self._in_force(self._pipeline.request_plan(compiled))
        self.plan = compiled
        self.rejected_version, self.rejected_reason = 0, ""
        log.info("running collection plan %d (%s)", message.version, message.name)

    async def on_consent(self, message: pb.ConsentUpdate) -> None:
        consent = wire.consent_from_wire(message)
        if consent.version <= self.consent.version and self.consent.version > 0:
            return  # the same or an older update: already in force
        withdrawn = self.consent.granted - consent.granted
        self.queue.save_state(CONSENT_STATE, message.SerializeToString())
        if self._pipeline is not None:
            await self._in_force(self._pipeline.request_consent(consent))
        self.consent = consent
        if withdrawn:
            purged = await self.queue.purge(self.plan.signals_for(withdrawn))
            self.purged_samples += purged
            log.info(
                "consent %d withdraws %s: %d pending samples purged",
                consent.version,
                ", ".join(sorted(withdrawn)),
                purged,
            )

    # ------------------------------------------------------------ helpers

    def _reject(self, version: int, reason: str) -> None:
        log.warning("collection plan %d rejected: %s", version, reason)
        self.rejected_version, self.rejected_reason = version, reason

    async def _in_force(self, done: Future[None]) -> None:
        # The reader applies the change between two frames; when no reader runs
        # (the log has ended, or not started) nobody else touches the pipeline.
        waiting = asyncio.wrap_future(done)
        while not done.done():
            if not self._reader_alive():
                assert self._pipeline is not None
                self._pipeline.apply_pending()
            await asyncio.wait({waiting}, timeout=0.1)
        await waiting
