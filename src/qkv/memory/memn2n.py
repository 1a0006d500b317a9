"""End-to-end memory networks, MemN2N (Sukhbaatar, Szlam, Weston and Fergus 2015, "End-To-End Memory Networks").

Shape legend: ``B`` questions, ``S`` memory slots (statements, oldest first, padded at the end), ``J``
words per statement, ``Jq`` words per question, ``d`` embedding width, ``V`` vocabulary, ``K`` hops.

A story's statements ``x_i`` are written into memory twice per hop, as input vectors
:math:`m_i = \\sum_j l_j \\odot A x_{ij} + T_A(i)` and output vectors
:math:`c_i = \\sum_j l_j \\odot C x_{ij} + T_C(i)` (§2.1, §4.1); the question is embedded as
:math:`u = \\sum_j l_j \\odot B q_j`. Each hop reads the memory with attention (eq. 1-2),

.. math::  p_i = \\mathrm{softmax}_i(u^\\top m_i), \\qquad o = \\sum_i p_i c_i,

which is exactly ``attend(u, m, c, score="dot", mask=memory_mask, normalize="softmax")``
(:func:`qkv.attend` with the query ``u`` as a length-1 sequence, ``(B, 1, d)``; ``tests/memory/test_memn2n.py``
checks the identity), and the controller state moves on, :math:`u^{k+1} = u^k + o^k` (adjacent tying) or
:math:`u^{k+1} = H u^k + o^k` (layer-wise tying, §2.2). The answer is
:math:`\\hat a = \\mathrm{softmax}(W (o^K + u^K))` (eq. 3).

Options, as in the paper:

* ``encoding``: ``"bow"`` (:math:`l_j = 1`) or ``"position"`` (PE, §4.1:
  :math:`l_{kj} = (1 - j/J) - (k/d)(1 - 2j/J)`, ``J`` the sentence's number of words, ``j`` and ``k``
  1-based); the question uses the same encoding. ``position_scale`` multiplies these weights: the authors'
  MATLAB code (MemN2N-babi-matlab ``build_model.m``) uses :math:`1 + 4(k - (d+1)/2)(j - (J+1)/2)/(dJ)`
  with ``J`` the padded width, about twice the formula above; with the N(0, 0.1) initialisation that
  factor 2 decides whether linear start learns bAbI task 6 in its 20 epochs (see ``memn2n-babi``).
* ``temporal``: the learned time embeddings ``T_A``, ``T_C`` indexed by how recent a statement is
  (``i = 0`` the last before the question). Random noise (RN, §4.1) is :func:`temporal_noise`: time
  indices as if 10% empty memories had been inserted at random (training only).
* ``tying``: ``"adjacent"`` (:math:`A^{k+1} = C^k`, :math:`W^\\top = C^K`, :math:`B = A^1`, likewise for ``T``)
  or ``"layerwise"`` (:math:`A^1 = A^2 = \\dots`, :math:`C^1 = C^2 = \\dots`, with the linear map ``H``).
* ``empty_memories`` (not in the paper; the authors' code): the memory always has ``memory_size`` slots (the
  authors: the longest training story, at most 50), and the slots a story leaves empty hold the nil word, whose
  embeddings are zero. So they take part in every hop's softmax as zero vectors (score :math:`u^\\top 0 = 0`,
  read 0): a hop can put its attention on "nothing", and its read shrinks when no statement matches. With
  ``empty_memories=True`` the read is ``attend(u, m', c', score="dot", mask=None)`` over the story's slots
  (those off ``memory_mask`` zeroed: they count as empty, they are not removed) followed by
  ``memory_size - S`` zero slots. Measured in ``memn2n-babi``.
* linear start (LS, §4.2): ``forward(..., linear=True)`` removes the softmax of every hop, i.e. the read is
  ``attend(u, m, c, score="dot", mask=memory_mask, normalize=Custom(identity))`` with
  :math:`p_i = u^\\top m_i` (masked slots 0); the caller reinserts it when the validation loss stops falling.

Statements are bags of words summed with :func:`torch.nn.functional.embedding_bag` (PE as two weighted
bags: :math:`l_{kj} = a_j + (k/d) b_j` with :math:`a_j = 1 - j/J`, :math:`b_j = 2j/J - 1`), so a whole
batch is a few tensor operations. Word id 0 is the nil word (padding), embedded as zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.functional.attention import attend
from qkv.functional.normalize import Custom

__all__ = ["MemN2N", "MemN2NOutput", "position_encoding", "temporal_noise"]


def _identity(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Linear start: the scores themselves are the weights (the softmax removed)."""
    return scores


_DENSE_VOCAB = 4096  # up to this vocabulary, bags are a count matrix times the tables (fastest on a CPU)

#: The normaliser of linear start (LS): no normalisation; masked slots get weight 0.
LINEAR = Custom(_identity)


def position_encoding(lengths: Tensor, width: int, dim: int) -> Tensor:
    """The PE weights :math:`l_{kj} = (1 - j/J) - (k/d)(1 - 2j/J)` of §4.1, zero past each sentence's end.

    Args:
        lengths: ``(...)`` number of words ``J`` of each sentence.
        width: the padded sentence width (``j = 1..width``).
        dim: the embedding width ``d`` (``k = 1..d``).

    Returns:
        ``(..., width, dim)``.
    """
    j = torch.arange(1, width + 1, dtype=torch.float32, device=lengths.device)  # (width,)
    k = torch.arange(1, dim + 1, dtype=torch.float32, device=lengths.device)  # (dim,)
    J = lengths.clamp_min(1).to(torch.float32)[..., None, None]  # (..., 1, 1)
    jj = j[:, None]  # (width, 1)
    pe = (1 - jj / J) - (k / dim) * (1 - 2 * jj / J)  # (..., width, dim)
    return pe * (jj <= lengths[..., None, None]).to(pe.dtype)


def temporal_noise(memory_mask: Tensor, *, fraction: float = 0.1, size: int | None = None,
                   generator: torch.Generator | None = None) -> Tensor:
    """Time indices with random noise (RN, §4.1): as if up to ``fraction`` empty memories were inserted.

    For a story of ``n`` statements, ``z ~ U{0..ceil(fraction n)}`` empty slots join it at random places;
    the statements keep their order and take the time indices (0 = most recent) of their new places.
    The empty slots themselves are not read.

    Args:
        memory_mask: ``(B, S)`` True on real statements, left-aligned.
        fraction: the most empty memories added, as a fraction of the story.
        size: indices are clamped to ``size - 1`` (the time tables' length).
        generator: the random source (default: the global one).

    Returns:
        ``(B, S)`` long time indices (0 on padding).
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    B, S = memory_mask.shape
    device = memory_mask.device
    n = memory_mask.sum(-1)  # (B,)
    extra = torch.ceil(n.to(torch.float32) * fraction).long()  # (B,)
    z = (torch.rand(B, generator=generator).to(device) * (extra + 1).to(torch.float32)).long()  # (B,) 0..extra
    slots = S + math.ceil(S * fraction)
    total = (n + z)[:, None]  # (B, 1)
    r = torch.rand(B, slots, generator=generator).to(device)  # (B, slots)
    pos = torch.arange(slots, device=device)
    r = torch.where(pos[None] < total, r, torch.full_like(r, 2.0))
    chosen = r.argsort(-1)[:, :S]  # (B, S): n random places among the n + z, then others
    keep = torch.arange(S, device=device)[None] < n[:, None]  # (B, S)
    chosen = torch.where(keep, chosen, torch.full_like(chosen, slots)).sort(-1).values  # (B, S) ascending
    back = (n[:, None] - 1 - torch.arange(S, device=device)[None]).clamp_min(0)  # statement s -> rank n-1-s
    time = chosen.gather(-1, back) * keep  # (B, S)
    return time if size is None else time.clamp_max(size - 1)


@dataclass(frozen=True)
class MemN2NOutput:
    """What :meth:`MemN2N.forward` returns.

    Attributes:
        logits: ``(B, V)`` answer scores :math:`W(o^K + u^K)` (the softmax is the loss's).
        weights: ``(B, K, S)`` each hop's attention over the story's statements (0 on padding; with
            ``empty_memories`` the rest, ``1 - sum``, went to the empty slots).
        state: ``(B, d)`` the final controller state :math:`o^K + u^K`.
    """

    logits: Tensor
    weights: Tensor
    state: Tensor


class MemN2N(nn.Module):
    """The end-to-end memory network of Sukhbaatar et al. 2015 (see the module docstring).

    Args:
        vocab_size: ``V`` (word id 0 is the nil word).
        embed_dim: ``d``.
        hops: ``K``, 1 to 3 in the paper (any K >= 1 works).
        memory_size: the most statements in memory (the time tables' length); the paper uses 50.
        encoding: ``"position"`` (PE) or ``"bow"``.
        temporal: learn the time embeddings ``T_A``, ``T_C``.
        tying: ``"adjacent"`` or ``"layerwise"``.
        init_std: the Gaussian initialisation's standard deviation (0.1 in the paper).
        position_scale: a factor on the PE weights :math:`l_{kj}` (1: the paper's formula; the authors'
            code is about 2, see the module docstring). Unused with ``encoding="bow"``.
        empty_memories: the slots up to ``memory_size`` that the story leaves empty are attended as zero
            vectors, as in the authors' code (see the module docstring); False: they are masked out.
    """

    def __init__(self, vocab_size: int, *, embed_dim: int = 20, hops: int = 3, memory_size: int = 50,
                 encoding: Literal["position", "bow"] = "position", temporal: bool = True,
                 tying: Literal["adjacent", "layerwise"] = "adjacent", init_std: float = 0.1,
                 position_scale: float = 1.0, empty_memories: bool = False) -> None:
        super().__init__()
        for name, value, low in (("vocab_size", vocab_size, 2), ("embed_dim", embed_dim, 1), ("hops", hops, 1),
                                 ("memory_size", memory_size, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"MemN2N: {name} must be an int >= {low}, got {value!r}")
        if encoding not in ("position", "bow"):
            raise ValueError(f"MemN2N: encoding must be 'position' or 'bow', got {encoding!r}")
        if tying not in ("adjacent", "layerwise"):
            raise ValueError(f"MemN2N: tying must be 'adjacent' or 'layerwise', got {tying!r}")
        if not isinstance(temporal, bool):
            raise TypeError(f"MemN2N: temporal must be a bool, got {type(temporal).__name__}")
        if not init_std > 0:
            raise ValueError(f"MemN2N: init_std must be > 0, got {init_std!r}")
        if not (isinstance(position_scale, (int, float)) and math.isfinite(position_scale) and position_scale > 0):
            raise ValueError(f"MemN2N: position_scale must be a finite number > 0, got {position_scale!r}")
        if not isinstance(empty_memories, bool):
            raise TypeError(f"MemN2N: empty_memories must be a bool, got {type(empty_memories).__name__}")
        self.position_scale, self.empty_memories = float(position_scale), empty_memories
        self.vocab_size, self.embed_dim, self.hops, self.memory_size = vocab_size, embed_dim, hops, memory_size
        self.encoding, self.temporal, self.tying = encoding, temporal, tying
        # Adjacent: tables E_0..E_K with A^k = E_{k-1}, C^k = E_k, B = E_0, W = E_K^T.
        # Layer-wise: tables A, C (shared by every hop), B and the maps H and W.
        n_tables = hops + 1 if tying == "adjacent" else 2
        self.word = nn.ParameterList(nn.Parameter(torch.empty(vocab_size, embed_dim)) for _ in range(n_tables))
        self.time = nn.ParameterList(nn.Parameter(torch.empty(memory_size, embed_dim)) for _ in range(n_tables)) \
            if temporal else None
        if tying == "layerwise":
            self.query_word = nn.Parameter(torch.empty(vocab_size, embed_dim))
            self.H = nn.Linear(embed_dim, embed_dim, bias=False)
            self.W = nn.Linear(embed_dim, vocab_size, bias=False)
        self.init_std = init_std
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight from :math:`N(0, \\sigma^2)`, σ = ``init_std`` (§4.2); the nil word's rows zero."""
        with torch.no_grad():
            for p in self.parameters():
                p.normal_(0.0, self.init_std)
            for table in self._word_tables():
                table[0].zero_()

    def _word_tables(self) -> list[Tensor]:
        tables = list(self.word)
        if self.tying == "layerwise":
            tables.append(self.query_word)
        return tables

    # -- the embeddings ----------------------------------------------------------------------------------
    def _bag_weights(self, words: Tensor) -> tuple[Tensor, Tensor | None]:
        """Per-word weights ``a (N, J)`` and ``b (N, J)`` with :math:`l_{kj} = a_j + (k/d) b_j` (``b`` None for BoW).

        PE's weights include the factor ``position_scale``.
        """
        real = words != 0
        if self.encoding == "bow":
            return real.to(torch.float32), None
        J = real.sum(-1, keepdim=True).clamp_min(1).to(torch.float32)  # (N, 1)
        j = torch.arange(1, words.shape[-1] + 1, device=words.device, dtype=torch.float32)  # (J,)
        c = self.position_scale
        return c * (1 - j / J) * real, c * (2 * j / J - 1) * real

    def _embed(self, tables: list[Tensor], words: Tensor) -> list[Tensor]:
        """:math:`\\sum_j l_j \\odot E x_j` for each table ``E`` and ``words (..., J)`` -> a list of ``(..., d)``.

        The bags are sums over word ids: with a small vocabulary a weighted count matrix ``(N, V)`` times
        the tables side by side ``(V, n d)`` (one matmul for every table), else ``embedding_bag``.
        """
        lead, d = words.shape[:-1], self.embed_dim
        flat = words.reshape(-1, words.shape[-1])  # (N, J)
        a, b = (w.reshape(flat.shape) if w is not None else None for w in self._bag_weights(flat))  # (N, J)
        k = torch.arange(1, d + 1, device=flat.device, dtype=tables[0].dtype) / d  # (d,)
        if self.vocab_size <= _DENSE_VOCAB:
            table = torch.cat(tables, dim=1)  # (V, n d)
            counts = torch.zeros(flat.shape[0], self.vocab_size, dtype=table.dtype, device=flat.device)  # (N, V)
            out = counts.scatter_add(1, flat, a.to(table.dtype)) @ table  # (N, n d)
            if b is not None:
                kn = k.repeat(len(tables))  # (n d,)
                out = out + kn * (counts.scatter_add(1, flat, b.to(table.dtype)) @ table)
            return [o.reshape(*lead, d) for o in out.split(d, dim=1)]  # n x (..., d)
        outs = []
        for table in tables:
            o = F.embedding_bag(flat, table, per_sample_weights=a.to(table.dtype), mode="sum", padding_idx=0)
            if b is not None:
                o = o + k * F.embedding_bag(flat, table, per_sample_weights=b.to(table.dtype), mode="sum",
                                            padding_idx=0)
            outs.append(o.reshape(*lead, d))  # (..., d)
        return outs

    def embed_query(self, query: Tensor) -> Tensor:
        """:math:`u^1 = \\sum_j l_j \\odot B q_j`, ``(B, Jq)`` -> ``(B, d)``."""
        table = self.word[0] if self.tying == "adjacent" else self.query_word
        return self._embed([table], query)[0]

    def memories(self, story: Tensor, time: Tensor | None = None) -> list[Tensor]:
        """The memory vectors ``(B, S, d)`` of every table: adjacent ``[E_0 x, ..., E_K x]``, layer-wise ``[A x, C x]``.

        Time embeddings are added when ``temporal`` (``time (B, S)``, default :meth:`default_time`).
        """
        mask = (story != 0).any(-1)
        out = self._embed(list(self.word), story)
        if self.time is not None:
            t = self.default_time(mask) if time is None else time.clamp(0, self.memory_size - 1)
            out = [m + T[t] for m, T in zip(out, self.time, strict=True)]
        return out

    def default_time(self, memory_mask: Tensor) -> Tensor:
        """``(B, S)`` time indices: 0 for the most recent statement, counting back (0 on padding)."""
        n = memory_mask.sum(-1, keepdim=True)  # (B, 1)
        s = torch.arange(memory_mask.shape[-1], device=memory_mask.device)
        return ((n - 1 - s) * memory_mask).clamp(0, self.memory_size - 1)

    # -- the network -------------------------------------------------------------------------------------
    def forward(self, story: Tensor, query: Tensor, *, memory_mask: Tensor | None = None,
                time: Tensor | None = None, linear: bool = False) -> MemN2NOutput:
        """Answer ``query`` from ``story``.

        Args:
            story: ``(B, S, J)`` word ids of the statements, oldest first (0 = padding).
            query: ``(B, Jq)`` word ids of the question.
            memory_mask: ``(B, S)`` True on real statements (default: slots with a word); with ``empty_memories``
                the other slots are attended as empty (zero) slots instead of being left out.
            time: ``(B, S)`` time indices (default :meth:`default_time`; :func:`temporal_noise` for RN).
            linear: linear start, the hops without softmax.

        Returns:
            :class:`MemN2NOutput`: ``logits (B, V)``, per-hop ``weights (B, K, S)``, ``state (B, d)``.
        """
        if story.dim() != 3 or query.dim() != 2 or story.shape[0] != query.shape[0]:
            raise ValueError(f"MemN2N: story must be (B, S, J) and query (B, Jq), got {tuple(story.shape)} and "
                             f"{tuple(query.shape)}")
        if story.shape[1] > self.memory_size and (self.time is not None or self.empty_memories):
            raise ValueError(f"MemN2N: story has {story.shape[1]} slots, more than memory_size={self.memory_size}")
        mask = (story != 0).any(-1) if memory_mask is None else memory_mask
        if mask.shape != story.shape[:2]:
            raise ValueError(f"MemN2N: memory_mask must be {tuple(story.shape[:2])}, got {tuple(mask.shape)}")
        mems = self.memories(story, time)
        S = story.shape[1]
        read_mask: Tensor | None = mask[:, None, :]  # (B, 1, S)
        if self.empty_memories:  # zero the padding and append the empty slots: every slot is attended
            empty = mems[0].new_zeros(mask.shape[0], self.memory_size - S, self.embed_dim)  # (B, memory_size - S, d)
            mems = [torch.cat([m * mask[..., None], empty], 1) for m in mems]  # (B, memory_size, d)
            read_mask = None
        u = self.embed_query(query)  # (B, d)
        normalize = LINEAR if linear else "softmax"
        weights = []
        for hop in range(self.hops):
            m, c = (mems[hop], mems[hop + 1]) if self.tying == "adjacent" else (mems[0], mems[1])
            read = attend(u[:, None, :], m, c, score="dot", mask=read_mask, normalize=normalize,
                          return_weights=True)  # output (B, 1, d), weights (B, 1, S or memory_size)
            o = read.output[:, 0]  # (B, d)
            w = read.weights[:, 0, :S]  # (B, S)
            weights.append(w * mask if self.empty_memories else w)  # the story's statements only
            u = (self.H(u) if self.tying == "layerwise" else u) + o
        logits = u @ self.word[-1].t() if self.tying == "adjacent" else self.W(u)  # (B, V)
        return MemN2NOutput(logits, torch.stack(weights, 1), u)  # weights (B, K, S)
