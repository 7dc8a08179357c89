"""Drawing one ShapesWorld image from its attribute row.

Shapes are drawn at 4x resolution and downsampled, so edges are anti-aliased at any output size.
Everything that varies between images (jitter, rotation, colour noise) is read from the row, which
makes rendering a pure function: the same row always gives the same pixels.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["render_image", "render_masks", "COLOR_RGB", "BACKGROUND_RGB", "FAMILY_REGIONS", "REGIONS"]

COLOR_RGB = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (35, 70, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 180),
    "orange": (250, 130, 20),
}
BACKGROUND_RGB = {
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
    "beige": (215, 195, 150),
}
# radius as a fraction of the image side
SIZE_RADIUS = {"small": 0.10, "medium": 0.15, "large": 0.21}
POSITION_CENTER = {
    "top-left": (0.27, 0.27),
    "top-right": (0.73, 0.27),
    "bottom-left": (0.27, 0.73),
    "bottom-right": (0.73, 0.73),
}
SUPERSAMPLE = 4
#: the image regions a mask can name
REGIONS = ("shape", "background")
#: where the evidence for each attribute family lies: the shape's colour, size, fill, outline and
#: position are all drawn by the shape's silhouette; the background is everything else
FAMILY_REGIONS = {"shape": "shape", "color": "shape", "size": "shape", "fill": "shape", "position": "shape", "background": "background"}


def _polygon(shape: str, cx: float, cy: float, r: float, angle_deg: float) -> list[tuple[float, float]]:
    """Vertices of ``shape`` centred at (cx, cy) with outer radius r, rotated by angle_deg."""
    if shape == "square":
        points = [(math.cos(math.pi / 4 + k * math.pi / 2) * r, math.sin(math.pi / 4 + k * math.pi / 2) * r) for k in range(4)]
    elif shape == "triangle":
        points = [(math.cos(-math.pi / 2 + k * 2 * math.pi / 3) * r, math.sin(-math.pi / 2 + k * 2 * math.pi / 3) * r) for k in range(3)]
    elif shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            theta = -math.pi / 2 + k * math.pi / 5
            points.append((math.cos(theta) * radius, math.sin(theta) * radius))
    elif shape == "cross":
        a, b = r, r * 0.34
        points = [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a), (-b, b), (-a, b), (-a, -b), (-b, -b)]
    else:
        raise ValueError(f"no polygon for shape {shape!r}")
    t = math.radians(angle_deg)
    cos_t, sin_t = math.cos(t), math.sin(t)
    return [(cx + x * cos_t - y * sin_t, cy + x * sin_t + y * cos_t) for x, y in points]


def _shape_mask(row: dict, side: int) -> np.ndarray:
    r = SIZE_RADIUS[row["size"]] * (1.0 + row["scale_jitter"]) * side
    px, py = POSITION_CENTER[row["position"]]
    cx, cy = (px + row["jitter_x"]) * side, (py + row["jitter_y"]) * side
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    if row["shape"] == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        draw.polygon(_polygon(row["shape"], cx, cy, r, row["rotation"]), fill=255)
    return np.asarray(mask) > 127


def _fill_pattern(fill: str, side: int) -> np.ndarray:
    """Where a shape shows its colour (True) or lets the background through (False)."""
    yy, xx = np.mgrid[0:side, 0:side]
    period = max(4, side // 10)
    if fill == "solid":
        return np.ones((side, side), dtype=bool)
    if fill == "striped":
        return ((xx + yy) // (period // 2)) % 2 == 0
    if fill == "dotted":
        dot = period * 0.3
        dx = (xx % period) - period / 2
        dy = (yy % period) - period / 2
        return dx * dx + dy * dy > dot * dot
    raise ValueError(f"unknown fill {fill!r}")


def render_image(row: dict, resolution: int = 64) -> Image.Image:
    """Draw the image that ``row`` describes, ``resolution`` pixels square."""
    side = resolution * SUPERSAMPLE
    rng = np.random.default_rng(int(row["color_jitter"]))
    color = np.clip(np.array(COLOR_RGB[row["color"]]) + rng.integers(-12, 13, size=3), 0, 255)
    background = np.clip(np.array(BACKGROUND_RGB[row["background"]]) + rng.integers(-8, 9, size=3), 0, 255)
    mask = _shape_mask(row, side)
    coloured = mask & _fill_pattern(row["fill"], side)
    if row["fill"] != "solid":
        # a solid rim keeps the outline of patterned shapes as clear as that of solid ones
        rim = mask & ~_erode(mask, SUPERSAMPLE * max(1, resolution // 32))
        coloured |= rim
    canvas = np.empty((side, side, 3), dtype=np.uint8)
    canvas[:] = background.astype(np.uint8)
    canvas[coloured] = color.astype(np.uint8)
    image = Image.fromarray(canvas, "RGB")
    return image.resize((resolution, resolution), Image.Resampling.BOX)


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(steps):
        shrunk = out.copy()
        shrunk[1:, :] &= out[:-1, :]
        shrunk[:-1, :] &= out[1:, :]
        shrunk[:, 1:] &= out[:, :-1]
        shrunk[:, :-1] &= out[:, 1:]
        out = shrunk
    return out


def render_masks(row: dict, resolution: int = 64) -> dict[str, np.ndarray]:
    """Boolean pixel masks of the image :func:`render_image` draws from ``row``, ``resolution``
    pixels square: ``"shape"`` (the silhouette: pixels at least half covered by the shape, a
    pattern's gaps included) and ``"background"`` (the rest), and one per attribute family
    (``"color"``, ``"size"``, ...), the region of :data:`FAMILY_REGIONS` that carries it.

    The silhouette is the one the image is drawn with (the same supersampled polygon), so a mask
    and its image always agree."""
    side = resolution * SUPERSAMPLE
    coverage = _shape_mask(row, side).reshape(resolution, SUPERSAMPLE, resolution, SUPERSAMPLE).mean(axis=(1, 3))
    shape = coverage >= 0.5
    regions = {"shape": shape, "background": ~shape}
    return {**regions, **{family: regions[region] for family, region in FAMILY_REGIONS.items()}}
