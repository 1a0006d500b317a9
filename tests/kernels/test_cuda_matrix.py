"""Every backend x score x mask x bias x dtype against the float64 reference, on CPU and on CUDA (issue 16 §1).

Shape legend: ``B`` batch, ``H`` heads, ``L`` queries, ``S`` keys, ``D`` features, ``Dv`` value width.

The reference is the naive backend in float64 on the CPU, given the same inputs (the low-precision
inputs cast up, so only the backend's arithmetic differs). Forward outputs and the gradients of
q, k, v, a tensor bias and the score's parameters are compared with dtype-appropriate tolerances,
for every backend that can take the call (a backend that cannot says why, and that cell is not
compared; a test in which no cell can be compared skips with those reasons).

* ``cpu``: float32 by default; bfloat16 and float16 (marked ``slow``): the backends all take half
  inputs on a CPU (naive and tiled compute in the input dtype, SDPA's CPU kernel and
  FlexAttention's CPU fallback too). The Triton backend runs on a CPU only under its interpreter
  (``TRITON_INTERPRET=1``): its CPU cells (``slow``) run only then; its own tests
  (``tests/kernels/test_triton*.py``) cover it there, and this matrix compares it on CUDA.
* ``cuda`` (marked ``cuda``, skipped without a GPU): float32, float16 and bfloat16 on every
  backend, Triton included where ``triton`` imports. FlexAttention compiles per mask and shape,
  so its CUDA cells are also marked ``slow``.

The fuzzer (``tests/properties/test_fuzz.py``) draws random calls on the CPU; this matrix is its
deterministic, exhaustive counterpart with a device axis, and adds Luong's local window and the
graph mask, which the fuzzer does not draw.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import qkv
from qkv import kernels
from qkv import masks as M
from qkv.functional.local import Around
from qkv.kernels.triton.plan import interpreting, triton_available

B, H, L, S, D, DV = 2, 2, 9, 12, 8, 5
CUDA = torch.cuda.is_available()
#: (forward, gradient) absolute = relative tolerance against float64, by dtype
TOL = {torch.float32: (2e-5, 2e-4), torch.float16: (4e-3, 2e-2), torch.bfloat16: (3e-2, 1e-1)}


class TemperatureProduct(nn.Module):
    """A user's score module with no declared structure (kind "pairwise"): ``t · q kᵀ``, ``t`` learned."""

    def __init__(self) -> None:
        super().__init__()
        self.t = nn.Parameter(torch.tensor(0.7))

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return self.t * torch.einsum("...ld,...sd->...ls", q, k)


SCORES = ["dot", "scaled_dot", "cosine", "additive", "bilinear", "module"]
MASKS = ["none", "causal", "window", "key_padding", "local_window", "graph"]
BIASES = ["none", "tensor", "alibi"]


def _score(name: str):
    torch.manual_seed(1)
    if name in ("dot", "scaled_dot", "cosine"):
        return name
    if name == "additive":
        return qkv.scores.Additive(D, hidden_dim=6)
    if name == "bilinear":
        return qkv.scores.Bilinear(D)
    return TemperatureProduct()


def _mask(name: str, device):
    gen = torch.Generator().manual_seed(2)
    if name == "none":
        return None
    if name == "causal":
        return M.causal()
    if name == "window":
        return M.window(2)
    if name == "key_padding":
        keep = torch.ones(B, S, dtype=torch.bool)
        keep[0, 7:] = False
        keep[1] = False  # every query of batch 1 has no key: zero rows
        return M.key_padding(keep.to(device))
    if name == "local_window":
        centres = torch.rand(B, H, L, generator=gen) * (S - 1)  # (B, H, L)
        return Around(centres.to(device), 2)
    edges = torch.randint(0, L, (2, 20), generator=gen)  # (2, E) over a bipartite graph of L queries, S keys
    edges[0] = torch.randint(0, S, (20,), generator=gen)
    return M.graph(edges.to(device), num_nodes=(L, S), self_loops=False)


def _bias(name: str, device, dtype):
    if name == "none":
        return None
    if name == "alibi":
        return qkv.positional.alibi(H)
    gen = torch.Generator().manual_seed(3)
    return torch.randn(1, H, L, S, generator=gen, dtype=torch.float64).to(device, dtype).requires_grad_()


def _inputs(device, dtype):
    gen = torch.Generator().manual_seed(0)
    shapes = [(B, H, L, D), (B, H, S, D), (B, H, S, DV)]
    return [torch.randn(*s, generator=gen, dtype=torch.float64).to(device, dtype).requires_grad_() for s in shapes]


def _run(backend, q, k, v, score, mask, bias, grad_out):
    out = qkv.attend(q, k, v, score=score, mask=mask, bias=bias, backend=backend).output
    params = list(score.parameters()) if isinstance(score, nn.Module) else []
    leaves = [q, k, v, *([bias] if isinstance(bias, torch.Tensor) else []), *params]
    grads = torch.autograd.grad(out, leaves, grad_out.to(out.dtype), allow_unused=True)
    return out, grads


def _compare_all(device: str, dtype: torch.dtype, backend: str, score_name: str) -> None:
    fwd_tol, grad_tol = TOL[dtype]
    compared, reasons = 0, set()
    for mask_name in MASKS:
        for bias_name in BIASES:
            q, k, v = _inputs(device, dtype)
            score = _score(score_name)
            if isinstance(score, nn.Module):
                score = score.to(device, dtype)
            mask, bias = _mask(mask_name, device), _bias(bias_name, device, dtype)
            call = kernels.AttentionCall.build(q, k, v, score=score, mask=mask, bias=bias)
            why = kernels.BACKENDS[backend].unsupported(call)
            if why is not None:
                reasons.add(why)
                continue
            grad_out = torch.randn(B, H, L, DV, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
            out, grads = _run(backend, q, k, v, score, mask, bias, grad_out.to(device))
            # the reference: float64 on the CPU, the same (cast) values, a copy of the score
            rq, rk, rv = (t.detach().cpu().double().requires_grad_() for t in (q, k, v))
            rscore = copy.deepcopy(score).cpu().double() if isinstance(score, nn.Module) else score
            rbias = bias.detach().cpu().double().requires_grad_() if isinstance(bias, torch.Tensor) else bias
            ref, ref_grads = _run("naive", rq, rk, rv, rscore, _mask(mask_name, "cpu"), rbias, grad_out)
            where = f"{backend}/{score_name}/mask={mask_name}/bias={bias_name}/{dtype}/{device}"
            assert out.dtype == dtype and out.device.type == torch.device(device).type, where
            torch.testing.assert_close(out.detach().cpu().double(), ref.detach(), atol=fwd_tol, rtol=fwd_tol,
                                       msg=lambda m, w=where: f"{w} output: {m}")
            for i, (g, r) in enumerate(zip(grads, ref_grads, strict=True)):
                if r is None:
                    continue
                assert g is not None, f"{where}: no gradient for input {i}"
                torch.testing.assert_close(g.detach().cpu().double(), r, atol=grad_tol, rtol=grad_tol,
                                           msg=lambda m, w=where, i=i: f"{w} gradient {i}: {m}")
            compared += 1
    if not compared:
        pytest.skip(f"{backend} takes no call with the {score_name} score: {'; '.join(sorted(reasons))}")


def _cases():
    for backend in ("naive", "sdpa", "tiled", "flex"):
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            marks = [pytest.mark.slow] if dtype != torch.float32 else []  # the default run stays short
            yield pytest.param("cpu", dtype, backend, id=f"cpu-{str(dtype)[6:]}-{backend}", marks=marks)
    yield pytest.param("cpu", torch.float32, "triton", id="cpu-float32-triton", marks=[
        pytest.mark.slow, pytest.mark.skipif(not triton_available(), reason="triton is not installed")])
    cuda_marks = [pytest.mark.cuda, pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")]
    for backend in ("naive", "sdpa", "tiled", "flex", "triton"):
        marks = list(cuda_marks)
        if backend == "flex":
            marks.append(pytest.mark.slow)  # FlexAttention compiles per mask and shape
        if backend == "triton":
            marks.append(pytest.mark.skipif(not triton_available(), reason="triton is not installed"))
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            yield pytest.param("cuda", dtype, backend, id=f"cuda-{str(dtype)[6:]}-{backend}", marks=marks)


@pytest.mark.parametrize("score_name", SCORES)
@pytest.mark.parametrize(("device", "dtype", "backend"), list(_cases()))
def test_backend_matches_float64_reference(device, dtype, backend, score_name):
    if device == "cpu" and backend == "triton" and not interpreting():
        pytest.skip("the Triton backend runs on a CPU only under TRITON_INTERPRET=1 (tests/kernels/test_triton*.py)")
    _compare_all(device, dtype, backend, score_name)


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_auto_on_cuda_matches_float64_reference(dtype):
    """``backend="auto"`` on CUDA tensors (it may pick Triton there) against the same reference."""
    for score_name in SCORES:
        _compare_all("cuda", dtype, "naive", score_name)  # the reference path itself on CUDA
        q, k, v = _inputs("cuda", dtype)
        score = _score(score_name)
        if isinstance(score, nn.Module):
            score = score.to("cuda", dtype)
        for mask_name in MASKS:
            out = qkv.attend(q, k, v, score=score, mask=_mask(mask_name, "cuda"), backend="auto").output
            rscore = copy.deepcopy(score).cpu().double() if isinstance(score, nn.Module) else score
            ref = qkv.attend(*(t.detach().cpu().double() for t in (q, k, v)), score=rscore,
                             mask=_mask(mask_name, "cpu"), backend="naive").output
            tol = TOL[dtype][0]
            torch.testing.assert_close(out.detach().cpu().double(), ref, atol=tol, rtol=tol)
