"""A Transformer language model through qkv against the same model from ``torch.nn``, and cached generation.

Run from the repository root (it is not part of the package; ``qkv bench`` runs ``harness.py``)::

    python benchmarks/transformer_lm.py                  # L = 512, d = 256, 4 layers, 1 thread
    python benchmarks/transformer_lm.py --quick          # a few seconds, for a smoke test

Two measurements, each a ratio between rows measured in the same invocation (issue 9):

1. **Training step** (forward + backward + an SGD update) of a decoder-only language model — token
   and learned position embeddings, ``--layers`` pre-LN layers of width ``--dim`` with ``--heads``
   heads and a ``4 d`` ReLU feed-forward network, dropout 0.1, a causal mask, a final LayerNorm
   and a linear head — built twice with the same weights: from ``torch.nn.TransformerEncoderLayer``
   (``mask`` + ``is_causal=True``) and from qkv's :class:`~qkv.models.TransformerEncoder`
   (``TransformerEncoder.from_torch``, ``mask=qkv.masks.causal()``). The two alternate, and the
   ratio is of the median times. Target: qkv within 1.1x of torch.
2. **Generation** of ``--gen-tokens`` tokens by greedy search (:mod:`qkv.models.decoding`) from a
   ``--prompt``-token prompt with qkv's key/value cache, against recomputing the whole prefix each step
   (:func:`~qkv.models.decoding.recompute`); both must produce the same tokens. The two alternate
   ``--gen-repeat`` times under ``torch.inference_mode`` and the ratio is of the minimum times. Target: >= 5x.

Times are process CPU time (``time.process_time``) next to wall-clock time: with one torch thread
(``--threads 1``, the default) CPU time is the work the code does, unaffected by other processes
competing for the cores (this benchmark was written on a shared 2-core machine); the targets are
judged on CPU time, and both are printed. On CUDA only wall-clock time (synchronised) is used.

Shape legend: ``B`` batch, ``L`` sequence length, ``d`` model width, ``V`` vocabulary.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import qkv
from qkv.layers.cache import cache_position
from qkv.models import TransformerEncoder
from qkv.models.decoding import greedy, recompute
from qkv.positional import LearnedPositions

TRAIN_TARGET, GEN_TARGET = 1.1, 5.0


class TorchLM(nn.Module):
    """The reference: ``torch.nn.TransformerEncoder`` with a causal mask."""

    def __init__(self, vocab: int, dim: int, heads: int, layers: int, max_len: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=dropout, batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        L = tokens.shape[1]
        x = self.embed(tokens) + self.pos.weight[:L]  # (B, L, d)
        mask = nn.Transformer.generate_square_subsequent_mask(L, device=tokens.device)
        return self.head(self.body(x, mask=mask, is_causal=True))  # (B, L, V)


class QkvLM(nn.Module):
    """The same model on qkv's blocks (weights copied from a :class:`TorchLM`), with a key/value cache."""

    def __init__(self, ref: TorchLM) -> None:
        super().__init__()
        self.embed = ref.embed
        self.pos = LearnedPositions(ref.pos.num_embeddings, ref.pos.embedding_dim)
        with torch.no_grad():
            self.pos.weight.copy_(ref.pos.weight)
        self.body = TransformerEncoder.from_torch(ref.body)
        self.head = ref.head

    def forward(self, tokens: torch.Tensor, cache=None):
        x = self.pos(self.embed(tokens), offset=cache_position(cache))  # (B, L, d)
        out = self.body(x, mask=qkv.masks.causal(), cache=cache)
        return self.head(out.output), out.state  # (B, L, V)

    def step(self, tokens: torch.Tensor, cache):
        return self(tokens, self.body.empty_cache() if cache is None else cache)


def _time(fn, sync) -> tuple[float, float]:
    """``(cpu, wall)`` seconds of one call (``cpu`` is the wall time on CUDA)."""
    sync()
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    sync()
    wall = time.perf_counter() - t0
    return (wall if sync is not _no_sync else time.process_time() - c0), wall


def _no_sync() -> None:
    return None


def run(args: argparse.Namespace, log=print) -> dict:
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else _no_sync
    max_len = max(args.length, args.prompt + args.gen_tokens)
    ref = TorchLM(args.vocab, args.dim, args.heads, args.layers, max_len, dropout=0.1).to(device)
    ours = QkvLM(ref).to(device)
    g = torch.Generator().manual_seed(args.seed)
    tokens = torch.randint(0, args.vocab, (args.batch, args.length + 1), generator=g).to(device)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    # 1. training step: forward, backward, SGD update, on each model in turn
    def train_step(model, forward):
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)

        def step():
            logits = forward(inputs)
            loss = nn.functional.cross_entropy(logits.reshape(-1, args.vocab), targets.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    ref.train()
    ours.train()
    with torch.no_grad():  # the same function (dropout aside)
        ref.eval()
        ours.eval()
        diff = (ref(inputs) - ours(inputs)[0]).abs().max().item()
        ref.train()
        ours.train()
    steps = {"torch": train_step(ref, ref), "qkv": train_step(ours, lambda x: ours(x)[0])}
    for step in steps.values():  # warm-up
        step()
    times: dict[str, list[tuple[float, float]]] = {"torch": [], "qkv": []}
    for _ in range(args.repeat):
        for name, step in steps.items():
            times[name].append(_time(step, sync))
    med = {name: [statistics.median(t[i] for t in ts) for i in (0, 1)] for name, ts in times.items()}
    train_ratio = med["qkv"][0] / med["torch"][0]
    train_wall_ratio = med["qkv"][1] / med["torch"][1]
    log(f"training step  B={args.batch} L={args.length} d={args.dim} layers={args.layers} heads={args.heads} "
        f"threads={torch.get_num_threads()} (max |logit difference| {diff:.1e}); medians of {args.repeat}")
    for name in ("torch", "qkv"):
        log(f"  {name:<8} : cpu {med[name][0] * 1e3:8.1f} ms   wall {med[name][1] * 1e3:8.1f} ms")
    log(f"  qkv / torch = {train_ratio:.3f} cpu, {train_wall_ratio:.3f} wall   (target <= {TRAIN_TARGET})  "
        f"{'met' if train_ratio <= TRAIN_TARGET else 'NOT met'}")

    # 2. generation: cached steps against recomputing the prefix
    ours.eval()
    prompt = torch.randint(0, args.vocab, (1, args.prompt), generator=g).to(device)
    gen: dict[str, object] = {}
    modes = {
        "cached": lambda: gen.__setitem__("cached", greedy(ours.step, prompt, max_new_tokens=args.gen_tokens)),
        "recompute": lambda: gen.__setitem__(
            "recompute", greedy(recompute(lambda t: ours(t)[0]), prompt, max_new_tokens=args.gen_tokens)),
    }
    gen_times: dict[str, list[tuple[float, float]]] = {"cached": [], "recompute": []}
    with torch.inference_mode():  # both modes; no autograd bookkeeping, as inference should run
        greedy(ours.step, prompt, max_new_tokens=4)  # warm-up
        for _ in range(args.gen_repeat):
            for name, fn in modes.items():
                gen_times[name].append(_time(fn, sync))
    best = {name: [min(t[i] for t in ts) for i in (0, 1)] for name, ts in gen_times.items()}
    same = torch.equal(gen["cached"].tokens, gen["recompute"].tokens)
    gen_ratio = best["recompute"][0] / best["cached"][0]
    gen_wall_ratio = best["recompute"][1] / best["cached"][1]
    log(f"generation  {args.gen_tokens} tokens after a {args.prompt}-token prompt, greedy, batch 1; "
        f"minima of {args.gen_repeat}")
    for name in ("recompute", "cached"):
        cpu, wall = best[name]
        log(f"  {name:<9} : cpu {cpu:7.2f} s ({args.gen_tokens / cpu:7.1f} tokens/s)   wall {wall:7.2f} s")
    log(f"  same tokens: {same};  recompute / cached = {gen_ratio:.1f}x cpu, {gen_wall_ratio:.1f}x wall   "
        f"(target >= {GEN_TARGET})  {'met' if gen_ratio >= GEN_TARGET and same else 'NOT met'}")
    return {
        "config": vars(args),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "threads": torch.get_num_threads(), "torch": torch.__version__},
        "train": {"torch_cpu_wall_s": times["torch"], "qkv_cpu_wall_s": times["qkv"], "ratio_median": train_ratio,
                  "wall_ratio_median": train_wall_ratio, "max_logit_diff": diff, "target": TRAIN_TARGET,
                  "met": train_ratio <= TRAIN_TARGET},
        "generation": {"cached_cpu_wall_s": gen_times["cached"], "recompute_cpu_wall_s": gen_times["recompute"],
                       "ratio": gen_ratio, "wall_ratio": gen_wall_ratio, "same_tokens": same,
                       "target": GEN_TARGET, "met": gen_ratio >= GEN_TARGET and same},
    }


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=_positive, default=4)
    p.add_argument("--length", type=_positive, default=512, help="L, the training sequence length")
    p.add_argument("--dim", type=_positive, default=256)
    p.add_argument("--heads", type=_positive, default=4)
    p.add_argument("--layers", type=_positive, default=4)
    p.add_argument("--vocab", type=_positive, default=1000)
    p.add_argument("--repeat", type=_positive, default=5, help="timed training steps per model")
    p.add_argument("--gen-tokens", type=_positive, default=256)
    p.add_argument("--prompt", type=_positive, default=16)
    p.add_argument("--gen-repeat", type=_positive, default=3, help="alternating generation runs per mode")
    p.add_argument("--threads", type=_positive, default=1, help="torch threads (CPU)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the measurements here")
    p.add_argument("--quick", action="store_true", help="a tiny configuration (smoke test)")
    args = p.parse_args(argv)
    if args.dim % args.heads:
        p.error(f"--heads ({args.heads}) must divide --dim ({args.dim})")
    if args.quick:
        args.batch, args.length, args.dim, args.layers, args.repeat, args.gen_tokens = 2, 64, 32, 2, 2, 16
        args.gen_repeat = 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    result = run(args)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
