"""Loss, cost and measurements shared by the NTM experiments (``ntm-copy``, ``ntm-repeat-copy``,
``ntm-associative-recall``); machinery, registers nothing (listed in ``registry._MACHINERY``).

Shape legend: ``B`` sequences, ``T`` time steps, ``X`` input channels, ``Y`` output channels, ``N`` memory slots,
``M`` slot width, ``R``/``W`` read/write heads.

The cost follows Graves et al. (2014, §4): the binary cross-entropy of the outputs during the answer phase
(the ``mask`` of :class:`~qkv.tasks.algorithmic_memory.AlgorithmicBatch`), **in bits, summed per sequence**
(:func:`cost_bits`, the one place it is computed); beside it the number of wrong bits per sequence after
thresholding at 0.5 (``bit_errors``, what the open PyTorch port calls its cost). The baseline is
:class:`qkv.models.lstm_baseline.LSTMBaseline`, an LSTM without memory (the paper's comparison).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.memory.ntm import NTM
from qkv.tasks.algorithmic_memory import AlgorithmicBatch

__all__ = ["cost_bits", "logits_of", "mean_cost", "pad_batches", "sequence_cost", "sequence_loss", "trace_example"]


def logits_of(out: Any) -> Tensor:
    """The logits ``(B, T, Y)`` of a model's output: the tensor itself (the LSTM baseline) or ``.output`` (the
    NTM's :class:`~qkv.memory.ntm.NTMOutput`)."""
    return out if isinstance(out, Tensor) else out.output


def cost_bits(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """The paper's cost: binary cross-entropy of the scored outputs, in bits, summed per sequence, averaged over the
    batch. ``logits, targets (B, T, Y)``, ``mask (B, T)``; a 0-dim tensor (differentiable)."""
    nats = F.binary_cross_entropy_with_logits(logits[mask], targets[mask], reduction="sum")
    return nats / math.log(2) / logits.shape[0]


def sequence_loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """Mean binary cross-entropy (nats per scored bit) for training; extra: ``cost_bits`` per sequence."""
    logits = logits_of(model(batch["inputs"]))  # (B, T, Y)
    mask = batch["mask"]
    bits = cost_bits(logits, batch["targets"], mask)
    scored = int(mask.sum()) * logits.shape[-1]  # bits scored in the batch
    loss = bits * (logits.shape[0] * math.log(2) / scored)  # nats per scored bit
    return loss, {"cost_bits": float(bits.detach())}


def pad_batches(batches: list[AlgorithmicBatch], *, max_batch: int = 256) -> list[AlgorithmicBatch]:
    """The same sequences in fewer batches: sorted by length, grouped ``max_batch`` at a time, each group padded at
    the end to its longest sequence (zero inputs and targets, ``mask`` False).

    Exact for both models (the NTM and the unidirectional LSTM are causal: a step never sees later inputs, so padding
    after a sequence's end changes none of its scored outputs) and for :func:`mean_cost` (per-sequence sums over the
    mask, weighted by sequences). Why: the held-out sets of repeat copy are one batch per (length, count) pair —
    hundreds of batches of one to three sequences, whose per-step overhead dominated the evaluation.
    """
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be an int >= 1, got {max_batch!r}")
    seqs = [(b.inputs[i], b.targets[i], b.mask[i]) for b in batches for i in range(b.inputs.shape[0])]
    seqs.sort(key=lambda s: s[0].shape[0])  # stable: equal lengths keep their order
    out = []
    for start in range(0, len(seqs), max_batch):
        group = seqs[start : start + max_batch]
        T = group[-1][0].shape[0]

        def pad(t: Tensor, T: int = T) -> Tensor:
            return F.pad(t, (0, 0, 0, T - t.shape[0]))  # (T, ·)

        out.append(AlgorithmicBatch(torch.stack([pad(x) for x, _, _ in group]),  # (B, T, X)
                                    torch.stack([pad(y) for _, y, _ in group]),  # (B, T, Y)
                                    torch.stack([F.pad(m, (0, T - m.shape[0])) for _, _, m in group])))  # (B, T)
    return out


@torch.inference_mode()
def sequence_cost(model: nn.Module, batch: AlgorithmicBatch) -> dict[str, float]:
    """``cost_bits`` (cross-entropy in bits per sequence) and ``bit_errors`` (wrong bits per sequence)."""
    device = next(model.parameters()).device
    logits = logits_of(model(batch.inputs.to(device))).cpu()  # (B, T, Y)
    mask, y = batch.mask, batch.targets
    errors = ((logits[mask] > 0).float() != y[mask]).sum()
    return {"cost_bits": float(cost_bits(logits, y, mask)), "bit_errors": float(errors) / logits.shape[0]}


def mean_cost(model: nn.Module, batches: list[AlgorithmicBatch]) -> dict[str, float]:
    """:func:`sequence_cost` averaged over all sequences of ``batches`` (each batch weighted by its size)."""
    costs = [(sequence_cost(model, b), b.inputs.shape[0]) for b in batches]
    total = sum(n for _, n in costs)
    return {k: sum(c[k] * n for c, n in costs) / total for k in costs[0][0]}


@torch.no_grad()
def trace_example(ntm: NTM, lstm: nn.Module, batch: AlgorithmicBatch, index: int = 0) -> dict[str, Any]:
    """One sequence's picture data (lists, for JSON): inputs, targets, both models' outputs (probabilities),
    the NTM's read and write weightings over time ``(T, N)`` per head, its add vectors, and its memory ``(N, M)``
    when the answer phase begins and at the end."""
    x = batch.inputs[index : index + 1]  # (1, T, X)
    out = ntm(x, return_trace=True)
    tr = out.trace
    assert tr is not None
    start = int(batch.mask[index].float().argmax())  # the first scored step
    return {
        "inputs": x[0].tolist(),
        "targets": batch.targets[index].tolist(),
        "mask": batch.mask[index].tolist(),
        "ntm_outputs": torch.sigmoid(out.output[0]).tolist(),
        "lstm_outputs": torch.sigmoid(logits_of(lstm(x))[0]).tolist(),
        "read_weights": tr.read_weights[0].transpose(0, 1).tolist(),  # (R, T, N)
        "write_weights": tr.write_weights[0].transpose(0, 1).tolist(),  # (W, T, N)
        "memory_before_answer": tr.memory[0, start - 1].tolist(),  # (N, M): what was written
        "memory_final": tr.memory[0, -1].tolist(),  # (N, M)
        "adds": tr.add[0].transpose(0, 1).tolist(),  # (W, T, M)
    }
