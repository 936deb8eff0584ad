"""Summaries of the soak's measurements; quantiles come from benchlib.stats (one implementation)."""

from __future__ import annotations

from typing import Any

from benchlib.stats import quantile

MB = 1024 * 1024


def summary_ms(values: list[float]) -> dict[str, Any]:
    """n, p50, p99 and max of ``values`` (already in ms), rounded to 3 decimals; None where there are none."""
    return {"n": len(values), "p50": r3(quantile(values, 0.5)), "p99": r3(quantile(values, 0.99)),
            "max": r3(max(values) if values else None)}


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var * 60


def r3(value: float | None) -> float | None:
    """``value`` rounded to 3 decimals (None stays None): reports stay readable."""
    return None if value is None else round(value, 3)


def fmt(value: float | None, spec: str = ".1f", none: str = "-") -> str:
    """``value`` formatted with ``spec`` for a console line, or ``none`` when it is missing."""
    return none if value is None else format(value, spec)

