"""Datasets with ground-truth concepts."""

from conceptlab.data.shapes_world import ATTRIBUTE_VALUES, CLASS_RULES, SPLITS, ShapesWorld, caption_for
from conceptlab.data.rendering import render_image

__all__ = ["ShapesWorld", "ATTRIBUTE_VALUES", "CLASS_RULES", "SPLITS", "caption_for", "render_image"]
