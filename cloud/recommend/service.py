"""The service layer: tenants' recommenders, API-key lookup, contexts from requests.

:class:`RecommendService` is built once from the settings (each tenant's
catalog loaded and indexed) and then only read, so one instance serves every
request concurrently. It keeps nothing about the vehicles it is asked about.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from cloud.recommend.catalog import Catalog, Connector
from cloud.recommend.config import RecommendSettings, TenantRecommendSettings, hash_api_key
from cloud.recommend.context import (
    COARSE_CELL_DEG,
    Context,
    Energy,
    Fault,
    Maintenance,
    Position,
    coarsen,
    estimate_range_km,
    pseudonym,
    recipient_key,
)
from cloud.recommend.errors import InvalidApiKey
from cloud.recommend.importers import load_catalog
from cloud.recommend.ranking import Recommendations, Recommender

__all__ = ["Client", "ContextDraft", "RecommendService", "TenantService"]


@dataclass(frozen=True, slots=True)
class Client:
    """Who called: a tenant's API client (the recipient its pseudonyms are made for)."""

    tenant: str
    recipient: str


@dataclass(frozen=True, slots=True)
class ContextDraft:
    """A context as given by the caller, before the tenant's rules complete it."""

    lat: float
    lon: float
    #: True only when the owner consented to location; else the position is coarsened.
    exact: bool = False
    local_time: datetime | None = None
    energy: Energy | None = None
    level_pct: float | None = None
    range_km: float | None = None
    connectors: frozenset[Connector] | None = None
    faults: tuple[Fault, ...] = ()
    maintenance: Maintenance = Maintenance.OK
    model: str | None = None
    limit: int = 5
    content_limit: int = 3
    token: str | None = None
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class TenantService:
    settings: TenantRecommendSettings
    recommender: Recommender
    zone: ZoneInfo


class RecommendService:
    """Every tenant's recommender; read-only after construction."""

    def __init__(
        self, settings: RecommendSettings, catalogs: Mapping[str, Catalog] | None = None
    ) -> None:
        self.settings = settings
        self._tenants: dict[str, TenantService] = {}
        self._clients: dict[str, Client] = {}
        self._token_keys: dict[Client, bytes] = {}
        for name, tenant in settings.tenants.items():
            catalog = (catalogs or {}).get(name) or load_catalog(tenant.catalog_dir)
            recommender = Recommender(
                catalog,
                weights=tenant.ranking.weights(),
                reach=tenant.ranking.reach(),
                brand=tenant.brand,
            )
            self._tenants[name] = TenantService(tenant, recommender, ZoneInfo(tenant.timezone))
            secret = tenant.pseudonym_key.get_secret_value().encode()
            for recipient, digest in tenant.api_keys.items():
                client = Client(name, recipient)
                self._clients[digest] = client
                self._token_keys[client] = recipient_key(secret, name, recipient)

    def tenant(self, name: str) -> TenantService:
        return self._tenants[name]

    def authenticate(self, api_key: str | None) -> Client:
        """The client whose key this is; raises ``InvalidApiKey``."""
        if not api_key:
            raise InvalidApiKey("an API key is required (header X-API-Key)")
        # Looked up by its SHA-256 digest: lookup timing tells an attacker about
        # digests, which they cannot steer, not about keys.
        client = self._clients.get(hash_api_key(api_key))
        if client is None:
            raise InvalidApiKey("the API key is not valid")
        return client

    def token(self, client: Client, vehicle_id: str) -> str:
        """The vehicle's pseudonym for this client."""
        return pseudonym(self._token_keys[client], vehicle_id)

    def context(self, client: Client, draft: ContextDraft) -> Context:
        """Complete ``draft`` with the tenant's model specs, time zone and privacy rules."""
        tenant = self._tenants[client.tenant]
        notes = list(draft.notes)
        position = Position(draft.lat, draft.lon)
        if not draft.exact:
            position = coarsen(position)
            notes.append(f"position coarsened to a {COARSE_CELL_DEG}° area: no location consent")
        spec = tenant.settings.model(draft.model)
        energy = draft.energy or (spec.energy if spec else Energy.FUEL)
        connectors = draft.connectors
        if connectors is None:
            connectors = spec.connectors if spec and energy is Energy.ELECTRIC else frozenset()
        range_km = draft.range_km
        if range_km is None and draft.level_pct is not None and spec and spec.energy is energy:
            range_km = estimate_range_km(draft.level_pct, spec.capacity, spec.per_100km)
            notes.append(
                f"range estimated from {draft.level_pct:.0f}% and the model's "
                f"capacity and consumption"
            )
        local_time = draft.local_time or datetime.now(tenant.zone)
        return Context(
            position=position,
            local_time=local_time,
            energy=energy,
            level_pct=draft.level_pct,
            range_km=range_km,
            connectors=connectors,
            faults=draft.faults,
            maintenance=draft.maintenance,
            model=draft.model,
            limit=draft.limit,
            content_limit=draft.content_limit,
            token=draft.token,
            notes=tuple(notes),
        )

    def recommend(self, client: Client, draft: ContextDraft) -> tuple[Context, Recommendations]:
        context = self.context(client, draft)
        return context, self._tenants[client.tenant].recommender.rank(context)
