"""``transformer-algorithmic``: an encoder-decoder Transformer on copy, reverse, sort and addition.

Task (:mod:`qkv.tasks.algorithmic`): digit strings, ``"4071"`` -> ``"4071"`` (copy), ``"1704"``
(reverse), ``"0147"`` (sort), and ``"123+45="`` -> ``"168"`` (addition, most significant digit first).
One model per task (a variant each) is trained with teacher forcing on a fixed seeded training set and
measured by **exact match** — the whole greedy output equals the answer — on held-out sources that
never occur in training.

Model (:class:`AlgorithmicTransformer`): shared token embeddings plus learned absolute positions
(:class:`qkv.positional.LearnedPositions`), the pre-LN encoder-decoder :class:`qkv.models.Transformer`
(Vaswani et al. 2017, Fig. 1; every attention is :class:`qkv.MultiHeadAttention`, i.e. ``qkv.attend`` with
the scaled dot score, eq. 1) and a linear read-out. Decoding is :func:`qkv.models.decoding.greedy` with the
decoder's key/value cache.

The figures draw, for one held-out example per task, **every head of every layer**: the encoder's
self-attention (source x source) and the decoder's cross-attention (output x source). Copy shows a
diagonal, reverse an anti-diagonal, sort attention from each output digit to the source positions holding
that digit, addition attention to the aligned digits of both operands.

Shape legend: ``B`` batch, ``S`` source tokens, ``T`` target tokens, ``E`` width, ``H`` heads, ``V`` vocabulary.
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
from qkv.functional.masks import causal, key_padding
from qkv.models.decoding import greedy
from qkv.models.transformer import Transformer, TransformerOutput
from qkv.positional.learned import LearnedPositions
from qkv.tasks.algorithmic import TASKS, AlgorithmicPairs, encode_pairs, held_out, make_pairs, vocab
from qkv.tasks.vocab import Vocab
from qkv.train.loop import TrainConfig

__all__ = ["AlgoDataConfig", "AlgoModelConfig", "AlgorithmicTransformer", "TransformerAlgorithmic",
           "TransformerAlgorithmicConfig", "exact_match"]


@dataclass(frozen=True)
class AlgoDataConfig:
    """Lengths (digits per operand for addition), training-set size, held-out sizes.

    ``addition_padded``: zero-pad the operands to ``addition_max_digits`` and the sum to one more digit
    (``"00123+00045=" -> "000168"``); False keeps ``"123+45=" -> "168"``, which needs far more training.
    """

    min_length: int = 1
    max_length: int = 10
    addition_max_digits: int = 5
    addition_padded: bool = True
    train_size: int = 20000
    valid_size: int = 300
    test_size: int = 1000

    def __post_init__(self) -> None:
        if not 1 <= self.min_length <= self.max_length:
            raise ValueError(f"need 1 <= data.min_length <= data.max_length, got {self.min_length}, "
                             f"{self.max_length}")
        if not self.min_length <= self.addition_max_digits:
            raise ValueError(f"data.addition_max_digits must be >= data.min_length, got {self.addition_max_digits}")
        for name in ("train_size", "valid_size", "test_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"data.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class AlgoModelConfig:
    """The encoder-decoder: width ``E``, heads, layers per stack, feed-forward width, dropout."""

    dim: int = 64
    num_heads: int = 4
    num_layers: int = 2
    ff_dim: int = 128
    dropout: float = 0.0


@dataclass(frozen=True)
class TransformerAlgorithmicConfig:
    tasks: tuple[str, ...] = TASKS
    data: AlgoDataConfig = field(default_factory=AlgoDataConfig)
    model: AlgoModelConfig = field(default_factory=AlgoModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=3000, batch_size=64, lr=2e-3, warmup_steps=100, eval_every=250, checkpoint_every=250,
        monitor="exact", monitor_mode="max", weight_decay=0.01, patience=5))

    def __post_init__(self) -> None:
        if not self.tasks or len(set(self.tasks)) != len(self.tasks) or any(t not in TASKS for t in self.tasks):
            raise ValueError(f"tasks must be distinct names from {TASKS}, got {self.tasks}")


class AlgorithmicTransformer(nn.Module):
    """Embeddings + learned positions + :class:`qkv.models.Transformer` (pre-LN) + a linear read-out.

    Args:
        vocab_size: ``V`` (source and target share the vocabulary and the embedding).
        max_length: the longest source or target (learned positions exist up to it).
        pad_id, bos_id, eos_id: the special ids.
        dim, num_heads, num_layers, ff_dim, dropout: the Transformer's (``num_layers`` per stack).
    """

    def __init__(self, vocab_size: int, *, max_length: int, pad_id: int, bos_id: int, eos_id: int, dim: int = 64,
                 num_heads: int = 4, num_layers: int = 2, ff_dim: int = 256, dropout: float = 0.0) -> None:
        super().__init__()
        self.pad_id, self.bos_id, self.eos_id, self.max_length = pad_id, bos_id, eos_id, max_length
        self.embed = nn.Embedding(vocab_size, dim)
        self.src_pos = LearnedPositions(max_length, dim, init_std=1.0)
        self.tgt_pos = LearnedPositions(max_length, dim, init_std=1.0)
        self.transformer = Transformer(dim, num_heads, num_encoder_layers=num_layers, num_decoder_layers=num_layers,
                                       ff_dim=ff_dim, dropout=dropout, norm_first=True)
        self.out = nn.Linear(dim, vocab_size)

    def encode(self, src: Tensor, src_len: Tensor, *, return_weights: bool = False) -> tuple[TransformerOutput,
                                                                                              Tensor]:
        """``src (B, S)`` -> the encoder's output ``(B, S, E)`` and ``keep (B, S)`` (True = a real token)."""
        keep = torch.arange(src.shape[1], device=src.device)[None, :] < src_len.to(src.device)[:, None]  # (B, S)
        x = self.src_pos(self.embed(src))  # (B, S, E)
        return self.transformer.encode(x, mask=key_padding(keep), return_weights=return_weights), keep

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor, *, return_weights: bool = False
                ) -> tuple[Tensor, TransformerOutput]:
        """Teacher forcing: ``tgt_in (B, T)`` (``<bos> y1 ..``) -> next-token logits ``(B, T, V)`` and the decoder's
        output (``.encoder``: the encoder's; weights per layer when ``return_weights``)."""
        enc, keep = self.encode(src, src_len, return_weights=return_weights)
        y = self.tgt_pos(self.embed(tgt_in))  # (B, T, E)
        dec = self.transformer.decode(y, enc.output, mask=causal(), memory_mask=key_padding(keep),
                                      return_weights=return_weights)
        return self.out(dec.output), TransformerOutput(output=dec.output, weights=dec.weights,
                                                       cross_weights=dec.cross_weights, encoder=enc)

    @torch.no_grad()
    def generate(self, src: Tensor, src_len: Tensor, *, max_new_tokens: int) -> Tensor:
        """Greedy decoding with the decoder's key/value cache: ``(B, n)`` ids (``<pad>`` after ``<eos>``)."""
        enc, keep = self.encode(src, src_len)
        memory_mask = key_padding(keep)

        def step(tokens: Tensor, cache: Any) -> tuple[Tensor, Any]:
            cache = self.transformer.decoder.empty_cache() if cache is None else cache
            y = self.tgt_pos(self.embed(tokens), offset=cache[0].position)  # (B, t, E)
            dec = self.transformer.decode(y, enc.output, mask=causal(), memory_mask=memory_mask, cache=cache)
            return self.out(dec.output), dec.state

        prompt = torch.full((src.shape[0], 1), self.bos_id, dtype=torch.long, device=src.device)  # (B, 1)
        out = greedy(step, prompt, max_new_tokens=max_new_tokens, eos_id=self.eos_id, pad_id=self.pad_id)
        return out.tokens[:, 1:]


def _loss(model: AlgorithmicTransformer, batch: dict[str, Tensor]) -> Tensor:
    tgt = batch["tgt"]
    logits, _ = model(batch["src"], batch["src_len"], tgt[:, :-1])  # (B, T - 1, V)
    # logits (B, T - 1, V) -> (B·(T - 1), V), next tokens (B, T - 1) -> (B·(T - 1),)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt[:, 1:].reshape(-1), ignore_index=model.pad_id)


def _strings(ids: Tensor, vocabulary: Vocab) -> list[str]:
    return ["".join(vocabulary.decode(row.tolist())) for row in ids]


def exact_match(model: AlgorithmicTransformer, data: AlgorithmicPairs, vocabulary: Vocab, *,
                batch_size: int = 500) -> tuple[float, list[str]]:
    """The fraction of ``data`` whose whole greedy output equals the target, and the outputs."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    outputs: list[str] = []
    for i in range(0, len(data), batch_size):
        b = data.batch(torch.arange(i, min(i + batch_size, len(data))))
        ids = model.generate(b["src"].to(device), b["src_len"], max_new_tokens=b["tgt"].shape[1])
        outputs += _strings(ids.cpu(), vocabulary)
    model.train(was_training)
    return sum(o == t for o, t in zip(outputs, data.targets, strict=True)) / len(data), outputs


def _split(task: str, config: AlgoDataConfig, seed: int) -> dict[str, list[tuple[str, str]]]:
    """Train, validation and test pairs of ``task``; validation and test sources never occur in training."""
    gen = torch.Generator().manual_seed(seed * 1000 + TASKS.index(task))
    hi = config.addition_max_digits if task == "addition" else config.max_length
    pad = config.addition_max_digits if task == "addition" and config.addition_padded else None
    kw = {"min_length": config.min_length, "max_length": hi, "generator": gen, "pad_width": pad}
    train = make_pairs(task, config.train_size, **kw)
    extra = 2 * (config.valid_size + config.test_size) + 50
    held = held_out(make_pairs(task, extra, **kw), train)
    n_valid = min(config.valid_size, len(held) // 2)
    return {"train": train, "valid": held[:n_valid], "test": held[n_valid : n_valid + config.test_size]}


def _attention_entry(model: AlgorithmicTransformer, source: str, output: str, vocabulary: Vocab, task: str
                     ) -> dict[str, Any]:
    """Every head of every layer for one example: encoder self-attention and decoder cross-attention."""
    device = model_device(model)
    src = torch.tensor([vocabulary.encode(list(source), eos=False)], device=device)  # (1, S)
    tgt_in = torch.tensor([vocabulary.encode(list(output), bos=True, eos=False)], device=device)  # (1, T)
    model.eval()
    with torch.no_grad():
        _, out = model(src, torch.tensor([src.shape[1]]), tgt_in, return_weights=True)
    emitted = [*list(output), "<eos>"]  # the token each decoder query position emits
    rows, labels, targets = [], [], []
    for n, w in enumerate(out.encoder.weights):  # (1, H, S, S)
        rows.append([[[round(float(x), 4) for x in r] for r in head] for head in w[0].cpu()])
        labels.append(f"encoder {n + 1}")
        targets.append(list(source))
    for n, w in enumerate(out.cross_weights):  # (1, H, T, S)
        rows.append([[[round(float(x), 4) for x in r] for r in head] for head in w[0].cpu()])
        labels.append(f"cross {n + 1}")
        targets.append(emitted)
    return {"task": task, "source": list(source), "output": output, "rows": rows, "labels": labels,
            "targets": targets}


@register
class TransformerAlgorithmic(Experiment):
    name = "transformer-algorithmic"
    description = "Encoder-decoder Transformer on copy, reverse, sort and addition: exact match, every head's map"
    Config = TransformerAlgorithmicConfig
    targets = (
        Target("copy_exact", ">=", 0.99, "held-out copy, sequences of 1-10 digits, exact match"),
        Target("reverse_exact", ">=", 0.99, "held-out reverse, exact match"),
        Target("sort_exact", ">=", 0.99, "held-out sort, exact match"),
        Target("addition_exact", ">=", 0.95, "held-out addition of 1-5 digit numbers (zero-padded), exact match"),
    )
    quick_overrides: ClassVar[dict[str, Any]] = {
        "data.max_length": 5, "data.addition_max_digits": 2, "data.train_size": 4000, "data.valid_size": 200,
        "data.test_size": 300, "model.dim": 32, "model.ff_dim": 64, "model.num_layers": 1, "train.max_steps": 250,
        "tasks": ("copy", "reverse", "sort"),
        "train.eval_every": 250, "train.checkpoint_every": 250, "train.warmup_steps": 30, "train.lr": 5e-3,
    }
    quick_targets = (
        Target("copy_exact", ">=", 0.9, "held-out copy of 1-5 digits after the quick run"),
        Target("reverse_exact", ">=", 0.9, "held-out reverse of 1-5 digits after the quick run"),
    )

    def run(self, config: TransformerAlgorithmicConfig, ctx: RunContext) -> ExperimentResult:
        vocabulary = vocab()
        d, m = config.data, config.model
        max_length = max(d.max_length, 2 * d.addition_max_digits + 2) + 2
        metrics: dict[str, float] = {}
        rows, entries = [], []
        for task in config.tasks:
            split = _split(task, d, ctx.seed)
            train = encode_pairs(split["train"], vocabulary)
            valid, test = encode_pairs(split["valid"], vocabulary), encode_pairs(split["test"], vocabulary)
            ctx.seed_variant(task)
            model = AlgorithmicTransformer(len(vocabulary), max_length=max_length, pad_id=vocabulary.pad,
                                           bos_id=vocabulary.bos, eos_id=vocabulary.eos, dim=m.dim,
                                           num_heads=m.num_heads, num_layers=m.num_layers, ff_dim=m.ff_dim,
                                           dropout=m.dropout)
            fit = ctx.fit(task, model, train, _loss, train=config.train,
                          evaluate=lambda mod, v=valid: {"exact": exact_match(mod, v, vocabulary)[0]})
            model = model.cpu()
            acc, outputs = exact_match(model, test, vocabulary)
            metrics[f"{task}_exact"] = acc
            rows.append([task, len(split["train"]), len(test), acc, fit.steps, round(fit.seconds, 1)])
            ctx.log(f"  {task}: exact match {acc:.3f} on {len(test)} held-out sequences ({fit.steps} steps)")
            longest = max(range(len(test)), key=lambda i: (len(test.sources[i]), -i))
            entries.append(_attention_entry(model, test.sources[longest], outputs[longest], vocabulary, task))
        ctx.save_json("algorithmic_attention.json", entries)
        metrics["min_exact"] = min(metrics.values())
        return ExperimentResult(metrics=metrics, tables=[Table(
            "exact match on held-out sequences", ["task", "train pairs", "test pairs", "exact match", "steps",
                                                  "train seconds"], rows)],
            notes=[f"lengths {d.min_length}-{d.max_length} (addition: {d.min_length}-{d.addition_max_digits} "
                   f"digits per operand); model E={m.dim}, H={m.num_heads}, {m.num_layers}+{m.num_layers} layers"])

    def figures(self, run_dir: Path, config: TransformerAlgorithmicConfig) -> list[Figure]:
        from qkv.viz.heatmap import HeatmapPanel, save_attention_panels

        path = run_dir / "algorithmic_attention.json"
        if not path.exists():
            return []
        figures = []
        for e in json.loads(path.read_text()):
            name = f"figures/attention_{e['task']}.png"
            panels = [HeatmapPanel(f"head {h + 1}", w, e["source"], target)
                      for row, target in zip(e["rows"], e["targets"], strict=True) for h, w in enumerate(row)]
            save_attention_panels(panels, run_dir / name, ncols=len(e["rows"][0]), row_labels=e["labels"],
                                  suptitle=f"{e['task']}: {''.join(e['source'])} -> {e['output']}")
            figures.append(Figure(name, f"{e['task']}: every head of every layer on one held-out example — "
                                        "encoder self-attention (source x source) and decoder cross-attention "
                                        "(emitted token x source); one row per layer, one column per head."))
        return figures
