"""conceptlab: find, name, test and edit the concepts inside models.

Submodules are imported on first use (``conceptlab.data``, ``conceptlab.backbones``, ...), so
``import conceptlab`` stays cheap and has no side effects.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("data", "backbones", "zoo", "store", "concepts", "cbm", "discovery", "metrics", "probes")

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"conceptlab.{name}")
    raise AttributeError(f"module 'conceptlab' has no attribute {name!r}")
