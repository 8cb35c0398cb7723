"""ModelScope T2V / ZeroScope v2 (UNet3DConditionModel + per-frame AutoencoderKL + CLIP, DDPM eps).

The UNet interleaves, at every resolution level, spatial ``Transformer2DModel`` blocks
(``attentions``: self-attention within a frame, then cross attention to the text) with
``TransformerTemporalModel`` blocks (``temp_attentions``: two self-attentions over the frames
at one spatial position); a further temporal transformer, ``transformer_in``, follows
``conv_in``.  The frames are encoded and decoded one by one with a 2D ``AutoencoderKL``, as
the pipeline does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from motiontune.backbones.base import (
    AttentionKind,
    AttentionSite,
    BackboneSpec,
    BlockSite,
    Conditioning,
    FrameRule,
    TokenLayout,
    basic_block_site,
    check_position_count,
    check_temporal_positions,
)
from motiontune.backbones.framewise import FramewiseVAEMixin, batch_timesteps
from motiontune.errors import ConfigError
from motiontune.utils.targets import LazyTarget


#: hub id (lower case, without the organisation) -> (num_frames, height, width)
_KNOWN_SIZES = {
    "zeroscope_v2_576w": (24, 320, 576),
    "zeroscope_v2_xl": (24, 576, 1024),
    "text-to-video-ms-1.7b": (16, 256, 256),
}

_SITE_PATH = re.compile(
    r"^(?:(?P<stem>transformer_in)|(?P<level>down_blocks|up_blocks)\.(?P<index>\d+)\.(?P<kind>attentions|temp_attentions)\.\d+"
    r"|mid_block\.(?P<mkind>attentions|temp_attentions)\.\d+)\.transformer_blocks\.\d+\.attn[12]$"
)


class UNet3DSpec(FramewiseVAEMixin, BackboneSpec):
    """ModelScope T2V and ZeroScope v2 (``TextToVideoSDPipeline``).

    Layout (``attention_sites``), in forward order, ``block`` numbering the transformer models
    (``transformer_in``, then each ``attentions.j`` / ``temp_attentions.j`` of the down, mid and
    up blocks):

    * ``transformer_in.transformer_blocks.0.attn{1,2}``: ``temporal`` (both self-attention over
      the frames at one latent position, at full latent resolution);
    * ``{down_blocks.i,mid_block,up_blocks.i}.attentions.j.transformer_blocks.0.attn1``:
      ``spatial`` (tokens of one frame at that level's resolution);
    * ``....attentions.j.transformer_blocks.0.attn2``: ``cross`` (text tokens);
    * ``....temp_attentions.j.transformer_blocks.0.attn{1,2}``: ``temporal``.

    Heads and head sizes are read from the attention modules (they differ per level).  Token
    grids differ per level too: :meth:`site_token_layout` gives the grid one site sees;
    :meth:`token_layout` the full-resolution one.  Positions across frames are not encoded
    explicitly (no positional embedding in the temporal transformers), so
    :meth:`rope_module` is None.

    Conditioning: ``{"encoder_hidden_states": (B, L, D)}`` from the pipeline's ``encode_prompt``
    (CLIP last hidden state, padded to the tokenizer's ``model_max_length``).
    """

    family = "unet3d"
    description = "ModelScope T2V / ZeroScope v2: UNet with spatial and temporal attention, per-frame VAE, DDPM eps"
    aliases = {
        "zeroscope-v2-576w": "cerspense/zeroscope_v2_576w",
        "zeroscope-v2-xl": "cerspense/zeroscope_v2_XL",
        "modelscope-t2v": "ali-vilab/text-to-video-ms-1.7b",
    }
    pipeline_cls = LazyTarget("diffusers:TextToVideoSDPipeline")
    denoiser_attr = "unet"
    denoiser_classes = ("UNet3DConditionModel",)
    # TextToVideoSDPipeline has StableDiffusionLoraLoaderMixin, but its load_lora_weights calls
    # unet.load_lora_adapter, which UNet3DConditionModel lacks: adapters are loaded by peft.
    diffusers_lora_loading = False
    default_guidance = 9.0
    default_steps = 50
    default_fps = 8

    # ------------------------------------------------------------------ geometry
    @property
    def frame_rule(self) -> FrameRule:
        return FrameRule(k=1, r=0)

    @property
    def size_multiple(self) -> int:
        """VAE factor times the UNet's overall down-sampling (``2 ** num_upsamplers``)."""
        ups = getattr(self.denoiser, "num_upsamplers", len(self.denoiser.config.block_out_channels) - 1)
        return self.spatial_compression * 2**ups

    def published_size(self) -> tuple[int, int, int]:
        name = self.source.rstrip("/").split("/")[-1].lower()
        if name in _KNOWN_SIZES:
            return _KNOWN_SIZES[name]
        side = int(self.denoiser.config.sample_size) * self.spatial_compression
        return (16, side, side)

    # ------------------------------------------------------------------ text
    def _encode_prompts(self, prompts: list[str]) -> Conditioning:
        embeds, _ = self.pipe.encode_prompt(
            prompts,
            device=self.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
        )
        return {"encoder_hidden_states": embeds.to(self.dtype)}

    # ------------------------------------------------------------------ denoiser
    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning, **kwargs: Any) -> torch.Tensor:
        """eps prediction for canonical latents ``(B, C, F, h, w)``.

        ``cross_attention_kwargs`` (or ``attention_kwargs``, e.g. ``{"scale": s}``) is passed to
        the attention processors.
        """
        t = batch_timesteps(t, x_t.shape[0], x_t.device)
        extra = kwargs.get("cross_attention_kwargs", kwargs.get("attention_kwargs"))
        return self.denoiser(
            x_t.to(self.dtype),
            t,
            encoder_hidden_states=cond["encoder_hidden_states"].to(self.dtype),
            cross_attention_kwargs=extra,
            return_dict=False,
        )[0]

    # ------------------------------------------------------------------ layout
    def _transformer_models(self) -> list[tuple[str, torch.nn.Module, AttentionKind | None]]:
        """(path, module, kind) of every transformer model in forward order; kind None = spatial."""
        unet = self.denoiser
        out: list[tuple[str, torch.nn.Module, AttentionKind | None]] = [("transformer_in", unet.transformer_in, "temporal")]

        def level(prefix: str, block: torch.nn.Module) -> None:
            spatial = getattr(block, "attentions", None) or []
            temporal = getattr(block, "temp_attentions", None) or []
            for j, attn in enumerate(spatial):
                out.append((f"{prefix}.attentions.{j}", attn, None))
                if j < len(temporal):
                    out.append((f"{prefix}.temp_attentions.{j}", temporal[j], "temporal"))

        for i, block in enumerate(unet.down_blocks):
            level(f"down_blocks.{i}", block)
        if unet.mid_block is not None:
            level("mid_block", unet.mid_block)
        for i, block in enumerate(unet.up_blocks):
            level(f"up_blocks.{i}", block)
        return out

    def attention_sites(self) -> list[AttentionSite]:
        sites = []
        for b, (path, model, kind) in enumerate(self._transformer_models()):
            for k, layer in enumerate(model.transformer_blocks):
                for name in ("attn1", "attn2"):
                    attn = getattr(layer, name, None)
                    if attn is None:
                        continue
                    if kind == "temporal":
                        site_kind: AttentionKind = "temporal"
                    else:
                        site_kind = "cross" if attn.is_cross_attention else "spatial"
                    heads = int(attn.heads)
                    sites.append(AttentionSite(f"{path}.transformer_blocks.{k}.{name}", site_kind, heads,
                                               attn.to_q.out_features // heads, block=b))
        return sites

    def block_sites(self) -> list[BlockSite]:
        """The BasicTransformerBlocks of every transformer model, in the forward order of
        :meth:`_transformer_models`: ``spatial`` ones inside the ``attentions`` (Transformer2DModel:
        ``attn1`` self-attention in a frame, ``attn2`` cross attention to the text) and ``temporal`` ones
        inside ``transformer_in`` and the ``temp_attentions`` (TransformerTemporalModel: ``attn1`` and
        ``attn2`` both self-attention over the frames; ``attention`` names ``attn1``).  Their norms are
        plain LayerNorms: ``norm1`` gives the attention input, ``norm3`` the feed-forward input.
        Tokens per call: :meth:`site_token_layout` of the block's ``attention``.
        """
        sites: list[BlockSite] = []
        for path, model, kind in self._transformer_models():
            for k, block in enumerate(model.transformer_blocks):
                sites.append(basic_block_site(len(sites), f"{path}.transformer_blocks.{k}", block, kind or "spatial"))
        return sites

    def timestep_embedding_path(self) -> str:
        """``time_embedding``: the timestep embedding (B, time_embed_dim) of the UNet.  Only the ResNet
        blocks are conditioned on it; the transformer blocks of :meth:`block_sites` do not read it."""
        return "time_embedding"

    @contextmanager
    def temporal_position_context(self, positions: torch.Tensor | Sequence[float]) -> Iterator[None]:
        """The UNet encodes no frame positions: the stock positions ``0 .. f-1`` are accepted (a no-op,
        still checked against each call's frame count); any others raise ConfigError."""
        pos = check_temporal_positions(positions)
        if not torch.equal(pos, torch.arange(pos.numel(), dtype=pos.dtype)):
            raise ConfigError(
                "unet3d has no temporal position embedding (its temporal attention sees frames without positions): "
                "only the stock positions 0..f-1 can be used"
            )

        def check(module: torch.nn.Module, args: tuple) -> None:
            check_position_count(pos, args[0].shape[2], self.family)

        handle = self.denoiser.register_forward_pre_hook(check)
        try:
            yield
        finally:
            handle.remove()

    def token_layout(self, latent_shape: tuple[int, ...], text_tokens: int = 0) -> TokenLayout:
        """The full-resolution grid (``transformer_in`` and the first level)."""
        _, _, f, h, w = latent_shape
        return TokenLayout(f, h, w)

    def site_downsampling(self, site: AttentionSite | str) -> int:
        """Spatial down-sampling of the latent grid at ``site`` relative to the input latents."""
        path = site.path if isinstance(site, AttentionSite) else site
        m = _SITE_PATH.match(path)
        if m is None:
            raise ConfigError(f"{path!r} is not an attention site of this UNet")
        levels = len(self.denoiser.down_blocks)
        if m.group("stem"):
            return 1
        if m.group("level") == "down_blocks":
            return 2 ** int(m.group("index"))
        if m.group("level") == "up_blocks":
            return 2 ** (levels - 1 - int(m.group("index")))
        return 2 ** (levels - 1)

    def site_token_layout(self, site: AttentionSite | str, latent_shape: tuple[int, ...]) -> TokenLayout:
        """The token grid seen at ``site``: spatial/cross calls run on ``(B*F, h*w, C)``, temporal on ``(B*h*w, F, C)``."""
        _, _, f, h, w = latent_shape
        s = self.site_downsampling(site)
        return TokenLayout(f, -(-h // s), -(-w // s))
