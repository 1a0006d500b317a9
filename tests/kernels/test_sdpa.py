"""Backend dispatch between "sdpa" (torch's scaled_dot_product_attention) and "naive".

"auto" must use SDPA exactly when it can (dot-product scores, softmax, no weights/scores asked
for) and fall back otherwise; "sdpa" must refuse what it cannot compute with a ValueError; both
must give the same numbers, also with dropout (in expectation) and causal fast paths.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import qkv
from qkv import masks


@pytest.fixture
def sdpa_calls(monkeypatch):
    """Count calls of torch's SDPA (the library looks it up on torch.nn.functional)."""
    calls = []
    real = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    return calls


def _qkv(L=4, S=6, D=3, Dv=2, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(2, 2, n, d, generator=gen, dtype=dtype) for n, d in ((L, D), (S, D), (S, Dv)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"score": "dot"},
        {"score": "scaled_dot", "scale": 0.3},
        {"mask": masks.causal(align="top_left")},
        {"mask": masks.causal(align="bottom_right")},
        {"mask": masks.window(1, align="top_left") & masks.padding(torch.tensor([3, 6]))},
        {"bias": torch.zeros(4, 6)},
        {"dropout": 0.2},
        {"score": "cosine"},  # a dot product of unit vectors: SDPA takes every score of kind "dot"
        {"score": qkv.scores.Dot()},
    ],
    ids=["default", "dot", "scaled", "causal", "causal_br", "window_pad", "bias", "dropout", "cosine", "dot_module"],
)
def test_auto_uses_sdpa_when_supported(sdpa_calls, kwargs):
    q, k, v = _qkv()
    qkv.attend(q, k, v, **kwargs)
    assert len(sdpa_calls) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"score": lambda a, b: a @ b.transpose(-1, -2)},
        {"score": qkv.scores.Additive(3).double()},
        {"normalize": "relu"},
        {"normalize": "sparsemax"},
        {"normalize": "hard"},
        {"normalize": "sample"},
        {"normalize": lambda s, m: torch.softmax(s, -1)},
        {"return_weights": True},
        {"return_scores": True},
    ],
    ids=["callable", "module", "relu", "sparsemax", "hard", "sample", "user_norm", "weights", "scores"],
)
def test_auto_falls_back_and_sdpa_refuses(sdpa_calls, kwargs):
    q, k, v = _qkv()
    out = qkv.attend(q, k, v, **kwargs)  # auto works
    assert len(sdpa_calls) == 0
    assert torch.isfinite(out.output).all()
    with pytest.raises(ValueError) as info:
        qkv.attend(q, k, v, backend="sdpa", **kwargs)
    msg = str(info.value)
    assert "'sdpa'" in msg and "backend" in msg


@pytest.mark.parametrize("score", ["cosine", "bilinear"])
def test_sdpa_computes_every_dot_kind_score_like_naive(score):
    """Cosine and bilinear are dot products of transformed features: SDPA gives naive's output and gradients."""
    q, k, v = (t.requires_grad_() for t in _qkv())
    score = qkv.scores.Bilinear(3).double() if score == "bilinear" else score
    params = list(score.parameters()) if isinstance(score, torch.nn.Module) else []
    m = masks.causal(align="top_left")
    outs = [qkv.attend(q, k, v, score=score, mask=m, backend=b).output for b in ("sdpa", "naive")]
    torch.testing.assert_close(outs[0], outs[1])
    grads = [torch.autograd.grad(o.sum(), [q, k, v, *params]) for o in outs]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_return_weights_auto_matches_sdpa_output():
    q, k, v = _qkv()
    m = masks.causal(align="bottom_right")
    a = qkv.attend(q, k, v, mask=m, return_weights=True)
    b = qkv.attend(q, k, v, mask=m, backend="sdpa")
    torch.testing.assert_close(a.output, b.output)
    assert a.weights is not None and b.weights is None


@pytest.mark.parametrize("L,S", [(4, 6), (6, 4), (5, 5), (1, 7), (7, 1)])
@pytest.mark.parametrize("align", ["top_left", "bottom_right"])
def test_causal_sdpa_equals_naive_and_is_causal_flag(L, S, align):
    q, k, v = (t.requires_grad_() for t in _qkv(L=L, S=S))
    m = masks.causal(align=align)
    outs, grads = [], []
    for backend in ("sdpa", "naive"):
        o = qkv.attend(q, k, v, mask=m, backend=backend).output
        outs.append(o)
        grads.append(torch.autograd.grad(o.sum(), (q, k, v)))
    torch.testing.assert_close(outs[0], outs[1])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)
    # independent check of what "causal" means: torch's is_causal is top-left aligned
    if align == "top_left" and L <= S:
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        torch.testing.assert_close(outs[0], ref)
    if align == "bottom_right" and L > S:
        assert (outs[0][..., : L - S, :] == 0).all()  # queries before the first key see nothing


@pytest.mark.parametrize("backend", ["sdpa", "naive"])
def test_dropout_is_unbiased_and_random(backend):
    """Inverted dropout on the weights: E[output] equals the no-dropout output."""
    gen = torch.Generator().manual_seed(0)
    N, S = 4000, 4
    q = torch.randn(1, 1, 1, 3, generator=gen, dtype=torch.float64).expand(1, N, 1, 3)
    k = torch.randn(1, 1, S, 3, generator=gen, dtype=torch.float64)
    v = torch.randn(1, 1, S, 2, generator=gen, dtype=torch.float64)
    clean = qkv.attend(q, k, v, backend=backend).output
    torch.manual_seed(1)
    noisy = qkv.attend(q, k, v, dropout=0.5, backend=backend).output
    assert not torch.allclose(noisy, clean)
    # each row is sum_j (z_j / 0.5) w_j v_j with z ~ Bernoulli(0.5): mean over N rows ~ clean
    spread = (noisy - clean).std(dim=1).max().item()
    assert (noisy.mean(dim=1) - clean[:, 0]).abs().max().item() < 5 * spread / math.sqrt(N)
    # fully masked rows stay zero under dropout too
    mask = torch.ones(N, 1, S, dtype=torch.bool)
    mask[::2] = False
    out = qkv.attend(q, k, v, mask=mask, dropout=0.5, backend=backend).output
    assert (out[:, ::2] == 0).all() and torch.isfinite(out).all()


def test_sdpa_bfloat16_close_to_float64():
    q, k, v = _qkv(dtype=torch.float64, seed=3)
    mask = torch.rand(2, 2, 4, 6, generator=torch.Generator().manual_seed(0)) < 0.6
    ref = qkv.attend(q, k, v, mask=mask, backend="naive").output
    got = qkv.attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask=mask, backend="sdpa").output
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.double(), ref, rtol=3e-2, atol=3e-2)
