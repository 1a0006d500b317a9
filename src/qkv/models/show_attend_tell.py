"""Show, Attend and Tell (Xu et al. 2015): a CNN's grid of annotation vectors, an LSTM that attends over it.

Shape legend: ``B`` batch, ``C`` image side (``1 x C x C`` images), ``Gh x Gw`` the encoder's grid,
``L = Gh * Gw`` annotation vectors (locations), ``D`` annotation width, ``n`` LSTM width, ``m`` word
embedding width, ``A`` width of the attention MLP, ``V`` vocabulary, ``T`` caption steps.

* **Encoder** (§3.1.1): a small CNN (three 3x3 convolutions, two of stride 2, then a ``last_kernel`` x
  ``last_kernel`` one; batch norm and ReLU between); its last feature map, ``(D, Gh, Gw)``, is read as ``L``
  annotation vectors :math:`a_i \\in \\mathbb{R}^D`, each the summary of a ``stride x stride`` block of the image
  (cell ``(r, c)`` covers pixels ``[stride r, stride (r+1)) x [stride c, stride (c+1))``,
  :meth:`ShowAttendTell.cell_boxes`). Each annotation sees ``9 + 4 (last_kernel - 1)`` pixels square around its block:
  17 with ``last_kernel=3``, so a blank block next to a digit sees the whole digit and soft attention often peaks
  there (measured: 80% of the misses of a soft model's most-attended block were such blank neighbours); 9 with
  ``last_kernel=1`` (local annotations), which puts the peak on the digit itself.
  The paper's VGG features carry where they are through very wide receptive fields; a four-layer CNN barely
  does, so (``positions=True``, a documented deviation) the fixed 2-D sine-cosine embedding of the cell
  (:func:`qkv.positional.grid.sinusoidal_2d`) is added to each :math:`a_i`.
* **Attention** (eq. 4-6): :math:`e_{ti} = f_{att}(a_i, h_{t-1})`, the MLP score
  :math:`v^\\top \\tanh(W a_i + U h_{t-1})` (:class:`qkv.layers.scores.Additive`), normalised over the ``L``
  locations. **The read is one call of** :func:`qkv.attend`::

      attend(h_prev[:, None], a, a, score=self.score, normalize=N, return_weights=True, return_scores=True)

  with ``N = "softmax"`` for **soft** attention (:math:`\\hat z_t = \\sum_i \\alpha_{ti} a_i`, eq. 13),
  ``N = Sample(generator=g)`` for **hard** attention (one location :math:`\\tilde s_t \\sim
  \\mathrm{Multinoulli}(\\alpha_t)`, :math:`\\hat z_t = a_{\\tilde s_t}`, eq. 8-9, with the core's log-probability
  for REINFORCE) and ``N = "hard"`` (the most probable location) for deterministic hard decoding.
  :meth:`ShowAttendTell.attention` is that call; a test checks the identity.
* **Gate** (§4.2.1): :math:`\\hat z_t \\leftarrow \\beta_t \\hat z_t`, :math:`\\beta_t = \\sigma(f_\\beta(h_{t-1}))`,
  initialised open (:math:`\\beta \\approx 0.95`): from PyTorch's default initialisation (:math:`\\beta \\approx
  0.5`) the gate closed within the first 50 steps and the encoder got no gradient (measured: words at chance).
* **Decoder** (eq. 1-3): an LSTM cell on :math:`[E y_{t-1};\\ \\hat z_t]`; initial state from the mean annotation
  (§3.1.2): :math:`h_0 = \\tanh(f_{init,h}(\\bar a))`, :math:`c_0 = \\tanh(f_{init,c}(\\bar a))`.
* **Deep output** (eq. 7): :math:`p(y_t) \\propto \\exp(L_o(E y_{t-1} + L_h h_t + L_z \\hat z_t))`.

Training objectives (the losses are assembled by the caller, who owns REINFORCE's baseline): soft attention is
trained by backpropagation on :math:`-\\log p(y \\mid a) + \\lambda \\sum_i (1 - \\sum_t \\alpha_{ti})^2`
(:func:`doubly_stochastic_penalty`, eq. 14); hard attention by eq. 12 (:mod:`qkv.train.reinforce`), from the
per-step log-probabilities and the entropies :math:`H[\\tilde s_t]` that :meth:`ShowAttendTell.forward` returns.

**At test time** a soft model reads the expected context; a hard model reads the single most probable
location (``read="argmax"``): each generated word then comes with one location, as in the paper's figures of
hard attention. (``read="sample"`` draws it instead; ``read="soft"`` gives a hard model the expected context.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from einops import rearrange
from torch import Tensor, nn

from qkv.functional.attention import attend
from qkv.functional.checks import check_dropout, check_positive_int
from qkv.functional.normalize import Normalizer, Sample, log_softmax
from qkv.functional.output import AttentionOutput
from qkv.layers.scores import Additive
from qkv.positional.grid import sinusoidal_2d

__all__ = ["CaptionOutput", "Decoded", "ShowAttendTell", "doubly_stochastic_penalty"]

Read = Literal["soft", "sample", "argmax"]
READS = ("soft", "sample", "argmax")


@dataclass(frozen=True)
class CaptionOutput:
    """What :meth:`ShowAttendTell.forward` returns for ``T`` teacher-forced steps.

    Attributes:
        logits: ``(B, T, V)`` the next-word scores (eq. 7).
        weights: ``(B, T, L)`` the attention weights of the read: :math:`\\alpha_t` (soft) or one-hot (hard).
        probs: ``(B, T, L)`` the attention distribution :math:`\\alpha_t` (equal to ``weights`` for soft reads).
        log_prob: ``(B, T)`` :math:`\\log p(\\tilde s_t)` of the sampled locations (``read="sample"``), else ``None``.
        entropy: ``(B, T)`` :math:`H[\\alpha_t]` in nats.
        gate: ``(B, T)`` the gating scalars :math:`\\beta_t` (ones without the gate).
    """

    logits: Tensor
    weights: Tensor
    probs: Tensor
    log_prob: Tensor | None
    entropy: Tensor
    gate: Tensor


@dataclass(frozen=True)
class Decoded:
    """Greedy captions: ``tokens (B, T)`` (``<pad>`` after ``<eos>``), ``weights``/``probs`` ``(B, T, L)`` per word."""

    tokens: Tensor
    weights: Tensor
    probs: Tensor


def doubly_stochastic_penalty(weights: Tensor, steps: Tensor | None = None) -> Tensor:
    """Eq. 14's regulariser :math:`\\sum_i (1 - \\sum_t \\alpha_{ti})^2` per example, ``(B,)``.

    Args:
        weights: ``(B, T, L)`` attention weights.
        steps: ``(B, T)`` bool, the steps that count (a caption's real words); ``None`` counts all.
    """
    if weights.dim() != 3:
        raise ValueError(f"weights must be (B, T, L), got shape {tuple(weights.shape)}")
    if steps is not None:
        if steps.shape != weights.shape[:2]:
            raise ValueError(f"steps must be (B, T) = {tuple(weights.shape[:2])}, got shape {tuple(steps.shape)}")
        weights = weights * steps.unsqueeze(-1).to(weights.dtype)
    return (1 - weights.sum(1)).pow(2).sum(-1)  # (B,)


class ShowAttendTell(nn.Module):
    """An image captioner with soft or hard attention over a CNN's grid (Xu et al. 2015).

    Args:
        vocab_size: ``V``.
        image_size: ``C``, the side of the square one-channel images.
        attention: ``"soft"`` (deterministic, eq. 13) or ``"hard"`` (stochastic, eq. 8-12): the default read in
            training (``soft`` / ``sample``) and in eval mode (``soft`` / ``argmax``).
        channels: widths of the CNN's first two convolutions; the last two give ``annotation_dim``.
        annotation_dim: ``D`` (a multiple of 4 when ``positions``).
        embed_dim: ``m``; hidden_dim: ``n``; attention_dim: ``A``.
        positions: add the cell's 2-D sine-cosine embedding to each annotation.
        gate: use :math:`\\beta_t` (§4.2.1).
        dropout: before the deep output layer.
        last_kernel: the side of the last convolution's kernel, odd (module docstring: 1 keeps annotations local).
    """

    def __init__(
        self, vocab_size: int, *, image_size: int = 32, attention: str = "soft", channels: tuple[int, int] = (16, 32),
        annotation_dim: int = 64, embed_dim: int = 32, hidden_dim: int = 128, attention_dim: int = 64,
        positions: bool = True, gate: bool = True, dropout: float = 0.0, last_kernel: int = 3,
    ) -> None:
        super().__init__()
        self.vocab_size = check_positive_int("vocab_size", vocab_size)
        image_size = check_positive_int("image_size", image_size)
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4 (two stride-2 convolutions), got {image_size}")
        if attention not in ("soft", "hard"):
            raise ValueError(f"attention must be 'soft' or 'hard', got {attention!r}")
        if not (isinstance(channels, tuple | list) and len(channels) == 2):
            raise ValueError(f"channels must be a pair of positive ints, got {channels!r}")
        c1, c2 = (check_positive_int("channels", c) for c in channels)
        D = check_positive_int("annotation_dim", annotation_dim)
        if positions and D % 4:
            raise ValueError(f"annotation_dim must be a multiple of 4 when positions=True, got {D}")
        m, n = check_positive_int("embed_dim", embed_dim), check_positive_int("hidden_dim", hidden_dim)
        A = check_positive_int("attention_dim", attention_dim)
        k = check_positive_int("last_kernel", last_kernel)
        if k % 2 == 0:
            raise ValueError(f"last_kernel must be odd (the grid keeps its size), got {last_kernel}")
        self.attention_kind = attention
        self.stride = 4
        self.grid = (image_size // 4, image_size // 4)
        self.image_size = image_size
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.BatchNorm2d(c2), nn.ReLU(),
            nn.Conv2d(c2, D, 3, stride=2, padding=1), nn.BatchNorm2d(D), nn.ReLU(),
            nn.Conv2d(D, D, k, padding=k // 2),
        )
        self.register_buffer("position", sinusoidal_2d(self.grid, D) if positions else torch.zeros(1, D),
                             persistent=False)
        self.score = Additive(n, D, hidden_dim=A, hidden_bias=True)  # f_att(a_i, h_{t-1}), eq. 4
        self.init_h, self.init_c = nn.Linear(D, n), nn.Linear(D, n)  # §3.1.2
        self.f_beta = nn.Linear(n, 1) if gate else None  # §4.2.1
        if self.f_beta is not None:  # start open (beta ~ 0.95): a closed gate at init starves the encoder
            nn.init.zeros_(self.f_beta.weight)
            nn.init.constant_(self.f_beta.bias, 3.0)
        self.embed = nn.Embedding(vocab_size, m)  # E
        self.cell = nn.LSTMCell(m + D, n)
        self.out_h, self.out_z = nn.Linear(n, m), nn.Linear(D, m)  # L_h, L_z
        self.out = nn.Linear(m, vocab_size)  # L_o
        self.dropout = nn.Dropout(check_dropout(dropout))

    # -- the parts -------------------------------------------------------------------------------
    def annotate(self, images: Tensor) -> Tensor:
        """``images (B, 1, C, C)`` -> annotations ``a (B, L, D)`` in row-major cell order."""
        if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1:] != (1, self.image_size,
                                                                                         self.image_size):
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must be (B, 1, {self.image_size}, {self.image_size}), got {got}")
        features = self.encoder(images)  # (B, D, Gh, Gw)
        return rearrange(features, "b d gh gw -> b (gh gw) d") + self.position  # (B, L, D)

    def init_state(self, a: Tensor) -> tuple[Tensor, Tensor]:
        """:math:`h_0, c_0` from the mean annotation (§3.1.2), each ``(B, n)``."""
        mean = a.mean(1)  # (B, D)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))

    def normalizer(self, read: str, generator: torch.Generator | None = None) -> str | Normalizer:
        """The ``normalize=`` argument of the read: ``"softmax"``, ``Sample(generator=...)`` or ``"hard"``."""
        if read not in READS:
            raise ValueError(f"read must be one of {READS}, got {read!r}")
        return {"soft": "softmax", "argmax": "hard"}.get(read) or Sample(generator=generator)

    def attention(self, h: Tensor, a: Tensor, *, read: str = "soft", generator: torch.Generator | None = None
                  ) -> AttentionOutput:
        """One read (eq. 4-6, 8-9, 13): ``attend(h[:, None], a, a, score=self.score, normalize=...)``.

        Args:
            h: ``(B, n)`` the previous hidden state :math:`h_{t-1}`.
            a: ``(B, L, D)`` the annotations.

        Returns:
            The core's :class:`AttentionOutput` with ``output (B, 1, D)``, ``weights``/``scores`` ``(B, 1, L)``
            and, for ``read="sample"``, ``log_prob (B, 1)``.
        """
        return attend(h[:, None], a, a, score=self.score, normalize=self.normalizer(read, generator),
                      return_weights=True, return_scores=True)

    def default_read(self) -> str:
        if self.attention_kind == "soft":
            return "soft"
        return "sample" if self.training else "argmax"

    def step(self, prev: Tensor, state: tuple[Tensor, Tensor], a: Tensor, *, read: str,
             generator: torch.Generator | None = None) -> tuple[Tensor, tuple[Tensor, Tensor], dict[str, Tensor]]:
        """One word: attend with :math:`h_{t-1}`, gate, update the LSTM, score the next word (eq. 1-7).

        Args:
            prev: ``(B,)`` the previous word :math:`y_{t-1}`.
            state: ``(h, c)``, each ``(B, n)``.

        Returns:
            ``logits (B, V)``, the new state, and the step's ``weights``, ``probs`` ``(B, L)``, ``log_prob``,
            ``entropy`` and ``gate`` ``(B,)``.
        """
        h, c = state
        read_out = self.attention(h, a, read=read, generator=generator)
        z = read_out.output[:, 0]  # (B, D)
        logp_all = log_softmax(read_out.scores[:, 0])  # (B, L): log alpha_t
        probs = logp_all.exp()
        entropy = -(probs * logp_all.clamp_min(-1e4)).sum(-1)  # (B,)
        gate = torch.sigmoid(self.f_beta(h))[:, 0] if self.f_beta is not None else torch.ones_like(entropy)
        z = gate[:, None] * z
        e = self.embed(prev)  # (B, m)
        h, c = self.cell(torch.cat([e, z], -1), (h, c))
        logits = self.out(self.dropout(e + self.out_h(h) + self.out_z(z)))  # (B, V), eq. 7
        log_prob = read_out.log_prob[:, 0] if read_out.log_prob is not None else torch.zeros_like(entropy)
        info = {"weights": read_out.weights[:, 0], "probs": probs, "log_prob": log_prob, "entropy": entropy,
                "gate": gate}
        return logits, (h, c), info

    # -- whole captions --------------------------------------------------------------------------
    def forward(self, images: Tensor, tokens: Tensor, *, read: str | None = None,
                generator: torch.Generator | None = None) -> CaptionOutput:
        """Teacher-forced: predict ``tokens[:, 1:]`` from ``tokens[:, :-1]``.

        Args:
            images: ``(B, 1, C, C)``.
            tokens: ``(B, T + 1)`` ids starting with ``<bos>``.
            read: ``"soft"``, ``"sample"`` or ``"argmax"``; ``None`` is the model's default (class docstring).
            generator: the random source of ``read="sample"`` (``None``: torch's global one, which the trainer
                seeds and checkpoints).
        """
        if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.dtype != torch.long or tokens.shape[1] < 2:
            got = f"{tuple(tokens.shape)} {tokens.dtype}" if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ValueError(f"tokens must be a (B, T + 1) long tensor with T >= 1, got {got}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(f"tokens must be ids in [0, vocab_size = {self.vocab_size}), "
                             f"got min {int(tokens.min())}, max {int(tokens.max())}")
        a = self.annotate(images)
        if tokens.shape[0] != a.shape[0]:
            raise ValueError(f"tokens must have the images' batch size {a.shape[0]}, got {tokens.shape[0]}")
        read = self.default_read() if read is None else read
        state = self.init_state(a)
        logits, infos = [], []
        for t in range(tokens.shape[1] - 1):
            step_logits, state, info = self.step(tokens[:, t], state, a, read=read, generator=generator)
            logits.append(step_logits)
            infos.append(info)
        stack = {k: torch.stack([i[k] for i in infos], 1) for k in infos[0]}  # each (B, T, ...)
        return CaptionOutput(logits=torch.stack(logits, 1), weights=stack["weights"], probs=stack["probs"],
                             log_prob=stack["log_prob"] if read == "sample" else None, entropy=stack["entropy"],
                             gate=stack["gate"])

    @torch.no_grad()
    def greedy(self, images: Tensor, *, bos: int, eos: int, max_len: int, read: str | None = None,
               generator: torch.Generator | None = None) -> Decoded:
        """Greedy decoding: the most probable word at each step, until every caption has emitted ``eos``.

        Returns:
            :class:`Decoded`: ``tokens (B, T)`` without ``<bos>`` (``T <= max_len``, ``<eos>`` included, ``0``
            after it) and the attention of each generated word, ``(B, T, L)``.
        """
        check_positive_int("max_len", max_len)
        a = self.annotate(images)
        read = self.default_read() if read is None else read
        state = self.init_state(a)
        prev = torch.full((a.shape[0],), bos, dtype=torch.long, device=a.device)
        done = torch.zeros(a.shape[0], dtype=torch.bool, device=a.device)
        tokens, weights, probs = [], [], []
        for _ in range(max_len):
            logits, state, info = self.step(prev, state, a, read=read, generator=generator)
            prev = logits.argmax(-1)  # (B,)
            tokens.append(torch.where(done, torch.zeros_like(prev), prev))
            weights.append(info["weights"])
            probs.append(info["probs"])
            done = done | (prev == eos)
            if bool(done.all()):
                break
        return Decoded(tokens=torch.stack(tokens, 1), weights=torch.stack(weights, 1), probs=torch.stack(probs, 1))

    def cell_boxes(self) -> Tensor:
        """``(L, 4)`` the pixel block ``(y0, x0, y1, x1)`` (exclusive ends) each location summarises, row-major."""
        gh, gw = self.grid
        idx = torch.arange(gh * gw)
        y0, x0 = (idx // gw) * self.stride, (idx % gw) * self.stride  # (L,)
        return torch.stack([y0, x0, y0 + self.stride, x0 + self.stride], -1)
