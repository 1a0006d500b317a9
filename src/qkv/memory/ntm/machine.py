"""The Neural Turing Machine (Graves, Wayne and Danihelka 2014): a controller with an N×M memory it reads and writes.

Shape legend: ``B`` batch, ``T`` time steps, ``X`` input width, ``Y`` output width, ``C`` controller width,
``N`` memory slots, ``M`` slot width, ``R`` read heads, ``W`` write heads, ``H = R + W`` heads, ``K = 2k + 1``
allowed shifts.

One step (Fig. 1): the controller sees the input and the previous read vectors; from its hidden vector
every head emits its addressing parameters (:func:`~qkv.memory.ntm.addressing.squash_head`), write heads also an
erase and an add vector. All heads address the memory :math:`M_{t-1}` in **one call of** :func:`qkv.attend`
(:func:`~qkv.memory.ntm.addressing.address`: the β-cosine score, the NTM's location addressing as the
normaliser, eq. 5-9), whose ``output`` rows for the read heads are the read vectors :math:`r_t` (eq. 2); then the
write heads erase and add (eq. 3-4, :func:`~qkv.memory.ntm.readwrite.write`) to give :math:`M_t`. The output is a
linear map of the hidden vector and the read vectors (logits; the tasks apply a sigmoid). Reads thus see the
memory before this step's write, as in the open PyTorch port.

State per sequence (reset by every ``forward``): the memory starts from ``memory_init`` — ``"constant"`` (every
entry ``1e-6``; Collier and Beel 2018 found it trains fastest), ``"learned"`` (a parameter) or ``"random"`` (a
fixed buffer drawn at construction) — and the read vectors and head weightings from learned parameters (the
weightings as softmax logits, initially focused on slot 0 so that location addressing has somewhere to start).

Numerical safeguards, and why: see :mod:`qkv.memory.ntm.addressing` (norm clamping in the cosine, max-shifted
softmax, log-space sharpening, bounded head activations); in addition the add vector passes through ``tanh`` and
the erase vector through a sigmoid, so one write changes a slot by at most 1 per head and the memory cannot blow
up over long sequences; the feed-forward controller is a ``tanh`` layer and the LSTM's output is bounded too.
Training clips the global gradient norm (``TrainConfig.grad_clip``), the paper's remedy for exploding gradients
through many steps. That comes too late when the gradient overflows float32 inside the backward pass, which is how a
long ``ntm-repeat-copy`` run died with a NaN (:mod:`qkv.memory.ntm.gradclip`): so ``forward`` also bounds the
gradient flowing back through the state between time steps (``state_grad_clip``, per sequence, an L2 norm; the
forward pass is unchanged, and so, up to the order of summation, are all smaller gradients).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from einops import rearrange
from torch import Tensor, nn

from qkv.functional.checks import check_flag, check_positive_int, check_tensor
from qkv.memory.ntm.addressing import address, squash_head
from qkv.memory.ntm.controller import make_controller
from qkv.memory.ntm.gradclip import clip_state_grad
from qkv.memory.ntm.readwrite import write

__all__ = ["MEMORY_INITS", "NTM", "NTMOutput", "NTMState", "NTMTrace"]

MEMORY_INITS = ("constant", "learned", "random")


@dataclass
class NTMState:
    """What one step hands to the next: memory ``(B, N, M)``, read vectors ``(B, R, M)``, weightings
    ``(B, H, N)`` (read heads first) and the controller's state."""

    memory: Tensor
    reads: Tensor
    weights: Tensor
    controller: tuple[Tensor, ...] = ()


@dataclass
class NTMTrace:
    """Per step, for pictures: read weightings ``(B, T, R, N)``, write weightings ``(B, T, W, N)``, the memory
    after each step ``(B, T, N, M)`` (``initial_memory (B, N, M)`` before the first), read vectors ``(B, T, R, M)``,
    erase and add vectors ``(B, T, W, M)``, and the heads' key strengths, gates and sharpening ``(B, T, H)``."""

    read_weights: Tensor
    write_weights: Tensor
    memory: Tensor
    initial_memory: Tensor
    reads: Tensor
    erase: Tensor
    add: Tensor
    beta: Tensor
    gate: Tensor
    gamma: Tensor


@dataclass
class NTMOutput:
    """``output (B, T, Y)`` logits, the final :class:`NTMState`, and the :class:`NTMTrace` when asked for."""

    output: Tensor
    state: NTMState
    trace: NTMTrace | None = field(default=None)


class NTM(nn.Module):
    """Neural Turing Machine (Graves et al. 2014, §3): ``forward(x (B, T, X)) -> NTMOutput(output (B, T, Y))``.

    Args:
        input_dim: ``X``.
        output_dim: ``Y``.
        controller: ``"lstm"`` or ``"feedforward"``.
        controller_dim: ``C``.
        memory_slots: ``N``.
        memory_width: ``M``.
        read_heads: ``R >= 1``.
        write_heads: ``W >= 0``.
        shift_range: ``k``: shifts ``-k..k`` are allowed (eq. 8; the paper's ``k = 1``).
        memory_init: ``"constant"`` (``init_value`` everywhere), ``"learned"`` or ``"random"`` (fixed, from
            ``generator``).
        init_value: the constant memory entry (default ``1e-6``).
        initial_focus: the learned initial weighting's starting logit on slot 0 (others 0).
        generator: seeds ``memory_init="random"``.
        state_grad_clip: in ``forward``, the largest L2 norm per sequence of the gradient that flows back into each
            state tensor (memory, read vectors, weightings, controller state) from the next time step
            (:func:`~qkv.memory.ntm.gradclip.clip_state_grad`); ``None`` disables it. The default 1.0 is far below
            float32's overflow and above what ``ntm-repeat-copy`` sees once past its first updates (below 0.1 at
            step 2,000); it does bite in some early updates (``ntm-copy``'s quick run ends at 0.14 wrong bits per
            sequence with it, 0.0 without).
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        *,
        controller: str = "lstm",
        controller_dim: int = 100,
        memory_slots: int = 128,
        memory_width: int = 20,
        read_heads: int = 1,
        write_heads: int = 1,
        shift_range: int = 1,
        memory_init: str = "constant",
        init_value: float = 1e-6,
        initial_focus: float = 5.0,
        generator: torch.Generator | None = None,
        state_grad_clip: float | None = 1.0,
    ) -> None:
        super().__init__()
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.output_dim = check_positive_int("output_dim", output_dim)
        N = self.memory_slots = check_positive_int("memory_slots", memory_slots)
        M = self.memory_width = check_positive_int("memory_width", memory_width)
        R = self.read_heads = check_positive_int("read_heads", read_heads)
        if isinstance(write_heads, bool) or not isinstance(write_heads, int) or write_heads < 0:
            raise ValueError(f"write_heads must be an int >= 0, got {write_heads!r}")
        W = self.write_heads = write_heads
        if isinstance(shift_range, bool) or not isinstance(shift_range, int) or shift_range < 0:
            raise ValueError(f"shift_range must be an int >= 0, got {shift_range!r}")
        if 2 * shift_range + 1 > N:
            raise ValueError(f"shift_range must satisfy 2k + 1 <= memory_slots = {N}, got {shift_range}")
        self.shift_range = shift_range
        if memory_init not in MEMORY_INITS:
            raise ValueError(f"memory_init must be one of {MEMORY_INITS}, got {memory_init!r}")
        self.memory_init = memory_init
        if state_grad_clip is not None and (isinstance(state_grad_clip, bool)
                                            or not isinstance(state_grad_clip, int | float) or not state_grad_clip > 0):
            raise ValueError(f"state_grad_clip must be a number > 0 or None, got {state_grad_clip!r}")
        self.state_grad_clip = None if state_grad_clip is None else float(state_grad_clip)
        self.controller = make_controller(controller, input_dim + R * M, controller_dim)
        self.controller_kind = controller
        self.head_size = M + 3 + (2 * shift_range + 1)  # key, beta, gate, gamma, shifts
        self.heads = nn.Linear(controller_dim, (R + W) * self.head_size + W * 2 * M)
        self.out = nn.Linear(controller_dim + R * M, output_dim)
        if memory_init == "learned":
            bound = 1.0 / (N + M) ** 0.5
            self.init_memory = nn.Parameter(torch.empty(N, M).uniform_(-bound, bound))
        elif memory_init == "random":
            bound = 1.0 / (N + M) ** 0.5
            self.register_buffer("init_memory", (torch.rand(N, M, generator=generator) * 2 - 1) * bound)
        else:
            self.register_buffer("init_memory", torch.full((N, M), float(init_value)))
        self.init_reads = nn.Parameter(torch.zeros(R, M))
        logits = torch.zeros(R + W, N)
        logits[:, 0] = initial_focus
        self.init_weight_logits = nn.Parameter(logits)

    def initial_state(self, batch: int, *, device: torch.device | None = None,
                      dtype: torch.dtype | None = None) -> NTMState:
        """The state every sequence starts from (memory, read vectors and weightings broadcast over the batch)."""
        device = device or self.init_reads.device
        dtype = dtype or self.init_reads.dtype
        memory = self.init_memory.to(device, dtype).expand(batch, -1, -1)  # (B, N, M)
        reads = self.init_reads.to(dtype).expand(batch, -1, -1)  # (B, R, M)
        weights = torch.softmax(self.init_weight_logits.to(dtype), -1).expand(batch, -1, -1)  # (B, H, N)
        return NTMState(memory, reads, weights, self.controller.initial_state(batch, device=device, dtype=dtype))

    def step(self, x: Tensor, state: NTMState) -> tuple[Tensor, NTMState, dict[str, Tensor]]:
        """One time step: ``x (B, X)`` -> logits ``(B, Y)``, the next state, and the heads' parameters."""
        R, W, M = self.read_heads, self.write_heads, self.memory_width
        ctrl_in = torch.cat([x, rearrange(state.reads, "b r m -> b (r m)")], -1)  # (B, X + R*M)
        h, ctrl_state = self.controller(ctrl_in, state.controller)  # (B, C)
        raw = self.heads(h)
        addr_raw, ea_raw = raw.split([(R + W) * self.head_size, W * 2 * M], -1)
        p = squash_head(rearrange(addr_raw, "b (h p) -> b h 1 p", h=R + W),  # (B, H, 1, P)
                        width=M, shifts=2 * self.shift_range + 1)
        att = address(p["key"], state.memory.unsqueeze(1), beta=p["beta"], gate=p["gate"], shifts=p["shifts"],
                      gamma=p["gamma"], previous=state.weights.unsqueeze(2))  # weights (B, H, 1, N)
        weights = att.weights.squeeze(2)  # (B, H, N)
        reads = att.output[:, :R, 0]  # (B, R, M): eq. 2 for the read heads
        ea = rearrange(ea_raw, "b (w two m) -> two b w m", w=W, two=2, m=M)  # (2, B, W, M)
        erase, add = torch.sigmoid(ea[0]), torch.tanh(ea[1])
        memory = write(state.memory, weights[:, R:], erase, add) if W else state.memory
        y = self.out(torch.cat([h, rearrange(reads, "b r m -> b (r m)")], -1))  # (B, Y)
        extras = {"erase": erase, "add": add, "beta": p["beta"][..., 0, 0], "gate": p["gate"][..., 0, 0],
                  "gamma": p["gamma"][..., 0, 0]}
        return y, NTMState(memory, reads, weights, ctrl_state), extras

    def forward(self, x: Tensor, *, state: NTMState | None = None, return_trace: bool = False) -> NTMOutput:
        """Run the sequence ``x (B, T, X)`` from the initial state (or ``state``); logits ``(B, T, Y)``."""
        x = check_tensor("x", x, min_dim=3)
        if x.dim() != 3 or x.shape[-1] != self.input_dim:
            raise ValueError(f"x must be (B, T, input_dim={self.input_dim}), got shape {tuple(x.shape)}")
        check_flag("return_trace", return_trace)
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        initial_memory = state.memory
        outputs, steps = [], []
        for t in range(x.shape[1]):
            if t and self.state_grad_clip is not None and torch.is_grad_enabled():
                state = self._clip_backward(state, self.state_grad_clip)
            y, state, extras = self.step(x[:, t], state)
            outputs.append(y)
            if return_trace:
                steps.append({"weights": state.weights, "memory": state.memory, "reads": state.reads, **extras})
        trace = None
        if return_trace:
            def stack(name: str) -> Tensor:
                return torch.stack([s[name] for s in steps], 1)  # (B, T, ...)

            weights = stack("weights")  # (B, T, H, N)
            R = self.read_heads
            trace = NTMTrace(read_weights=weights[:, :, :R], write_weights=weights[:, :, R:], memory=stack("memory"),
                             initial_memory=initial_memory, reads=stack("reads"), erase=stack("erase"),
                             add=stack("add"), beta=stack("beta"), gate=stack("gate"), gamma=stack("gamma"))
        return NTMOutput(torch.stack(outputs, 1), state, trace)  # (B, T, Y)

    @staticmethod
    def _clip_backward(state: NTMState, max_norm: float) -> NTMState:
        """The same state; in the backward pass each tensor's gradient is bounded (:func:`clip_state_grad`)."""
        return NTMState(clip_state_grad(state.memory, max_norm), clip_state_grad(state.reads, max_norm),
                        clip_state_grad(state.weights, max_norm),
                        tuple(clip_state_grad(t, max_norm) for t in state.controller))

    def extra_repr(self) -> str:
        return (f"controller={self.controller_kind!r}, N={self.memory_slots}, M={self.memory_width}, "
                f"read_heads={self.read_heads}, write_heads={self.write_heads}, shift_range={self.shift_range}, "
                f"memory_init={self.memory_init!r}")
