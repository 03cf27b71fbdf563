"""The dealer CRM's tables (``crm.store.tables``), in the tenant's own store.

Written out here rather than imported: the cloud never imports the CRM, and a
revision must keep building the schema of its day whatever the models become.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cloud.store.dialect import BIG_ID

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_FLOAT = sa.Float(precision=53)
_TABLES = (
    "crm_webhook_deliveries", "crm_webhooks", "crm_recall_vehicles", "crm_recalls",
    "crm_maintenance_schedules", "crm_repair_orders", "crm_appointments", "crm_lead_events",
    "crm_leads", "crm_audit_log", "crm_api_keys", "crm_grants", "crm_consents",
    "crm_vehicle_parties", "crm_vehicles", "crm_customers", "crm_service_centres", "crm_dealers",
)  # fmt: skip


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer(), primary_key=True)


def _us(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def _text(name: str, *, nullable: bool = False, unique: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(), nullable=nullable, unique=unique)


def _ref(name: str, target: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), sa.ForeignKey(f"{target}.id"), nullable=nullable)


def _version() -> sa.Column[int]:
    return sa.Column("version", sa.Integer(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "crm_dealers",
        _id(),
        _text("code", unique=True),
        _text("name"),
        _us("created_us"),
        _version(),
    )
    op.create_table(
        "crm_service_centres",
        _id(),
        _ref("dealer_id", "crm_dealers"),
        _text("name"),
        _text("address"),
        sa.Column("latitude", _FLOAT, nullable=False),
        sa.Column("longitude", _FLOAT, nullable=False),
    )
    op.create_index("ix_crm_service_centres_dealer_id", "crm_service_centres", ["dealer_id"])
    op.create_table(
        "crm_customers",
        _id(),
        _text("name"),
        _text("email", unique=True),
        _text("phone", nullable=True),
        _us("created_us"),
        _version(),
    )
    op.create_table(
        "crm_vehicles",
        _id(),
        sa.Column("vin", sa.String(17), nullable=False, unique=True),
        _text("telemetry_id", nullable=True, unique=True),
        _text("model"),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("mileage_km", _FLOAT, nullable=True),
        _ref("preferred_dealer_id", "crm_dealers", nullable=True),
        _us("created_us"),
        _version(),
    )
    op.create_table(
        "crm_vehicle_parties",
        _id(),
        _ref("vehicle_id", "crm_vehicles"),
        _ref("customer_id", "crm_customers"),
        _text("role"),
        _us("valid_from_us"),
        _us("valid_to_us", nullable=True),
    )
    op.create_index("ix_crm_vehicle_parties_vehicle", "crm_vehicle_parties", ["vehicle_id", "role"])
    op.create_table(
        "crm_consents",
        _id(),
        _ref("vehicle_id", "crm_vehicles"),
        _ref("customer_id", "crm_customers"),
        _text("purpose"),
        _ref("dealer_id", "crm_dealers", nullable=True),
        _us("valid_from_us"),
        _us("valid_to_us", nullable=True),
        _text("source"),
        _us("withdrawn_at_us", nullable=True),
        _us("created_us"),
    )
    op.create_index("ix_crm_consents_vehicle_purpose", "crm_consents", ["vehicle_id", "purpose"])
    op.create_table(
        "crm_grants",
        _id(),
        _ref("dealer_id", "crm_dealers"),
        _ref("vehicle_id", "crm_vehicles"),
        _text("purposes"),
        _text("fields"),
        _us("valid_from_us"),
        _us("valid_to_us", nullable=True),
        _us("created_us"),
    )
    op.create_index("ix_crm_grants_dealer_vehicle", "crm_grants", ["dealer_id", "vehicle_id"])
    op.create_table(
        "crm_api_keys",
        sa.Column("key_id", sa.String(), primary_key=True),
        _text("secret_sha256"),
        _ref("dealer_id", "crm_dealers", nullable=True),
        _text("role"),
        _text("label"),
        _us("created_us"),
        _us("revoked_at_us", nullable=True),
    )
    op.create_table(
        "crm_audit_log",
        sa.Column("id", BIG_ID, primary_key=True),
        _us("at_us"),
        _text("principal"),
        _text("role"),
        sa.Column("dealer_id", sa.Integer(), nullable=True),
        _text("purpose"),
        _text("action"),
        _text("resource"),
        _text("result"),
        sa.Column("status", sa.Integer(), nullable=False),
    )
    op.create_index("ix_crm_audit_log_at", "crm_audit_log", ["at_us"])
    op.create_table(
        "crm_leads",
        _id(),
        _ref("vehicle_id", "crm_vehicles"),
        _ref("dealer_id", "crm_dealers"),
        _text("kind"),
        _text("reason"),
        _text("state"),
        _us("opened_us"),
        _us("closed_us", nullable=True),
        _version(),
    )
    op.create_index("ix_crm_leads_vehicle_state", "crm_leads", ["vehicle_id", "state"])
    op.create_index("ix_crm_leads_dealer_state", "crm_leads", ["dealer_id", "state"])
    op.create_table(
        "crm_lead_events",
        sa.Column("event_id", sa.String(), primary_key=True),
        _ref("lead_id", "crm_leads", nullable=True),
        _text("kind"),
        _text("outcome"),
        _us("received_us"),
    )
    op.create_table(
        "crm_appointments",
        _id(),
        _ref("lead_id", "crm_leads"),
        _ref("service_centre_id", "crm_service_centres", nullable=True),
        _us("start_us"),
        _us("end_us"),
        _text("state"),
        _version(),
    )
    op.create_index("ix_crm_appointments_lead_id", "crm_appointments", ["lead_id"])
    op.create_table(
        "crm_repair_orders",
        _id(),
        sa.Column(
            "lead_id", sa.Integer(), sa.ForeignKey("crm_leads.id"), nullable=False, unique=True
        ),
        _ref("appointment_id", "crm_appointments"),
        _ref("vehicle_id", "crm_vehicles"),
        _ref("dealer_id", "crm_dealers"),
        _text("concern"),
        _text("cause"),
        _text("correction"),
        sa.Column("parts", sa.JSON(), nullable=False),
        sa.Column("labour_hours", _FLOAT, nullable=False),
        sa.Column("mileage_km", _FLOAT, nullable=True),
        _text("state"),
        _us("opened_us"),
        _us("closed_us", nullable=True),
        _version(),
    )
    op.create_index("ix_crm_repair_orders_vehicle_id", "crm_repair_orders", ["vehicle_id"])
    op.create_table(
        "crm_maintenance_schedules",
        sa.Column("model", sa.String(), primary_key=True),
        sa.Column("interval_km", _FLOAT, nullable=True),
        sa.Column("interval_days", _FLOAT, nullable=True),
        sa.Column("remind_before_km", _FLOAT, nullable=False),
        sa.Column("remind_before_days", _FLOAT, nullable=False),
        _version(),
    )
    op.create_table(
        "crm_recalls", _id(), _text("code", unique=True), _text("title"), _us("created_us")
    )
    op.create_table(
        "crm_recall_vehicles",
        sa.Column("recall_id", sa.Integer(), sa.ForeignKey("crm_recalls.id"), primary_key=True),
        sa.Column("vin", sa.String(17), primary_key=True),
        _text("status"),
        _us("updated_us"),
        _version(),
    )
    op.create_table(
        "crm_webhooks",
        _id(),
        _ref("dealer_id", "crm_dealers"),
        _text("url"),
        _text("secret"),
        _us("created_us"),
    )
    op.create_index("ix_crm_webhooks_dealer_id", "crm_webhooks", ["dealer_id"])
    op.create_table(
        "crm_webhook_deliveries",
        _id(),
        _ref("webhook_id", "crm_webhooks"),
        _text("event_type"),
        sa.Column("payload", sa.JSON(), nullable=False),
        _text("state"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _text("last_error", nullable=True),
        _us("created_us"),
        _us("due_us"),
        _us("finished_us", nullable=True),
    )
    op.create_index(
        "ix_crm_webhook_deliveries_state_due", "crm_webhook_deliveries", ["state", "due_us"]
    )  # fmt: skip


def downgrade() -> None:
    for name in _TABLES:
        op.drop_table(name)
