"""Latte (LatteTransformer3DModel + per-frame AutoencoderKL + T5, DDPM eps with learned sigma).

Latte alternates spatial transformer blocks (``transformer_blocks``: self-attention within a
frame and cross attention to the text) with temporal ones (``temporal_transformer_blocks``:
self-attention over the frames at one patch position).  Frame positions enter once, as the
fixed sin-cos table ``temp_pos_embed`` added before the first temporal block; its length is
the model's ``video_length``, so the model takes exactly that many frames.
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
    basic_block_site,
    check_temporal_positions,
)
from motiontune.backbones.framewise import FramewiseVAEMixin, batch_timesteps
from motiontune.errors import ConfigError
from motiontune.utils.targets import LazyTarget

#: additive bias of masked text tokens (the "-10000 = discard" convention of the Latte transformer)
MASK_BIAS = -10000.0


class LatteSpec(FramewiseVAEMixin, BackboneSpec):
    """Latte-1 (``LattePipeline``).

    Layout (``attention_sites``), ``block`` = layer index ``i``:

    * ``transformer_blocks.{i}.attn1``: ``spatial`` (the patches of one frame);
    * ``transformer_blocks.{i}.attn2``: ``cross`` (the text tokens);
    * ``temporal_transformer_blocks.{i}.attn1``: ``temporal`` (one patch position across frames).

    All sites have ``num_attention_heads`` heads of ``attention_head_dim`` and the projections
    ``to_q``, ``to_k``, ``to_v``, ``to_out.0``.  Spatial/cross calls run on
    ``(B*F, h*w, D)``, temporal calls on ``(B*h*w, F, D)``.

    Frame positions are absolute: :meth:`temporal_positions` returns the sin-cos table,
    :meth:`temporal_position_embedding` builds it for arbitrary (fractional) positions,
    :meth:`set_temporal_positions` installs such a table and :meth:`temporal_position_context`
    installs one for the duration of a ``with`` block.

    Blocks (:meth:`block_sites`), in forward order: ``transformer_blocks.{i}`` (``spatial``) then
    ``temporal_transformer_blocks.{i}`` (``temporal``) for each ``i``.

    Conditioning: ``{"encoder_hidden_states": (B, L, D), "encoder_attention_mask": (B, L)}``;
    the embeddings come from the pipeline's ``encode_prompt`` (T5, padded to its fixed 120
    tokens) and the mask (1 = keep) from the same tokenisation.  :meth:`predict` turns the mask
    into a cross-attention bias, so that padded tokens are ignored exactly as when the pipeline
    encodes a single prompt (it then cuts the embeddings to the real tokens) but independently of
    how prompts are batched.

    The model predicts eps and, where ``out_channels == 2 * in_channels``, a variance;
    :meth:`predict` returns the eps half (``return_variance=True`` gives both).
    """

    family = "latte"
    description = "Latte: alternating spatial/temporal transformer blocks, per-frame VAE, DDPM eps (learned sigma), fixed frame count"
    aliases = {"latte-1": "maxin-cv/Latte-1"}
    pipeline_cls = LazyTarget("diffusers:LattePipeline")
    denoiser_attr = "transformer"
    denoiser_classes = ("LatteTransformer3DModel",)
    # LattePipeline has no LoRA loader mixin (no load_lora_weights)
    diffusers_lora_loading = False
    default_guidance = 7.5
    default_steps = 50
    default_fps = 8
    #: passed to encode_prompt; the pipeline's own call defaults to True, which needs bs4 and ftfy
    clean_caption = False

    # ------------------------------------------------------------------ geometry
    @property
    def video_length(self) -> int:
        return int(self.denoiser.config.video_length)

    @property
    def frame_rule(self) -> FrameRule:
        return FrameRule(fixed=self.video_length)

    @property
    def patch_size(self) -> tuple[int, int, int]:
        p = int(self.denoiser.config.patch_size)
        return (1, p, p)

    def published_size(self) -> tuple[int, int, int]:
        side = int(self.denoiser.config.sample_size) * self.spatial_compression
        return (self.video_length, side, side)

    @property
    def learned_sigma(self) -> bool:
        """Whether the model also outputs a variance (``out_channels == 2 * in_channels``)."""
        cfg = self.denoiser.config
        return cfg.out_channels is not None and int(cfg.out_channels) == 2 * int(cfg.in_channels)

    # ------------------------------------------------------------------ text
    def _encode_prompts(self, prompts: list[str]) -> Conditioning:
        embeds, _ = self.pipe.encode_prompt(
            prompts,
            do_classifier_free_guidance=False,
            device=self.device,
            clean_caption=self.clean_caption,
            mask_feature=False,
        )
        tokens = self.pipe.tokenizer(
            self.pipe._text_preprocessing(prompts, clean_caption=self.clean_caption),
            padding="max_length",
            max_length=embeds.shape[1],
            truncation=True,
            return_attention_mask=True,
            add_special_tokens=True,
            return_tensors="pt",
        )
        return {
            "encoder_hidden_states": embeds.to(self.dtype),
            "encoder_attention_mask": tokens.attention_mask.to(self.device, self.dtype),
        }

    # ------------------------------------------------------------------ denoiser
    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning, **kwargs: Any) -> torch.Tensor:
        """eps prediction for canonical latents ``(B, C, F, h, w)`` (the layout the transformer takes).

        ``enable_temporal_attentions`` (default True) is passed through as the pipeline does;
        ``return_variance=True`` returns the full ``2 * C`` channels of a learned-sigma model.
        """
        b, c, f = x_t.shape[:3]
        if f != 1:  # one frame is an image: the transformer then skips the temporal position table
            self.frame_rule.check(f)
        t = batch_timesteps(t, b, x_t.device)
        bias = None
        mask = cond.get("encoder_attention_mask")
        if mask is not None:
            # the transformer hands the mask to the spatial blocks, which run on (B*F) frames
            bias = ((1 - mask.to(x_t.device, self.dtype)) * MASK_BIAS).repeat_interleave(f, dim=0).unsqueeze(1)
        out = self.denoiser(
            hidden_states=x_t.to(self.dtype),
            timestep=t,
            encoder_hidden_states=cond["encoder_hidden_states"].to(self.dtype),
            encoder_attention_mask=bias,
            enable_temporal_attentions=kwargs.get("enable_temporal_attentions", True),
            return_dict=False,
        )[0]
        if self.learned_sigma and not kwargs.get("return_variance", False):
            out = out[:, :c]
        return out

    # ------------------------------------------------------------------ layout
    def attention_sites(self) -> list[AttentionSite]:
        cfg = self.denoiser.config
        heads, dim = int(cfg.num_attention_heads), int(cfg.attention_head_dim)
        sites = []
        for i, block in enumerate(self.denoiser.transformer_blocks):
            sites.append(AttentionSite(f"transformer_blocks.{i}.attn1", "spatial", heads, dim, block=i))
            if block.attn2 is not None:
                sites.append(AttentionSite(f"transformer_blocks.{i}.attn2", "cross", heads, dim, block=i))
        for i, _ in enumerate(self.denoiser.temporal_transformer_blocks):
            sites.append(AttentionSite(f"temporal_transformer_blocks.{i}.attn1", "temporal", heads, dim, block=i))
        return sites

    def token_layout(self, latent_shape: tuple[int, ...], text_tokens: int = 0) -> TokenLayout:
        _, p, q = self.patch_size
        _, _, f, h, w = latent_shape
        return TokenLayout(f, h // p, w // q)

    # ------------------------------------------------------------------ temporal positions
    def temporal_positions(self) -> torch.Tensor:
        """The temporal position table ``(1, video_length, D)`` added before the first temporal block.

        It is the transformer's non-persistent buffer ``temp_pos_embed`` (sin-cos of the integer
        frame index); there is no RoPE, so :meth:`rope_module` is None.
        """
        return self.denoiser.temp_pos_embed

    def temporal_position_embedding(self, positions: torch.Tensor | list[float]) -> torch.Tensor:
        """The sin-cos table ``(1, len(positions), D)`` for (possibly fractional) frame positions.

        ``positions = range(video_length)`` reproduces :meth:`temporal_positions` exactly.
        """
        from diffusers.models.embeddings import get_1d_sincos_pos_embed_from_grid

        pos = torch.as_tensor(positions, dtype=torch.float64).reshape(-1, 1)
        dim = self.denoiser.temp_pos_embed.shape[-1]
        table = get_1d_sincos_pos_embed_from_grid(dim, pos, output_type="pt")
        stock = self.denoiser.temp_pos_embed
        return table.float().unsqueeze(0).to(device=stock.device, dtype=stock.dtype)

    def set_temporal_positions(self, positions: torch.Tensor | list[float] | None) -> torch.Tensor:
        """Install the table for ``positions`` (``None``: the stock ``0 .. video_length - 1``); returns the previous one.

        The number of positions must stay ``video_length`` (it is broadcast over the frames).
        """
        if positions is None:
            positions = list(range(self.video_length))
        table = self.temporal_position_embedding(positions)
        if table.shape[1] != self.video_length:
            raise ConfigError(f"Latte needs exactly {self.video_length} temporal positions, got {table.shape[1]}")
        previous = self.denoiser.temp_pos_embed
        self.denoiser.temp_pos_embed = table
        return previous

    @contextmanager
    def temporal_position_context(self, positions: torch.Tensor | Sequence[float]) -> Iterator[None]:
        """Install the sin-cos table for ``positions`` (exactly ``video_length`` of them, as
        :meth:`set_temporal_positions` requires) and put the previous table back on exit."""
        previous = self.set_temporal_positions(check_temporal_positions(positions))
        try:
            yield
        finally:
            self.denoiser.temp_pos_embed = previous

    # ------------------------------------------------------------------ blocks
    def block_sites(self) -> list[BlockSite]:
        """Spatial ``transformer_blocks.{i}`` and temporal ``temporal_transformer_blocks.{i}``, interleaved
        in forward order (BasicTransformerBlocks with ``ada_norm_single``: the norms are modulated inline,
        so ``norm`` and ``ff_norm`` are None).  The temporal table is added to the input of temporal
        block 0, outside the block."""
        sites: list[BlockSite] = []
        pairs = zip(self.denoiser.transformer_blocks, self.denoiser.temporal_transformer_blocks)
        for i, (spatial, temporal) in enumerate(pairs):
            sites.append(basic_block_site(len(sites), f"transformer_blocks.{i}", spatial, "spatial"))
            sites.append(basic_block_site(len(sites), f"temporal_transformer_blocks.{i}", temporal, "temporal"))
        return sites

    def timestep_embedding_path(self) -> str:
        """``adaln_single.emb``: the timestep embedding (B, D); ``adaln_single`` turns it into the six
        modulation vectors every block reads (``linear(silu(emb))``), and the output norm reads it too."""
        return "adaln_single.emb"
