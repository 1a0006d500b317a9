"""Tokens per second of qkv's GPT-2 generation against Hugging Face ``transformers``' ``generate``, same weights.

Run from the repository root (it is not part of the package; ``transformers`` is a test dependency)::

    python benchmarks/hf_generate.py                # GPT-2 small's shape (124M), 256 new tokens, 1 thread
    python benchmarks/hf_generate.py --quick        # a tiny model, for a smoke test

A ``transformers.GPT2LMHeadModel`` is randomly initialised (no download) in GPT-2's shape
(``--layers``, ``--dim``, ``--heads``, ``--vocab``) and copied into qkv with
:meth:`qkv.models.gpt2.GPT2LMHead.from_hf`. Both generate ``--new-tokens`` tokens greedily from the
same ``--prompt``-token prompt, batch 1, with their key/value caches: ``model.generate(...,
do_sample=False)`` against :meth:`~qkv.models.gpt2.GPT2LMHead.generate` (:func:`qkv.models.decoding.greedy`
over the model's cached ``step``). The two alternate ``--repeat`` times after a warm-up; the time
counts the prompt and every generated token, and tokens per second are ``new_tokens / median time``,
in wall-clock time and in the process's CPU time (one thread: robust to other jobs on a shared
machine). The ratio is qkv's tokens per second over ``transformers``'; both must produce the same tokens.

Shape legend: ``B = 1`` batch, ``T0`` prompt length, ``n`` new tokens, ``E`` width, ``V`` vocabulary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from qkv.models.gpt2 import GPT2LMHead


def _hf_model(args: argparse.Namespace):
    import transformers  # a test dependency, imported only here

    config = transformers.GPT2Config(
        vocab_size=args.vocab, n_positions=max(1024, args.prompt + args.new_tokens), n_embd=args.dim,
        n_layer=args.layers, n_head=args.heads, bos_token_id=None, eos_token_id=None, pad_token_id=0,
    )
    torch.manual_seed(args.seed)
    return transformers.GPT2LMHeadModel(config).eval(), transformers.__version__


def _time(fn) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of ``fn()`` (with one thread, CPU time is what the run cost on a shared
    machine; wall time also counts the waits for a core)."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def run(args: argparse.Namespace, log=print) -> dict:
    hf, hf_version = _hf_model(args)
    ours = GPT2LMHead.from_hf(hf).eval()
    g = torch.Generator().manual_seed(args.seed)
    prompt = torch.randint(1, args.vocab, (1, args.prompt), generator=g)
    n = args.new_tokens

    def hf_generate():
        with torch.no_grad():
            return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
                               do_sample=False, pad_token_id=0)

    def qkv_generate():
        return ours.generate(prompt, max_new_tokens=n).tokens

    runners = {"transformers": hf_generate, "qkv": qkv_generate}
    outputs: dict[str, torch.Tensor] = {}
    for name, fn in runners.items():  # warm-up (and the tokens to compare)
        outputs[name] = fn()
    times: dict[str, list[float]] = {name: [] for name in runners}
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.repeat):
        for name, fn in runners.items():
            wall, used = _time(fn)
            times[name].append(wall)
            cpu[name].append(used)
    same = torch.equal(outputs["qkv"], outputs["transformers"])
    tps = {name: n / statistics.median(ts) for name, ts in times.items()}
    tps_cpu = {name: n / statistics.median(ts) for name, ts in cpu.items()}
    ratio = tps["qkv"] / tps["transformers"]
    ratio_cpu = tps_cpu["qkv"] / tps_cpu["transformers"]
    load = os.getloadavg()
    params = sum(p.numel() for p in ours.parameters())
    log(f"greedy generation, batch 1: {n} new tokens after a {args.prompt}-token prompt; GPT-2 layout "
        f"E={args.dim} layers={args.layers} heads={args.heads} V={args.vocab} ({params / 1e6:.1f}M parameters), "
        f"{torch.get_num_threads()} thread(s), transformers {hf_version}, torch {torch.__version__}, "
        f"load average {load[0]:.1f}")
    for name in runners:
        log(f"  {name:12s}: median {statistics.median(times[name]):7.2f} s wall  {tps[name]:7.1f} tokens/s;  "
            f"{statistics.median(cpu[name]):7.2f} s CPU  {tps_cpu[name]:7.1f} tokens per CPU second")
    log(f"  qkv / transformers tokens per second = {ratio:.2f} (wall), {ratio_cpu:.2f} (CPU time)   "
        f"same tokens: {same}")
    return {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "threads": torch.get_num_threads(), "torch": torch.__version__, "transformers": hf_version},
        "parameters": params,
        "load_average_after": load,
        "times_s": times,
        "cpu_s": cpu,
        "tokens_per_s": tps,
        "tokens_per_cpu_s": tps_cpu,
        "ratio": ratio,
        "ratio_cpu": ratio_cpu,
        "same_tokens": same,
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
    p.add_argument("--dim", type=_positive, default=768)
    p.add_argument("--layers", type=_positive, default=12)
    p.add_argument("--heads", type=_positive, default=12)
    p.add_argument("--vocab", type=_positive, default=50257)
    p.add_argument("--prompt", type=_positive, default=16, help="T0, the prompt length")
    p.add_argument("--new-tokens", type=_positive, default=256, help="n, the tokens generated")
    p.add_argument("--repeat", type=_positive, default=3, help="timed runs per implementation (median)")
    p.add_argument("--threads", type=_positive, default=1, help="torch threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the measurements here")
    p.add_argument("--quick", action="store_true", help="a tiny configuration (smoke test)")
    args = p.parse_args(argv)
    if args.dim % args.heads:
        p.error(f"--heads ({args.heads}) must divide --dim ({args.dim})")
    if args.quick:
        args.dim, args.layers, args.heads, args.vocab, args.new_tokens, args.repeat = 64, 2, 4, 512, 32, 2
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
