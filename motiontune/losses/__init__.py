"""Loss terms shared by the recipes.

* :func:`diffusion_loss` — the (optionally weighted) mean squared error of the prediction;
* :func:`debiased_loss` — MotionDirector's appearance-debiased temporal loss: prediction and
  target are re-expressed relative to one anchor frame, so that what is common to every frame
  (the appearance) weighs less than how frames differ from each other (the motion).

Predictions and targets are latents ``(B, C, F, H, W)``.
"""

from __future__ import annotations

import math

import torch

from motiontune.errors import ConfigError


def diffusion_loss(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error; with ``weight`` (broadcastable to ``prediction``), the weighted mean
    ``sum(w * e^2) / sum(w)``, so that uniform weights give the plain loss."""
    err = (prediction.float() - target.float()) ** 2
    if weight is None:
        return err.mean()
    w = weight.float().expand_as(err)
    return (w * err).sum() / w.sum().clamp_min(1e-12)


def debiased_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    generator: torch.Generator,
    beta: float = 1.0,
    alpha: float | None = None,
) -> torch.Tensor:
    """MSE between ``alpha * x - beta * x[:, :, anchor]`` of prediction and target, anchor a random frame.

    ``alpha`` defaults to ``sqrt(beta**2 + 1)`` (MotionDirector's setting: with beta = 1, alpha =
    sqrt(2)). The anchor frame is drawn from ``generator`` (one per call, shared by the batch).
    This is the debiased term alone; MotionDirector's temporal loss adds the plain diffusion loss.
    """
    if prediction.ndim != 5 or prediction.shape != target.shape:
        raise ConfigError(f"debiased_loss needs prediction and target of one shape (B, C, F, H, W); got {tuple(prediction.shape)} and {tuple(target.shape)}")
    if alpha is None:
        alpha = math.sqrt(beta**2 + 1.0)
    frames = prediction.shape[2]
    anchor = int(torch.randint(frames, (1,), generator=generator))
    p = alpha * prediction.float() - beta * prediction.float()[:, :, anchor : anchor + 1]
    t = alpha * target.float() - beta * target.float()[:, :, anchor : anchor + 1]
    return ((p - t) ** 2).mean()


__all__ = ["debiased_loss", "diffusion_loss"]
