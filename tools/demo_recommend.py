"""The end of ``telehub demo``: the car's head unit asks for suggestions where the drive ended.

The recommendation API runs on loopback with the bundled synthetic catalog
(``cloud.recommend.sample``); the head unit's client
(``vehicle_agent.recommendations``) sends the position the cloud stored last,
coarse (the demo owner gave no location consent), a pseudonymous token and an
assumed state of charge (the recording has none), and keeps the answer in its
offline cache beside the agent's outbox.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from cloud.recommend.app import create_app
from cloud.recommend.sample import SAMPLE_TENANT, sample_settings
from cloud.recommend.server import RecommendServer
from cloud.recommend.service import Client, RecommendService
from cloud.store import TenantStore
from vehicle_agent.recommendations import (
    RecommendationClient,
    format_suggestions,
    head_unit_context,
)

__all__ = ["ASSUMED_CHARGE_PCT", "end_of_drive_suggestions"]

#: The demo car's state of charge at the end of the drive (the recording has no such signal).
ASSUMED_CHARGE_PCT = 18.0
_MODEL = "Aurora EV"


async def end_of_drive_suggestions(
    store: TenantStore, vehicle_id: str, cache: Path
) -> dict[str, Any] | None:
    """What the head unit would show, or None when the vehicle stored no position."""
    latest = {value.signal: value.value for value in store.latest(vehicle_id)}
    if "Latitude" not in latest or "Longitude" not in latest:
        return None
    key = secrets.token_urlsafe(24)
    settings = sample_settings(key)
    service = RecommendService(settings)
    token = service.token(Client(SAMPLE_TENANT, "head-unit"), vehicle_id)
    context = head_unit_context(
        lat=latest["Latitude"],
        lon=latest["Longitude"],
        location_consent=False,
        token=token,
        energy="electric",
        level_pct=ASSUMED_CHARGE_PCT,
        model=_MODEL,
        limit=3,
    )
    async with (
        RecommendServer(create_app(settings, service=service)) as api,
        RecommendationClient(f"http://127.0.0.1:{api.port}", key, cache) as client,
    ):
        suggestions = await client.fetch(context)
    return {
        "vehicle_id": vehicle_id,
        "assumed": f"{_MODEL}, {ASSUMED_CHARGE_PCT:.0f}% charge, no location consent",
        "places": [place.name for place in suggestions.places],
        "lines": format_suggestions(suggestions),
    }
