"""The CRM's HTTP API (FastAPI): one router per resource, composed by ``create_app``."""

from __future__ import annotations

from crm.api.app import create_app

__all__ = ["create_app"]
