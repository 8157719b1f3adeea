"""Latency statistics shared by the benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Seconds in, milliseconds out."""

    median_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    count: int

    @classmethod
    def of(cls, seconds: list[float] | np.ndarray) -> "LatencyStats":
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        return cls(float(np.median(ms)), float(np.percentile(ms, 99)), float(ms.max()), float(ms.mean()), len(ms))
