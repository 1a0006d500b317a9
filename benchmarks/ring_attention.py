"""Ring attention on CPU processes: time, peak memory and communication per rank, for 1, 2 and 4 processes.

Run from the repository root (it is not part of the package)::

    python benchmarks/ring_attention.py                      # L = 2048, 4096, 8192; N = 1, 2, 4
    python benchmarks/ring_attention.py --quick              # small sizes, a smoke test

Shape legend: ``B`` batch, ``H`` heads, ``L`` the whole sequence (``L/N`` per rank), ``D`` head width,
``A`` the additive score's hidden width, ``N`` processes.

For each score, layout and length it runs one forward + backward of causal self-attention
(:func:`qkv.attend`): with ``N = 1`` the tiled kernel on the whole sequence (the baseline), with
``N > 1`` ``backend="ring"`` on ``N`` gloo processes on this machine
(:mod:`qkv.kernels.ring`). Per rank it records

* wall-clock and process CPU time (``time.process_time``, one torch thread per process: on a
  shared 2-core machine N processes compete for the cores, so CPU time is the work a rank did);
* peak memory: the largest resident set size a sampling thread sees during the call (every
  0.5 ms) minus the RSS just before it (the inputs exist); the workers run with glibc's
  ``MALLOC_MMAP_THRESHOLD_=65536`` so that freed tensors leave the resident set and it tracks
  the live tensors (CPU PyTorch has no peak-allocation counter);
* bytes sent (counted by the ring, :data:`qkv.kernels.ring.STATS`) against the formula
  ``fwd (N-1)(|k'|+|v|) + bwd (N-1)(|k'|+|v|) + N(|dk'|+|dv|)`` with ``|k'| = B·H·(L/N)·D'·4`` bytes
  (``D' = D`` for dot products, ``A`` for the additive score's projected keys);
* the work: ``(query, key)`` pairs inside the visited tiles' key bounds, and the exact number of
  causally allowed pairs of the rank's rows (zig-zag: equal; contiguous: rank ``N-1`` has
  ``2N-1`` times rank 0's).

Ratios are against the 1-process baseline measured in the same invocation. Results also go to
``--json``. On one 2-core machine speed-up is not the point: memory per rank should fall as
``1/N`` and communication should match the plan.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import threading
import time

__all__ = ["allowed_pairs", "expected_bytes", "main", "parse_args"]


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRSS:
    """The largest RSS seen by a sampling thread between ``start()`` and ``stop()``."""

    def __init__(self) -> None:
        self.peak, self._on = 0, False

    def _watch(self) -> None:
        while self._on:
            self.peak = max(self.peak, _rss())
            time.sleep(0.0005)

    def start(self) -> None:
        self.peak, self._on = _rss(), True
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def stop(self) -> int:
        self._on = False
        self._thread.join()
        return max(self.peak, _rss())


def allowed_pairs(L: int, N: int, rank: int, layout: str) -> int:
    """Causally allowed ``(i, j)`` pairs (``j <= i``) of ``rank``'s query rows: ``sum (i + 1)``."""
    n = L // N
    if layout == "contiguous":
        runs = [(rank * n, n)]
    else:
        c = n // 2
        runs = [(rank * c, c), ((2 * N - 1 - rank) * c, c)]
    return sum(sum(range(g + 1, g + m + 1)) for g, m in runs)


def expected_bytes(*, B: int, H: int, L: int, N: int, key_width: int, Dv: int, elsize: int = 4) -> int:
    """Bytes one rank sends in a forward + backward step (see the module docstring)."""
    if N == 1:
        return 0
    block = B * H * (L // N) * (key_width + Dv) * elsize  # |k'| + |v|, and |dk'| + |dv|
    return 2 * (N - 1) * block + N * block


def _problem(score: str, B: int, H: int, L: int, D: int, A: int):
    import torch

    from qkv.layers.scores import Additive

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn((B, H, L, D), generator=g) for _ in range(3))
    if score == "additive":
        torch.manual_seed(0)
        return q, k, v, Additive(D, hidden_dim=A)
    return q, k, v, score


def _worker(rank: int, N: int, port: int, args_dict: dict, queue) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    args = argparse.Namespace(**args_dict)
    if N > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=N)
    from qkv import masks
    from qkv.functional.attention import attend
    from qkv.kernels import ring

    rows = []
    for score in args.scores:
        for layout in (args.layouts if N > 1 else ["-"]):
            for L in sorted(args.sizes):
                q, k, v, sc = _problem(score, args.batch, args.heads, L, args.dim, args.hidden)
                if N > 1:
                    sp = ring.SequenceParallel(layout=layout)
                    q, k, v = (sp.shard(t).clone() for t in (q, k, v))  # (B, H, L/N, D); the whole ones freed
                    kw = {"backend": "ring", "group": sp}
                else:
                    kw = {"backend": "tiled"}
                q, k, v = (t.requires_grad_() for t in (q, k, v))
                best = None
                for i in range(args.repeat + 1):  # the first run warms up (allocator, lazy imports) untimed
                    ring.STATS.reset()
                    if N > 1:
                        dist.barrier()
                    before = _rss()
                    sampler = _PeakRSS()
                    sampler.start()
                    t0, c0 = time.perf_counter(), time.process_time()
                    out = attend(q, k, v, score=sc, mask=masks.causal(), **kw).output
                    out.sum().backward()
                    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                    peak = max(0, sampler.stop() - before)
                    q.grad = k.grad = v.grad = None
                    del out
                    if i == 0:
                        continue
                    row = {"score": score, "layout": layout, "L": L, "N": N, "rank": rank, "wall_s": wall,
                           "cpu_s": cpu, "peak_bytes": peak, "bytes_sent": ring.STATS.bytes_sent,
                           "messages": ring.STATS.messages, "visited_pairs": ring.STATS.visited_pairs,
                           "allowed_pairs": allowed_pairs(L, N, rank, layout if N > 1 else "contiguous")}
                    if best is None or cpu < best["cpu_s"]:
                        best = {**row, "peak_bytes": max(peak, best["peak_bytes"] if best else 0)}
                rows.append(best)
                del q, k, v
    queue.put(rows)
    if N > 1:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(N: int, args: argparse.Namespace) -> list[dict]:
    import torch.multiprocessing as mp

    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")  # freed tensors leave the RSS (read at start-up)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, N, port, vars(args), queue)) for r in range(N)]
    for p in procs:
        p.start()
    rows = [row for _ in procs for row in queue.get()]
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"a worker of N = {N} failed with exit code {p.exitcode}")
    return rows


def _mib(b: float) -> str:
    return f"{b / 2**20:.1f}"


def report(rows: list[dict], args: argparse.Namespace) -> list[str]:
    """The table: per (score, layout, L, N) the maxima over ranks and the ratios to N = 1."""
    lines = []
    base = {(r["score"], r["L"]): r for r in rows if r["N"] == 1}
    head = (f"{'score':<10} {'layout':<10} {'L':>6} {'N':>2} | {'wall s':>7} {'cpu s/rank':>15} {'x base':>6} | "
            f"{'peak MiB/rank':>13} {'x base':>6} | {'sent MiB/rank':>13} {'formula':>8} | "
            f"{'visited pairs/rank':>23} {'allowed min/max':>15}")
    lines.append(head)
    lines.append("-" * len(head))
    keys = sorted({(r["score"], r["layout"], r["L"], r["N"]) for r in rows}, key=lambda t: (t[0], t[2], t[3], t[1]))
    for score, layout, L, N in keys:
        group = [r for r in rows if (r["score"], r["layout"], r["L"], r["N"]) == (score, layout, L, N)]
        b = base.get((score, L))
        wall = max(r["wall_s"] for r in group)
        cpus = [r["cpu_s"] for r in group]
        peak = max(r["peak_bytes"] for r in group)
        sent = max(r["bytes_sent"] for r in group)
        key_width = args.hidden if score == "additive" else args.dim
        formula = expected_bytes(B=args.batch, H=args.heads, L=L, N=N, key_width=key_width, Dv=args.dim)
        visited = [r["visited_pairs"] for r in group]
        allowed = [r["allowed_pairs"] for r in group]
        cpu_ratio = f"{max(cpus) / b['cpu_s']:.2f}" if b and b["cpu_s"] > 0 else "-"
        mem_ratio = f"{peak / b['peak_bytes']:.2f}" if b and b["peak_bytes"] > 0 else "-"
        vis = f"{min(visited):.3g}..{max(visited):.3g}" if N > 1 else "-"
        lines.append(
            f"{score:<10} {layout:<10} {L:>6} {N:>2} | {wall:>7.2f} {min(cpus):>7.2f}..{max(cpus):<6.2f} "
            f"{cpu_ratio:>6} | "
            f"{_mib(peak):>13} {mem_ratio:>6} | {_mib(sent):>13} {_mib(formula):>8} | "
            f"{vis:>23} {max(allowed) / max(1, min(allowed)):>14.2f}x"
        )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def ints(text: str) -> list[int]:
        try:
            values = [int(x) for x in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
        if not values or min(values) < 1:
            raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
        return values

    p = argparse.ArgumentParser(description="Ring attention on CPU processes (time, memory, communication).")
    p.add_argument("--sizes", type=ints, default=[2048, 4096, 8192], help="whole-sequence lengths L")
    p.add_argument("--nprocs", type=ints, default=[1, 2, 4], help="process counts (1 = the tiled baseline)")
    p.add_argument("--scores", default="scaled_dot,additive", help="comma-separated: scaled_dot, additive")
    p.add_argument("--layouts", default="zigzag,contiguous", help="comma-separated: zigzag, contiguous")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dim", type=int, default=64, help="head width D (values too)")
    p.add_argument("--hidden", type=int, default=16, help="the additive score's hidden width A")
    p.add_argument("--repeat", type=int, default=1, help="runs per case (the least CPU time is kept)")
    p.add_argument("--quick", action="store_true", help="L = 256, 512; 2 heads; a smoke test")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    args = p.parse_args(argv)
    args.scores = args.scores.split(",")
    args.layouts = args.layouts.split(",")
    for s in args.scores:
        if s not in ("scaled_dot", "additive"):
            p.error(f"--scores: unknown score {s!r}")
    for lay in args.layouts:
        if lay not in ("zigzag", "contiguous"):
            p.error(f"--layouts: unknown layout {lay!r}")
    if args.quick:
        args.sizes, args.heads = [256, 512], 2
    for L in args.sizes:
        for N in args.nprocs:
            if L % (2 * N):
                p.error(f"--sizes: L = {L} is not divisible by 2N = {2 * N} (two zig-zag chunks per rank)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"# ring attention, causal, B={args.batch} H={args.heads} D={args.dim} A={args.hidden}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, one torch thread per process; "
          "gloo over localhost", flush=True)
    rows = []
    for N in sorted(args.nprocs):
        t0 = time.perf_counter()
        rows += _run(N, args)
        print(f"# N = {N}: {time.perf_counter() - t0:.0f} s", flush=True)
    for line in report(rows, args):
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
