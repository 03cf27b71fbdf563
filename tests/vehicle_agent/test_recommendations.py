"""The head unit's recommendation client against a real API on loopback, and its offline cache."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from cloud.recommend.app import create_app
from cloud.recommend.sample import sample_settings
from cloud.recommend.server import RecommendServer
from vehicle_agent.recommendations import (
    RecommendationClient,
    RecommendationsUnavailable,
    format_suggestions,
)

KEY = "head-unit-test-key-0123456789"
CONTEXT = {
    "token": "0123456789abcdef0123456789abcdef",
    "position": {"lat": 56.10, "lon": 10.19, "precision": "exact"},
    "energy": "electric",
    "level_pct": 12,
    "model": "Aurora EV",
    "local_time": "2026-12-07T14:05:00+01:00",
    "limit": 3,
}


@pytest.fixture
async def api() -> AsyncIterator[RecommendServer]:
    async with RecommendServer(create_app(sample_settings(KEY))) as server:
        yield server


async def test_fetches_and_keeps_the_answer_for_offline_use(
    api: RecommendServer, tmp_path: Path
) -> None:
    cache = tmp_path / "cache" / "suggestions.json"
    url = f"http://127.0.0.1:{api.port}"
    async with RecommendationClient(url, KEY, cache) as client:
        fresh = await client.fetch(CONTEXT)
    assert not fresh.stale
    assert len(fresh.places) == 3
    assert all(place.kind == "charging" and place.reasons for place in fresh.places)
    assert any("recall" in title.lower() for title in fresh.content)
    assert cache.exists()
    assert [p.name for p in cache.parent.iterdir()] == ["suggestions.json"]  # no temporaries
    await api.stop()
    async with RecommendationClient(url, KEY, cache, timeout_s=1) as client:
        offline = await client.fetch(CONTEXT)
    assert offline.stale
    assert offline.places == fresh.places
    assert offline.fetched_at == fresh.fetched_at
    lines = format_suggestions(offline, now=fresh.fetched_at + 600)
    assert lines[0] == "(offline: suggestions from 10 min ago)"
    assert lines[1].startswith("1. ")
    assert "km)" in lines[1]


async def test_bad_context_is_an_error_not_the_cache(api: RecommendServer, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{api.port}"
    async with RecommendationClient(url, KEY, tmp_path / "c.json") as client:
        await client.fetch(CONTEXT)
        with pytest.raises(RecommendationsUnavailable, match=r"\(422\).*level_pct"):
            await client.fetch({**CONTEXT, "level_pct": 150})
    async with RecommendationClient(url, "wrong", tmp_path / "d.json") as stranger:
        with pytest.raises(RecommendationsUnavailable, match=r"\(401\)"):
            await stranger.fetch(CONTEXT)


async def test_nothing_reachable_and_nothing_kept(tmp_path: Path) -> None:
    # A port nothing listens on: bind one, then close it.
    server = RecommendServer(create_app(sample_settings(KEY)))
    await server.start()
    url = f"http://127.0.0.1:{server.port}"
    await server.stop()
    async with RecommendationClient(url, KEY, tmp_path / "none.json", timeout_s=1) as client:
        with pytest.raises(RecommendationsUnavailable, match="no earlier answer"):
            await client.fetch(CONTEXT)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (503, b'{"error": "unavailable"}'),
        (200, b"<html>proxy</html>"),
        (200, b'{"unexpected": true}'),
    ],
)
async def test_server_errors_and_foreign_answers_fall_back_to_the_cache(
    tmp_path: Path, status: int, body: bytes
) -> None:
    cache = tmp_path / "kept.json"
    answer = {
        "suggestions": [
            {
                "id": "a",
                "kind": "fuel",
                "name": "A",
                "distance_km": 1.5,
                "reasons": [{"code": "x", "text": "near"}],
            }
        ],
        "content": [],
        "notes": [],
    }
    cache.write_text(json.dumps({"fetched_at": 1000.0, "answer": answer}))

    async def handler(_: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/recommendations", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with RecommendationClient(f"http://127.0.0.1:{port}", KEY, cache) as client:
            kept = await client.fetch(CONTEXT)
    finally:
        await runner.cleanup()
    assert kept.stale
    assert [p.name for p in kept.places] == ["A"]


async def test_a_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    cache = tmp_path / "kept.json"
    cache.write_text('{"fetched_at": 1, "answer": {"suggest')
    async with RecommendationClient("http://127.0.0.1:9", KEY, cache, timeout_s=1) as client:
        with pytest.raises(RecommendationsUnavailable):
            await client.fetch(CONTEXT)
