"""``complexity``: self-attention vs convolution vs recurrence (book exercises 8-3 and 8-1).

Shape legend: ``n`` sequence length, ``d`` width (input = output = hidden), ``k`` kernel size, ``h`` heads.

Exercise 8-3 (seed 001; Vaswani et al. 2017, Table 1 and §4; Tang et al. 2018): as one layer mapping
``n`` vectors of width ``d`` to ``n`` vectors, compare

=================  ===================  ===================  ==================
layer              FLOPs per layer      sequential steps     maximum path length
=================  ===================  ===================  ==================
self-attention     O(n² d)              O(1)                 O(1)
convolution        O(k n d²)            O(1)                 O(n / k); O(log_k n) dilated
recurrent          O(n d²)              O(n)                 O(n)
=================  ===================  ===================  ==================

Every figure is computed by a formula **and** measured on the actual torch modules:

* **FLOPs** (a multiply-add = 2 FLOPs, forward): attention core (``QKᵀ`` and the weighted sum,
  :func:`qkv.attend`) ``4 n² d``; the multi-head layer (:class:`qkv.MultiHeadAttention`) adds the four
  projections, ``4 n² d + 8 n d²``; causal ``Conv1d(d, d, k)`` ``2 k n d²``; ``nn.RNN`` (tanh)
  ``4 n d²``; ``nn.LSTM`` ``16 n d²`` — checked against ``torch.utils.flop_counter.FlopCounterMode``
  (which counts matrix products and convolutions, not biases or elementwise ops; SDPA runs its math
  path and oneDNN's fused LSTM is switched off while counting, so every product is visible);
* **sequential steps**: the longest path in the module's autograd graph (``grad_fn`` nodes), which is
  constant in ``n`` for attention and convolution and grows linearly for the recurrent layers;
* **maximum path length** between input position 0 and output position ``n - 1``: the number of layers
  that must be stacked before one depends on the other (forward-mode AD through the actual modules:
  attention 1, causal convolution ``ceil((n-1)/(k-1))``, dilated causal convolution ``ceil(log_k n)``),
  and for the RNN the number of recurrent ``tanh`` steps on that path in the autograd graph (``n``);
* next to them, **time** (forward + backward, median of a few repeats) and **activation memory**
  (bytes of the tensors saved for backward, parameters excluded; on CUDA also the peak allocated).

The crossover the paper notes ("self-attention layers are faster than recurrent layers when the
sequence length n is smaller than the representation dimensionality d") is where the attention core's
``4 n² d`` meets the RNN's ``4 n d²``: ``n = d``.

Exercise 8-1: an LSTM layer with input width ``n_in`` and ``m`` hidden units has four gate blocks, each
with ``m (n_in + m)`` weights and a bias: the book's ``4 m (n_in + m + 1)``. torch keeps **two** bias
vectors per gate block (``b_ih`` and ``b_hh``), so its count is ``4 (m (n_in + m) + 2 m)`` per layer and
direction; stacked layers read ``m · directions`` inputs (:func:`lstm_parameter_count`), checked
exactly against ``sum(p.numel() for p in nn.LSTM(...).parameters())``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.autograd import forward_ad
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from qkv.experiments.base import Experiment, ExperimentResult, Figure, RunContext, Table, Target
from qkv.experiments.registry import register
from qkv.functional.attention import attend
from qkv.layers.multihead import MultiHeadAttention
from qkv.viz.mpl import pyplot

__all__ = [
    "LAYERS",
    "Complexity",
    "ComplexityConfig",
    "autograd_depth",
    "count_flops",
    "crossover",
    "crossover_outside",
    "formula_flops",
    "lstm_parameter_count",
    "path_length",
    "positive_conv",
    "visible_ops",
]

#: The compared layers, in table order.
LAYERS = ("attention_core", "attention_naive", "attention", "conv", "rnn", "lstm")
LABELS = {
    "attention_core": "attention core (QK^T, AV), SDPA",
    "attention_naive": "attention core, naive (n x n weights kept)",
    "attention": "multi-head self-attention layer",
    "conv": "convolution (causal, kernel k)",
    "rnn": "recurrent (nn.RNN, tanh)",
    "lstm": "recurrent (nn.LSTM)",
}


@dataclass(frozen=True)
class ComplexityConfig:
    """Config of ``complexity``.

    ``lengths``: the ``n`` swept; ``width``: ``d``; ``kernel``: ``k``; ``heads``: ``h``; ``repeats``: timed
    forward+backward passes per cell (after one warm-up; the fastest is kept); ``path_lengths``: the ``n``
    for which path lengths and graph depths are measured (small ``d`` = ``path_width``); ``lstm_shapes``:
    ``(input, hidden, layers, bidirectional, proj_size)`` for exercise 8-1.
    """

    lengths: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
    width: int = 64
    kernel: int = 3
    heads: int = 4
    repeats: int = 5
    path_lengths: tuple[int, ...] = (4, 16, 64, 256)
    path_width: int = 4
    lstm_shapes: tuple[tuple[int, int, int, bool, int], ...] = (
        (16, 32, 1, False, 0), (64, 64, 2, False, 0), (10, 20, 3, True, 0), (128, 256, 2, True, 0),
        (32, 48, 2, True, 16),
    )

    def __post_init__(self) -> None:
        if not self.lengths or any(n < 2 for n in self.lengths) or list(self.lengths) != sorted(set(self.lengths)):
            raise ValueError(f"lengths must be increasing ints >= 2, got {self.lengths}")
        if self.width < 1 or self.width % self.heads or self.kernel < 2 or self.repeats < 1:
            raise ValueError(f"need width >= 1 divisible by heads, kernel >= 2, repeats >= 1; got width={self.width}, "
                             f"heads={self.heads}, kernel={self.kernel}, repeats={self.repeats}")
        if any(n < 2 for n in self.path_lengths) or self.path_width < 1:
            raise ValueError(f"path_lengths must be ints >= 2 and path_width >= 1, got {self.path_lengths}, "
                             f"{self.path_width}")


# --------------------------------------------------------------------------------------------
# formulas


def formula_flops(layer: str, n: int, d: int, k: int) -> int:
    """Forward FLOPs of one layer (a multiply-add = 2), counting matrix products and convolutions only."""
    table = {
        "attention_core": 4 * n * n * d,  # QK^T: 2 n² d; weights @ V: 2 n² d (summed over heads)
        "attention_naive": 4 * n * n * d,
        "attention": 4 * n * n * d + 8 * n * d * d,  # + four d x d projections of n vectors
        "conv": 2 * k * n * d * d,
        "rnn": 4 * n * d * d,  # W_ih x_t and W_hh h_{t-1}
        "lstm": 16 * n * d * d,  # four gate blocks of the RNN's two products
    }
    if layer not in table:
        raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
    return table[layer]


def table1(layer: str, n: int, d: int, k: int) -> dict[str, float]:
    """Vaswani et al. 2017, Table 1, without constants: complexity, sequential operations, path length."""
    if layer.startswith("attention"):
        return {"complexity": n * n * d, "sequential": 1, "path": 1}
    if layer == "conv":
        return {"complexity": k * n * d * d, "sequential": 1, "path": math.ceil((n - 1) / (k - 1)),
                "path_dilated": math.ceil(math.log(n) / math.log(k) - 1e-9)}
    return {"complexity": n * d * d, "sequential": n, "path": n}


def lstm_parameter_count(input_size: int, hidden_size: int, *, num_layers: int = 1, bidirectional: bool = False,
                         bias: bool = True, proj_size: int = 0, bias_vectors: int = 2) -> int:
    """Exercise 8-1: parameters of a (stacked, optionally bidirectional) LSTM.

    Per layer and direction, four gate blocks (input, forget, cell, output) each hold ``m (n_in + r)``
    weights and ``bias_vectors`` bias vectors of ``m``, where ``m`` = ``hidden_size`` and ``r`` the recurrent
    width (``proj_size`` when set, else ``m``); a projection adds ``r m``. Layer ``l > 0`` reads
    ``r * directions`` inputs. ``bias_vectors=2`` is torch's layout (``b_ih`` and ``b_hh``); the book's
    formula ``4 m (n_in + m + 1)`` is ``bias_vectors=1``.
    """
    m, r = hidden_size, proj_size or hidden_size
    dirs = 2 if bidirectional else 1
    total = 0
    for layer in range(num_layers):
        n_in = input_size if layer == 0 else r * dirs
        per_direction = 4 * m * (n_in + r) + (4 * m * bias_vectors if bias else 0) + (r * m if proj_size else 0)
        total += dirs * per_direction
    return total


def crossover(ns: list[int], ratio: list[float]) -> float | None:
    """The ``n`` where ``ratio`` (attention / recurrent) reaches 1, log-log interpolated between measured lengths.

    None when the crossing is not inside the measured range: ``ratio`` stays below 1 (above the range), or is
    already above 1 at the smallest ``n`` (below the range; :func:`crossover_outside` says which).
    """
    if ratio and ratio[0] > 1.0:
        return None  # attention already costs more at ns[0]: the crossover lies below the measured lengths
    for i, r in enumerate(ratio):
        if r >= 1.0:
            if r == 1.0:
                return float(ns[i])
            ln0, ln1, lr0, lr1 = math.log(ns[i - 1]), math.log(ns[i]), math.log(ratio[i - 1]), math.log(r)
            return math.exp(ln0 + (0.0 - lr0) * (ln1 - ln0) / (lr1 - lr0))
    return None


# --------------------------------------------------------------------------------------------
# the modules


class AttentionCore(nn.Module):
    """Scaled dot-product attention of ``h`` heads on the input itself (no projections): the ``n² d`` part.

    ``backend`` is :func:`qkv.attend`'s: ``"auto"`` (SDPA here) or ``"naive"`` (keeps the ``(h, n, n)`` weights).
    """

    def __init__(self, heads: int, backend: str = "auto") -> None:
        super().__init__()
        self.heads, self.backend = heads, backend

    def forward(self, x: Tensor) -> Tensor:
        q = x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, n, d) -> (B, h, n, d/h)
        out = attend(q, q, q, backend=self.backend).output  # (B, h, n, d/h)
        return out.transpose(1, 2).flatten(-2)  # (B, n, d)


class CausalConv(nn.Module):
    """``Conv1d(d, d, k, dilation)`` on ``(B, n, d)``, left-padded so output ``t`` sees inputs ``<= t``."""

    def __init__(self, d: int, k: int, dilation: int = 1) -> None:
        super().__init__()
        self.pad = (k - 1) * dilation
        self.conv = nn.Conv1d(d, d, k, dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:
        y = nn.functional.pad(x.transpose(1, 2), (self.pad, 0))  # (B, d, pad + n)
        return self.conv(y).transpose(1, 2)  # (B, n, d)


class Recurrent(nn.Module):
    """``nn.RNN`` or ``nn.LSTM`` returning the output sequence ``(B, n, d)``."""

    def __init__(self, cell: type[nn.RNNBase], d: int) -> None:
        super().__init__()
        self.rnn = cell(d, d, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.rnn(x)[0]


class SelfAttention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.mha = MultiHeadAttention(d, heads)

    def forward(self, x: Tensor) -> Tensor:
        return self.mha(x).output


def build(layer: str, d: int, k: int, heads: int) -> nn.Module:
    """One layer mapping ``(B, n, d)`` to ``(B, n, d)``."""
    if layer in ("attention_core", "attention_naive"):
        return AttentionCore(heads, "auto" if layer == "attention_core" else "naive")
    if layer == "attention":
        return SelfAttention(d, heads)
    if layer == "conv":
        return CausalConv(d, k)
    if layer in ("rnn", "lstm"):
        return Recurrent(nn.RNN if layer == "rnn" else nn.LSTM, d)
    raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")


@contextlib.contextmanager
def visible_ops() -> Iterator[None]:
    """Every product as a plain aten op: SDPA's math path, oneDNN's fused RNN kernels off.

    Under it ``FlopCounterMode`` sees every matrix product, the autograd graph of a recurrent layer has
    one node per step, and forward-mode AD runs through attention (the flash kernel has no forward AD).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*oneDNN.*")  # torch's notice when the flag is toggled
        with sdpa_kernel(SDPBackend.MATH), torch.backends.mkldnn.flags(enabled=False):
            yield


def count_flops(module: nn.Module, x: Tensor, *, backward: bool = False) -> int:
    """FLOPs ``FlopCounterMode`` counts for ``module(x)`` (and its backward when ``backward``)."""
    with visible_ops(), FlopCounterMode(display=False) as counter:
        out = module(x)
        if backward:
            out.sum().backward()
    return int(counter.get_total_flops())


def autograd_depth(out: Tensor, *, only: str | None = None) -> int:
    """The longest path in ``out``'s autograd graph, in ``grad_fn`` nodes (or in nodes named ``only``)."""
    order, seen, stack = [], set(), [(out.grad_fn, False)]
    while stack:  # iterative post-order: children before parents
        fn, expanded = stack.pop()
        if expanded:
            order.append(fn)
            continue
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        stack.append((fn, True))
        stack.extend((nxt, False) for nxt, _ in fn.next_functions if nxt is not None and nxt not in seen)
    best: dict[Any, int] = {}
    for fn in order:
        here = 1 if only is None or type(fn).__name__ == only else 0
        best[fn] = here + max((best[nxt] for nxt, _ in fn.next_functions if nxt in best), default=0)
    return best.get(out.grad_fn, 0)


def path_length(make: Callable[[int], nn.Module], n: int, d: int, *, max_layers: int) -> int | None:
    """Layers to stack (``make(l)`` builds layer ``l``) before output ``n - 1`` depends on input 0.

    Forward-mode AD carries the tangent of input position 0 through the actual modules, in float64,
    one layer at a time; None when ``max_layers`` are not enough.
    """
    x = torch.zeros(1, n, d, dtype=torch.float64)
    tangent = torch.zeros_like(x)
    tangent[:, 0] = 1.0
    with torch.no_grad(), visible_ops(), forward_ad.dual_level():
        h = forward_ad.make_dual(x, tangent)
        for layer in range(max_layers):
            h = make(layer).double()(h)
            if bool(forward_ad.unpack_dual(h).tangent[:, n - 1].abs().sum() > 0):
                return layer + 1
    return None


def crossover_outside(ratio: list[float]) -> str:
    """Why :func:`crossover` found none: ``"below the measured range"`` or ``"above the measured range"``."""
    return "below the measured range" if ratio and ratio[0] > 1.0 else "above the measured range"


def positive_conv(d: int, k: int, dilation: int) -> nn.Module:
    """A causal convolution with positive weights (no cancellation can hide a dependency), averaging."""
    conv = CausalConv(d, k, dilation)
    with torch.no_grad():
        conv.conv.weight.fill_(1.0 / (k * d))
        conv.conv.bias.zero_()
    return conv


# --------------------------------------------------------------------------------------------
# measurements


def _saved_bytes(module: nn.Module, x: Tensor) -> tuple[Tensor, int]:
    """Run ``module(x)`` and add up the bytes of the distinct storages saved for backward (parameters excluded)."""
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(x)
    return out, sum(seen.values())


def _time_fwd_bwd(module: nn.Module, x: Tensor, repeats: int) -> tuple[float, float | None]:
    """The fastest of ``repeats`` forward + backward passes in seconds (the least disturbed by other processes on
    a shared CPU), and on CUDA the peak allocated bytes of one pass."""
    cuda = x.device.type == "cuda"
    times, peak = [], None
    for i in range(repeats + 1):  # one warm-up
        module.zero_grad(set_to_none=True)
        x.grad = None
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        module(x).sum().backward()
        if cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - base
        if i:
            times.append(time.perf_counter() - t0)
    return min(times), peak


@register
class Complexity(Experiment):
    name = "complexity"
    description = "Exercises 8-3 and 8-1: attention vs convolution vs recurrence (FLOPs, steps, path, time, memory)"
    Config = ComplexityConfig
    targets = (
        Target("flops_max_rel_error", "<=", 0.01, "formulas vs FlopCounterMode on the modules, every layer and n"),
        Target("crossover_over_d", ">=", 0.5, "attention core FLOPs exceed the RNN's at n ~ d (paper, §4)"),
        Target("crossover_over_d", "<=", 2.0, "attention core FLOPs exceed the RNN's at n ~ d (paper, §4)"),
        Target("path_length_mismatches", "<=", 0, "measured path lengths equal Table 1's (1, n/k, log_k n, n)"),
        Target("sequential_mismatches", "<=", 0, "graph depth constant for attention and conv, tanh steps = n for RNN"),
        Target("lstm_params_max_abs_error", "<=", 0, "exercise 8-1: 4(m(n+m) + 2m) per layer/direction, exact"),
    )
    quick_overrides: ClassVar[dict[str, Any]] = {
        "lengths": (16, 32, 64, 128, 256, 512, 1024), "repeats": 3, "path_lengths": (4, 16, 64),
    }
    quick_targets = targets  # formulas and counts: the quick run checks the same things on fewer n

    def run(self, config: ComplexityConfig, ctx: RunContext) -> ExperimentResult:
        d, k, h = config.width, config.kernel, config.heads
        device = torch.device(ctx.device)
        gen = torch.Generator().manual_seed(ctx.seed)
        rows: dict[str, list[dict[str, Any]]] = {layer: [] for layer in LAYERS}
        for layer in LAYERS:
            torch.manual_seed(ctx.variant_seed(layer))
            module = build(layer, d, k, h)
            for n in config.lengths:
                x = torch.randn(1, n, d, generator=gen)
                counted = count_flops(module, x)
                xd = x.to(device).requires_grad_(True)
                mod = module.to(device)
                _, saved = _saved_bytes(mod, xd)
                seconds, peak = _time_fwd_bwd(mod, xd, config.repeats)
                module.cpu()
                rows[layer].append({"n": n, "formula": formula_flops(layer, n, d, k), "counted": counted,
                                    "table1": table1(layer, n, d, k)["complexity"], "seconds": seconds,
                                    "saved_bytes": saved, "peak_bytes": peak})
            ctx.log(f"{layer}: {len(config.lengths)} lengths, last {rows[layer][-1]['seconds'] * 1e3:.1f} ms")
        ns = list(config.lengths)
        rel = [abs(r["counted"] - r["formula"]) / r["formula"] for layer in LAYERS for r in rows[layer]]
        ratio = [a["counted"] / b["counted"] for a, b in zip(rows["attention_core"], rows["rnn"], strict=True)]
        cross = crossover(ns, ratio)
        ratio_layer = [a["counted"] / b["counted"] for a, b in zip(rows["attention"], rows["lstm"], strict=True)]
        cross_layer = crossover(ns, ratio_layer)
        paths, path_mismatch = self._paths(config)
        depth, seq_mismatch = self._depths(config)
        lstm_rows, lstm_err = self._lstm(config)
        ctx.save_json("complexity.json", {"rows": rows, "width": d, "kernel": k, "heads": h, "paths": paths,
                                          "depths": depth, "device": str(device)})
        metrics = {
            "flops_max_rel_error": max(rel),
            "crossover_n": cross if cross is not None else float("nan"),
            "crossover_over_d": (cross / d) if cross is not None else float("nan"),
            "crossover_layer_mha_vs_lstm_over_d": (cross_layer / d) if cross_layer is not None else float("nan"),
            "time_attention_over_rnn_at_max_n": rows["attention"][-1]["seconds"] / rows["rnn"][-1]["seconds"],
            "time_attention_over_conv_at_max_n": rows["attention"][-1]["seconds"] / rows["conv"][-1]["seconds"],
            "path_length_mismatches": path_mismatch,
            "sequential_mismatches": seq_mismatch,
            "lstm_params_max_abs_error": lstm_err,
        }
        return ExperimentResult(metrics=metrics, tables=self._tables(config, rows, paths, depth, lstm_rows), notes=[
            "FLOPs: a multiply-add is 2; FlopCounterMode counts matrix products and convolutions (biases and "
            "elementwise ops are not counted), with SDPA's math path and oneDNN's fused LSTM off while counting.",
            "Crossover of the attention core (4 n^2 d) and the RNN (4 n d^2): "
            + (f"n = {cross:.1f}" if cross is not None else f"{crossover_outside(ratio)} (n = {ns[0]}..{ns[-1]})")
            + f" for d = {d}; of the full multi-head layer (4 n^2 d + 8 n d^2) and the LSTM (16 n d^2): "
            + (f"n = {cross_layer / d:.2f} d." if cross_layer is not None
               else f"{crossover_outside(ratio_layer)} (n = {ns[0]}..{ns[-1]})."),
            "Time: forward + backward on this machine, the fastest of the repeats (threads as set by --threads); "
            "memory: bytes of activations saved for backward. The attention core and the multi-head layer run qkv's "
            "auto backend, SDPA (on CPU its flash kernel saves O(n d) and recomputes the n x n weights in backward: "
            "time grows as n^2, memory as n); the naive attention core keeps the h x n x n weights (memory as n^2).",
            "Exercise 8-1: torch's LSTM has two bias vectors per gate block (b_ih, b_hh): 4(m(n+m) + 2m) per "
            "layer and direction; the book's 4m(n+m+1) counts one.",
        ])

    # ----------------------------------------------------------------------------------------

    def _paths(self, config: ComplexityConfig) -> tuple[list[dict[str, Any]], int]:
        d, k = config.path_width, config.kernel
        torch.manual_seed(0)
        mismatches, out = 0, []
        for n in config.path_lengths:
            want = table1("conv", n, d, k)
            att = path_length(lambda _layer: SelfAttention(d, 1), n, d, max_layers=4)
            conv = path_length(lambda _layer: positive_conv(d, k, 1), n, d, max_layers=n)
            dilated = path_length(lambda layer: positive_conv(d, k, k**layer), n, d, max_layers=64)
            x = torch.randn(1, n, d, requires_grad=True)
            with visible_ops():
                rnn = autograd_depth(nn.RNN(d, d, batch_first=True)(x)[0][:, -1], only="TanhBackward0")
            row = {"n": n, "attention": att, "conv": conv, "conv_dilated": dilated, "rnn": rnn,
                   "formula_conv": want["path"], "formula_dilated": want["path_dilated"], "formula_rnn": n}
            mismatches += (att != 1) + (conv != want["path"]) + (dilated != want["path_dilated"]) + (rnn != n)
            out.append(row)
        return out, int(mismatches)

    def _depths(self, config: ComplexityConfig) -> tuple[list[dict[str, Any]], int]:
        d, k = config.path_width, config.kernel
        torch.manual_seed(0)
        modules = {layer: build(layer, d, k, 1) for layer in LAYERS}
        out = []
        for n in config.path_lengths:
            x = torch.randn(1, n, d, requires_grad=True)
            with visible_ops():
                out.append({"n": n, **{layer: autograd_depth(m(x)) for layer, m in modules.items()}})
        mismatches = 0
        for layer in ("attention_core", "attention_naive", "attention", "conv"):
            mismatches += len({r[layer] for r in out}) != 1  # constant in n
        for layer in ("rnn", "lstm"):  # grows linearly: the same depth per step at every n
            per_step = {(b[layer] - a[layer]) / (b["n"] - a["n"]) for a, b in itertools.pairwise(out)}
            mismatches += len(per_step) > 1 or min(per_step, default=1) < 1
        return out, int(mismatches)

    def _lstm(self, config: ComplexityConfig) -> tuple[list[list[Any]], int]:
        rows, err = [], 0
        for n_in, m, layers, bi, proj in config.lstm_shapes:
            module = nn.LSTM(n_in, m, num_layers=layers, bidirectional=bi, proj_size=proj)
            actual = sum(p.numel() for p in module.parameters())
            formula = lstm_parameter_count(n_in, m, num_layers=layers, bidirectional=bi, proj_size=proj)
            book = lstm_parameter_count(n_in, m, num_layers=layers, bidirectional=bi, proj_size=proj, bias_vectors=1)
            err = max(err, abs(actual - formula))
            rows.append([n_in, m, layers, bi, proj, actual, formula, book])
        return rows, err

    def _tables(self, config, rows, paths, depth, lstm_rows) -> list[Table]:
        d, k = config.width, config.kernel
        flop_rows = []
        for i, n in enumerate(config.lengths):
            cells = [n]
            for layer in LAYERS:
                r = rows[layer][i]
                cells += [f"{r['counted']:.3g}", f"{r['seconds'] * 1e3:.2f}", f"{r['saved_bytes'] / 2**20:.2f}"]
            flop_rows.append(cells)
        columns = ["n"]
        for layer in LAYERS:
            columns += [f"{layer} FLOPs", f"{layer} ms", f"{layer} MiB saved"]
        summary = [
            ["self-attention", "O(n^2 d)", "4 n^2 d (+ 8 n d^2 projections)", "O(1)", "O(1)", "1 layer"],
            ["convolution", "O(k n d^2)", "2 k n d^2", "O(1)", "O(n/k); O(log_k n) dilated",
             "ceil((n-1)/(k-1)); ceil(log_k n) layers"],
            ["recurrent", "O(n d^2)", "4 n d^2 (RNN), 16 n d^2 (LSTM)", "O(n)", "O(n)", "n tanh steps"],
        ]
        return [
            Table("Vaswani et al. 2017, Table 1, and the exact forward FLOPs checked here",
                  ["layer", "complexity", "counted forward FLOPs", "sequential", "max path", "path measured as"],
                  summary),
            Table(f"Per layer, d = {d}, k = {k}, h = {config.heads}: FlopCounterMode FLOPs (= the formulas), "
                  "forward+backward time, activations saved for backward", columns, flop_rows),
            Table(f"Maximum path length, input 0 -> output n-1 (measured on the modules, d = {config.path_width})",
                  ["n", "attention", "conv", "formula ceil((n-1)/(k-1))", "dilated conv", "formula ceil(log_k n)",
                   "RNN tanh steps", "formula n"],
                  [[p["n"], p["attention"], p["conv"], p["formula_conv"], p["conv_dilated"], p["formula_dilated"],
                    p["rnn"], p["formula_rnn"]] for p in paths]),
            Table("Sequential steps: longest autograd-graph path (grad_fn nodes) of one layer",
                  ["n", *LAYERS], [[r["n"], *(r[layer] for layer in LAYERS)] for r in depth]),
            Table("Exercise 8-1: LSTM parameters, torch vs 4(m(n+m) + 2m) per layer and direction",
                  ["input n", "hidden m", "layers", "bidirectional", "proj_size", "torch", "formula (2 biases)",
                   "book (1 bias)"], lstm_rows),
        ]

    def figures(self, run_dir: Path, config: ComplexityConfig) -> list[Figure]:
        path = run_dir / "complexity.json"
        if not path.exists():
            return []
        data = json.loads(path.read_text())
        rows, d = data["rows"], data["width"]
        plt = pyplot()
        fig, axes = plt.subplots(1, 3, figsize=(17, 4.6), layout="constrained")
        fig.suptitle(f"One layer, d = {d}, k = {data['kernel']}, h = {data['heads']} ({data['device']})")
        colors = dict(zip(LAYERS, ("C0", "C5", "C1", "C2", "C3", "C4"), strict=True))
        for layer in LAYERS:
            ns = [r["n"] for r in rows[layer]]
            c = colors[layer]
            axes[0].plot(ns, [r["formula"] for r in rows[layer]], "-", color=c, lw=1.2)
            axes[0].plot(ns, [r["counted"] for r in rows[layer]], "o", color=c, ms=4, label=LABELS[layer])
            axes[1].plot(ns, [r["seconds"] * 1e3 for r in rows[layer]], "o-", color=c, ms=4, label=LABELS[layer])
            axes[2].plot(ns, [max(r["saved_bytes"], 1) / 2**20 for r in rows[layer]], "o-", color=c, ms=4,
                         label=LABELS[layer])
        axes[0].axvline(d, color="k", ls="--", lw=1, label="n = d")
        axes[1].axvline(d, color="k", ls="--", lw=1)
        titles = ("forward FLOPs: formula (lines) and FlopCounterMode (dots)", "forward + backward time (ms)",
                  "activations saved for backward (MiB)")
        for ax, title in zip(axes, titles, strict=True):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("sequence length n")
            ax.set_title(title, fontsize=10)
        axes[0].legend(fontsize=8)
        out = run_dir / "figures" / "complexity.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
        plt.close(fig)
        return [Figure("figures/complexity.png",
                       "Self-attention's n^2 d against the convolution's k n d^2 and the recurrence's n d^2 (log-log): "
                       "the attention core overtakes the RNN at n = d; measured time and saved activations alongside.")]
