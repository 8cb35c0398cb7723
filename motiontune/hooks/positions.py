"""Temporal positions: run the denoiser at float frame positions instead of ``0 .. n-1``.

One interface over the backbones' position mechanisms; each backbone spec implements it in
:meth:`~motiontune.backbones.base.BackboneSpec.temporal_position_context`:

* Wan (and the toy model), HunyuanVideo: the temporal columns of the RoPE module's output;
* CogVideoX: the temporal columns of its 3D RoPE (5b, 1.5) or the temporal quarter of the
  sin-cos table added in the patch embedding (2b); learned tables are refused;
* Latte: the sin-cos table ``temp_pos_embed`` added before the first temporal block;
* UNet3D (ModelScope/ZeroScope): no frame positions; only the stock ones are accepted.

Positions are given per temporal token index, i.e. per latent frame the denoiser's token grid
has after temporal patching (and, on CogVideoX 1.5, after its temporal padding):
``len(positions) == spec.temporal_tokens(num_latent_frames)``.  The count is checked on each
denoiser call inside the context; shape and finiteness on entry.  Errors are
:class:`~motiontune.errors.ConfigError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

import torch

from motiontune.backbones.base import BackboneSpec


def stock_positions(spec: BackboneSpec, num_latent_frames: int) -> torch.Tensor:
    """The positions the denoiser uses by default for ``num_latent_frames`` canonical latent frames:
    ``0, 1, ..., n-1`` (float32) over its ``n = spec.temporal_tokens(num_latent_frames)`` temporal tokens."""
    return torch.arange(spec.temporal_tokens(num_latent_frames), dtype=torch.float32)


def temporal_positions(spec: BackboneSpec, positions: torch.Tensor | Sequence[float]) -> AbstractContextManager[None]:
    """A context manager under which every call of ``spec.denoiser`` uses ``positions`` (1-D, float,
    finite, one per temporal token index).  Everything it changes is restored on exit, also on errors;
    inside it, :func:`stock_positions` reproduces the plain output exactly."""
    return spec.temporal_position_context(positions)


__all__ = ["stock_positions", "temporal_positions"]
