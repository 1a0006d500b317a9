"""``show-attend-tell``: soft and hard attention over a CNN's grid while captioning canvases of digits.

Task (:mod:`qkv.tasks.digit_captions`): ``C x C`` canvases holding 2-4 of scikit-learn's 8x8 digits in a grid of
slots, shifted at random inside their slots; the caption names them in reading order (``<bos> three seven one
<eos>``). Train, validation and test canvases are made of disjoint pools of digit images, so the test canvases
hold digit images never seen in training.

Model (:class:`qkv.models.show_attend_tell.ShowAttendTell`, Xu et al. 2015): a four-layer CNN gives a grid of
annotation vectors (``8 x 8``, ``L = 64`` on a 32x32 canvas; each summarises a ``4 x 4``-pixel block; the last
convolution is ``1 x 1`` here, ``model.last_kernel``, so each annotation sees 9x9 pixels rather than 17x17: with
17x17 a blank block next to a digit sees the whole digit, and the soft model's most-attended block was such a
blank neighbour for 80% of its misses; 1,500-step probes on validation canvases: alignment 0.88 with 17x17,
0.955 with 9x9); an LSTM attends
over them with an MLP score of :math:`h_{t-1}` (eq. 4-6: one call of :func:`qkv.attend` per word), gated by
:math:`\\beta_t` (§4.2.1), initialised from the mean annotation (§3.1.2), with the deep output layer (eq. 7).

* ``soft``: :math:`\\hat z_t = \\sum_i \\alpha_{ti} a_i`, trained by backpropagation on the caption's negative
  log-likelihood plus the doubly stochastic penalty :math:`\\lambda \\sum_i (1 - \\sum_t \\alpha_{ti})^2` (eq. 14,
  ``penalty``). The default is :math:`\\lambda = 0`: with ``L = 64`` locations and 3-5 words the penalty cannot be
  met, its minimum is the uniform spread, and once the likelihood is fitted it is nearly all of the loss (0.57 of
  0.575 at :math:`\\lambda = 0.01`), so Adam keeps spreading the attention off the digits late in training
  (17x17 annotations: test alignment 0.83 at :math:`\\lambda = 0.01` after 3,000 steps; 0.88 on validation
  canvases at 0 after 1,500). ``--set penalty=0.01`` turns it on.
* ``hard``: one location sampled per word, :math:`\\tilde s_t \\sim \\mathrm{Multinoulli}(\\alpha_t)`, trained by
  eq. 12: the log-likelihood's gradient for the rest of the model plus REINFORCE for the attention,
  :math:`\\lambda_r (\\log p(y \\mid \\tilde s, a) - b) \\nabla \\log p(\\tilde s \\mid a)` with the moving-average
  baseline :math:`b \\leftarrow 0.9 b + 0.1 \\log p(y \\mid \\tilde s, a)` (§4.1,
  :class:`qkv.train.baseline.MovingAverageBaseline`, a buffer of the trained module, so it checkpoints), and the
  entropy bonus :math:`\\lambda_e \\nabla H[\\tilde s]`. As in §4.1, with probability ``soft_mix`` (0.5) a minibatch
  reads the expected context instead (a soft step; the paper draws this per image). ``reinforce_weight``
  :math:`\\lambda_r = 0.1`: with :math:`\\lambda_r = 1` the REINFORCE term's noise dominates the gradient (whose
  global norm is clipped to 1), and the model stayed at chance on the small canvases. At test time the hard model
  reads the most probable location (argmax of :math:`\\alpha_t`): one location per word.

  **Deviation: the hard model starts from the trained soft model** (``hard_init="soft"``; the paper trains each
  from scratch). Its training is the paper's hard attention all the same (one sampled location per word,
  REINFORCE with the moving-average baseline and the entropy bonus); only the initial weights differ. From
  scratch (``hard_init="scratch"``) it learns on the small quick canvases (36 locations; 600 hard-only steps on
  3,000 canvases: exact 0.62, alignment 0.98) but not on the full ones (64 locations; 5,000 steps: exact 0.06,
  alignment 0.09 against 0.11 by chance, the attention still uniform, 4.1 of log 64 = 4.16 nats per word): a
  sampled read lands on the right digit too rarely for the likelihood to reward it. From the soft model's
  weights it learns to caption from one location per word. What hard training itself adds is measured:
  ``hard_exact_start`` and ``hard_alignment_start`` are the soft weights read at their argmax location before
  any hard step (full run, test canvases: exact 0.903 before, 0.933 after 1,500 hard steps).

Measured on the held-out test canvases (greedy decoding): caption exact match and token accuracy (position by
position against ``w_1 .. w_n <eos>``), and **attention alignment**: the fraction of emitted digit words whose
most-attended location lies on the digit the word should name. Word ``t`` (``t < n``, the number of digits) names
the ``t``-th digit in reading order; the most-attended location is the argmax of the read's weights (for hard
attention: the location read); it lies on the digit when its ``4 x 4`` pixel block (``cell_boxes``) intersects the
digit's 8x8 box. ``chance`` is the same fraction for a location drawn uniformly (the share of the ``L`` blocks that
touch the digit's box, averaged over the same words).

For the hard model, the **variance of the gradient estimate** with and without the baseline: on one fixed
training minibatch, ``variance_samples`` estimates of the gradient of the REINFORCE term (and of the whole of eq. 12)
(fresh samples of the locations each time; the same samples for both) with the baseline ``b`` and with ``b = 0``;
reported is the
trace of their covariance, :math:`\\frac{1}{K-1} \\sum_k \\lVert g_k - \\bar g \\rVert^2`, at initialisation (``b`` from
a moving average over ``baseline_warmup`` sampled minibatches, as hard training starts: with ``hard_init="soft"``
the trained soft model's weights; keys ``*_init``), after training (the trained buffer; ``*_trained``), and on a
hard model from scratch (the initialisation ``hard_init="scratch"`` starts from, ``b`` from its own moving average;
``*_scratch``). The baseline only removes the rewards' mean: from scratch every sampled caption is about equally
bad (``log p(y)`` near its mean, far from 0) and it removes most of the variance; from the soft model the rewards of
different samples spread widely around their mean, and it removes less.

Figures: test canvases with the generated caption and, word by word, the attention map over the image (soft) or
the location read (hard), as in the paper's fig. 2-3.

Shape legend: ``N`` canvases, ``C`` canvas side, ``T`` caption steps, ``L = Gh * Gw`` locations, ``K`` samples.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.experiments.base import Experiment, ExperimentResult, Figure, RunContext, Table, Target
from qkv.experiments.registry import register
from qkv.experiments.seq2seq_common import model_device
from qkv.models.show_attend_tell import ShowAttendTell, doubly_stochastic_penalty
from qkv.tasks.digit_captions import WORDS, DigitCaptions, caption_vocab, make_captions, split_images
from qkv.tasks.digits import load_digits
from qkv.train.baseline import MovingAverageBaseline
from qkv.train.loop import TensorBatches, TrainConfig
from qkv.train.reinforce import reinforce_loss
from qkv.viz.mpl import pyplot

__all__ = ["CaptionDataConfig", "HardAttentionLearner", "SatModelConfig", "ShowAttendTellConfig",
           "ShowAttendTellExperiment", "alignment", "caption_metrics", "gradient_variance", "hard_loss",
           "majority_token_accuracy", "soft_loss"]

VARIANTS = ("soft", "hard")
HARD_INITS = ("soft", "scratch")


@dataclass(frozen=True)
class CaptionDataConfig:
    """Canvases (:func:`qkv.tasks.digit_captions.make_captions`) and the split of the digit images."""

    canvas: int = 32
    grid: int = 3
    min_digits: int = 2
    max_digits: int = 4
    train_canvases: int = 20000
    valid_canvases: int = 500
    test_canvases: int = 1000
    valid_fraction: float = 0.15  # of the digit images
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        for name in ("train_canvases", "valid_canvases", "test_canvases"):
            if getattr(self, name) < 1:
                raise ValueError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        if self.canvas % 4 or self.canvas // self.grid < 8:
            raise ValueError(f"data.canvas must be a multiple of 4 with canvas // grid >= 8, got canvas="
                             f"{self.canvas}, grid={self.grid}")


@dataclass(frozen=True)
class SatModelConfig:
    """:class:`ShowAttendTell`'s widths and options."""

    channels: tuple[int, int] = (16, 32)
    annotation_dim: int = 64
    embed_dim: int = 32
    hidden_dim: int = 128
    attention_dim: int = 64
    positions: bool = True
    gate: bool = True
    dropout: float = 0.0
    last_kernel: int = 1  # local annotations: the most-attended block lies on the digit (model docstring)


def _train(**kw: Any) -> TrainConfig:
    base = {"max_steps": 3000, "batch_size": 64, "lr": 3e-3, "warmup_steps": 50, "eval_every": 250,
            "checkpoint_every": 250, "monitor": "exact", "monitor_mode": "max"}
    return TrainConfig(**{**base, **kw})


@dataclass(frozen=True)
class ShowAttendTellConfig:
    """The experiment: data, model, the losses' weights, training of each variant, measurement sizes."""

    data: CaptionDataConfig = field(default_factory=CaptionDataConfig)
    model: SatModelConfig = field(default_factory=SatModelConfig)
    variants: tuple[str, ...] = VARIANTS
    penalty: float = 0.0  # lambda of eq. 14 (module docstring: at L = 64 it spreads the attention)
    reinforce_weight: float = 0.1  # lambda_r of eq. 12 (hard); 1.0 swamps the clipped gradient (module docstring)
    entropy_weight: float = 0.01  # lambda_e of eq. 12 (hard)
    soft_mix: float = 0.5  # hard: probability that a minibatch reads the expected context (§4.1)
    hard_init: str = "soft"  # hard starts from the trained soft model ("soft", a deviation) or from scratch
    baseline_decay: float = 0.9  # §4.1
    baseline_warmup: int = 20  # minibatches of the moving average behind the variance measured at initialisation
    variance_samples: int = 64
    variance_batch: int = 64
    shown: int = 4
    train: TrainConfig = field(default_factory=lambda: _train(max_steps=8000))
    train_hard: TrainConfig = field(default_factory=lambda: _train(max_steps=1500))

    def __post_init__(self) -> None:
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad or not self.variants:
            raise ValueError(f"variants must be a non-empty subset of {VARIANTS}, got {self.variants!r}")
        if self.hard_init not in HARD_INITS:
            raise ValueError(f"hard_init must be one of {HARD_INITS}, got {self.hard_init!r}")
        if self.hard_init == "soft" and "hard" in self.variants and (
                "soft" not in self.variants or self.variants.index("soft") > self.variants.index("hard")):
            raise ValueError(f"hard_init='soft' needs the soft variant trained first, got variants={self.variants!r} "
                             "(list soft before hard, or set hard_init=scratch)")
        if not 0 <= self.soft_mix <= 1:
            raise ValueError(f"soft_mix must be in [0, 1], got {self.soft_mix}")
        for name in ("penalty", "reinforce_weight", "entropy_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.baseline_decay < 1:
            raise ValueError(f"baseline_decay must be in [0, 1), got {self.baseline_decay}")
        if self.variance_samples < 2 or self.variance_batch < 1:
            raise ValueError(f"variance_samples must be >= 2 and variance_batch >= 1, got {self.variance_samples}, "
                             f"{self.variance_batch}")


class HardAttentionLearner(nn.Module):
    """What the trainer fits for hard attention: the captioner and its REINFORCE baseline (a buffer)."""

    def __init__(self, captioner: ShowAttendTell, *, decay: float) -> None:
        super().__init__()
        self.captioner = captioner
        self.baseline = MovingAverageBaseline(decay=decay)


def _token_nll(logits: Tensor, targets: Tensor) -> Tensor:
    """``(B, T)`` negative log-likelihood per target token, 0 on padding."""
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none", ignore_index=0)  # (B*T,)
    return nll.reshape(targets.shape)  # (B, T)


def soft_loss(model: ShowAttendTell, batch: dict[str, Tensor], *, penalty: float) -> tuple[Tensor, dict[str, float]]:
    """:math:`-\\log p(y \\mid a) + \\lambda \\sum_i (1 - \\sum_t \\alpha_{ti})^2`, per caption, batch mean."""
    tokens = batch["tokens"]
    out = model(batch["images"], tokens, read="soft")
    targets = tokens[:, 1:]
    nll = _token_nll(out.logits, targets).sum(1)  # (B,)
    reg = doubly_stochastic_penalty(out.weights, targets != 0)  # (B,)
    return (nll + penalty * reg).mean(), {"nll": float(nll.detach().mean()), "penalty": float(reg.detach().mean())}


def _hard_terms(captioner: ShowAttendTell, batch: dict[str, Tensor], generator: torch.Generator | None
                ) -> tuple[Tensor, Tensor, Tensor]:
    """Per caption: ``log p(y | s, a)``, ``sum_t log p(s_t)`` and ``sum_t H[alpha_t]`` over the real words, ``(B,)``."""
    tokens = batch["tokens"]
    out = captioner(batch["images"], tokens, read="sample", generator=generator)
    targets = tokens[:, 1:]
    real = (targets != 0).to(out.entropy.dtype)  # (B, T)
    loglik = -_token_nll(out.logits, targets).sum(1)  # (B,)
    assert out.log_prob is not None
    return loglik, (out.log_prob * real).sum(1), (out.entropy * real).sum(1)


def _eq12_surrogate(loglik: Tensor, log_prob: Tensor, entropy: Tensor, baseline: Tensor | float, *,
                    reinforce_weight: float, entropy_weight: float) -> Tensor:
    """Minus eq. 12's objective: its gradient is minus the estimate of :math:`\\nabla L_s` (plus the entropy bonus)."""
    reinforce = reinforce_loss(log_prob, loglik, baseline=baseline)
    return -loglik.mean() + reinforce_weight * reinforce - entropy_weight * entropy.mean()


def hard_loss(learner: HardAttentionLearner, batch: dict[str, Tensor], *, reinforce_weight: float,
              entropy_weight: float, soft_mix: float = 0.0, penalty: float = 0.0) -> tuple[Tensor, dict[str, float]]:
    """Eq. 12 with the moving-average baseline (updated once per minibatch, §4.1).

    With probability ``soft_mix`` (drawn per minibatch from torch's global generator, which the trainer seeds and
    checkpoints) the minibatch reads the expected context instead of a sampled location and is trained as soft
    attention (§4.1: "with probability 0.5 ... set the sampled attention location to its expected value").
    """
    if soft_mix > 0 and float(torch.rand(())) < soft_mix:
        loss, info = soft_loss(learner.captioner, batch, penalty=penalty)
        return loss, {**info, "soft_read": 1.0}
    loglik, log_prob, entropy = _hard_terms(learner.captioner, batch, None)
    b = learner.baseline.update(loglik)
    loss = _eq12_surrogate(loglik, log_prob, entropy, b, reinforce_weight=reinforce_weight,
                           entropy_weight=entropy_weight)
    return loss, {"nll": float(-loglik.detach().mean()), "baseline": float(b),
                  "entropy": float(entropy.detach().mean()), "soft_read": 0.0}


def gradient_variance(captioner: ShowAttendTell, batch: dict[str, Tensor], *, baseline: float, samples: int,
                      seed: int, reinforce_weight: float = 1.0, entropy_weight: float = 0.0) -> dict[str, float]:
    """Trace of the covariance of ``samples`` gradient estimates on one minibatch, with and without the baseline ``b``.

    Two estimates per draw: the REINFORCE term alone, :math:`(\\log p(y \\mid \\tilde s, a) - b) \\nabla \\log
    p(\\tilde s \\mid a)` (what the baseline acts on; keys ``with``/``without``/``ratio``), and the whole of eq. 12
    with ``reinforce_weight`` (keys ``total_with``/``total_without``/``total_ratio``; its log-likelihood term is the
    same for both). The same location samples (one ``torch.Generator`` per draw, seeded from ``seed``) serve both
    estimators, so the difference is the baseline's alone. ``ratio`` is without / with.
    """
    params = [p for p in captioner.parameters() if p.requires_grad]
    grads: dict[str, list[Tensor]] = {"with": [], "without": [], "total_with": [], "total_without": []}
    was = captioner.training
    captioner.eval()  # batch-norm statistics stay as they are (the reads are sampled all the same)
    for k in range(samples):
        gen = torch.Generator(device=batch["images"].device).manual_seed(seed * 100003 + k)
        loglik, log_prob, entropy = _hard_terms(captioner, batch, gen)
        for name, b in (("with", baseline), ("without", 0.0)):
            score_term = reinforce_loss(log_prob, loglik, baseline=b)
            total = _eq12_surrogate(loglik, log_prob, entropy, b, reinforce_weight=reinforce_weight,
                                    entropy_weight=entropy_weight)
            for key, loss in ((name, score_term), (f"total_{name}", total)):
                g = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
                grads[key].append(torch.cat([(x if x is not None else torch.zeros_like(p)).reshape(-1)
                                             for x, p in zip(g, params, strict=True)]).double())
    captioner.train(was)
    out = {}
    for name, gs in grads.items():
        G = torch.stack(gs)  # (K, P)
        out[name] = float((G - G.mean(0)).pow(2).sum(1).sum() / (samples - 1))
    out["ratio"] = out["without"] / max(out["with"], 1e-30)
    out["total_ratio"] = out["total_without"] / max(out["total_with"], 1e-30)
    return out


def _initial_baseline(captioner: ShowAttendTell, data: DigitCaptions, *, decay: float, batches: int,
                      batch_size: int, seed: int) -> float:
    """The moving-average baseline after ``batches`` sampled minibatches of the (untrained) model."""
    base = MovingAverageBaseline(decay=decay)
    gen = torch.Generator().manual_seed(seed)
    was = captioner.training
    captioner.eval()
    with torch.no_grad():
        for _ in range(batches):
            idx = torch.randint(0, len(data), (batch_size,), generator=gen)
            loglik, _, _ = _hard_terms(captioner, {"images": data.images[idx], "tokens": data.tokens[idx]}, gen)
            base.update(loglik)
    captioner.train(was)
    return float(base.value)


def alignment(weights: Tensor, generated: Tensor, data: DigitCaptions, cells: Tensor) -> dict[str, float]:
    """Attention alignment over the emitted digit words (module docstring).

    Args:
        weights: ``(N, T, L)`` the read's weights per generated word.
        generated: ``(N, T)`` the generated ids.
        cells: ``(L, 4)`` each location's pixel block.
    """
    vocab = caption_vocab()
    first_digit = vocab.stoi[WORDS[0]]
    top = weights.argmax(-1)  # (N, T)
    hits = total = 0
    chance = 0.0
    for n in range(len(data)):
        for t in range(min(int(data.counts[n]), generated.shape[1])):
            if not first_digit <= int(generated[n, t]) < first_digit + 10:
                break
            y0, x0, y1, x1 = data.boxes[n, t].tolist()
            touch = (cells[:, 0] < y1) & (cells[:, 2] > y0) & (cells[:, 1] < x1) & (cells[:, 3] > x0)  # (L,)
            hits += bool(touch[top[n, t]])
            chance += float(touch.float().mean())
            total += 1
    return {"alignment": hits / max(total, 1), "alignment_chance": chance / max(total, 1), "aligned_words": total}


def caption_metrics(captioner: ShowAttendTell, data: DigitCaptions, *, batch_size: int = 500
                    ) -> tuple[dict[str, float], Tensor, Tensor]:
    """Greedy captions of ``data``: exact match, token accuracy, alignment; also the ids and weights."""
    vocab = caption_vocab()
    device = model_device(captioner)
    was = captioner.training
    captioner.eval()
    max_len = data.tokens.shape[1] - 1
    ids, ws = [], []
    for i in range(0, len(data), batch_size):
        dec = captioner.greedy(data.images[i : i + batch_size].to(device), bos=vocab.bos, eos=vocab.eos,
                               max_len=max_len)
        pad = max_len - dec.tokens.shape[1]
        ids.append(F.pad(dec.tokens.cpu(), (0, pad)))
        ws.append(F.pad(dec.weights.cpu(), (0, 0, 0, pad)))
    captioner.train(was)
    generated, weights = torch.cat(ids), torch.cat(ws)  # (N, T), (N, T, L)
    reference = data.tokens[:, 1:]  # (N, T): w_1 .. w_n <eos> <pad>...
    real = reference != vocab.pad
    # the generated caption up to its <eos>; an unended caption never matches
    correct = (generated == reference) & real
    exact = int((correct.sum(1) == real.sum(1)).sum()) / len(reference)  # a ratio of counts, not a float32 mean
    token_acc = int(correct.sum()) / int(real.sum())
    metrics = {"exact": exact, "token_acc": token_acc, **alignment(weights, generated, data, captioner.cell_boxes())}
    return metrics, generated, weights


def majority_token_accuracy(tokens: Tensor) -> float:
    """Token accuracy of the image-blind guess: at each position, the most frequent reference token there.

    Args:
        tokens: ``(N, T + 1)`` reference captions starting with ``<bos>`` (padding 0).
    """
    reference = tokens[:, 1:]  # (N, T)
    real = reference != 0
    hits = 0
    for t in range(reference.shape[1]):
        column = reference[real[:, t], t]
        if len(column):
            hits += int(torch.bincount(column).max())
    return hits / max(int(real.sum()), 1)


def _data(config: CaptionDataConfig, seed: int) -> dict[str, DigitCaptions]:
    digits = load_digits()
    gen = torch.Generator().manual_seed(seed)
    pools = split_images(len(digits.labels), fractions=(config.valid_fraction, config.test_fraction), generator=gen)
    kw = {"canvas": config.canvas, "grid": config.grid, "min_digits": config.min_digits,
          "max_digits": config.max_digits, "generator": gen}
    sizes = {"train": config.train_canvases, "valid": config.valid_canvases, "test": config.test_canvases}
    return {name: make_captions(digits.images[idx], digits.labels[idx], count=sizes[name], **kw)
            for name, idx in pools.items()}


def _build(config: ShowAttendTellConfig, variant: str) -> ShowAttendTell:
    m = config.model
    return ShowAttendTell(len(caption_vocab()), image_size=config.data.canvas, attention=variant,
                          channels=tuple(m.channels), annotation_dim=m.annotation_dim, embed_dim=m.embed_dim,
                          hidden_dim=m.hidden_dim, attention_dim=m.attention_dim, positions=m.positions, gate=m.gate,
                          dropout=m.dropout, last_kernel=m.last_kernel)


@register
class ShowAttendTellExperiment(Experiment):
    name = "show-attend-tell"
    description = "Show, Attend and Tell on canvases of digits: soft vs hard (REINFORCE) attention, where it looks"
    Config = ShowAttendTellConfig
    targets = (
        Target("soft_exact", ">=", 0.95, "soft attention: held-out captions exactly right"),
        Target("soft_alignment", ">=", 0.9, "soft: emitted digit words whose most-attended location is on the digit"),
        Target("hard_exact", ">=", 0.8, "hard (REINFORCE, from the soft model): held-out captions exactly right"),
        Target("hard_alignment", ">=", 0.8, "hard: the location read lies on the digit named"),
        Target("variance_ratio_scratch", ">=", 2.0,
               "hard: gradient variance without / with the baseline, on a model from scratch (not the one trained)"),
    )
    quick_overrides: ClassVar[dict[str, Any]] = {  # a 24x24 canvas, 2x2 slots, 2-3 digits: 36 locations
        "data.canvas": 24, "data.grid": 2, "data.max_digits": 3,
        "data.train_canvases": 3000, "data.valid_canvases": 200, "data.test_canvases": 300,
        "model.channels": (8, 16), "model.annotation_dim": 32, "model.hidden_dim": 64, "model.attention_dim": 32,
        "train.max_steps": 300, "train.lr": 5e-3, "train.eval_every": 300, "train.checkpoint_every": 300,
        "train_hard.max_steps": 80, "train_hard.lr": 5e-3, "train_hard.eval_every": 80,
        "train_hard.checkpoint_every": 80, "variance_samples": 16, "variance_batch": 32, "baseline_warmup": 5,
    }
    quick_targets = (
        Target("soft_exact", ">=", 0.2, "soft attention: held-out captions exactly right after 300 steps"),
        Target("soft_alignment_gain", ">=", 0.5, "soft: alignment minus chance"),
        Target("hard_alignment_gain", ">=", 0.5, "hard: alignment of the location read minus chance"),
        Target("hard_token_acc_gain", ">=", 0.25, "hard: token accuracy minus the image-blind guess"),
        Target("variance_ratio_scratch", ">=", 2.0,
               "hard: gradient variance without / with the baseline, on a model from scratch (not the one trained)"),
        Target("variance_ratio_init", ">=", 1.5,
               "hard: the same at the start of hard training (the soft model's weights)"),
    )

    def run(self, config: ShowAttendTellConfig, ctx: RunContext) -> ExperimentResult:
        data = _data(config.data, ctx.seed)
        train = TensorBatches(images=data["train"].images, tokens=data["train"].tokens)
        metrics: dict[str, float] = {}
        rows, shown, notes = [], {}, []
        vocab = caption_vocab()
        token_chance = metrics["token_acc_chance"] = majority_token_accuracy(data["test"].tokens)
        trained: dict[str, dict[str, Tensor]] = {}
        for variant in config.variants:
            ctx.seed_variant(variant)
            captioner = _build(config, variant)
            if variant == "hard" and config.hard_init == "soft":  # warm start (module docstring); resume overrides
                captioner.load_state_dict(trained["soft"])
                # the soft weights read at one location per word, before any hard step: the baseline for what hard
                # training (REINFORCE and the soft-read minibatches of §4.1) adds
                start = caption_metrics(captioner, data["test"])[0]
                metrics.update({"hard_exact_start": start["exact"], "hard_alignment_start": start["alignment"]})
                rows.append(["hard, before its training (the soft weights)", start["exact"], start["token_acc"],
                             start["alignment"], start["alignment_chance"], 0, 0])
            if variant == "soft":
                fit = ctx.fit(variant, captioner, train, lambda m, b: soft_loss(m, b, penalty=config.penalty),
                              train=config.train, evaluate=lambda m: caption_metrics(m, data["valid"])[0])
            else:
                vb = {"images": data["train"].images[: config.variance_batch],
                      "tokens": data["train"].tokens[: config.variance_batch]}
                b0 = _initial_baseline(captioner, data["train"], decay=config.baseline_decay,
                                       batches=config.baseline_warmup,
                                       batch_size=config.train_hard.batch_size, seed=ctx.seed + 1)
                var0 = gradient_variance(captioner, vb, baseline=b0, samples=config.variance_samples, seed=ctx.seed,
                                         reinforce_weight=config.reinforce_weight)
                learner = HardAttentionLearner(captioner, decay=config.baseline_decay)
                fit = ctx.fit(variant, learner, train,
                              lambda m, b: hard_loss(m, b, reinforce_weight=config.reinforce_weight,
                                                     entropy_weight=config.entropy_weight, soft_mix=config.soft_mix,
                                                     penalty=config.penalty),
                              train=config.train_hard,
                              evaluate=lambda m: caption_metrics(m.captioner, data["valid"])[0])
                learner = learner.cpu()
                b1 = float(learner.baseline.value)
                var1 = gradient_variance(captioner, vb, baseline=b1, samples=config.variance_samples, seed=ctx.seed,
                                         reinforce_weight=config.reinforce_weight)
                if config.hard_init == "scratch":
                    var_s, b_s = var0, b0
                else:  # also on a hard model from scratch, where the baseline matters most (module docstring)
                    ctx.seed_variant(variant)  # the initialisation hard_init="scratch" would train from
                    fresh = _build(config, variant)
                    b_s = _initial_baseline(fresh, data["train"], decay=config.baseline_decay,
                                            batches=config.baseline_warmup,
                                            batch_size=config.train_hard.batch_size, seed=ctx.seed + 1)
                    var_s = gradient_variance(fresh, vb, baseline=b_s, samples=config.variance_samples,
                                              seed=ctx.seed, reinforce_weight=config.reinforce_weight)
                for when, var, b in (("scratch", var_s, b_s), ("init", var0, b0), ("trained", var1, b1)):
                    metrics.update({f"variance_with_{when}": var["with"], f"variance_without_{when}": var["without"],
                                    f"variance_ratio_{when}": var["ratio"], f"baseline_{when}": b,
                                    f"total_variance_ratio_{when}": var["total_ratio"]})
            captioner = captioner.cpu()
            trained[variant] = {k: v.detach().clone() for k, v in captioner.state_dict().items()}
            m, generated, weights = caption_metrics(captioner, data["test"])
            metrics.update({f"{variant}_{k}": v for k, v in m.items() if k != "aligned_words"})
            metrics[f"{variant}_alignment_gain"] = m["alignment"] - m["alignment_chance"]
            metrics[f"{variant}_token_acc_gain"] = m["token_acc"] - token_chance
            rows.append([variant, m["exact"], m["token_acc"], m["alignment"], m["alignment_chance"], fit.steps,
                         fit.best_step])
            idx = list(range(min(config.shown, len(data["test"]))))
            shown[variant] = [{
                "image": data["test"].images[i, 0].tolist(),
                "words": [vocab.itos[int(w)] for w in generated[i] if int(w) != vocab.pad],
                "truth": [WORDS[int(d)] for d in data["test"].digits[i, : int(data["test"].counts[i])]],
                "maps": [[round(float(x), 4) for x in weights[i, t]] for t in range(generated.shape[1])
                         if int(generated[i, t]) != vocab.pad],
            } for i in idx]
        ctx.save_json("show_attend_tell.json", {"grid": list(_build(config, "soft").grid), "stride": 4,
                                                "variants": shown})
        tables = [Table("held-out canvases (greedy captions)",
                        ["attention", "exact match", "token accuracy", "alignment", "alignment by chance", "steps",
                         "best step"], rows)]
        if "variance_ratio_init" in metrics:
            tables.append(Table(
                "hard attention: trace of the covariance of the gradient estimate (one minibatch, "
                f"{config.variance_samples} samples)",
                ["when", "baseline b", "REINFORCE term with b", "without b (b = 0)", "without / with",
                 "all of eq. 12: without / with"],
                [[label, metrics[f"baseline_{w}"], metrics[f"variance_with_{w}"], metrics[f"variance_without_{w}"],
                  metrics[f"variance_ratio_{w}"], metrics[f"total_variance_ratio_{w}"]]
                 for label, w in (("a fresh model (from scratch)", "scratch"), ("start of hard training", "init"),
                                  ("after training", "trained"))]))
        notes.append(f"{len(data['train'])} train / {len(data['valid'])} valid / {len(data['test'])} test canvases; "
                     "test canvases use digit images unseen in training. Token accuracy compares w_1..w_n <eos> "
                     "position by position; guessing each position's most frequent token (blind to the image) scores "
                     f"{token_chance:.3f}.")
        return ExperimentResult(metrics=metrics, tables=tables, notes=notes)

    def figures(self, run_dir: Path, config: ShowAttendTellConfig) -> list[Figure]:
        path = run_dir / "show_attend_tell.json"
        if not path.exists():
            return []
        data = json.loads(path.read_text())
        gh, gw = data["grid"]
        stride = data["stride"]
        plt = pyplot()
        from matplotlib.patches import Rectangle

        figures = []
        for variant, examples in data["variants"].items():
            if not examples:
                continue
            cols = 1 + max(len(e["words"]) for e in examples)
            fig, axes = plt.subplots(len(examples), cols, figsize=(1.5 * cols, 1.6 * len(examples)), squeeze=False)
            for i, ex in enumerate(examples):
                image = torch.tensor(ex["image"])  # (C, C)
                axes[i][0].imshow(image.numpy(), cmap="gray_r", vmin=0, vmax=1)
                axes[i][0].set_title(" ".join(ex["truth"]), fontsize=7)
                for j in range(1, cols):
                    ax = axes[i][j]
                    if j > len(ex["words"]):
                        ax.axis("off")
                        continue
                    grid = torch.tensor(ex["maps"][j - 1]).reshape(gh, gw)  # (Gh, Gw)
                    up = grid.repeat_interleave(stride, 0).repeat_interleave(stride, 1)  # (C, C)
                    ax.imshow(image.numpy(), cmap="gray", vmin=0, vmax=1)
                    ax.imshow(up.numpy(), cmap="inferno", alpha=0.6, vmin=0)
                    if variant == "hard":
                        r, c = divmod(int(grid.flatten().argmax()), gw)
                        ax.add_patch(Rectangle((c * stride - 0.5, r * stride - 0.5), stride, stride, fill=False,
                                               edgecolor="cyan", linewidth=1.5))
                    ax.set_title(ex["words"][j - 1], fontsize=8)
                for ax in axes[i]:
                    ax.set_xticks([])
                    ax.set_yticks([])
            out = run_dir / "figures" / f"show_attend_tell_{variant}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out, dpi=100, bbox_inches="tight")
            plt.close(fig)
            what = ("the attention map over the 8x8 grid of locations (each a 4x4-pixel block)" if variant == "soft"
                    else "the location read (the most probable one at test time, cyan box)")
            figures.append(Figure(f"figures/{out.name}",
                                  f"{variant} attention: held-out canvases (title: the true digits in reading order) "
                                  f"and, for each generated word, {what}."))
        return figures
