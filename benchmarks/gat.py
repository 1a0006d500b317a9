"""Graph attention scales with the edges, not N²: the GAT layer's read by each path, as N grows at a fixed degree.

Run from the repository root (not part of the package)::

    python benchmarks/gat.py                 # N = 1k .. 32k, average degree 8, 1 thread
    python benchmarks/gat.py --quick         # a few seconds, for a smoke test

For each ``N`` a random graph with ``N · degree`` directed edges (plus self-loops) is drawn, and one
:class:`qkv.layers.GraphAttention` layer (``--heads`` × ``--head-dim``, input width ``--features``) is
timed forward + backward with every path of the layer:

* ``edges``: the edge-list read (:func:`qkv.functional.graph_attention.edge_attention`, a scatter softmax
  over the ``nnz`` pairs: ``O(nnz · C)`` time and memory);
* ``tiled``: ``qkv.attend``'s tiled kernel with the lazy graph mask (never holds ``(N, N)``, but visits
  every tile of the plane: ``O(N²)`` time for a graph whose nodes are not numbered in bands);
* ``naive``: the dense baseline, ``qkv.attend`` materialising the ``(H, N, N)`` scores (run up to
  ``--dense-max`` nodes).

Each case runs in a fresh child process, so that its peak resident memory (``ru_maxrss`` after minus
before the call) is its own; times are process CPU time (``time.process_time``, the minimum over
``--repeat`` runs), which other processes sharing the cores do not inflate. Printed: the time and peak
memory of each case, each path's growth factor when N doubles (2 = linear, 4 = quadratic), and each
path's time and memory as a ratio of the dense baseline's at the same N, all measured in this run.
The paths' outputs are checked equal at the smallest N.

Shape legend: ``N`` nodes, ``F`` input features, ``H`` heads, ``C`` width per head, ``nnz`` allowed pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

PATHS = ("edges", "tiled", "naive")


def _case(path: str, n: int, degree: int, features: int, heads: int, head_dim: int, repeat: int) -> dict:
    """Time one path at one N (in this process); returns its CPU seconds and peak RSS growth in bytes."""
    import torch

    import qkv
    from qkv.layers import GraphAttention

    g = torch.Generator().manual_seed(n)
    edges = torch.randint(0, n, (2, n * degree), generator=g)  # (2, E)
    mask = qkv.masks.graph(edges, num_nodes=n)
    torch.manual_seed(0)
    layer = GraphAttention(features, head_dim, heads, backend=path)
    x = torch.randn(1, n, features, generator=g, requires_grad=True)  # (1, N, F)
    best = float("inf")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for _ in range(repeat):
        start = time.process_time()
        layer(x, mask=mask).output.sum().backward()
        best = min(best, time.process_time() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"path": path, "N": n, "nnz": mask.num_edges, "cpu_s": best, "peak_bytes": max(0, peak)}


def _outputs_agree(n: int, degree: int, features: int, heads: int, head_dim: int) -> float:
    """Max |difference| between the paths' outputs at one N (float64)."""
    import torch

    import qkv
    from qkv.layers import GraphAttention

    g = torch.Generator().manual_seed(n)
    mask = qkv.masks.graph(torch.randint(0, n, (2, n * degree), generator=g), num_nodes=n)
    x = torch.randn(1, n, features, generator=g, dtype=torch.float64)
    outs = []
    torch.set_grad_enabled(False)
    for path in PATHS:
        torch.manual_seed(0)
        layer = GraphAttention(features, head_dim, heads, backend=path).double()
        outs.append(layer(x, mask=mask).output)
    return max(float((o - outs[0]).abs().max()) for o in outs[1:])


def _child(args: argparse.Namespace, path: str, n: int) -> dict | None:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", path, str(n), "--degree", str(args.degree),
           "--features", str(args.features), "--heads", str(args.heads), "--head-dim", str(args.head_dim),
           "--repeat", str(args.repeat), "--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace, log=print) -> dict:
    rows = []
    for n in args.sizes:
        for path in PATHS:
            if path == "naive" and n > args.dense_max:
                continue
            if path == "tiled" and n > args.tiled_max:
                continue
            r = _child(args, path, n)
            if r is None:
                log(f"{path:6s} N={n}: failed")
                continue
            rows.append(r)
            log(f"{path:6s} N={n:6d} nnz={r['nnz']:8d}  {r['cpu_s'] * 1e3:9.1f} ms  "
                f"peak {r['peak_bytes'] / 2**20:8.1f} MiB")
    by = {(r["path"], r["N"]): r for r in rows}
    log("\ngrowth when N doubles (time; 2 = linear in N at a fixed degree, 4 = quadratic):")
    for path in PATHS:
        pairs = zip(args.sizes, args.sizes[1:], strict=False)
        factors = [by[(path, b)]["cpu_s"] / by[(path, a)]["cpu_s"] for a, b in pairs
                   if (path, a) in by and (path, b) in by and b == 2 * a]
        if factors:
            log(f"  {path:6s} " + " ".join(f"{f:.2f}" for f in factors))
    log("\nagainst the dense baseline (naive) at the same N: time ratio, peak-memory ratio:")
    for n in args.sizes:
        if ("naive", n) not in by:
            continue
        dense = by[("naive", n)]
        parts = [f"{p} {by[(p, n)]['cpu_s'] / dense['cpu_s']:.3f}x time, "
                 f"{by[(p, n)]['peak_bytes'] / max(1, dense['peak_bytes']):.3f}x memory"
                 for p in ("edges", "tiled") if (p, n) in by]
        log(f"  N={n:6d}: " + "; ".join(parts))
    diff = _outputs_agree(args.sizes[0], args.degree, args.features, args.heads, args.head_dim)
    log(f"\npaths agree at N={args.sizes[0]}: max |diff| {diff:.2e} (float64)")
    return {"rows": rows, "max_diff": diff}


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=_positive, nargs="+", default=[1000, 2000, 4000, 8000, 16000, 32000])
    p.add_argument("--degree", type=_positive, default=8, help="average in-degree (edges per node)")
    p.add_argument("--features", type=_positive, default=64)
    p.add_argument("--heads", type=_positive, default=8)
    p.add_argument("--head-dim", type=_positive, default=8)
    p.add_argument("--repeat", type=_positive, default=3)
    p.add_argument("--threads", type=_positive, default=1)
    p.add_argument("--dense-max", type=_positive, default=4000, help="largest N for the dense baseline")
    p.add_argument("--tiled-max", type=_positive, default=8000, help="largest N for the tiled kernel (O(N²) time)")
    p.add_argument("--timeout", type=_positive, default=600, help="seconds per case")
    p.add_argument("--quick", action="store_true", help="N = 200, 400 (smoke test)")
    p.add_argument("--child", nargs=2, metavar=("PATH", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.repeat, args.dense_max, args.tiled_max = [200, 400], 1, 400, 400
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.child:
        path, n = args.child
        print(json.dumps(_case(path, int(n), args.degree, args.features, args.heads, args.head_dim, args.repeat)))
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
