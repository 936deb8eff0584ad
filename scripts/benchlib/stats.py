"""Percentiles and small numeric helpers (no numpy: the bench process stays light)."""

from __future__ import annotations

import statistics
from typing import Iterable


def quantile(values: Iterable[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile of ``values`` (None when there are none)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def percentiles(samples: Iterable[float], scale: float = 1.0) -> dict[str, float]:
    """n, p50, p90, p99, max and mean of ``samples * scale`` (nearest-rank)."""
    ordered = sorted(x * scale for x in samples)
    if not ordered:
        return {"n": 0}
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"n": len(ordered), "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": ordered[-1],
            "mean": statistics.fmean(ordered)}


def median(values: Iterable[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def rate(count: float, seconds: float | None) -> float | None:
    return count / seconds if seconds and seconds > 0 else None
