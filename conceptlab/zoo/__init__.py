"""The embedded default models: what they are, where their weights live, how to rebuild them.

Importing the package registers the ``zoo:NAME`` backbone scheme (``conceptlab/zoo/scheme.py``).
"""

from conceptlab.zoo import scheme  # noqa: F401  (registers the zoo: backbone scheme)
from conceptlab.zoo.catalog import ZOO, ZooModel, available, build, zoo_path

__all__ = ["ZOO", "ZooModel", "available", "build", "zoo_path"]
