"""HunyuanVideo text-to-video (HunyuanVideoTransformer3DModel + AutoencoderKLHunyuanVideo, flow matching).

Text: a Llama encoder (hidden states of the third-to-last layer, prompt wrapped in the pipeline's
``prompt_template`` whose first ``crop_start`` tokens are cropped off) gives the token sequence
and its attention mask; CLIP text encoder 2 gives the pooled vector.  The released model is
guidance-distilled: the guidance scale enters the transformer as an embedding (``guidance``,
``guidance_scale * 1000`` as the pipeline passes it) instead of through two calls.

Attention, all joint over video and text tokens with the video tokens first:

* ``transformer_blocks.{i}.attn`` (dual-stream): video and text have separate projections
  (``to_q``/``to_k``/``to_v``/``to_out.0`` for video, ``add_{q,k,v}_proj``/``to_add_out`` for
  text); the sites name the video-stream ones.
* ``single_transformer_blocks.{j}.attn`` (single-stream): ``to_q``/``to_k``/``to_v`` over the
  concatenated tokens; there is no output projection in the attention module (the block's
  ``proj_out`` mixes the attention output with the MLP branch), so these sites have only the
  ``q``, ``k``, ``v`` roles.

RoPE (3D, video tokens only) is built by ``transformer.rope`` (HunyuanVideoRotaryPosEmbed) once
per forward.  The text encoders' refiner (``context_embedder``) attends over text only and is
not listed.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

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

#: the pipeline's default ``max_sequence_length`` (Llama tokens kept after the template crop)
DEFAULT_MAX_SEQUENCE_LENGTH = 256


class HunyuanVideoSpec(ScaledLatentsMixin, BackboneSpec):
    family = "hunyuan_video"
    description = "HunyuanVideo (13B): dual/single-stream joint DiT, 3D RoPE, flow matching, embedded guidance"
    aliases = {
        "hunyuanvideo": "hunyuanvideo-community/HunyuanVideo",
        "hunyuan-video": "hunyuanvideo-community/HunyuanVideo",
    }
    pipeline_cls = LazyTarget("diffusers:HunyuanVideoPipeline")
    denoiser_attr = "transformer"
    denoiser_classes = ("HunyuanVideoTransformer3DModel",)
    #: conditioning keys: Llama token embeddings (with ``encoder_attention_mask``) and the pooled CLIP vector
    text_key = "prompt_embeds"
    pooled_text_key = "pooled_projections"
    #: classifier-free guidance is off by default, as in the pipeline (``true_cfg_scale=1``): the
    #: model is guidance-distilled and takes the guidance scale as an input instead
    default_guidance = 1.0
    #: the embedded (distilled) guidance scale passed to the transformer
    default_embedded_guidance: ClassVar[float] = 6.0
    default_steps = 50
    default_fps = 24
    #: the pipeline's Llama prompt template (``crop_start`` 95 for the Llama 3 tokenizer)
    default_prompt_template: ClassVar[dict[str, Any]] = LazyTarget(
        "diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video:DEFAULT_PROMPT_TEMPLATE")

    def __init__(
        self,
        pipe: Any,
        source: str,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        prompt_template: dict[str, Any] | None = None,
        max_sequence_length: int | None = None,
    ):
        super().__init__(pipe, source, device=device, dtype=dtype)
        self.prompt_template: dict[str, Any] = dict(self.default_prompt_template)
        self.max_sequence_length = DEFAULT_MAX_SEQUENCE_LENGTH
        self._template_checked = False
        self.configure_text(prompt_template=prompt_template, max_sequence_length=max_sequence_length)

    @classmethod
    def from_pretrained(
        cls,
        source: str,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        prompt_template: dict[str, Any] | None = None,
        max_sequence_length: int | None = None,
        **kwargs: Any,
    ) -> "HunyuanVideoSpec":
        spec = super().from_pretrained(source, device=device, dtype=dtype, **kwargs)
        spec.configure_text(prompt_template=prompt_template, max_sequence_length=max_sequence_length)
        return spec

    def configure_text(self, prompt_template: dict[str, Any] | None = None, max_sequence_length: int | None = None) -> None:
        """Set the Llama prompt template and/or the number of text tokens kept (clears the prompt cache).

        ``prompt_template`` is the pipeline's ``{"template": "...{}...", "crop_start": N}``; with
        ``crop_start`` None it is counted here: the tokens the tokenizer gives for the text before
        ``{}`` (special tokens included), i.e. everything in front of the prompt.
        """
        if prompt_template is not None:
            if "{}" not in prompt_template.get("template", ""):
                raise ConfigError("prompt_template['template'] must contain '{}' where the prompt goes")
            template = dict(prompt_template)
            if template.get("crop_start") is None:
                template["crop_start"] = self._template_prefix_tokens(template)
            self.prompt_template = template
            self._template_checked = True
        if max_sequence_length is not None:
            if int(max_sequence_length) < 1:
                raise ConfigError(f"max_sequence_length must be >= 1, not {max_sequence_length}")
            self.max_sequence_length = int(max_sequence_length)
        self.clear_prompt_cache()

    def _template_prefix_tokens(self, template: dict[str, Any]) -> int:
        prefix = template["template"].split("{}")[0]
        return len(self.pipe.tokenizer(prefix)["input_ids"])

    def _check_template(self) -> None:
        if self._template_checked:
            return
        self._template_checked = True
        n = self._template_prefix_tokens(self.prompt_template)
        crop = self.prompt_template["crop_start"]
        if n != crop:
            warnings.warn(
                f"the prompt template crops {crop} tokens but this tokenizer puts {n} tokens before the prompt; "
                f"pass prompt_template={{'template': ..., 'crop_start': {n}}} (or crop_start=None) if the template fits it",
                stacklevel=3,
            )

    # ------------------------------------------------------------------ geometry
    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def spatial_compression(self) -> int:
        return int(self.vae.config.spatial_compression_ratio)

    @property
    def temporal_compression(self) -> int:
        return int(self.vae.config.temporal_compression_ratio)

    @property
    def patch_size(self) -> tuple[int, int, int]:
        cfg = self.denoiser.config
        return (int(cfg.patch_size_t), int(cfg.patch_size), int(cfg.patch_size))

    def published_size(self) -> tuple[int, int, int]:
        return (129, 720, 1280)

    # ------------------------------------------------------------------ text
    def _encode_prompts(self, prompts: list[str]) -> Conditioning:
        self._check_template()
        embeds, pooled, mask = self.pipe.encode_prompt(
            prompt=prompts,
            prompt_template=self.prompt_template,
            device=self.device,
            dtype=self.dtype,
            max_sequence_length=self.max_sequence_length,
        )
        return {
            "prompt_embeds": embeds.to(self.dtype),
            "pooled_projections": pooled.to(self.dtype),
            "encoder_attention_mask": mask.to(self.dtype),
        }

    # ------------------------------------------------------------------ denoiser
    def guidance_tensor(self, guidance: float | torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """The transformer's ``guidance`` input: ``guidance_scale * 1000`` per sample, as the pipeline builds it.

        ``guidance`` is the guidance scale (e.g. 6.0; default :attr:`default_embedded_guidance`), a float
        or a tensor of one value per sample.  None where the model has no guidance embedding.
        """
        if not self.denoiser.config.guidance_embeds:
            return None
        g = torch.as_tensor(self.default_embedded_guidance if guidance is None else guidance, dtype=torch.float32)
        if g.numel() > 0 and float(g.abs().max()) > 100:
            raise ConfigError(
                f"guidance={float(g.abs().max()):g}: give the guidance scale (e.g. 6.0); it is multiplied by 1000 here"
            )
        g = g.reshape(-1).to(self.device)
        if g.numel() == 1:
            g = g.expand(batch)
        elif g.numel() != batch:
            raise ConfigError(f"guidance has {g.numel()} values for a batch of {batch}")
        return (g * 1000.0).to(self.dtype)

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning, **kwargs: Any) -> torch.Tensor:
        """One transformer call on latents (B, C, f, h, w); returns the flow velocity in that layout.

        kwargs: ``guidance`` (the embedded guidance scale, default :attr:`default_embedded_guidance`; the
        transformer receives it times 1000) and ``attention_kwargs`` (passed to the attention
        processors, e.g. ``{"scale": s}`` for LoRA).
        """
        batch = x_t.shape[0]
        t = torch.as_tensor(t, device=self.device)
        if t.ndim == 0 or t.numel() == 1:
            t = t.reshape(()).expand(batch)
        return self.denoiser(
            hidden_states=x_t.to(self.device, self.dtype),
            timestep=t.to(self.dtype),
            encoder_hidden_states=cond["prompt_embeds"].to(self.dtype),
            encoder_attention_mask=cond["encoder_attention_mask"].to(self.dtype),
            pooled_projections=cond["pooled_projections"].to(self.dtype),
            guidance=self.guidance_tensor(kwargs.get("guidance"), batch),
            attention_kwargs=kwargs.get("attention_kwargs"),
            return_dict=False,
        )[0]

    # ------------------------------------------------------------------ layout
    def attention_sites(self) -> list[AttentionSite]:
        cfg = self.denoiser.config
        heads, dim = int(cfg.num_attention_heads), int(cfg.attention_head_dim)
        sites: list[AttentionSite] = []
        for i, _ in enumerate(self.denoiser.transformer_blocks):
            sites.append(AttentionSite(f"transformer_blocks.{i}.attn", "joint", heads, dim, block=i))
        n = len(sites)
        for j, _ in enumerate(self.denoiser.single_transformer_blocks):
            sites.append(
                AttentionSite(
                    f"single_transformer_blocks.{j}.attn", "joint", heads, dim,
                    projections={"q": "to_q", "k": "to_k", "v": "to_v"}, block=n + j,
                )
            )
        return sites

    def token_layout(self, latent_shape: tuple[int, ...], text_tokens: int = 0) -> TokenLayout:
        pt, ph, pw = self.patch_size
        _, _, f, h, w = latent_shape
        return TokenLayout(
            f // pt, h // ph, w // pw,
            text_tokens=text_tokens or self.max_sequence_length,
            text_position="after",
        )

    def rope_module(self) -> torch.nn.Module:
        """``transformer.rope`` (HunyuanVideoRotaryPosEmbed): ``forward(latents)`` -> ``(cos, sin)`` over the
        frame-major token grid, columns ``[t | h | w]`` split by ``rope_axes_dim``."""
        return self.denoiser.rope

    def block_sites(self) -> list[BlockSite]:
        """The dual-stream ``transformer_blocks.{i}``, then the single-stream
        ``single_transformer_blocks.{j}`` (index ``len(transformer_blocks) + j``); all ``joint``, all
        taking and returning ``(video, text)`` with the text tokens after the video tokens.

        Dual-stream: ``attn`` (video-stream projections; it returns ``(video, text)``), the video
        feed-forward ``ff`` (the text stream has its own ``ff_context``, not named here), ``norm1``
        (AdaLayerNormZero: its first output is the modulated attention input); ``ff_norm`` is None:
        ``norm2`` is modulated inline.

        Single-stream blocks fuse attention and MLP: one modulated ``norm`` (its first output feeds
        both ``attn`` and ``proj_mlp``), ``attn`` computes attention without an output projection
        (returns ``(video, text)``), and ``proj_out`` projects ``[attention | gelu(proj_mlp(x))]``
        back to the model width.  Here ``feed_forward`` is that fused ``proj_out`` (its output, over
        ``[video; text]``, is the block's whole update before the gate) and ``ff_linears`` are
        ``proj_mlp`` and ``proj_out``.
        """
        sites = []
        for i, block in enumerate(self.denoiser.transformer_blocks):
            p = f"transformer_blocks.{i}"
            sites.append(BlockSite(
                index=i, path=p, kind="joint", attention=f"{p}.attn", feed_forward=f"{p}.ff",
                ff_linears=linear_names(block.ff, f"{p}.ff"), norm=f"{p}.norm1", text_position="after",
            ))
        n = len(sites)
        for j, _ in enumerate(self.denoiser.single_transformer_blocks):
            p = f"single_transformer_blocks.{j}"
            sites.append(BlockSite(
                index=n + j, path=p, kind="joint", attention=f"{p}.attn", feed_forward=f"{p}.proj_out",
                ff_linears=(f"{p}.proj_mlp", f"{p}.proj_out"), norm=f"{p}.norm", ff_norm=f"{p}.norm",
                text_position="after",
            ))
        return sites

    def timestep_embedding_path(self) -> str:
        """``time_text_embed`` (HunyuanVideoConditionEmbedding): its first output is the ``temb`` all blocks
        and the output norm are modulated by: timestep embedding + embedded guidance + pooled CLIP text
        (the second output is the image-to-video token-replace embedding, None here)."""
        return "time_text_embed"

    # ------------------------------------------------------------------ temporal positions
    @contextmanager
    def temporal_position_context(self, positions: torch.Tensor | Sequence[float]) -> Iterator[None]:
        """Run the transformer at float frame positions: a forward hook on ``transformer.rope``
        replaces the frame-axis columns (the first ``rope_axes_dim[0]``) of its ``(cos, sin)`` with the
        frequencies at ``positions``, computed as the module does (float32, its ``theta``); the stock
        positions reproduce its output exactly."""
        from diffusers.models.embeddings import get_1d_rotary_pos_embed

        pos = check_temporal_positions(positions).to(torch.float32)

        def hook(module: torch.nn.Module, args: tuple, out: tuple[torch.Tensor, torch.Tensor]) -> tuple:
            frames = args[0].shape[2] // module.patch_size_t
            check_position_count(pos, frames, self.family)
            new = get_1d_rotary_pos_embed(module.rope_dim[0], pos, module.theta, use_real=True)
            return tuple(with_temporal_columns(o, frames, c) for o, c in zip(out, new))

        with forward_hooks((self.denoiser.rope, hook)):
            yield
