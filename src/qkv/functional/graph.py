"""Graph masks: self-attention over graph nodes, restricted to the edges of a graph.

Shape legend: ``N`` nodes (``Nq`` query/target nodes, ``Nk`` key/source nodes; ``Nq = Nk = N`` for a
graph's self-attention), ``E`` edges, ``nnz`` distinct allowed (query, key) pairs, ``Tq``/``Tk`` a tile.

Seed 003 (Lee's lecture, self-attention on graphs): a node attends only to the nodes it is connected
to. This is the masked attention of Graph Attention Networks (Veličković et al. 2018, eq. 2–3: the
softmax runs over the neighbourhood :math:`\\mathcal{N}_i`, which includes :math:`i` itself) and of
graph Transformers. The mask is built from an edge list and stored as CSR rows (one row per query
node, the allowed key nodes sorted), so its size is ``O(N + E)``:

* :meth:`Graph.tile` builds one ``(Tq, Tk)`` tile from the edges of the tile's query rows; the tiled
  kernel never builds anything ``(N, N)`` (the naive kernel asks for the whole plane);
* :meth:`Graph.kv_bounds` gives the key range of a block of query rows (tight when nodes are numbered
  so that neighbours are close, e.g. meshes, grids, or a graph after a bandwidth-reducing ordering);
* :meth:`Graph.flex` is a FlexAttention ``mask_mod``. It reads a bit-packed adjacency (``Nq * Nk / 8``
  bytes: 50 MB for 20 000 nodes; FlexAttention's own block mask is ``(N / 128)²``) up to
  :attr:`Graph.flex_bitmap_max_bytes`; beyond that it looks the pair up by a binary search in the CSR
  row, unrolled ``ceil(log2(max_degree + 1))`` times into elementwise ops (``O(E)`` memory). Both are
  exact; on CPU, inductor compiles the bitmap form in about a minute but the binary search took longer
  than 15 minutes (torch 2.13), so the bitmap is the default wherever it fits.

Direction follows PyTorch Geometric's default ``flow="source_to_target"``: an edge ``(u, v)`` (column
of ``edge_index``) carries a message from ``u`` to ``v``, so **node v may attend to node u**.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from qkv.functional.lazy import FlexFn
from qkv.functional.masks import Mask

__all__ = ["FLOWS", "Graph"]

_WORD = 32  # bits per word of the packed adjacency (int32 words)

FLOWS = ("source_to_target", "target_to_source")


def _check_num_nodes(num_nodes: object) -> tuple[int, int]:
    pair = num_nodes if isinstance(num_nodes, tuple) else (num_nodes, num_nodes)
    ok = len(pair) == 2 and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in pair)
    if not ok:
        raise ValueError(f"graph: num_nodes must be a positive int or a pair (Nq, Nk) of them, got {num_nodes!r}")
    return pair


class Graph(Mask):
    """Node ``i`` (a query) may attend to node ``j`` (a key) iff the graph has an edge ``j -> i``.

    Args:
        edge_index: ``(2, E)`` integer tensor, one edge per column, ``(source, target)`` (PyTorch
            Geometric's layout); repeated edges count once.
        num_nodes: ``N`` (self-attention over the nodes) or ``(Nq, Nk)`` for a bipartite graph (targets
            are queries, sources are keys).
        self_loops: also let every node attend to itself (GAT's :math:`i \\in \\mathcal{N}_i`);
            only for ``Nq = Nk``.
        flow: ``"source_to_target"`` (default; the target ``v`` of an edge ``(u, v)`` attends to the
            source ``u``) or ``"target_to_source"`` (the first row is the query, the second the key).

    Attributes:
        flex_bitmap_max_bytes: the largest packed adjacency :meth:`flex` builds (class attribute, 256 MiB).
        num_queries, num_keys: ``Nq``, ``Nk``.
        ptr: ``(Nq + 1,)`` CSR row pointers; the keys of query ``i`` are ``cols[ptr[i]:ptr[i + 1]]``.
        rows, cols: ``(nnz,)`` the allowed ``(query, key)`` pairs, sorted by query then key.
    """

    flex_bitmap_max_bytes: int = 256 * 2**20

    def __init__(
        self, edge_index: Tensor, *, num_nodes: int | tuple[int, int], self_loops: bool = True,
        flow: str = "source_to_target",
    ) -> None:
        nq, nk = _check_num_nodes(num_nodes)
        if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.shape[0] != 2:
            got = tuple(edge_index.shape) if isinstance(edge_index, Tensor) else type(edge_index).__name__
            raise ValueError(f"graph: edge_index must be a (2, E) tensor, got {got}")
        if edge_index.dtype.is_floating_point or edge_index.dtype == torch.bool or edge_index.is_complex():
            raise TypeError(f"graph: edge_index must be an integer tensor, got dtype {edge_index.dtype}")
        if not isinstance(self_loops, bool):
            raise TypeError(f"graph: self_loops must be a bool, got {type(self_loops).__name__} {self_loops!r}")
        if flow not in FLOWS:
            raise ValueError(f"graph: flow must be one of {FLOWS}, got {flow!r}")
        if self_loops and nq != nk:
            raise ValueError(f"graph: self_loops needs num_nodes Nq = Nk, got {(nq, nk)}")
        edges = edge_index.detach().to("cpu", torch.long)
        key, query = (edges[0], edges[1]) if flow == "source_to_target" else (edges[1], edges[0])
        for name, idx, n in (("query", query, nq), ("key", key, nk)):
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
                raise ValueError(
                    f"graph: edge_index has {name} node ids in [{int(idx.min())}, {int(idx.max())}], "
                    f"outside [0, {n}) (num_nodes={num_nodes!r}, flow={flow!r})"
                )
        if self_loops:
            loop = torch.arange(nq)
            query, key = torch.cat([query, loop]), torch.cat([key, loop])
        codes = torch.unique(query * nk + key)  # sorted and distinct: by query, then key
        self.num_queries, self.num_keys = nq, nk
        self.self_loops, self.flow = self_loops, flow
        self.rows, self.cols = codes // nk, codes % nk  # (nnz,), (nnz,)
        degree = torch.bincount(self.rows, minlength=nq)  # (Nq,)
        self.ptr = torch.zeros(nq + 1, dtype=torch.long)
        self.ptr[1:] = torch.cumsum(degree, 0)
        self.max_degree = int(degree.max()) if nq else 0
        # per query row, the smallest and largest allowed key (nk / -1 on an empty row): kv_bounds
        self._row_lo = torch.full((nq,), nk, dtype=torch.long).scatter_reduce(0, self.rows, self.cols, "amin")
        self._row_hi = torch.full((nq,), -1, dtype=torch.long).scatter_reduce(0, self.rows, self.cols, "amax")
        self._device_copies: dict[torch.device, tuple[Tensor, Tensor, Tensor]] = {}

    @property
    def num_edges(self) -> int:
        """The number of distinct allowed ``(query, key)`` pairs, self-loops included."""
        return self.cols.numel()

    def degrees(self) -> Tensor:
        """``(Nq,)`` the number of keys each query may attend to (its in-degree, self-loop included)."""
        return self.ptr[1:] - self.ptr[:-1]

    def _on(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """``(ptr, rows, cols)`` on ``device``, copied once per device."""
        if device.type == "cpu":
            return self.ptr, self.rows, self.cols
        if device not in self._device_copies:
            self._device_copies[device] = (self.ptr.to(device), self.rows.to(device), self.cols.to(device))
        return self._device_copies[device]

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        _, rows, cols = self._on(device)
        start, end = int(self.ptr[q0]), int(self.ptr[q1])  # the edges of query rows [q0, q1)
        r, c = rows[start:end], cols[start:end]  # (e,), (e,)
        inside = (c >= k0) & (c < k1)
        out = torch.zeros(q1 - q0, k1 - k0, dtype=torch.bool, device=device)  # (Tq, Tk)
        out[r[inside] - q0, c[inside] - k0] = True
        return out

    def kv_bounds(self, q0, q1, *, L, S):
        if q1 <= q0:
            return 0, 0
        lo, hi = int(self._row_lo[q0:q1].min()), int(self._row_hi[q0:q1].max()) + 1
        return (lo, hi) if hi > lo else (0, 0)

    def depends(self) -> tuple[bool, bool]:
        return False, False

    def bitmap(self) -> Tensor:
        """The adjacency packed into ``(Nq, ceil(Nk / 32))`` int32 words: pair ``(i, j)`` is bit ``j % 32`` of word
        ``[i, j // 32]``."""
        words = -(-self.num_keys // _WORD)
        packed = torch.zeros(self.num_queries * words, dtype=torch.long)
        bits = torch.ones_like(self.cols) << (self.cols % _WORD)  # (nnz,): distinct pairs, so a sum is an "or"
        packed.index_add_(0, self.rows * words + self.cols // _WORD, bits)
        packed = torch.where(packed >= 2**31, packed - 2**32, packed)  # two's complement into int32
        return packed.to(torch.int32).view(self.num_queries, words)  # (Nq, W)

    def flex(self, *, B, H, L, S, device) -> FlexFn:
        ptr, _, cols = self._on(device)
        nnz = cols.numel()
        if nnz == 0:
            return lambda b, h, q, kv: kv < 0  # no edge at all
        if self.num_queries * -(-self.num_keys // _WORD) * 4 <= self.flex_bitmap_max_bytes:
            packed = self.bitmap().to(device)  # (Nq, W)
            return lambda b, h, q, kv: ((packed[q, kv // _WORD] >> (kv % _WORD)) & 1) == 1
        steps = max(1, math.ceil(math.log2(self.max_degree + 1)))

        def mask_mod(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
            # lower bound of kv in cols[ptr[q]:ptr[q+1]], a binary search unrolled into elementwise ops
            lo, end = ptr[q], ptr[q + 1]
            hi = end
            for _ in range(steps):
                mid = (lo + hi) // 2
                less = cols[mid.clamp(max=nnz - 1)] < kv
                active = lo < hi
                lo = torch.where(active & less, mid + 1, lo)
                hi = torch.where(active & ~less, mid, hi)
            return (lo < end) & (cols[lo.clamp(max=nnz - 1)] == kv)

        return mask_mod

    def shape(self, L, S, *, device):
        return (self.num_queries, self.num_keys)

    def __repr__(self) -> str:
        return (f"graph(num_nodes={(self.num_queries, self.num_keys)}, pairs={self.num_edges}, "
                f"self_loops={self.self_loops}, flow={self.flow!r})")
