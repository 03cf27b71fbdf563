"""Verified API keys, trusted for a few seconds without reading their row again.

Checking a key costs a transaction; a dealer's system sends many requests a
second with the same key. Entries are keyed by the SHA-256 of the whole
credential (the secret itself is not kept) and live ``ttl`` seconds; a key
revoked through this process is forgotten at once.
"""

from __future__ import annotations

import hashlib
import threading
import time

from crm.auth import Principal

__all__ = ["KeyCache"]

#: Entries beyond this are dropped oldest first: the cache stays bounded.
_MAX_ENTRIES = 10_000


class KeyCache:
    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, credential: str) -> Principal | None:
        if self._ttl <= 0:
            return None
        digest = _digest(credential)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                del self._entries[digest]
                return None
            return entry[1]

    def put(self, credential: str, principal: Principal) -> None:
        if self._ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= _MAX_ENTRIES:
                del self._entries[next(iter(self._entries))]
            self._entries[_digest(credential)] = (time.monotonic() + self._ttl, principal)

    def forget(self, tenant: str, key_id: str) -> None:
        """Drop every entry of one key (it was revoked)."""
        with self._lock:
            for digest, (_, principal) in list(self._entries.items()):
                if principal.tenant == tenant and principal.subject == key_id:
                    del self._entries[digest]


def _digest(credential: str) -> str:
    return hashlib.sha256(credential.encode()).hexdigest()
