"""The NTM experiments' cost in bits and loss against a per-bit loop of the cross-entropy; the logits adapter."""

from __future__ import annotations

import math

import pytest
import torch

from qkv.experiments.ntm_common import cost_bits, logits_of, mean_cost, pad_batches, sequence_cost, sequence_loss
from qkv.memory.ntm import NTM
from qkv.models.lstm_baseline import LSTMBaseline
from qkv.tasks.algorithmic_memory import copy, repeat_copy


def _bits_loop(logits, targets, mask):
    """-log2 p(target) summed over every scored bit, divided by the number of sequences."""
    total = 0.0
    B, T, Y = logits.shape
    for b in range(B):
        for t in range(T):
            if mask[b, t]:
                for y in range(Y):
                    p = 1 / (1 + math.exp(-float(logits[b, t, y])))
                    total -= math.log2(p if targets[b, t, y] == 1 else 1 - p)
    return total / B


def test_cost_bits_and_loss_match_a_loop():
    batch = copy(3, 4, width=5, generator=torch.Generator().manual_seed(0))
    logits = torch.randn(batch.targets.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    targets = batch.targets.double()
    ref = _bits_loop(logits, targets, batch.mask)
    assert float(cost_bits(logits, targets, batch.mask)) == pytest.approx(ref, rel=1e-10)

    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return logits + self.w

    model = Fixed()
    loss, extra = sequence_loss(model, {"inputs": batch.inputs, "targets": targets, "mask": batch.mask})
    scored = int(batch.mask.sum()) * logits.shape[-1]
    assert float(loss.detach()) == pytest.approx(ref * 3 * math.log(2) / scored, rel=1e-10)  # mean nats per scored bit
    assert extra["cost_bits"] == pytest.approx(ref, rel=1e-10)
    cost = sequence_cost(model, batch)
    assert cost["cost_bits"] == pytest.approx(ref, rel=1e-6)
    wrong = ((logits > 0).double() != targets)[batch.mask].sum().item() / 3
    assert cost["bit_errors"] == pytest.approx(wrong)
    # mean_cost weights each batch by its sequences: a batch of 3 twice equals a batch of 6 once
    twice = mean_cost(model, [batch, batch])
    assert twice == pytest.approx(cost)


def test_logits_of_both_models():
    x = torch.zeros(2, 3, 4)
    ntm = NTM(4, 3, controller="feedforward", controller_dim=8, memory_slots=4, memory_width=3)
    lstm = LSTMBaseline(4, 3, hidden_dim=8)
    for model in (ntm, lstm):
        assert logits_of(model(x)).shape == (2, 3, 3)
    assert logits_of(ntm(x)) is not None and torch.equal(logits_of(ntm(x)), ntm(x).output)


@pytest.mark.parametrize("kind", ["ntm", "lstm"])
def test_padded_batches_give_the_same_costs_as_the_unpadded_ones(kind):
    """Both models are causal: padding after a sequence's end (mask False) changes none of its scored outputs, so
    the mean cost and wrong bits over few padded batches equal those over one batch per (length, count)."""
    g = torch.Generator().manual_seed(3)
    batches = [repeat_copy(n, L, r, width=3, repeat_scale=3.0, generator=g) for n, L, r in
               ((2, 1, 3), (1, 3, 2), (3, 2, 1), (1, 1, 1), (2, 3, 3))]
    torch.manual_seed(0)
    model = (NTM(5, 4, controller="feedforward", controller_dim=8, memory_slots=6, memory_width=3) if kind == "ntm"
             else LSTMBaseline(5, 4, hidden_dim=8)).double()
    batches = [type(b)(b.inputs.double(), b.targets.double(), b.mask) for b in batches]
    padded = pad_batches(batches, max_batch=4)
    assert [b.inputs.shape[0] for b in padded] == [4, 4, 1]  # 9 sequences, sorted by length
    assert [b.inputs.shape[1] for b in padded] == [6, 14, 14]  # each group's longest (T = L + 1 + rL + 1)
    assert sum(int(b.mask.sum()) for b in padded) == sum(int(b.mask.sum()) for b in batches)
    ref, got = mean_cost(model, batches), mean_cost(model, padded)
    assert got == pytest.approx(ref, rel=1e-10)
    assert not padded[0].mask[0, 4:].any() and not padded[0].inputs[0, 4:].any()  # the T = 4 sequence, padded
    with pytest.raises(ValueError, match="max_batch"):
        pad_batches(batches, max_batch=0)
