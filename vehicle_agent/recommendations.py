"""Suggestions for the head unit: fetched from the recommendation API, kept for offline use.

:class:`RecommendationClient` posts the car's context to the automaker's
recommendation API (aiohttp) and keeps the last good answer on disk, written
atomically (a temporary file, fsync, rename), so a power cut leaves the old
answer or the new one, never half of one. When the API cannot be reached (no
network, a timeout, a 5xx) it returns that cached answer marked ``stale``;
a 4xx is a bug in what the car sent and is raised, not hidden behind the cache.

The context is the API's (see ``cloud.recommend.schemas.ContextIn``): the
car's pseudonymous token, never its VIN, and the position marked ``exact``
only while the owner consented to location.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp

from vehicle_agent.errors import UplinkError

__all__ = [
    "RecommendationClient",
    "RecommendationsUnavailable",
    "Suggestion",
    "Suggestions",
    "format_suggestions",
    "head_unit_context",
    "parse_answer",
]


class RecommendationsUnavailable(UplinkError):
    """No answer from the API and none cached, or the API refused the request (4xx)."""


@dataclass(frozen=True, slots=True)
class Suggestion:
    id: str
    kind: str
    name: str
    distance_km: float
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Suggestions:
    places: tuple[Suggestion, ...]
    content: tuple[str, ...]
    notes: tuple[str, ...]
    #: Wall-clock time (s since the epoch) the answer came from the API.
    fetched_at: float
    #: True when the API could not be reached and this is the last answer kept.
    stale: bool = False


def parse_answer(document: Mapping[str, Any], fetched_at: float, *, stale: bool) -> Suggestions:
    """The suggestions in an API answer; raises ``ValueError`` for a foreign document."""
    try:
        places = tuple(
            Suggestion(
                id=str(item["id"]),
                kind=str(item["kind"]),
                name=str(item["name"]),
                distance_km=float(item["distance_km"]),
                reasons=tuple(str(reason["text"]) for reason in item["reasons"]),
            )
            for item in document["suggestions"]
        )
        content = tuple(str(item["title"]) for item in document["content"])
        notes = tuple(str(note) for note in document.get("notes", ()))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a recommendation answer: {exc!r}") from exc
    return Suggestions(places, content, notes, fetched_at, stale)


class RecommendationClient:
    """One head unit's client; ``async with`` it, or call :meth:`close` (idempotent)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        cache_path: Path,
        *,
        timeout_s: float = 5.0,
    ) -> None:
        self._url = base_url.rstrip("/") + "/v1/recommendations"
        self._headers = {"X-API-Key": api_key}
        self._cache = cache_path
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, context: Mapping[str, Any]) -> Suggestions:
        """Fresh suggestions for ``context``, or the cached ones marked stale."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(
                self._url, json=dict(context), headers=self._headers
            ) as answer:
                body = await answer.read()
                status = answer.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return await self._cached(f"the recommendation API cannot be reached: {exc!r}")
        if 400 <= status < 500:
            raise RecommendationsUnavailable(
                f"the recommendation API refused the request ({status}): "
                f"{body[:500].decode(errors='replace')}"
            )
        if status != 200:
            return await self._cached(f"the recommendation API answered {status}")
        try:
            suggestions = parse_answer(json.loads(body), time.time(), stale=False)
        except ValueError as exc:
            return await self._cached(f"the recommendation API's answer is unusable: {exc}")
        await asyncio.to_thread(_write_atomically, self._cache, body, suggestions.fetched_at)
        return suggestions

    async def _cached(self, why: str) -> Suggestions:
        kept = await asyncio.to_thread(_read_cache, self._cache)
        if kept is None:
            raise RecommendationsUnavailable(f"{why}; no earlier answer is kept")
        return kept

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def _write_atomically(path: Path, body: bytes, fetched_at: float) -> None:
    document = json.dumps({"fetched_at": fetched_at, "answer": json.loads(body)}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(document)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    # The rename itself is durable only once the directory is synced.
    with contextlib.suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _read_cache(path: Path) -> Suggestions | None:
    """The kept answer; None when there is none or it cannot be used (it is not fatal)."""
    try:
        document = json.loads(path.read_bytes())
        return parse_answer(document["answer"], float(document["fetched_at"]), stale=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def format_suggestions(suggestions: Suggestions, *, now: float | None = None) -> list[str]:
    """Lines for a screen or a terminal: each place with its distance and reasons."""
    lines: list[str] = []
    if suggestions.stale:
        age = (now if now is not None else time.time()) - suggestions.fetched_at
        lines.append(f"(offline: suggestions from {age / 60:.0f} min ago)")
    for number, place in enumerate(suggestions.places, start=1):
        lines.append(f"{number}. {place.name} ({place.kind}, {place.distance_km:.1f} km)")
        lines.extend(f"   - {reason}" for reason in place.reasons)
    lines.extend(f"* {title}" for title in suggestions.content)
    lines.extend(f"note: {note}" for note in suggestions.notes)
    if not suggestions.places and not suggestions.content:
        lines.append("no suggestions")
    return lines


def head_unit_context(
    *,
    lat: float,
    lon: float,
    location_consent: bool,
    token: str | None = None,
    energy: str | None = None,
    level_pct: float | None = None,
    range_km: float | None = None,
    model: str | None = None,
    faults: tuple[str, ...] = (),
    limit: int = 5,
) -> dict[str, Any]:
    """The context a head unit sends: exact position only with the owner's location consent
    (the API coarsens it otherwise, and so does the car: it never sends more than needed)."""
    if not location_consent:
        # Rounded here too (0.1°, as the API does): the exact position never leaves the car.
        lat, lon = round(lat, 1), round(lon, 1)
    context: dict[str, Any] = {
        "position": {
            "lat": lat,
            "lon": lon,
            "precision": "exact" if location_consent else "coarse",
        },
        "limit": limit,
    }
    optional = {
        "token": token,
        "energy": energy,
        "level_pct": level_pct,
        "range_km": range_km,
        "model": model,
    }
    context.update({key: value for key, value in optional.items() if value is not None})
    if faults:
        context["faults"] = [{"code": code} for code in faults]
    return context
