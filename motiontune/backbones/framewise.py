"""Shared pieces of the backbones whose VAE is an image autoencoder applied frame by frame
(ZeroScope/ModelScope, Latte)."""

from __future__ import annotations

import torch

from motiontune.errors import ConfigError


def batch_timesteps(t: torch.Tensor | float | int, batch: int, device: torch.device) -> torch.Tensor:
    """``t`` as a 1-D tensor of length ``batch`` (a scalar or one-element ``t`` is broadcast)."""
    t = torch.as_tensor(t, device=device)
    if t.ndim == 0:
        t = t[None]
    if t.numel() == 1 and batch > 1:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ConfigError(f"timestep must be a scalar or have one entry per sample ({batch}), got shape {tuple(t.shape)}")
    return t


class FramewiseVAEMixin:
    """Encode/decode videos frame by frame with a 2D ``AutoencoderKL`` scaled by ``scaling_factor``.

    Frames are folded into the batch, ``(B, 3, F, H, W) -> (B*F, 3, H, W)``, and processed
    ``vae_chunk_frames`` at a time (the 2D VAE treats frames independently, so chunking does not
    change the result), the way ``TextToVideoSDPipeline.decode_latents`` and
    ``LattePipeline.decode_latents`` decode.
    """

    #: frames per VAE call
    vae_chunk_frames: int = 16

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def spatial_compression(self) -> int:
        return int(self.pipe.vae_scale_factor)

    def encode_video(self, pixels: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        if pixels.ndim != 5 or pixels.shape[1] != 3:
            raise ConfigError(f"pixels must be (B, 3, F, H, W), got shape {tuple(pixels.shape)}")
        b, _, f, h, w = pixels.shape
        frames = pixels.to(self.device, self.vae.dtype).permute(0, 2, 1, 3, 4).reshape(b * f, 3, h, w)
        latents = []
        for i in range(0, b * f, self.vae_chunk_frames):
            dist = self.vae.encode(frames[i : i + self.vae_chunk_frames]).latent_dist
            latents.append(dist.sample(generator) if sample else dist.mode())
        z = torch.cat(latents) * self.vae.config.scaling_factor
        return z.reshape(b, f, *z.shape[1:]).permute(0, 2, 1, 3, 4).to(self.dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = latents.shape
        z = latents.to(self.device, self.vae.dtype).permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        z = z / self.vae.config.scaling_factor
        frames = [
            self.vae.decode(z[i : i + self.vae_chunk_frames], return_dict=False)[0]
            for i in range(0, b * f, self.vae_chunk_frames)
        ]
        video = torch.cat(frames)
        return video.reshape(b, f, *video.shape[1:]).permute(0, 2, 1, 3, 4).clamp(-1, 1)
