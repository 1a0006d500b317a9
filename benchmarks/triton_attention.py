"""qkv's Triton kernels on a GPU, as ratios measured within one run (issue 16 §4).

Run from the repository root on a machine with a CUDA GPU (it is not part of the package)::

    python benchmarks/triton_attention.py                       # every suite, the default grid
    python benchmarks/triton_attention.py --quick               # L = 1024, 2048; H = 8; D = 64: a short check
    qkv bench triton [options]                                  # the same, through the CLI
    python benchmarks/triton_attention.py --interpret-smoke     # no GPU: one tiny size on the CPU

Without a CUDA device it prints "no CUDA device: nothing measured" and exits 0;
``--interpret-smoke`` then runs one tiny size of every suite on the CPU, with Triton's
interpreter (``TRITON_INTERPRET=1``), only to check that the script runs: its times mean nothing.

Suites (shape legend: ``B = 1`` batch, ``H`` heads, ``L = S`` sequence length, ``D`` head width,
``A = D`` the additive score's hidden width):

* ``dot`` — scaled dot-product attention: qkv ``backend="triton"`` and ``backend="tiled"`` against
  ``torch.nn.functional.scaled_dot_product_attention`` restricted to the flash backend
  (``sdpa_kernel(SDPBackend.FLASH_ATTENTION)``). Time, TFLOP/s (``4·B·H·L·S·D`` FLOPs forward,
  3.5 times that forward+backward: FlashAttention-2's accounting, recomputation not counted) and
  the fraction of the GPU's peak dense fp16/bf16 tensor throughput (:data:`PEAK_TFLOPS`; "unknown"
  for a GPU not in the table).
* ``window`` and ``local_p`` — qkv ``triton`` against FlexAttention (``flex_attention`` compiled
  with ``torch.compile``) with the same band: ``window`` is ``qkv.masks.window(W)`` against a block
  mask of ``|i - j| <= W``; ``local_p`` is Luong's local-p (``GaussianWindow``, half-width ``W``,
  centres ``p_t = t + U(-32, 32)``) against a block mask ``|j - p_t| <= W`` and a ``score_mod``
  adding the Gaussian's log, ``-(j - p_t)² / (2σ²)``. FlexAttention renormalises after that term
  and local-p does not, so the two compute the same band and per-element work but not the same
  numbers: a throughput comparison only. Target: triton >= 0.8x FlexAttention's throughput.
* ``additive`` — ``vᵀ tanh(W q + U k)``: qkv ``triton`` against qkv ``naive`` (which holds the
  ``(B, H, L, S, A)`` tensor): time and peak memory. Where naive cannot fit (estimated above the
  GPU's memory, or a CUDA out-of-memory error) the row says "naive OOM". Targets: >= 10x less
  memory than naive and faster than naive wherever naive fits.

Every timed region is bracketed by ``torch.cuda.synchronize`` and peak memory is the CUDA
allocator's (``reset_peak_memory_stats`` / ``max_memory_allocated`` above the memory held
before the call): :func:`harness.measure`, shared with ``qkv bench``. Each case is warmed up
(Triton and ``torch.compile`` compile there) before it is timed. Times are the minimum over
``--repeat`` runs. The JSON goes to ``benchmarks/results/triton_attention-<gpu>-<time>.json``
(or ``--json``); ``--markdown`` also writes the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

SUITES = ("dot", "window", "local_p", "additive")
DTYPES = ("float16", "bfloat16")
WINDOW = 256
NO_CUDA = "no CUDA device: nothing measured"
FLEX_TARGET, ADDITIVE_MEMORY_TARGET = 0.8, 10.0

#: Peak dense (no sparsity) fp16/bf16 tensor-core TFLOP/s with fp32 accumulation, from the vendor's
#: data sheets, by a substring of ``torch.cuda.get_device_name()``; the first match wins.
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)


def peak_tflops(name: str) -> float | None:
    """The GPU's peak dense fp16/bf16 TFLOP/s from :data:`PEAK_TFLOPS`, or ``None`` (unknown)."""
    for key, value in PEAK_TFLOPS:
        if key in name:
            return value
    return None


def attention_flops(H: int, L: int, S: int, D: int, *, backward: bool) -> float:
    """``4·H·L·S·D`` forward (two matmuls), 3.5x that with the backward (recomputation not counted)."""
    return 4.0 * H * L * S * D * (3.5 if backward else 1.0)


def naive_additive_bytes(H: int, L: int, D: int, *, dtype_bytes: int, backward: bool) -> float:
    """A lower bound on naive additive attention's memory: its ``(1, H, L, L, A)`` tanh tensor
    (``A = D``), held once forward and about twice with autograd (the tanh and its gradient)."""
    return H * L * L * D * dtype_bytes * (2 if backward else 1)


# ---------------------------------------------------------------------------------------------
# problems and the compared callables


def _inputs(H: int, L: int, D: int, dtype, device: str, *, seed: int = 0):
    import torch

    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(1, H, L, D, generator=gen).to(device, dtype).requires_grad_() for _ in range(3)]


def _centres(H: int, L: int, device: str, *, seed: int = 0):
    """Roughly monotone local-p centres ``p_t = t + U(-32, 32)``, clamped to ``[0, L - 1]``: ``(1, H, L)``."""
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    t = torch.arange(L, dtype=torch.float32)
    return (t + torch.rand(L, generator=gen) * 64 - 32).clamp(0, L - 1).expand(1, H, L).contiguous().to(device)


def _qkv_fn(q, k, v, *, backend: str, **kw):
    import qkv

    return lambda: qkv.attend(q, k, v, backend=backend, **kw).output


def _flash_fn(q, k, v):
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def run():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v)

    return run


def _flex_fn(q, k, v, *, suite: str, pos=None, compiled: bool = True):
    """FlexAttention with the band as a block mask (and local-p's Gaussian log term as a score_mod)."""
    import torch
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    L, S, device = q.shape[-2], k.shape[-2], q.device
    w = WINDOW
    if suite == "window":
        def mask_mod(b, h, i, j):
            return (j - i).abs() <= w

        score_mod = None
    else:
        p = pos  # (1, H, L)
        two_var = 2 * (w / 2) ** 2

        def mask_mod(b, h, i, j):
            return (j - p[b, h, i]).abs() <= w

        def score_mod(s, b, h, i, j):
            return s - (j - p[b, h, i]) ** 2 / two_var

    H = q.shape[1] if suite == "local_p" else None
    block = create_block_mask(mask_mod, 1, H, L, S, device=device)
    attend = torch.compile(flex_attention, dynamic=False) if compiled else flex_attention
    return lambda: attend(q, k, v, score_mod=score_mod, block_mask=block)


def _fwd_bwd(make, params):
    """``(forward under no_grad, forward + backward)`` callables of an output-returning ``make``."""
    import torch

    def fwd():
        with torch.no_grad():
            return make()

    def fwdbwd():
        out = make()
        return out, torch.autograd.grad(out.float().sum(), params)

    return fwd, fwdbwd


# ---------------------------------------------------------------------------------------------
# measuring one row


def _measure_row(make, params, *, device: str, repeat: int, modes: tuple[str, ...]) -> dict:
    """Warm up (compilation), then time and take the peak memory of each mode; OOM and errors are reported."""
    import torch
    from harness import measure

    fwd, fwdbwd = _fwd_bwd(make, params)
    row: dict = {"status": "ok"}
    notes = []
    for mode, fn in (("fwd", fwd), ("fwdbwd", fwdbwd)):
        if mode not in modes:
            continue
        try:
            fn()  # warm-up: Triton / torch.compile compile here, untimed
            seconds, peak = measure(fn, device=device, repeat=repeat)
            row[f"{mode}_s"], row[f"{mode}_peak"] = seconds, peak
        except torch.cuda.OutOfMemoryError:
            notes.append(f"{mode}: out of CUDA memory")
            row.setdefault("oom", True)
        except Exception as e:  # a backend that cannot take the call: say why, keep going
            notes.append(f"{mode}: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
        finally:
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    if notes:
        row["note"] = "; ".join(notes)
    if not any(f"{m}_s" in row for m in modes):
        row["status"] = "oom" if row.pop("oom", False) else "failed"
    row.pop("oom", None)
    return row


def _triton_reason() -> str | None:
    """Why ``backend="triton"`` is unavailable here (``None`` when it is registered)."""
    try:
        from qkv import kernels
    except Exception as e:  # pragma: no cover - the package itself is broken
        return f"qkv does not import: {e}"
    return None if "triton" in kernels.BACKENDS else "no 'triton' backend registered in qkv.kernels.BACKENDS"


def run_suites(
    *, suites, sizes, heads, dims, dtypes, device: str, repeat: int, modes, compiled_flex: bool = True, log=print
) -> list[dict]:
    """Measure every requested suite; one dict per row (``suite, backend, L, H, D, dtype`` + results)."""
    import torch

    import qkv
    from qkv.functional.local import GaussianWindow

    triton_missing = _triton_reason()
    total = torch.cuda.get_device_properties(device).total_memory if device.startswith("cuda") else None
    rows: list[dict] = []

    def add(suite, backend, L, H, D, dtype, row):
        row = {"suite": suite, "backend": backend, "L": L, "H": H, "D": D, "dtype": dtype, **row}
        rows.append(row)
        log(_line(row))

    for suite in suites:
        for dtype_name in dtypes:
            dtype = getattr(torch, dtype_name)
            for H in heads:
                for D in dims:
                    for L in sizes:
                        q, k, v = _inputs(H, L, D, dtype, device)
                        cases: list[tuple[str, object, list]] = []
                        if suite == "dot":
                            cases.append(("sdpa-flash", _flash_fn(q, k, v), [q, k, v]))
                            for b in ("triton", "tiled"):
                                cases.append((b, _qkv_fn(q, k, v, backend=b, score="scaled_dot"), [q, k, v]))
                        elif suite in ("window", "local_p"):
                            pos = _centres(H, L, device)
                            kw = ({"mask": qkv.masks.window(WINDOW)} if suite == "window"
                                  else {"modifier": GaussianWindow(pos, WINDOW)})
                            cases.append(("flex", _flex_fn(q, k, v, suite=suite, pos=pos, compiled=compiled_flex),
                                          [q, k, v]))
                            cases.append(("triton", _qkv_fn(q, k, v, backend="triton", score="scaled_dot", **kw),
                                          [q, k, v]))
                        else:  # additive
                            torch.manual_seed(0)
                            score = qkv.scores.Additive(D).to(device, dtype)
                            params = [q, k, v, *score.parameters()]
                            need = naive_additive_bytes(H, L, D, dtype_bytes=q.element_size(),
                                                        backward="fwdbwd" in modes)
                            if total is not None and need > total:
                                add(suite, "naive", L, H, D, dtype_name, {
                                    "status": "oom", "note": f"naive OOM (needs > {need / 2**30:.0f} GiB)"})
                            else:
                                cases.append(("naive", _qkv_fn(q, k, v, backend="naive", score=score), params))
                            cases.append(("triton", _qkv_fn(q, k, v, backend="triton", score=score), params))
                        for backend, make, params in cases:
                            if backend == "triton" and triton_missing:
                                add(suite, backend, L, H, D, dtype_name, {"status": "n/a", "note": triton_missing})
                                continue
                            row = _measure_row(make, params, device=device, repeat=repeat, modes=modes)
                            if suite == "additive" and backend == "naive" and row["status"] == "oom":
                                row["note"] = "naive OOM"
                            add(suite, backend, L, H, D, dtype_name, row)
                        del q, k, v, cases
    return rows


# ---------------------------------------------------------------------------------------------
# ratios and tables


def _fmt_ms(s):
    return "—" if s is None else f"{s * 1e3:.3g}"


def _fmt_mib(b):
    return "—" if b is None else f"{b / 2**20:.0f}"


def _ratio(a, b):
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}×"


def _line(row: dict) -> str:
    tag = f"{row['suite']:8s} {row['backend']:10s} L={row['L']:<6d} H={row['H']:<3d} D={row['D']:<4d} {row['dtype']}"
    if row["status"] != "ok":
        return f"{tag} {row['status']}: {row.get('note', '')}"
    note = f" ({row['note']})" if row.get("note") else ""
    return (f"{tag} fwd {_fmt_ms(row.get('fwd_s'))} ms / {_fmt_mib(row.get('fwd_peak'))} MiB, "
            f"fwd+bwd {_fmt_ms(row.get('fwdbwd_s'))} ms / {_fmt_mib(row.get('fwdbwd_peak'))} MiB{note}")


def tables(rows: list[dict], gpu: str) -> str:
    """Markdown tables, one per suite; every ratio is between rows of this run with the same shape."""
    peak = peak_tflops(gpu)
    by = {(r["suite"], r["backend"], r["L"], r["H"], r["D"], r["dtype"]): r for r in rows}

    def ref(r, backend):
        x = by.get((r["suite"], backend, r["L"], r["H"], r["D"], r["dtype"]))
        return x if x is not None and x["status"] == "ok" else None

    def t(r, mode):
        return r.get(f"{mode}_s") if r and r["status"] == "ok" else None

    out = []
    for suite in SUITES:
        mine = [r for r in rows if r["suite"] == suite]
        if not mine:
            continue
        if suite == "dot":
            out.append(f"### Scaled dot product against SDPA (flash backend); peak {peak or 'unknown'} TFLOP/s\n")
            out.append("| dtype | H | D | L=S | backend | fwd ms | f+b ms | time / flash (fwd, f+b) "
                       "| TFLOP/s (fwd, f+b) | fraction of peak (fwd, f+b) |\n" + "|---" * 10 + "|")
        elif suite in ("window", "local_p"):
            out.append(f"### {suite} (W = {WINDOW}) against compiled FlexAttention; target throughput >= "
                       f"{FLEX_TARGET}× Flex\n")
            out.append("| dtype | H | D | L=S | backend | fwd ms | f+b ms | throughput / Flex (fwd, f+b) |\n"
                       "|---|---|---|---|---|---|---|---|")
        else:
            out.append(f"### additive (A = D) against naive; targets: >= {ADDITIVE_MEMORY_TARGET:g}× less memory, "
                       "faster where naive fits\n")
            out.append("| dtype | H | D | L=S | backend | fwd ms | f+b ms | fwd peak MiB | f+b peak MiB "
                       "| time / naive (fwd, f+b) | naive peak / this (fwd, f+b) |\n" + "|---" * 11 + "|")
        for r in mine:
            head = f"| {r['dtype']} | {r['H']} | {r['D']} | {r['L']} | {r['backend']} "
            if r["status"] != "ok":
                n = {"dot": 4, "window": 2, "local_p": 2, "additive": 5}[suite]
                out.append(head + f"| {r.get('note') or r['status']} " + "| " * n + "|")
                continue
            times = f"| {_fmt_ms(t(r, 'fwd'))} | {_fmt_ms(t(r, 'fwdbwd'))} "
            if suite == "dot":
                flash = ref(r, "sdpa-flash")
                tf = [attention_flops(r["H"], r["L"], r["L"], r["D"], backward=m == "fwdbwd") / s / 1e12
                      if (s := t(r, m)) else None for m in ("fwd", "fwdbwd")]
                frac = ", ".join("—" if x is None or peak is None else f"{x / peak:.0%}" for x in tf)
                out.append(head + times + f"| {_ratio(t(r, 'fwd'), t(flash, 'fwd'))}, "
                           f"{_ratio(t(r, 'fwdbwd'), t(flash, 'fwdbwd'))} "
                           f"| {', '.join('—' if x is None else f'{x:.3g}' for x in tf)} | {frac} |")
            elif suite in ("window", "local_p"):
                flex = ref(r, "flex")
                out.append(head + times + f"| {_ratio(t(flex, 'fwd'), t(r, 'fwd'))}, "
                           f"{_ratio(t(flex, 'fwdbwd'), t(r, 'fwdbwd'))} |")
            else:
                naive = ref(r, "naive")
                mem = (f"{_ratio(naive.get('fwd_peak'), r.get('fwd_peak'))}, "
                       f"{_ratio(naive.get('fwdbwd_peak'), r.get('fwdbwd_peak'))}") if naive else "naive OOM"
                tim = (f"{_ratio(t(r, 'fwd'), t(naive, 'fwd'))}, {_ratio(t(r, 'fwdbwd'), t(naive, 'fwdbwd'))}"
                       if naive else "—")
                out.append(head + times + f"| {_fmt_mib(r.get('fwd_peak'))} | {_fmt_mib(r.get('fwdbwd_peak'))} "
                           f"| {tim} | {mem} |")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# command line


def parse_args(argv: list[str]) -> argparse.Namespace:
    from harness import _choices as _names
    from harness import _positive_ints as _ints

    p = argparse.ArgumentParser(prog="python benchmarks/triton_attention.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--suites", type=_names(SUITES), default=list(SUITES), help=f"from {','.join(SUITES)}")
    p.add_argument("--sizes", type=_ints, default=[1024, 4096, 16384], help="L = S values (default 1024,4096,16384)")
    p.add_argument("--heads", type=_ints, default=[8, 16], help="H values (default 8,16)")
    p.add_argument("--dims", type=_ints, default=[64, 128], help="D values (default 64,128)")
    p.add_argument("--dtypes", type=_names(DTYPES), default=list(DTYPES), help="float16,bfloat16")
    p.add_argument("--repeat", type=lambda s: _ints(s)[0], default=5, help="timed runs per case (minimum kept)")
    p.add_argument("--fwd-only", action="store_true", help="forward only")
    p.add_argument("--quick", action="store_true", help="L = 1024, 2048; H = 8; D = 64; one dtype: a short check")
    p.add_argument("--json", default=None, help="raw results (default benchmarks/results/triton_attention-*.json)")
    p.add_argument("--markdown", default=None, help="also write the tables to this file")
    p.add_argument("--interpret-smoke", action="store_true",
                   help="no GPU: one tiny size per suite on the CPU under TRITON_INTERPRET=1 (checks the script "
                   "runs; measures nothing meaningful, writes nothing unless --json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.interpret_smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before qkv's Triton kernels are imported
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.interpret_smoke:
        print(NO_CUDA)
        print("(run this on a machine with a CUDA GPU; --interpret-smoke checks the script on a CPU)")
        return 0
    modes = ("fwd",) if args.fwd_only else ("fwd", "fwdbwd")
    if cuda and not args.interpret_smoke:
        device, gpu = "cuda", torch.cuda.get_device_name(0)
        sizes, heads, dims, dtypes = args.sizes, args.heads, args.dims, args.dtypes
        if args.quick:
            sizes, heads, dims, dtypes = [1024, 2048], [8], [64], args.dtypes[:1]
        compiled_flex = True
    else:  # the smoke run: CPU, interpreter, one tiny size, float32-friendly half dtype
        device, gpu = "cpu", "none (CPU smoke run under TRITON_INTERPRET=1; nothing measured)"
        sizes, heads, dims, dtypes, compiled_flex = [64], [1], [16], ["bfloat16"], False
        print("interpret smoke run on the CPU: checks that the script runs; its times are not measurements")
    print(f"GPU: {gpu}; peak dense fp16/bf16: {peak_tflops(gpu) or 'unknown'} TFLOP/s; torch {torch.__version__}")
    t0 = time.time()
    rows = run_suites(suites=args.suites, sizes=sizes, heads=heads, dims=dims, dtypes=dtypes, device=device,
                      repeat=1 if args.interpret_smoke else args.repeat, modes=modes, compiled_flex=compiled_flex)
    text = tables(rows, gpu)
    if args.interpret_smoke:  # never mistaken for a GPU measurement, in the terminal or a --markdown file
        text = "**CPU smoke run under Triton's interpreter: these times are not measurements.**\n\n" + text
    print()
    print(text)
    shown = argv if argv is not None else sys.argv[1:]
    info = {"gpu": gpu, "peak_tflops": peak_tflops(gpu), "torch": torch.__version__,
            "python": platform.python_version(), "device": device, "window": WINDOW, "seconds": time.time() - t0,
            "command": " ".join(["python benchmarks/triton_attention.py", *shown]),
            "smoke": bool(args.interpret_smoke)}
    path = args.json
    if path is None and not args.interpret_smoke:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu).strip("-").lower()
        path = str(HERE / "results" / f"triton_attention-{slug}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            json.dump({"info": info, "rows": rows}, f, indent=1, default=str)
        print(f"results: {path}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"Command: `{info['command']}`\n\nGPU: {gpu}\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
