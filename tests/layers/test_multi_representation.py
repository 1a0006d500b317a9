"""MultiRepresentationalAttention against a loop over tokens of Kiela et al.'s eq. 3-4, gradcheck, errors, learning."""

from __future__ import annotations

import pytest
import torch

from qkv.functional.attention import attend
from qkv.layers.multi_representation import MultiRepresentationalAttention


def _layer(dims=(3, 5, 4), embed_dim=6, dtype=torch.float32) -> MultiRepresentationalAttention:
    torch.manual_seed(0)
    return MultiRepresentationalAttention(dims, embed_dim=embed_dim).to(dtype)


def _reps(B=2, L=4, dims=(3, 5, 4), dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(B, L, d, generator=g, dtype=dtype) for d in dims]


def test_equals_a_loop_over_tokens():
    layer, reps = _layer(), _reps()
    out = layer(reps, return_weights=True)
    a = layer.query.detach()
    for b in range(2):
        for i in range(4):
            w = [proj(x[b, i]) for proj, x in zip(layer.projections, reps, strict=True)]  # eq. 3: P_r w_{i,r} + b_r
            logits = torch.stack([a @ wr for wr in w])
            alpha = torch.softmax(logits, dim=0)
            expected = sum(al * wr for al, wr in zip(alpha, w, strict=True))  # eq. 4
            torch.testing.assert_close(out.weights[b, i], alpha)
            torch.testing.assert_close(out.output[b, i], expected)


def test_the_read_is_one_call_of_attend():
    layer, reps = _layer(), _reps()
    out = layer(reps, return_weights=True)
    projected = torch.stack([p(x) for p, x in zip(layer.projections, reps, strict=True)], dim=2)  # (B, L, R, E)
    ref = attend(layer.query.expand(2, 4, 1, 6), projected, projected, score="dot", return_weights=True)
    torch.testing.assert_close(out.weights, ref.weights[:, :, 0])
    torch.testing.assert_close(out.output, ref.output[:, :, 0])


def test_padding_zeroes_padded_tokens():
    layer, reps = _layer(), _reps()
    keep = torch.tensor([[True, True, False, False], [True, True, True, True]])
    out = layer(reps, keep=keep, return_weights=True)
    full = layer(reps, return_weights=True)
    assert out.output[0, 2:].abs().max() == 0 and out.weights[0, 2:].abs().max() == 0
    torch.testing.assert_close(out.output[keep], full.output[keep])


def test_gradcheck_float64():
    layer = _layer(dtype=torch.float64)
    reps = [x.requires_grad_() for x in _reps(B=1, L=2, dtype=torch.float64)]
    assert torch.autograd.gradcheck(lambda *xs: layer(list(xs)).output, tuple(reps))


def test_learns_to_trust_the_clean_representation():
    """Two views of a signal, one drowned in noise: the weights move onto the clean one."""
    torch.manual_seed(0)
    layer = MultiRepresentationalAttention((4, 4), embed_dim=4)
    head = torch.nn.Linear(4, 1)
    opt = torch.optim.Adam([*layer.parameters(), *head.parameters()], lr=0.05)
    g = torch.Generator().manual_seed(2)
    for _ in range(150):
        x = torch.randn(64, 1, 4, generator=g)
        y = x.sum(-1)
        noisy = x + 3.0 * torch.randn(64, 1, 4, generator=g)
        out = layer([noisy, x], return_weights=True)
        loss = ((head(out.output).squeeze(-1) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert out.weights[..., 1].mean() > 0.9


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m([torch.randn(2, 4, 3)]), "sequence of 3 tensors, got 1"),
        (lambda m: m(torch.randn(2, 4, 3)), "sequence of 3 tensors, got a tensor"),
        (lambda m: m([torch.randn(2, 4, 3), torch.randn(2, 4, 6), torch.randn(2, 4, 4)]),
         r"representations\[1\] must have last dim 5"),
        (lambda m: m([torch.randn(2, 4, 3), torch.randn(2, 3, 5), torch.randn(2, 4, 4)]), "agree on"),
        (lambda m: m(_reps(), keep=torch.ones(2, 5, dtype=torch.bool)),
         r"keep must have shape \(B, L\) = \(2, 4\).*got \(2, 5\)"),
    ],
)
def test_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call(_layer())


def test_constructor_errors():
    with pytest.raises(ValueError, match="input_dims"):
        MultiRepresentationalAttention([], embed_dim=3)
    with pytest.raises(ValueError, match="embed_dim"):
        MultiRepresentationalAttention([3], embed_dim=0)
