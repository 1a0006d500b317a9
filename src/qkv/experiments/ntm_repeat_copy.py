"""``ntm-repeat-copy``: the NTM on repeat copy (Graves, Wayne and Danihelka 2014, §4.2), against an LSTM.

Shape legend: ``B`` sequences, ``T`` time steps, ``N`` memory slots, ``w`` bits per vector.

The input is a sequence of random ``w``-bit vectors and a repeat count ``n`` (on its own channel, divided by
``repeat_scale``); the target is the sequence ``n`` times, then an end marker (:func:`~qkv.tasks.algorithmic_memory.
repeat_copy`). The NTM must write the sequence once, read it ``n`` times by jumping back to its start, and count.
The run, the measurements and the pictures are those of
:class:`~qkv.experiments.ntm_copy.AlgorithmicMemoryExperiment`: validation and the training-length numbers use
sequences of the training distribution (lengths ``min_size..max_size``, repeat counts uniform in
``min_repeats..max_repeats``); generalisation is measured over the sequence length at ``data.test_repeats`` repeats.

The full setting, and why: the paper trains on one sequence at a time for hundreds of thousands of sequences (its
Fig. 7). Here the NTM has an **LSTM controller** (100 units; the paper reports repeat copy with both controllers) and
sees 192,000 sequences: 6,000 updates of 32, AdamW at 5e-3 with 200 warm-up steps and a cosine decay to 2.5e-4,
the parameters' gradient clipped to norm 10 and the gradient through its state to 1 per step
(:mod:`qkv.memory.ntm.gradclip`), on a **curriculum over the repeat count**: the first 64,000 sequences start with
one repetition (plain copy, every length) and admit one more repetition every 6,400 sequences
(``data.curriculum``, ``data.curriculum_on="repeats"``; all 10 from 57,600 on).

Why the LSTM controller: with the feed-forward controller (the earlier default) the NTM learns the loop but, measured
at 88,000 sequences, gets the first vector of every repetition after the first wrong (about 4 of its 8 bits, chance:
the step of the jump back) and never emits the end marker — it has nowhere to count except the memory — and stalls
near 17 wrong bits per sequence; the LSTM controller can count the items and the repetitions in its cell.

Why the curriculum and the longer schedule: the LSTM-controlled NTM first sits on a plateau near 80 wrong bits per
sequence where it keeps short sequences in its controller and does not use the memory (it cannot even copy a
10-vector sequence once); leaving it is a matter of the seed. Measured with seed 0: without the curriculum the run
left the plateau after 54,000 sequences and ended at 4.3 wrong bits after 128,000; with the curriculum it learned
to copy through the memory first, left the plateau after ~70,000 sequences and fell faster: 1.5 after 128,000
(4,000 updates), 0 on validation after 170,000 of this 6,000-update schedule. Seed 1 (without and with the
curriculum, and without the state-gradient bound) and seed 2 (with it) stayed on the plateau and were stopped after
2,400-3,700 updates, and so did seed 0 without the curriculum on an 8,000-update schedule (4,700 updates): the
curriculum shortens the way down once the memory is in use; leaving the plateau depends on the seed and the schedule.

Why no NaN any more: a 12,000-step run died at step 2,058 (float32 overflow inside the backward pass of a
112-step sequence, see :mod:`qkv.memory.ntm.gradclip`); the state's gradient bound fixes it. The LSTM baseline
(3x256) keeps its earlier setting: 64,000 sequences of the same distribution without the curriculum (4,000
updates of 16, lr 3e-3; with the curriculum it did worse in one run, seed 0: 99 against 90 wrong bits). The
targets stay the paper's claim: the NTM learns the task (at most one wrong
bit per sequence on held-out sequences of the training distribution) and generalises better than the LSTM to longer
sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from qkv.experiments.base import Target
from qkv.experiments.ntm_copy import AlgorithmicDataConfig, AlgorithmicMemoryExperiment, BaselineConfig, NTMConfig
from qkv.experiments.registry import register
from qkv.train.loop import TrainConfig

__all__ = ["NtmRepeatCopy", "NtmRepeatCopyConfig"]


def _train(**kw: Any) -> TrainConfig:
    base = {"max_steps": 4000, "batch_size": 16, "lr": 3e-3, "warmup_steps": 100, "min_lr_ratio": 0.05,
            "grad_clip": 10.0, "eval_every": 100, "checkpoint_every": 100, "monitor": "cost_bits",
            "monitor_mode": "min"}
    return TrainConfig(**{**base, **kw})


@dataclass(frozen=True)
class NtmRepeatCopyConfig:
    data: AlgorithmicDataConfig = field(default_factory=lambda: AlgorithmicDataConfig(
        width=8, min_size=1, max_size=10, min_repeats=1, max_repeats=10, repeat_scale=10.0, eval_count=8,
        test_sizes=(1, 5, 10, 15, 20), test_count=32, test_repeats=10, trace_size=10, curriculum=64_000,
        curriculum_on="repeats"))
    ntm: NTMConfig = field(default_factory=lambda: NTMConfig(controller="lstm", state_grad_clip=1.0))
    lstm: BaselineConfig = field(default_factory=lambda: BaselineConfig(hidden_dim=256, layers=3))
    train: TrainConfig = field(default_factory=lambda: _train(max_steps=6000, batch_size=32, lr=5e-3, warmup_steps=200))
    lstm_train: TrainConfig = field(default_factory=_train)


@register
class NtmRepeatCopy(AlgorithmicMemoryExperiment):
    name = "ntm-repeat-copy"
    description = "Neural Turing Machine vs LSTM on repeat copy: cost per sequence, generalisation, heads' weightings"
    Config = NtmRepeatCopyConfig
    task = "repeat_copy"
    targets = (
        # full run (seed 0, 192,000 sequences, LSTM controller, curriculum over the repeats): NTM 0.059 wrong bits
        # per held-out sequence (of ~280 scored; chance ~140); met. Seeds 1 and 2 stayed on the plateau (~80)
        Target("ntm_bit_errors", "<=", 1.0, "NTM wrong bits per sequence at lengths 1-10, 1-10 repeats "
               "(held out, the training distribution)"),
        # full run: NTM 4.7 vs LSTM 651 wrong bits per sequence at lengths 15-20 (10 repeats); met
        Target("ntm_gain_long", ">=", 0.1, "LSTM minus NTM wrong bits per sequence at lengths 15-20 (10 repeats)"),
    )
    quick_overrides: ClassVar[dict[str, Any]] = {
        "data.width": 4, "data.max_size": 3, "data.max_repeats": 3, "data.repeat_scale": 3.0,
        "data.test_sizes": (1, 2, 3, 4, 5, 6), "data.test_repeats": 3, "data.test_count": 32, "data.eval_count": 16,
        "data.trace_size": 3, "data.curriculum": 0, "ntm.controller_dim": 64, "ntm.memory_slots": 12,
        "ntm.memory_width": 8, "lstm.hidden_dim": 64, "lstm.layers": 1,
        "train.max_steps": 300, "train.batch_size": 32, "train.eval_every": 50, "train.lr": 1e-2,
        "lstm_train.max_steps": 300, "lstm_train.batch_size": 32, "lstm_train.eval_every": 100,
        "train.warmup_steps": 50, "train.min_lr_ratio": 0.1, "lstm_train.warmup_steps": 50,
        "lstm_train.min_lr_ratio": 0.1,
    }
    quick_targets = (  # 300 steps teach the NTM part of the task (measured with the LSTM controller: 4.6 vs the
        # LSTM's 5.8 wrong bits at lengths 1-3, 28.3 vs 33.1 at 4-6); not converged: ahead of the LSTM, not solved
        Target("ntm_gain", ">=", 0.5, "LSTM minus NTM wrong bits per sequence at lengths 1-3, 1-3 repeats"),
        Target("ntm_gain_long", ">=", 2.0, "LSTM minus NTM wrong bits per sequence at lengths 4-6 (3 repeats)"),
    )
