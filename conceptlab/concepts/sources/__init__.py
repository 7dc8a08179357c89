"""Concept sources of declarative runs, one file each; each registers itself in
``conceptlab.registry.CONCEPT_SOURCES`` (``[concepts] source = "..."`` in a probe file).

A source is ``build(config, context: SourceContext) -> ConceptBank``; the discovery package adds
``sae`` the same way (``conceptlab/discovery/source.py``). Adding a source is adding a file here.
"""

import importlib
import pkgutil

from conceptlab.concepts.sources.base import ConceptSourceError, SourceContext
from conceptlab.concepts.sources.concept_set import ConceptSetBank, build_concept_set_bank

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ConceptSetBank", "ConceptSourceError", "SourceContext", "build_concept_set_bank"]
