"""95% confidence intervals of per-image means by the percentile bootstrap over images (Efron and
Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13): resample the n images with replacement B
times, take the mean of each resample, and report the 2.5% and 97.5% quantiles of those B means. Seeded,
so a table rebuilt from the same records gets the same interval."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95


def mean_ci(values: Sequence[float], seed: int, level: float = LEVEL, resamples: int = RESAMPLES) -> tuple[float, float]:
    """(low, high) of the bootstrap interval of ``mean(values)``; NaN, NaN without values."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    means = x[np.random.default_rng(seed).integers(0, x.size, (resamples, x.size))].mean(1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
