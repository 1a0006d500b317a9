"""Worker processes for the ring-attention tests (spawned; imported by name, so not a test module).

Each worker joins a gloo group on localhost, builds the same whole-sequence inputs from a fixed
seed, computes the single-process reference with ``attend(backend="naive")`` and the ring result on
its shards, and raises ``AssertionError`` (re-raised in the parent by ``torch.multiprocessing``)
on any mismatch of the output or of a gradient.
"""

from __future__ import annotations

import os
import zlib

import torch
import torch.distributed as dist

from qkv import masks
from qkv.functional.attention import attend
from qkv.kernels import ring
from qkv.layers.scores import Additive, Bilinear
from qkv.positional.alibi import alibi
from qkv.positional.relative import relative

B, H, D = 2, 2, 4


def _score(name: str):
    g = torch.Generator().manual_seed(5)
    if name == "bilinear":
        s = Bilinear(D).double()
        with torch.no_grad():
            s.weight.copy_(torch.randn(s.weight.shape, generator=g, dtype=torch.float64))
        return s
    if name == "additive":
        s = Additive(D, hidden_dim=3).double()
        with torch.no_grad():
            for p in s.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
        return s
    return name


def _mask(name: str, L: int, S: int):
    if name == "none":
        return None
    if name == "causal":
        return masks.causal()
    if name == "window":
        return masks.window(2)
    if name == "padding":  # batch row 0: no keys at all (every row fully masked)
        return masks.padding(torch.tensor([0, S - 3]))
    if name == "causal_padding":
        return masks.causal() & masks.padding(torch.tensor([S - 1, S // 2]))
    if name == "rows":  # a whole-plane tensor mask with some fully masked rows
        g = torch.Generator().manual_seed(7)
        m = torch.rand((B, H, L, S), generator=g) < 0.6
        m[:, :, 1] = False
        m[0, 1, L - 2] = False
        return m
    raise ValueError(name)


def _bias(name: str, L: int, S: int):
    if name == "none":
        return None
    if name == "alibi":
        return alibi(H)
    if name == "relative":
        g = torch.Generator().manual_seed(9)
        return relative(torch.randn((H, 2 * 3 + 1), generator=g, dtype=torch.float64).requires_grad_(),
                        max_distance=3)
    if name == "tensor":
        g = torch.Generator().manual_seed(11)
        return torch.randn((H, L, S), generator=g, dtype=torch.float64).requires_grad_()
    raise ValueError(name)


def _replicated(score, bias) -> list[torch.Tensor]:
    params = list(score.parameters()) if isinstance(score, torch.nn.Module) else []
    if isinstance(bias, torch.Tensor):
        params.append(bias)
    elif bias is not None:
        params += bias.parameters()
    return params


def check_case(sp: ring.SequenceParallel, score_name: str, mask_name: str, bias_name: str, L: int) -> None:
    """One case: ring output and every gradient against single-process ``attend``, in float64."""
    S = L
    seed = zlib.crc32(f"{score_name}{mask_name}{bias_name}{L}".encode())  # the same on every rank
    g = torch.Generator().manual_seed(seed)
    q = torch.randn((B, H, L, D), generator=g, dtype=torch.float64)
    k = torch.randn((B, H, S, D), generator=g, dtype=torch.float64)
    v = torch.randn((B, H, S, 3), generator=g, dtype=torch.float64)
    do = torch.randn((B, H, L, 3), generator=g, dtype=torch.float64)
    score, mask, bias = _score(score_name), _mask(mask_name, L, S), _bias(bias_name, L, S)
    params = _replicated(score, bias)

    qr, kr, vr = (t.clone().requires_grad_() for t in (q, k, v))
    ref = attend(qr, kr, vr, score=score, mask=mask, bias=bias, backend="naive").output
    ref_grads = torch.autograd.grad(ref, [qr, kr, vr, *params], do, allow_unused=True)

    ql, kl, vl = (sp.shard(t).requires_grad_() for t in (q, k, v))
    out = attend(ql, kl, vl, score=score, mask=mask, bias=bias, backend="ring", group=sp).output
    grads = torch.autograd.grad(out, [ql, kl, vl, *params], sp.shard(do), allow_unused=True)
    what = f"score={score_name} mask={mask_name} bias={bias_name} L={L} layout={sp.layout} world={sp.world}"
    assert torch.isfinite(out).all(), what
    torch.testing.assert_close(sp.gather(out), ref, msg=lambda m: f"output, {what}: {m}")
    for name, got, want in zip("qkv", grads[:3], ref_grads[:3], strict=True):
        torch.testing.assert_close(sp.gather(got), want, msg=lambda m, n=name, w=what: f"d{n}, {w}: {m}")
    for i, (got, want) in enumerate(zip(grads[3:], ref_grads[3:], strict=True)):
        got = torch.zeros_like(params[i]) if got is None else got.clone()
        dist.all_reduce(got)  # each rank holds its share of a replicated tensor's gradient
        want = torch.zeros_like(params[i]) if want is None else want
        torch.testing.assert_close(got, want, msg=lambda m, i=i: f"parameter {i}, {what}: {m}")


def run_cases(rank: int, world: int, port: int, cases: list[tuple]) -> None:
    """Spawned entry point: ``cases`` of ``(score, mask, bias, L, layout)``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for score_name, mask_name, bias_name, L, layout in cases:
            check_case(ring.SequenceParallel(layout=layout), score_name, mask_name, bias_name, L)
    finally:
        dist.destroy_process_group()


def check_layers(sp: ring.SequenceParallel) -> None:
    """MultiHeadAttention and TransformerEncoderLayer with ``sequence_parallel=True`` equal the plain layers
    on the whole sequence (RoPE, ALiBi, a window and a causal mask at global positions)."""
    from qkv.layers.multihead import MultiHeadAttention
    from qkv.models.transformer import TransformerEncoderLayer
    from qkv.positional.rotary import Rotary

    E, L = 8, 8
    g = torch.Generator().manual_seed(21)
    x = torch.randn((B, L, E), generator=g, dtype=torch.float64)
    dy = torch.randn((B, L, E), generator=g, dtype=torch.float64)
    layers = [
        lambda spar: MultiHeadAttention(E, 2, rotary=Rotary(4), position_bias=alibi(2), window=3,
                                        sequence_parallel=spar),
        lambda spar: TransformerEncoderLayer(E, 2, ff_dim=16, dropout=0.0, score="bilinear", norm_first=True,
                                             sequence_parallel=spar),
    ]
    for make in layers:
        torch.manual_seed(0)
        plain = make(None).double()
        torch.manual_seed(0)
        sharded = make(True).double()
        sharded.load_state_dict(plain.state_dict())
        def call(m, t):
            return m(t, mask=masks.causal()).output  # (B, L, E)

        xr = x.clone().requires_grad_()
        ref = call(plain, xr)
        ref_grads = torch.autograd.grad(ref, [xr, *plain.parameters()], dy)
        xs = sp.shard(x, dim=1).requires_grad_()
        with ring.sequence_parallel(layout=sp.layout):
            out = call(sharded, xs)
        grads = torch.autograd.grad(out, [xs, *sharded.parameters()], sp.shard(dy, dim=1))
        what = f"{type(plain).__name__} world={sp.world}"
        torch.testing.assert_close(sp.gather(out, dim=1), ref, msg=lambda m, w=what: f"output, {w}: {m}")
        torch.testing.assert_close(sp.gather(grads[0], dim=1), ref_grads[0], msg=lambda m, w=what: f"dx, {w}: {m}")
        for (name, _), got, want in zip(plain.named_parameters(), grads[1:], ref_grads[1:], strict=True):
            got = got.clone()
            dist.all_reduce(got)  # replicated parameters: the ranks' shares sum to the gradient
            torch.testing.assert_close(got, want, msg=lambda m, n=name, w=what: f"d{n}, {w}: {m}")


def run_layers(rank: int, world: int, port: int, layout: str) -> None:
    """Spawned entry point for :func:`check_layers`."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        check_layers(ring.SequenceParallel(layout=layout))
    finally:
        dist.destroy_process_group()
