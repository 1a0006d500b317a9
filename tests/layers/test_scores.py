"""The score modules of `qkv.scores`: values against loops, parameter gradients (gradcheck),
`make` by name, and argument errors."""

from __future__ import annotations

import math

import pytest
import torch

import qkv
from qkv import scores


def _dot(a, b):
    return sum(float(x) * float(y) for x, y in zip(a, b, strict=True))


def _loop(q, k, f):
    L, S = q.shape[-2], k.shape[-2]
    return torch.tensor([[f(q[i], k[j]) for j in range(S)] for i in range(L)], dtype=torch.float64)


def _x(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def test_parameter_free_modules_match_loops():
    gen = torch.Generator().manual_seed(0)
    q, k = _x(gen, 3, 5), _x(gen, 4, 5)
    torch.testing.assert_close(scores.Dot()(q, k), _loop(q, k, _dot))
    torch.testing.assert_close(scores.ScaledDot()(q, k), _loop(q, k, lambda a, b: _dot(a, b) / math.sqrt(5)))
    torch.testing.assert_close(scores.ScaledDot(scale=2.0)(q, k), _loop(q, k, lambda a, b: 2 * _dot(a, b)))
    torch.testing.assert_close(
        scores.Cosine()(q, k), _loop(q, k, lambda a, b: _dot(a, b) / math.sqrt(_dot(a, a) * _dot(b, b)))
    )
    assert list(scores.Dot().parameters()) == []


def test_bilinear_module_matches_loop_and_shapes():
    torch.manual_seed(0)
    m = scores.Bilinear(3, 5).double()
    assert m.weight.shape == (5, 3)
    gen = torch.Generator().manual_seed(1)
    q, k = _x(gen, 2, 3), _x(gen, 4, 5)
    W = m.weight.detach()
    ref = _loop(q, k, lambda a, b: sum(float(b[e]) * float(W[e, d]) * float(a[d]) for e in range(5) for d in range(3)))
    torch.testing.assert_close(m(q, k), ref)
    assert scores.Bilinear(4).weight.shape == (4, 4)


@pytest.mark.parametrize("bias", [False, True])
def test_additive_module_matches_loop_and_shapes(bias):
    torch.manual_seed(0)
    m = scores.Additive(3, 5, hidden_dim=7, hidden_bias=bias).double()
    assert m.w_q.shape == (7, 3) and m.w_k.shape == (7, 5) and m.v.shape == (7,)
    assert (m.hidden_bias is not None) == bias
    n_params = 7 * 3 + 7 * 5 + 7 + (7 if bias else 0)
    assert sum(p.numel() for p in m.parameters()) == n_params
    if bias:
        with torch.no_grad():
            m.hidden_bias.uniform_(-1, 1)
    gen = torch.Generator().manual_seed(2)
    q, k = _x(gen, 2, 3), _x(gen, 4, 5)
    Wq, Wk, v = m.w_q.detach(), m.w_k.detach(), m.v.detach()
    b = m.hidden_bias.detach() if bias else torch.zeros(7, dtype=torch.float64)
    ref = _loop(
        q, k, lambda a, x: sum(float(v[h]) * math.tanh(_dot(Wk[h], x) + _dot(Wq[h], a) + float(b[h])) for h in range(7))
    )
    torch.testing.assert_close(m(q, k), ref)
    assert scores.Additive(4).w_k.shape == (4, 4)  # key_dim and hidden_dim default to query_dim


def _module_gradcheck(module, q, k):
    """gradcheck of (q, k, *parameters) -> module(q, k), swapping the parameters in functionally."""
    names = [n for n, _ in module.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for _, p in module.named_parameters())

    def f(q, k, *ps):
        return torch.func.functional_call(module, dict(zip(names, ps, strict=True)), (q, k))

    return torch.autograd.gradcheck(f, (q, k, *params))


@pytest.mark.parametrize(
    "make",
    [
        lambda: scores.Bilinear(3, 4),
        lambda: scores.Additive(3, 4, hidden_dim=5),
        lambda: scores.Additive(3, 4, hidden_dim=5, hidden_bias=True),
    ],
    ids=["bilinear", "additive", "additive_bias"],
)
def test_module_gradcheck_with_parameters(make):
    torch.manual_seed(0)
    m = make().double()
    gen = torch.Generator().manual_seed(3)
    q = _x(gen, 2, 3).requires_grad_()
    k = _x(gen, 4, 4).requires_grad_()
    assert _module_gradcheck(m, q, k)


def test_module_parameter_grads_through_attend():
    torch.manual_seed(0)
    m = scores.Additive(3, 4, hidden_bias=True).double()
    gen = torch.Generator().manual_seed(4)
    q, k, v = _x(gen, 2, 3), _x(gen, 5, 4), _x(gen, 5, 2)
    out = qkv.attend(q, k, v, score=m, mask=qkv.masks.window(1)).output
    out.sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("dot", scores.Dot),
        ("scaled_dot", scores.ScaledDot),
        ("cosine", scores.Cosine),
        ("bilinear", scores.Bilinear),
        ("general", scores.Bilinear),
        ("additive", scores.Additive),
        ("concat", scores.Additive),
        ("mlp", scores.Additive),
    ],
)
def test_make_by_name(name, cls):
    m = scores.make(name, query_dim=3, key_dim=4 if cls in (scores.Bilinear, scores.Additive) else None)
    assert isinstance(m, cls)
    q, k = torch.randn(2, 3), torch.randn(5, 4 if cls in (scores.Bilinear, scores.Additive) else 3)
    assert m(q, k).shape == (2, 5)


def test_make_hidden_dim_and_unknown_name():
    assert scores.make("additive", query_dim=3, hidden_dim=9).v.shape == (9,)
    with pytest.raises(ValueError) as info:
        scores.make("luong", query_dim=3)
    assert "'luong'" in str(info.value) and "bilinear" in str(info.value)


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "4", None])
@pytest.mark.parametrize("which", ["query_dim", "key_dim", "hidden_dim"])
def test_bad_dims(which, bad):
    if bad is None and which != "query_dim":
        return  # None means "default" for key_dim/hidden_dim
    kwargs = {"query_dim": 3, which: bad}
    for ctor in (scores.Additive, scores.Bilinear):
        if ctor is scores.Bilinear and which == "hidden_dim":
            continue
        with pytest.raises((ValueError, TypeError)) as info:
            ctor(**kwargs)
        assert which in str(info.value) and repr(bad) in str(info.value)


def test_module_wrong_width_inputs():
    """Convention: the error names the argument that is wrong (q or k) and the shape it got."""
    m = scores.Bilinear(3, 4)
    with pytest.raises(ValueError) as info:
        m(torch.randn(2, 3), torch.randn(5, 6))
    assert "k (5, 6)" in str(info.value)


@pytest.mark.parametrize("wrong", ["q", "k"])
def test_additive_module_wrong_width_names_the_input(wrong):
    a = scores.Additive(3, 4)
    q = torch.randn(2, 5) if wrong == "q" else torch.randn(2, 3)
    k = torch.randn(6, 7) if wrong == "k" else torch.randn(6, 4)
    with pytest.raises(ValueError) as info:
        a(q, k)
    got = tuple((q if wrong == "q" else k).shape)
    assert f"{wrong} {got}" in str(info.value), str(info.value)
