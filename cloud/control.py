"""Changing what a vehicle collects: plans and consent, and telling its live session.

``ControlService`` is what operators and (later) the owner-rights API call:
it validates, writes the tenant's store and then wakes the vehicle's live
gateway sessions through the ``ControlHub``, so the change reaches the car
within milliseconds. The hub carries no data, only "look again": a session
re-reads the versions in force and sends what changed. That makes it bounded
and latest-wins by construction (one flag per session, however many changes).

The hub only reaches sessions of this process. A change made elsewhere (the
CLI, another gateway process) is found by the gateway's ``ControlPoller``: every
``control_poll_seconds`` it reads the versions in force of every vehicle with a
live session, a tenant at a time in a few queries, and wakes the sessions whose
vehicle's versions differ from what they last read. (Each session polling on
its own cost a query per session per period: 2,000 queries a second for
10,000 streams at 5 s.)

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
from cloud.errors import CloudError, InvalidPlan
from cloud.plans import PlanDocument, check_signals, parse_plan
from cloud.store import TenantRegistry

__all__ = ["ControlHub", "ControlPoller", "ControlService", "ControlSignal"]

logger = logging.getLogger(__name__)


class ControlSignal:
    """One session's wake-up flag: set from any thread, awaited in the session's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()
        #: The (plan, consent) versions the session last read from the store.
        self.seen: tuple[int, int] | None = None

    def clear(self) -> None:
        """Forget earlier wake-ups (call before re-reading the store, so none is lost)."""
        self._event.clear()

    async def wait(self, seconds: float | None) -> bool:
        """Wait until woken, at most ``seconds`` (None: no limit); True when woken."""
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
        #: Whether a ``ControlPoller`` looks for changes made elsewhere; sessions
        #: then wait for a wake-up instead of polling on their own.
        self.polled = False

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

    def watched(self) -> dict[str, dict[str, list[ControlSignal]]]:
        """Every watched vehicle's signals, by tenant and vehicle (a snapshot)."""
        snapshot: dict[str, dict[str, list[ControlSignal]]] = {}
        with self._lock:
            for (tenant, vehicle_id), signals in self._watchers.items():
                snapshot.setdefault(tenant, {})[vehicle_id] = list(signals)
        return snapshot


class ControlPoller:
    """Finds control changes made outside this process for every live session at once."""

    def __init__(self, registry: TenantRegistry, hub: ControlHub, seconds: float) -> None:
        self._registry = registry
        self._hub = hub
        self._seconds = seconds
        #: Polls of a tenant that failed (the store was unavailable); the next one retries.
        self.errors = 0

    async def run(self) -> None:
        """Poll every ``seconds`` until cancelled.

        Sessions of a polled hub rely on it alone, so an unexpected error is
        logged and counted and the next period polls again; only cancellation
        ends the loop.
        """
        self._hub.polled = True
        try:
            while True:
                await asyncio.sleep(self._seconds)
                try:
                    await self.poll()
                except Exception:
                    self.errors += 1
                    logger.exception("control poll failed; polling again in %.1f s", self._seconds)
        finally:
            self._hub.polled = False

    async def poll(self) -> int:
        """One look at every watched vehicle; returns how many sessions were woken."""
        woken = 0
        for tenant, vehicles in self._hub.watched().items():
            try:
                store = self._registry.store(tenant)
                versions = await asyncio.to_thread(store.control_versions_of, list(vehicles))
            except CloudError as exc:
                self.errors += 1
                logger.warning("cannot poll control versions of tenant %s: %s", tenant, exc)
                continue
            for vehicle_id, signals in vehicles.items():
                now = versions.get(vehicle_id)
                for signal in signals:
                    # A session that has not read yet reads anyway: no wake-up needed.
                    if now is not None and signal.seen is not None and signal.seen != now:
                        signal._wake()
                        woken += 1
        return woken


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
