"""The Hopfield layers: equivalence with Ramsauer et al. eq. 10-12 transcribed, float64 gradcheck, the contract.

``Hopfield`` follows the layer contract exactly and is in ``tests/layers/test_contract.py`` and the fuzzer
(``qkv.memory.ATTENTION_LAYERS``). ``HopfieldPooling`` (learned query) and ``HopfieldLayer`` (learned keys and
values) take the contract's remaining arguments; the same checks run on them here.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import qkv
from qkv import memory
from qkv.memory import Hopfield, HopfieldLayer, HopfieldPooling
from qkv.memory.hopfield import modern

B, L, S, D = 2, 5, 6, 8


def _rand(*shape, seed=0, dtype=torch.float64, grad=False):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).requires_grad_(grad)


def _eq10(layer: Hopfield, r: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Z = softmax(beta Q K^T) V per head, Q = R W_Q, K = Y W_K, V = Y W_V, then the output projection."""
    q, k, vv = layer.q_proj(r), layer.k_proj(y), layer.v_proj(v)
    H, d = layer.num_heads, layer.head_dim
    heads = []
    for h in range(H):
        sl = slice(h * d, (h + 1) * d)
        p = torch.softmax(float(layer.beta) * q[..., sl] @ k[..., sl].transpose(-1, -2), dim=-1)  # (B, L, S)
        heads.append(p @ vv[..., sl])
    return layer.out_proj(torch.cat(heads, -1))


def test_listing_covers_every_public_memory_layer():
    public = {getattr(memory, n) for n in memory.__all__}
    modules = {c for c in public if inspect.isclass(c) and issubclass(c, nn.Module)}
    listed = set(memory.ATTENTION_LAYERS) | set(memory.LEARNED_MEMORY_LAYERS) | set(memory.MEMORY_MODELS)
    assert modules == listed


def test_without_projections_the_layer_is_the_modern_update():
    stored, probes = _rand(B, S, D, seed=1), _rand(B, L, D, seed=2)
    layer = Hopfield(D, projections=False, beta=3.0)
    assert not list(layer.parameters())
    torch.testing.assert_close(layer(probes, stored).output, modern.update(probes, stored, beta=3.0))


@pytest.mark.parametrize("heads", [1, 2])
def test_projected_layer_equals_equation_10(heads):
    torch.manual_seed(0)
    layer = Hopfield(D, key_dim=6, value_dim=4, hidden_dim=8, output_dim=3, num_heads=heads, beta=0.7).double()
    r, y, v = _rand(B, L, D, seed=1), _rand(B, S, 6, seed=2), _rand(B, S, 4, seed=3)
    out = layer(r, y, v, return_weights=True)
    torch.testing.assert_close(out.output, _eq10(layer, r, y, v))
    assert out.weights.shape == (B, heads, L, S)


def test_learned_beta_gives_the_same_association_and_gets_a_gradient():
    torch.manual_seed(0)
    fixed = Hopfield(D, beta=0.9).double()
    learned = Hopfield(D, beta=0.9, learn_beta=True).double()
    learned.load_state_dict(fixed.state_dict(), strict=False)
    x, y = _rand(B, L, D, seed=1), _rand(B, S, D, seed=2)
    torch.testing.assert_close(learned(x, y).output, fixed(x, y).output)
    learned(x, y).output.sum().backward()
    assert learned.log_beta.grad is not None and learned.log_beta.grad != 0


def test_pooling_equals_equation_11_and_lookup_equation_12():
    torch.manual_seed(0)
    pool = HopfieldPooling(D, num_queries=3, num_heads=2).double()
    y = _rand(B, S, D, seed=1)
    q = pool.query.expand(B, -1, -1)
    torch.testing.assert_close(pool(y).output, _eq10(pool.hopfield, q, y, y))
    look = HopfieldLayer(D, 7, value_dim=4, projections=False, beta=2.0).double()
    r = _rand(B, L, D, seed=2)
    ref = torch.softmax(2.0 * r @ look.patterns.T, -1) @ look.values  # softmax(beta R W_K^T) W_V
    torch.testing.assert_close(look(r).output, ref)


def test_lookup_with_projections_equals_equation_12():
    """Z = softmax(beta R W_Q (Y_K W_K)^T) (Y_V W_V), then W_O: learned patterns and values through the projections."""
    torch.manual_seed(0)
    look = HopfieldLayer(D, 7, value_dim=5, hidden_dim=6, output_dim=3, num_heads=2, beta=0.8).double()
    r = _rand(B, L, D, seed=2)
    keys, values = look.patterns.expand(B, -1, -1), look.values.expand(B, -1, -1)  # (B, S, Dk), (B, S, Dv)
    torch.testing.assert_close(look(r).output, _eq10(look.hopfield, r, keys, values))
    out = look(r, return_weights=True)
    assert out.output.shape == (B, L, 3) and out.weights.shape == (B, 2, L, 7)


def test_pure_lookup_values_default_to_the_stored_patterns():
    """projections=False, no values: an auto-associative memory that returns the stored patterns themselves."""
    x = qkv.memory.hopfield.classical.threshold(_rand(12, 32, seed=5))  # (S, D) of +-1
    look = HopfieldLayer(32, 12, patterns=x, projections=False, beta=1.0).double()
    assert look.values is None and [n for n, _ in look.named_parameters()] == ["patterns"]
    noisy = x.clone()
    noisy[:, :5] *= -1
    out = look(noisy[None]).output[0]  # (S, D)
    assert torch.equal(torch.sign(out), x)
    torch.testing.assert_close(out, modern.update(noisy, x, beta=1.0))
    # with projections the values stay separate learned parameters
    assert HopfieldLayer(32, 12, patterns=x).values is not None


def test_pure_memory_needs_beta_and_one_head():
    with pytest.raises(ValueError, match="beta"):
        Hopfield(D, projections=False)  # 1/sqrt(D) would give metastable averages
    with pytest.raises(ValueError, match="beta"):
        HopfieldLayer(D, 3, projections=False)
    with pytest.raises(ValueError, match="num_heads"):
        Hopfield(D, projections=False, num_heads=2, beta=1.0)  # heads would split each pattern
    learned = Hopfield(D, projections=False, learn_beta=True)  # a learned beta only starts at 1/sqrt(D)
    assert float(learned.beta.detach()) == pytest.approx(D**-0.5)


def test_pure_lookup_retrieves_stored_prototypes():
    protos = qkv.memory.hopfield.classical.threshold(_rand(10, 32, seed=4))
    look = HopfieldLayer(32, 10, patterns=protos, values=torch.eye(10, dtype=torch.float64), projections=False,
                         beta=1.0).double()
    noisy = protos.clone()
    noisy[:, :4] *= -1
    assert torch.equal(look(noisy[None]).output[0].argmax(-1), torch.arange(10))  # retrieves the class one-hot


FACTORIES = {
    "Hopfield": lambda: Hopfield(D, num_heads=2),
    "Hopfield-learned-beta": lambda: Hopfield(D, learn_beta=True),
    "Hopfield-memory": lambda: Hopfield(D, projections=False, beta=2.0),
    "HopfieldPooling": lambda: HopfieldPooling(D, num_queries=L, num_heads=2),
    "HopfieldLayer": lambda: HopfieldLayer(D, S, num_heads=2, learn_beta=True),
}


def _call(layer, q, k, v, **kw):
    """The contract's call with the learned arguments left out."""
    if isinstance(layer, HopfieldPooling):
        return layer(k, v, **kw)
    if isinstance(layer, HopfieldLayer):
        return layer(q, **kw)
    return layer(q, k, v, **kw)


@pytest.fixture(params=sorted(FACTORIES))
def layer(request):
    torch.manual_seed(0)
    return FACTORIES[request.param]().double().eval()


def test_gradcheck_float64(layer):
    """Inputs, and the parameters that make each layer what it is (beta, learned queries, patterns, values)."""
    q, k, v = _rand(1, 2, D, seed=1, grad=True), _rand(1, 3, D, seed=2, grad=True), _rand(1, 3, D, seed=3, grad=True)
    assert torch.autograd.gradcheck(lambda q, k, v: _call(layer, q, k, v).output, (q, k, v))
    names = [n for n, _ in layer.named_parameters() if n.split(".")[-1] in ("log_beta", "query", "patterns", "values")]
    if names:
        params = dict(layer.named_parameters())

        def f(*ps):
            return torch.func.functional_call(layer, dict(zip(names, ps, strict=True)),
                                              (q.detach(), k.detach(), v.detach())
                                              if isinstance(layer, Hopfield) else
                                              (k.detach(), v.detach()) if isinstance(layer, HopfieldPooling)
                                              else (q.detach(),)).output

        assert torch.autograd.gradcheck(f, tuple(params[n].detach().clone().requires_grad_() for n in names))


def test_weights_per_head_mask_polarity_and_bias(layer):
    q, k, v = _rand(B, L, D, seed=1), _rand(B, S, D, seed=2), _rand(B, S, D, seed=3)
    out = _call(layer, q, k, v, return_weights=True)
    H = getattr(layer, "num_heads", 1)
    assert out.weights.shape == (B, H, L, S)
    assert _call(layer, q, k, v).weights is None
    allowed = torch.rand(B, 1, L, S, generator=torch.Generator().manual_seed(1)) > 0.4
    allowed[..., 0] = True
    w = _call(layer, q, k, v, mask=allowed, return_weights=True).weights
    assert torch.all(w.masked_select(~allowed.expand_as(w)) == 0) and torch.all(w.sum(-1) > 0)
    w = _call(layer, q, k, v, mask=qkv.masks.padding(torch.tensor([S - 2, S])), return_weights=True).weights
    assert torch.all(w[0, ..., S - 2:] == 0)
    bias = torch.zeros(S, dtype=torch.float64)
    bias[1] = float("-inf")
    w = _call(layer, q, k, v, bias=bias, return_weights=True).weights
    assert torch.all(w[..., 1] == 0) and torch.isfinite(w).all()


def test_empty_rows_are_zero_and_finite_forward_and_backward(layer):
    q, k, v = _rand(B, L, D, seed=1, grad=True), _rand(B, S, D, seed=2, grad=True), _rand(B, S, D, seed=3, grad=True)
    allowed = torch.ones(B, 1, L, S, dtype=torch.bool)
    allowed[:, :, 0] = False
    out = _call(layer, q, k, v, mask=allowed, return_weights=True)
    assert torch.all(out.weights[:, :, 0] == 0) and torch.isfinite(out.output).all()
    out.output.sum().backward()
    for t in (q, k, v):
        assert t.grad is None or torch.isfinite(t.grad).all()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in layer.parameters())


def test_errors_name_the_argument(layer):
    q, k, v = _rand(B, L, D, seed=1), _rand(B, S, D, seed=2), _rand(B, S, D, seed=3)
    bad = {"query": [(q[0], k, v), (q.int(), k, v)], "key": [(q, k[..., :-1], v)], "value": [(q, k, v[:1])]}
    if isinstance(layer, HopfieldLayer):
        bad = {"query": bad["query"]}
    if isinstance(layer, HopfieldPooling):
        bad = {"key": [(q, k[0], v), (q, k.int(), v)], "value": bad["value"]}
    for name, cases in bad.items():
        for args in cases:
            with pytest.raises((ValueError, TypeError), match=name):
                _call(layer, *args)
    with pytest.raises(ValueError, match="mask"):
        _call(layer, q, k, v, mask=torch.ones(B + 1, 1, L, S, dtype=torch.bool))


def test_constructor_errors_name_the_option():
    with pytest.raises(ValueError, match="beta"):
        Hopfield(D, beta=-1.0)
    with pytest.raises(TypeError, match="beta") as info:
        Hopfield(D, beta="2")  # type: ignore[arg-type]
    assert "or None" not in str(info.value)
    with pytest.raises(ValueError, match="num_heads"):
        Hopfield(D, num_heads=3)
    with pytest.raises(ValueError, match="key_dim"):
        Hopfield(D, key_dim=4, projections=False)
    with pytest.raises(ValueError, match="hidden_dim"):
        Hopfield(D, hidden_dim=4, projections=False)
    with pytest.raises(ValueError, match="num_queries"):
        HopfieldPooling(D, num_queries=0)
    with pytest.raises(ValueError, match="patterns"):
        HopfieldLayer(D, 3, patterns=torch.zeros(4, D))
    with pytest.raises(TypeError):
        Hopfield(D, 4)  # type: ignore[misc]  # options are keyword-only
