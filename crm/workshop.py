"""Closing a repair order: the CRM's records and the cloud's maintenance counter.

The order, its lead and the webhook delivery are closed in one transaction of
the CRM; then the cloud's service record of the vehicle is reset (last service
now, at the order's mileage), so the rules measure the next maintenance from
this service. A vehicle whose agent was never enrolled has no counter to reset.
"""

from __future__ import annotations

from cloud.errors import StoreError, UnknownVehicle
from cloud.rules.state import ServiceRecord
from crm.errors import StoreUnavailable
from crm.store import CrmStore, Row

__all__ = ["close_repair_order"]


def close_repair_order(
    store: CrmStore, order_id: int, version: int, *, dealer_id: int | None
) -> Row:
    order, vehicle = store.close_repair_order(order_id, version, dealer_id=dealer_id)
    telemetry_id = vehicle["telemetry_id"]
    if telemetry_id is not None:
        record = ServiceRecord(
            model=vehicle["model"],
            serviced_at_us=int(order["closed_us"]),
            odometer_km=order["mileage_km"] if order["mileage_km"] is not None
            else vehicle["mileage_km"],
        )  # fmt: skip
        try:
            store.telemetry.set_service_record(telemetry_id, record)
        except UnknownVehicle:
            pass
        except StoreError as exc:
            raise StoreUnavailable(f"repair order closed, maintenance not reset: {exc}") from exc
    return order
