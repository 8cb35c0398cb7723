"""CogVideoX text-to-video (CogVideoX-2b, CogVideoX-5b, CogVideoX1.5-5B).

CogVideoXTransformer3DModel + AutoencoderKLCogVideoX + T5, DDPM v-prediction
(CogVideoXDDIMScheduler / CogVideoXDPMScheduler, SNR-shifted ``alphas_cumprod``).

Every block's ``attn1`` is *joint* attention over ``[text tokens; video tokens]``: the text
tokens (``max_text_seq_length`` of them, 226 for the published checkpoints) come first.

Positions: CogVideoX-2b adds absolute 3D sin-cos embeddings inside the patch embedding;
CogVideoX-5b and CogVideoX1.5-5B use 3D RoPE, built outside the transformer by the pipeline's
``_prepare_rotary_positional_embeddings`` and passed in as ``image_rotary_emb``.  The spec wraps
that builder in :class:`CogVideoXRotaryEmbedding` (``spec.rope`` / ``spec.rope_module()``) and
calls it on every :meth:`CogVideoXSpec.predict`, so methods can hook or replace it to remap
frame positions.

Frames: the VAE compresses time by 4, so clips have ``4k+1`` frames (``(n-1)/4+1`` latent
frames; the VAE decodes only odd latent counts back to ``4k+1`` frames).  CogVideoX 1.5 also
patchifies time (``patch_size_t=2``), so the transformer needs a latent frame count that is a
multiple of ``patch_size_t``: :meth:`CogVideoXSpec.predict` prepends copies of the first latent
frame (as CogVideoX 1.5 fine-tuning does; the pipeline prepends a noise frame) and drops their
outputs, so canonical latents keep the VAE's frame count (81 frames -> 21 latent frames).
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
    ScaledLatentsMixin,
    TokenLayout,
    check_position_count,
    check_temporal_positions,
    forward_hooks,
    linear_names,
    with_temporal_columns,
)
from motiontune.errors import ConfigError
from motiontune.utils.targets import LazyTarget

#: theta of CogVideoX's 3D RoPE (``get_3d_rotary_pos_embed``'s default, which the pipeline uses)
COGVIDEOX_ROPE_THETA = 10000


class CogVideoXRotaryEmbedding(torch.nn.Module):
    """Builds CogVideoX's 3D RoPE ``(cos, sin)`` for a latent tensor, through the pipeline's own builder.

    ``forward(latents)`` takes canonical latents ``(B, C, f, h, w)`` and returns
    ``pipe._prepare_rotary_positional_embeddings(h * vae_scale, w * vae_scale, f, device)`` (``f``
    after the spec's temporal padding, see :meth:`CogVideoXSpec.temporal_padding`): two
    tensors of shape ``(f' * h' * w', head_dim)`` over the post-patch grid
    (``f' = ceil(f / patch_size_t)``, ``h' = h / patch_size``, ``w' = w / patch_size``), rows
    frame-major.  Columns are ``[temporal (head_dim / 4) | height (3 head_dim / 8) |
    width (3 head_dim / 8)]``, each with interleaved (repeated) cos/sin pairs.  The result is
    what the transformer receives as ``image_rotary_emb``; a forward hook on this module (or a
    subclass assigned to ``spec.rope``) can rewrite the temporal columns to remap frame positions.
    """

    def __init__(self, pipe: Any):
        super().__init__()
        # the pipeline is not an nn.Module: keep a plain reference, no parameters are owned here
        self.pipe = pipe

    @property
    def head_dim(self) -> int:
        return int(self.pipe.transformer.config.attention_head_dim)

    def temporal_columns(self) -> slice:
        """The columns of ``cos``/``sin`` that carry the temporal (frame) frequencies."""
        return slice(0, self.head_dim // 4)

    def forward(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, _, f, h, w = latents.shape
        s = self.pipe.vae_scale_factor_spatial
        return self.pipe._prepare_rotary_positional_embeddings(h * s, w * s, f, latents.device)


class CogVideoXSpec(ScaledLatentsMixin, BackboneSpec):
    """CogVideoX; conditioning ``{"encoder_hidden_states": (B, max_text_seq_length, D)}`` (T5)."""

    family = "cogvideox"
    description = "CogVideoX (2b, 5b, 1.5-5B): joint text+video DiT, v-prediction DDPM; 3D RoPE on 5b/1.5"
    aliases = {
        "cogvideox-2b": "THUDM/CogVideoX-2b",
        "cogvideox-5b": "THUDM/CogVideoX-5b",
        "cogvideox1.5-5b": "THUDM/CogVideoX1.5-5B",
        "CogVideoX-2b": "THUDM/CogVideoX-2b",
        "CogVideoX-5b": "THUDM/CogVideoX-5b",
        "CogVideoX1.5-5B": "THUDM/CogVideoX1.5-5B",
    }
    pipeline_cls = LazyTarget("diffusers:CogVideoXPipeline")
    denoiser_attr = "transformer"
    denoiser_classes = ("CogVideoXTransformer3DModel",)
    default_guidance = 6.0
    default_steps = 50
    default_fps = 8

    def __init__(self, pipe: Any, source: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__(pipe, source, device=device, dtype=dtype)
        #: the RoPE builder called by :meth:`predict` (None where the model uses sin-cos positions)
        self.rope: torch.nn.Module | None = CogVideoXRotaryEmbedding(pipe) if self.uses_rope else None

    # ------------------------------------------------------------------ geometry
    @property
    def uses_rope(self) -> bool:
        return bool(self.denoiser.config.use_rotary_positional_embeddings)

    @property
    def patch_size_t(self) -> int | None:
        """Temporal patch size (2 on CogVideoX 1.5, None on 1.0 where frames are not patchified)."""
        p_t = self.denoiser.config.patch_size_t
        return int(p_t) if p_t is not None else None

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def spatial_compression(self) -> int:
        return int(self.pipe.vae_scale_factor_spatial)

    @property
    def temporal_compression(self) -> int:
        return int(self.pipe.vae_scale_factor_temporal)

    @property
    def patch_size(self) -> tuple[int, int, int]:
        p = int(self.denoiser.config.patch_size)
        return (self.patch_size_t or 1, p, p)

    def temporal_padding(self, latent_frames: int) -> int:
        """Latent frames :meth:`predict` prepends (copies of the first) to reach a multiple of ``patch_size_t``.

        With padding, token frame ``i`` of the transformer covers padded latent frames
        ``[i * patch_size_t, (i + 1) * patch_size_t)``; padded frame ``j`` is latent frame ``j - pad``.
        """
        p_t = self.patch_size_t or 1
        return (p_t - latent_frames % p_t) % p_t

    def published_size(self) -> tuple[int, int, int]:
        """(frames, height, width) of the published checkpoints: 49x480x720 (2b, 5b), 81x768x1360 (1.5)."""
        return (81, 768, 1360) if self.patch_size_t else (49, 480, 720)

    @property
    def max_sequence_length(self) -> int:
        """Text tokens per prompt: the transformer's ``max_text_seq_length`` (226), as the pipeline pads to."""
        return int(self.denoiser.config.max_text_seq_length)

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

    # ------------------------------------------------------------------ denoiser
    def rotary_embedding(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The ``image_rotary_emb`` for canonical latents (None without RoPE); see :class:`CogVideoXRotaryEmbedding`."""
        if self.rope is None:
            return None
        return self.rope(latents)

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning, **kwargs: Any) -> torch.Tensor:
        """One transformer call on canonical latents (B, C, f, h, w); returns the v-prediction in that layout.

        kwargs: ``attention_kwargs`` (passed to the attention processors, e.g. ``{"scale": s}`` for
        LoRA) and ``image_rotary_emb`` (overrides the RoPE built by ``self.rope``; it covers the
        latent frames after :meth:`temporal_padding`).
        """
        t = torch.as_tensor(t, device=self.device)
        if t.ndim == 0 or t.numel() == 1:
            t = t.reshape(()).expand(x_t.shape[0])
        x = x_t.to(self.device, self.dtype)
        pad = self.temporal_padding(x.shape[2])
        if pad:
            x = torch.cat([x[:, :, :1].expand(-1, -1, pad, -1, -1), x], dim=2)
        rotary = kwargs["image_rotary_emb"] if "image_rotary_emb" in kwargs else self.rotary_embedding(x)
        out = self.denoiser(
            hidden_states=x.permute(0, 2, 1, 3, 4),
            encoder_hidden_states=cond["encoder_hidden_states"].to(self.dtype),
            timestep=t,
            image_rotary_emb=rotary,
            attention_kwargs=kwargs.get("attention_kwargs"),
            return_dict=False,
        )[0]
        return out.permute(0, 2, 1, 3, 4)[:, :, pad:]

    # ------------------------------------------------------------------ layout
    def attention_sites(self) -> list[AttentionSite]:
        cfg = self.denoiser.config
        return [
            AttentionSite(f"transformer_blocks.{i}.attn1", "joint", int(cfg.num_attention_heads), int(cfg.attention_head_dim), block=i)
            for i, _ in enumerate(self.denoiser.transformer_blocks)
        ]

    def token_layout(self, latent_shape: tuple[int, ...], text_tokens: int = 0) -> TokenLayout:
        pt, ph, pw = self.patch_size
        _, _, f, h, w = latent_shape
        return TokenLayout(
            (f + self.temporal_padding(f)) // pt, h // ph, w // pw,
            text_tokens=text_tokens or self.max_sequence_length,
            text_position="before",
        )

    def rope_module(self) -> torch.nn.Module | None:
        """The RoPE builder (:class:`CogVideoXRotaryEmbedding`), or None on CogVideoX-2b (sin-cos positions)."""
        return self.rope

    def block_sites(self) -> list[BlockSite]:
        """``transformer_blocks.{i}``: joint attention ``attn1`` over ``[text; video]`` and one
        feed-forward ``ff`` run on the concatenated ``[text; video]`` tokens (``text_position`` "before").

        ``norm1``/``norm2`` (CogVideoXLayerNormZero) return ``(normed video, normed text, gate,
        text gate)``: the normed inputs of the attention and of the feed-forward are their first
        two outputs.  The block returns ``(video, text)``.
        """
        sites = []
        for i, block in enumerate(self.denoiser.transformer_blocks):
            p = f"transformer_blocks.{i}"
            sites.append(BlockSite(
                index=i, path=p, kind="joint", attention=f"{p}.attn1", feed_forward=f"{p}.ff",
                ff_linears=linear_names(block.ff, f"{p}.ff"), norm=f"{p}.norm1", ff_norm=f"{p}.norm2",
                text_position="before",
            ))
        return sites

    def timestep_embedding_path(self) -> str:
        """``time_embedding`` (TimestepEmbedding of the sinusoidal ``time_proj``): its output ``emb``
        (B, time_embed_dim) is the ``temb`` every block's norms and the output norm are modulated by
        (the image-to-video models add an ``ofs`` embedding to it; the text-to-video ones have none)."""
        return "time_embedding"

    # ------------------------------------------------------------------ temporal positions
    def temporal_tokens(self, num_latent_frames: int) -> int:
        """Temporal token indices: latent frames after :meth:`temporal_padding`, over ``patch_size_t``."""
        return (num_latent_frames + self.temporal_padding(num_latent_frames)) // self.patch_size[0]

    def temporal_position_context(self, positions: torch.Tensor | Sequence[float]) -> Any:
        """Run the transformer at float frame positions (one per temporal token index: the frames the
        transformer sees after :meth:`temporal_padding` and temporal patching).

        * 3D RoPE (CogVideoX-5b, CogVideoX1.5-5B): a forward hook on :attr:`rope` replaces the temporal
          columns (:meth:`CogVideoXRotaryEmbedding.temporal_columns`) of ``image_rotary_emb`` with the
          frequencies at ``positions``, computed as ``get_3d_rotary_pos_embed`` does (float32).  A
          ``predict`` given its own ``image_rotary_emb`` is not remapped.
        * sin-cos positions (CogVideoX-2b, ``CogVideoXPatchEmbed.use_positional_embeddings``): a forward
          hook on ``patch_embed`` adds, to the video tokens' temporal features (the first quarter), the
          difference between the 1D sin-cos embedding at ``positions`` and at the stock frames (both over
          ``temporal_interpolation_scale``, as ``get_3d_sincos_pos_embed`` computes them).
        * learned positional embeddings (``use_learned_positional_embeddings``, the image-to-video
          layout) cannot be evaluated between frames: ConfigError.

        Stock positions reproduce the stock output exactly in every variant.
        """
        cfg = self.denoiser.config
        if cfg.use_learned_positional_embeddings:
            raise ConfigError(
                "this CogVideoX model has learned positional embeddings (use_learned_positional_embeddings): "
                "they cannot be evaluated at other temporal positions"
            )
        if self.rope is not None:
            return self._rope_position_context(positions)
        if getattr(self.denoiser.patch_embed, "use_positional_embeddings", False):
            if self.patch_size_t is not None:
                raise ConfigError(
                    "this CogVideoX model patchifies time (patch_size_t) but has sin-cos positions, a layout no "
                    "CogVideoX checkpoint has: its temporal positions cannot be remapped"
                )
            return self._sincos_position_context(positions)
        raise ConfigError(
            "this CogVideoX model has neither 3D RoPE nor a sin-cos temporal table in its patch embedding: "
            "it has no temporal positions to remap"
        )

    @contextmanager
    def _rope_position_context(self, positions: torch.Tensor | Sequence[float]) -> Iterator[None]:
        from diffusers.models.embeddings import get_1d_rotary_pos_embed

        pos = check_temporal_positions(positions).to(torch.float32)
        p_t = self.patch_size[0]

        def hook(module: torch.nn.Module, args: tuple, out: tuple[torch.Tensor, torch.Tensor]) -> tuple:
            frames = args[0].shape[2] // p_t
            check_position_count(pos, frames, self.family)
            cols = module.temporal_columns()
            new = get_1d_rotary_pos_embed(cols.stop - cols.start, pos, theta=COGVIDEOX_ROPE_THETA, use_real=True)
            return tuple(with_temporal_columns(o, frames, c) for o, c in zip(out, new))

        with forward_hooks((self.rope, hook)):
            yield

    @contextmanager
    def _sincos_position_context(self, positions: torch.Tensor | Sequence[float]) -> Iterator[None]:
        from diffusers.models.embeddings import get_1d_sincos_pos_embed_from_grid

        pos = check_temporal_positions(positions).to(torch.float32)
        embed = self.denoiser.patch_embed

        def hook(module: torch.nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
            text_tokens, frames = args[0].shape[1], args[1].shape[1]
            check_position_count(pos, frames, self.family)
            dim, scale = module.embed_dim // 4, module.temporal_interpolation_scale
            stock = torch.arange(frames, dtype=torch.float32)
            delta = get_1d_sincos_pos_embed_from_grid(dim, pos / scale)
            delta = delta - get_1d_sincos_pos_embed_from_grid(dim, stock / scale)
            video = torch.zeros(out.shape[1] - text_tokens, out.shape[2], dtype=torch.float64)
            video = with_temporal_columns(video, frames, delta)
            full = torch.cat([video.new_zeros(text_tokens, out.shape[2]), video])
            return out + full.to(out.device, out.dtype)

        with forward_hooks((embed, hook)):
            yield
