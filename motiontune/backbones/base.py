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
  processors and hooks instead of copies of model code.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from motiontune.errors import ConfigError, ModelLoadError

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
    #: diffusers pipeline class used to load and to assemble the components
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

    def __init__(self, pipe: Any, source: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        self.pipe = pipe
        self.source = source
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
        if missing:
            with torch.no_grad():
                encoded = self._encode_prompts(missing)
            for i, p in enumerate(missing):
                self._prompt_cache[p] = {k: v[i : i + 1].detach() for k, v in encoded.items()}
        return cat_conditioning([self._prompt_cache[p] for p in prompts])

    def _encode_prompts(self, prompts: list[str]) -> Conditioning:
        raise NotImplementedError

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
        }

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


def cat_conditioning(conds: list[Conditioning]) -> Conditioning:
    keys = conds[0].keys()
    for c in conds[1:]:
        if c.keys() != keys:
            raise ValueError("conditioning dicts have different keys")
    return {k: torch.cat([c[k] for c in conds], dim=0) for k in keys}


def repeat_conditioning(cond: Conditioning, n: int) -> Conditioning:
    return {k: v.repeat_interleave(n, dim=0) for k, v in cond.items()}


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
