"""The graph mask (``qkv.masks.graph``): equals a dense adjacency on every kernel, never builds (N, N) tiled."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

import qkv
from qkv import masks as M
from qkv.functional.graph import Graph


def _random_graph(n: int, e: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (2, e), generator=g)  # (2, E): repeats and self-edges included on purpose


def _dense(edge_index, nq, nk, *, self_loops, flow="source_to_target") -> torch.Tensor:
    """The reference: a Python loop over the edge list."""
    adj = torch.zeros(nq, nk, dtype=torch.bool)
    for u, v in edge_index.t().tolist():
        q, k = (v, u) if flow == "source_to_target" else (u, v)
        adj[q, k] = True
    if self_loops:
        for i in range(nq):
            adj[i, i] = True
    return adj


@pytest.mark.parametrize("self_loops", [True, False])
@pytest.mark.parametrize("flow", ["source_to_target", "target_to_source"])
def test_tiles_equal_the_dense_adjacency(self_loops, flow):
    n = 37
    ei = _random_graph(n, 90)
    mask = M.graph(ei, num_nodes=n, self_loops=self_loops, flow=flow)
    want = _dense(ei, n, n, self_loops=self_loops, flow=flow)
    assert torch.equal(mask.materialize(n, n), want)
    for q0, q1, k0, k1 in [(0, 5, 0, 7), (5, 20, 3, 37), (30, 37, 10, 11), (12, 12, 0, 5)]:
        assert torch.equal(mask.tile(q0, q1, k0, k1, L=n, S=n, device=torch.device("cpu")), want[q0:q1, k0:k1])
    # kv_bounds is a true bound: nothing outside it is allowed
    for q0, q1 in [(0, 4), (4, 19), (19, 37)]:
        lo, hi = mask.kv_bounds(q0, q1, L=n, S=n)
        outside = want[q0:q1].clone()
        outside[:, lo:hi] = False
        assert not outside.any()
    assert torch.equal(mask.degrees(), want.sum(-1))
    assert mask.num_edges == int(want.sum())


def test_directed_edges_and_bipartite_graphs():
    ei = torch.tensor([[0, 1], [2, 2]])  # 0 -> 2 and 1 -> 2: node 2 attends to 0 and 1, not the reverse
    adj = M.graph(ei, num_nodes=3, self_loops=False).materialize(3, 3)
    assert adj.tolist() == [[False] * 3, [False] * 3, [True, True, False]]
    bip = M.graph(torch.tensor([[0, 4], [1, 0]]), num_nodes=(2, 5), self_loops=False)  # sources 0..4, targets 0..1
    assert bip.materialize(2, 5).tolist() == [[False, False, False, False, True], [True] + [False] * 4]


def test_combines_with_other_masks_and_flex_form_matches(monkeypatch):
    n = 40
    ei = _random_graph(n, 120, seed=1)
    mask = M.graph(ei, num_nodes=n) & M.causal()
    want = _dense(ei, n, n, self_loops=True) & torch.ones(n, n, dtype=torch.bool).tril()
    assert torch.equal(mask.materialize(n, n), want)
    grid = (torch.arange(2)[:, None, None, None], torch.arange(2)[None, :, None, None],
            torch.arange(n)[None, None, :, None], torch.arange(n)[None, None, None, :])
    for limit in (Graph.flex_bitmap_max_bytes, 0):  # the packed adjacency, and the binary search in CSR rows
        monkeypatch.setattr(Graph, "flex_bitmap_max_bytes", limit)
        mod = mask.flex(B=2, H=2, L=n, S=n, device=torch.device("cpu"))
        assert torch.equal(mod(*grid).expand(2, 2, n, n), want.expand(2, 2, n, n))
    empty = Graph(torch.zeros(2, 0, dtype=torch.long), num_nodes=4, self_loops=False)
    assert not empty.flex(B=1, H=1, L=4, S=4, device=torch.device("cpu"))(*grid[:2], grid[2][..., :4, :],
                                                                            grid[3][..., :4]).any()


@pytest.mark.parametrize("backend", ["naive", "tiled", "flex"])
def test_attend_equals_the_dense_mask_on_every_kernel(backend):
    """Forward and backward; rows with no edge (self_loops=False) get zeros, never NaN."""
    n, B, H, D = 70, 2, 2, 8
    ei = _random_graph(n, 150, seed=2)
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(B, H, n, D, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = M.graph(ei, num_nodes=n, self_loops=False)
    dense = _dense(ei, n, n, self_loops=False)
    assert (~dense.any(-1)).any()  # some node has no in-edge
    kw = {"tile_q": 16, "tile_k": 16} if backend == "tiled" else {}
    if backend == "tiled":
        from qkv.kernels.call import AttentionCall
        from qkv.kernels.tiled import tiled_attention
        out = tiled_attention(AttentionCall.build(q, k, v, mask=mask), **kw)
    else:
        out = qkv.attend(q, k, v, mask=mask, backend=backend).output
    ref = qkv.attend(q, k, v, mask=dense, backend="naive").output
    torch.testing.assert_close(out, ref)
    assert torch.isfinite(out).all()
    go = torch.randn(out.shape, generator=g, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad(out, [q, k, v], go), torch.autograd.grad(ref, [q, k, v], go), strict=True):
        torch.testing.assert_close(a, b)


def test_tiled_kernel_builds_only_tiles(monkeypatch):
    """Every tile the tiled kernel asks for is at most (tile_q, tile_k), and key tiles without an edge are skipped."""
    n, tq, tk = 3000, 128, 128
    g = torch.Generator().manual_seed(0)
    src = torch.randint(0, n, (6000,), generator=g)
    dst = (src + torch.randint(-40, 41, (6000,), generator=g)).clamp(0, n - 1)  # a local graph: a band
    mask = M.graph(torch.stack([src, dst]), num_nodes=n)
    seen = []
    real_tile = Graph.tile

    def spy(self, q0, q1, k0, k1, **kw):
        seen.append((q1 - q0, k1 - k0))
        return real_tile(self, q0, q1, k0, k1, **kw)

    monkeypatch.setattr(Graph, "tile", spy)
    q = torch.randn(1, 1, n, 8, generator=g)
    from qkv.kernels.call import AttentionCall
    from qkv.kernels.tiled import tiled_attention
    with torch.no_grad():
        out = tiled_attention(AttentionCall.build(q, q, q, mask=mask), tile_q=tq, tile_k=tk)
    assert max(a for a, _ in seen) <= tq and max(b for _, b in seen) <= tk
    n_blocks = -(-n // tq)
    assert len(seen) < 4 * n_blocks  # kv_bounds keeps a band graph to ~3 key tiles per query block, not n / tk
    monkeypatch.undo()
    ref = qkv.attend(q, q, q, mask=_dense(torch.stack([src, dst]), n, n, self_loops=True), backend="naive").output
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


_PEAK_SCRIPT = """
import resource, sys, torch, qkv
from qkv.kernels.call import AttentionCall
from qkv.kernels.tiled import tiled_attention
torch.set_num_threads(1)
n, e = int(sys.argv[1]), int(sys.argv[2])
g = torch.Generator().manual_seed(0)
mask = qkv.masks.graph(torch.randint(0, n, (2, e), generator=g), num_nodes=n)
q, k, v = (torch.randn(1, 1, n, 16, generator=g, requires_grad=True) for _ in range(3))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = tiled_attention(AttentionCall.build(q, k, v, mask=mask), tile_q=512, tile_k=512)
out.sum().backward()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024, bool(torch.isfinite(q.grad).all()))
"""


@pytest.mark.slow
def test_large_sparse_graph_runs_without_an_n_by_n_allocation():
    """N = 20 000 nodes, 100 000 random edges, forward and backward on the tiled kernel, in a fresh process.

    An ``(N, N)`` bool mask would take 400 MB and a float32 score plane 1.6 GB; the process's peak
    resident memory (``ru_maxrss``) may grow by at most 100 MB during the call.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, "20000", "100000"], capture_output=True, text=True,
                         env=env, timeout=600, check=True)
    grown, finite = res.stdout.split()
    assert finite == "True"
    assert int(grown) < 100 * 2**20, f"peak RSS grew by {int(grown) / 2**20:.0f} MB"


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="edge_index"):
        M.graph(torch.zeros(3, 4, dtype=torch.long), num_nodes=5)
    with pytest.raises(TypeError, match="edge_index"):
        M.graph(torch.zeros(2, 4), num_nodes=5)
    with pytest.raises(ValueError, match="outside"):
        M.graph(torch.tensor([[0], [5]]), num_nodes=5)
    with pytest.raises(ValueError, match="num_nodes"):
        M.graph(torch.tensor([[0], [1]]), num_nodes=0)
    with pytest.raises(ValueError, match="flow"):
        M.graph(torch.tensor([[0], [1]]), num_nodes=3, flow="up")
    with pytest.raises(ValueError, match="self_loops"):
        M.graph(torch.tensor([[0], [1]]), num_nodes=(2, 3))
    q = torch.randn(1, 1, 6, 4)
    with pytest.raises(ValueError, match="graph"):  # 5 nodes, 6 queries
        qkv.attend(q, q, q, mask=M.graph(torch.tensor([[0], [1]]), num_nodes=5))


@pytest.mark.slow
def test_flex_compiled_graph_mask_matches_naive(monkeypatch):
    """FlexAttention itself (compiled, CPU, forward) with the binary-search mask_mod equals the dense mask."""
    monkeypatch.setenv("QKV_FLEX", "1")
    n = 256
    ei = _random_graph(n, 1500, seed=4)
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 2, n, 16, generator=g) for _ in range(3))
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = qkv.attend(q, k, v, mask=M.graph(ei, num_nodes=n), backend="flex").output
    assert not [w for w in caught if "FlexAttention failed" in str(w.message)]
    b = qkv.attend(q, k, v, mask=_dense(ei, n, n, self_loops=True), backend="naive").output
    torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
