"""Request and response bodies: a ``Create``, an ``Update`` and a ``Public`` schema per
resource, with examples for the OpenAPI document.

Input is bounded everywhere it reaches the database: strings have a length
and no NUL (PostgreSQL refuses it in text), integers fit the columns, floats
are finite. So a bad request is a 422 here, never a database error later.
Times are ISO 8601 with a zone on the wire and microseconds in the store.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from crm.domain import DATA_FIELDS, PURPOSES
from crm.errors import InvalidInput

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_NUL = r"^[^\x00]*$"
MAX_ID = 2**31 - 1

Text = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_NO_NUL)]
LongText = Annotated[str, StringConstraints(max_length=4000, pattern=_NO_NUL)]
Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,40}$")]
Vin = Annotated[str, StringConstraints(pattern=r"^[A-HJ-NPR-Z0-9]{17}$")]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s\x00]{1,64}@[^@\s\x00]{1,190}$")]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Purpose = Literal["diagnostics", "after_sales", "location", "recommendations", "analytics"]
DataField = Literal["health", "faults", "mileage", "service"]
Km = Annotated[float, Field(ge=0, le=10_000_000, allow_inf_nan=False)]


def _bounded(value: datetime) -> datetime:
    # Microseconds since 1970 must fit a signed 64-bit column: any real date does.
    if not datetime(1900, 1, 1, tzinfo=UTC) <= value <= datetime(2200, 1, 1, tzinfo=UTC):
        raise ValueError("times must fall between 1900 and 2200")
    return value


Time = Annotated[AwareDatetime, AfterValidator(_bounded)]

assert set(Purpose.__args__) == PURPOSES  # type: ignore[attr-defined]
assert set(DataField.__args__) == DATA_FIELDS  # type: ignore[attr-defined]


_ETAG = re.compile(r'(?:W/)?"(\d{1,9})"')


def parse_etag(if_match: str) -> int:
    """The version an ``If-Match`` names (our ETags are ``"<version>"``)."""
    match = _ETAG.fullmatch(if_match.strip())
    if match is None:
        raise InvalidInput('If-Match must be an ETag such as "3"')
    return int(match[1])


def to_us(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def from_us(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=value)


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


T = TypeVar("T")


class PageOf(BaseModel, Generic[T]):
    """One page of a list; pass ``next_after`` as ``after`` for the next one."""

    items: list[T]
    next_after: int | None = Field(description="the `after` of the next page; null at the end")


class ErrorDetail(BaseModel):
    code: str = Field(examples=["forbidden"])
    message: str = Field(examples=["no grant in force for this dealer and vehicle"])
    details: list[dict[str, Any]] = Field(default_factory=list)


class ErrorBody(BaseModel):
    """Every error answer has this body."""

    error: ErrorDetail


# ---------------------------------------------------------------------- dealers


class ServiceCentreCreate(_Input):
    name: Text
    address: Text
    latitude: float = Field(ge=-90, le=90, allow_inf_nan=False)
    longitude: float = Field(ge=-180, le=180, allow_inf_nan=False)


class ServiceCentrePublic(BaseModel):
    id: int
    name: str
    address: str
    latitude: float
    longitude: float


class DealerCreate(_Input):
    code: Code = Field(examples=["DE-MUC-01"])
    name: Text = Field(examples=["Autohaus Isar"])
    service_centres: list[ServiceCentreCreate] = Field(default_factory=list, max_length=50)


class DealerUpdate(_Input):
    name: Text


class DealerPublic(BaseModel):
    id: int
    code: str
    name: str
    version: int
    service_centres: list[ServiceCentrePublic]


# ---------------------------------------------------------------------- customers


class CustomerCreate(_Input):
    name: Text = Field(examples=["Erika Mustermann"])
    email: Email = Field(examples=["erika@example.com"])
    phone: Text | None = Field(default=None, examples=["+49 89 123456"])


class CustomerUpdate(_Input):
    name: Text | None = None
    phone: Text | None = None


class CustomerPublic(BaseModel):
    id: int
    name: str
    email: str
    phone: str | None
    version: int


# ---------------------------------------------------------------------- vehicles


class VehicleCreate(_Input):
    vin: Vin = Field(examples=["WVWZZZ1JZXW000001"])
    telemetry_id: Text | None = Field(default=None, examples=["WVW-TEST-0001"])
    model: Text = Field(examples=["ID.4"])
    year: int = Field(ge=1900, le=2200, examples=[2024])
    preferred_dealer_id: Id | None = None


class VehicleUpdate(_Input):
    model: Text | None = None
    preferred_dealer_id: Id | None = None


class VehiclePublic(BaseModel):
    id: int
    vin: str
    telemetry_id: str | None
    model: str
    year: int
    mileage_km: float | None
    preferred_dealer_id: int | None
    version: int


class PartyCreate(_Input):
    customer_id: Id
    role: Literal["owner", "user"]
    valid_from: Time


class PartyPublic(BaseModel):
    id: int
    vehicle_id: int
    customer_id: int
    role: str
    valid_from: datetime
    valid_to: datetime | None


class HealthReasonPublic(BaseModel):
    code: str
    points: float
    text: str


class VehicleHealth(BaseModel):
    """One line of the dealer's vehicle-health list: no positions, no raw samples."""

    id: int
    vin: str
    model: str
    year: int
    mileage_km: float | None
    score: int | None = Field(description="0-100; null before the first data was processed")
    reasons: list[HealthReasonPublic]


class FaultPublic(BaseModel):
    code: str
    protocol: str
    source: int
    since: datetime


class ServiceState(BaseModel):
    open_lead_id: int | None
    open_lead_state: str | None
    last_service: datetime | None


class VehicleData(BaseModel):
    """What a dealer may see of a vehicle: only the fields its grant and consent allow."""

    id: int
    vin: str
    model: str
    year: int
    fields: list[str]
    health: VehicleHealth | None = None
    faults: list[FaultPublic] | None = None
    mileage_km: float | None = None
    service: ServiceState | None = None


# ---------------------------------------------------------------------- consents, grants


class ConsentCreate(_Input):
    vehicle_id: Id
    customer_id: Id
    purpose: Purpose
    dealer_id: Id | None = Field(default=None, description="null: every dealer")
    valid_from: Time
    valid_to: Time | None = None
    source: Code = Field(examples=["app"])


class ConsentPublic(BaseModel):
    id: int
    vehicle_id: int
    customer_id: int
    purpose: str
    dealer_id: int | None
    valid_from: datetime
    valid_to: datetime | None
    source: str
    withdrawn_at: datetime | None


class GrantCreate(_Input):
    dealer_id: Id
    vehicle_id: Id
    purposes: list[Purpose] = Field(min_length=1, max_length=5, examples=[["diagnostics"]])
    fields: list[DataField] = Field(min_length=1, max_length=4, examples=[["health", "faults"]])
    valid_from: Time
    valid_to: Time | None = None


class GrantPublic(BaseModel):
    id: int
    dealer_id: int
    vehicle_id: int
    purposes: list[str]
    fields: list[str]
    valid_from: datetime
    valid_to: datetime | None


# ---------------------------------------------------------------------- keys, audit


class ApiKeyCreate(_Input):
    role: Literal["admin", "dealer"]
    dealer_id: Id | None = None
    label: Text = Field(examples=["DMS integration"])


class ApiKeyPublic(BaseModel):
    key_id: str
    role: str
    dealer_id: int | None
    label: str
    key: str | None = Field(default=None, description="shown once, at creation")


class TokenPublic(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type, no secret
    expires_in: int


class AuditPublic(BaseModel):
    id: int
    at: datetime
    principal: str
    role: str
    dealer_id: int | None
    purpose: str
    action: str
    resource: str
    result: str
    status: int


def times(row: dict[str, Any], *names: str) -> dict[str, Any]:
    """``row`` with each ``<name>_us`` also given as ``<name>`` (a datetime)."""
    return {**row, **{name: from_us(row.get(f"{name}_us")) for name in names}}


def changes(body: BaseModel, *, nullable: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields an update sets; ``null`` only clears the fields in ``nullable``."""
    return {
        name: value
        for name, value in body.model_dump(exclude_unset=True).items()
        if value is not None or name in nullable
    }
