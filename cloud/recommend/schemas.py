"""Request and response bodies of the recommendation API (pydantic, with OpenAPI examples).

Requests forbid unknown fields: a misspelt field is a 422 that names it, not
silently ignored. Responses never carry a VIN.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from cloud.recommend.catalog import Connector, ContentKind, PoiKind
from cloud.recommend.context import Energy, FaultSeverity, Maintenance, Precision

__all__ = [
    "CatalogSummary",
    "ContentOut",
    "ContextIn",
    "ErrorBody",
    "ErrorDetail",
    "FaultIn",
    "Health",
    "PositionIn",
    "ReasonOut",
    "RecommendationsOut",
    "SuggestionOut",
    "VehicleContextIn",
]

_PSEUDONYM_HEX = r"^[0-9a-f]{16,64}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PositionIn(_In):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    #: ``exact`` asserts the owner's location consent; anything else is coarsened.
    precision: Precision = Precision.COARSE


class FaultIn(_In):
    code: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,32}$")
    severity: FaultSeverity = FaultSeverity.WARNING


class _Wanted(_In):
    local_time: AwareDatetime | None = Field(
        default=None, description="the car's local time with its offset; default: now"
    )
    limit: int = Field(default=5, ge=1, le=50, description="how many places the head unit shows")
    content_limit: int = Field(default=3, ge=0, le=20)


class ContextIn(_Wanted):
    """A context the head unit sends; the VIN never appears, only the pseudonymous token."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "token": "3f5a0c9e8b7d6a5f4e3d2c1b0a998877",
                    "position": {"lat": 56.1572, "lon": 10.2107, "precision": "exact"},
                    "energy": "electric",
                    "level_pct": 14,
                    "connectors": ["ccs", "type2"],
                    "faults": [{"code": "P0A80", "severity": "warning"}],
                    "model": "Aurora EV",
                    "local_time": "2026-12-07T14:05:00+01:00",
                    "limit": 5,
                }
            ]
        },
    )

    token: str | None = Field(default=None, pattern=_PSEUDONYM_HEX)
    position: PositionIn
    energy: Energy | None = None
    level_pct: float | None = Field(default=None, ge=0, le=100)
    range_km: float | None = Field(default=None, ge=0, le=5000)
    connectors: list[Connector] | None = Field(default=None, max_length=len(Connector))
    faults: list[FaultIn] = Field(default_factory=list, max_length=50)
    maintenance: Maintenance = Maintenance.OK
    model: str | None = Field(default=None, min_length=1, max_length=100)


class VehicleContextIn(_Wanted):
    """The tenant's own vehicle id: the cloud builds the context from its stored state."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"vehicle_id": "DEMO-CAR-0001", "limit": 5}]},
    )

    vehicle_id: str = Field(min_length=1, max_length=64)


class ReasonOut(BaseModel):
    code: str
    text: str


class SuggestionOut(BaseModel):
    id: str
    kind: PoiKind
    name: str
    lat: float
    lon: float
    brand: str | None
    address: str | None
    connectors: list[Connector]
    power_kw: float | None
    price: float | None
    distance_km: float
    score: float
    reasons: list[ReasonOut]


class ContentOut(BaseModel):
    id: str
    kind: ContentKind
    title: str
    summary: str
    url: str | None
    score: float
    reasons: list[ReasonOut]


class RecommendationsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "token": "3f5a0c9e8b7d6a5f4e3d2c1b0a998877",
                    "position_precision": "exact",
                    "range_km": 52.5,
                    "usable_range_km": 39.6,
                    "suggestions": [
                        {
                            "id": "chg-aarhus-c-01",
                            "kind": "charging",
                            "name": "Aarhus C Fast Charge",
                            "lat": 56.15,
                            "lon": 10.204,
                            "brand": None,
                            "address": "Banegårdspladsen, Aarhus",
                            "connectors": ["ccs", "type2"],
                            "power_kw": 150.0,
                            "price": 3.9,
                            "distance_km": 0.9,
                            "score": 3.2,
                            "reasons": [
                                {
                                    "code": "low_charge",
                                    "text": "charge at 14%, about 52 km left: time to stop",
                                }
                            ],
                        }
                    ],
                    "content": [],
                    "notes": [],
                }
            ]
        }
    )

    token: str | None = Field(description="the vehicle's pseudonym for this client, if known")
    position_precision: Precision
    range_km: float | None
    usable_range_km: float | None
    suggestions: list[SuggestionOut]
    content: list[ContentOut]
    notes: list[str]


class CatalogSummary(BaseModel):
    tenant: str
    points_of_interest: dict[str, int]
    content_items: int


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer has this shape."""

    error: Annotated[str, Field(examples=["invalid_request"])]
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    tenants: int
