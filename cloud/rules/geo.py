"""Whether a position lies inside a geofence (circle by great-circle distance, or polygon)."""

from __future__ import annotations

import math

from cloud.rules.config import Circle, Geofence

__all__ = ["distance_m", "inside"]

_EARTH_RADIUS_M = 6_371_008.8


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def inside(fence: Geofence, lat: float, lon: float) -> bool:
    if isinstance(fence, Circle):
        return distance_m(fence.latitude, fence.longitude, lat, lon) <= fence.radius_m
    # Ray casting in (lon, lat) as a plane: geofences are small next to the
    # earth, and none is expected to straddle the antimeridian.
    hit = False
    points = fence.points
    for (lat_a, lon_a), (lat_b, lon_b) in zip(points, [*points[1:], points[0]], strict=True):
        if (lat_a > lat) != (lat_b > lat):
            crossing = lon_a + (lat - lat_a) * (lon_b - lon_a) / (lat_b - lat_a)
            if lon < crossing:
                hit = not hit
    return hit
