"""Shared pieces of the seq2seq experiments: variants, batching, loss, decoding, attention figures.

``seq2seq-attention`` and ``translation-fra-eng`` (and any later experiment over
:class:`qkv.models.Seq2Seq`) build on these public helpers instead of copying them:

* :func:`parse_variant` / :func:`check_variants` / :func:`variant_model` — ``POSITION/SCORE`` variants;
* :class:`PairBatches` — encoded (source, target) pairs as a :class:`qkv.train.BatchSource`;
* :func:`seq2seq_loss`, :func:`greedy_decode`, :func:`teacher_forced`, :func:`exact_match`;
* :func:`heatmap_entry`, :func:`save_heatmap_data`, :func:`attention_figures` — the attention
  heatmaps with the real tokens on both axes, saved as JSON and redrawn by ``qkv report``.

Batches are built on the CPU and moved to the model's device by the functions that run it.

Shape legend: ``N`` examples, ``B`` batch, ``S`` source length, ``T`` target length.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from qkv.experiments.base import Figure
from qkv.models.seq2seq import POSITIONS, Seq2Seq, Seq2SeqConfig
from qkv.tasks.vocab import Vocab
from qkv.train.io import save_json
from qkv.train.loop import to_device
from qkv.train.progress import progress_iter

__all__ = [
    "SCORES",
    "Decoded",
    "PairBatches",
    "attention_figures",
    "check_variants",
    "exact_match",
    "greedy_decode",
    "heatmap_entry",
    "model_device",
    "parse_variant",
    "save_heatmap_data",
    "seq2seq_loss",
    "teacher_forced",
    "variant_model",
]

SCORES = ("additive", "dot", "general", "concat", "scaled_dot", "bilinear", "cosine")


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def parse_variant(variant: str) -> tuple[str, str]:
    """``"global/additive"`` -> ``("global", "additive")``; a ValueError lists what is valid."""
    position, _, score = variant.partition("/")
    if position not in POSITIONS or score not in SCORES:
        raise ValueError(
            f"variants: {variant!r} is not POSITION/SCORE with POSITION in {POSITIONS} and SCORE in {SCORES} "
            "(e.g. 'global/additive', 'local-p/general')"
        )
    return position, score


def check_variants(variants: Sequence[str]) -> None:
    """ValueError unless ``variants`` is a non-empty list of distinct ``POSITION/SCORE`` strings."""
    if not variants:
        raise ValueError("variants must name at least one POSITION/SCORE, e.g. 'global/general'")
    if len(set(variants)) != len(variants):
        raise ValueError(f"variants has duplicates: {list(variants)}")
    for v in variants:
        parse_variant(v)


def variant_model(variant: str, base: Seq2SeqConfig, src_vocab: Vocab, tgt_vocab: Vocab) -> Seq2Seq:
    """A :class:`Seq2Seq` for ``variant`` (``POSITION/SCORE`` replaces those fields of ``base``)."""
    position, score = parse_variant(variant)
    cfg = dataclasses.replace(base, position=position, score=score)
    return Seq2Seq(len(src_vocab), len(tgt_vocab), cfg, pad_id=tgt_vocab.pad, bos_id=tgt_vocab.bos,
                   eos_id=tgt_vocab.eos)


class PairBatches:
    """Encoded (source, target) pairs; a :class:`qkv.train.BatchSource`.

    ``src`` ``(N, S)`` without specials, ``tgt`` ``(N, T + 2)`` as ``<bos> ... <eos>`` padded.
    Batches are trimmed to their longest member.
    """

    def __init__(self, sources: Sequence[Sequence[str]], targets: Sequence[Sequence[str]], src_vocab: Vocab,
                 tgt_vocab: Vocab) -> None:
        if len(sources) != len(targets) or not sources:
            raise ValueError(f"PairBatches: need equally many non-zero sources and targets, got "
                             f"{len(sources)} and {len(targets)}")
        self.sources, self.targets = [list(s) for s in sources], [list(t) for t in targets]
        self.src, self.src_len = src_vocab.pad_batch([src_vocab.encode(s, eos=False) for s in sources])
        self.tgt, self.tgt_len = tgt_vocab.pad_batch([tgt_vocab.encode(t, bos=True) for t in targets])

    def __len__(self) -> int:
        return self.src.shape[0]

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        src_len, tgt_len = self.src_len[indices], self.tgt_len[indices]
        return {
            "src": self.src[indices, : int(src_len.max())],  # (B, S)
            "src_len": src_len,
            "tgt": self.tgt[indices, : int(tgt_len.max())],  # (B, T + 2)
        }


def seq2seq_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Token-level cross-entropy of the teacher-forced pass (padding ignored)."""
    tgt = batch["tgt"]
    out = model(batch["src"], batch["src_len"], tgt[:, :-1])
    return F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]), tgt[:, 1:].reshape(-1),
                           ignore_index=model.pad_id)


@dataclass
class Decoded:
    """Greedy outputs: token lists (up to ``<eos>``) and per-example attention ``(T_i, S_i)``."""

    tokens: list[list[str]]
    weights: list[torch.Tensor]


def greedy_decode(model: Seq2Seq, data: PairBatches, tgt_vocab: Vocab, *, max_len: int, batch_size: int = 256,
                  progress: bool = False, desc: str = "decode") -> Decoded:
    """Decode every example of ``data`` greedily (with a progress bar)."""
    model.eval()
    device = model_device(model)
    tokens, weights = [], []
    starts = range(0, len(data), batch_size)
    for start in progress_iter(starts, desc=desc, enabled=progress):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        b = to_device(data.batch(idx), device)
        out = model.greedy(b["src"], b["src_len"], max_len)
        out_tokens, out_weights = out.tokens.cpu(), out.weights.float().cpu()
        for i in range(len(idx)):
            toks = tgt_vocab.decode(out_tokens[i].tolist())
            tokens.append(toks)
            rows = min(len(toks) + 1, out_weights.shape[1])  # the tokens and the step emitting <eos>
            weights.append(out_weights[i, :rows, : int(b["src_len"][i])].clone())
    return Decoded(tokens, weights)


def exact_match(decoded: Decoded, targets: Sequence[Sequence[str]]) -> float:
    """Share of decoded outputs equal to their target token list."""
    return sum(list(h) == list(t) for h, t in zip(decoded.tokens, targets, strict=True)) / max(1, len(targets))


@torch.no_grad()
def teacher_forced(
    model: Seq2Seq, data: PairBatches, *, batch_size: int = 512
) -> tuple[float, float, list[torch.Tensor]]:
    """Mean loss, token accuracy and per-example attention ``(T_i + 1, S_i)`` of the teacher-forced pass."""
    model.eval()
    device = model_device(model)
    total_loss = total_tokens = correct = 0.0
    weights: list[torch.Tensor] = []
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        b = to_device(data.batch(idx), device)
        out = model(b["src"], b["src_len"], b["tgt"][:, :-1])
        gold = b["tgt"][:, 1:]  # (B, T + 1)
        keep = gold != model.pad_id
        total_loss += float(F.cross_entropy(out.logits[keep], gold[keep], reduction="sum"))
        correct += float((out.logits.argmax(-1)[keep] == gold[keep]).sum())
        total_tokens += float(keep.sum())
        for i in range(len(idx)):
            T = int(keep[i].sum())
            weights.append(out.weights[i, :T, : int(b["src_len"][i])].float().cpu())
    return total_loss / total_tokens, correct / total_tokens, weights


def save_heatmap_data(path: Path, entries: list[dict[str, Any]]) -> None:
    """Save heatmap panels (title, source, target, weights) as JSON so figures can be redrawn."""
    save_json(path, entries, indent=None)


def heatmap_entry(title: str, source: Sequence[str], target: Sequence[str], weights: torch.Tensor,
                  example: int) -> dict[str, Any]:
    """One heatmap panel: ``weights`` ``(T, S)`` between ``target`` and ``source`` tokens, for example ``example``."""
    return {"title": title, "example": example, "source": list(source), "target": list(target),
            "weights": [[round(float(x), 5) for x in row] for row in weights]}


def attention_figures(run_dir: Path, caption: str, *, ncols: int = 3) -> list[Figure]:
    """One PNG per shown example with a panel per variant, drawn from ``run_dir/attention.json``.

    Args:
        run_dir: the run directory (``attention.json`` in, ``figures/attention_<n>.png`` out).
        caption: the figure caption; ``{n}`` becomes the example's 1-based number.
        ncols: panels per row.
    """
    from qkv.viz.heatmap import HeatmapPanel, save_attention_panels

    path = run_dir / "attention.json"
    if not path.exists():
        return []
    entries = json.loads(path.read_text())
    figures = []
    for n in sorted({e["example"] for e in entries}):
        panels = [HeatmapPanel(e["title"], e["weights"], e["source"], e["target"])
                  for e in entries if e["example"] == n]
        name = f"figures/attention_{n}.png"
        chars = all(len(t) == 1 for t in panels[0].source)
        save_attention_panels(panels, run_dir / name, ncols=ncols,
                              suptitle="".join(panels[0].source) if chars else " ".join(panels[0].source))
        figures.append(Figure(name, caption.format(n=n + 1)))
    return figures
