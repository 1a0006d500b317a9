"""``scaled-dot``: why Transformer attention divides by sqrt(d_k) (book exercise 8-2, seed 001).

With query and key components i.i.d. with mean 0 and variance 1, :math:`q^\\top k = \\sum_{i=1}^{d_k}
q_i k_i` has mean 0 and variance :math:`d_k` (Vaswani et al. 2017, footnote 4). Unscaled, the
scores spread as :math:`\\sqrt{d_k}`, the softmax saturates towards one-hot, and the Jacobian
:math:`\\partial\\,\\mathrm{softmax}(s) / \\partial s = \\mathrm{diag}(p) - p p^\\top` vanishes, so
almost no gradient reaches the scores. Dividing by :math:`\\sqrt{d_k}` keeps the score variance at
1 for every :math:`d_k`.

For each ``d_k`` this measures, over random Gaussian queries and ``num_keys`` keys, through
:func:`qkv.attend` with ``score="dot"`` and ``score="scaled_dot"``: the variance of the scores,
the mean largest attention weight (saturation), the entropy of the weights, and the norm of the
gradient reaching the scores and the query for a random upstream gradient on the output.
No training: the numbers are measurements of the mechanism.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from qkv.experiments.base import Experiment, ExperimentResult, Figure, RunContext, Table, Target
from qkv.experiments.registry import register
from qkv.viz.mpl import pyplot

__all__ = ["ScaledDot", "ScaledDotConfig"]


@dataclass(frozen=True)
class ScaledDotConfig:
    """Config of ``scaled-dot``: ``d_k`` from ``2**0`` to ``2**max_log2_dk``."""

    max_log2_dk: int = 10
    num_keys: int = 32
    num_queries: int = 4000  # per d_k; memory is bounded by chunking
    value_dim: int = 16

    def __post_init__(self) -> None:
        if not 1 <= self.max_log2_dk <= 14:
            raise ValueError(f"max_log2_dk must be in [1, 14], got {self.max_log2_dk}")
        if self.num_keys < 2 or self.num_queries < 10 or self.value_dim < 1:
            raise ValueError(
                f"need num_keys >= 2, num_queries >= 10, value_dim >= 1; got {self.num_keys}, "
                f"{self.num_queries}, {self.value_dim}"
            )


def measure(d_k: int, *, scaled: bool, num_keys: int, num_queries: int, value_dim: int,
            generator: torch.Generator) -> dict[str, float]:
    """Statistics of one ``(d_k, scaled)`` cell (see the module docstring), in float64.

    Queries are processed in chunks of about 2**21 key elements so memory stays small at large d_k.
    """
    import qkv

    chunk = max(1, 2**21 // (num_keys * d_k))
    score_sum = score_sq = count = 0.0
    max_w, ent, g_scores, g_query = [], [], [], []
    for start in range(0, num_queries, chunk):
        n = min(chunk, num_queries - start)
        q = torch.randn(n, 1, d_k, generator=generator, dtype=torch.float64)  # (N, 1, d_k)
        k = torch.randn(n, num_keys, d_k, generator=generator, dtype=torch.float64)  # (N, S, d_k)
        v = torch.randn(n, num_keys, value_dim, generator=generator, dtype=torch.float64)  # (N, S, Dv)
        g = torch.randn(n, 1, value_dim, generator=generator, dtype=torch.float64)  # upstream gradient
        q.requires_grad_(True)
        out = qkv.attend(q, k, v, score="scaled_dot" if scaled else "dot", return_weights=True,
                         return_scores=True, backend="naive")
        out.scores.retain_grad()
        (out.output * g).sum().backward()
        scores = out.scores.detach()
        score_sum += float(scores.sum())
        score_sq += float((scores**2).sum())
        count += scores.numel()
        w = out.weights.detach().squeeze(1)  # (N, S)
        max_w.append(w.max(-1).values)
        ent.append(-(w * w.clamp_min(1e-300).log()).sum(-1))  # (N,)
        g_scores.append(out.scores.grad.squeeze(1).norm(dim=-1))  # (N,)
        g_query.append(q.grad.squeeze(1).norm(dim=-1))  # (N,)
    mean = score_sum / count
    gs = torch.cat(g_scores)
    return {
        "score_var": score_sq / count - mean**2,
        "max_weight": float(torch.cat(max_w).mean()),
        "entropy": float(torch.cat(ent).mean()),
        "grad_scores": float(gs.mean()),
        "grad_scores_median": float(gs.median()),
        "grad_query": float(torch.cat(g_query).mean()),
    }


@register
class ScaledDot(Experiment):
    name = "scaled-dot"
    description = "Exercise 8-2: softmax saturation and gradient size vs d_k, with and without 1/sqrt(d_k)"
    Config = ScaledDotConfig
    targets = (
        Target("var_over_dk_max_dev", "<=", 0.1, "unscaled Var(q.k)/d_k stays within 10% of 1 (theory: = 1)"),
        Target("max_weight_unscaled_at_max_dk", ">=", 0.9, "unscaled softmax saturates (largest d_k)"),
        Target("max_weight_scaled_at_max_dk", "<=", 0.5, "scaled softmax stays spread out (largest d_k)"),
        Target("median_grad_ratio_at_max_dk", ">=", 100.0,
               "typical (median) gradient reaching the scores, scaled / unscaled (largest d_k)"),
    )

    quick_overrides: ClassVar[dict[str, Any]] = {"num_queries": 1000}
    quick_targets = targets  # the measurement needs no training: the quick run meets the same targets

    # build / train / evaluate collapse into `measure`: the mechanism has no parameters to fit.

    def run(self, config: ScaledDotConfig, ctx: RunContext) -> ExperimentResult:
        gen = torch.Generator().manual_seed(ctx.seed)
        dks = [2**i for i in range(config.max_log2_dk + 1)]
        rows, data = [], {"d_k": dks, "unscaled": [], "scaled": []}
        for d_k in dks:
            cells = {}
            for scaled in (False, True):
                cells[scaled] = measure(d_k, scaled=scaled, num_keys=config.num_keys,
                                        num_queries=config.num_queries, value_dim=config.value_dim, generator=gen)
                data["scaled" if scaled else "unscaled"].append(cells[scaled])
            u, s = cells[False], cells[True]
            rows.append([d_k, u["score_var"], s["score_var"], u["max_weight"], s["max_weight"], u["entropy"],
                         s["entropy"], u["grad_scores_median"], s["grad_scores_median"]])
        ctx.save_json("scaled_dot.json", {**data, "num_keys": config.num_keys})
        u_last, s_last = data["unscaled"][-1], data["scaled"][-1]
        metrics = {
            "var_over_dk_max_dev": max(abs(c["score_var"] / d - 1.0) for c, d in zip(data["unscaled"], dks,
                                                                                    strict=True)),
            "max_weight_unscaled_at_max_dk": u_last["max_weight"],
            "max_weight_scaled_at_max_dk": s_last["max_weight"],
            "mean_grad_ratio_at_max_dk": s_last["grad_scores"] / max(u_last["grad_scores"], 1e-300),
            "median_grad_ratio_at_max_dk": s_last["grad_scores_median"] / max(u_last["grad_scores_median"], 1e-300),
            "entropy_uniform": math.log(config.num_keys),
        }
        table = Table(f"Per d_k ({config.num_queries} queries x {config.num_keys} keys, float64)",
                      ["d_k", "Var(q.k)", "Var(q.k/sqrt d_k)", "max w (unscaled)", "max w (scaled)",
                       "entropy (unscaled)", "entropy (scaled)", "median |dL/ds| (unscaled)",
                       "median |dL/ds| (scaled)"], rows)
        return ExperimentResult(metrics=metrics, tables=[table], notes=[
            f"Entropy of the uniform distribution over {config.num_keys} keys: {math.log(config.num_keys):.3f} nats."
        ])

    def figures(self, run_dir: Path, config: ScaledDotConfig) -> list[Figure]:
        path = run_dir / "scaled_dot.json"
        if not path.exists():
            return []
        data = json.loads(path.read_text())
        plt = pyplot()
        dks = data["d_k"]
        fig, axes = plt.subplots(1, 4, figsize=(17, 3.8), layout="constrained")
        fig.suptitle(f"{len(data['unscaled'])} values of d_k, {data['num_keys']} keys per query, Gaussian q, k")
        panels = [("score_var", "variance of the scores", True), ("max_weight", "mean largest weight", False),
                  ("entropy", "entropy of the weights (nats)", False),
                  ("grad_scores_median", "median |gradient reaching the scores|", True)]
        for ax, (key, title, logy) in zip(axes, panels, strict=True):
            for kind, style in (("unscaled", "o-"), ("scaled", "s-")):
                ax.plot(dks, [c[key] for c in data[kind]], style, ms=4,
                        label="q.k" if kind == "unscaled" else "q.k / sqrt(d_k)")
            if key == "score_var":
                ax.plot(dks, dks, "k--", lw=1, label="theory: d_k")
            if key == "entropy":
                ax.axhline(math.log(data["num_keys"]), color="k", ls="--", lw=1, label="uniform")
            ax.set_xscale("log", base=2)
            if logy:
                ax.set_yscale("log")
            ax.set_xlabel("d_k")
            ax.set_title(title)
            ax.legend(fontsize=8)
        out = run_dir / "figures" / "scaled_dot.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
        plt.close(fig)
        return [Figure("figures/scaled_dot.png",
                       "Without scaling the score variance grows as d_k, the softmax saturates (largest weight -> 1, "
                       "entropy -> 0) and the gradient reaching the scores collapses; with 1/sqrt(d_k) all stay flat.")]
