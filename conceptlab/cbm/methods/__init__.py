"""The CBM methods, one file each; each registers itself with ``@register_method``.

Every module in this folder is imported here, so adding a method is adding a file: it then
appears in ``conceptlab.registry.METHODS``, the declarative runs, the app's method picker and
``ConceptBottleneckModel.load``, and the contract test (``tests/test_cbm_contract.py``) runs on it.
"""

import importlib
import pkgutil

from conceptlab.cbm.methods.dncbm import DNCBM, coverage
from conceptlab.cbm.methods.labo import LaBo
from conceptlab.cbm.methods.lfcbm import LFCBM
from conceptlab.cbm.methods.pcbm import PCBM, PCBMHybrid, pcbm_lambda
from conceptlab.cbm.methods.v2c import V2CCBM

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["DNCBM", "LFCBM", "PCBM", "V2CCBM", "LaBo", "PCBMHybrid", "coverage", "pcbm_lambda"]
