"""Images as sequences of patch vectors, for self-attention over images.

Shape legend: ``B`` batch, ``C`` channels, ``Hi x Wi`` image, ``p`` patch side (``ph x pw``),
``Gh = Hi / ph``, ``Gw = Wi / pw`` the patch grid, ``P = Gh * Gw`` patches, ``E`` embedding width.

Seed 003 (Lee's lecture): an image is a set of vectors — each pixel (``patch=1``) or each patch of
``p x p`` pixels (ViT, Dosovitskiy et al. 2021, §3.1: :math:`x_p \\in \\mathbb{R}^{N \\times (P^2 C)}`) —
and self-attention runs over them. :func:`patchify` cuts the image into row-major patch vectors,
:func:`unpatchify` puts them back; :class:`PatchEmbedding` projects the patches linearly (ViT eq. 1),
optionally prepends a class token, and adds 2-D positions (:func:`qkv.positional.grid.sinusoidal_2d`).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from qkv.functional.checks import check_flag, check_positive_int
from qkv.positional.grid import sinusoidal_2d

__all__ = ["PatchEmbedding", "patchify", "unpatchify"]


def _pair(name: str, value: int | tuple[int, int]) -> tuple[int, int]:
    pair = value if isinstance(value, tuple) else (value, value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return pair


def patchify(images: Tensor, patch: int | tuple[int, int]) -> Tensor:
    """Cut ``(B, C, Hi, Wi)`` images into row-major patch vectors ``(B, P, ph * pw * C)``.

    The feature order inside a patch is ``(row, column, channel)``; ``patch=1`` gives the pixels.
    ``Hi`` and ``Wi`` must be multiples of the patch size.
    """
    ph, pw = _pair("patchify: patch", patch)
    if not isinstance(images, Tensor) or images.dim() != 4:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"patchify: images must be a (B, C, H, W) tensor, got {got}")
    _, _, hi, wi = images.shape
    if hi % ph or wi % pw:
        raise ValueError(f"patchify: the image size {(hi, wi)} is not a multiple of the patch size {(ph, pw)}")
    return rearrange(images, "b c (gh ph) (gw pw) -> b (gh gw) (ph pw c)", ph=ph, pw=pw)  # (B, P, ph*pw*C)


def unpatchify(patches: Tensor, patch: int | tuple[int, int], *, grid: tuple[int, int]) -> Tensor:
    """The inverse of :func:`patchify`: ``(B, P, ph * pw * C)`` back to ``(B, C, Gh * ph, Gw * pw)``."""
    ph, pw = _pair("unpatchify: patch", patch)
    gh, gw = _pair("unpatchify: grid", grid)
    if not isinstance(patches, Tensor) or patches.dim() != 3 or patches.shape[1] != gh * gw or (
        patches.shape[2] % (ph * pw)
    ):
        got = tuple(patches.shape) if isinstance(patches, Tensor) else type(patches).__name__
        raise ValueError(f"unpatchify: patches must be (B, Gh * Gw = {gh * gw}, ph * pw * C), got {got}")
    return rearrange(patches, "b (gh gw) (ph pw c) -> b c (gh ph) (gw pw)", gh=gh, ph=ph, pw=pw)  # (B, C, Hi, Wi)


class PatchEmbedding(nn.Module):
    """Image -> tokens: patches, a linear projection, an optional class token, 2-D sine-cosine positions.

    Args:
        image_size: ``(Hi, Wi)`` or ``Hi`` for a square image.
        patch: ``(ph, pw)`` or ``p``; ``1`` makes every pixel a token.
        channels: ``C``.
        embed_dim: ``E`` (a multiple of 4 when ``positions`` is True).
        class_token: prepend a learned class token (ViT); it gets no 2-D position.
        positions: add :func:`~qkv.positional.grid.sinusoidal_2d` to the patch embeddings (fixed, a buffer).

    ``forward(images (B, C, Hi, Wi)) -> (B, [1 +] P, E)``; ``grid`` is ``(Gh, Gw)`` and ``prefix`` the number
    of tokens before the grid, ready for :class:`qkv.positional.grid.GridRelativePositionBias`.
    """

    def __init__(
        self, image_size: int | tuple[int, int], patch: int | tuple[int, int], channels: int, embed_dim: int, *,
        class_token: bool = False, positions: bool = True,
    ) -> None:
        super().__init__()
        hi, wi = _pair("image_size", image_size)
        self.patch = _pair("patch", patch)
        if hi % self.patch[0] or wi % self.patch[1]:
            raise ValueError(f"image_size {(hi, wi)} must be a multiple of patch {self.patch}")
        self.image_size = (hi, wi)
        self.grid = (hi // self.patch[0], wi // self.patch[1])
        self.channels = check_positive_int("channels", channels)
        self.embed_dim = check_positive_int("embed_dim", embed_dim)
        self.prefix = int(check_flag("class_token", class_token))
        check_flag("positions", positions)
        self.proj = nn.Linear(self.patch[0] * self.patch[1] * self.channels, self.embed_dim)
        self.class_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim)) if class_token else None
        pos = sinusoidal_2d(self.grid, self.embed_dim) if positions else None  # (P, E)
        self.register_buffer("positions", pos, persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        if not isinstance(images, Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != (
            self.channels, *self.image_size
        ):
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must be (B, {self.channels}, {self.image_size[0]}, {self.image_size[1]}), "
                             f"got {got}")
        x = self.proj(patchify(images, self.patch))  # (B, P, E)
        if self.positions is not None:
            x = x + self.positions.to(x.dtype)
        if self.class_token is not None:
            cls = self.class_token.expand(x.shape[0], -1, -1)  # (B, 1, E)
            x = torch.cat([cls, x], dim=1)  # (B, 1 + P, E)
        return x

    def extra_repr(self) -> str:
        return (f"image_size={self.image_size}, patch={self.patch}, channels={self.channels}, "
                f"embed_dim={self.embed_dim}, class_token={self.class_token is not None}")
