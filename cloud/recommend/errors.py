"""Errors of the recommendation service, grouped by what the caller can do.

::

    CloudError                       (cloud.errors)
    └── RecommendError
        ├── CatalogError             a catalog file that cannot be used: names the
        │                            file, the line or feature, and the field
        ├── InvalidContext           a vehicle context that cannot be ranked
        └── InvalidApiKey            a missing or unknown API key

The API maps this tree to HTTP status codes in one place
(``cloud.recommend.app``); nothing here knows about HTTP.
"""

from __future__ import annotations

from cloud.errors import CloudError

__all__ = ["CatalogError", "InvalidApiKey", "InvalidContext", "RecommendError"]


class RecommendError(CloudError):
    """Root of every error the recommendation service raises on purpose."""


class CatalogError(RecommendError):
    """A catalog entry or file that cannot be used; nothing of the file was loaded."""

    def __init__(self, message: str, *, source: str = "", where: str = "", field: str = "") -> None:
        parts = [part for part in (source, where, f"field {field!r}" if field else "") if part]
        super().__init__(f"{': '.join(parts)}: {message}" if parts else message)
        self.source = source
        self.where = where
        self.field = field
        self.reason = message


class InvalidContext(RecommendError):
    """A vehicle context that cannot be ranked (the message says which field and why)."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class InvalidApiKey(RecommendError):
    """The request carries no API key, or one no tenant knows."""
