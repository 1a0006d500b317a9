"""A fuzzer over ``attend`` and every public layer (issue 8).

The contract, for any drawn call: either a ``ValueError``/``TypeError`` that names the offending
argument, or finite outputs and gradients that agree with the naive reference backend within
the dtype's tolerance, with zero output on every query row that has no allowed key. Backends,
normalisers and layers are read from the package, so a new one is fuzzed the day it lands.
A few hundred examples run by default; ``-m slow`` runs a few thousand.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qkv
from qkv import kernels, layers, memory
from qkv.functional import normalize as nz
from qkv.functional.scores import PARAMETER_FREE
from qkv.layers import scores as score_modules

BACKENDS = ["auto", *kernels.BACKENDS]
NORMALIZERS = sorted(nz.NORMALIZERS)
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
TOL = {torch.float64: 1e-7, torch.float32: 2e-4, torch.float16: 3e-2, torch.bfloat16: 6e-2}
#: every score name the package knows (parameter-free names and score modules), and a plain function
SCORES = [*sorted(score_modules.NAMES), "closure"]
#: softmax is drawn most often: it is what the fast backends compute, so most calls compare backends
NORMALIZE_DRAWS = ["softmax"] * (2 * len(NORMALIZERS)) + NORMALIZERS + ["hard_st"]
FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=300)
FUZZ_SLOW = settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=3000)


def _score(name: str, D: int, dtype: torch.dtype):
    if name in PARAMETER_FREE:
        return name
    if name == "closure":
        return lambda q, k: q @ k.transpose(-1, -2) * 0.5
    return score_modules.make(name, query_dim=D, key_dim=D, hidden_dim=3).to(dtype)


@st.composite
def attention_calls(draw):
    """Keyword arguments for ``attend``, with ``bad`` naming an argument drawn invalid (or None)."""
    dtype = draw(st.sampled_from(DTYPES))
    batch = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    L, S = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    D, Dv = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))

    def lead():  # each of q, k, v broadcasts: a leading dim may be 1
        return tuple(draw(st.sampled_from([n, 1])) for n in batch)

    q = torch.randn(*lead(), L, D, generator=g).to(dtype)
    k = torch.randn(*lead(), S, D, generator=g).to(dtype)
    v = torch.randn(*lead(), S, Dv, generator=g).to(dtype)
    full = tuple(torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]))
    target = (*full, L, S)
    kw: dict = {"score": _score(draw(st.sampled_from(SCORES)), D, dtype)}

    def sub_shape(min_rank: int = 0):  # a shape that broadcasts to the scores' shape, of any rank
        rank = draw(st.integers(min_rank, len(target)))
        dims = target[len(target) - rank :]
        return tuple(draw(st.sampled_from([n, 1])) for n in dims)

    kind = draw(st.sampled_from(["none", "tensor", "causal", "window", "padding", "combined"]))
    if kind == "tensor":
        kw["mask"] = torch.rand(sub_shape(1), generator=g) > draw(st.sampled_from([0.2, 0.6, 1.0]))
    elif kind == "causal":
        kw["mask"] = qkv.masks.causal(align=draw(st.sampled_from(["top_left", "bottom_right"])))
    elif kind == "window":
        kw["mask"] = qkv.masks.window(draw(st.integers(0, 3)))
    elif kind in ("padding", "combined") and len(full) == 2:
        lengths = torch.randint(0, S + 1, (draw(st.sampled_from([full[0], 1])),), generator=g)
        kw["mask"] = qkv.masks.padding(lengths)
        if kind == "combined":
            kw["mask"] = kw["mask"] & qkv.masks.causal() | qkv.masks.window(draw(st.integers(0, 2)))
    bias_kind = draw(st.sampled_from(["none", "tensor", "tensor", "alibi", "relative", "sum"]))
    if bias_kind == "tensor":
        bias = torch.randn(sub_shape(), generator=g)
        if bias.numel() and draw(st.booleans()):
            bias.view(-1)[0] = float("-inf")
        kw["bias"] = bias.to(dtype)
    elif bias_kind in ("alibi", "relative") and len(full) == 2:
        H = draw(st.sampled_from([full[1], 1]))
        kw["bias"] = (
            qkv.positional.alibi(H)
            if bias_kind == "alibi"
            else qkv.positional.relative(torch.randn(H, 5), max_distance=2)
        )
    elif bias_kind == "sum" and len(full) == 2:  # lazy + lazy + tensor
        kw["bias"] = qkv.positional.alibi(full[1]) + qkv.positional.relative(1, max_distance=1) + torch.zeros(S)
    kw["normalize"] = draw(st.sampled_from(NORMALIZE_DRAWS))
    if kw["normalize"] == "hard_st":
        kw["normalize"] = nz.Hard(straight_through=True)
    elif kw["normalize"] == "sample":
        kw["normalize"] = nz.Sample(generator=torch.Generator().manual_seed(0))
    kw["scale"] = draw(st.sampled_from([None, None, 0.5, 0.0, 2]))
    if draw(st.integers(0, 9)) == 0:
        kw["dropout"] = 0.3  # random: checked for finiteness and empty rows only
    bad = draw(st.sampled_from([None] * 16 + ["scale", "dropout", "mask", "bias"]))
    if bad == "scale":
        kw["scale"] = draw(st.sampled_from(["2", float("nan"), float("inf"), True]))
    elif bad == "dropout":
        kw["dropout"] = draw(st.sampled_from([-0.1, 1.0, "0.1", True]))
    elif bad == "mask":
        kw["mask"] = draw(st.sampled_from([torch.ones(S + 1, dtype=torch.bool), torch.ones(L, S), "causal"]))
    elif bad == "bias":
        kw["bias"] = draw(st.sampled_from([torch.zeros(S + 2), torch.zeros(L, S, dtype=torch.long), 1.0]))
    return q, k, v, kw, bad, draw(st.sampled_from(BACKENDS))


def _empty_rows(q, k, v, kw) -> torch.Tensor:
    """``(..., L)`` True where a query has no allowed key (mask and ``-inf`` bias together)."""
    call = kernels.AttentionCall.build(q, k, v, **kw)
    allowed = torch.ones(call.L, call.S, dtype=torch.bool)
    if call.mask is not None:
        allowed = allowed & call.mask.materialize(call.L, call.S)
    if call.bias is not None:
        allowed = allowed & (call.bias.materialize(call.L, call.S) > float("-inf"))
    return ~allowed.expand(*call.batch_shape, call.L, call.S).any(-1)


def _run(q, k, v, kw, backend):
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out = qkv.attend(*leaves, backend=backend, **kw).output
    (out.float() * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    return out.detach(), [t.grad for t in leaves]


def _check_call(q, k, v, kw, bad, backend):
    try:
        out, grads = _run(q, k, v, kw, backend)
    except (ValueError, TypeError) as e:
        msg = str(e)
        if bad is not None:
            assert bad in msg, f"error for a bad {bad!r} does not name it: {msg}"
        else:
            assert backend in msg and "cannot compute" in msg, f"unexpected error for a valid call: {msg}"
        return
    assert bad is None, f"a bad {bad!r} was accepted: {kw[bad]!r}"
    assert torch.isfinite(out).all(), "non-finite output"
    assert all(g is None or torch.isfinite(g).all() for g in grads), "non-finite gradient"
    empty = _empty_rows(q, k, v, kw)
    assert torch.all(out[empty.expand(out.shape[:-1])] == 0), "a query with no allowed key has a non-zero output"
    if backend == "naive" or isinstance(kw["normalize"], nz.Sample) or kw.get("dropout"):
        return
    ref, ref_grads = _run(q, k, v, kw, "naive")
    tol = TOL[q.dtype] * max(1.0, math.sqrt(k.shape[-2]))
    torch.testing.assert_close(out, ref, atol=tol, rtol=tol)
    for g, r in zip(grads, ref_grads, strict=True):
        if g is not None and r is not None:
            torch.testing.assert_close(g, r, atol=2 * tol, rtol=2 * tol)


@FUZZ
@given(attention_calls())
def test_fuzz_attend(case):
    _check_call(*case)


@pytest.mark.slow
@FUZZ_SLOW
@given(attention_calls())
def test_fuzz_attend_many(case):
    _check_call(*case)


# ---- layers: every public attention layer, built the same way as in the contract test

LAYER_FACTORIES = {
    qkv.Attention: lambda D, score: qkv.Attention(D, score=score),
    layers.GraphAttention: lambda D, score: layers.GraphAttention(D, 2, num_heads=2, concat=score != "dot"),
    qkv.LocalAttention: lambda D, score: qkv.LocalAttention(D, mode="local-p", window=2, score=score),
    qkv.MultiHeadAttention: lambda D, score: qkv.MultiHeadAttention(D, 2, score=score),
    layers.StructuredAttention: lambda D, score: layers.StructuredAttention(D, score=score),
    memory.Hopfield: lambda D, score: memory.Hopfield(D, num_heads=2, learn_beta=score == "dot"),  # beta-dot score
}


def test_fuzzer_covers_every_public_layer_and_backend():
    assert set(LAYER_FACTORIES) == set(layers.ATTENTION_LAYERS) | set(memory.ATTENTION_LAYERS)
    assert set(BACKENDS) == {"auto", *kernels.BACKENDS}


@st.composite
def layer_calls(draw):
    """A layer, its inputs and keyword arguments, and ``bad``: the argument drawn invalid (or None)."""
    cls = draw(st.sampled_from(sorted(LAYER_FACTORIES, key=lambda c: c.__name__)))
    B, L, S = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    D = 2 * draw(st.integers(1, 4))
    score = draw(st.sampled_from(SCORES[:-1]))  # names only: a layer builds them
    dtype = draw(st.sampled_from([torch.float64, torch.float32, torch.bfloat16]))
    torch.manual_seed(draw(st.integers(0, 2**16)))
    layer = LAYER_FACTORIES[cls](D, score).to(dtype).eval()
    q, k = torch.randn(B, L, D, dtype=dtype), torch.randn(B, S, D, dtype=dtype)
    kw = {}
    if draw(st.booleans()):
        kw["mask"] = torch.rand(B, 1, L, S) > draw(st.sampled_from([0.3, 0.8, 1.0]))
    elif draw(st.booleans()):
        kw["mask"] = qkv.masks.padding(torch.randint(0, S + 1, (B,))) & qkv.masks.causal()
    if draw(st.booleans()):
        bias = torch.randn(*draw(st.sampled_from([(S,), (L, S), (B, 1, L, S)])), dtype=dtype)
        if draw(st.booleans()):
            bias[..., 0] = float("-inf")
        kw["bias"] = bias
    bad = draw(st.sampled_from([None] * 8 + ["query", "key", "mask", "bias"]))
    if bad == "query":
        q = torch.randn(B, L, D + 1, dtype=dtype)
    elif bad == "key":
        k = torch.randn(B + 1, S, D, dtype=dtype)
    elif bad == "mask":
        kw["mask"] = torch.ones(B, 1, L, S)  # float, not bool
    elif bad == "bias":
        kw["bias"] = torch.zeros(L + 1, S + 1)
    return layer, q, k, kw, bad


@FUZZ
@given(layer_calls())
def test_fuzz_layers(case):
    layer, q, k, kw, bad = case
    q, k = q.requires_grad_(), k.requires_grad_()
    if bad is not None:
        with pytest.raises((ValueError, TypeError), match=bad):
            layer(q, k, k, **kw)
        return
    weighed = layer(q, k, k, return_weights=True, **kw)  # naive (weights asked for)
    fast = layer(q, k, k, **kw)  # whatever auto picks
    assert torch.isfinite(weighed.output).all() and torch.isfinite(weighed.weights).all()
    tol = TOL[q.dtype]
    torch.testing.assert_close(fast.output, weighed.output, atol=tol, rtol=tol)
    B, L, S = q.shape[0], q.shape[1], k.shape[1]
    allowed = torch.ones(B, 1, L, S, dtype=torch.bool)
    if "mask" in kw:
        allowed = allowed & qkv.masks.materialize(kw["mask"], L, S)
    if "bias" in kw:
        allowed = allowed & (kw["bias"] > float("-inf"))
    w = weighed.weights  # (B, H, L, S)
    assert torch.all(w.masked_select(~allowed.expand_as(w)) == 0), "weight on a forbidden key"
    fast.output.float().sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in layer.parameters())
