"""TCAV significance: a concept's TCAV scores over N random runs against random-concept scores.

Kim et al. (2018) and the reference ``tensorflow/tcav`` code: train the concept's CAV against N
different random sets, and N random-vs-random CAVs; a two-sided t-test of the two lists of TCAV
scores (``scipy.stats.ttest_ind``, equal variances, as the reference code) says whether the concept
differs from chance. Here the correction for testing several concepts is on by default
(Bonferroni: alpha / number of concepts tested), and every result carries its effect size
(Cohen's d with the pooled standard deviation) and a confidence interval for the difference of
mean scores (Student t, pooled variance -- the interval that matches the test, at the corrected
level).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["CORRECTIONS", "Significance", "binomial_sign_test", "significance_test"]

CORRECTIONS = ("bonferroni", "none")


@dataclass(frozen=True)
class Significance:
    """The verdict on one concept for one target.

    ``direction`` is ``+1`` when the concept's mean score is above the random mean, ``-1`` below;
    ``significant`` uses the corrected level ``alpha_used``."""

    p_value: float
    significant: bool
    direction: int
    effect_size: float
    difference: float
    ci_low: float
    ci_high: float
    concept_mean: float
    random_mean: float
    n_concept: int
    n_random: int
    alpha: float
    alpha_used: float
    correction: str

    def as_dict(self) -> dict:
        return asdict(self)


def significance_test(concept_scores, random_scores, alpha: float = 0.05, n_tests: int = 1, correction: str = "bonferroni") -> Significance:
    """Two-sided t-test of ``concept_scores`` against ``random_scores`` (see the module docstring)."""
    from scipy import stats

    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    a = np.asarray(concept_scores, dtype=np.float64).reshape(-1)
    b = np.asarray(random_scores, dtype=np.float64).reshape(-1)
    if a.size < 2 or b.size < 2:
        raise ValueError(f"a t-test needs at least 2 scores on each side, got {a.size} concept and {b.size} random scores")
    alpha_used = alpha / max(1, int(n_tests)) if correction == "bonferroni" else alpha
    difference = float(a.mean() - b.mean())
    pooled_var = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    pooled_sd = math.sqrt(pooled_var)
    if pooled_sd == 0.0:  # both lists constant: equal means are no evidence, different ones are certain
        p_value = 1.0 if difference == 0.0 else 0.0
        effect = 0.0 if difference == 0.0 else math.copysign(math.inf, difference)
        half = 0.0
    else:
        # Student's t with the pooled variance: scipy.stats.ttest_ind's default, written out so nearly
        # constant score lists (all sign counts 1.0 but one) do not trip its precision-loss warning
        se = pooled_sd * math.sqrt(1.0 / a.size + 1.0 / b.size)
        p_value = float(2.0 * stats.t.sf(abs(difference / se), a.size + b.size - 2))
        effect = difference / pooled_sd
        half = float(stats.t.ppf(1.0 - alpha_used / 2.0, a.size + b.size - 2)) * se
    return Significance(
        p_value=p_value, significant=bool(p_value < alpha_used), direction=int(np.sign(difference)), effect_size=float(effect),
        difference=difference, ci_low=difference - half, ci_high=difference + half, concept_mean=float(a.mean()),
        random_mean=float(b.mean()), n_concept=int(a.size), n_random=int(b.size), alpha=float(alpha), alpha_used=float(alpha_used),
        correction=correction,
    )


def binomial_sign_test(directional_derivatives, alpha: float = 0.05) -> tuple[float, bool]:
    """The naive check a single CAV invites: is the fraction of positive directional derivatives
    different from one half, treating inputs as independent coin flips (two-sided binomial test)?
    It ignores how much the CAV itself varies with its random set -- the reason TCAV needs random runs."""
    from scipy import stats

    values = np.asarray(directional_derivatives, dtype=np.float64).reshape(-1)
    positive = int((values > 0).sum())
    p_value = float(stats.binomtest(positive, values.size, 0.5).pvalue)
    return p_value, bool(p_value < alpha)
