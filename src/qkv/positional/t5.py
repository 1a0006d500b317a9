"""T5's bucketed relative-position bias (Raffel et al. 2020, §2.1), evaluated lazily.

Shape legend: ``H`` heads, ``L`` queries, ``S`` keys, ``N`` buckets, ``Tq``/``Tk`` a tile.

Each head learns one scalar per *bucket* of the relative position :math:`n = j - i` (key minus
query) and adds it to the score: :math:`b_{h,ij} = w_{h,\\,\\mathrm{bucket}(j - i)}`. Buckets are
exact for small distances and logarithmically wider up to ``max_distance``, beyond which all
distances share the last bucket (Raffel et al. 2020, §2.1: "32 embeddings ... whose ranges increase
in size logarithmically up to an offset of 128"). Bidirectional (encoder) bucketing spends half of
the buckets on keys after the query; causal (decoder) bucketing spends all of them on keys at or
before it, and maps keys after the query to bucket 0.

:func:`relative_position_bucket` follows the semantics of the T5 code's
``_relative_position_bucket`` (Mesh TensorFlow, and Hugging Face's port), including its float32
arithmetic, so that a table trained there indexes the same buckets here. The bias is a lazy
:class:`~qkv.functional.biases.Bias`: the tiled kernel asks for one ``(H, Tq, Tk)`` tile at a time
and never builds an ``(L, S)`` tensor; gradients reach the table through every kernel.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from qkv.functional.biases import Bias
from qkv.functional.checks import check_flag, check_positive_int
from qkv.functional.masks import align_offset, check_align, relative_position

__all__ = ["T5Bias", "T5RelativeBias", "relative_position_bucket", "t5"]


def _check_buckets(num_buckets: object, max_distance: object, bidirectional: object) -> tuple[int, int, bool]:
    bidi = check_flag("bidirectional", bidirectional)
    n = check_positive_int("num_buckets", num_buckets)
    half = n // 2 if bidi else n
    if half < 2:
        raise ValueError(f"num_buckets must be >= {4 if bidi else 2} (bidirectional={bidi}), got {n}")
    d = check_positive_int("max_distance", max_distance)
    if d <= half // 2:
        raise ValueError(f"max_distance must exceed the exact range num_buckets{'/4' if bidi else '/2'} "
                         f"= {half // 2}, got {d}")
    return n, d, bidi


def relative_position_bucket(
    relative_position: Tensor, *, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128
) -> Tensor:
    """T5's bucket of each relative position :math:`n = j - i` (key minus query); same shape, int64.

    With ``N' = N/2`` (bidirectional: keys after the query, ``n > 0``, use buckets ``N'..N-1``) or
    ``N' = N`` (causal: ``n > 0`` is clamped to 0), a distance :math:`d = |n|` (causal: :math:`\\max(-n, 0)`)
    below :math:`E = N'/2` is its own bucket; larger ones get
    :math:`\\min\\big(N'-1,\\ E + \\lfloor \\log(d/E) / \\log(\\mathrm{max\\_distance}/E)\\,(N' - E)\\rfloor\\big)`.
    """
    n_buckets, max_dist, bidi = _check_buckets(num_buckets, max_distance, bidirectional)
    n = relative_position.to(torch.long)
    if bidi:
        half = n_buckets // 2
        bucket = (n > 0).to(torch.long) * half
        dist = n.abs()
    else:
        half = n_buckets
        bucket = torch.zeros_like(n)
        dist = (-n).clamp(min=0)
    exact = half // 2
    # the T5 code's float32 log-spacing; distances below `exact` (log of 0 included) are discarded by the where
    log_ratio = torch.log(dist.to(torch.float32) / exact) / math.log(max_dist / exact)
    large = exact + (log_ratio * (half - exact)).to(torch.long)
    large = large.clamp(max=half - 1)
    return bucket + torch.where(dist < exact, dist, large)


class T5Bias(Bias):
    """:math:`b_{h,ij} = w_{h,\\,\\mathrm{bucket}(j - (i + \\mathrm{offset}))}`, shape ``(H, L, S)``.

    ``table`` is ``(H, N)`` (Hugging Face's ``relative_attention_bias.weight`` is its transpose);
    it may be an ``nn.Parameter``.
    """

    def __init__(
        self, table: Tensor, *, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128,
        align: str = "bottom_right",
    ) -> None:
        self.num_buckets, self.max_distance, self.bidirectional = _check_buckets(num_buckets, max_distance,
                                                                                  bidirectional)
        if not isinstance(table, Tensor) or table.dim() != 2 or table.shape[-1] != self.num_buckets:
            got = tuple(table.shape) if isinstance(table, Tensor) else type(table).__name__
            raise ValueError(f"t5: table must have shape (H, num_buckets) = (H, {self.num_buckets}), got {got}")
        if not table.dtype.is_floating_point:
            raise TypeError(f"t5: table must be a float tensor, got dtype {table.dtype}")
        self.table = table
        self.align = check_align("t5", align)

    def _bucket(self, n: Tensor) -> Tensor:
        return relative_position_bucket(n, bidirectional=self.bidirectional, num_buckets=self.num_buckets,
                                        max_distance=self.max_distance)

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        n = relative_position(q0, q1, k0, k1, align_offset(self.align, L, S), device)  # (Tq, Tk)
        return self.table.to(device)[:, self._bucket(n)]  # (H, Tq, Tk)

    def depends(self) -> tuple[bool, bool]:
        return False, self.table.shape[0] > 1

    def flex(self, *, B, H, L, S, device):
        off = align_offset(self.align, L, S)
        table = self.table.to(device).expand(H, -1).contiguous()  # (H, N): one row broadcasts over the heads
        return lambda b, h, q, kv: table[h, self._bucket(kv - (q + off))]

    def parameters(self) -> list[Tensor]:
        return [self.table] if self.table.requires_grad else []

    def shape(self, L, S, *, device):
        return (self.table.shape[0], L, S)

    def __repr__(self) -> str:
        return (f"t5(H={self.table.shape[0]}, num_buckets={self.num_buckets}, max_distance={self.max_distance}, "
                f"bidirectional={self.bidirectional})")


def t5(
    table: Tensor | int, *, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128,
    align: str = "bottom_right",
) -> T5Bias:
    """T5's relative-position bias as a lazy ``(H, L, S)`` bias.

    Args:
        table: ``(H, num_buckets)`` weights, or ``H`` (a zero-initialised ``nn.Parameter`` that no module
            owns — prefer :class:`T5RelativeBias`, which registers it).
        bidirectional: encoder bucketing (True) or causal decoder bucketing (False).
        num_buckets: ``N`` (32 in T5).
        max_distance: distances from here on share the last bucket (128 in T5).
        align: ``"bottom_right"`` (default; queries are the last ``L`` of ``S`` positions, so cached
            decoding sees the right distances) or ``"top_left"``, as in :func:`qkv.masks.causal`.
    """
    if not isinstance(table, Tensor):
        table = nn.Parameter(torch.zeros(check_positive_int("t5: num_heads (table)", table), num_buckets))
    return T5Bias(table, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance,
                  align=align)


class T5RelativeBias(nn.Module):
    """A module owning T5's bias table ``weight (H, N)``; calling it returns the lazy :class:`T5Bias`.

    Pass it as ``MultiHeadAttention(..., position_bias=T5RelativeBias(H))`` (one table per layer), or
    call it once and pass the result as ``bias=`` to every layer (T5 shares one table across layers).
    """

    def __init__(
        self, num_heads: int, *, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128,
        align: str = "bottom_right", device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.num_buckets, self.max_distance, self.bidirectional = _check_buckets(num_buckets, max_distance,
                                                                                  bidirectional)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.align = check_align("T5RelativeBias", align)
        self.weight = nn.Parameter(torch.zeros(self.num_heads, self.num_buckets, device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        """Zeros: every position starts unbiased."""
        nn.init.zeros_(self.weight)

    def forward(self) -> T5Bias:
        return T5Bias(self.weight, bidirectional=self.bidirectional, num_buckets=self.num_buckets,
                      max_distance=self.max_distance, align=self.align)

    def extra_repr(self) -> str:
        return (f"num_heads={self.num_heads}, num_buckets={self.num_buckets}, max_distance={self.max_distance}, "
                f"bidirectional={self.bidirectional}")
