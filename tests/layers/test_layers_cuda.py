"""Every public attention layer on CUDA (issue 16 §1): the same weights and inputs give the CPU's output and
gradients, with and without a mask, in float32; and each runs in bfloat16 with finite results.

The layers are built by the contract test's factories (``tests/layers/test_contract.py``: a new layer joins
there and is checked here too). Marked ``cuda``; skipped without a GPU.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch

import qkv

CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")]


def _contract():
    path = Path(__file__).resolve().parent / "test_contract.py"
    spec = importlib.util.spec_from_file_location("qkv_contract_factories", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONTRACT = _contract()
B, L, S, D = CONTRACT.B, CONTRACT.L, CONTRACT.S, CONTRACT.D


def _run(layer, q, k, v, mask):
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = layer(q, k, v, mask=mask).output
    seed = torch.Generator().manual_seed(1)
    grad_out = torch.randn(out.shape, generator=seed, dtype=torch.float64).to(out.device, out.dtype)
    params = [p for p in layer.parameters() if p.requires_grad]
    grads = torch.autograd.grad(out, [q, k, v, *params], grad_out, allow_unused=True)
    return out, grads


def _masks(device):
    keep = torch.ones(B, S, dtype=torch.bool)
    keep[0, 4:] = False
    return [None, qkv.masks.key_padding(keep.to(device))]


@pytest.mark.parametrize("name", sorted(CONTRACT.FACTORIES))
def test_layer_on_cuda_matches_the_cpu(name, device="cuda"):
    torch.manual_seed(0)
    cpu_layer = CONTRACT.FACTORIES[name]().eval()
    dev_layer = copy.deepcopy(cpu_layer).to(device)
    q, k, v = CONTRACT._inputs()
    for cpu_mask, dev_mask in zip(_masks("cpu"), _masks(device), strict=True):
        ref, ref_grads = _run(cpu_layer, q, k, v, cpu_mask)
        out, grads = _run(dev_layer, q.to(device), k.to(device), v.to(device), dev_mask)
        assert out.device.type == torch.device(device).type
        torch.testing.assert_close(out.cpu(), ref, atol=1e-5, rtol=1e-4, msg=lambda m: f"{name} output: {m}")
        for i, (g, r) in enumerate(zip(grads, ref_grads, strict=True)):
            assert (g is None) == (r is None), f"{name}: gradient {i} exists on one device only"
            if r is not None:
                torch.testing.assert_close(g.cpu(), r, atol=1e-4, rtol=1e-3,
                                           msg=lambda m, i=i: f"{name} gradient {i}: {m}")


@pytest.mark.parametrize("name", sorted(CONTRACT.FACTORIES))
def test_layer_on_cuda_in_bfloat16_is_finite(name, device="cuda"):
    torch.manual_seed(0)
    layer = CONTRACT.FACTORIES[name]().eval().to(device, torch.bfloat16)
    q, k, v = (t.to(device, torch.bfloat16) for t in CONTRACT._inputs())
    out, grads = _run(layer, q, k, v, _masks(device)[1])
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all(), name
    assert all(g is None or torch.isfinite(g.float()).all() for g in grads), name
