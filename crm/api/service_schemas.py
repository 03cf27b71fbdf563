"""Bodies of the service loop: leads, appointment slots, repair orders, recalls, webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, HttpUrl

from crm.api.schemas import Code, Id, Km, LongText, Text, Time, Vin, _Input


class LeadPublic(BaseModel):
    id: int
    vehicle_id: int
    dealer_id: int
    kind: str = Field(examples=["fault_set"])
    reason: str = Field(examples=["fault code P0301 set (warning)"])
    state: str = Field(examples=["open"])
    opened: datetime
    closed: datetime | None
    version: int


class SlotCreate(_Input):
    start: Time
    end: Time
    service_centre_id: Id | None = None


class SlotsCreate(_Input):
    slots: list[SlotCreate] = Field(min_length=1, max_length=10)


class AppointmentPublic(BaseModel):
    id: int
    lead_id: int
    service_centre_id: int | None
    start: datetime
    end: datetime
    state: str = Field(examples=["proposed"])
    version: int


class RepairOrderCreate(_Input):
    concern: LongText = Field(examples=["engine misfires when cold"])


class Part(_Input):
    number: Text
    description: Text
    quantity: float = Field(gt=0, le=10_000, allow_inf_nan=False)


class RepairOrderUpdate(_Input):
    concern: LongText | None = None
    cause: LongText | None = None
    correction: LongText | None = None
    parts: list[Part] | None = Field(default=None, max_length=200)
    labour_hours: float | None = Field(default=None, ge=0, le=10_000, allow_inf_nan=False)
    mileage_km: Km | None = None


class RepairOrderPublic(BaseModel):
    id: int
    lead_id: int
    appointment_id: int
    vehicle_id: int
    dealer_id: int
    concern: str
    cause: str
    correction: str
    parts: list[dict[str, Any]]
    labour_hours: float
    mileage_km: float | None
    state: str
    opened: datetime
    closed: datetime | None
    version: int


class RecallCreate(_Input):
    code: Code = Field(examples=["24V-123"])
    title: Text = Field(examples=["Brake hose may chafe"])
    vins: list[Vin] = Field(min_length=1, max_length=100_000)


class RecallPublic(BaseModel):
    id: int
    code: str
    title: str
    created: datetime


class RecallVehiclePublic(BaseModel):
    recall_id: int
    vin: str
    status: str = Field(examples=["notified"])
    updated: datetime
    version: int


class RecallVehicleUpdate(_Input):
    status: Literal["notified", "booked", "done"]


class WebhookCreate(_Input):
    url: HttpUrl = Field(examples=["https://dms.example.com/telehub"])
    secret: Text = Field(min_length=16, examples=["a-shared-secret-of-16+"])
    dealer_id: Id | None = Field(default=None, description="admins name the dealer")


class WebhookPublic(BaseModel):
    id: int
    dealer_id: int
    url: str


class DeliveryPublic(BaseModel):
    id: int
    webhook_id: int
    event_type: str
    payload: dict[str, Any]
    state: str = Field(examples=["dead"])
    attempts: int
    last_error: str | None
    created: datetime
    finished: datetime | None
