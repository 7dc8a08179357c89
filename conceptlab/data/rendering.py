"""Drawing one ShapesWorld image from its attribute row.

Shapes are drawn at 4x resolution and downsampled, so edges are anti-aliased at any output size.
Everything that varies between images (jitter, rotation, colour noise) is read from the row, which
makes rendering a pure function: the same row always gives the same pixels.
"""

from __future__ import annotations

import math
from functools import lru_cache

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
SUPERSAMPLE = 4  # fixed: the fast box downsample packs a run of 4 canvas pixels into one uint32
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


@lru_cache(maxsize=16)
def _fill_pattern(fill: str, side: int) -> np.ndarray:
    """Where a shape shows its colour (True) or lets the background through (False).

    Cached and read-only: the pattern depends on (fill, side) only, and building it each time
    cost more than drawing the shape."""
    if fill not in ("solid", "striped", "dotted"):
        raise ValueError(f"unknown fill {fill!r}")
    yy, xx = np.mgrid[0:side, 0:side]
    period = max(4, side // 10)
    if fill == "solid":
        pattern = np.ones((side, side), dtype=bool)
    elif fill == "striped":
        pattern = ((xx + yy) // (period // 2)) % 2 == 0
    else:
        dot = period * 0.3
        dx = (xx % period) - period / 2
        dy = (yy % period) - period / 2
        pattern = dx * dx + dy * dy > dot * dot
    pattern.flags.writeable = False
    return pattern


def render_image(row: dict, resolution: int = 64) -> Image.Image:
    """Draw the image that ``row`` describes, ``resolution`` pixels square.

    The shape is drawn two-coloured at ``SUPERSAMPLE`` times the resolution and box-downsampled.
    The downsampling is computed from how many shape pixels each 4-pixel run holds, with the
    rounding of Pillow's two-pass BOX resize (horizontal, then vertical, each rounding half up to
    8 bits), so the pixels are those of ``Image.resize(..., BOX)`` on the full canvas without
    building it, and only over the output pixels the shape touches (the rest is background).
    Rendering is ShapesWorld's data-loading cost in extraction.
    """
    side = resolution * SUPERSAMPLE
    rng = np.random.default_rng(int(row["color_jitter"]))
    color = [min(255, max(0, c + j)) for c, j in zip(COLOR_RGB[row["color"]], rng.integers(-12, 13, size=3).tolist())]
    background = [min(255, max(0, c + j)) for c, j in zip(BACKGROUND_RGB[row["background"]], rng.integers(-8, 9, size=3).tolist())]
    pixels = np.empty((resolution, resolution, 3), dtype=np.uint8)
    pixels[:] = background
    mask = _shape_mask(row, side)
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if len(rows):
        # the output pixels the shape touches, as canvas slices aligned to whole output pixels
        top, bottom = rows[0] // SUPERSAMPLE, rows[-1] // SUPERSAMPLE + 1
        left, right = cols[0] // SUPERSAMPLE, cols[-1] // SUPERSAMPLE + 1
        window = (slice(top * SUPERSAMPLE, bottom * SUPERSAMPLE), slice(left * SUPERSAMPLE, right * SUPERSAMPLE))
        coloured = mask[window] & _fill_pattern(row["fill"], side)[window]
        if row["fill"] != "solid":
            # a solid rim keeps the outline of patterned shapes as clear as that of solid ones
            coloured |= mask[window] & ~_erode(mask, SUPERSAMPLE * max(1, resolution // 32), (rows[0], rows[-1], cols[0], cols[-1]))[window]
        pixels[top:bottom, left:right] = _box_downsample(coloured, np.array(color), np.array(background))
    return Image.fromarray(pixels, "RGB")


# Each output pixel's value depends only on how many shape pixels each of its 4 horizontal runs of
# 4 canvas pixels holds (0-4 each), so there are 5**4 possible pixels per image: the run counts are
# read as one base-5 code and the pixel is looked up. _RUN_COUNTS[c] are the four counts of code c.
_RUN_COUNTS = np.array(np.unravel_index(np.arange(5**SUPERSAMPLE), (5,) * SUPERSAMPLE, order="F"))
_BYTE_SUM = np.uint32(0x01010101)  # multiplying 4 packed 0/1 bytes by this sums them into the top byte


def _box_downsample(coloured: np.ndarray, color: np.ndarray, background: np.ndarray) -> np.ndarray:
    """(H/4, W/4, 3) uint8: the (H, W) canvas ``coloured`` ? color : background box-downsampled by 4
    with Pillow's BOX rounding (a horizontal pass, then a vertical one, each rounding half up)."""
    height, width = coloured.shape[0] // SUPERSAMPLE, coloured.shape[1] // SUPERSAMPLE
    runs = np.ascontiguousarray(coloured).view(np.uint8).reshape(height, SUPERSAMPLE, width * SUPERSAMPLE).view(np.uint32)
    counts = (runs * _BYTE_SUM) >> np.uint32(24)  # (output row, sub-row, output column): shape pixels per run
    code = counts[:, 0] + 5 * counts[:, 1] + 25 * counts[:, 2] + 125 * counts[:, 3]
    k = np.arange(SUPERSAMPLE + 1)[:, None]
    horizontal = (k * color + (SUPERSAMPLE - k) * background + 2) >> 2  # a run with k shape pixels, per channel
    table = (horizontal[_RUN_COUNTS].sum(axis=0) + 2) >> 2
    return table.astype(np.uint8)[code]


def _erode(mask: np.ndarray, steps: int, bounds: tuple[int, int, int, int]) -> np.ndarray:
    """``mask`` eroded ``steps`` times by the 4-neighbour cross (the image edge itself does not erode).

    Only the mask's bounding box ``bounds`` (first row, last row, first column, last column),
    grown by one pixel, is worked on: the rest stays False."""
    out = np.zeros_like(mask)
    top, bottom, left, right = bounds
    y0, y1 = max(top - 1, 0), min(bottom + 2, mask.shape[0])
    x0, x1 = max(left - 1, 0), min(right + 2, mask.shape[1])
    box = mask[y0:y1, x0:x1].copy()
    for _ in range(steps):
        shrunk = box.copy()
        shrunk[1:, :] &= box[:-1, :]
        shrunk[:-1, :] &= box[1:, :]
        shrunk[:, 1:] &= box[:, :-1]
        shrunk[:, :-1] &= box[:, 1:]
        box = shrunk
    out[y0:y1, x0:x1] = box
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
