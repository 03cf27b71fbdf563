"""Issuing API keys: a new random key, only its hash stored in the tenant's store."""

from __future__ import annotations

from crm.auth import ApiKey, Role, hash_secret, new_api_key
from crm.errors import InvalidInput
from crm.store import CrmStore

__all__ = ["issue_api_key"]


def issue_api_key(
    store: CrmStore, tenant: str, *, role: Role, dealer_id: int | None, label: str
) -> ApiKey:
    """A new key of ``tenant`` (the store must be that tenant's); the secret is never stored."""
    if (role is Role.DEALER) != (dealer_id is not None):
        raise InvalidInput("a dealer key needs dealer_id, an admin key none")
    if dealer_id is not None:
        store.dealer(dealer_id)
    key = new_api_key(tenant)
    store.add_api_key(
        key.key_id, hash_secret(key.secret), role=role.value, dealer_id=dealer_id, label=label
    )
    return key
