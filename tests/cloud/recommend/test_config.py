"""Settings of the recommendation API: keys as digests, one key one tenant, ranking defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cloud.recommend.config import RankingSettings, RecommendSettings, hash_api_key
from cloud.recommend.ranking import ReachPolicy, Weights


def tenant(**overrides: Any) -> dict[str, Any]:
    return {
        "catalog_dir": Path("."),
        "api_keys": {"app": hash_api_key("k1")},
        "pseudonym_key": "p" * 32,
        **overrides,
    }


def test_ranking_settings_default_to_the_ranking_and_override_it() -> None:
    assert RankingSettings().weights() == Weights()
    assert RankingSettings().reach() == ReachPolicy()
    tuned = RankingSettings(power=1.2, reserve_km=0)
    assert tuned.weights().power == 1.2
    assert tuned.reach().reserve_km == 0


@pytest.mark.parametrize(
    ("tenants", "says"),
    [
        ({"a": tenant(api_keys={"app": "the-key-itself"})}, "SHA-256 hex digest"),
        ({"a": tenant(pseudonym_key="short")}, "at least 32 bytes"),
        ({"a": tenant(), "b": tenant()}, "reuses the API key of a/app"),
        ({"A B": tenant()}, "tenant name"),
        ({"a": tenant(timezone="Mars/Olympus")}, "unknown time zone"),
        ({"a": tenant(ranking={"detour_factor": 0.5})}, "detour_factor"),
        ({"a": tenant(colour="blue")}, "colour"),
    ],
)
def test_bad_settings_say_why_without_echoing_secrets(tenants: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RecommendSettings.model_validate({"tenants": tenants})
    assert says in str(caught.value)
    assert "the-key-itself" not in str(caught.value)
    assert "input_value" not in str(caught.value)
