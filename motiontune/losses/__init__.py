"""Loss terms shared by the recipes.

* :func:`diffusion_loss` — the (optionally weighted) mean squared error of the prediction;
* :func:`debiased_loss` — MotionDirector's appearance-debiased temporal loss: prediction and
  target are re-expressed relative to one anchor frame, so that what is common to every frame
  (the appearance) weighs less than how frames differ from each other (the motion);
* :func:`ait_loss` — JointTuner's appearance-independent temporal (AiT) loss: noise shared across
  channels and frames is added to the prediction before the MSE (the paper: shift noise meant to
  make the loss favour motion over appearance), weighted;
* :func:`shift_noise` — JointTuner's input-side option: diffusion noise plus a shift shared over
  height and width (per sample, channel and frame).

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


def ait_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    generator: torch.Generator,
    weight: float = 10.0,
    loss_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """``weight * MSE(prediction + xi, target)`` with ``xi ~ N(0, 1)`` of shape ``(B, 1, 1, H, W)``.

    ``xi`` is one spatial noise map per sample, shared by every channel and frame, drawn from
    ``generator`` (on the CPU, then moved to the prediction's device). This term *replaces* the
    plain diffusion loss on video batches, as in the authors' code (ZeroScope: ``loss =
    mse(pred + xi, target) * 10``; CogVideoX: the noise is added to the predicted v). With
    ``loss_weight`` (broadcastable to the prediction) the MSE is the weighted mean of
    :func:`diffusion_loss`.
    """
    if prediction.ndim != 5 or prediction.shape != target.shape:
        raise ConfigError(f"ait_loss needs prediction and target of one shape (B, C, F, H, W); got {tuple(prediction.shape)} and {tuple(target.shape)}")
    b, _, _, h, w = prediction.shape
    xi = torch.randn((b, 1, 1, h, w), generator=generator).to(prediction.device)
    return float(weight) * diffusion_loss(prediction.float() + xi, target, loss_weight)


def shift_noise(noise: torch.Tensor, generator: torch.Generator, strength: float = 0.1) -> torch.Tensor:
    """``noise + strength * s`` with ``s ~ N(0, 1)`` of shape ``(B, C, F, 1, 1)``: a shift shared over
    height and width. JointTuner's input-side option (off by default in its code, 0.1 when on): the
    trainer uses the returned noise both to make the noisy input and in the target (see
    :meth:`motiontune.recipes.base.Recipe.training_noise`)."""
    if noise.ndim != 5:
        raise ConfigError(f"shift_noise needs noise of shape (B, C, F, H, W); got {tuple(noise.shape)}")
    b, c, f, _, _ = noise.shape
    s = torch.randn((b, c, f, 1, 1), generator=generator).to(device=noise.device, dtype=noise.dtype)
    return noise + float(strength) * s


__all__ = ["ait_loss", "debiased_loss", "diffusion_loss", "shift_noise"]
