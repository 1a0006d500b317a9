"""Runnable experiments: each a frozen Config + build + train + evaluate + figures, registered by name.

``qkv list`` shows them; ``qkv run NAME`` runs one; ``qkv tour`` runs all and writes one report.
"""

from __future__ import annotations

from qkv.experiments.base import (
    DataUnavailable,
    Experiment,
    ExperimentResult,
    Figure,
    RunContext,
    Table,
    Target,
)
from qkv.experiments.config import ConfigError, apply_overrides, config_hash, config_keys, config_to_dict
from qkv.experiments.registry import UnknownExperiment, all_experiments, discover, get, register

__all__ = [
    "ConfigError",
    "DataUnavailable",
    "Experiment",
    "ExperimentResult",
    "Figure",
    "RunContext",
    "Table",
    "Target",
    "UnknownExperiment",
    "all_experiments",
    "apply_overrides",
    "config_hash",
    "config_keys",
    "config_to_dict",
    "discover",
    "get",
    "register",
]
