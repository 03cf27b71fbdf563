"""Maintenance schedules per model, and the reminders they give: the vehicles whose next
service (from their last closed repair order) is within the reminder window."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Response

from crm.api.deps import AuditDep, PageDep, PrincipalDep, StoreDep, etag, require_admin
from crm.api.errors import ERROR_RESPONSES
from crm.api.schemas import PageOf, Text, from_us, parse_etag
from crm.api.service_schemas import ReminderPublic, ScheduleBody, SchedulePublic
from crm.domain import MaintenanceSchedule, maintenance_reminder
from crm.store.base import now_us

router = APIRouter(tags=["maintenance"], responses=ERROR_RESPONSES)
Model = Annotated[Text, Path()]


@router.put(
    "/v1/maintenance-schedules/{model}",
    summary="Create a model's schedule, or replace it (If-Match: its ETag)",
)
def put_schedule(
    model: Model,
    body: ScheduleBody,
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    response: Response,
    if_match: Annotated[str | None, Header()] = None,
) -> SchedulePublic:
    require_admin(principal)
    version = None if if_match is None else parse_etag(if_match)
    row = store.put_schedule(model, body.model_dump(), version)
    response.headers["ETag"] = etag(row["version"])
    return SchedulePublic.model_validate(row)


@router.get("/v1/maintenance-schedules/{model}", summary="Read a model's schedule")
def get_schedule(
    model: Model, principal: PrincipalDep, store: StoreDep, audit: AuditDep, response: Response
) -> SchedulePublic:
    row = store.schedule(model)
    response.headers["ETag"] = etag(row["version"])
    return SchedulePublic.model_validate(row)


@router.get(
    "/v1/reminders",
    summary="Maintenance reminders: vehicles near or past their next service",
    description="A dealer gets its vehicles with a `service` grant and after-sales consent "
    "in force. The page walks vehicles in id order; `next_after` continues the walk.",
)
def reminders(
    principal: PrincipalDep, store: StoreDep, audit: AuditDep, page: PageDep
) -> PageOf[ReminderPublic]:
    audit.purpose = "after_sales"
    rows = store.reminder_candidates(principal.dealer_id, after=page.after, limit=page.limit)
    stamp = now_us()
    items = []
    for row in rows:
        schedule = MaintenanceSchedule(
            row["interval_km"], row["interval_days"], row["remind_before_km"],
            row["remind_before_days"],
        )  # fmt: skip
        reminder = maintenance_reminder(
            schedule,
            last_service_us=row["served_us"] or row["created_us"],
            last_service_km=row["served_km"] or 0.0,
            mileage_km=row["mileage_km"],
            now_us=stamp,
        )
        if reminder is not None:
            items.append(ReminderPublic(
                vehicle_id=row["id"], vin=row["vin"], model=row["model"],
                mileage_km=row["mileage_km"], by=reminder.by, due_at=from_us(reminder.due_at_us),
                due_km=reminder.due_km, overdue=reminder.overdue,
            ))  # fmt: skip
    # A full scan page may hold no reminder: the walk still goes on from its last vehicle.
    next_after = int(rows[-1]["id"]) if len(rows) == page.limit else None
    return PageOf[ReminderPublic](items=items, next_after=next_after)
