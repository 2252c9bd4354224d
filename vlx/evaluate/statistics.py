"""The summary statistics every metric reports, with one policy for undefined values.

A value is NaN where a metric is undefined for that case (a constant map has no ranks, an
all-zero map no energy to place): NaNs are counted and left out of means, medians and
standard errors, never silently averaged in.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def mean_and_error(values: Sequence[float]) -> dict[str, float | int]:
    """Mean, standard error of the mean and count of the values that are not NaN."""
    kept = [v for v in values if not math.isnan(v)]
    return {
        "mean": statistics.fmean(kept) if kept else float("nan"),
        "std_error": statistics.stdev(kept) / math.sqrt(len(kept)) if len(kept) > 1
        else float("nan"),
        "count": len(kept),
    }


def ratio_summary(values: Sequence[float]) -> dict[str, float | int]:
    """Median over defined ratios (robust to infinite ones), mean and standard error over
    finite ones, and how many were NaN or infinite."""
    defined = [v for v in values if not math.isnan(v)]
    finite = [v for v in defined if math.isfinite(v)]
    spread = mean_and_error(finite)
    return {
        "median": statistics.median(defined) if defined else float("nan"),
        "mean": spread["mean"],
        "std_error": spread["std_error"],
        "count": len(values),
        "undefined": len(values) - len(defined),
        "infinite": len(defined) - len(finite),
    }
