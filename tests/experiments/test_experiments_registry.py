"""The registry: discovery, lookup errors, and what every registered experiment must provide."""

from __future__ import annotations

import dataclasses

import pytest

from qkv.experiments import Experiment, ExperimentResult, UnknownExperiment, all_experiments, get, register
from qkv.experiments.config import config_keys


def test_builtin_experiments_are_registered():
    names = [e.name for e in all_experiments()]
    for name in ("seq2seq-attention", "translation-fra-eng", "scaled-dot"):
        assert name in names


def test_unknown_name_lists_registered_and_close_matches():
    with pytest.raises(UnknownExperiment) as e:
        get("seq2seq-atention")
    msg = str(e.value)
    assert "Did you mean seq2seq-attention" in msg and "scaled-dot" in msg


@pytest.mark.parametrize("experiment", all_experiments(), ids=lambda e: e.name)
def test_every_experiment_is_complete(experiment):
    assert experiment.description and "\n" not in experiment.description
    for cfg in (experiment.default_config(), experiment.quick_config()):
        assert dataclasses.is_dataclass(cfg) and type(cfg).__dataclass_params__.frozen
        assert isinstance(cfg, experiment.Config)
        assert config_keys(cfg)
    for target in experiment.targets:
        assert target.op in (">=", "<=")


def test_register_rejects_duplicates_and_non_experiments():
    class Dup(Experiment):
        name = "scaled-dot"
        description = "dup"
        Config = object

        def run(self, config, ctx):
            return ExperimentResult({})

    with pytest.raises(ValueError, match="already registered"):
        register(Dup)
    with pytest.raises(TypeError):
        register(int)  # type: ignore[arg-type]
