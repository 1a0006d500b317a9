"""``ntm-associative-recall``: the NTM on associative recall (Graves, Wayne and Danihelka 2014, §4.3), against an LSTM.

Shape legend: ``B`` sequences, ``T`` time steps, ``N`` memory slots, ``w`` bits per vector.

The input is a list of items (``item_len`` random ``w``-bit vectors each, each preceded by a delimiter), then a
query item between two query delimiters; the target is the item that followed the query in the list
(:func:`~qkv.tasks.algorithmic_memory.associative_recall`). The NTM can solve it by content addressing: find the
query's slot with the β-cosine, shift by one item, read. The run, the measurements and the pictures are those
of :class:`~qkv.experiments.ntm_copy.AlgorithmicMemoryExperiment`; generalisation is over the number of items.

The full setting, and why: the paper trains on one sequence at a time (its Fig. 11: the feed-forward NTM reaches
near-zero cost within about 30,000 sequences); here both models see the same seeded stream of 48,000 sequences
(3,000 updates of 16, AdamW without decay at 3e-3, cosine schedule; about 0.15 s of one core per NTM update).
A run of the NTM at 1e-2 (the ``ntm-copy`` setting) stayed at chance (9 wrong bits per sequence, vanishing
gradients) for 450 updates and was stopped; at 3e-3 it leaves chance within 200 updates and converges at 1,500.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from qkv.experiments.base import Target
from qkv.experiments.ntm_copy import AlgorithmicDataConfig, AlgorithmicMemoryExperiment, BaselineConfig, NTMConfig
from qkv.experiments.registry import register
from qkv.train.loop import TrainConfig

__all__ = ["NtmAssociativeRecall", "NtmAssociativeRecallConfig"]


def _train(**kw: Any) -> TrainConfig:
    base = {"max_steps": 3000, "batch_size": 16, "lr": 3e-3, "warmup_steps": 50, "min_lr_ratio": 0.1,
            "grad_clip": 10.0, "eval_every": 100, "checkpoint_every": 100, "monitor": "cost_bits",
            "monitor_mode": "min"}
    return TrainConfig(**{**base, **kw})


@dataclass(frozen=True)
class NtmAssociativeRecallConfig:
    data: AlgorithmicDataConfig = field(default_factory=lambda: AlgorithmicDataConfig(
        width=6, min_size=2, max_size=6, item_len=3, eval_count=16, test_sizes=(2, 4, 6, 8, 10, 12, 15, 20),
        test_count=32, trace_size=6))
    ntm: NTMConfig = field(default_factory=lambda: NTMConfig(controller="feedforward"))
    lstm: BaselineConfig = field(default_factory=lambda: BaselineConfig(hidden_dim=256, layers=3))
    train: TrainConfig = field(default_factory=_train)
    lstm_train: TrainConfig = field(default_factory=_train)


@register
class NtmAssociativeRecall(AlgorithmicMemoryExperiment):
    name = "ntm-associative-recall"
    description = "Neural Turing Machine vs LSTM on associative recall: cost per sequence, more items than trained on"
    Config = NtmAssociativeRecallConfig
    task = "associative_recall"
    size_label = "number of items"
    targets = (
        Target("ntm_bit_errors", "<=", 1.0, "NTM wrong bits per sequence with 2-6 items (held out)"),
        # full run (seed 0): NTM 0.07 wrong bits per sequence at 2-6 items, under 0.1 from 24,000 sequences on (the
        # paper: ~30,000), 0 at 8-12 items; the LSTM 7.2 and 8.2 (chance: 9) on the same 48,000 sequences
        Target("ntm_gain_long", ">=", 0.1, "LSTM minus NTM wrong bits per sequence with 8-12 items"),
    )
    quick_overrides: ClassVar[dict[str, Any]] = {
        "data.width": 4, "data.max_size": 3, "data.item_len": 1, "data.test_sizes": (2, 3, 4, 5, 6),
        "data.test_count": 32, "data.trace_size": 3, "ntm.controller_dim": 64, "ntm.memory_slots": 16,
        "ntm.memory_width": 8, "lstm.hidden_dim": 64, "lstm.layers": 1,
        "train.max_steps": 300, "train.batch_size": 32, "train.eval_every": 50, "train.lr": 1e-2,
        "lstm_train.max_steps": 300, "lstm_train.batch_size": 32, "lstm_train.eval_every": 100,
    }
    quick_targets = (  # 300 steps: measured 0.63 wrong bits per sequence (chance: 2), the LSTM 0.66; with 4-6 items
        # 1.41 against 1.73 — partly learned, the NTM slightly ahead; not converged
        Target("ntm_bit_errors", "<=", 1.0, "NTM wrong bits per sequence with 2-3 items (chance: 2)"),
        Target("ntm_gain_long", ">=", 0.1, "LSTM minus NTM wrong bits per sequence with 4-6 items"),
    )
