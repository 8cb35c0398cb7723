"""Follow-Your-Motion's motion loss (METHODS.md section 5): how the prediction changes from frame to
frame should match how the target does.

``v_i - v_{i-1}`` are the frame differences of prediction and target (latents ``(B, C, F, H, W)``,
along F):

* ``"cosine"`` (the paper, eq. 3): ``1 - cos`` of the difference of each frame pair, each a vector
  over (C, H, W), averaged over samples and frame pairs;
* ``"abs"`` (the unofficial code's variant): absolute differences, and the cosine taken over the
  frame axis (one vector of F - 1 values per sample, channel and position), ``1 - cos`` averaged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from motiontune.errors import ConfigError

MOTION_LOSSES = ("cosine", "abs", "none")


def motion_loss(prediction: torch.Tensor, target: torch.Tensor, variant: str = "cosine") -> torch.Tensor:
    if variant not in ("cosine", "abs"):
        raise ConfigError(f"unknown motion loss {variant!r}; choose from cosine (the paper), abs (the code)")
    if prediction.ndim != 5 or prediction.shape[2] < 2:
        raise ConfigError(f"the motion loss needs latents (B, C, F, H, W) with F >= 2 (got {tuple(prediction.shape)})")
    dp = prediction[:, :, 1:].float() - prediction[:, :, :-1].float()
    dt = target[:, :, 1:].float() - target[:, :, :-1].float()
    if variant == "cosine":
        b, c, f, h, w = dp.shape
        a = dp.permute(0, 2, 1, 3, 4).reshape(b, f, -1)
        t = dt.permute(0, 2, 1, 3, 4).reshape(b, f, -1)
        return (1.0 - F.cosine_similarity(a, t, dim=-1)).mean()
    return (1.0 - F.cosine_similarity(dp.abs(), dt.abs(), dim=2)).mean()


__all__ = ["MOTION_LOSSES", "motion_loss"]
