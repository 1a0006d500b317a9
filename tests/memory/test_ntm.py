"""The NTM: addressing (eq. 5-9) and memory access (eq. 2-4) against loop transcriptions of Graves et al. 2014,
the ``attend`` identities, a float64 gradcheck through one full step, stability in an adversarial setting, seeds."""

from __future__ import annotations

import math

import pytest
import torch

import qkv
from qkv import memory
from qkv.memory.ntm import (
    NTM,
    KeyStrengthCosine,
    address,
    content_weights,
    interpolate,
    read,
    sharpen,
    shift,
    write,
)

N, M = 6, 4


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _simplex(*shape, seed=0):
    return torch.softmax(2 * _rand(*shape, seed=seed), -1)


# -- transcriptions of the paper's equations, one number at a time ---------------------------------------------

def _eq5_6(k, mem, beta):
    """w^c(i) = exp(beta K[k, M(i)]) / sum_j exp(beta K[k, M(j)]), K the cosine similarity."""
    sims = []
    for i in range(len(mem)):
        dot = sum(k[d] * mem[i][d] for d in range(len(k)))
        norm_k = math.sqrt(sum(x * x for x in k))
        norm_m = math.sqrt(sum(x * x for x in mem[i]))
        sims.append(dot / (norm_k * norm_m))
    e = [math.exp(beta * s) for s in sims]
    return [x / sum(e) for x in e]


def _eq7(wc, wprev, g):
    return [g * wc[i] + (1 - g) * wprev[i] for i in range(len(wc))]


def _eq8(w, s):
    """w~(i) = sum_j w(j) s(i - j), indices modulo N; s over shifts -k..k."""
    n, k = len(w), len(s) // 2
    out = []
    for i in range(n):
        total = 0.0
        for j in range(n):
            d = (i - j) % n  # the shift taking slot j to slot i
            for m in range(-k, k + 1):
                if m % n == d:
                    total += w[j] * s[m + k]
        out.append(total)
    return out


def _eq9(w, gamma):
    p = [x**gamma for x in w]
    return [x / sum(p) for x in p]


def _eq2(mem, w):
    return [sum(w[i] * mem[i][d] for i in range(len(mem))) for d in range(len(mem[0]))]


def _eq3_4(mem, ws, es, adds):
    """Erase with every head, then add with every head (§3.2)."""
    out = [row[:] for row in mem]
    for w, e in zip(ws, es, strict=True):
        out = [[out[i][d] * (1 - w[i] * e[d]) for d in range(len(e))] for i in range(len(out))]
    for w, a in zip(ws, adds, strict=True):
        out = [[out[i][d] + w[i] * a[d] for d in range(len(a))] for i in range(len(out))]
    return out


# -- addressing against the transcriptions ----------------------------------------------------------------------

def test_content_addressing_is_equations_5_and_6():
    key, mem, beta = _rand(3, 1, M, seed=1), _rand(N, M, seed=2), torch.tensor([0.5, 3.0, 40.0], dtype=torch.float64)
    w = content_weights(key, mem, beta.view(3, 1, 1))  # (3, 1, N)
    for h in range(3):
        expected = _eq5_6(key[h, 0].tolist(), mem.tolist(), float(beta[h]))
        torch.testing.assert_close(w[h, 0], torch.tensor(expected, dtype=torch.float64))


def test_content_addressing_is_attend_with_the_cosine_score_scaled_by_beta():
    key, mem = _rand(2, 3, 1, M, seed=3), _rand(2, 1, N, M, seed=4)  # (B, H, 1, M), (B, 1, N, M)
    beta = torch.tensor([[0.3, 2.0, 9.0], [1.0, 5.0, 0.0]], dtype=torch.float64)  # (B, H)
    w = content_weights(key, mem, beta[..., None, None])
    for b in range(2):
        for h in range(3):
            ref = qkv.attend(key[b, h], mem[b, 0], mem[b, 0], score="cosine", scale=float(beta[b, h]),
                             return_weights=True).weights
            torch.testing.assert_close(w[b, h], ref)
    assert KeyStrengthCosine(beta[..., None, None]).kind == "dot"


def test_interpolation_shift_and_sharpening_are_equations_7_to_9():
    wc, wprev = _simplex(N, seed=5), _simplex(N, seed=6)
    g, gamma = 0.3, 2.7
    wg = interpolate(wc, wprev, torch.tensor([g], dtype=torch.float64))
    torch.testing.assert_close(wg, torch.tensor(_eq7(wc.tolist(), wprev.tolist(), g), dtype=torch.float64))
    for K in (1, 3, 5):
        s = _simplex(K, seed=K)
        torch.testing.assert_close(shift(wg, s), torch.tensor(_eq8(wg.tolist(), s.tolist()), dtype=torch.float64))
    ws = shift(wg, _simplex(3, seed=7))
    torch.testing.assert_close(sharpen(ws, torch.tensor([gamma], dtype=torch.float64)),
                               torch.tensor(_eq9(ws.tolist(), gamma), dtype=torch.float64))


def test_shift_plus_one_moves_the_focus_to_the_next_slot_circularly():
    w = torch.zeros(N, dtype=torch.float64)
    w[N - 1] = 1.0
    moved = shift(w, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))  # shifts -1, 0, +1
    assert moved[0] == 1.0 and moved.sum() == 1.0


def test_one_attend_call_gives_the_whole_head_and_its_read():
    B, H = 2, 3
    key, mem = _rand(B, H, 1, M, seed=8), _rand(B, 1, N, M, seed=9)
    beta = torch.rand(B, H, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 5
    gate = torch.rand(B, H, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    s, prev = _simplex(B, H, 1, 3, seed=10), _simplex(B, H, 1, N, seed=11)
    gamma = 1 + torch.rand(B, H, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 3
    out = address(key, mem, beta=beta, gate=gate, shifts=s, gamma=gamma, previous=prev)
    for b in range(B):
        for h in range(H):
            w = _eq5_6(key[b, h, 0].tolist(), mem[b, 0].tolist(), float(beta[b, h]))
            w = _eq9(_eq8(_eq7(w, prev[b, h, 0].tolist(), float(gate[b, h])), s[b, h, 0].tolist()), float(gamma[b, h]))
            torch.testing.assert_close(out.weights[b, h, 0], torch.tensor(w, dtype=torch.float64))
            torch.testing.assert_close(out.output[b, h, 0], torch.tensor(_eq2(mem[b, 0].tolist(), w),
                                                                          dtype=torch.float64))
    torch.testing.assert_close(out.output[:, :, 0], read(mem[:, 0], out.weights[:, :, 0]))


def test_read_and_write_are_equations_2_to_4_and_write_order_does_not_matter():
    mem = _rand(N, M, seed=12)
    ws, es, adds = _simplex(2, N, seed=13), torch.sigmoid(_rand(2, M, seed=14)), _rand(2, M, seed=15)
    torch.testing.assert_close(read(mem, ws), torch.tensor([_eq2(mem.tolist(), w) for w in ws.tolist()],
                                                           dtype=torch.float64))
    new = write(mem, ws, es, adds)
    torch.testing.assert_close(new, torch.tensor(_eq3_4(mem.tolist(), ws.tolist(), es.tolist(), adds.tolist()),
                                                 dtype=torch.float64))
    torch.testing.assert_close(write(mem, ws.flip(0), es.flip(0), adds.flip(0)), new)
    one_hot = torch.zeros(1, N, dtype=torch.float64)
    one_hot[0, 2] = 1
    full = write(mem, one_hot, torch.ones(1, M, dtype=torch.float64), adds[:1])
    torch.testing.assert_close(full[2], adds[0])  # full erase then add replaces the slot
    torch.testing.assert_close(full[[0, 1, 3, 4, 5]], mem[[0, 1, 3, 4, 5]])


# -- the model ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
def test_gradcheck_through_one_full_step(controller):
    torch.manual_seed(0)
    ntm = NTM(3, 2, controller=controller, controller_dim=4, memory_slots=4, memory_width=2, read_heads=2,
              write_heads=2, memory_init="learned").double()
    B = 1
    x = _rand(B, 3, seed=16).requires_grad_()
    s0 = ntm.initial_state(B)
    mem = (s0.memory + 0.3 * _rand(B, 4, 2, seed=17)).detach().requires_grad_()
    reads = _rand(B, 2, 2, seed=18).requires_grad_()
    wts = _simplex(B, 4, 4, seed=19).requires_grad_()

    def one_step(x, mem, reads, wts):
        state = type(s0)(mem, reads, wts, s0.controller)
        y, new, _ = ntm.step(x, state)
        return y, new.memory, new.reads, new.weights

    assert torch.autograd.gradcheck(one_step, (x, mem, reads, wts))
    y = one_step(x, mem, reads, wts)
    sum(t.sum() for t in y).backward()
    assert all(p.grad is not None for p in ntm.parameters() if p is not ntm.init_weight_logits
               and p is not ntm.init_reads and p is not ntm.init_memory)


def test_adversarial_setting_stays_finite_forward_and_backward():
    """Tiny memory (N=2, M=1), zero initial memory (cosine of zero vectors), huge key strengths and sharpening,
    large inputs, 200 steps: every output, weighting, memory entry and gradient stays finite."""
    torch.manual_seed(0)
    ntm = NTM(4, 3, controller="lstm", controller_dim=8, memory_slots=3, memory_width=1, read_heads=2,
              write_heads=2, memory_init="constant", init_value=0.0)
    with torch.no_grad():
        ntm.heads.weight.mul_(50.0)
        ntm.heads.bias.fill_(30.0)  # softplus(30) = 30: beta ~ 30+, gamma ~ 31+, gates ~ 1, erase ~ 1
    x = 100 * torch.randn(2, 200, 4)
    out = ntm(x, return_trace=True)
    tr = out.trace
    for t in (out.output, tr.read_weights, tr.write_weights, tr.memory, tr.beta, tr.gamma):
        assert torch.isfinite(t).all()
    assert tr.beta.max() > 20 and tr.gamma.max() > 20
    out.output.square().mean().backward()
    for p in ntm.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


def _unstable_tie_ntm(state_grad_clip):
    """The failure mode of the ``ntm-repeat-copy`` NaN at small size: a uniform weighting is a fixed point of
    sharpening (eq. 9), an unstable one — its Jacobian is gamma (I - 11^T / N) — so with location addressing only
    (gate ~ 0, shift "stay") the gradient grows like gamma^T back through time while the forward pass stays exact.
    Tiny memory (N = 4, M = 2, random rows so the read depends on the slot), large key strengths (beta ~ 30),
    gamma ~ 3.1, and a uniform initial weighting."""
    torch.manual_seed(0)
    ntm = NTM(3, 2, controller="feedforward", controller_dim=8, memory_slots=4, memory_width=2, initial_focus=0.0,
              memory_init="random", generator=torch.Generator().manual_seed(0), state_grad_clip=state_grad_clip)
    P, M = ntm.head_size, 2
    with torch.no_grad():
        ntm.heads.weight.zero_()
        b = ntm.heads.bias
        b.zero_()
        for o in (0, P):  # the read head, then the write head: key, beta, gate, shifts (-1, 0, +1), gamma
            b[o + M], b[o + M + 1], b[o + M + 5] = 30.0, -30.0, 2.0
            b[o + M + 2 : o + M + 5] = torch.tensor([-30.0, 30.0, -30.0])
        b[2 * P : 2 * P + M] = -30.0  # erase nothing
    return ntm


@pytest.mark.parametrize("steps", [40, 160])
def test_gradient_through_many_steps_stays_finite_and_bounded(steps):
    """Regression test of the NaN at step 2,058 of a 12,000-step ntm-repeat-copy run. Without the per-step bound on
    the state's gradient (``state_grad_clip=None``) the parameters' gradient is ~1e16 after 40 steps and NaN after
    160 (float32 overflows inside backward; no clipping of the parameters' gradient afterwards can help); with it
    (the default) the gradient stays O(1), and the forward pass is the same."""
    x = torch.randn(2, steps, 3, generator=torch.Generator().manual_seed(1))
    grads, outputs = {}, {}
    for clip in (None, 1.0):
        ntm = _unstable_tie_ntm(clip)
        out = ntm(x, return_trace=True)
        assert torch.isfinite(out.output).all() and torch.isfinite(out.trace.memory).all()
        torch.testing.assert_close(out.trace.read_weights[:, -1], torch.full((2, 1, 4), 0.25))  # stays uniform
        out.output.square().mean().backward()
        outputs[clip] = out.output.detach()
        grads[clip] = torch.cat([p.grad.flatten() for p in ntm.parameters() if p.grad is not None])
    torch.testing.assert_close(outputs[None], outputs[1.0], rtol=0, atol=0)
    unclipped = grads[None].abs().max()
    assert not (unclipped < 1e12)  # explodes (or is NaN) without the safeguard: the test can fail
    assert torch.isfinite(grads[1.0]).all() and grads[1.0].abs().max() < 10.0
    if steps == 160:
        assert not torch.isfinite(grads[None]).all()  # the NaN itself


def test_state_gradient_bound_changes_nothing_below_it():
    """Training-sized gradients (norm << 1) are untouched: the same parameter gradients with and without it."""
    torch.manual_seed(0)
    ntm = NTM(5, 4, controller_dim=16, memory_slots=8, memory_width=4)
    x = _rand(3, 12, 5, seed=21, dtype=torch.float32)
    grads = {}
    for clip in (None, 1.0):
        ntm.state_grad_clip = clip
        ntm.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(ntm(x).output, torch.ones(3, 12, 4)).backward()
        grads[clip] = [p.grad.clone() for p in ntm.parameters() if p.grad is not None]
    for a, b in zip(grads[None], grads[1.0], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_same_seed_same_model_and_outputs():
    def build():
        torch.manual_seed(3)
        return NTM(5, 4, controller_dim=16, memory_slots=8, memory_width=4, memory_init="learned")

    x = _rand(2, 7, 5, seed=20, dtype=torch.float32)
    a, b = build(), build()
    torch.testing.assert_close(a(x).output, b(x).output, rtol=0, atol=0)


def test_memory_is_reset_for_every_sequence_and_trace_shapes():
    torch.manual_seed(0)
    ntm = NTM(3, 2, controller_dim=8, memory_slots=7, memory_width=5, read_heads=2, write_heads=3)
    x = torch.randn(4, 6, 3)
    first = ntm(x, return_trace=True)
    torch.testing.assert_close(ntm(x).output, first.output)  # nothing carried over from the first call
    tr = first.trace
    assert first.output.shape == (4, 6, 2)
    assert tr.read_weights.shape == (4, 6, 2, 7) and tr.write_weights.shape == (4, 6, 3, 7)
    assert tr.memory.shape == (4, 6, 7, 5) and tr.add.shape == (4, 6, 3, 5)
    torch.testing.assert_close(tr.read_weights.sum(-1), torch.ones(4, 6, 2))
    torch.testing.assert_close(tr.initial_memory, torch.full((4, 7, 5), 1e-6))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="controller"):
        NTM(3, 2, controller="gru")
    with pytest.raises(ValueError, match="memory_init"):
        NTM(3, 2, memory_init="zeros")
    with pytest.raises(ValueError, match="shift_range"):
        NTM(3, 2, memory_slots=2, shift_range=1)
    with pytest.raises(ValueError, match="read_heads"):
        NTM(3, 2, read_heads=0)
    with pytest.raises(ValueError, match="state_grad_clip"):
        NTM(3, 2, state_grad_clip=0.0)
    with pytest.raises(ValueError, match="input_dim"):
        NTM(3, 2, memory_slots=4)(torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match="shifts"):
        shift(torch.ones(4), torch.ones(2))
    with pytest.raises(ValueError, match="gamma"):
        sharpen(torch.ones(4), torch.ones(2))


def test_listed_as_a_memory_model():
    assert NTM in memory.MEMORY_MODELS
