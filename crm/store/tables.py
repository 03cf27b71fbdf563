"""The CRM's tables, in each tenant's own store beside its telemetry.

They sit on their own ``MetaData`` (the cloud never imports the CRM) and are
created by the tenant store's Alembic revision 0005; the schema test compares
the migrated database with the cloud's models and these tables together, so
a change here needs a revision.

Times are ``*_us`` integers, microseconds since the Unix epoch (UTC), like the
cloud's CAN times: no time-zone handling differs between SQLite and PostgreSQL.
Sets (a grant's purposes and fields) are stored as ``,a,b,`` text so that
both dialects can test membership with ``LIKE '%,a,%'``.
Rows a client may update carry ``version``, served as the ETag.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

from cloud.store.dialect import BIG_ID

__all__ = [
    "api_keys",
    "appointments",
    "audit_log",
    "consents",
    "customers",
    "dealers",
    "deliveries",
    "grants",
    "lead_events",
    "leads",
    "maintenance_schedules",
    "metadata",
    "recall_vehicles",
    "recalls",
    "repair_orders",
    "service_centres",
    "vehicle_parties",
    "vehicles",
    "webhooks",
]

metadata = MetaData()

_FLOAT = Float(53)


def _id() -> Column[int]:
    return Column("id", Integer, primary_key=True)


def _us(name: str, *, nullable: bool = False) -> Column[int]:
    return Column(name, BigInteger, nullable=nullable)


def _version() -> Column[int]:
    return Column("version", Integer, nullable=False)


dealers = Table(
    "crm_dealers",
    metadata,
    _id(),
    Column("code", String, nullable=False, unique=True),
    Column("name", String, nullable=False),
    _us("created_us"),
    _version(),
)

service_centres = Table(
    "crm_service_centres",
    metadata,
    _id(),
    Column("dealer_id", ForeignKey("crm_dealers.id"), nullable=False, index=True),
    Column("name", String, nullable=False),
    Column("address", String, nullable=False),
    Column("latitude", _FLOAT, nullable=False),
    Column("longitude", _FLOAT, nullable=False),
)

customers = Table(
    "crm_customers",
    metadata,
    _id(),
    Column("name", String, nullable=False),
    Column("email", String, nullable=False, unique=True),
    Column("phone", String, nullable=True),
    _us("created_us"),
    _version(),
)

vehicles = Table(
    "crm_vehicles",
    metadata,
    _id(),
    Column("vin", String(17), nullable=False, unique=True),
    #: The id the car's agent uses towards the gateway (``vehicles.vehicle_id``); no
    #: foreign key: a vehicle can be sold before its agent was ever enrolled.
    Column("telemetry_id", String, nullable=True, unique=True),
    Column("model", String, nullable=False),
    Column("year", Integer, nullable=False),
    #: The last odometer reading from telemetry or a repair order.
    Column("mileage_km", _FLOAT, nullable=True),
    #: The owner's chosen dealer: where a lead from an event goes.
    Column("preferred_dealer_id", ForeignKey("crm_dealers.id"), nullable=True),
    _us("created_us"),
    _version(),
)

vehicle_parties = Table(
    "crm_vehicle_parties",
    metadata,
    _id(),
    Column("vehicle_id", ForeignKey("crm_vehicles.id"), nullable=False),
    Column("customer_id", ForeignKey("crm_customers.id"), nullable=False),
    #: ``owner`` (one at a time: the ownership history) or ``user`` (several).
    Column("role", String, nullable=False),
    _us("valid_from_us"),
    _us("valid_to_us", nullable=True),
    Index("ix_crm_vehicle_parties_vehicle", "vehicle_id", "role"),
)

consents = Table(
    "crm_consents",
    metadata,
    _id(),
    Column("vehicle_id", ForeignKey("crm_vehicles.id"), nullable=False),
    Column("customer_id", ForeignKey("crm_customers.id"), nullable=False),
    Column("purpose", String, nullable=False),
    #: ``NULL``: every dealer of the automaker.
    Column("dealer_id", ForeignKey("crm_dealers.id"), nullable=True),
    _us("valid_from_us"),
    _us("valid_to_us", nullable=True),
    #: Where the consent was given: ``app``, ``head_unit``, ``dealer_form``, ...
    Column("source", String, nullable=False),
    _us("withdrawn_at_us", nullable=True),
    _us("created_us"),
    Index("ix_crm_consents_vehicle_purpose", "vehicle_id", "purpose"),
)

grants = Table(
    "crm_grants",
    metadata,
    _id(),
    Column("dealer_id", ForeignKey("crm_dealers.id"), nullable=False),
    Column("vehicle_id", ForeignKey("crm_vehicles.id"), nullable=False),
    Column("purposes", String, nullable=False),
    Column("fields", String, nullable=False),
    _us("valid_from_us"),
    _us("valid_to_us", nullable=True),
    _us("created_us"),
    # The dealer's list walks its grants in vehicle order.
    Index("ix_crm_grants_dealer_vehicle", "dealer_id", "vehicle_id"),
)

api_keys = Table(
    "crm_api_keys",
    metadata,
    Column("key_id", String, primary_key=True),
    #: SHA-256 of the secret: keys are 256-bit random, so no slow hash is needed.
    Column("secret_sha256", String, nullable=False),
    #: ``NULL`` for an automaker administrator's key.
    Column("dealer_id", ForeignKey("crm_dealers.id"), nullable=True),
    Column("role", String, nullable=False),
    Column("label", String, nullable=False),
    _us("created_us"),
    _us("revoked_at_us", nullable=True),
)

audit_log = Table(
    "crm_audit_log",
    metadata,
    Column("id", BIG_ID, primary_key=True),
    _us("at_us"),
    #: The API key id (or token subject) that asked.
    Column("principal", String, nullable=False),
    Column("role", String, nullable=False),
    Column("dealer_id", Integer, nullable=True),
    Column("purpose", String, nullable=False),
    Column("action", String, nullable=False),
    Column("resource", String, nullable=False),
    #: ``allowed`` or ``denied``, with the HTTP status.
    Column("result", String, nullable=False),
    Column("status", Integer, nullable=False),
    Index("ix_crm_audit_log_at", "at_us"),
)

leads = Table(
    "crm_leads",
    metadata,
    _id(),
    Column("vehicle_id", ForeignKey("crm_vehicles.id"), nullable=False),
    Column("dealer_id", ForeignKey("crm_dealers.id"), nullable=False),
    Column("kind", String, nullable=False),
    Column("reason", String, nullable=False),
    Column("state", String, nullable=False),
    _us("opened_us"),
    _us("closed_us", nullable=True),
    _version(),
    Index("ix_crm_leads_vehicle_state", "vehicle_id", "state"),
    Index("ix_crm_leads_dealer_state", "dealer_id", "state"),
)

lead_events = Table(
    "crm_lead_events",
    metadata,
    #: The rule event's id: the ledger that makes ``on_event`` idempotent.
    Column("event_id", String, primary_key=True),
    Column("lead_id", ForeignKey("crm_leads.id"), nullable=True),
    Column("kind", String, nullable=False),
    Column("outcome", String, nullable=False),
    _us("received_us"),
)

appointments = Table(
    "crm_appointments",
    metadata,
    _id(),
    Column("lead_id", ForeignKey("crm_leads.id"), nullable=False, index=True),
    Column("service_centre_id", ForeignKey("crm_service_centres.id"), nullable=True),
    _us("start_us"),
    _us("end_us"),
    #: ``proposed``, ``booked`` or ``declined`` (another slot of the lead was booked).
    Column("state", String, nullable=False),
    _version(),
)

repair_orders = Table(
    "crm_repair_orders",
    metadata,
    _id(),
    Column("lead_id", ForeignKey("crm_leads.id"), nullable=False, unique=True),
    Column("appointment_id", ForeignKey("crm_appointments.id"), nullable=False),
    Column("vehicle_id", ForeignKey("crm_vehicles.id"), nullable=False, index=True),
    Column("dealer_id", ForeignKey("crm_dealers.id"), nullable=False),
    Column("concern", String, nullable=False),
    Column("cause", String, nullable=False),
    Column("correction", String, nullable=False),
    #: [{"number", "description", "quantity"}]
    Column("parts", JSON, nullable=False),
    Column("labour_hours", _FLOAT, nullable=False),
    Column("mileage_km", _FLOAT, nullable=True),
    Column("state", String, nullable=False),
    _us("opened_us"),
    _us("closed_us", nullable=True),
    _version(),
)

maintenance_schedules = Table(
    "crm_maintenance_schedules",
    metadata,
    Column("model", String, primary_key=True),
    Column("interval_km", _FLOAT, nullable=True),
    Column("interval_days", _FLOAT, nullable=True),
    Column("remind_before_km", _FLOAT, nullable=False),
    Column("remind_before_days", _FLOAT, nullable=False),
    _version(),
)

recalls = Table(
    "crm_recalls",
    metadata,
    _id(),
    Column("code", String, nullable=False, unique=True),
    Column("title", String, nullable=False),
    _us("created_us"),
)

recall_vehicles = Table(
    "crm_recall_vehicles",
    metadata,
    Column("recall_id", ForeignKey("crm_recalls.id"), primary_key=True),
    Column("vin", String(17), primary_key=True),
    Column("status", String, nullable=False),
    _us("updated_us"),
    _version(),
)

webhooks = Table(
    "crm_webhooks",
    metadata,
    _id(),
    Column("dealer_id", ForeignKey("crm_dealers.id"), nullable=False, index=True),
    Column("url", String, nullable=False),
    #: The shared HMAC key; the receiver needs the same bytes, so it is kept as given.
    Column("secret", String, nullable=False),
    _us("created_us"),
)

deliveries = Table(
    "crm_webhook_deliveries",
    metadata,
    _id(),
    Column("webhook_id", ForeignKey("crm_webhooks.id"), nullable=False),
    Column("event_type", String, nullable=False),
    Column("payload", JSON, nullable=False),
    #: ``pending``, ``delivered`` or ``dead`` (every attempt failed: the dead letter).
    Column("state", String, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", String, nullable=True),
    _us("created_us"),
    _us("due_us"),
    _us("finished_us", nullable=True),
    Index("ix_crm_webhook_deliveries_state_due", "state", "due_us"),
)
