"""The benchmark harness behind ``qkv bench``: time and peak memory of the attention backends, as ratios.

It lives outside the library package (issue 7 §3): nothing in ``qkv`` imports it. ``qkv bench``
finds this directory next to the source tree and loads this file; ``python benchmarks/attention.py``
runs it directly. Each measured case runs this file again as a child process (``--child``).

Shape legend: ``B = 1`` batch, ``H`` heads, ``L = S`` sequence length, ``D`` head width.

For each score (scaled_dot, additive, bilinear, local-p, window-256) and length it measures,
per backend (naive, SDPA, qkv's ``auto`` and ``tiled``), the forward time (under
``torch.no_grad``), the forward+backward time, and the peak resident memory of each. Every
case runs in a fresh child process so that its peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``,
minus the value just before the call, after inputs exist) is its own; CPU PyTorch has no peak
allocator counter, so this is what "peak memory" means here (it includes the allocator's and
the libraries' own growth during the call). A watchdog stops a child whose RSS passes
``--mem-cap-gib``; cases whose estimated need is above the cap are not run and are reported as
"does not fit". Times are the minimum over ``--repeat`` runs (long cases run once). Ratios are
between rows measured in the same invocation.

On CUDA (``--device cuda``) the same cases run on the GPU: every timed region is bracketed by
``torch.cuda.synchronize()`` (kernels are asynchronous; without it a timer measures the launch),
peak memory is the CUDA caching allocator's (``torch.cuda.reset_peak_memory_stats`` before the
call, ``torch.cuda.max_memory_allocated`` minus the memory allocated before it), a case that runs
out of GPU memory is reported as "out of CUDA memory", and ``--dtype float16|bfloat16`` sets the
inputs' and score parameters' dtype. :func:`measure` is the one place that picks the mechanism.

It also measures this machine's float32 matmul throughput (the physical limit for
dot-product attention here) and reports the dot-product rows' achieved GFLOP/s against it,
counting ``4·B·H·L·S·D`` FLOPs forward and 2.5 times that backward (FlashAttention-2's
convention; recomputation not counted).

Run ``qkv bench --help`` or ``python benchmarks/attention.py --help``. ``qkv bench transformer-lm [...]``
runs ``transformer_lm.py`` instead (a Transformer LM's training step against ``torch.nn``, and cached
generation against recomputation; ``qkv bench transformer-lm --help``); ``qkv bench triton [...]`` runs
``triton_attention.py`` (qkv's Triton kernels against FlashAttention, FlexAttention and naive additive
attention on a GPU; ``qkv bench triton --help``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

__all__ = ["BACKENDS", "DTYPES", "SCORES", "Case", "add_arguments", "main", "measure", "parse_args", "run"]

SCORES = ("scaled_dot", "additive", "bilinear", "local_p", "window")
BACKENDS = ("naive", "sdpa", "tiled", "auto")  # auto last: it reuses the row of the backend it picks
ALL_BACKENDS = (*BACKENDS, "flex", "triton")  # triton: CUDA (or TRITON_INTERPRET=1)
HARNESS = os.path.abspath(__file__)
_SDPA_OK = {"scaled_dot", "window", "bilinear"}  # scores of kind "dot" (bilinear: a dot of W q and k)
#: naive's peak bytes per element of its largest tensor (B·H·L·S, times A for additive),
#: forward / forward+backward; measured with this script at L = 512 and rounded up.
_NAIVE_FACTOR = {
    "scaled_dot": (3.5, 7), "bilinear": (3.5, 7), "window": (4.5, 9), "local_p": (7, 12.5), "additive": (2, 3.2)
}
WINDOW = 256
LOCAL_D = 128
DTYPES = ("float32", "float16", "bfloat16")
DEVICES = ("cpu", "cuda")


@dataclass
class Case:
    score: str
    L: int
    backend: str
    H: int = 8
    D: int = 64
    repeat: int = 3
    threads: int = 0
    mem_cap_gib: float = 8.0
    modes: tuple[str, ...] = ("fwd", "fwdbwd")
    device: str = "cpu"
    dtype: str = "float32"


@dataclass
class Result:
    case: Case
    status: str = "ok"  # ok | skipped | over-cap | oom | failed | timeout
    note: str = ""
    fwd_s: float | None = None
    fwd_peak: int | None = None  # bytes
    fb_s: float | None = None
    fb_peak: int | None = None
    chosen: str | None = None
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# the child: one case in a fresh process


def _problem(
    score: str, L: int, H: int, D: int, *, device: str = "cpu", requires_grad: bool = True, dtype: str = "float32"
):
    import torch

    import qkv
    from qkv.functional.local import GaussianWindow

    dt = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, H, L, D, generator=gen).to(device, dt).requires_grad_(requires_grad)
               for _ in range(3))
    kwargs: dict = {"score": "scaled_dot"}
    if score == "additive":
        torch.manual_seed(0)
        kwargs["score"] = qkv.scores.Additive(D).to(device, dt)
    elif score == "bilinear":
        torch.manual_seed(0)
        kwargs["score"] = qkv.scores.Bilinear(D).to(device, dt)
    elif score == "window":
        kwargs["mask"] = qkv.masks.window(WINDOW)
    elif score == "local_p":
        # roughly monotone alignments, as in translation: p_t = t + noise in [-32, 32]
        t = torch.arange(L, dtype=torch.float32)
        noise = (torch.rand(L, generator=gen) * 64 - 32)
        pos = (t + noise).clamp(0, L - 1).expand(1, H, L).contiguous().to(device)
        kwargs["modifier"] = GaussianWindow(pos, LOCAL_D)
    return q, k, v, kwargs


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _watchdog(cap: int) -> None:
    def watch():
        while True:
            if _current_rss() > cap:
                sys.stdout.write(json.dumps({"status": "over-cap"}) + "\n")
                sys.stdout.flush()
                os._exit(3)
            time.sleep(0.005)

    threading.Thread(target=watch, daemon=True).start()


def _is_cuda(device: str) -> bool:
    if not isinstance(device, str) or device.split(":")[0] not in DEVICES:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return device.startswith("cuda")


def _sync(device: str) -> None:
    """Wait for the device's queued kernels (CUDA runs them asynchronously); nothing on a CPU."""
    if _is_cuda(device):
        import torch

        torch.cuda.synchronize(device)


def _memory_start(device: str) -> int:
    """Start a peak-memory measurement; returns the baseline in bytes.

    CUDA: the caching allocator's peak counter is reset and the baseline is the memory allocated
    now. CPU: the process's peak RSS so far (CPU PyTorch has no peak allocator counter).
    """
    if _is_cuda(device):
        import torch

        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    return _maxrss()


def _memory_peak(device: str, base: int) -> int:
    """Bytes above ``base`` at the peak since :func:`_memory_start` (never negative)."""
    if _is_cuda(device):
        import torch

        return max(0, torch.cuda.max_memory_allocated(device) - base)
    return max(0, _maxrss() - base)


def measure(fn, *, device: str = "cpu", repeat: int = 3, budget_s: float = 30.0) -> tuple[float, int]:
    """``(seconds, peak bytes)`` of calling ``fn()``: the minimum time over up to ``repeat`` calls,
    and the peak memory of the first.

    Every timed call is synchronised on CUDA (:func:`_sync` before the clock starts and before it
    stops); memory is the CUDA allocator's peak there, the peak RSS growth on a CPU. Repeats stop
    once they have used ``budget_s`` seconds.

    Raises:
        ValueError: ``device`` is not cpu/cuda, or ``repeat`` is not a positive int.
    """
    if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
        raise ValueError(f"repeat must be a positive int, got {repeat!r}")
    _sync(device)
    base = _memory_start(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    first = time.perf_counter() - t0
    peak = _memory_peak(device, base)
    del out
    times = [first]
    while len(times) < repeat and sum(times) + first < budget_s:
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
        del out
    return min(times), peak


def _child(case: Case) -> dict:
    import torch

    import qkv

    if case.threads:
        torch.set_num_threads(case.threads)
    cuda = _is_cuda(case.device)
    if not cuda:
        _watchdog(int(case.mem_cap_gib * 2**30))
    backend = case.backend
    # warm up the code paths on a small problem so that one-time costs are not measured (for the
    # additive score this also compiles the tiled kernel's tile functions, for the same tile shapes)
    q, k, v, kw = _problem(case.score, 128, case.H, case.D, device=case.device, dtype=case.dtype)
    os.environ["QKV_COMPILE_TILES"] = "1"
    qkv.attend(q, k, v, backend=backend, **kw).output.sum().backward()
    del os.environ["QKV_COMPILE_TILES"]
    del q, k, v, kw
    q, k, v, kw = _problem(case.score, case.L, case.H, case.D, device=case.device, dtype=case.dtype)
    params = [p for p in (kw["score"].parameters() if isinstance(kw["score"], torch.nn.Module) else [])]

    def fwd():
        with torch.no_grad():
            return qkv.attend(q, k, v, backend=backend, **kw).output

    def fwdbwd():
        out = qkv.attend(q, k, v, backend=backend, **kw).output
        grads = torch.autograd.grad(out.float().sum(), [q, k, v, *params])
        return out, grads

    try:
        result: dict = {"status": "ok"}
        for mode, fn in (("fwd", fwd), ("fwdbwd", fwdbwd)):
            if mode not in case.modes:
                continue
            if backend == "triton" or (backend == "flex" and (mode == "fwd" or cuda)):
                fn()  # compiled per shape, backward apart (flex's CPU backward is tiled's): at the real size, untimed
            seconds, peak = measure(fn, device=case.device, repeat=case.repeat)
            key = "fwd" if mode == "fwd" else "fb"
            result[f"{key}_s"] = seconds
            result[f"{key}_peak"] = peak
    except torch.cuda.OutOfMemoryError:
        return {"status": "oom"}
    return result


def _matmul_gflops(threads: int, n: int = 4096, device: str = "cpu") -> float:
    import torch

    if threads:
        torch.set_num_threads(threads)
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.matmul(a, b)
    best = math.inf
    for _ in range(3):
        _sync(device)
        t0 = time.perf_counter()
        torch.matmul(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


# ---------------------------------------------------------------------------------------------
# the parent: plan, run children, tabulate


def _naive_bytes(score: str, L: int, H: int, D: int, mode: str) -> float:
    n = H * L * L * 4 * (D if score == "additive" else 1)
    return n * _NAIVE_FACTOR[score][0 if mode == "fwd" else 1]


def _sdpa_masked_bytes(L: int, H: int) -> float:
    # the sdpa backend materialises the window mask and two derived (L, S) bool tensors; CPU
    # SDPA's flash kernel takes the mask tile by tile (measured: ~4 bytes per (L, S) entry)
    return 16 * L * L


def _auto_choice(score: str, L: int, H: int, D: int, device: str = "cpu", dtype: str = "float32") -> str:
    from qkv import kernels

    q, k, v, kw = _problem(score, L, H, D, device=device, dtype=dtype)  # inputs only: no attention is computed
    return kernels.choose(kernels.AttentionCall.build(q, k, v, **kw))


def _run_child(case: Case, timeout: float) -> Result:
    """One fresh process per mode, so that each mode's peak RSS is its own."""
    res = Result(case)
    for mode in case.modes:
        one = Case(**{**asdict(case), "modes": (mode,)})
        cmd = [sys.executable, HARNESS, "--child", json.dumps(asdict(one))]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            res.status, res.note = "timeout", f"{mode}: over {timeout:.0f} s"
            return res
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            res.status, res.note = "failed", f"{mode}: {tail[:120]}"
            return res
        data = json.loads(lines[-1])
        if data.get("status") == "oom":
            res.status, res.note = "oom", f"{mode}: out of CUDA memory"
            return res
        if data.get("status") == "over-cap":
            if mode == case.modes[0]:
                res.status = "over-cap"
            res.note = f"{mode}: RSS passed {case.mem_cap_gib:g} GiB"
            return res
        for key in ("fwd_s", "fwd_peak", "fb_s", "fb_peak"):
            if key in data:
                setattr(res, key, data[key])
    return res


def run(
    *,
    sizes: list[int],
    scores: list[str],
    backends: tuple[str, ...] | list[str] = BACKENDS,
    repeat: int = 3,
    heads: int = 8,
    dim: int = 64,
    threads: int = 0,
    mem_cap_gib: float = 8.0,
    timeout: float = 900.0,
    modes: tuple[str, ...] = ("fwd", "fwdbwd"),
    matmul_n: int = 4096,
    device: str = "cpu",
    dtype: str = "float32",
    measure_auto: bool = False,
    log=print,
) -> tuple[list[Result], dict]:
    """Measure every (score, size, backend) case; return the results and the machine info."""
    results: list[Result] = []
    info = _machine(threads, matmul_n, device)
    info["dtype"] = dtype
    log(f"# matmul: {info['matmul_gflops']:.0f} GFLOP/s (float32 {matmul_n}², {info['threads']} threads)")
    for score in scores:
        for L in sizes:
            measured: dict[str, Result] = {}
            for backend in backends:
                case = Case(score, L, backend, H=heads, D=dim, repeat=repeat, threads=threads,
                            mem_cap_gib=mem_cap_gib, modes=modes, device=device, dtype=dtype)
                if backend == "sdpa" and score not in _SDPA_OK:
                    res = Result(case, status="skipped", note="n/a (SDPA: dot-product scores only)")
                elif backend == "naive" and _naive_bytes(score, L, heads, dim, modes[-1]) > mem_cap_gib * 2**30:
                    need = _naive_bytes(score, L, heads, dim, modes[-1]) / 2**30
                    res = Result(case, status="skipped", note=f"does not fit (needs ~{need:.0f} GiB)")
                elif backend == "sdpa" and score == "window" and _sdpa_masked_bytes(L, heads) > mem_cap_gib * 2**30:
                    need = _sdpa_masked_bytes(L, heads) / 2**30
                    res = Result(case, status="skipped", note=f"does not fit (needs ~{need:.0f} GiB)")
                elif (
                    backend == "auto"
                    and not measure_auto
                    and (choice := _auto_choice(score, L, heads, dim, device, dtype)) in measured
                ):
                    res = Result(case, **{f: getattr(measured[choice], f) for f in
                                          ("status", "note", "fwd_s", "fwd_peak", "fb_s", "fb_peak")})
                    res.chosen = choice
                else:
                    res = _run_child(case, timeout)
                    if backend == "auto":
                        res.chosen = _auto_choice(score, L, heads, dim, device, dtype)
                measured[backend] = res
                results.append(res)
                log(_line(res))
    info["load_after"] = os.getloadavg()
    return results, info


def _machine(threads: int, matmul_n: int = 4096, device: str = "cpu") -> dict:
    import torch

    model = platform.processor() or "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for ln in out.splitlines():
            if ln.startswith("Model name:"):
                model = ln.split(":", 1)[1].strip()
    except OSError:
        pass
    cmd = [sys.executable, HARNESS, "--matmul", json.dumps([threads, matmul_n, device])]
    gflops = float(subprocess.run(cmd, capture_output=True, text=True).stdout.strip())
    if device.startswith("cuda"):
        model = torch.cuda.get_device_name(device)
    return {
        "device": device,
        "cpu": model,
        "cores": os.cpu_count(),
        "threads": threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "matmul_gflops": gflops,
        "load_before": os.getloadavg(),
    }


def _fmt_ms(s: float | None) -> str:
    return "—" if s is None else (f"{s * 1e3:.0f}" if s >= 0.1 else f"{s * 1e3:.1f}")


def _fmt_mib(b: int | None) -> str:
    return "—" if b is None else f"{b / 2**20:.0f}"


def _line(r: Result) -> str:
    c = r.case
    tag = f"{c.score:10s} L={c.L:<6d} {c.backend:6s}"
    if r.status != "ok":
        return f"{tag} {r.status}: {r.note}"
    chosen = f" (auto -> {r.chosen})" if r.chosen else ""
    return (f"{tag} fwd {_fmt_ms(r.fwd_s)} ms / {_fmt_mib(r.fwd_peak)} MiB, "
            f"fwd+bwd {_fmt_ms(r.fb_s)} ms / {_fmt_mib(r.fb_peak)} MiB{chosen}")


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "—"
    if b == 0:
        return "∞" if a else "—"
    x = a / b
    if x == 0:
        return "0×"
    if x < 0.1:
        return f"1/{1 / x:.0f}×"
    return f"{x:.2f}×" if x < 10 else f"{x:.0f}×"


def table(results: list[Result], info: dict) -> str:
    """A markdown table; ratios are against naive and SDPA of the same case, in the same run."""
    head = (
        "| score | L=S | backend | fwd ms | fwd+bwd ms | fwd peak MiB | fwd+bwd peak MiB "
        "| time / naive (fwd, f+b) | time / SDPA (fwd, f+b) | peak / naive (fwd, f+b) | GFLOP/s (fwd, f+b) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [head]
    by = {(r.case.score, r.case.L, r.case.backend): r for r in results}

    def ok(r: Result | None) -> Result | None:
        return r if r is not None and r.status == "ok" else None

    def pair(r: Result, ref: Result | None, fwd: str, fb: str, mark: str = "") -> str:
        if ref is None:
            return "—"
        return f"{_ratio(getattr(r, fwd), getattr(ref, fwd))}, {_ratio(getattr(r, fb), getattr(ref, fb))}{mark}"

    for r in results:
        c = r.case
        naive = ok(by.get((c.score, c.L, "naive")))
        sdpa = ok(by.get((c.score, c.L, "sdpa")))
        mark = ""
        if sdpa is None and c.score not in _SDPA_OK:
            sdpa = ok(by.get(("scaled_dot", c.L, "sdpa")))  # the dense dot-product speed of light
            mark = "*"
        name = c.backend + (f" → {r.chosen}" if r.chosen else "")
        if r.status != "ok":
            rows.append(f"| {c.score} | {c.L} | {name} | {r.note or r.status} | | | | | | | |")
            continue
        gf = "—"
        if c.score == "scaled_dot":
            flops = 4 * c.H * c.L * c.L * c.D
            parts = [f"{flops * m / t / 1e9:.0f}" if t else "—" for m, t in ((1, r.fwd_s), (3.5, r.fb_s))]
            gf = ", ".join(parts)
        rows.append(
            f"| {c.score} | {c.L} | {name} | {_fmt_ms(r.fwd_s)} | {_fmt_ms(r.fb_s)} | {_fmt_mib(r.fwd_peak)} "
            f"| {_fmt_mib(r.fb_peak)} | {pair(r, naive, 'fwd_s', 'fb_s')} | {pair(r, sdpa, 'fwd_s', 'fb_s', mark)} "
            f"| {pair(r, naive, 'fwd_peak', 'fb_peak')} | {gf} |"
        )
    return "\n".join(rows)


def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def _choices(allowed: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        values = [x.strip() for x in text.split(",") if x.strip()]
        unknown = [v for v in values if v not in allowed]
        if not values or unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(map(repr, unknown)) or 'empty list'}; choose from {','.join(allowed)}"
            )
        return values

    return parse


def _positive(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``qkv bench``; each is validated while parsing (a bad one is a usage error, exit 2)."""
    parser.add_argument("--sizes", type=_positive_ints, default=[1024, 4096, 16384],
                        help="comma-separated L = S values (positive integers)")
    parser.add_argument("--scores", type=_choices(SCORES), default=list(SCORES),
                        help=f"comma-separated, from {','.join(SCORES)}")
    parser.add_argument("--backends", type=_choices(ALL_BACKENDS), default=list(BACKENDS),
                        help=f"comma-separated, from {','.join(ALL_BACKENDS)}")
    parser.add_argument("--repeat", type=_positive(int), default=3, help="timed runs per case (minimum reported)")
    parser.add_argument("--heads", type=_positive(int), default=8)
    parser.add_argument("--dim", type=_positive(int), default=64)
    parser.add_argument("--threads", type=_positive(int), default=None,
                        help="torch threads per case (default: torch's)")
    parser.add_argument("--mem-cap-gib", type=_positive(float), default=None,
                        help="skip/stop a case above this much memory (default: 8 GiB of RSS on a CPU; "
                        "the GPU's total memory with --device cuda)")
    parser.add_argument("--timeout", type=_positive(float), default=900.0, help="seconds per case")
    parser.add_argument("--fwd-only", action="store_true", help="measure the forward pass only")
    parser.add_argument("--quick", action="store_true", help="small sizes (256, 512), one repeat: a smoke run")
    parser.add_argument("--measure-auto", action="store_true",
                        help="time auto in its own processes (default: reuse the row of the backend it picks)")
    parser.add_argument("--device", default="cpu", choices=DEVICES,
                        help="cpu or cuda (CUDA: synchronised timings, the CUDA allocator's peak memory)")
    parser.add_argument("--dtype", default="float32", choices=DTYPES,
                        help="dtype of the inputs and score parameters (float16/bfloat16: for --device cuda)")
    parser.add_argument("--markdown", default=None, help="also write the table (and machine) to this file")
    parser.add_argument("--json", default=None, help="also write raw results to this JSON file")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse ``qkv bench`` options (``SystemExit(2)`` with a message naming the option on a bad one)."""
    parser = argparse.ArgumentParser(prog="qkv bench", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return parser.parse_args(argv)


_PEAK_TEXT = {"cuda": "the CUDA allocator's peak above the memory allocated before",
              "cpu": "growth of the peak RSS during"}


def _default_mem_cap_gib(device: str) -> float:
    """8 GiB of RSS on a CPU (a shared machine); the whole GPU's memory on CUDA."""
    if _is_cuda(device):
        import torch

        return torch.cuda.get_device_properties(device).total_memory / 2**30
    return 8.0


def bench_command(args: argparse.Namespace) -> int:
    """Run ``qkv bench`` from parsed arguments."""
    sizes = [256, 512] if args.quick else args.sizes
    repeat = 1 if args.quick else args.repeat
    scores, backends = args.scores, args.backends
    modes = ("fwd",) if args.fwd_only else ("fwd", "fwdbwd")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print("qkv bench: --device cuda, but no CUDA GPU is available here; nothing measured.")
            return 0
    mem_cap_gib = args.mem_cap_gib or _default_mem_cap_gib(args.device)
    results, info = run(
        sizes=sizes, scores=scores, backends=backends, repeat=repeat, heads=args.heads, dim=args.dim,
        threads=args.threads or 0, mem_cap_gib=mem_cap_gib, timeout=args.timeout, modes=modes,
        device=args.device, dtype=args.dtype, measure_auto=args.measure_auto,
    )
    text = table(results, info)
    machine = (
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['threads']} torch threads; torch {info['torch']}, "
        f"Python {info['python']}; float32 matmul {info['matmul_gflops']:.0f} GFLOP/s; load average "
        f"{info['load_before'][0]:.1f} before, {info['load_after'][0]:.1f} after.\n"
        f"B = 1, H = {args.heads}, D = {args.dim}; window = {WINDOW}; local-p D = {LOCAL_D} (σ = {LOCAL_D // 2}); "
        f"additive hidden width A = D; dtype {args.dtype}.\nTimes: minimum over repeats"
        f"{' (CUDA-synchronised)' if _is_cuda(args.device) else ''}; peak: "
        f"{_PEAK_TEXT['cuda' if _is_cuda(args.device) else 'cpu']} "
        "the call, in a fresh process per backend and mode (MiB). * = ratio to SDPA's dense scaled_dot of the same L "
        "(this score has no SDPA form). GFLOP/s: dot-product rows, 4·H·L·S·D FLOPs forward, 3.5× that "
        f"forward+backward; this machine's float32 matmul: {info['matmul_gflops']:.0f} GFLOP/s."
    )
    print()
    print(machine)
    print()
    print(text)
    if args.markdown:
        cmd = "qkv bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["bench"] else sys.argv[1:])
        with open(args.markdown, "w") as f:
            f.write(f"Command: `{cmd}`\n\n{machine}\n\n{text}\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "results": [asdict(r) for r in results]}, f, indent=1, default=str)
    return 0


def load(paths: list[str]) -> tuple[list[Result], dict]:
    """Results saved with ``--json`` by several runs, merged and ordered by score, length, backend."""
    results: list[Result] = []
    info: dict = {}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        info = info or data["info"]
        for r in data["results"]:
            case = Case(**{**r.pop("case"), "modes": ()})
            results.append(Result(case, **r))
    order = {b: i for i, b in enumerate(("naive", "sdpa", "flex", "tiled", "auto"))}
    results.sort(key=lambda r: (SCORES.index(r.case.score), r.case.L, order.get(r.case.backend, 9)))
    return results, info


def main(argv: list[str] | None = None) -> int:
    """``python benchmarks/attention.py [options]`` (the same as ``qkv bench``)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--merge"]:  # print one table from the --json files of several runs
        results, info = load(argv[1:])
        print(table(results, info))
        return 0
    if argv[:1] == ["--child"]:
        case = json.loads(argv[1])
        case["modes"] = tuple(case["modes"])
        print(json.dumps(_child(Case(**case))))
        return 0
    if argv[:1] == ["--matmul"]:
        threads, n, device = json.loads(argv[1])
        print(_matmul_gflops(threads, n, device))
        return 0
    if argv[:1] in (["transformer-lm"], ["transformer_lm"]):  # issue 9's model-level benchmark, its own options
        import runpy

        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "transformer_lm.py")
        module = runpy.run_path(script, run_name="qkv_transformer_lm_bench")
        return int(module["main"](argv[1:]))
    if argv[:1] in (["triton"], ["triton-attention"], ["triton_attention"]):  # issue 16's GPU benchmark
        import runpy

        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "triton_attention.py")
        module = runpy.run_path(script, run_name="qkv_triton_attention_bench")
        return int(module["main"](argv[1:]))
    return bench_command(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
