"""Declarative runs: probe TOML files (``probes/*.toml``) -> model, metrics and an HTML report.

- :func:`load_probe` / :func:`parse_probe` -- validate a probe file (nothing runs);
- :func:`run_probe` -- run it (``conceptlab probe run``);
- :func:`write_report` -- the self-contained HTML report;
- :func:`precompute_plan` / :func:`run_plan` -- the first run: embed what the app's pages and the probes read.

Methods and concept sources come from :mod:`conceptlab.registry`; other kinds of run (concept
vectors, diffusion studies) are files in ``conceptlab/experiments/kinds/`` registered with
``@register_probe_kind`` and named by ``kind = "..."`` at the top of a probe file.
"""

import importlib
import pkgutil

from conceptlab.experiments import kinds
from conceptlab.experiments.config import (
    SPLIT_NAMES,
    EditingConfig,
    ProbeConfig,
    ProbeConfigError,
    default_out_dir,
    load_probe,
    method_params,
    parse_any,
    parse_probe,
)
from conceptlab.experiments.precompute import PrecomputeItem, precompute_plan, read_status, run_plan
from conceptlab.experiments.report import accuracy_table, write_report
from conceptlab.experiments.runner import ProbeResult, probe_datasets, run_probe

# other kinds of declarative run (``kind = "..."``), one file each, registered in PROBE_KINDS
for _module in pkgutil.iter_modules(kinds.__path__):
    importlib.import_module(f"{kinds.__name__}.{_module.name}")

__all__ = [
    "SPLIT_NAMES",
    "EditingConfig",
    "PrecomputeItem",
    "ProbeConfig",
    "ProbeConfigError",
    "ProbeResult",
    "accuracy_table",
    "default_out_dir",
    "load_probe",
    "method_params",
    "parse_any",
    "parse_probe",
    "precompute_plan",
    "probe_datasets",
    "read_status",
    "run_plan",
    "run_probe",
    "write_report",
]
