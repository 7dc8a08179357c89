"""The one home of conceptlab's chart colours: colour-blind-safe, distinct per category.

Every chart (the app's pages, probe reports, notebooks) takes its colours from here, so one
category keeps one colour everywhere and two categories never share a near-identical one:

- :data:`QUALITATIVE`: Okabe & Ito's eight colour-blind-safe colours, then eight more from Paul
  Tol's palettes, each added where it is farthest (CIELAB) from those already chosen; any two of
  the sixteen differ by ΔE76 ≥ 25 (``tests/test_explanations.py`` checks it).
- :data:`NAMED_COLORS`: a value that *is* a colour name ("red", "green" ...) is drawn in that
  colour, so a chart coloured by ShapesWorld's colour family reads at a glance; nothing else is
  ever drawn in a named colour's place.
- :func:`category_colors`: value -> colour for one chart's categories.
- Meaning colours: :data:`FOR` / :data:`AGAINST` (evidence for / against a class: blue and
  vermillion, told apart by every common colour-vision deficiency), :data:`NEUTRAL`,
  :data:`MATCH` / :data:`OTHER` (images that match a concept / the rest).

Plain strings in, plain hex strings out; no plotting library is imported.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = [
    "AGAINST",
    "FOR",
    "MATCH",
    "NAMED_COLORS",
    "NEUTRAL",
    "OKABE_ITO",
    "OTHER",
    "QUALITATIVE",
    "SEQUENTIAL",
    "category_colors",
    "delta_e",
]

#: Okabe & Ito (2008): orange, sky blue, bluish green, yellow, blue, vermillion, reddish purple, black
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")
#: Paul Tol's indigo, magenta, grey, olive, wine, purple, sand, green: the farthest-first extension
TOL_EXTENSION = ("#332288", "#EE3377", "#BBBBBB", "#999933", "#882255", "#AA4499", "#EECC66", "#228833")
QUALITATIVE = OKABE_ITO + TOL_EXTENSION
#: a value that names a colour is drawn in it (ShapesWorld's colour family and the usual names)
NAMED_COLORS = {
    "red": "#D62728", "green": "#2CA02C", "blue": "#1F77B4", "yellow": "#E6C200", "purple": "#9467BD", "orange": "#FF7F0E",
    "black": "#222222", "white": "#F2F2F2", "gray": "#8C8C8C", "grey": "#8C8C8C", "beige": "#D9C8A0", "pink": "#F4A6C6", "brown": "#8C564B",
}
FOR, AGAINST, NEUTRAL = "#0072B2", "#D55E00", "#9E9E9E"
MATCH, OTHER = "#0072B2", "#BBBBBB"
#: continuous values (scores): perceptually uniform and colour-blind safe
SEQUENTIAL = "Viridis"


def category_colors(values: Iterable[object], named: bool = True) -> dict[str, str]:
    """One colour per distinct value, in first-seen order: the value's own colour when every value
    names a colour (and ``named``), else :data:`QUALITATIVE` in order.

    More values than :data:`QUALITATIVE` holds cycle through it (and can no longer all differ);
    a chart with that many categories should group them first."""
    keys = [str(v) for v in dict.fromkeys(values)]
    if named and keys and all(k.lower() in NAMED_COLORS for k in keys):
        return {k: NAMED_COLORS[k.lower()] for k in keys}
    return {k: QUALITATIVE[i % len(QUALITATIVE)] for i, k in enumerate(keys)}


def _lab(color: str) -> np.ndarray:
    """CIELAB (D65) of a ``#RRGGBB`` colour."""
    text = color.lstrip("#")
    if len(text) != 6:
        raise ValueError(f"expected a #RRGGBB colour, got {color!r}")
    rgb = np.array([int(text[i : i + 2], 16) for i in (0, 2, 4)]) / 255.0
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def delta_e(a: str, b: str) -> float:
    """CIE76 colour difference of two ``#RRGGBB`` colours (≈ 2: just noticeable; > 20: clearly different)."""
    return float(np.linalg.norm(_lab(a) - _lab(b)))

