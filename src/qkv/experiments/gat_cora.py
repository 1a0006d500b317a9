"""``gat-cora``: Graph Attention Networks on Cora (Veličković et al. 2018, Table 2: 83.0 ± 0.7 %).

Task: transductive node classification on a citation graph (:mod:`qkv.tasks.planetoid`): the standard
Planetoid split of Cora, 140 labelled nodes for training, 500 for validation, 1000 for testing; the
features are row-normalised bags of words. Model (:class:`qkv.models.gat.GAT`): the paper's — 8 heads ×
8 units (ELU), dropout 0.6 on the inputs and the attention coefficients, an output layer of 1 head
(averaged), L2 regularisation 5e-4, Adam at lr 0.005, full-batch, early stopping on the validation set
with a patience of 100 epochs, at most 1000 epochs. Every epoch is evaluated, with the paper's code's rule
(:class:`_Stopping`): patience restarts when the validation accuracy or loss matches its best, and the
epoch kept is the last at which both were at their best; its test accuracy is reported (selection on
validation only): mean ± std over ``seeds`` initialisations. The attention is the
layer's edge-list read (an ``O(E)`` scatter softmax), which equals ``qkv.attend`` with the graph mask
(checked at the end of each run: ``paths_max_diff``).

The quick setting needs no download: Zachary's karate club (34 members, the two clubs after the split as
labels, one-hot ids as features, 3 + 3 labelled members per club for training and validation).

Figures: one node's neighbourhood (the whole graph for the karate club) with its edges coloured by the
attention the node pays them (first layer, heads averaged); and, per head of the first layer, the
distribution of the nodes' attention entropies against the entropy of uniform attention over the same
neighbourhoods (the plot of DGL's GAT tutorial: on Cora the learned attention is close to uniform).

Shape legend: ``N`` nodes, ``F`` features, ``K`` classes, ``H`` heads, ``nnz`` allowed pairs (edges plus
self-loops), ``E`` directed edges.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

import qkv.functional.masks as masks
from qkv.experiments.base import DataUnavailable, Experiment, ExperimentResult, Figure, RunContext, Table, Target
from qkv.experiments.config import ConfigError
from qkv.experiments.registry import register
from qkv.functional.attention import attend
from qkv.functional.graph import Graph
from qkv.models.gat import GAT
from qkv.tasks import planetoid
from qkv.tasks.planetoid import GraphData
from qkv.train.checkpoint import read_checkpoint_meta
from qkv.train.loop import TensorBatches, TrainConfig
from qkv.viz.mpl import pyplot

__all__ = ["DATASETS", "GatCora", "GatCoraConfig", "GatModelConfig"]

DATASETS = ("cora", "citeseer", "pubmed", "karate")


@dataclass(frozen=True)
class GatModelConfig:
    """The GAT: ``heads`` × ``hidden`` units, ``out_heads`` averaged output heads, dropout, LeakyReLU slope."""

    hidden: int = 8
    heads: int = 8
    out_heads: int = 1
    dropout: float = 0.6
    negative_slope: float = 0.2
    backend: str = "auto"


@dataclass(frozen=True)
class GatCoraConfig:
    """``dataset``: cora/citeseer/pubmed (``data_dir``, ``$QKV_DATA_DIR``, the cache, or the download) or karate.

    ``l2`` is the paper's L2 penalty :math:`\\lambda \\sum \\lVert\\theta\\rVert^2 / 2` added to the loss
    (Adam's coupled weight decay); ``train.weight_decay`` (AdamW's decoupled one) stays 0.
    """

    dataset: str = "cora"
    data_dir: str = ""
    download: bool = True
    seeds: int = 10
    l2: float = 5e-4
    model: GatModelConfig = field(default_factory=GatModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=1000, batch_size=1, lr=5e-3, weight_decay=0.0, grad_clip=0.0, schedule="constant",
        warmup_steps=0, log_every=10, eval_every=1, checkpoint_every=250, patience=100, monitor="progress",
        monitor_mode="max"))

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {self.l2}")


def _l2(model: torch.nn.Module) -> torch.Tensor:
    return sum(p.pow(2).sum() for p in model.parameters()) / 2


class _OnDevice:
    """The graph's tensors and mask on the model's device (``qkv run --device cuda``), made once per device."""

    def __init__(self, data: GraphData, graph: Graph) -> None:
        self._cache = {data.x.device: (data, graph)}

    def __call__(self, model: torch.nn.Module) -> tuple[GraphData, Graph]:
        device = next(model.parameters()).device
        if device not in self._cache:
            data = next(iter(self._cache.values()))[0]
            data = replace(data, **{name: getattr(data, name).to(device)
                                    for name in ("x", "y", "edge_index", "train", "val", "test")})
            self._cache[device] = data, masks.graph(data.edge_index, num_nodes=data.num_nodes)
        return self._cache[device]


def _measure(model: GAT, data: GraphData, graph: Graph) -> dict[str, float]:
    logits = model(data.x, graph)  # (N, K)
    pred = logits.argmax(-1)
    out = {f"{name}_acc": float((pred[idx] == data.y[idx]).float().mean())
           for name, idx in (("train", data.train), ("val", data.val), ("test", data.test))}
    out["val_loss"] = float(F.cross_entropy(logits[data.val], data.y[data.val]))
    return out


class _Stopping:
    """The paper's early stopping (its ``execute_cora.py``) as an evaluation metric for the Trainer.

    Patience restarts whenever the validation accuracy is >= its best or the loss <= its best; the model
    kept is the last whose accuracy and loss were both at their best. ``progress`` counts the restarts
    (the Trainer's ``monitor``: patience = evaluations without a new restart), ``selected`` is 1 at an
    evaluation where both were at their best (the epoch whose test accuracy is reported). A resumed run
    rebuilds the state by replaying the evaluations saved in the checkpoint (:meth:`replay`).
    """

    def __init__(self) -> None:
        self.best_acc, self.best_loss, self.progress = -math.inf, math.inf, 0

    def __call__(self, m: dict[str, float]) -> dict[str, float]:
        acc_ok, loss_ok = m["val_acc"] >= self.best_acc, m["val_loss"] <= self.best_loss
        if acc_ok or loss_ok:
            self.progress += 1
            self.best_acc, self.best_loss = max(self.best_acc, m["val_acc"]), min(self.best_loss, m["val_loss"])
        return {**m, "progress": float(self.progress), "selected": float(acc_ok and loss_ok)}

    @classmethod
    def replay(cls, history: list[dict[str, Any]]) -> _Stopping:
        """The state after the evaluations of a checkpoint's ``history``."""
        stopping = cls()
        for record in history:
            if record.get("split") == "eval":
                stopping(record)
        return stopping


def _selected(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The last evaluation where validation accuracy and loss were both at their best (the kept model)."""
    evals = [r for r in history if r.get("split") == "eval"]
    chosen = [r for r in evals if r.get("selected")]
    return chosen[-1] if chosen else max(evals, key=lambda r: r["val_acc"])


def _entropies(alpha: torch.Tensor, graph: Graph) -> torch.Tensor:
    """``(H, N)``: each node's attention entropy per head, from the coefficients ``alpha (H, nnz)``."""
    terms = -(alpha * alpha.clamp_min(1e-30).log())  # (H, nnz)
    return torch.zeros(alpha.shape[0], graph.num_queries).index_add(1, graph.rows, terms)  # (H, N)


def _paths_max_diff(model: GAT, data: GraphData, graph: Graph) -> float:
    """The first layer's read by the edge list against ``attend`` (naive kernel) with the graph mask: max |diff|."""
    layer = model.hidden
    q, k, v = layer.project(data.x.unsqueeze(0))
    from qkv.functional.graph_attention import edge_attention

    edges, _ = edge_attention(q, k, v, graph, negative_slope=layer.score.negative_slope)
    dense = attend(q, k, v, score=layer.score, mask=graph, backend="naive").output
    return float((edges - dense).abs().max())


@register
class GatCora(Experiment):
    name = "gat-cora"
    description = "Graph Attention Networks: node classification on Cora (the quick run: the karate club)"
    Config = GatCoraConfig
    targets = (
        Target("test_acc", ">=", 0.83 - 0.007, "Cora test accuracy, mean over seeds (paper: 83.0 ± 0.7 %)"),
        Target("paths_max_diff", "<=", 1e-4, "edge-list read = attend(..., mask=graph) on the trained model"),
    )
    quick_overrides: ClassVar[dict[str, Any]] = {"dataset": "karate", "seeds": 3, "train.max_steps": 150,
                                                  "train.patience": 100}
    quick_targets = (
        Target("test_acc", ">=", 0.85, "karate club: held-out members' club, mean over 3 seeds"),
        Target("paths_max_diff", "<=", 1e-4, "edge-list read = attend(..., mask=graph) on the trained model"),
    )

    def check(self, config: GatCoraConfig, *, offline: bool = False) -> None:
        if config.data_dir and not Path(config.data_dir).is_dir():
            raise ConfigError(f"--data-dir: {config.data_dir!r} is not a directory")

    def load(self, config: GatCoraConfig, *, offline: bool = False) -> GraphData:
        if config.dataset == "karate":
            return planetoid.karate_club()
        try:
            return planetoid.load_planetoid(config.dataset, config.data_dir or None,
                                            download_ok=config.download and not offline)
        except FileNotFoundError as e:
            raise DataUnavailable(str(e)) from None
        except OSError as e:
            raise DataUnavailable(f"downloading {config.dataset} failed: {e}") from None

    def run(self, config: GatCoraConfig, ctx: RunContext) -> ExperimentResult:
        data = self.load(config, offline=ctx.offline)
        graph = masks.graph(data.edge_index, num_nodes=data.num_nodes)  # neighbours + self-loops (eq. 2)
        mc = config.model
        on_device = _OnDevice(data, graph)

        def loss_fn(model: GAT, _batch: Any) -> torch.Tensor:
            d, g = on_device(model)
            logits = model(d.x, g)  # (N, K): full batch
            return F.cross_entropy(logits[d.train], d.y[d.train]) + config.l2 * _l2(model)

        rows, tests, times, models = [], [], [], []
        for seed in range(config.seeds):
            variant = f"seed-{seed}"
            ctx.seed_variant(variant)
            model = GAT(data.x.shape[1], data.num_classes, hidden=mc.hidden, heads=mc.heads, out_heads=mc.out_heads,
                        dropout=mc.dropout, negative_slope=mc.negative_slope, backend=mc.backend)
            start = time.process_time()
            stopping, checkpoint = _Stopping(), ctx.checkpoint_path(variant)
            if ctx.resume and checkpoint.exists():
                stopping = _Stopping.replay(read_checkpoint_meta(checkpoint, config_hash=ctx.config_hash)["history"])
            fit = ctx.fit(variant, model, TensorBatches(step=torch.zeros(1)), loss_fn, train=config.train,
                          evaluate=lambda m, s=stopping: s(_measure(m, *on_device(m))))
            cpu = time.process_time() - start
            chosen = _selected(fit.history)
            tests.append(chosen["test_acc"])
            times.append(cpu)
            models.append(model.cpu().eval())  # the figures and the path check run on the CPU
            rows.append([seed, chosen["step"], fit.steps, chosen["train_acc"], chosen["val_acc"], chosen["test_acc"],
                         round(cpu, 1)])
            ctx.log(f"{variant}: kept epoch {chosen['step']} of {fit.steps}, val {chosen['val_acc']:.3f}, "
                    f"test {chosen['test_acc']:.3f}, {cpu:.1f} CPU s")
        best = max(range(config.seeds), key=lambda i: rows[i][4])  # the figures show the best-validation model
        model = models[best]
        with torch.no_grad():
            first, _ = model.attention(data.x, graph)  # (H, nnz)
            diff = max(_paths_max_diff(m, data, graph) for m in models)
        entropy_ratio = self._save_attention(ctx, data, graph, first)
        mean = statistics.fmean(tests)
        std = statistics.pstdev(tests) if len(tests) > 1 else 0.0
        metrics = {"test_acc": mean, "test_acc_std": std, "paths_max_diff": diff,
                   "cpu_s_per_run": statistics.fmean(times), "entropy_vs_uniform": entropy_ratio}
        return ExperimentResult(
            metrics=metrics,
            tables=[Table(f"GAT on {data.name}: {data.num_nodes} nodes, {data.edge_index.shape[1]} directed edges, "
                          f"split {len(data.train)}/{len(data.val)}/{len(data.test)}",
                          ["seed", "best epoch", "epochs run", "train acc", "val acc", "test acc", "CPU s"], rows)],
            notes=[f"test accuracy {100 * mean:.1f} ± {100 * std:.1f} % over {config.seeds} seeds "
                   f"(paper, Cora: 83.0 ± 0.7 %); {statistics.fmean(times):.1f} CPU s per run"],
        )

    def _save_attention(self, ctx: RunContext, data: GraphData, graph: Graph, alpha: torch.Tensor) -> float:
        """Save what the figures need (entropies per head, one neighbourhood: the whole karate club); return the
        mean learned entropy over the mean entropy of uniform attention (1 = uniform)."""
        entropy = _entropies(alpha, graph)  # (H, N)
        uniform = graph.degrees().double().log()  # (N,): entropy of uniform attention over N_i
        mean_alpha = alpha.mean(0)  # (nnz,)
        if data.num_nodes <= 64:
            centre, keep = None, torch.ones_like(graph.rows, dtype=torch.bool)
        else:  # a test node with 6-12 neighbours, the first by id
            deg = graph.degrees()
            candidates = [int(i) for i in data.test if 7 <= int(deg[i]) <= 13]
            centre = candidates[0] if candidates else int(data.test[0])
            keep = graph.rows == centre
        ctx.save_json("attention.json", {
            "dataset": data.name, "centre": centre,
            "entropy": entropy.tolist(), "uniform": uniform.tolist(),
            "pairs": {"query": graph.rows[keep].tolist(), "key": graph.cols[keep].tolist(),
                      "alpha": mean_alpha[keep].tolist()},
            "edges": data.edge_index.t().tolist() if centre is None else [],
            "labels": data.y.tolist() if data.num_nodes <= 64 else {
                str(i): int(data.y[i]) for i in set(graph.cols[keep].tolist()) | {centre}},
        })
        return float(entropy.mean() / uniform.mean().clamp_min(1e-12))

    def figures(self, run_dir: Path, config: GatCoraConfig) -> list[Figure]:
        path = run_dir / "attention.json"
        if not path.exists():
            return []
        d = json.loads(path.read_text())
        out = run_dir / "figures"
        out.mkdir(parents=True, exist_ok=True)
        return [self._neighbourhood(d, out), self._entropy(d, out)]

    def _neighbourhood(self, d: dict[str, Any], out: Path) -> Figure:
        import networkx as nx  # installed with torch

        plt = pyplot()
        q, k, a = d["pairs"]["query"], d["pairs"]["key"], d["pairs"]["alpha"]
        labels = d["labels"]
        label_of = (lambda i: labels[i]) if isinstance(labels, list) else (lambda i: labels[str(i)])
        g = nx.DiGraph()
        for i, j, w in zip(q, k, a, strict=True):
            if i != j:
                g.add_edge(j, i, alpha=w)  # j -> i: i attends to j
        fig, ax = plt.subplots(figsize=(7, 6))
        if d["centre"] is None:
            pos = nx.spring_layout(g.to_undirected(), seed=0)
            caption = (f"{d['dataset']}: every edge j→i coloured by the attention α_ij node i pays to j (first layer, "
                       "heads averaged; drawn as arrows into the attending node); node colour: class.")
        else:
            pos = nx.shell_layout(g, nlist=[[d["centre"]], [n for n in g.nodes if n != d["centre"]]])
            caption = (f"{d['dataset']}: node {d['centre']} and its neighbours; each edge coloured by the attention "
                       "the centre pays that neighbour (first layer, heads averaged); node colour: class.")
        edges = list(g.edges)
        weights = [g.edges[e]["alpha"] for e in edges]
        nx.draw_networkx_nodes(g, pos, ax=ax, node_size=160, node_color=[label_of(n) for n in g.nodes],
                               cmap="tab10", vmin=0, vmax=9)
        nx.draw_networkx_labels(g, pos, ax=ax, font_size=7)
        nx.draw_networkx_edges(g, pos, ax=ax, edgelist=edges, edge_color=weights, edge_cmap=plt.cm.viridis,
                                       edge_vmin=0, edge_vmax=max(weights, default=1), width=1.8, arrows=True,
                                       arrowsize=8, connectionstyle="arc3,rad=0.08")
        if weights:
            sm = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(0, max(weights)))
            fig.colorbar(sm, ax=ax, label="attention α_ij")
        ax.axis("off")
        fig.savefig(out / "gat_neighbourhood.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        return Figure("figures/gat_neighbourhood.png", caption)

    def _entropy(self, d: dict[str, Any], out: Path) -> Figure:
        plt = pyplot()
        entropy, uniform = d["entropy"], d["uniform"]
        heads = len(entropy)
        cols = min(4, heads)
        rows = math.ceil(heads / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
        top = max(max(uniform), max(max(h) for h in entropy)) or 1.0
        bins = [top * i / 30 for i in range(31)]
        for h in range(rows * cols):
            ax = axes[h // cols][h % cols]
            if h >= heads:
                ax.axis("off")
                continue
            ax.hist(uniform, bins=bins, alpha=0.5, label="uniform")
            ax.hist(entropy[h], bins=bins, alpha=0.6, label="learned")
            ax.set_title(f"head {h}", fontsize=9)
            ax.set_xlabel("entropy (nats)", fontsize=8)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "gat_entropy.png", dpi=100)
        plt.close(fig)
        return Figure("figures/gat_entropy.png",
                      f"{d['dataset']}: per head of the first layer, the distribution over nodes of the attention "
                      "entropy −Σ_j α_ij log α_ij, against the entropy log|N_i| of uniform attention over the same "
                      "neighbourhood. Learned attention lower than uniform = the heads prefer some neighbours.")
