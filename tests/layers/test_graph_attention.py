"""GraphAttention (GAT, Veličković et al. 2018): a transcription of eq. 1–6, every path equal, attend's weights,
and PyTorch Geometric's ``GATConv`` with copied weights (forward and gradients)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import torch_geometric  # a declared test dependency (the "test" extra): no skip
from torch_geometric.nn import GATConv

import qkv
from qkv.functional.attention import attend
from qkv.functional.graph_attention import GATScore, edge_attention
from qkv.layers import GraphAttention

N, F, C, H = 13, 6, 4, 3


def _graph(n: int = N, edges: int = 40, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (2, edges), generator=g)  # (2, E), repeats and self-loops possible


def _x(n: int = N, width: int = F, seed: int = 1, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(1, n, width, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _layer(**kw) -> GraphAttention:
    torch.manual_seed(0)
    layer = GraphAttention(F, C, H, **kw).double()
    with torch.no_grad():  # a non-zero bias, so that it is compared too
        if layer.bias is not None:
            layer.bias.normal_()
    return layer


def _paper(layer: GraphAttention, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    """Eq. 1–6 written out node by node: e_ij = LeakyReLU(a^T [W h_i || W h_j]) over N_i ∪ {i}."""
    wh = layer.lin(x[0]).view(N, H, C)  # (N, H, C)
    neighbours = [{i} for i in range(N)]
    for u, v in edge_index.t().tolist():
        neighbours[v].add(u)  # u -> v: v attends to u
    rows = []
    for i in range(N):
        js = sorted(neighbours[i])
        heads = []
        for h in range(H):
            a = torch.cat([layer.att_dst[h], layer.att_src[h]])  # a = [a_dst; a_src] (2C,)
            e = torch.stack([torch.nn.functional.leaky_relu(a @ torch.cat([wh[i, h], wh[j, h]]), 0.2) for j in js])
            alpha = torch.softmax(e, 0)
            heads.append(sum(alpha[n] * wh[j, h] for n, j in enumerate(js)))
        rows.append(torch.cat(heads) if layer.concat else torch.stack(heads).mean(0))
    out = torch.stack(rows)
    return (out + layer.bias if layer.bias is not None else out).unsqueeze(0)


@pytest.mark.parametrize("concat", [True, False])
def test_matches_the_papers_equations(concat):
    layer, x, ei = _layer(concat=concat), _x(), _graph()
    out = layer(x, mask=qkv.masks.graph(ei, num_nodes=N)).output
    torch.testing.assert_close(out, _paper(layer, x, ei))


@pytest.mark.parametrize("concat", [True, False])
def test_every_path_gives_the_same_output_and_gradients(concat):
    ei, mask = _graph(), qkv.masks.graph(_graph(), num_nodes=N)
    assert ei.shape[1] > 0
    results = {}
    for backend in ("auto", "edges", "naive", "tiled"):
        layer = _layer(concat=concat, backend=backend)
        x = _x().requires_grad_()
        out = layer(x, mask=mask).output
        out.pow(2).sum().backward()
        results[backend] = (out, x.grad, *(p.grad for p in layer.parameters()))
    for backend in ("edges", "naive", "tiled"):
        for got, want in zip(results[backend], results["auto"], strict=True):
            torch.testing.assert_close(got, want)


def test_weights_are_attends_weights_and_edge_weights_match():
    layer, x = _layer(), _x()
    mask = qkv.masks.graph(_graph(), num_nodes=N)
    out = layer(x, mask=mask, return_weights=True)
    q, k, v = layer.project(x)
    ref = attend(q, k, v, score=GATScore(negative_slope=0.2), mask=mask, return_weights=True)
    torch.testing.assert_close(out.weights, ref.weights)
    assert out.weights.shape == (1, H, N, N)
    edge = layer.edge_weights(x, mask=mask)  # (1, H, nnz)
    torch.testing.assert_close(edge, out.weights[..., mask.rows, mask.cols])
    dense = torch.zeros_like(out.weights)
    dense[..., mask.rows, mask.cols] = edge
    torch.testing.assert_close(dense, out.weights)  # nothing outside the edges
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(1, H, N, dtype=torch.float64))


def test_edge_attention_empty_rows_are_zero_with_zero_gradients():
    ei = torch.tensor([[0, 1], [1, 2]])  # node 0 has no incoming edge and no self-loop
    mask = qkv.masks.graph(ei, num_nodes=3, self_loops=False)
    q, k, v = (torch.randn(2, 3, w, dtype=torch.float64, requires_grad=True) for w in (1, 1, 5))
    out, alpha = edge_attention(q, k, v, mask)
    ref = attend(q, k, v, score=GATScore(), mask=mask)
    torch.testing.assert_close(out, ref.output)
    assert torch.all(out[:, 0] == 0) and alpha.shape == (2, mask.num_edges)
    out[:, 0].sum().backward()
    assert all(torch.all(t.grad == 0) for t in (q, k, v))


def test_dropout_only_in_training_and_the_options_are_checked():
    layer, x = _layer(dropout=0.5, input_dropout=0.5), _x()
    mask = qkv.masks.graph(_graph(), num_nodes=N)
    torch.manual_seed(3)
    a = layer(x, mask=mask).output
    assert not torch.allclose(a, layer(x, mask=mask).output)  # training: dropout on inputs and coefficients
    layer.eval()
    torch.testing.assert_close(layer(x, mask=mask).output, layer(x, mask=mask).output)
    with pytest.raises(ValueError, match="backend"):
        GraphAttention(F, C, backend="sparse")
    with pytest.raises(ValueError, match="input_dropout"):
        GraphAttention(F, C, input_dropout=1.5)
    with pytest.raises(ValueError, match="negative_slope"):
        GraphAttention(F, C, negative_slope=-1.0)
    with pytest.raises(ValueError, match="edges"):
        GraphAttention(F, C, backend="edges")(x.float(), mask=torch.ones(N, N, dtype=torch.bool))
    with pytest.raises(ValueError, match="edge_attention"):
        edge_attention(torch.zeros(N + 1, 1), torch.zeros(N + 1, 1), torch.zeros(N + 1, 2), mask)
    for backend in ("auto", "naive"):  # a graph over other nodes than the input's: the layer names the mask
        with pytest.raises(ValueError, match=rf"mask: a graph over \(Nq, Nk\) = \({N - 1}, {N - 1}\) nodes, but "
                                             rf"query has {N} nodes"):
            GraphAttention(F, C, backend=backend)(x.float(), mask=qkv.masks.graph(_graph() % (N - 1), num_nodes=N - 1))


# ---- PyTorch Geometric's GATConv with copied weights


def _pyg_pair(concat: bool, bias: bool, bipartite: bool = False):
    torch.manual_seed(0)
    key_dim = F + 1 if bipartite else None
    ours = GraphAttention(F, C, H, concat=concat, bias=bias, key_dim=key_dim).double()
    peer = GATConv((key_dim, F) if bipartite else F, C, heads=H, concat=concat, bias=bias,
                   add_self_loops=not bipartite).double()
    with torch.no_grad():
        if bias:
            ours.bias.normal_()
        if bipartite:
            peer.lin_dst.weight.copy_(ours.lin.weight)
            peer.lin_src.weight.copy_(ours.lin_src.weight)
        else:
            peer.lin.weight.copy_(ours.lin.weight)
        peer.att_src.copy_(ours.att_src.unsqueeze(0))  # (1, H, C)
        peer.att_dst.copy_(ours.att_dst.unsqueeze(0))
        if bias:
            peer.bias.copy_(ours.bias)
    return ours, peer


@pytest.mark.parametrize("concat", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_torch_geometric_gatconv(concat, bias):
    ours, peer = _pyg_pair(concat, bias)
    ei = _graph(edges=50, seed=4)
    ei = ei[:, ei[0] != ei[1]]  # GATConv(add_self_loops=True) drops given self-loops and adds one per node
    ei = torch.unique(ei, dim=1)  # GATConv counts a repeated edge twice; a qkv graph, once
    x1 = _x().requires_grad_()
    x2 = x1.detach()[0].clone().requires_grad_()
    out = ours(x1, mask=qkv.masks.graph(ei, num_nodes=N)).output  # (1, N, ·)
    ref = peer(x2, ei)  # (N, ·)
    torch.testing.assert_close(out[0], ref)
    g = torch.randn_like(ref)
    out[0].backward(g)
    ref.backward(g)
    torch.testing.assert_close(x1.grad[0], x2.grad)
    torch.testing.assert_close(ours.lin.weight.grad, peer.lin.weight.grad)
    torch.testing.assert_close(ours.att_src.grad, peer.att_src.grad[0])
    torch.testing.assert_close(ours.att_dst.grad, peer.att_dst.grad[0])
    if bias:
        torch.testing.assert_close(ours.bias.grad, peer.bias.grad)


def test_matches_torch_geometric_bipartite():
    ours, peer = _pyg_pair(True, True, bipartite=True)
    n_src = 9
    g = torch.Generator().manual_seed(5)
    ei = torch.stack([torch.randint(0, n_src, (30,), generator=g), torch.randint(0, N, (30,), generator=g)])
    x_dst, x_src = _x(), _x(n_src, F + 1, seed=6)
    ei = torch.unique(ei, dim=1)
    mask = qkv.masks.graph(ei, num_nodes=(N, n_src), self_loops=False)
    for backend in ("edges", "naive"):
        ours.backend = backend
        out = ours(x_dst, x_src, mask=mask).output
        torch.testing.assert_close(out[0], peer((x_src[0], x_dst[0]), ei))


def test_runtime_code_never_imports_torch_geometric():
    assert torch_geometric.__version__
    src = Path(qkv.__file__).parent
    for path in src.rglob("*.py"):
        text = path.read_text()
        if "torch_geometric" not in text:
            continue
        for node in ast.walk(ast.parse(text, str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "torch_geometric" for n in names), path
