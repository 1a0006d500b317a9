"""Ring attention: exact sequence-parallel attention for any score, on ``torch.distributed``.

Shape legend: ``...`` broadcast batch dims (typically ``(B, H)``); ``L``/``S`` this rank's queries
and keys (``N·L``/``N·S`` in the whole sequence, ``N`` ranks in the group); ``D`` the score's
query/key feature width, ``Dv`` value width; ``c`` a zig-zag chunk (``L / 2``).

The algorithm is ring attention (Liu, Zaharia & Abbeel 2023, "Ring Attention with Blockwise
Transformers", §3), with the zig-zag layout of Megatron-LM's context parallelism for causal balance
(Brandon et al. 2023, "Striped Attention", balance it by striping instead), generalised from the
dot product to every score the tiled kernel (:mod:`qkv.kernels.tiled`) supports. Queries stay
on their rank. The *key features* the score needs — the keys for a dot product and for bilinear
(whose ``W`` goes to the queries), normalised ``k`` for cosine, ``W k`` for the additive score
(Bahdanau et al. 2015, eq. 6), the raw keys for a row-local callable — are computed once on the
rank that owns the keys (ordinary autograd), and ``(k', v)`` blocks travel around the ring
(``rank r`` sends to ``r + 1`` and receives from ``r - 1``, the next transfer overlapping the
current block's compute). Each rank computes every (local query block, visiting key block) pair
with the tiled kernel's block functions (:func:`~qkv.kernels.tiled.forward_block`, masks and
biases evaluated at **global** positions) and merges the partial results by log-sum-exp:

.. math::  \\mathrm{lse} = \\log(e^{\\mathrm{lse}_a} + e^{\\mathrm{lse}_b}),\\qquad
           o = e^{\\mathrm{lse}_a - \\mathrm{lse}}\\, o_a + e^{\\mathrm{lse}_b - \\mathrm{lse}}\\, o_b .

Backward (:class:`_RingAttention`) keeps only ``o`` and ``lse``; the ``(k', v)`` blocks travel the
ring again together with their gradient accumulators ``(dk', dv)``: each rank adds its queries'
share (:func:`~qkv.kernels.tiled.backward_block`, ``P`` recomputed from the saved ``lse``), and
after ``N`` hops each accumulator is back on its owner, complete. Communication per step and rank:
forward ``(N - 1)·|k' + v|``, backward ``(N - 1)·|k' + v| + N·|dk' + dv|`` elements.

Layouts (:class:`SequenceParallel`): ``"contiguous"`` (rank ``r`` holds positions
``[r·L, (r + 1)·L)``) or ``"zigzag"`` (the sequence cut into ``2N`` chunks, rank ``r`` holding
chunks ``r`` and ``2N - 1 - r``): under a causal mask every rank then has the same number of
allowed ``(i, j)`` pairs, where the contiguous layout leaves rank 0 almost idle.

Masks and biases describe the whole ``(N·L, N·S)`` plane: lazy ones (causal, window, padding,
ALiBi, relative) are evaluated at the global rows and columns of each tile; a tensor mask or bias
is the whole plane's, held by every rank. A fully masked row gets a zero output and zero gradients.

Gradients of tensors every rank holds whole — score parameters (bilinear ``W``, additive ``v``),
a bias tensor, learned bias tables — come back as **this rank's share**; sum them over the group
(:func:`sum_replicated_grads`, or a DistributedDataParallel over the same ranks does it).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from qkv.functional.output import AttentionOutput
from qkv.kernels.call import AttentionCall
from qkv.kernels.tiled import TilePlan, backward_block, forward_block, prepare_tiled, tiled_unsupported

__all__ = [
    "LAYOUTS",
    "STATS",
    "RingStats",
    "SequenceParallel",
    "current",
    "resolve_group",
    "ring_backend",
    "ring_unsupported",
    "sequence_parallel",
    "sum_replicated_grads",
]

LAYOUTS = ("zigzag", "contiguous")


class SequenceParallel:
    """How the sequence dimension is split over a process group.

    Args:
        group: a ``torch.distributed`` process group (``None``: the default group; when
            ``torch.distributed`` is not initialised, this one process: the ring is then the tiled
            kernel on the whole sequence).
        layout: ``"zigzag"`` (default; rank ``r`` holds chunks ``r`` and ``2N-1-r`` of ``2N``,
            balancing causal attention) or ``"contiguous"`` (rank ``r`` holds the ``r``-th slice).
    """

    def __init__(self, group: dist.ProcessGroup | None = None, *, layout: str = "zigzag") -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if self.local and group is not None:
            raise RuntimeError("SequenceParallel: a group was given but torch.distributed is not initialised "
                               "(call init_process_group, or launch with torchrun / `qkv run --nproc`)")
        self.group = group
        self.layout = layout

    @property
    def local(self) -> bool:
        """Whether this is one process: ``torch.distributed`` is not initialised (checked at each use, so an
        instance made before ``init_process_group`` follows the group made after it)."""
        return not (dist.is_available() and dist.is_initialized())

    @property
    def world(self) -> int:
        if self.local:
            world_env = os.environ.get("WORLD_SIZE", "1")
            if world_env.isdigit() and int(world_env) > 1:  # launched as N processes, none joined a group
                raise RuntimeError(f"SequenceParallel: WORLD_SIZE={world_env} (launched by torchrun?) but "
                                   "torch.distributed is not initialised, so each process would attend over its "
                                   "own shard alone; call torch.distributed.init_process_group() first")
            return 1
        return dist.get_world_size(self.group)

    @property
    def rank(self) -> int:
        return 0 if self.local else dist.get_rank(self.group)

    def global_length(self, n_local: int) -> int:
        """The whole sequence's length when every rank holds ``n_local`` positions."""
        return n_local * self.world

    def check_length(self, name: str, n_local: int) -> None:
        """Raise ``ValueError`` unless ``n_local`` positions per rank fit the layout (zig-zag: an even count)."""
        if self.layout == "zigzag" and n_local % 2 and self.world > 1:
            raise ValueError(f"{name}: the zigzag layout needs an even length per rank (two chunks), got {n_local}")

    def segments(self, n_local: int, rank: int | None = None) -> list[tuple[int, int, int]]:
        """``(global_start, length, local_start)`` of each contiguous run of positions ``rank`` holds."""
        r = self.rank if rank is None else rank
        if self.layout == "contiguous" or self.world == 1:
            return [(r * n_local, n_local, 0)]
        self.check_length("segments", n_local)
        c, n = n_local // 2, self.world
        return [(r * c, c, 0), ((2 * n - 1 - r) * c, c, c)]

    def positions(self, n_local: int, *, device: torch.device | str | None = None) -> Tensor:
        """The global positions of this rank's ``n_local`` rows, ``(n_local,)`` (for RoPE and tests)."""
        return torch.cat([torch.arange(g, g + n, device=device) for g, n, _ in self.segments(n_local)])

    def shard(self, x: Tensor, dim: int = -2) -> Tensor:
        """This rank's part of a whole-sequence tensor ``x`` (sequence along ``dim``)."""
        n_global = x.shape[dim]
        if n_global % self.world:
            raise ValueError(f"shard: the sequence length {n_global} is not divisible by the world size {self.world}")
        n_local = n_global // self.world
        return torch.cat([x.narrow(dim, g, n) for g, n, _ in self.segments(n_local)], dim=dim)

    def gather(self, x: Tensor, dim: int = -2) -> Tensor:
        """The whole sequence from every rank's part ``x`` (an all-gather; no gradient)."""
        if self.world == 1:
            return x.detach()
        parts = [torch.empty_like(x) for _ in range(self.world)]
        dist.all_gather(parts, x.detach().contiguous(), group=self.group)
        n_local = x.shape[dim]
        dim = dim % x.dim()
        out = torch.empty((*x.shape[:dim], n_local * self.world, *x.shape[dim + 1 :]), dtype=x.dtype, device=x.device)
        for r, part in enumerate(parts):
            for g, n, l0 in self.segments(n_local, r):
                out.narrow(dim, g, n).copy_(part.narrow(dim, l0, n))
        return out

    def peer(self, step: int) -> int:
        """The global rank ``step`` places further along the ring (``-1``: the previous one)."""
        target = (self.rank + step) % self.world
        return target if self.group is None else dist.get_global_rank(self.group, target)

    def __repr__(self) -> str:
        world = "1 (torch.distributed not initialised)" if self.local else self.world
        return f"SequenceParallel(world={world}, layout={self.layout!r})"


_ACTIVE: contextvars.ContextVar[SequenceParallel | None] = contextvars.ContextVar("qkv_sequence_parallel",
                                                                                   default=None)


@contextlib.contextmanager
def sequence_parallel(group: dist.ProcessGroup | None = None, *, layout: str = "zigzag") -> Iterator[SequenceParallel]:
    """Within the block, ``attend(..., backend="ring")`` and ring-enabled layers use this sharding.

    Example::

        with sequence_parallel(layout="zigzag") as sp:
            out = attend(sp.shard(q), sp.shard(k), sp.shard(v), mask=causal(), backend="ring").output
    """
    sp = SequenceParallel(group, layout=layout)
    token = _ACTIVE.set(sp)
    try:
        yield sp
    finally:
        _ACTIVE.reset(token)


def current() -> SequenceParallel | None:
    """The sharding of the innermost :func:`sequence_parallel` block, or ``None``."""
    return _ACTIVE.get()


def resolve_group(group, backend: str) -> SequenceParallel | None:
    """``attend``'s ``group`` argument as a :class:`SequenceParallel` (``None`` unless ``backend == "ring"``)."""
    if backend != "ring":
        if group is not None:
            raise ValueError(f"group is for backend='ring' only, got backend={backend!r}")
        return None
    if group is None:  # the enclosing sequence_parallel() block, else the default group (or this one process)
        return current() or SequenceParallel()
    if isinstance(group, SequenceParallel):
        return group
    if isinstance(group, dist.ProcessGroup):
        return SequenceParallel(group)
    raise TypeError(f"group must be a torch.distributed ProcessGroup or a SequenceParallel, got {type(group).__name__}")


@dataclass
class RingStats:
    """Counters of this process's ring traffic and work (reset by the caller; the benchmark reads them).

    Attributes:
        bytes_sent: bytes this rank sent (forward and backward).
        messages: point-to-point sends.
        visited_pairs: ``(query, key)`` pairs inside the key bounds of the tiles the forward visited
            (the work; a causal mask's bounds skip the rest).
    """

    bytes_sent: int = 0
    messages: int = 0
    visited_pairs: int = 0

    def reset(self) -> None:
        self.bytes_sent = self.messages = self.visited_pairs = 0


#: This process's counters.
STATS = RingStats()


def ring_unsupported(call: AttentionCall) -> str | None:
    """Why the ring kernel cannot compute ``call`` (``None`` when it can)."""
    reason = tiled_unsupported(call)
    if reason:
        return reason
    if call.group is None:
        return "it needs a sequence-parallel group (group=, or a sequence_parallel() block)"
    if call.modifier is not None:
        return "it takes no weight modifier (a modifier's per-query tensors are not sharded)"
    for name, n in (("q", call.L), ("k", call.S)):
        if call.group.layout == "zigzag" and n % 2 and call.group.world > 1:
            return f"the zigzag layout needs an even length per rank, got {name} with {n}"
    return None


def ring_backend(call: AttentionCall) -> AttentionOutput:
    """Backend entry point: ``attend(..., backend="ring", group=...)`` on this rank's shards."""
    sp: SequenceParallel = call.group
    plan, qf, kf, v, bias_t, params = prepare_tiled(call)
    plan = dataclasses.replace(plan, L=sp.global_length(call.L), S=sp.global_length(call.S))
    return AttentionOutput(output=_RingAttention.apply(plan, sp, qf, kf, v, bias_t, *params))


def sum_replicated_grads(module_or_params: nn.Module | list[Tensor], group: dist.ProcessGroup | None = None) -> None:
    """All-reduce (sum) the ``.grad`` of replicated parameters over the sequence-parallel group."""
    params = module_or_params.parameters() if isinstance(module_or_params, nn.Module) else module_or_params
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, group=group)


# --------------------------------------------------------------------------------------------
# the ring


def _exchange(sp: SequenceParallel, tensors: list[Tensor]) -> tuple[list, list[Tensor]]:
    """Start sending ``tensors`` to the next rank and receiving their like from the previous one."""
    bufs = [torch.empty_like(t) for t in tensors]
    ops = [dist.P2POp(dist.isend, t, sp.peer(1), sp.group) for t in tensors]
    ops += [dist.P2POp(dist.irecv, b, sp.peer(-1), sp.group) for b in bufs]
    STATS.bytes_sent += sum(t.numel() * t.element_size() for t in tensors)
    STATS.messages += len(tensors)
    return dist.batch_isend_irecv(ops), bufs


def _wait(works) -> None:
    for w in works:
        w.wait()


def _pairs(sp: SequenceParallel, plan: TilePlan, n_q: int, n_k: int, owner: int):
    """``(plan at the pair's offsets, query slice, key slice)`` for each (local query run, owner's key run)."""
    for qg, qn, ql in sp.segments(n_q):
        for kg, kn, kl in sp.segments(n_k, owner):
            yield dataclasses.replace(plan, q_offset=qg, k_offset=kg), slice(ql, ql + qn), slice(kl, kl + kn)


def _visited(plan: TilePlan, n_q: int, n_k: int) -> int:
    """Pairs inside the mask's key bounds for a block pair (``n_q·n_k`` without a mask)."""
    if plan.mask is None:
        return n_q * n_k
    total = 0
    for q0 in range(0, n_q, plan.tile_q):
        q1 = min(n_q, q0 + plan.tile_q)
        lo, hi = plan.mask.kv_bounds(q0 + plan.q_offset, q1 + plan.q_offset, L=plan.L, S=plan.S)
        lo, hi = max(lo, plan.k_offset), min(hi, plan.k_offset + n_k)
        total += (q1 - q0) * max(0, hi - lo)
    return total


def _merge(out: Tensor, lse: Tensor, out_b: Tensor, lse_b: Tensor) -> tuple[Tensor, Tensor]:
    """Merge two partial softmax results by log-sum-exp (``lse = -inf``: nothing seen yet)."""
    lse_b = torch.where(torch.isposinf(lse_b), torch.full_like(lse_b, float("-inf")), lse_b)  # block's empty rows
    new = torch.logaddexp(lse, lse_b)  # (..., Lb)
    safe = torch.where(torch.isfinite(new), new, torch.zeros_like(new))
    wa, wb = torch.exp(lse - safe), torch.exp(lse_b - safe)  # 0 where a side saw nothing
    return out * wa.unsqueeze(-1) + out_b * wb.unsqueeze(-1), new


class _RingAttention(torch.autograd.Function):
    """Forward: ``(k', v)`` around the ring, partial results merged by lse; backward: ``(k', v, dk', dv)``.

    Inputs: ``plan, sp, qf, kf, v, bias_t, *params`` (``params`` as in the tiled kernel).
    """

    @staticmethod
    def forward(ctx, plan: TilePlan, sp: SequenceParallel, qf, kf, v, bias_t, *params):
        dtype = plan.compute_dtype
        n_q, n_k, world = qf.shape[-2], kf.shape[-2], sp.world
        kf, v = kf.contiguous(), v.contiguous()
        out = torch.zeros((*qf.shape[:-2], n_q, v.shape[-1]), dtype=dtype, device=qf.device)  # (..., L, Dv)
        lse = torch.full(qf.shape[:-1], float("-inf"), dtype=dtype, device=qf.device)  # (..., L)
        block, owner = (kf, v), sp.rank
        for step in range(world):
            pending = _exchange(sp, list(block)) if step < world - 1 else None  # overlaps this block's compute
            for pp, qs, ks in _pairs(sp, plan, n_q, n_k, owner):
                o_b, lse_b = forward_block(pp, qf[..., qs, :], block[0][..., ks, :], block[1][..., ks, :], bias_t,
                                           params)
                out[..., qs, :], lse[..., qs] = _merge(out[..., qs, :], lse[..., qs], o_b, lse_b)
                STATS.visited_pairs += _visited(pp, qs.stop - qs.start, ks.stop - ks.start)
            if pending is not None:
                _wait(pending[0])
                block, owner = tuple(pending[1]), (owner - 1) % world
        lse = torch.where(torch.isneginf(lse), torch.full_like(lse, float("inf")), lse)  # empty rows: +inf
        out = out.to(v.dtype)
        ctx.plan, ctx.sp = plan, sp
        ctx.save_for_backward(qf, kf, v, bias_t, out, lse, *params)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        plan: TilePlan = ctx.plan
        sp: SequenceParallel = ctx.sp
        qf, kf, v, bias_t, out, lse, *params = ctx.saved_tensors
        params = tuple(params)
        dtype = plan.compute_dtype
        need = (False, *ctx.needs_input_grad[2:])  # as the tiled kernel's (plan, qf, kf, v, bias_t, *params)
        n_q, n_k, world = qf.shape[-2], kf.shape[-2], sp.world
        do = grad_out.to(dtype)
        delta = (do * out.to(dtype)).sum(dim=-1)  # (..., L)
        dqf = torch.zeros_like(qf, dtype=dtype)
        dbias = None
        dparams = [torch.zeros_like(p, dtype=dtype) for p in params]
        block, owner = (kf, v), sp.rank
        acc = (torch.zeros_like(kf, dtype=dtype), torch.zeros_like(v, dtype=dtype))  # the visiting block's (dk', dv)
        for step in range(world):
            pending = _exchange(sp, list(block)) if step < world - 1 else None
            dk_acc, dv_acc = acc
            for pp, qs, ks in _pairs(sp, plan, n_q, n_k, owner):
                *_, db_b, dp_b = backward_block(
                    pp, qf[..., qs, :], block[0][..., ks, :], block[1][..., ks, :], bias_t, params,
                    do[..., qs, :], delta[..., qs], lse[..., qs], need,
                    into=(dqf[..., qs, :], dk_acc[..., ks, :], dv_acc[..., ks, :]),  # accumulated in place
                )
                if db_b is not None:
                    dbias = db_b if dbias is None else dbias + db_b
                for i, d in enumerate(dp_b):
                    dparams[i] += d
            if world > 1:
                returned = _exchange(sp, [dk_acc, dv_acc])  # the accumulator follows its block to the next rank
                _wait(returned[0])
                acc = tuple(returned[1])
            if pending is not None:
                _wait(pending[0])
                block, owner = tuple(pending[1]), (owner - 1) % world
        dkf, dv = acc  # after N hops, this rank's own block's gradients, complete
        n = ctx.needs_input_grad  # (plan, sp, qf, kf, v, bias_t, *params)
        if dbias is None and bias_t is not None and n[5]:
            dbias = torch.zeros_like(bias_t, dtype=dtype)
        return (
            None,
            None,
            dqf.to(qf.dtype) if n[2] else None,
            dkf.to(kf.dtype) if n[3] else None,
            dv.to(v.dtype) if n[4] else None,
            None if dbias is None or not n[5] else dbias.to(bias_t.dtype),
            *(d.to(p.dtype) if n[6 + i] else None for i, (d, p) in enumerate(zip(dparams, params, strict=True))),
        )
