"""The verified-key cache: entries expire, a revoked key is forgotten, size is bounded."""

from __future__ import annotations

import time

from crm.auth import Principal, Role
from crm.keycache import KeyCache

DEALER = Principal("acme", "k1", Role.DEALER, 7)


def test_an_entry_lives_for_its_ttl_only() -> None:
    cache = KeyCache(0.05)
    cache.put("thk_acme.k1.secret", DEALER)
    assert cache.get("thk_acme.k1.secret") == DEALER
    assert cache.get("thk_acme.k1.other") is None
    time.sleep(0.06)
    assert cache.get("thk_acme.k1.secret") is None


def test_forget_drops_every_entry_of_the_key_and_ttl_zero_caches_nothing() -> None:
    cache = KeyCache(60)
    cache.put("a", DEALER)
    cache.put("b", Principal("globex", "k1", Role.ADMIN, None))
    cache.forget("acme", "k1")
    assert cache.get("a") is None
    assert cache.get("b") is not None
    off = KeyCache(0)
    off.put("a", DEALER)
    assert off.get("a") is None
