"""How many seeds would settle a claim: Student's t quantiles and a paired t-test sample size.

Without scipy (not a dependency of payattn), the t distribution's CDF for integer degrees of
freedom is the finite series of Abramowitz & Stegun 26.7.3 / 26.7.4, exact up to rounding, and
its quantile is found by bisection. Above MAX_EXACT_DF the Cornish–Fisher expansion in 1/df
(A&S 26.7.5, four terms) stands in; its error there is below 1e-7.

The sample size is the usual iterated-t formula for a two-sided paired (one-sample) t-test:
the smallest n with √n ≥ (t_{1−α/2, n−1} + t_{power, n−1}) · s / δ, where s is the observed
standard deviation of the per-seed differences and δ the margin to detect. It reproduces the
published tables, e.g. n = 10 for δ/s = 1 at α = 0.05 and power 0.8, and is within one seed
of the exact noncentral-t answer (docs/sweeps.md).
"""

from __future__ import annotations

import math
from statistics import NormalDist

ALPHA = 0.05  # two-sided
POWER = 0.80
MAX_SEEDS = 10_000  # the largest sweep `payattn sweep` runs; beyond it the answer is "> 10,000"
MAX_EXACT_DF = 200
METHOD = (f"paired t-test sample size: the smallest n with √n ≥ (t_{{{1 - ALPHA / 2:g}, n−1}} + "
          f"t_{{{POWER:g}, n−1}}) · s / δ (two-sided α = {ALPHA:g}, power {POWER:g}), s the observed "
          "std of the per-seed differences, δ the margin; t quantiles exact, iterated over n")


def t_cdf(t: float, df: int) -> float:
    """P(T ≤ t) for Student's t with integer `df` ≥ 1 (A&S 26.7.3 odd df, 26.7.4 even df)."""
    if df < 1:
        raise ValueError("the t distribution needs at least one degree of freedom")
    theta = math.atan2(t, math.sqrt(df))
    sin, cos2 = math.sin(theta), math.cos(theta) ** 2
    term = total = 1.0
    if df % 2 == 0:
        for k in range(1, df // 2):
            term *= cos2 * (2 * k - 1) / (2 * k)
            total += term
        within = sin * total  # P(|T| ≤ |t|), signed like t
    else:
        for k in range(1, (df - 1) // 2):
            term *= cos2 * (2 * k) / (2 * k + 1)
            total += term
        within = 2 / math.pi * (theta + (sin * math.cos(theta) * total if df > 1 else 0.0))
    return 0.5 * (1 + within)


def t_quantile(p: float, df: int) -> float:
    """The p quantile of Student's t with integer `df` ≥ 1 (0 < p < 1)."""
    if not 0 < p < 1:
        raise ValueError(f"a quantile needs 0 < p < 1, got {p}")
    if df < 1:
        raise ValueError("the t distribution needs at least one degree of freedom")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    if df > MAX_EXACT_DF:
        z = NormalDist().inv_cdf(p)
        return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
                + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
                + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * df**4))
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, high * 2
    for _ in range(200):
        mid = (low + high) / 2
        if mid in (low, high):
            break
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


def seeds_needed(std: float, margin: float, alpha: float = ALPHA, power: float = POWER,
                 cap: int = MAX_SEEDS) -> int | None:
    """Seeds (pairs) for a two-sided paired t-test to detect a difference of `margin` with the
    given power, from the per-seed std of the difference; None when more than `cap` are needed."""
    if not (std > 0 and margin > 0):
        raise ValueError("a sample size needs a positive spread and margin")

    def enough(n: int) -> bool:
        k = (t_quantile(1 - alpha / 2, n - 1) + t_quantile(power, n - 1)) * std / margin
        return k * k <= n

    if not enough(cap):
        return None
    low, high = 1, cap  # enough(high) holds; n ≥ 2 for a t-test; enough is monotone in n
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high
