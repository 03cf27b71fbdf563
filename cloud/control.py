"""Changing what a vehicle collects: plans and consent, and telling its live session.

``ControlService`` is what operators and (later) the owner-rights API call:
it validates, writes the tenant's store and then wakes the vehicle's live
gateway sessions through the ``ControlHub``, so the change reaches the car
within milliseconds. The hub carries no data, only "look again": a session
re-reads the versions in force and sends what changed. That makes it bounded
and latest-wins by construction (one flag per session, however many changes).

The hub only reaches sessions of this process. A change made elsewhere (the
CLI, another gateway process) is found by each session's poll of the stored
versions every ``control_poll_seconds``; an event bus replaces the poll once
gateways and workers run apart (a later issue).

Version 0 of consent: a vehicle whose owner's consent was never set has the
tenant's default consent, and that is version 0. The car's built-in default
(before it ever received a consent) is also version 0: every purpose but
location (``AGENT_DEFAULT_PURPOSES``). So a car reporting consent version 0
and a store without a consent row agree, and nothing is sent, as long as the
tenant's default is the built-in one. When a tenant configures another
default, the two version-0s differ: the gateway then sends the tenant's
default as a version-0 ``ConsentUpdate`` on every connect of a car reporting
version 0, until the owner's consent is set (version 1 onwards).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from cloud.domain import Purpose, VehicleControlStatus
from cloud.errors import InvalidPlan
from cloud.plans import PlanDocument, check_signals, parse_plan
from cloud.store import TenantRegistry

__all__ = ["ControlHub", "ControlService", "ControlSignal"]

logger = logging.getLogger(__name__)


class ControlSignal:
    """One session's wake-up flag: set from any thread, awaited in the session's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def clear(self) -> None:
        """Forget earlier wake-ups (call before re-reading the store, so none is lost)."""
        self._event.clear()

    async def wait(self, seconds: float) -> bool:
        """Wait until woken, at most ``seconds``; True when woken."""
        try:
            async with asyncio.timeout(seconds):
                await self._event.wait()
        except TimeoutError:
            return False
        return True

    def _wake(self) -> None:
        # The loop may already be closed when a session ends during a notify.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._event.set)


class ControlHub:
    """Which live sessions watch which vehicle, in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watchers: dict[tuple[str, str], set[ControlSignal]] = {}

    @contextlib.contextmanager
    def watch(self, tenant: str, vehicle_id: str) -> Iterator[ControlSignal]:
        """A signal woken by every ``notify`` of this vehicle while the block runs.

        Must be entered in the event loop of the session that waits on it.
        """
        signal = ControlSignal(asyncio.get_running_loop())
        key = (tenant, vehicle_id)
        with self._lock:
            self._watchers.setdefault(key, set()).add(signal)
        try:
            yield signal
        finally:
            with self._lock:
                watchers = self._watchers.get(key)
                if watchers is not None:
                    watchers.discard(signal)
                    if not watchers:
                        del self._watchers[key]

    def notify(self, tenant: str, vehicle_id: str) -> int:
        """Wake every live session of the vehicle; returns how many there were. Thread-safe."""
        with self._lock:
            watchers = list(self._watchers.get((tenant, vehicle_id), ()))
        for signal in watchers:
            signal._wake()
        return len(watchers)


class ControlService:
    """Sets plans and consent in the tenant's store and tells the vehicle's sessions.

    Synchronous (the store is): async callers use ``asyncio.to_thread``. Without
    a hub (the CLI), sessions learn of changes by polling.
    """

    def __init__(self, registry: TenantRegistry, hub: ControlHub | None = None) -> None:
        self._registry = registry
        self._hub = hub

    def set_plan(
        self,
        tenant: str,
        vehicle_id: str,
        document: PlanDocument | Mapping[str, Any] | str | bytes,
    ) -> int:
        """Validate and store a new plan for the vehicle; returns its version.

        When the vehicle's catalog is known (it said hello at least once),
        every signal the plan names must be in it. Raises ``InvalidPlan``.
        """
        plan = parse_plan(document)
        store = self._registry.store(tenant)
        catalog = store.vehicle_catalog(vehicle_id)
        if catalog is not None:
            check_signals(plan, catalog, vehicle_id=vehicle_id)
        version = store.add_plan(vehicle_id, plan.name, plan.model_dump(mode="json"))
        logger.info("%s/%s: plan %r is version %d", tenant, vehicle_id, plan.name, version)
        self._notify(tenant, vehicle_id)
        return version

    def set_consent(self, tenant: str, vehicle_id: str, purposes: Iterable[Purpose]) -> int:
        """Store the owner's consent (purposes not listed are withdrawn); returns its version."""
        granted = set()
        for purpose in purposes:
            if not isinstance(purpose, Purpose):
                raise InvalidPlan(f"unknown consent purpose {purpose!r}")
            granted.add(purpose)
        version = self._registry.store(tenant).add_consent(vehicle_id, granted)
        logger.info(
            "%s/%s: consent version %d grants %s",
            tenant,
            vehicle_id,
            version,
            ", ".join(sorted(granted)) or "nothing",
        )
        self._notify(tenant, vehicle_id)
        return version

    def vehicle_status(self, tenant: str, vehicle_id: str) -> VehicleControlStatus:
        """The plan and consent in force and what the car last reported."""
        return self._registry.store(tenant).vehicle_status(vehicle_id)

    def _notify(self, tenant: str, vehicle_id: str) -> None:
        if self._hub is not None:
            self._hub.notify(tenant, vehicle_id)
