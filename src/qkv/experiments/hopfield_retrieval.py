"""``hopfield-retrieval``: classical vs modern Hopfield retrieval of corrupted digits, and the modern capacity.

Stored patterns: scikit-learn's 8x8 digits binarised to ±1 (``N = 64`` pixels; :mod:`qkv.tasks.digits`),
distinct ones only. Probes: a stored digit with a fraction of its pixels flipped or masked (set to 0,
"unknown"; :func:`qkv.tasks.corruption.corrupt`). Retrieval is *exact* when the retrieved state, taken
to ±1, equals the stored digit in every pixel.

* classical: Hebbian (seed 001 §8.6.1) and pseudo-inverse storage
  (:class:`qkv.memory.ClassicalHopfield`), asynchronous updates to a fixed point;
* modern: one update :math:`\\xi \\leftarrow X\\operatorname{softmax}(\\beta X^\\top \\xi)`
  (:func:`qkv.memory.hopfield.modern.update`, one call of :func:`qkv.attend`; Ramsauer et al. 2020 eq. 3);
* the best any memory can do: the stored digit nearest to the probe (an oracle, for reference:
  near-duplicate digits cannot be told apart once enough pixels are corrupted).

Measured: exact-retrieval accuracy against the number of stored digits and against the corruption, for
each network; accuracy against :math:`\\beta` (small :math:`\\beta` gives metastable averages of similar
digits — the transformer's default :math:`1/\\sqrt{64}` is too small for retrieval); and the modern
network's capacity on random ±1 patterns of dimension 64 (issue 12: :math:`10^4` patterns retrieved in one
step, 100 %), up to where it breaks. The classical network holds about ``0.14 N = 9`` random patterns
and fewer correlated ones; the modern one holds thousands. Also measured: the modern energy (eq. 2,
:func:`qkv.memory.hopfield.modern.energy`) of the probes before one update, after it and at the fixed
point, with the updates needed to reach the fixed point (largest change below ``tol``), for the digits
and for well-separated random patterns; the metastable example (small :math:`\\beta`) is iterated to its
fixed point.

Shape legend: ``P`` stored patterns ``(P, N)`` with ``N = 64`` pixels (or ``random_dim``), ``B`` probes
``(B, N)``; the modern update is called as ``(1, B, N)`` against ``(1, P, N)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from qkv.experiments.base import Experiment, ExperimentResult, Figure, RunContext, Table, Target
from qkv.experiments.registry import register
from qkv.memory.hopfield import modern
from qkv.memory.hopfield.classical import ClassicalHopfield
from qkv.tasks.corruption import corrupt, random_patterns
from qkv.tasks.digits import distinct, load_digits
from qkv.viz.mpl import pyplot

__all__ = ["HopfieldRetrieval", "HopfieldRetrievalConfig", "retrieve_all"]

NETWORKS = ("hebbian", "pseudo_inverse", "modern", "nearest")


@dataclass(frozen=True)
class HopfieldRetrievalConfig:
    """Config of ``hopfield-retrieval``.

    Attributes:
        counts: numbers of stored digits.
        corruptions: fractions of corrupted pixels.
        kinds: corruption kinds, ``"flip"`` and/or ``"mask"``.
        probes: probes per cell, drawn without replacement: each a different stored digit when at least
            ``probes`` are stored, else every stored digit equally often (up to one).
        beta: the modern network's inverse temperature.
        betas: the values of the beta sweep.
        sweep_count, sweep_corruption: stored digits and corruption of the beta sweep and of the
            accuracy-vs-corruption curves.
        random_counts: stored random ±1 patterns of ``random_dim`` for the modern capacity curve.
        random_corruptions: fractions of flipped components for that curve.
        random_probes: probes per cell of that curve.
        max_sweeps: asynchronous sweeps of the classical network.
        max_updates, tol: the most modern updates, and the largest change per component that counts as
            converged, for the energy / steps-to-convergence measurement and the metastable example.
    """

    counts: tuple[int, ...] = (2, 5, 10, 20, 50, 100, 200, 500, 1000)
    corruptions: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4)
    kinds: tuple[str, ...] = ("flip", "mask")
    probes: int = 200
    beta: float = 1.0
    betas: tuple[float, ...] = (0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
    sweep_count: int = 100
    sweep_corruption: float = 0.1
    random_dim: int = 64
    random_counts: tuple[int, ...] = (100, 1000, 10_000, 30_000, 100_000, 300_000, 1_000_000)
    random_corruptions: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3)
    random_probes: int = 500
    max_sweeps: int = 30
    max_updates: int = 200
    tol: float = 1e-6

    def __post_init__(self) -> None:
        if not self.counts or min(self.counts) < 1 or not self.random_counts or min(self.random_counts) < 2:
            raise ValueError(f"counts must be >= 1 and random_counts >= 2, got {self.counts}, {self.random_counts}")
        if any(not 0 <= c <= 1 for c in (*self.corruptions, *self.random_corruptions, self.sweep_corruption)):
            raise ValueError("corruption fractions must be in [0, 1]")
        if not self.kinds or any(k not in ("flip", "mask") for k in self.kinds):
            raise ValueError(f"kinds must be 'flip' and/or 'mask', got {self.kinds}")
        if self.beta <= 0 or any(b <= 0 for b in self.betas):
            raise ValueError(f"beta and betas must be positive, got {self.beta}, {self.betas}")
        if min(self.probes, self.random_probes, self.max_sweeps, self.sweep_count, self.random_dim) < 1:
            raise ValueError("probes, random_probes, max_sweeps, sweep_count and random_dim must be >= 1")
        if self.max_updates < 1 or not self.tol >= 0:
            raise ValueError(f"max_updates must be >= 1 and tol >= 0, got {self.max_updates}, {self.tol}")


def _exact(retrieved: Tensor, targets: Tensor) -> Tensor:
    """``(B,)`` True where ``retrieved`` taken to ±1 (0 counts as wrong) equals the target in every component."""
    return torch.all(torch.sign(retrieved) == targets, dim=-1)


def draw_probes(count: int, probes: int, generator: torch.Generator) -> Tensor:
    """``(probes,)`` indices into ``count`` stored patterns without replacement: all different when
    ``count >= probes``, else whole random permutations one after another (each pattern equally often, up to one)."""
    reps = -(-probes // count)
    return torch.cat([torch.randperm(count, generator=generator) for _ in range(reps)])[:probes]


def iterate_modern(probes: Tensor, stored: Tensor, *, beta: float, max_updates: int, tol: float
                   ) -> tuple[Tensor, Tensor]:
    """Modern updates of ``probes (B, N)`` until each moves less than ``tol``: ``(states (B, N), updates (B,))``.

    ``updates[b]`` counts the updates probe ``b`` needed (its last one moved it less than ``tol``);
    ``max_updates + 1`` where it never settled.
    """
    state = probes
    steps = torch.full((probes.shape[0],), max_updates + 1)
    for t in range(1, max_updates + 1):
        new = modern.update(state, stored, beta=beta)
        moved = (new - state).abs().amax(-1)  # (B,)
        steps = torch.where((moved < tol) & (steps > max_updates), t, steps)
        state = new
        if bool((steps <= max_updates).all()):
            break
    return state, steps


def energy_and_steps(probes: Tensor, stored: Tensor, *, beta: float, max_updates: int, tol: float
                     ) -> dict[str, float]:
    """Modern energy (eq. 2) of ``probes`` before one update, after it and at the fixed point; updates taken."""
    p64, s64 = probes.double(), stored.double()
    one = modern.update(p64, s64, beta=beta)
    fixed, steps = iterate_modern(p64, s64, beta=beta, max_updates=max_updates, tol=tol)
    e0, e1, ef = (modern.energy(x, s64, beta=beta) for x in (p64, one, fixed))  # (B,) each
    settled = steps <= max_updates
    return {"energy_before": float(e0.mean()), "energy_after_one": float(e1.mean()), "energy_fixed": float(ef.mean()),
            "energy_decreased": float((e1 <= e0 + 1e-9).float().mean()),
            "energy_never_increased": float(((e1 <= e0 + 1e-9) & (ef <= e1 + 1e-9)).float().mean()),
            "settled": float(settled.float().mean()),
            "updates_mean": float(steps[settled].double().mean()) if bool(settled.any()) else float("nan"),
            "updates_max": int(steps.max())}


def retrieve_all(stored: Tensor, probes: Tensor, *, beta: float, max_sweeps: int,
                 generator: torch.Generator, networks: tuple[str, ...] = NETWORKS) -> dict[str, Tensor]:
    """Retrieve ``probes (B, N)`` from ``stored (P, N)`` with each network: ``{network: (B, N) state}``."""
    out: dict[str, Tensor] = {}
    for rule in ("hebbian", "pseudo_inverse"):
        if rule in networks:
            net = ClassicalHopfield.store(stored, rule=rule)
            out[rule] = net.run(probes, mode="async", max_steps=max_sweeps, generator=generator).states
    if "modern" in networks:
        out["modern"] = modern.update(probes.unsqueeze(0), stored.unsqueeze(0), beta=beta).squeeze(0)  # (B, N)
    if "nearest" in networks:
        out["nearest"] = stored[torch.einsum("bn,pn->bp", probes, stored).argmax(-1)]  # the oracle
    return out


def _random_capacity(config: HopfieldRetrievalConfig, gen: torch.Generator, log) -> dict[str, list[float]]:
    """One-step modern retrieval of random ±1 patterns: accuracy per (count, corruption)."""
    curves: dict[str, list[float]] = {str(c): [] for c in config.random_corruptions}
    for count in config.random_counts:
        x = random_patterns(count, config.random_dim, generator=gen)  # (P, D)
        idx = torch.randperm(count, generator=gen)[: config.random_probes]
        for c in config.random_corruptions:
            probes = corrupt(x[idx], c, generator=gen)  # (B, D)
            hits = []
            for chunk in torch.split(torch.arange(len(idx)), max(1, 2**24 // count)):  # bound the (B, P) scores
                new = modern.update(probes[chunk].unsqueeze(0), x.unsqueeze(0), beta=config.beta).squeeze(0)
                hits.append(_exact(new, x[idx[chunk]]))
            curves[str(c)].append(float(torch.cat(hits).float().mean()))
            log(f"random D={config.random_dim} P={count} flip={c:.2f}: one-step accuracy {curves[str(c)][-1]:.3f}")
    return curves


@register
class HopfieldRetrieval(Experiment):
    name = "hopfield-retrieval"
    description = "Classical vs modern Hopfield retrieval of corrupted digits; modern capacity on 10^4+ random patterns"
    Config = HopfieldRetrievalConfig
    targets = (
        Target("modern_random_10000", ">=", 1.0, "10^4 random patterns of dim 64, exact probes: one step, 100 %"),
        Target("modern_random_10000_flip0.1", ">=", 0.99, "the same with 10 % of the components flipped"),
        Target("modern_digits_100_flip0.1", ">=", 0.9, "modern, 100 digits stored, 10 % pixels flipped"),
        Target("hebbian_digits_100_flip0.1", "<=", 0.1, "classical Hebbian, same probes: far beyond its capacity"),
        Target("modern_capacity_flip0.1", ">=", 100,
               "most digits stored with >= 90 % retrieved (10 % flipped): modern"),
        Target("hebbian_capacity_flip0.1", "<=", 10, "the same for classical Hebbian (0 when no count reaches 90 %)"),
        Target("random_updates_max", "<=", 2, "well-separated random patterns: the fixed point after one update "
               "(the second update moves nothing)"),
        Target("modern_beta_small", "<=", 0.1, "smallest beta of the sweep (1/16): metastable averages, not digits"),
    )
    quick_overrides: ClassVar[dict[str, Any]] = {
        "counts": (2, 5, 10, 20, 50, 100, 300, 1000), "corruptions": (0.0, 0.1, 0.2, 0.3), "probes": 100,
        "betas": (0.0625, 0.125, 0.25, 0.5, 1.0, 4.0), "random_counts": (100, 1000, 10_000, 100_000),
        "random_corruptions": (0.0, 0.1, 0.2, 0.3), "random_probes": 300, "max_sweeps": 20,
    }
    quick_targets = (
        Target("modern_random_10000", ">=", 1.0, "10^4 random patterns of dim 64, exact probes: one step, 100 %"),
        Target("modern_digits_100_flip0.1", ">=", 0.85, "modern, 100 digits stored, 10 % pixels flipped"),
        Target("hebbian_digits_100_flip0.1", "<=", 0.1, "classical Hebbian, same probes: beyond its capacity"),
        Target("modern_beta_small", "<=", 0.1, "smallest beta of the sweep: metastable averages, not digits"),
    )

    def run(self, config: HopfieldRetrievalConfig, ctx: RunContext) -> ExperimentResult:
        gen = torch.Generator().manual_seed(ctx.seed)
        digits = load_digits()
        patterns = digits.patterns  # (1797, 64) +-1
        order = distinct(patterns, max(max(config.counts), config.sweep_count), generator=gen)
        acc: dict[str, dict[str, dict[str, list[float]]]] = {}  # kind -> network -> "c" -> [acc per count]
        for kind in config.kinds:
            acc[kind] = {net: {} for net in NETWORKS}
            for c in config.corruptions:
                for net in NETWORKS:
                    acc[kind][net][str(c)] = []
                for count in config.counts:
                    stored = patterns[order[:count]]  # (P, 64)
                    which = draw_probes(count, config.probes, gen)  # (B,)
                    probes = corrupt(stored[which], c, kind=kind, generator=gen)  # type: ignore[arg-type]
                    got = retrieve_all(stored, probes, beta=config.beta, max_sweeps=config.max_sweeps,
                                       generator=gen)
                    for net, states in got.items():
                        acc[kind][net][str(c)].append(float(_exact(states, stored[which]).float().mean()))
                ctx.log(f"{kind} {c:.2f}: " + ", ".join(
                    f"{net} {acc[kind][net][str(c)][-1]:.2f}" for net in NETWORKS) + f" at {config.counts[-1]}")
        # the beta sweep and the pictures: sweep_count digits, sweep_corruption flipped
        stored = patterns[order[: config.sweep_count]]
        which = torch.randperm(config.sweep_count, generator=gen)[: min(config.probes, config.sweep_count)]
        probes = corrupt(stored[which], config.sweep_corruption, generator=gen)
        beta_acc = [float(_exact(modern.update(probes, stored, beta=b), stored[which]).float().mean())
                    for b in config.betas]
        shown = 6
        pictures = retrieve_all(stored, probes[:shown], beta=config.beta, max_sweeps=config.max_sweeps,
                                generator=gen)
        small_beta = min(config.betas)
        # the metastable example: iterated to its fixed point at the smallest beta, not one update
        pictures["modern_small_beta"], small_steps = iterate_modern(
            probes[:shown], stored, beta=small_beta, max_updates=config.max_updates, tol=config.tol)
        separation = modern.separation(stored)
        # energy (eq. 2) before / after the update and updates to the fixed point: digits, and well-separated
        # random patterns (random_dim, the smallest random_counts, 10 % flipped)
        dynamics = {"digits": energy_and_steps(probes, stored, beta=config.beta, max_updates=config.max_updates,
                                               tol=config.tol)}
        count = min(config.random_counts)
        x = random_patterns(count, config.random_dim, generator=gen)
        idx = draw_probes(count, config.random_probes, gen)
        dynamics["random"] = energy_and_steps(corrupt(x[idx], 0.1, generator=gen), x, beta=config.beta,
                                              max_updates=config.max_updates, tol=config.tol)
        dynamics["small_beta_updates_max"] = int(small_steps.max())
        for k, d in dynamics.items():
            ctx.log(f"modern dynamics {k}: {d}")
        random_curves = _random_capacity(config, gen, ctx.log)
        ctx.save_json("retrieval.json", {
            "counts": list(config.counts), "corruptions": list(config.corruptions), "acc": acc,
            "betas": list(config.betas), "beta_acc": beta_acc, "beta": config.beta, "small_beta": small_beta,
            "sweep_count": config.sweep_count, "sweep_corruption": config.sweep_corruption,
            "pictures": {"stored": stored[which[:shown]].tolist(), "probe": probes[:shown].tolist(),
                         **{k: v.tolist() for k, v in pictures.items()}},
            "random_dim": config.random_dim, "random_counts": list(config.random_counts),
            "random": random_curves, "separation_median": float(separation.median()), "dynamics": dynamics,
        })
        metrics = self._metrics(config, acc, random_curves, beta_acc)
        for k in ("digits", "random"):
            for name in ("energy_before", "energy_after_one", "energy_fixed", "energy_never_increased", "settled",
                         "updates_mean", "updates_max"):
                metrics[f"{k}_{name}"] = dynamics[k][name]
        metrics["small_beta_updates_max"] = dynamics["small_beta_updates_max"]
        tables = self._tables(config, acc, random_curves, beta_acc)
        tables.append(Table(
            f"modern dynamics (beta = {config.beta:g}, 10 % flipped): energy (eq. 2, mean over probes) and updates "
            f"until the largest change is < {config.tol:g}",
            ["patterns", "E before", "E after one update", "E at the fixed point", "never increased", "settled",
             "updates (mean)", "updates (max)"],
            [[f"{config.sweep_count} digits", *(dynamics["digits"][c] for c in (
                "energy_before", "energy_after_one", "energy_fixed", "energy_never_increased", "settled",
                "updates_mean", "updates_max"))],
             [f"{count} random, dim {config.random_dim}", *(dynamics["random"][c] for c in (
                 "energy_before", "energy_after_one", "energy_fixed", "energy_never_increased", "settled",
                 "updates_mean", "updates_max"))]]))
        return ExperimentResult(metrics=metrics, tables=tables, notes=[
            f"Digits: {config.sweep_count} stored, median separation Delta = {float(separation.median()):.0f} "
            f"(x_i.x_i = 64): one-step retrieval needs beta * Delta >> log N; the transformer's default "
            f"beta = 1/8 gives metastable averages (beta sweep).",
            "'nearest' is the oracle: the stored digit closest to the probe (the best any memory can do).",
        ])

    @staticmethod
    def _metrics(config, acc, random_curves, beta_acc) -> dict[str, float]:
        metrics: dict[str, float] = {}
        counts = list(config.counts)
        flip = acc.get("flip")
        if flip is not None and "0.1" in flip["modern"]:
            for net in NETWORKS:
                if 100 in counts:
                    metrics[f"{net}_digits_100_flip0.1"] = flip[net]["0.1"][counts.index(100)]

            def most(net: str) -> int:
                ok = [n for n, a in zip(counts, flip[net]["0.1"], strict=True) if a >= 0.9]
                return max(ok) if ok else 0

            for net in NETWORKS:
                metrics[f"{net}_capacity_flip0.1"] = most(net)
        for c, curve in random_curves.items():
            for n, a in zip(config.random_counts, curve, strict=True):
                if n == 10_000:
                    metrics["modern_random_10000" + ("" if float(c) == 0 else f"_flip{c}")] = a
        metrics["modern_beta_small"] = beta_acc[0]
        metrics["modern_beta_large"] = beta_acc[-1]
        return metrics

    @staticmethod
    def _tables(config, acc, random_curves, beta_acc) -> list[Table]:
        tables = []
        for kind, nets in acc.items():
            rows = [[net, c, *vals] for net in NETWORKS for c, vals in nets[net].items()]
            tables.append(Table(f"exact retrieval of digits ({kind}), by number stored",
                                ["network", f"{kind} fraction", *(str(n) for n in config.counts)], rows))
        tables.append(Table(f"modern, one step, random +-1 patterns of dim {config.random_dim}",
                            ["flipped", *(f"{n:,}" for n in config.random_counts)],
                            [[c, *curve] for c, curve in random_curves.items()]))
        tables.append(Table(f"modern vs beta: {config.sweep_count} digits, {config.sweep_corruption:.0%} flipped",
                            ["beta", *map(str, config.betas)], [["exact retrieval", *beta_acc]]))
        return tables

    def figures(self, run_dir: Path, config: HopfieldRetrievalConfig) -> list[Figure]:
        path = run_dir / "retrieval.json"
        if not path.exists():
            return []
        data = json.loads(path.read_text())
        plt = pyplot()
        out_dir = run_dir / "figures"
        out_dir.mkdir(parents=True, exist_ok=True)
        styles = {"hebbian": "o-", "pseudo_inverse": "s-", "modern": "^-", "nearest": "k:"}
        kinds = list(data["acc"])
        fig, axes = plt.subplots(2, len(kinds) + 1, figsize=(5.2 * (len(kinds) + 1), 8), layout="constrained",
                                 squeeze=False)
        mid = data["corruptions"][min(2, len(data["corruptions"]) - 1)]
        for j, kind in enumerate(kinds):
            ax = axes[0][j]
            for net, style in styles.items():
                ax.plot(data["counts"], data["acc"][kind][net][str(mid)], style, ms=4, label=net)
            ax.axvline(0.14 * 64, color="gray", ls="--", lw=1, label="0.14 N (random patterns)")
            ax.set_xscale("log")
            ax.set_xlabel("stored digits")
            ax.set_ylabel("exact retrieval")
            ax.set_title(f"{mid:.0%} of pixels {'flipped' if kind == 'flip' else 'masked'}")
            ax.legend(fontsize=8)
            ax = axes[1][j]
            counts = data["counts"]
            pick = counts.index(data["sweep_count"]) if data["sweep_count"] in counts else len(counts) // 2
            cs = data["corruptions"]
            for net, style in styles.items():
                ax.plot(cs, [data["acc"][kind][net][str(c)][pick] for c in cs], style, ms=4, label=net)
            ax.set_xlabel(f"fraction {'flipped' if kind == 'flip' else 'masked'}")
            ax.set_ylabel("exact retrieval")
            ax.set_title(f"{counts[pick]} digits stored")
            ax.legend(fontsize=8)
        ax = axes[0][-1]
        for c, curve in data["random"].items():
            ax.plot(data["random_counts"], curve, "o-", ms=4, label=f"{float(c):.0%} flipped")
        ax.set_xscale("log")
        ax.set_xlabel(f"stored random patterns (dim {data['random_dim']})")
        ax.set_ylabel("exact retrieval after one update")
        ax.set_title(f"modern capacity (beta = {data['beta']:g})")
        ax.legend(fontsize=8)
        ax = axes[1][-1]
        ax.plot(data["betas"], data["beta_acc"], "^-")
        ax.axvline(1 / 8, color="gray", ls="--", lw=1, label="1/sqrt(64)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("beta")
        ax.set_ylabel("exact retrieval")
        ax.set_title(f"modern vs beta ({data['sweep_count']} digits, {data['sweep_corruption']:.0%} flipped)")
        ax.legend(fontsize=8)
        fig.savefig(out_dir / "hopfield_retrieval.png", dpi=100)
        plt.close(fig)

        pics = data["pictures"]
        rows = [("stored", "stored"), ("probe", "probe"), ("hebbian", "classical Hebbian"),
                ("pseudo_inverse", "classical pseudo-inverse"), ("modern", f"modern, beta = {data['beta']:g}"),
                ("modern_small_beta", f"modern, beta = {data['small_beta']:g}, fixed point (metastable)")]
        n = len(pics["probe"])
        fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n + 1.5, 1.3 * len(rows)), squeeze=False)
        for i, (key, label) in enumerate(rows):
            for j in range(n):
                ax = axes[i][j]
                ax.imshow(torch.tensor(pics[key][j]).reshape(8, 8).numpy(), cmap="gray_r", vmin=-1, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
            axes[i][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        fig.savefig(out_dir / "hopfield_pictures.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        return [
            Figure("figures/hopfield_retrieval.png",
                   "Exact retrieval of corrupted digits against the number stored and the corruption, classical "
                   "(Hebbian, pseudo-inverse) vs modern (one update) vs the nearest stored digit (oracle); the "
                   "modern network's one-step capacity on random patterns; and its accuracy against beta."),
            Figure("figures/hopfield_pictures.png",
                   "Probe -> retrieved pattern: the classical network falls into spurious mixtures, the modern one "
                   "retrieves the digit in one update; with a small beta it returns a metastable average."),
        ]
