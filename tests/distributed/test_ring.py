"""Ring attention (qkv.kernels.ring) on 2 and 4 gloo processes equals single-process ``attend``.

The reference is ``attend(backend="naive")`` on the whole sequence; every case compares the gathered
output, the gradients of q, k and v, and the summed shares of replicated parameters' gradients
(score weights, bias tensors and tables), in float64 (tests/distributed/ring_workers.py).
"""

from __future__ import annotations

import itertools

import pytest
import ring_workers
import torch
import torch.distributed as dist

from qkv.functional.attention import attend

SCORES = ["dot", "scaled_dot", "cosine", "bilinear", "additive"]
MASKS = ["none", "causal", "window", "padding", "causal_padding", "rows"]
BIASES = ["none", "alibi", "relative", "tensor"]


def test_ring_two_processes_core(spawn):
    """The default-run check: each score once, with causal/padding/window/tensor masks and each bias kind."""
    cases = [
        ("scaled_dot", "causal", "none", 8, "zigzag"),
        ("dot", "padding", "alibi", 8, "contiguous"),
        ("cosine", "window", "relative", 8, "zigzag"),
        ("bilinear", "rows", "tensor", 8, "zigzag"),
        ("additive", "causal_padding", "alibi", 8, "zigzag"),
    ]
    spawn(ring_workers.run_cases, 2, cases)


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 4])
def test_ring_every_score_mask_bias(spawn, world):
    """Every score x mask, and every score x bias, on both layouts."""
    cases = [(s, m, "none", 8, lay) for s, m in itertools.product(SCORES, MASKS) for lay in ("zigzag",)]
    cases += [(s, "causal", b, 8, "contiguous") for s, b in itertools.product(SCORES, BIASES)]
    spawn(ring_workers.run_cases, world, cases)


@pytest.mark.slow
@pytest.mark.parametrize(("world", "layout"), [(2, "zigzag"), (4, "contiguous")])
def test_layers_sequence_parallel(spawn, world, layout):
    """MultiHeadAttention (RoPE, ALiBi, window, causal) and a Transformer encoder layer, sharded."""
    spawn(ring_workers.run_layers, world, layout)


def test_group_needs_ring_backend():
    q = torch.zeros(1, 2, 3)
    with pytest.raises(ValueError, match="group is for backend='ring'"):
        attend(q, q, q, backend="tiled", group=object())


@pytest.mark.parametrize("score", ["scaled_dot", "additive"])
def test_ring_in_one_process_is_the_tiled_kernel(score):
    """Without an initialised group the ring has one rank: outputs and gradients equal the tiled kernel's."""
    from qkv import masks
    from qkv.layers.scores import Additive
    from qkv.positional.alibi import alibi

    if dist.is_available() and dist.is_initialized():
        pytest.skip("a process group exists in this process")
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn((2, 2, 7, 4), generator=g, dtype=torch.float64) for _ in range(3))
    sc = Additive(4, hidden_dim=3).double() if score == "additive" else score
    grads = []
    for backend in ("ring", "tiled"):
        qs, ks, vs = (t.clone().requires_grad_() for t in (q, k, v))
        out = attend(qs, ks, vs, score=sc, mask=masks.causal(), bias=alibi(2), backend=backend).output
        grads.append((out, *torch.autograd.grad(out.square().sum(), [qs, ks, vs])))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_sequence_parallel_with_a_group_needs_initialised_torch_distributed():
    from qkv.kernels.ring import SequenceParallel

    if dist.is_available() and dist.is_initialized():
        pytest.skip("a process group exists in this process")
    with pytest.raises(RuntimeError, match="not initialised"):
        SequenceParallel(group=object())
    with pytest.raises(ValueError, match="layout"):
        SequenceParallel(layout="striped")


def test_ring_under_a_launcher_without_a_group_is_an_error(monkeypatch):
    """WORLD_SIZE > 1 but no process group: each rank would silently attend over its shard alone."""
    if dist.is_available() and dist.is_initialized():
        pytest.skip("a process group exists in this process")
    monkeypatch.setenv("WORLD_SIZE", "2")
    q = torch.zeros(1, 1, 4, 2)
    with pytest.raises(RuntimeError, match=r"WORLD_SIZE=2 .* not initialised"):
        attend(q, q, q, backend="ring")
    from qkv.kernels.ring import SequenceParallel

    sp = SequenceParallel()  # made before a group exists (as a layer's option would be): no error until used
    assert "not initialised" in repr(sp)
    with pytest.raises(RuntimeError, match="WORLD_SIZE=2"):
        sp.shard(q)
    monkeypatch.setenv("WORLD_SIZE", "1")
    attend(q, q, q, backend="ring")  # one process: the ring is one rank
    assert sp.world == 1
