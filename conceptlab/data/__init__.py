"""Datasets with ground-truth concepts, and the ShapesWorld facts the library reads (``shapes_facts``).

Datasets are named by specs (``load("folder:/data/birds")``, ``shapesworld:test?size=500``,
``csv:labels.csv``, ``hf:/saved``); each kind is a file that registers itself.
"""

from conceptlab.data import folder, hf_disk, shapesworld_spec, table  # noqa: F401  (register the dataset kinds)
from conceptlab.data.app_sizes import ENV_CBM_SIZES, ENV_DISCOVERY_TRAIN, app_requests, cbm_page_sizes, discovery_train_size
from conceptlab.data.export import EXPORT_FORMATS, export_dataset
from conceptlab.data.facts_world import FactsWorld, FactText
from conceptlab.data.folder import FolderDataset
from conceptlab.data.hf_disk import HFDiskDataset
from conceptlab.data.image_files import DatasetError, ImageFileDataset
from conceptlab.data.rendering import render_image
from conceptlab.data.shapes_facts import (
    APP_SEED,
    APP_SIZES,
    METHOD_SETTINGS,
    NAMING_TEMPLATES,
    PCBM_H_SETTINGS,
    SAE_SETTINGS,
    family_prompts,
    shapesworld_concepts,
    shapesworld_text_prompts,
)
from conceptlab.data.shapes_world import ATTRIBUTE_VALUES, CLASS_RULES, SPLITS, ShapesWorld, caption_for
from conceptlab.data.specs import dataset_kind_usage, load, parse_dataset_spec
from conceptlab.data.splits import DatasetView, split_dataset
from conceptlab.data.table import CSVDataset
from conceptlab.data.texts import TextSet

__all__ = [
    "APP_SEED",
    "APP_SIZES",
    "ENV_CBM_SIZES",
    "ENV_DISCOVERY_TRAIN",
    "app_requests",
    "cbm_page_sizes",
    "discovery_train_size",
    "ATTRIBUTE_VALUES",
    "CLASS_RULES",
    "FactText",
    "FactsWorld",
    "CSVDataset",
    "DatasetError",
    "DatasetView",
    "EXPORT_FORMATS",
    "FolderDataset",
    "HFDiskDataset",
    "ImageFileDataset",
    "NAMING_TEMPLATES",
    "METHOD_SETTINGS",
    "PCBM_H_SETTINGS",
    "SAE_SETTINGS",
    "SPLITS",
    "ShapesWorld",
    "TextSet",
    "caption_for",
    "dataset_kind_usage",
    "export_dataset",
    "family_prompts",
    "load",
    "parse_dataset_spec",
    "render_image",
    "shapesworld_concepts",
    "shapesworld_text_prompts",
    "split_dataset",
]
