"""A spatial index of points: a fixed latitude/longitude grid over numpy arrays.

Points are sorted by grid cell in row-major order (a row is one band of
latitude), so the cells of one row that a query circle overlaps are one
contiguous slice of the sorted arrays, found by two binary searches. A query
therefore costs one pair of ``searchsorted`` per row of cells it spans (about
ten for 25 km on the default 0.05° grid) plus one vectorised haversine over the
candidates, which refines the square to the exact circle.

Why a grid and not h3 or an R-tree: the catalogs are static between reloads,
so a sorted array needs no insertion structure; the candidates come out as
numpy slices ready for vectorised distance, filtering and scoring, where h3
would hand back hundreds of cells to look up one by one in Python, and it adds
no dependency. Measured with ``tools/bench/recommend.py`` (see the commit that
added it).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["EARTH_RADIUS_KM", "GridIndex", "haversine_km"]

EARTH_RADIUS_KM = 6371.0088
_KM_PER_DEG_LAT = math.pi * EARTH_RADIUS_KM / 180.0

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def haversine_km(lat: float, lon: float, lats: Floats, lons: Floats) -> Floats:
    """Great-circle distances from (lat, lon) to each point, in km."""
    p1 = math.radians(lat)
    p2 = np.radians(lats)
    dp = p2 - p1
    dl = np.radians(lons - lon)
    a = np.sin(dp / 2) ** 2 + math.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    result: Floats = 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(a)))
    return result


class GridIndex:
    """Points by grid cell; :meth:`within` answers "which points lie within r km"."""

    def __init__(self, lats: Floats, lons: Floats, *, cell_deg: float = 0.05) -> None:
        if lats.shape != lons.shape or lats.ndim != 1:
            raise ValueError("latitudes and longitudes must be 1-D arrays of one length")
        if not 0.001 <= cell_deg <= 10:
            raise ValueError(f"cell_deg must be within 0.001..10, got {cell_deg}")
        self._cell = cell_deg
        self._cols = math.ceil(360.0 / cell_deg)
        keys = self._keys(lats, lons)
        # Stable: points of one cell keep their given order, so results are
        # deterministic for equal input.
        self._order: Ints = np.argsort(keys, kind="stable").astype(np.int64)
        self._keys_sorted = keys[self._order]
        # In the given order, for distances to any subset of indices: radians and
        # cos(latitude) computed once here rather than per query.
        self._rlat = np.radians(lats.astype(np.float64))
        self._rlon = np.radians(lons.astype(np.float64))
        self._cos = np.cos(self._rlat)

    def __len__(self) -> int:
        return int(self._order.size)

    def _row(self, lat: float | Floats) -> npt.NDArray[np.int64]:
        return np.floor((np.asarray(lat) + 90.0) / self._cell).astype(np.int64)

    def _col(self, lon: float | Floats) -> npt.NDArray[np.int64]:
        cols = np.floor((np.asarray(lon) + 180.0) / self._cell).astype(np.int64)
        return np.clip(cols, 0, self._cols - 1)

    def _keys(self, lats: Floats, lons: Floats) -> Ints:
        return self._row(lats) * self._cols + self._col(lons)

    def candidates(self, lat: float, lon: float, radius_km: float) -> Ints:
        """Indices of the points in the cells that the circle overlaps (a superset of
        :meth:`within`), cheap to narrow by attributes before distances are computed."""
        if radius_km <= 0 or len(self) == 0:
            return np.empty(0, np.int64)
        dlat = radius_km / _KM_PER_DEG_LAT
        lat_lo, lat_hi = max(-90.0, lat - dlat), min(90.0, lat + dlat)
        # The widest longitude span is at the circle's latitude farthest from the equator.
        widest = max(abs(lat_lo), abs(lat_hi))
        cos_lat = math.cos(math.radians(widest))
        if widest >= 89.9 or radius_km / (_KM_PER_DEG_LAT * cos_lat) >= 180.0:
            col_ranges = [(0, self._cols - 1)]
        else:
            dlon = radius_km / (_KM_PER_DEG_LAT * cos_lat)
            c0 = math.floor((lon - dlon + 180.0) / self._cell)
            c1 = math.floor((lon + dlon + 180.0) / self._cell)
            col_ranges = _wrapped(c0, c1, self._cols)
        bounds = [
            (row * self._cols + c0, row * self._cols + c1 + 1)
            for row in range(int(self._row(lat_lo)), int(self._row(lat_hi)) + 1)
            for c0, c1 in col_ranges
        ]
        # Every row's range is one contiguous run of the sorted keys: two binary
        # searches per row, all rows in one call.
        edges = np.searchsorted(self._keys_sorted, np.asarray(bounds, np.int64).ravel())
        runs = [self._order[a:b] for a, b in edges.reshape(-1, 2).tolist() if b > a]
        if not runs:
            return np.empty(0, np.int64)
        return np.concatenate(runs)

    def distances_km(self, lat: float, lon: float, indices: Ints) -> Floats:
        """Great-circle distances from (lat, lon) to the points at ``indices``, in km."""
        p1, l1 = math.radians(lat), math.radians(lon)
        a = (
            np.sin((self._rlat[indices] - p1) / 2) ** 2
            + math.cos(p1) * self._cos[indices] * np.sin((self._rlon[indices] - l1) / 2) ** 2
        )
        result: Floats = 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(a)))
        return result

    def within(self, lat: float, lon: float, radius_km: float) -> tuple[Ints, Floats]:
        """Indices (into the arrays given at construction) and distances of the points
        within ``radius_km`` of (lat, lon), in index order."""
        found = np.sort(self.candidates(lat, lon, radius_km))
        distances = self.distances_km(lat, lon, found)
        inside = distances <= radius_km
        return found[inside], distances[inside]


def _wrapped(c0: int, c1: int, cols: int) -> list[tuple[int, int]]:
    """Column ranges of [c0, c1] on a grid that wraps at the antimeridian."""
    if c0 < 0:
        return [(0, c1), (cols + c0, cols - 1)]
    if c1 >= cols:
        return [(c0, cols - 1), (0, c1 - cols)]
    return [(c0, c1)]
