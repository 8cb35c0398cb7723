"""The backbone specification: one object per loaded model family.

A :class:`BackboneSpec` wraps the diffusers components of a text-to-video model and gives the
rest of motiontune one vocabulary for all of them:

* canonical tensor layouts: pixels ``(B, 3, F, H, W)`` in ``[-1, 1]`` and latents
  ``(B, C, f, h, w)`` already normalised for the denoiser;
* prompt encoding (cached per prompt) returning a conditioning dict of tensors;
* the noise schedule and training target (:mod:`motiontune.diffusion.schedules`);
* one denoiser call ``predict(x_t, t, cond)``;
* a layout: the attention modules and what they attend over (spatial, temporal, joint
  spatio-temporal, cross), their heads, the token grid and the module that builds temporal
  positions, so that methods can split heads or remap frame positions through attention
  processors and hooks instead of copies of model code;
* the transformer blocks (:class:`BlockSite`: block, self-attention, feed-forward and norm
  modules), the timestep-embedding module and the conditioning keys of the text, for block
  taps and adapters (:mod:`motiontune.hooks.taps`);
* one way to run the denoiser at other temporal positions
  (:meth:`BackboneSpec.temporal_position_context`, front door
  :func:`motiontune.hooks.positions.temporal_positions`).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from motiontune.errors import ConfigError, ModelLoadError

log = logging.getLogger("motiontune")

DEFAULTS_FILE = "motiontune_defaults.json"
AttentionKind = Literal["spatial", "temporal", "joint", "cross"]
Conditioning = dict[str, torch.Tensor]


@dataclass(frozen=True)
class AttentionSite:
    """One attention module of the denoiser.

    ``path`` is the module's name in ``spec.denoiser.named_modules()``; ``projections`` maps the
    roles ``q``, ``k``, ``v``, ``o`` to child module names relative to ``path``.
    ``kind`` says which tokens the queries attend over: ``spatial`` (tokens of one frame),
    ``temporal`` (one spatial position across frames), ``joint`` (all video tokens, possibly
    with text tokens) or ``cross`` (queries from video, keys and values from text).
    """

    path: str
    kind: AttentionKind
    heads: int
    head_dim: int
    projections: dict[str, str] = field(
        default_factory=lambda: {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0"}
    )
    block: int = 0

    def module_names(self, roles: tuple[str, ...] | None = None) -> list[str]:
        """Full module names of ``roles`` (default: every projection this site has)."""
        roles = tuple(self.projections) if roles is None else tuple(roles)
        unknown = [r for r in roles if r not in self.projections]
        if unknown:
            raise ConfigError(f"unknown projection role(s) {unknown}; known: {sorted(self.projections)}")
        return [f"{self.path}.{self.projections[r]}" for r in roles]


TextPosition = Literal["before", "after", "none"]


@dataclass(frozen=True)
class BlockSite:
    """One transformer block of the denoiser and the sub-modules methods attach to.

    All module names are full names in ``spec.denoiser.named_modules()``.  ``text_position``
    says whether the block carries a text stream next to the video stream (joint blocks of
    CogVideoX and HunyuanVideo take and return ``(video, text)``) and where the text tokens sit
    in the joint sequences its sub-modules produce: ``"before"`` or ``"after"`` the video
    tokens; ``"none"`` where text enters through cross attention only (or not at all).
    """

    index: int                       # order within spec.block_sites() (forward order)
    path: str                        # the block module (its forward output is the block output)
    kind: str                        # "joint" (DiT blocks), "spatial" or "temporal" (Latte, UNet3D transformer blocks)
    attention: str | None            # the self-attention module
    feed_forward: str | None         # the feed-forward module, None if the block has none
    ff_linears: tuple[str, ...]      # the nn.Linear layers inside the feed-forward
    # module whose output is the normed input of the self-attention; None where the block norms inline
    norm: str | None
    cross_attention: str | None = None
    ff_norm: str | None = None       # normed input of the feed-forward, where a module produces it
    text_position: TextPosition = "none"


@dataclass(frozen=True)
class TokenLayout:
    """How the video tokens of one attention call are arranged.

    Video tokens are flattened frame-major (``f``, then ``h``, then ``w``); ``text_tokens``
    text tokens precede them (``text_position="before"``) or follow them (``"after"``) in
    joint attention; 0 where text enters through cross attention only.
    """

    frames: int
    height: int
    width: int
    text_tokens: int = 0
    text_position: Literal["before", "after", "none"] = "none"

    @property
    def video_tokens(self) -> int:
        return self.frames * self.height * self.width

    @property
    def tokens_per_frame(self) -> int:
        return self.height * self.width


@dataclass(frozen=True)
class FrameRule:
    """Valid frame counts: ``n % k == r`` (and ``n == fixed`` where the model needs one count)."""

    k: int = 1
    r: int = 0
    fixed: int | None = None

    def is_valid(self, n: int) -> bool:
        if self.fixed is not None:
            return n == self.fixed
        return n >= 1 and n % self.k == self.r % self.k

    def describe(self) -> str:
        if self.fixed is not None:
            return f"exactly {self.fixed} frames"
        if self.k == 1:
            return "any number of frames"
        examples = [n for n in range(1, 8 * self.k) if self.is_valid(n)][1:4]
        return f"{self.k}k+{self.r} frames ({', '.join(map(str, examples))}, ...)"

    def check(self, n: int) -> None:
        if not self.is_valid(n):
            raise ConfigError(f"num_frames={n} is not valid for this backbone: it needs {self.describe()}")


class BackboneSpec:
    """Base class; one subclass per model family, registered in :mod:`motiontune.backbones`."""

    family: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: short alias -> hub id of the published checkpoints
    aliases: ClassVar[dict[str, str]] = {}
    #: diffusers pipeline class used to load and to assemble the components (families name it with a
    #: LazyTarget, so that listing the backbones does not import diffusers)
    pipeline_cls: ClassVar[type] = object
    #: attribute of the pipeline holding the denoiser
    denoiser_attr: ClassVar[str] = "transformer"
    #: the denoiser class names this spec accepts (used to detect the family of a folder)
    denoiser_classes: ClassVar[tuple[str, ...]] = ()
    #: flag whether the diffusers pipeline class can load peft LoRA files with load_lora_weights
    diffusers_lora_loading: ClassVar[bool] = True
    #: classifier-free guidance scale the sampler uses by default (1 = no guidance)
    default_guidance: ClassVar[float] = 5.0
    default_steps: ClassVar[int] = 50
    default_fps: ClassVar[int] = 16
    #: customization learning rate recommended by the model folder (None: the recipe's own)
    default_learning_rate: ClassVar[float | None] = None
    #: key of the conditioning dict holding the text-token embeddings the denoiser reads
    text_key: ClassVar[str] = "encoder_hidden_states"
    #: key of the pooled text embedding (one vector per prompt), None where the denoiser takes none
    pooled_text_key: ClassVar[str | None] = None

    def __init__(self, pipe: Any, source: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        self.pipe = pipe
        self.source = source
        #: the model as the user named it (an alias, hub id, 'toy' or a folder); set by load_backbone
        self.name = source
        self._checked_prompts: set[str] = set()
        self.device = torch.device(device)
        self.dtype = dtype
        self._prompt_cache: dict[str, Conditioning] = {}
        self.pipe.to(self.device)
        for name in ("vae", "text_encoder", "text_encoder_2"):
            module = getattr(self.pipe, name, None)
            if module is not None:
                module.requires_grad_(False)
                module.eval()
        self.denoiser.requires_grad_(False)
        from motiontune.diffusion.schedules import make_schedule

        self.schedule = make_schedule(self.pipe.scheduler)
        self._apply_folder_defaults()

    def _apply_folder_defaults(self) -> None:
        """A model folder may carry ``motiontune_defaults.json`` with the size, steps, guidance and
        fps it was trained for, and the learning rate customization needs on it (the toy model
        does); they replace the family's defaults."""
        path = os.path.join(self.source, DEFAULTS_FILE)
        if not os.path.isfile(path):
            return
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{path}: unreadable ({exc})") from exc
        if "num_frames" in data:
            self.pipe._motiontune_default_size = (int(data["num_frames"]), int(data["height"]), int(data["width"]))
        for key in ("default_steps", "default_guidance", "default_fps"):
            if key in data:
                setattr(self, key, type(getattr(self, key))(data[key]))
        if data.get("default_learning_rate") is not None:
            lr = data["default_learning_rate"]
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
                raise ModelLoadError(f"{path}: default_learning_rate must be a positive number (got {lr!r})")
            self.default_learning_rate = float(lr)

    # ------------------------------------------------------------------ loading
    @classmethod
    def resolve_source(cls, source: str) -> str:
        return cls.aliases.get(source, source)

    @classmethod
    def from_pretrained(
        cls,
        source: str,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        **kwargs: Any,
    ) -> "BackboneSpec":
        """Load from a hub id, an alias of :attr:`aliases`, or a local folder in diffusers layout."""
        resolved = cls.resolve_source(source)
        if os.path.isdir(resolved) and not os.path.isfile(os.path.join(resolved, "model_index.json")):
            raise ModelLoadError(f"{resolved}: folder has no model_index.json (not a diffusers model folder)")
        if not os.path.isdir(resolved) and (os.path.sep in resolved and not _looks_like_hub_id(resolved)):
            raise ModelLoadError(f"{resolved}: no such model folder")
        try:
            pipe = cls.pipeline_cls.from_pretrained(resolved, dtype=dtype, **kwargs)
        except (OSError, ValueError, EnvironmentError) as exc:  # hub unreachable, missing files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"cannot load {cls.family} model '{resolved}': {first}") from exc
        return cls(pipe, source=resolved, device=device, dtype=dtype)

    @classmethod
    def from_components(cls, source: str = "<in-memory>", device: str = "cpu", dtype: torch.dtype = torch.float32, **components: Any) -> "BackboneSpec":
        return cls(cls.pipeline_cls(**components), source=source, device=device, dtype=dtype)

    def save_pretrained(self, folder: str) -> None:
        self.pipe.save_pretrained(folder)

    # ------------------------------------------------------------------ components
    @property
    def denoiser(self) -> torch.nn.Module:
        return getattr(self.pipe, self.denoiser_attr)

    @property
    def vae(self) -> torch.nn.Module:
        return self.pipe.vae

    @property
    def scheduler(self) -> Any:
        return self.pipe.scheduler

    def fresh_scheduler(self, cls: type | None = None, **overrides: Any) -> Any:
        """A new scheduler instance (sampling mutates scheduler state)."""
        cls = cls or type(self.pipe.scheduler)
        return cls.from_config(self.pipe.scheduler.config, **overrides)

    # ------------------------------------------------------------------ geometry
    @property
    def latent_channels(self) -> int:
        raise NotImplementedError

    @property
    def spatial_compression(self) -> int:
        raise NotImplementedError

    @property
    def temporal_compression(self) -> int:
        return 1

    @property
    def frame_rule(self) -> FrameRule:
        k = self.temporal_compression
        return FrameRule(k=k, r=1 if k > 1 else 0)

    @property
    def default_size(self) -> tuple[int, int, int]:
        """(num_frames, height, width) to train and generate at: the model folder's
        ``motiontune_defaults.json`` if it has one, else :meth:`published_size`."""
        override = getattr(self.pipe, "_motiontune_default_size", None)
        return tuple(override) if override else self.published_size()

    def published_size(self) -> tuple[int, int, int]:
        """(num_frames, height, width) the published checkpoints of this family were trained at."""
        raise NotImplementedError

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this."""
        return self.spatial_compression * self.patch_size[1]

    @property
    def patch_size(self) -> tuple[int, int, int]:
        return (1, 1, 1)

    def latent_shape(self, num_frames: int, height: int, width: int, batch: int = 1) -> tuple[int, ...]:
        self.frame_rule.check(num_frames)
        m = self.size_multiple
        if height % m or width % m:
            raise ConfigError(f"height and width must be multiples of {m} for this backbone (got {height}x{width})")
        if self.temporal_compression > 1:
            f = (num_frames - 1) // self.temporal_compression + 1
        else:
            f = num_frames
        s = self.spatial_compression
        return (batch, self.latent_channels, f, height // s, width // s)

    def check_size(self, num_frames: int, height: int, width: int) -> None:
        self.latent_shape(num_frames, height, width)

    # ------------------------------------------------------------------ text
    def encode_prompt(self, prompts: list[str] | str) -> Conditioning:
        """Encode prompts (cached per prompt text); returns a dict of batched tensors."""
        if isinstance(prompts, str):
            prompts = [prompts]
        missing = [p for p in dict.fromkeys(prompts) if p not in self._prompt_cache]
        for p in missing:
            self._warn_unknown_words(p)
        if missing:
            with torch.no_grad():
                encoded = self._encode_prompts(missing)
            for i, p in enumerate(missing):
                self._prompt_cache[p] = {k: v[i : i + 1].detach() for k, v in encoded.items()}
        return cat_conditioning([self._prompt_cache[p] for p in prompts])

    def _encode_prompts(self, prompts: list[str]) -> Conditioning:
        raise NotImplementedError

    def _warn_unknown_words(self, prompt: str) -> None:
        """Log one warning (once per prompt) naming the words the model's tokenizer reads as its
        unknown token, e.g. words outside the toy model's small vocabulary."""
        if prompt in self._checked_prompts:
            return
        self._checked_prompts.add(prompt)
        tokenizers = [getattr(self.pipe, n, None) for n in ("tokenizer", "tokenizer_2")]
        words = list(dict.fromkeys(w for t in tokenizers if t is not None for w in unknown_words(t, prompt)))
        if words:
            from motiontune.backbones.local_models import model_aliases

            hint = " (`motiontune list vocabulary` shows the words it knows)" if self.name in model_aliases() else ""
            log.warning("prompt %r: %d word(s) not in the model's vocabulary, read as unknown: %s%s",
                        prompt, len(words), ", ".join(words), hint)

    def clear_prompt_cache(self) -> None:
        self._prompt_cache.clear()

    # ------------------------------------------------------------------ video
    def encode_video(self, pixels: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pixels (B, 3, F, H, W) in [-1, 1] -> normalised latents (B, C, f, h, w)."""
        raise NotImplementedError

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, C, f, h, w) -> pixels (B, 3, F, H, W) in [-1, 1]."""
        raise NotImplementedError

    # ------------------------------------------------------------------ denoiser
    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning, **kwargs: Any) -> torch.Tensor:
        """One denoiser call on canonical latents; returns the raw model output in the same layout."""
        raise NotImplementedError

    def scheduler_step(
        self, scheduler: Any, output: torch.Tensor, t: torch.Tensor, latents: torch.Tensor, index: int, state: dict[str, Any], **kwargs: Any
    ) -> torch.Tensor:
        """One reverse step of the sampler; ``state`` persists across the steps of one call
        (for schedulers that need the previous step's prediction)."""
        return scheduler.step(output, t, latents, return_dict=False, **kwargs)[0]

    # ------------------------------------------------------------------ layout
    def attention_sites(self) -> list[AttentionSite]:
        raise NotImplementedError

    def token_layout(self, latent_shape: tuple[int, ...], text_tokens: int = 0) -> TokenLayout:
        raise NotImplementedError

    def rope_module(self) -> torch.nn.Module | None:
        """The module that builds temporal positions (RoPE), or None where positions are learned/absolute."""
        return None

    def sites(self, kinds: tuple[str, ...] | str) -> list[AttentionSite]:
        if isinstance(kinds, str):
            kinds = (kinds,)
        return [s for s in self.attention_sites() if s.kind in kinds]

    def block_sites(self) -> list[BlockSite]:
        """The transformer blocks of the denoiser in forward order (see :class:`BlockSite`)."""
        raise NotImplementedError(f"the {self.family} backbone does not list its blocks")

    def timestep_embedding_path(self) -> str:
        """The module whose output is the timestep embedding, one vector per sample, from which the
        blocks' conditioning is computed."""
        raise NotImplementedError(f"the {self.family} backbone does not name its timestep embedding")

    # ------------------------------------------------------------------ temporal positions
    def temporal_tokens(self, num_latent_frames: int) -> int:
        """Temporal token indices the denoiser sees for ``num_latent_frames`` canonical latent frames
        (after patching along time)."""
        return num_latent_frames // self.patch_size[0]

    def temporal_position_context(self, positions: torch.Tensor | Sequence[float]) -> Any:
        """A context manager under which every denoiser call uses the float temporal positions
        ``positions`` (one per temporal token index) instead of ``0 .. n-1``.

        Families override this; the base class refuses.  Front door:
        :func:`motiontune.hooks.positions.temporal_positions`.
        """
        raise ConfigError(f"the {self.family} backbone cannot run at other temporal positions")

    # ------------------------------------------------------------------ misc
    def describe(self) -> dict[str, Any]:
        f, h, w = self.default_size
        return {
            "family": self.family,
            "source": self.source,
            "prediction": self.schedule.prediction_type,
            "frame_rule": self.frame_rule.describe(),
            "default_size": {"num_frames": f, "height": h, "width": w},
            "attention": {k: len(self.sites(k)) for k in ("spatial", "temporal", "joint", "cross")},
            "blocks": self._block_count(),
        }

    def _block_count(self) -> int | None:
        try:
            return len(self.block_sites())
        except NotImplementedError:
            return None

    def deepcopy_denoiser(self) -> torch.nn.Module:
        return copy.deepcopy(self.denoiser)


class ScaledLatentsMixin:
    """Video VAEs whose latents are the posterior times ``vae.config.scaling_factor``
    (CogVideoX, HunyuanVideo)."""

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    def encode_video(self, pixels: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pixels (B, 3, F, H, W) in [-1, 1] -> latents (B, C, f, h, w) times the VAE's scaling_factor."""
        pixels = pixels.to(self.device, self.vae.dtype)
        dist = self.vae.encode(pixels).latent_dist
        z = dist.sample(generator) if sample else dist.mode()
        return (z * self.scaling_factor).to(self.dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        latents = latents.to(self.device, self.vae.dtype) / self.scaling_factor
        return self.vae.decode(latents, return_dict=False)[0].clamp(-1, 1)


def linear_names(root: torch.nn.Module, prefix: str) -> tuple[str, ...]:
    """Full names of the linear layers in ``root`` (whose full name is ``prefix``).

    A layer already wrapped by peft (a ``BaseTunerLayer`` such as a LoRA ``Linear``) counts as
    one linear layer; its base layer and adapter weights are not listed.
    """
    out: list[str] = []
    wrapped: list[str] = []
    for name, module in root.named_modules(prefix=prefix):
        if any(name.startswith(w + ".") for w in wrapped):
            continue
        if hasattr(module, "get_base_layer") and isinstance(module.get_base_layer(), torch.nn.Linear):
            out.append(name)
            wrapped.append(name)
        elif isinstance(module, torch.nn.Linear):
            out.append(name)
    return tuple(out)


def basic_block_site(index: int, path: str, block: torch.nn.Module, kind: str) -> BlockSite:
    """The :class:`BlockSite` of a diffusers ``BasicTransformerBlock`` (Latte, UNet3D).

    ``norm1`` gives the self-attention input (``ada_norm_zero``: as its first output) and ``norm3``
    the feed-forward input, except where the block modulates a norm's output inline: with
    ``ada_norm_single`` (Latte: ``norm1(x) * (1 + scale) + shift``, the feed-forward input likewise
    from ``norm2``) ``norm`` and ``ff_norm`` are None, with ``ada_norm_zero`` ``ff_norm`` is, and
    with a positional embedding inside the block ``norm`` is.  ``attn2`` is named as the cross
    attention only where it attends to text (``is_cross_attention``); in temporal blocks built
    with ``double_self_attention`` it is a second self-attention and is not named here.
    """
    norm_type = getattr(block, "norm_type", "layer_norm")
    attn2 = getattr(block, "attn2", None)
    ff = getattr(block, "ff", None)
    inline_attn_norm = norm_type == "ada_norm_single" or getattr(block, "pos_embed", None) is not None
    inline_ff_norm = norm_type in ("ada_norm_single", "ada_norm_zero") or ff is None
    return BlockSite(
        index=index,
        path=path,
        kind=kind,
        attention=f"{path}.attn1",
        feed_forward=f"{path}.ff" if ff is not None else None,
        ff_linears=linear_names(ff, f"{path}.ff") if ff is not None else (),
        norm=None if inline_attn_norm else f"{path}.norm1",
        cross_attention=f"{path}.attn2" if attn2 is not None and attn2.is_cross_attention else None,
        ff_norm=None if inline_ff_norm else f"{path}.norm3",
    )


def check_temporal_positions(positions: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """``positions`` as a detached 1-D float64 CPU tensor; ConfigError unless they are real numbers
    in a non-empty 1-D tensor (or sequence), all finite."""
    try:
        pos = torch.as_tensor(positions)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"temporal positions must be a 1-D float tensor ({exc})") from None
    if pos.dtype == torch.bool or pos.is_complex():
        raise ConfigError(f"temporal positions must be real numbers, not {pos.dtype}")
    if pos.ndim != 1 or pos.numel() == 0:
        raise ConfigError(f"temporal positions must be a non-empty 1-D tensor, got shape {tuple(pos.shape)}")
    pos = pos.detach().to("cpu", torch.float64)
    if not torch.isfinite(pos).all():
        raise ConfigError("temporal positions must be finite (got inf or nan)")
    return pos


def check_position_count(positions: torch.Tensor, frames: int, family: str) -> None:
    """ConfigError unless there is one position per temporal token index of this call."""
    if positions.numel() != frames:
        raise ConfigError(
            f"{positions.numel()} temporal positions given, but this {family} call has {frames} temporal token "
            f"indices (one position per latent frame after temporal patching)"
        )


def with_temporal_columns(table: torch.Tensor, frames: int, columns: torch.Tensor) -> torch.Tensor:
    """A positional table with its leading (temporal) columns replaced.

    ``table`` has rows for frame-major video tokens (``frames`` x tokens per frame; any
    singleton dims around them, e.g. Wan's ``(1, N, 1, D)``) and features in its last dim;
    ``columns`` is ``(frames, d)``: row ``i`` goes to every token of frame ``i``, features ``:d``.
    """
    rows = table.reshape(frames, -1, table.shape[-1])
    d = columns.shape[-1]
    head = columns.to(rows.device, rows.dtype)[:, None, :].expand(frames, rows.shape[1], d)
    return torch.cat([head, rows[..., d:]], dim=-1).reshape(table.shape)


@contextmanager
def forward_hooks(*hooks: tuple[torch.nn.Module, Any]) -> Iterator[None]:
    """Register ``(module, forward_hook)`` pairs for the duration of the block (removed also on errors)."""
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def cat_conditioning(conds: list[Conditioning]) -> Conditioning:
    keys = conds[0].keys()
    for c in conds[1:]:
        if c.keys() != keys:
            raise ValueError("conditioning dicts have different keys")
    return {k: torch.cat([c[k] for c in conds], dim=0) for k in keys}


def repeat_conditioning(cond: Conditioning, n: int) -> Conditioning:
    return {k: v.repeat_interleave(n, dim=0) for k, v in cond.items()}


def unknown_words(tokenizer: Any, text: str) -> list[str]:
    """The words of ``text`` that ``tokenizer`` encodes as its unknown token (none when it has no
    unknown token)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None or not text.strip():
        return []
    try:  # fast tokenizers say where each token comes from
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        words = [text[a:b] for i, (a, b) in zip(encoded["input_ids"], encoded["offset_mapping"]) if i == unk]
    except (NotImplementedError, TypeError, ValueError, KeyError):
        words = [w for w in text.split() if unk in tokenizer(w, add_special_tokens=False)["input_ids"]]
    return [w for w in dict.fromkeys(words) if w.strip()]


def _looks_like_hub_id(s: str) -> bool:
    parts = s.split("/")
    return len(parts) == 2 and all(parts) and not s.startswith((".", "/", "~"))


def read_model_index(folder: str) -> dict[str, Any]:
    path = os.path.join(folder, "model_index.json")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{folder}: folder has no model_index.json (not a diffusers model folder)") from exc
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc.msg})") from exc
