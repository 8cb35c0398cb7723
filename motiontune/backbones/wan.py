"""Wan2.1 text-to-video (WanTransformer3DModel + AutoencoderKLWan + UMT5, flow matching).

Also the family of the embedded toy model (``--backbone toy``), which has the same classes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from motiontune.backbones.base import (
    AttentionSite,
    BackboneSpec,
    BlockSite,
    Conditioning,
    FrameRule,
    TokenLayout,
    check_position_count,
    check_temporal_positions,
    forward_hooks,
    linear_names,
    with_temporal_columns,
)
from motiontune.utils.targets import LazyTarget

#: WanRotaryPosEmbed's theta: the transformer builds it with the default and does not store it
WAN_ROPE_THETA = 10000.0


class WanSpec(BackboneSpec):
    family = "wan"
    description = "Wan2.1 T2V (1.3B, 14B): joint spatio-temporal DiT, 3D RoPE, flow matching"
    aliases = {
        "wan2.1-1.3b": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        "wan2.1-14b": "Wan-AI/Wan2.1-T2V-14B-Diffusers",
        "wan-1.3b": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        "wan-14b": "Wan-AI/Wan2.1-T2V-14B-Diffusers",
    }
    pipeline_cls = LazyTarget("diffusers:WanPipeline")
    denoiser_attr = "transformer"
    denoiser_classes = ("WanTransformer3DModel",)
    default_guidance = 5.0
    default_steps = 50
    default_fps = 16

    # ------------------------------------------------------------------ geometry
    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.z_dim)

    @property
    def spatial_compression(self) -> int:
        return int(self.vae.config.scale_factor_spatial)

    @property
    def temporal_compression(self) -> int:
        return int(self.vae.config.scale_factor_temporal)

    @property
    def patch_size(self) -> tuple[int, int, int]:
        return tuple(self.denoiser.config.patch_size)

    @property
    def frame_rule(self) -> FrameRule:
        """4k+1 frames whatever the temporal compression: ``AutoencoderKLWan`` encodes the first frame,
        then chunks of 4 frames, and drops a shorter last chunk. With a compression of 2 (the toy
        model's VAE) 2k+1 frames would pass a rule of the compression, and 7 frames would encode to 3
        latent frames, not the 4 :meth:`latent_shape` gives."""
        return FrameRule(k=4, r=1)

    def published_size(self) -> tuple[int, int, int]:
        return (81, 480, 832)

    @property
    def max_sequence_length(self) -> int:
        return int(min(512, getattr(self.pipe.tokenizer, "model_max_length", 512) or 512))

    # ------------------------------------------------------------------ text
    def _encode_prompts(self, prompts: list[str]) -> Conditioning:
        embeds, _ = self.pipe.encode_prompt(
            prompts,
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
            device=self.device,
            dtype=self.dtype,
        )
        return {"encoder_hidden_states": embeds}

    # ------------------------------------------------------------------ video
    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.vae.config
        mean = torch.tensor(cfg.latents_mean, dtype=like.dtype, device=like.device).view(1, cfg.z_dim, 1, 1, 1)
        std = torch.tensor(cfg.latents_std, dtype=like.dtype, device=like.device).view(1, cfg.z_dim, 1, 1, 1)
        return mean, std

    def encode_video(self, pixels: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        pixels = pixels.to(self.device, self.vae.dtype)
        dist = self.vae.encode(pixels).latent_dist
        z = dist.sample(generator) if sample else dist.mode()
        mean, std = self._latent_stats(z)
        return ((z - mean) / std).to(self.dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        latents = latents.to(self.device, self.vae.dtype)
        mean, std = self._latent_stats(latents)
        return self.vae.decode(latents * std + mean, return_dict=False)[0].clamp(-1, 1)

    # ------------------------------------------------------------------ denoiser
    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning, **kwargs: Any) -> torch.Tensor:
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        return self.denoiser(
            hidden_states=x_t.to(self.dtype),
            timestep=t,
            encoder_hidden_states=cond["encoder_hidden_states"].to(self.dtype),
            attention_kwargs=kwargs.get("attention_kwargs"),
            return_dict=False,
        )[0]

    # ------------------------------------------------------------------ layout
    def attention_sites(self) -> list[AttentionSite]:
        cfg = self.denoiser.config
        sites = []
        for i, _ in enumerate(self.denoiser.blocks):
            sites.append(AttentionSite(f"blocks.{i}.attn1", "joint", cfg.num_attention_heads, cfg.attention_head_dim, block=i))
            sites.append(AttentionSite(f"blocks.{i}.attn2", "cross", cfg.num_attention_heads, cfg.attention_head_dim, block=i))
        return sites

    def token_layout(self, latent_shape: tuple[int, ...], text_tokens: int = 0) -> TokenLayout:
        pt, ph, pw = self.patch_size
        _, _, f, h, w = latent_shape
        return TokenLayout(f // pt, h // ph, w // pw)

    def rope_module(self) -> torch.nn.Module:
        return self.denoiser.rope

    def block_sites(self) -> list[BlockSite]:
        """``blocks.{i}``: joint self-attention ``attn1`` over the video tokens (3D RoPE), cross attention
        ``attn2`` to the text, feed-forward ``ffn``.

        ``norm`` and ``ff_norm`` are None: the block modulates ``norm1``/``norm3`` inline
        (``norm(x) * (1 + scale) + shift`` from its ``scale_shift_table`` and the timestep projection).
        """
        sites = []
        for i, block in enumerate(self.denoiser.blocks):
            p = f"blocks.{i}"
            sites.append(BlockSite(
                index=i, path=p, kind="joint", attention=f"{p}.attn1", feed_forward=f"{p}.ffn",
                ff_linears=linear_names(block.ffn, f"{p}.ffn"), norm=None, cross_attention=f"{p}.attn2",
            ))
        return sites

    def timestep_embedding_path(self) -> str:
        """``condition_embedder.time_embedder``: its output ``temb`` (B, dim) feeds the output norm's
        shift/scale, and ``condition_embedder.time_proj(silu(temb))`` gives the six modulation vectors
        every block reads, so every block's timestep conditioning is a function of it."""
        return "condition_embedder.time_embedder"

    # ------------------------------------------------------------------ temporal positions
    @contextmanager
    def temporal_position_context(self, positions: torch.Tensor | Sequence[float]) -> Iterator[None]:
        """Run the denoiser at float frame positions: a forward hook on ``denoiser.rope``
        (WanRotaryPosEmbed) replaces the temporal columns of its ``(cos, sin)`` (each
        ``(1, f*h*w, 1, head_dim)``, columns ``[t | h | w]``) with the frequencies at ``positions``,
        computed as the module computes its table (float64, ``repeat_interleave_real``); the stock
        positions reproduce its output exactly."""
        from diffusers.models.embeddings import get_1d_rotary_pos_embed

        pos = check_temporal_positions(positions)
        rope = self.denoiser.rope

        def hook(module: torch.nn.Module, args: tuple, out: tuple[torch.Tensor, torch.Tensor]) -> tuple:
            frames = args[0].shape[2] // module.patch_size[0]
            check_position_count(pos, frames, self.family)
            # the dtype WanRotaryPosEmbed builds its table in
            dtype = torch.float32 if torch.backends.mps.is_available() else torch.float64
            cos_t, sin_t = get_1d_rotary_pos_embed(
                module.t_dim, pos.to(dtype), WAN_ROPE_THETA,
                use_real=True, repeat_interleave_real=True, freqs_dtype=dtype,
            )
            return tuple(with_temporal_columns(o, frames, c) for o, c in zip(out, (cos_t, sin_t)))

        with forward_hooks((rope, hook)):
            yield
