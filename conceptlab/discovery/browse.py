"""What an SAE feature page shows besides the top images, as functions a notebook can call.

>>> z = run.encode(embeddings).numpy()                    # (N, M) latent activations
>>> bands = activation_bands(z[:, 48])                    # top, quantile bands, random firing examples
>>> [(b.name, b.low, b.high, list(b.indices)) for b in bands]
>>> feature_density(z)                                    # (M,) share of images each latent fires on
>>> activation_histogram(z[:, 48])                        # counts and edges over its non-zero activations

As SAEDashboard and Neuronpedia do for language models: besides the top activations, examples
drawn from bands of lower activation (here quantiles of the latent's non-zero activations, so
each band holds the same number of firing images) and random firing examples show what a latent
does across its whole range, not just at its peak; the density (log10 of the firing share) tells
dense from rare latents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ActivationBand", "activation_bands", "activation_histogram", "feature_density"]


@dataclass(frozen=True)
class ActivationBand:
    """One group of examples of a latent: ``name`` ("top", "quantile 50–75%", "random firing"),
    the activation range ``[low, high]`` it covers, ``count`` images in that range, and the
    ``indices`` shown (ordered by activation, highest first) with their ``values``."""

    name: str
    low: float
    high: float
    count: int
    indices: np.ndarray
    values: np.ndarray

    @property
    def label(self) -> str:
        return f"{self.name} · activations {self.low:.3g}–{self.high:.3g} · {len(self.indices)} of {self.count} images"


def _values(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"expected one latent's activations as a 1-D array, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("the activations hold NaN or infinite values")
    return values


def _band(name: str, values: np.ndarray, members: np.ndarray, shown: np.ndarray) -> ActivationBand:
    shown = shown[np.argsort(-values[shown], kind="stable")]
    low = float(values[members].min()) if len(members) else 0.0
    high = float(values[members].max()) if len(members) else 0.0
    return ActivationBand(name, low, high, int(len(members)), shown.astype(np.int64), values[shown])


def activation_bands(
    values: Sequence[float] | np.ndarray,
    top: int = 16,
    quantiles: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    per_band: int = 8,
    n_random: int = 8,
    seed: int = 0,
) -> list[ActivationBand]:
    """Examples of one latent across its range: the ``top`` highest activations, ``per_band``
    random images from each quantile band of its non-zero activations (highest band first), and
    ``n_random`` random images among all where it fires.

    ``quantiles`` are the band edges as fractions of the firing images, sorted, from 0 to 1
    (default: quartiles). Images where the latent is zero are never shown; a latent that never
    fires gives no bands. Draws are seeded, so a page shows the same examples on every rerun.
    """
    values = _values(np.asarray(values))
    edges = np.asarray(quantiles, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or edges[0] != 0.0 or edges[-1] != 1.0 or (np.diff(edges) <= 0).any():
        raise ValueError(f"quantiles must rise strictly from 0 to 1, got {list(quantiles)}")
    if min(top, per_band, n_random) < 0:
        raise ValueError("top, per_band and n_random cannot be negative")
    firing = np.flatnonzero(values > 0)
    if not len(firing):
        return []
    rng = np.random.default_rng(seed)
    ranked = firing[np.argsort(-values[firing], kind="stable")]  # highest first; ties by index
    bands = [_band("top", values, ranked[:top], ranked[:top])]
    ascending = ranked[::-1]
    cuts = np.round(edges * len(ascending)).astype(int)
    for lo, hi, q_lo, q_hi in reversed(list(zip(cuts[:-1], cuts[1:], edges[:-1], edges[1:]))):
        members = ascending[lo:hi]
        if not len(members):
            continue
        shown = rng.choice(members, size=min(per_band, len(members)), replace=False)
        bands.append(_band(f"quantile {100 * q_lo:.0f}–{100 * q_hi:.0f}%", values, members, shown))
    if n_random:
        shown = rng.choice(firing, size=min(n_random, len(firing)), replace=False)
        bands.append(_band("random firing", values, firing, shown))
    return bands


def feature_density(z: np.ndarray) -> np.ndarray:
    """(M,) share of the N images each latent fires on (activation > 0), from (N, M) activations."""
    z = np.asarray(z)
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(f"expected (N, M) activations with N ≥ 1, got shape {z.shape}")
    return (z > 0).mean(axis=0)


def activation_histogram(values: Sequence[float] | np.ndarray, bins: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, edges)`` of one latent's non-zero activations (``bins`` equal-width bins); a
    latent that never fires gives empty arrays."""
    values = _values(np.asarray(values))
    firing = values[values > 0]
    if not len(firing):
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.histogram(firing, bins=int(bins))
