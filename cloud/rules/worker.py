"""The rules worker: runs the engine over one stored batch and stores what it made.

``RulesWorker.process_batch(store, vehicle_id, sequence, tenant=...)`` reads
the batch's samples and the fault codes stored since the last batch
processed, runs the vehicle's engine from its stored snapshot, and stores
events, trips, daily idle, the health score, the new snapshot and the
ledger row in one transaction (``cloud.store.rules``). It returns the events
that were new, for the event bus to publish.

- Idempotent: a batch already processed returns ``[]`` and writes nothing.
- Safe to call concurrently: for different vehicles nothing is shared; for
  one vehicle the state's version check makes the loser read again and
  redo its batch on top of the winner's (``RuleStateMoved``, retried here).
- Batches should be processed in sequence order; samples of a batch
  processed after a later one are older than the engine's watermark and are
  skipped (see ``cloud.rules.engine``), though they stay stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import ValidationError

from cloud.errors import StoreError
from cloud.rules.config import RuleConfig, RuleConfigError
from cloud.rules.engine import RuleEngine
from cloud.rules.events import Event
from cloud.rules.state import EngineState
from cloud.store.repository import TenantStore
from cloud.store.rules import RuleResults, RuleStateMoved

__all__ = ["RulesWorker", "configs_from_directory"]

#: How often a batch is redone when another worker moved the vehicle's state on.
_ATTEMPTS = 5


class RulesWorker:
    """Processes stored batches with each tenant's rule configuration."""

    def __init__(
        self, config_for_tenant: Mapping[str, RuleConfig] | Callable[[str], RuleConfig]
    ) -> None:
        if isinstance(config_for_tenant, Mapping):
            configs = dict(config_for_tenant)
            self._config: Callable[[str], RuleConfig] = lambda tenant: configs.get(
                tenant, RuleConfig()
            )
        else:
            self._config = config_for_tenant

    def process_batch(
        self, store: TenantStore, vehicle_id: str, sequence: int, *, tenant: str = ""
    ) -> list[Event]:
        """Run the rules over batch ``sequence``; the new events (see the module docstring).

        Raises ``UnknownVehicle``/``UnknownBatch`` for what the store does not
        hold, ``StoreError`` when the database fails or the vehicle's state
        kept moving under this worker.
        """
        config = self._config(tenant)
        keys = [(ref.name, ref.message, ref.bus) for ref in config.signals.roles().values()]
        for _ in range(_ATTEMPTS):
            given = store.rule_input(vehicle_id, sequence, keys)
            if given is None:
                return []
            try:
                state = (
                    EngineState.from_json(given.state)
                    if given.state is not None
                    else EngineState(vehicle_id=vehicle_id)
                )
            except ValidationError as exc:
                raise StoreError(f"the rule state of {vehicle_id!r} is unreadable: {exc}") from exc
            engine = RuleEngine(config, state, given.service)
            out = engine.process(given.samples, [fault for _, fault in given.faults])
            results = RuleResults(
                version=given.version,
                state=engine.state.to_json(),
                last_fault_id=max((row for row, _ in given.faults), default=given.last_fault_id),
                events=out.events,
                trips=out.trips,
                idle_days=out.idle_days,
                health=engine.health(),
            )
            try:
                stored = store.store_rule_results(vehicle_id, sequence, results)
            except RuleStateMoved:
                continue
            return [] if stored is None else stored
        raise StoreError(
            f"cannot process batch {sequence} of {vehicle_id!r}: its rule state kept moving"
        )


def configs_from_directory(directory: Path) -> Callable[[str], RuleConfig]:
    """Each tenant's configuration from ``<directory>/<tenant>.json``, read once.

    A tenant without a file gets the defaults; a file that is not a valid
    configuration raises ``RuleConfigError`` when the tenant is first asked for.
    """
    cache: dict[str, RuleConfig] = {}

    def config_for(tenant: str) -> RuleConfig:
        config = cache.get(tenant)
        if config is None:
            path = directory / f"{tenant}.json"
            try:
                text = path.read_bytes()
            except FileNotFoundError:
                config = RuleConfig()
            except OSError as exc:
                raise RuleConfigError(f"cannot read {path}: {exc}") from exc
            else:
                config = RuleConfig.from_json(text)
            cache[tenant] = config
        return config

    return config_for
