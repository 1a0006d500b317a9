"""``vision-attention``: self-attention over image patches with 2-D positions (a small ViT) on the 8x8 digits.

Data (:mod:`qkv.tasks.digits`): scikit-learn's 1,797 handwritten digits, 8x8 pixels, split once (seeded) into
train, validation (for choosing the weights: the best validation accuracy is kept) and test (reported).
Training images are shifted by up to ``augment_shift`` pixels (a seeded draw per batch).

Model (:class:`DigitViT`; Dosovitskiy et al. 2021, §3.1, eq. 1-4; seed 003, Lee's lecture: an image is a set
of vectors): :class:`qkv.layers.patches.PatchEmbedding` cuts the image into ``patch x patch`` patches
(``2`` -> a 4x4 grid of 16 tokens; ``1`` -> 64 pixel tokens), projects them linearly, prepends a class token
and adds the 2-D sine-cosine positions of :func:`qkv.positional.grid.sinusoidal_2d`; optionally each layer
adds a learned 2-D relative-position bias (:class:`qkv.positional.grid.GridRelativePositionBias`, Swin's
eq. 4). A pre-LN :class:`qkv.models.TransformerEncoder` (every attention ``qkv.attend`` with the scaled dot
score) follows, and the class token (``pool="cls"``) or the mean of the patch tokens (``pool="mean"``) is
classified.

The figure overlays, on held-out digits, what each head of each layer attends to: the class token's
attention over the patches (with mean pooling: the attention each patch receives, averaged over queries),
reshaped to the patch grid.

Shape legend: ``B`` batch, ``P`` patches, ``C = 1`` prefix (class) token, ``E`` width, ``H`` heads,
``Gh x Gw`` the patch grid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from qkv.experiments.base import Experiment, ExperimentResult, Figure, RunContext, Table, Target
from qkv.experiments.registry import register
from qkv.experiments.seq2seq_common import model_device
from qkv.layers.patches import PatchEmbedding
from qkv.models.transformer import TransformerEncoder, TransformerEncoderLayer, TransformerOutput
from qkv.positional.grid import GridRelativePositionBias
from qkv.tasks.digits import SIDE, load_digits
from qkv.train.loop import TrainConfig
from qkv.train.seeding import batch_seed

__all__ = ["DigitViT", "ShiftedImages", "VisionAttention", "VisionAttentionConfig", "VisionModelConfig", "accuracy",
           "shift"]


@dataclass(frozen=True)
class VisionModelConfig:
    """Patch size, width, heads, layers, feed-forward width, dropout, pooling, relative 2-D bias."""

    patch: int = 2
    dim: int = 64
    num_heads: int = 4
    num_layers: int = 3
    ff_dim: int = 128
    dropout: float = 0.1
    pool: str = "cls"
    relative_bias: bool = True

    def __post_init__(self) -> None:
        if self.patch not in (1, 2, 4, 8):
            raise ValueError(f"model.patch must divide 8 (1, 2, 4 or 8), got {self.patch}")
        if self.pool not in ("cls", "mean"):
            raise ValueError(f"model.pool must be 'cls' or 'mean', got {self.pool!r}")


@dataclass(frozen=True)
class VisionAttentionConfig:
    valid_fraction: float = 0.1
    test_fraction: float = 0.2
    augment_shift: int = 1
    model: VisionModelConfig = field(default_factory=VisionModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=3000, batch_size=64, lr=2e-3, warmup_steps=100, eval_every=200, checkpoint_every=500,
        weight_decay=0.05, monitor="acc", monitor_mode="max"))

    def __post_init__(self) -> None:
        if not (0 < self.valid_fraction < 1 and 0 < self.test_fraction < 1 and self.valid_fraction
                + self.test_fraction < 1):
            raise ValueError(f"valid_fraction and test_fraction must be in (0, 1) with a sum < 1, got "
                             f"{self.valid_fraction}, {self.test_fraction}")
        if not 0 <= self.augment_shift < SIDE // 2:
            raise ValueError(f"augment_shift must be in [0, {SIDE // 2}), got {self.augment_shift}")


def shift(images: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """``images (B, 1, S, S)`` translated by ``(dy, dx)`` pixels each (``(B,)`` ints), zeros shifted in."""
    side = images.shape[-1]
    pad = int(max(dy.abs().max(), dx.abs().max())) if dy.numel() else 0
    if pad == 0:
        return images
    padded = F.pad(images, (pad, pad, pad, pad))  # (B, 1, S + 2p, S + 2p)
    rows = (torch.arange(side)[None, :] + pad - dy[:, None])  # (B, S)
    cols = (torch.arange(side)[None, :] + pad - dx[:, None])  # (B, S)
    b = torch.arange(images.shape[0])[:, None, None]
    return padded[b, 0, rows[:, :, None], cols[:, None, :]][:, None]  # (B, 1, S, S)


class ShiftedImages:
    """Training images, each batch randomly shifted by up to ``max_shift`` pixels; a :class:`qkv.train.BatchSource`.

    The shifts of a batch come from a generator seeded by ``seed`` and the batch's indices (a resumed run
    draws the same ones).
    """

    def __init__(self, images: Tensor, labels: Tensor, *, max_shift: int, seed: int) -> None:
        self.images, self.labels, self.max_shift, self.seed = images, labels, max_shift, seed

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, indices: Tensor) -> dict[str, Tensor]:
        x = self.images[indices]
        if self.max_shift:
            gen = torch.Generator().manual_seed(batch_seed(self.seed, indices))
            d = torch.randint(-self.max_shift, self.max_shift + 1, (2, len(indices)), generator=gen)
            x = shift(x, d[0], d[1])
        return {"images": x, "labels": self.labels[indices]}


class DigitViT(nn.Module):
    """Patches + class token + 2-D positions, a pre-LN Transformer encoder, a linear classifier.

    Args:
        patch: patch side (``2``: 16 tokens of 4 pixels; ``1``: 64 pixel tokens).
        dim, num_heads, num_layers, ff_dim, dropout: the encoder's.
        pool: ``"cls"`` (classify the class token) or ``"mean"`` (the mean of the patch tokens).
        relative_bias: add a learned 2-D relative-position bias to every layer's attention.
        num_classes: 10.
    """

    def __init__(self, *, patch: int = 2, dim: int = 64, num_heads: int = 4, num_layers: int = 3, ff_dim: int = 128,
                 dropout: float = 0.1, pool: str = "cls", relative_bias: bool = True, num_classes: int = 10) -> None:
        super().__init__()
        self.pool = pool
        self.embed = PatchEmbedding(SIDE, patch, 1, dim, class_token=pool == "cls")
        self.grid, self.prefix = self.embed.grid, self.embed.prefix
        layers = []
        for _ in range(num_layers):
            bias = (GridRelativePositionBias(num_heads, grid=self.grid, prefix=self.prefix) if relative_bias
                    else None)
            layers.append(TransformerEncoderLayer(dim, num_heads, ff_dim=ff_dim, dropout=dropout, activation="gelu",
                                                  norm_first=True, position_bias=bias))
        self.encoder = TransformerEncoder(layers)
        self.classify = nn.Linear(dim, num_classes)

    def forward(self, images: Tensor, *, return_weights: bool = False) -> tuple[Tensor, TransformerOutput]:
        """``images (B, 1, 8, 8)`` -> logits ``(B, 10)`` and the encoder's output (weights ``(B, H, C+P, C+P)``)."""
        out = self.encoder(self.embed(images), return_weights=return_weights)  # (B, C + P, E)
        pooled = out.output[:, 0] if self.pool == "cls" else out.output.mean(1)  # (B, E)
        return self.classify(pooled), out

    def patch_attention(self, weights: Tensor) -> Tensor:
        """One layer's weights ``(B, H, C+P, C+P)`` -> what each head attends to on the grid, ``(B, H, Gh, Gw)``:
        the class token's attention over the patches, or (mean pooling) the attention each patch receives."""
        w = weights[:, :, 0, self.prefix :] if self.pool == "cls" else weights.mean(2)  # (B, H, P)
        return rearrange(w, "b h (gh gw) -> b h gh gw", gh=self.grid[0])  # (B, H, Gh, Gw)


def _loss(model: DigitViT, batch: dict[str, Tensor]) -> Tensor:
    logits, _ = model(batch["images"])
    return F.cross_entropy(logits, batch["labels"])


def accuracy(model: DigitViT, images: Tensor, labels: Tensor) -> float:
    device = model_device(model)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits, _ = model(images.to(device))
    model.train(was_training)
    return float((logits.argmax(-1).cpu() == labels).float().mean())


def _split(config: VisionAttentionConfig, seed: int) -> dict[str, tuple[Tensor, Tensor]]:
    digits = load_digits()
    images = rearrange(digits.images, "n (h w) -> n 1 h w", h=SIDE)  # (N, 1, 8, 8)
    perm = torch.randperm(len(digits.labels), generator=torch.Generator().manual_seed(seed))
    n_test, n_valid = round(config.test_fraction * len(perm)), round(config.valid_fraction * len(perm))
    parts = {"test": perm[:n_test], "valid": perm[n_test : n_test + n_valid], "train": perm[n_test + n_valid :]}
    return {k: (images[idx], digits.labels[idx]) for k, idx in parts.items()}


@register
class VisionAttention(Experiment):
    name = "vision-attention"
    description = "Self-attention over patches of the 8x8 digits with 2-D positions: accuracy, attention on the image"
    Config = VisionAttentionConfig
    targets = (Target("test_acc", ">=", 0.97, "test accuracy (weights chosen on the validation split)"),)
    quick_overrides: ClassVar[dict[str, Any]] = {
        "model.num_layers": 2, "model.dim": 48, "model.ff_dim": 96, "model.dropout": 0.0, "train.max_steps": 600,
        "train.eval_every": 300, "train.checkpoint_every": 600, "train.lr": 3e-3,
    }
    quick_targets = (Target("test_acc", ">=", 0.85, "test accuracy after the quick run"),)

    def run(self, config: VisionAttentionConfig, ctx: RunContext) -> ExperimentResult:
        split = _split(config, ctx.seed)
        train = ShiftedImages(*split["train"], max_shift=config.augment_shift, seed=ctx.seed)
        m = config.model
        ctx.seed_variant("vit")
        model = DigitViT(patch=m.patch, dim=m.dim, num_heads=m.num_heads, num_layers=m.num_layers, ff_dim=m.ff_dim,
                         dropout=m.dropout, pool=m.pool, relative_bias=m.relative_bias)
        fit = ctx.fit("vit", model, train, _loss, train=config.train,
                      evaluate=lambda mod: {"acc": accuracy(mod, *split["valid"])})
        model = model.cpu()
        metrics = {name: accuracy(model, *split[name]) for name in ("train", "valid", "test")}
        metrics = {f"{k}_acc": v for k, v in metrics.items()}
        images, labels = split["test"]
        shown = torch.cat([torch.nonzero(labels == d).squeeze(1)[:1] for d in (0, 2, 3, 4, 7, 9)])
        model.eval()
        with torch.no_grad():
            logits, out = model(images[shown], return_weights=True)
        maps = [model.patch_attention(w) for w in out.weights]  # per layer (B, H, Gh, Gw)
        cells = torch.stack(maps, 1).flatten(1, 2)  # (B, N * H, Gh, Gw): layer-major, then head
        ctx.save_json("vision_attention.json", {
            "images": images[shown, 0].tolist(), "labels": labels[shown].tolist(),
            "predicted": logits.argmax(-1).tolist(), "pool": m.pool, "patch": m.patch,
            "maps": [[[[round(float(x), 4) for x in row] for row in cell] for cell in example] for example in cells],
            "columns": [f"L{n + 1} h{h + 1}" for n in range(len(maps)) for h in range(maps[0].shape[1])],
        })
        tokens = model.grid[0] * model.grid[1]
        return ExperimentResult(metrics=metrics, tables=[Table(
            "digits, self-attention over patches", ["patch", "tokens", "pooling", "train", "valid", "test", "steps",
                                                    "best step"],
            [[f"{m.patch}x{m.patch}", tokens + model.prefix, m.pool, metrics["train_acc"], metrics["valid_acc"],
              metrics["test_acc"], fit.steps, fit.best_step]])],
            notes=[f"{len(split['train'][1])} train / {len(split['valid'][1])} valid / {len(images)} test images"])

    def figures(self, run_dir: Path, config: VisionAttentionConfig) -> list[Figure]:
        from qkv.viz.mpl import pyplot

        path = run_dir / "vision_attention.json"
        if not path.exists():
            return []
        data = json.loads(path.read_text())
        plt = pyplot()
        n, cols = len(data["images"]), data["columns"]
        fig, axes = plt.subplots(n, 1 + len(cols), figsize=(1.25 * (1 + len(cols)), 1.35 * n), squeeze=False)
        for i in range(n):
            image = torch.tensor(data["images"][i])  # (8, 8)
            axes[i][0].imshow(image.numpy(), cmap="gray_r", vmin=0, vmax=1)
            axes[i][0].set_ylabel(f"{data['labels'][i]} -> {data['predicted'][i]}", fontsize=8)
            for j, name in enumerate(cols):
                grid = torch.tensor(data["maps"][i][j])  # (Gh, Gw)
                up = grid.repeat_interleave(SIDE // grid.shape[0], 0).repeat_interleave(SIDE // grid.shape[1], 1)
                ax = axes[i][j + 1]
                ax.imshow(image.numpy(), cmap="gray", vmin=0, vmax=1)
                ax.imshow(up.numpy(), cmap="inferno", alpha=0.6, vmin=0)
                if i == 0:
                    ax.set_title(name, fontsize=7)
            for ax in axes[i]:
                ax.set_xticks([])
                ax.set_yticks([])
        out = run_dir / "figures" / "vision_attention.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100, bbox_inches="tight")
        plt.close(fig)
        what = ("the class token's attention over the patches" if data["pool"] == "cls"
                else "the attention each patch receives (mean over queries)")
        return [Figure("figures/vision_attention.png",
                       f"Held-out digits (label -> prediction) and, per layer (L) and head (h), {what}, "
                       f"reshaped to the {data['patch']}x{data['patch']}-pixel patch grid and overlaid on the image.")]
