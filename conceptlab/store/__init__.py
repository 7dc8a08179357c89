"""The content-addressed activation store: compute each activation once, read it back verified.

>>> store = ActivationStore()                      # $CONCEPTLAB_HOME/store
>>> acts = store.get_or_compute(backbone, dataset) # (N, dim), rows in dataset order

See ``ActivationStore`` and DESIGN.md ("ActivationStore") for the layout and guarantees.
"""

from conceptlab.store.captures import CAPTURES, Capture, get_capture
from conceptlab.store.ray_engine import ray_extract
from conceptlab.store.reader import StoreCorruptionError, StoredActivations
from conceptlab.store.store import (
    ActivationStore,
    InsufficientDiskSpaceError,
    InsufficientMemoryError,
    StoreIntegrityWarning,
    StoreUnavailableError,
    default_root,
)

__all__ = [
    "CAPTURES",
    "ActivationStore",
    "Capture",
    "InsufficientDiskSpaceError",
    "InsufficientMemoryError",
    "StoreCorruptionError",
    "StoreIntegrityWarning",
    "StoreUnavailableError",
    "StoredActivations",
    "default_root",
    "get_capture",
    "ray_extract",
]
