"""Bodies of the service loop: leads, appointment slots, repair orders, recalls, webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, HttpUrl, model_validator

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


class ScheduleBody(_Input):
    interval_km: Km | None = Field(default=None, gt=0, examples=[15_000.0])
    interval_days: float | None = Field(default=None, gt=0, le=3650, allow_inf_nan=False,
                                        examples=[365.0])  # fmt: skip
    remind_before_km: Km = 1_000.0
    remind_before_days: float = Field(default=30.0, ge=0, le=365, allow_inf_nan=False)

    @model_validator(mode="after")
    def _some_interval(self) -> ScheduleBody:
        if self.interval_km is None and self.interval_days is None:
            raise ValueError("a schedule needs interval_km, interval_days or both")
        return self


class SchedulePublic(BaseModel):
    model: str
    interval_km: float | None
    interval_days: float | None
    remind_before_km: float
    remind_before_days: float
    version: int


class ReminderPublic(BaseModel):
    """A vehicle whose next service is within its schedule's reminder window."""

    vehicle_id: int
    vin: str
    model: str
    mileage_km: float | None
    by: str = Field(examples=["distance"])
    due_at: datetime | None
    due_km: float | None
    overdue: bool
