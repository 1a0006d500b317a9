"""``HopfieldLayer``: a lookup into learned stored patterns (Ramsauer et al. 2020, §3 "HopfieldLayer").

Shape legend: ``B`` batch, ``L`` state patterns (the input), ``S`` learned stored patterns, ``Dq`` input
width, ``Dk`` width of the stored patterns, ``Dv`` width of the learned pattern projections (values),
``H`` heads, ``E`` output width.

Ramsauer et al. 2020 eq. 12: the stored patterns :math:`W_K` and their projections :math:`W_V` are
learned, the input is the state pattern: :math:`Z = \\operatorname{softmax}(\\beta\\, R W_Q W_K^\\top) W_V`
— one update of a modern Hopfield network over a learned memory, a differentiable table lookup (it
can replace a fully connected layer, or act as a learned prototype memory).

Calling convention: the layer contract with ``key`` and ``value`` taken by the learned memory,
``forward(query, *, mask=None, bias=None, return_weights=False)``; ``mask`` and ``bias`` broadcast to
``(B, H, L, S)``; weights per head.
"""

from __future__ import annotations

import torch
from einops import repeat
from torch import Tensor, nn

from qkv.functional.biases import BiasLike
from qkv.functional.checks import check_positive_int
from qkv.functional.masks import MaskLike
from qkv.functional.output import AttentionOutput
from qkv.layers.common import check_input
from qkv.memory.hopfield.association import Hopfield

__all__ = ["HopfieldLayer"]


class HopfieldLayer(nn.Module):
    """Look up ``num_patterns`` learned stored patterns from the input (Ramsauer et al. eq. 12).

    Args:
        query_dim: width ``Dq`` of the input.
        num_patterns: learned stored patterns ``S``.
        key_dim: width of the stored patterns (default: that of ``patterns`` if given, else ``Dq``).
        value_dim: width of the learned pattern projections (default: that of ``values`` if given, else
            ``key_dim``).
        patterns: optional ``(S, Dk)`` initial stored patterns (e.g. known prototypes); default random.
        values: optional ``(S, Dv)`` initial pattern projections; default random — except with
            ``projections=False`` and neither ``values`` nor ``value_dim`` given, where the values *are*
            the stored patterns (one parameter, ``values`` is None): a pure auto-associative memory,
            ``HopfieldLayer(D, P, patterns=X, projections=False, beta=...)`` retrieves the rows of ``X``
            (eq. 3 with :math:`X` as keys and values).
        **options: keyword options of :class:`Hopfield` (``hidden_dim``, ``output_dim``, ``num_heads``,
            ``beta``, ``learn_beta``, ``projections``, ``proj_bias``, ``dropout``).
    """

    def __init__(self, query_dim: int, num_patterns: int, *, key_dim: int | None = None,
                 value_dim: int | None = None, patterns: Tensor | None = None, values: Tensor | None = None,
                 **options: object) -> None:
        super().__init__()
        query_dim = check_positive_int("query_dim", query_dim)
        self.num_patterns = check_positive_int("num_patterns", num_patterns)
        if key_dim is None:  # default: the given patterns' width, else the input's
            key_dim = patterns.shape[-1] if isinstance(patterns, Tensor) else query_dim
        key_dim = check_positive_int("key_dim", key_dim)
        tied = values is None and value_dim is None and options.get("projections", True) is False
        if value_dim is None:  # default: the given values' width, else the patterns'
            value_dim = values.shape[-1] if isinstance(values, Tensor) else key_dim
        value_dim = check_positive_int("value_dim", value_dim)
        self.hopfield = Hopfield(query_dim, key_dim=key_dim, value_dim=value_dim, **options)  # type: ignore[arg-type]
        self.num_heads = self.hopfield.num_heads
        self.patterns = nn.Parameter(self._initial("patterns", patterns, (self.num_patterns, key_dim)))  # (S, Dk)
        self.values: nn.Parameter | None = None if tied else nn.Parameter(
            self._initial("values", values, (self.num_patterns, value_dim)))  # (S, Dv); None: the patterns

    @staticmethod
    def _initial(name: str, given: Tensor | None, shape: tuple[int, int]) -> Tensor:
        if given is None:
            return torch.randn(shape) / shape[1] ** 0.5
        t = check_input(name, given, dims=(2,))
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
        return t.detach().clone()

    def forward(
        self,
        query: Tensor,
        *,
        mask: MaskLike | None = None,
        bias: BiasLike | None = None,
        return_weights: bool = False,
    ) -> AttentionOutput:
        """Retrieve from the learned memory with the state patterns ``query``.

        Args:
            query: ``(B, L, Dq)`` state patterns.
            mask: broadcast to ``(B, H, L, S)`` (True = may attend).
            bias: broadcast to ``(B, H, L, S)``.
            return_weights: also return the weights ``(B, H, L, S)``.

        Returns:
            :class:`qkv.AttentionOutput` with ``output (B, L, E)``.
        """
        query = check_input("query", query, dims=(3,))
        B = query.shape[0]
        key = repeat(self.patterns, "s d -> b s d", b=B).to(query.dtype)  # (B, S, Dk)
        stored_values = self.patterns if self.values is None else self.values
        value = repeat(stored_values, "s d -> b s d", b=B).to(query.dtype)  # (B, S, Dv)
        return self.hopfield(query, key, value, mask=mask, bias=bias, return_weights=return_weights)

    def extra_repr(self) -> str:
        return f"num_patterns={self.num_patterns}, values={'patterns' if self.values is None else 'learned'}"
