"""Training data for a customization: reference videos and images with captions, and the
on-disk cache of their latents and prompt embeddings (keyed by content)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from motiontune.errors import ConfigError
from motiontune.utils.files import load_tensors, save_tensors

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec, FrameRule


@dataclass
class Sample:
    """One reference: pixels (3, F, H, W) for a video or (3, H, W) for an image, in [-1, 1]."""

    pixels: torch.Tensor | None
    caption: str
    kind: str = "video"
    source: str = "<tensor>"
    #: precomputed normalised latents (C, f, h, w); when given, pixels may be None
    latents: torch.Tensor | None = None
    #: per-element weights of the diffusion loss over the latents, broadcastable to (C, f, h, w)
    #: (e.g. (1, f, h, w) to stress the subject); None weighs every element equally
    loss_weight: torch.Tensor | None = None
    #: indices of these frames in the source clip (e.g. every k-th frame), or None
    frame_indices: torch.Tensor | None = None

    def __post_init__(self) -> None:
        want = 4 if self.kind == "video" else 3
        if self.kind not in ("video", "image"):
            raise ConfigError(f"sample kind must be 'video' or 'image', not {self.kind!r}")
        if self.loss_weight is not None and (self.loss_weight.ndim != 4 or bool((self.loss_weight < 0).any())):
            raise ConfigError(f"{self.source}: loss_weight must be a non-negative (C or 1, f, h, w) tensor, got shape {tuple(self.loss_weight.shape)}")
        if self.pixels is None:
            if self.latents is None:
                raise ConfigError(f"{self.source}: a sample needs pixels or latents")
            return
        if self.pixels.ndim != want or self.pixels.shape[0] != 3:
            raise ConfigError(f"{self.source}: {self.kind} pixels must have shape (3, {'F, ' if want == 4 else ''}H, W), got {tuple(self.pixels.shape)}")


@dataclass
class TrainingData:
    videos: list[Sample] = field(default_factory=list)
    images: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.videos and not self.images:
            raise ConfigError("no training data: give at least one reference video or image")

    #: fixed references: their latents are cached
    cacheable = True

    def pool(self, kind: str) -> list[Sample]:
        return self.videos if kind == "video" else self.images

    def draw(self, kind: str, generator: torch.Generator, n: int, flip: float = 0.0, frame_stride: int = 1,
             frame_rule: "FrameRule | None" = None) -> list[Sample]:
        """``n`` samples of ``kind`` drawn with ``generator``.

        Kinds: ``"video"`` (whole clips), ``"frame"`` (one random frame of a clip, as an image; the
        reference images when there are no clips) and ``"image"`` (reference images; single random
        frames of the clips when there are none).
        ``flip`` is the probability of a horizontal flip of each sample. ``frame_stride`` k > 1 takes
        every k-th frame of a clip from a random offset below k, cut to the longest count
        ``frame_rule`` accepts, and keeps the frame indices in ``Sample.frame_indices``. Draws without
        flip or stride use the generator exactly as before these options existed.
        """
        if kind not in ("video", "image", "frame"):
            raise ConfigError(f"unknown data pool {kind!r} (video, image, frame)")
        if kind == "frame" and not self.videos:
            kind = "image"  # reference images only: they are the single frames
        pool = self.videos if kind == "frame" else self.pool(kind)
        from_video = kind == "frame" or (kind == "image" and not pool)
        if from_video:
            pool = self.videos
        if not pool:
            raise ConfigError(f"the recipe asked for a {kind} batch but no {'video' if kind == 'frame' else kind} references were given")
        out = []
        for _ in range(n):
            sample = pool[int(torch.randint(len(pool), (1,), generator=generator))]
            if from_video:
                frame = int(torch.randint(sample.pixels.shape[1], (1,), generator=generator))
                sample = Sample(sample.pixels[:, frame], sample.caption, "image", sample.source,
                                frame_indices=torch.tensor([frame]))
            elif kind == "video" and frame_stride > 1:
                sample = strided(sample, frame_stride, int(torch.randint(frame_stride, (1,), generator=generator)), frame_rule)
            if flip > 0 and float(torch.rand((), generator=generator)) < flip:
                sample = dataclasses.replace(sample, pixels=sample.pixels.flip(-1), source=sample.source + " (flipped)")
            out.append(sample)
        return out


def strided(sample: Sample, stride: int, offset: int, rule: "FrameRule | None" = None) -> Sample:
    """Every ``stride``-th frame of a clip from ``offset``, cut to the longest count ``rule`` accepts
    (at least 2 frames: a clip)."""
    total = sample.pixels.shape[1]
    idx = torch.arange(offset if offset < total else 0, total, stride)
    n = len(idx)
    if rule is not None:
        while n > 1 and not rule.is_valid(n):
            n -= 1
        if n < 2:
            raise ConfigError(f"{sample.source}: every {stride}-th frame leaves {len(idx)} of {total} frames; the backbone needs {rule.describe()}")
    idx = idx[:n]
    return Sample(sample.pixels[:, idx], sample.caption, sample.kind, sample.source, frame_indices=idx)


class DataSource:
    """Interface of a training-data source: ``draw(kind, generator, n) -> list[Sample]``.

    A source with ``cacheable = False`` (e.g. a procedural stream) is encoded every step.
    """

    cacheable = False

    def draw(self, kind: str, generator: torch.Generator, n: int) -> list[Sample]:
        raise NotImplementedError


def content_key(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        if torch.is_tensor(p):
            t = p.detach().cpu().contiguous()
            h.update(str((tuple(t.shape), str(t.dtype))).encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:40]


def _model_identity(spec: "BackboneSpec", part: str) -> dict:
    module = getattr(spec.pipe, part, None)
    cfg = getattr(module, "config", None) if module is not None else None
    cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else (dict(cfg) if isinstance(cfg, dict) else {})
    return {"family": spec.family, "source": os.path.abspath(spec.source) if os.path.isdir(spec.source) else spec.source, "part": part, "config": cfg}


class LatentCache:
    """Latents of videos/images and prompt embeddings, in memory and (optionally) on disk.

    Keys hash the input content together with the encoder's identity (family, source,
    config), so a changed input or model never reuses a stale entry.
    """

    def __init__(self, spec: "BackboneSpec", folder: str | None = None):
        self.spec = spec
        self.folder = folder
        self._mem: dict[str, dict[str, torch.Tensor]] = {}
        # hashed once: keys combine these digests with each input's content
        self._vae_id = content_key(_model_identity(spec, "vae"))
        self._text_id = content_key(_model_identity(spec, "text_encoder"))
        self.hits = 0
        self.misses = 0

    def _path(self, kind: str, key: str) -> str | None:
        return os.path.join(self.folder, kind, f"{key}.safetensors") if self.folder else None

    def _get(self, kind: str, key: str, compute) -> dict[str, torch.Tensor]:
        if key in self._mem:
            self.hits += 1
            return self._mem[key]
        path = self._path(kind, key)
        if path and os.path.isfile(path):
            value = load_tensors(path)
            self.hits += 1
        else:
            value = compute()
            self.misses += 1
            if path:
                save_tensors(value, path)
        self._mem[key] = value
        return value

    def latents(self, sample: Sample) -> torch.Tensor:
        pixels = sample.pixels if sample.kind == "video" else sample.pixels.unsqueeze(1)
        key = content_key("latents", self._vae_id, pixels)

        def compute() -> dict[str, torch.Tensor]:
            with torch.no_grad():
                return {"latents": self.spec.encode_video(pixels.unsqueeze(0)).squeeze(0).float().cpu()}

        return self._get("latents", key, compute)["latents"]

    def prompt(self, text: str) -> dict[str, torch.Tensor]:
        key = content_key("prompt", self._text_id, text)

        def compute() -> dict[str, torch.Tensor]:
            return {k: v.cpu() for k, v in self.spec.encode_prompt([text]).items()}

        return self._get("prompts", key, compute)
