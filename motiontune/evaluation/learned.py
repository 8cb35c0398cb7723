"""Metrics with learned weights: CLIP-T, CLIP-I, CLIP temporal consistency, DINO-I, DINO subject
consistency and PickScore; FVD (I3D) and RAFT dynamic degree as optional extras.

Models are loaded with transformers from a hub id or a local folder (``from_pretrained``), with
their own image processors forced to the PIL backend (no torchvision needed). Nothing is
downloaded unless the hub is reachable; the ids in :data:`DEFAULT_SOURCES` are the usual ones.
Definitions, ranges and scales are written up in docs/metrics.md.

Each metric is registered in :data:`~motiontune.evaluation.registry.METRICS` with
``needs_weights=True`` and no function, so :func:`~motiontune.evaluation.registry.compute_metrics`
reports it as ``"skipped: needs ..."``; :class:`LearnedScorer` computes it when it is given the
weights.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np
import torch

from motiontune.errors import ConfigError, InputError
from motiontune.evaluation.metrics import (
    DynamicDegree,
    as_uint8_video,
    dynamic_threshold,
    judge_dynamics,
    top_magnitude_mean,
)
from motiontune.evaluation.registry import METRICS, MetricInfo, MetricValue, register_metric
from motiontune.evaluation.tracker import PointTracker, tracker_motion_fidelity_or_reason

#: The usual public weights of each model kind (documented; used only when given explicitly).
DEFAULT_SOURCES: dict[str, str] = {
    "clip": "openai/clip-vit-base-patch32",
    "dino": "facebook/dino-vits16",
    "pickscore": "yuvalkirstain/PickScore_v1",
    "pickscore_processor": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
}

#: CLIP-T and CLIP-I are reported times this factor (the common x100 convention).
CLIP_SCALE = 100.0

Pairing = Literal["all", "best"]

# ------------------------------------------------------------------------------------------
# Which weights each metric needs, and how the user gives them
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightSources:
    """Where the learned models come from: a hub id or a local folder per model kind (None: absent).

    ``pickscore_processor`` is the image processor and tokenizer of PickScore; when absent they
    are read from the ``pickscore`` folder if it holds them, else from
    ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``. ``i3d`` is a TorchScript I3D file for FVD,
    ``raft`` a TorchScript RAFT file (torchvision's, scripted) for ``raft_dynamic_degree``.
    """

    clip: str | None = None
    dino: str | None = None
    pickscore: str | None = None
    pickscore_processor: str | None = None
    i3d: str | None = None
    raft: str | None = None
    #: a TorchScript point tracker (CoTracker, wrapped; see :mod:`motiontune.evaluation.tracker`)
    cotracker: str | None = None

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> WeightSources:
        """Take the known keys out of a settings dict (CLI options), leaving the rest."""
        return cls(**{f.name: settings.pop(f.name, None) for f in fields(cls)})

    def to_dict(self) -> dict[str, str | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: What each weight kind is, as shown in "skipped: needs ..." messages.
NEEDS: dict[str, str] = {
    "clip": f"CLIP weights (--clip PATH_OR_ID, e.g. {DEFAULT_SOURCES['clip']})",
    "dino": f"DINO weights (--dino PATH_OR_ID, e.g. {DEFAULT_SOURCES['dino']})",
    "pickscore": f"PickScore weights (--pickscore PATH_OR_ID, e.g. {DEFAULT_SOURCES['pickscore']})",
    "i3d": "I3D weights (--i3d FILE, the TorchScript i3d_torchscript.pt of StyleGAN-V)",
    "raft": "RAFT weights (--raft FILE, a TorchScript torchvision RAFT; see docs/metrics.md)",
    "cotracker": "a point tracker (--cotracker FILE, a TorchScript CoTracker wrapper; see docs/metrics.md)",
}


@dataclass(frozen=True)
class LearnedMetric:
    """How a learned metric is computed: the model kind it needs and the inputs it reads."""

    name: str
    model: str  # key of NEEDS
    needs_prompt: bool = False
    needs_reference_images: bool = False
    set_level: bool = False  # computed over sets of videos (FVD), not per video
    needs_reference_video: bool = False


LEARNED_METRICS: dict[str, LearnedMetric] = {
    m.name: m
    for m in (
        LearnedMetric("clip_t", "clip", needs_prompt=True),
        LearnedMetric("clip_i", "clip", needs_reference_images=True),
        LearnedMetric("clip_temporal_consistency", "clip"),
        LearnedMetric("dino_i", "dino", needs_reference_images=True),
        LearnedMetric("dino_subject_consistency", "dino"),
        LearnedMetric("pickscore", "pickscore", needs_prompt=True),
        LearnedMetric("fvd", "i3d", needs_reference_images=True, set_level=True),
        LearnedMetric("raft_dynamic_degree", "raft"),
        LearnedMetric("cotracker_motion_fidelity", "cotracker", needs_reference_video=True),
    )
}

_INFOS = (
    MetricInfo(
        name="clip_t", function=None, kind="video", value_range=(-100.0, 100.0), higher_is_better=True,
        definition="100 x mean over frames of cos(CLIP image embedding, CLIP text embedding of the prompt).",
        needs_weights=True, weights=NEEDS["clip"],
    ),
    MetricInfo(
        name="clip_i", function=None, kind="video+reference", value_range=(-100.0, 100.0), higher_is_better=True,
        definition="100 x mean cos between CLIP embeddings of generated frames and reference images.",
        needs_weights=True, weights=NEEDS["clip"],
    ),
    MetricInfo(
        name="clip_temporal_consistency", function=None, kind="video", value_range=(-1.0, 1.0), higher_is_better=True,
        definition="Mean cos of consecutive frames' CLIP image embeddings.",
        needs_weights=True, weights=NEEDS["clip"],
    ),
    MetricInfo(
        name="dino_i", function=None, kind="video+reference", value_range=(-1.0, 1.0), higher_is_better=True,
        definition="Mean cos between DINO [CLS] embeddings of generated frames and reference images.",
        needs_weights=True, weights=NEEDS["dino"],
    ),
    MetricInfo(
        name="dino_subject_consistency", function=None, kind="video", value_range=(0.0, 1.0), higher_is_better=True,
        definition="VBench: mean over frames of (max(0, cos to previous) + max(0, cos to first)) / 2, DINO features.",
        needs_weights=True, weights=NEEDS["dino"],
    ),
    MetricInfo(
        name="pickscore", function=None, kind="video", value_range=(-100.0, 100.0), higher_is_better=True,
        definition="PickScore: exp(logit_scale) x cos(image, prompt) of the CLIP-H preference model, frame mean.",
        needs_weights=True, weights=NEEDS["pickscore"],
    ),
    MetricInfo(
        name="fvd", function=None, kind="video+reference", value_range=(0.0, float("inf")), higher_is_better=False,
        definition="Frechet distance between I3D features of generated and reference video sets (set-level).",
        needs_weights=True, weights=NEEDS["i3d"],
    ),
    MetricInfo(
        name="raft_dynamic_degree", function=None, kind="video", value_range=(0.0, 1.0), higher_is_better=True,
        definition="VBench dynamic degree (the rule of dynamic_degree) on RAFT flow of consecutive frames: 1 dynamic, 0 not.",
        needs_weights=True, weights=NEEDS["raft"],
    ),
    MetricInfo(
        name="cotracker_motion_fidelity", function=None, kind="video+reference", value_range=(-1.0, 1.0), higher_is_better=True,
        definition="DMT motion fidelity on learned point tracks (a 55x55 grid of the first frame tracked by CoTracker): "
                   "mean best cosine match of unit displacements, both ways.",
        needs_weights=True, weights=NEEDS["cotracker"],
    ),
)

for _info in _INFOS:
    if _info.name not in METRICS:
        register_metric(_info)


def skipped_message(what: str) -> str:
    return f"skipped: needs {what}"


# ------------------------------------------------------------------------------------------
# Loading models
# ------------------------------------------------------------------------------------------


def _quiet_transformers() -> None:
    # the loading bars and the "falling back to PIL" notes are noise in a metrics table
    logging.getLogger("transformers").setLevel(logging.ERROR)


def _load_error(kind: str, source: str, exc: Exception) -> ConfigError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ConfigError(f"cannot load {kind} weights from {source!r} (a local folder or a hub id in the cache): {first}")


def _image_processor(source: str, kind: str):
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(source, backend="pil")
    except Exception as exc:  # noqa: BLE001 - any loading failure becomes one clear message
        raise _load_error(kind, source, exc) from exc


def _tokenizer(source: str, kind: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source)
    except Exception as exc:  # noqa: BLE001
        raise _load_error(kind, source, exc) from exc


def _frames_list(images: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = images[None]
    out = []
    for i, img in enumerate(images):
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[-1] != 3:
            raise InputError(f"image {i} must have shape (height, width, 3), got {img.shape}")
        out.append(as_uint8_video(img[None], f"image {i}")[0])
    if not out:
        raise InputError("no images to embed")
    return out


def _unit(x: torch.Tensor) -> torch.Tensor:
    x = x.float()
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


class ClipEmbedder:
    """A CLIP model with its image processor and tokenizer: unit-norm image and text embeddings."""

    def __init__(self, model, image_processor, tokenizer, device: str = "cpu", batch_size: int = 32) -> None:
        self.model = model.eval().to(device)
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.device = device
        self.batch_size = batch_size

    @classmethod
    def load(cls, source: str, processor_source: str | None = None, device: str = "cpu", kind: str = "CLIP") -> ClipEmbedder:
        """Load a ``CLIPModel`` from ``source``; processor and tokenizer from ``processor_source`` or ``source``."""
        from transformers import CLIPModel

        _quiet_transformers()
        try:
            model = CLIPModel.from_pretrained(source)
        except Exception as exc:  # noqa: BLE001
            raise _load_error(kind, source, exc) from exc
        proc = processor_source or source
        return cls(model, _image_processor(proc, kind), _tokenizer(proc, kind), device)

    @property
    def logit_scale(self) -> float:
        """exp(logit_scale): the learned temperature the model multiplies cosines by (about 100)."""
        return float(self.model.logit_scale.exp().item())

    @torch.no_grad()
    def embed_images(self, images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        """(N, D) unit-norm image embeddings of uint8 (N, H, W, 3) images (or a list of (H, W, 3))."""
        frames = _frames_list(images)
        chunks = []
        for start in range(0, len(frames), self.batch_size):
            pixels = self.image_processor(images=frames[start : start + self.batch_size], return_tensors="pt")["pixel_values"]
            out = self.model.get_image_features(pixel_values=pixels.to(self.device, self.model.dtype))
            chunks.append(_features(out).cpu())
        return _unit(torch.cat(chunks))

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, D) unit-norm text embeddings (texts truncated to the model's context length)."""
        if isinstance(texts, str):
            texts = [texts]
        max_len = getattr(self.model.config.text_config, "max_position_embeddings", 77)
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        return _unit(_features(self.model.get_text_features(**tokens)).cpu())


class DinoEmbedder:
    """A DINO / DINOv2 / ViT backbone: unit-norm [CLS] embeddings of the last layer (after its norm)."""

    def __init__(self, model, image_processor, device: str = "cpu", batch_size: int = 32) -> None:
        self.model = model.eval().to(device)
        self.image_processor = image_processor
        self.device = device
        self.batch_size = batch_size

    @classmethod
    def load(cls, source: str, device: str = "cpu") -> DinoEmbedder:
        from transformers import AutoConfig, AutoModel

        _quiet_transformers()
        try:
            config = AutoConfig.from_pretrained(source)
            model_class = AutoModel._model_mapping[type(config)]
            # no pooling head: DINO checkpoints carry none, and the [CLS] token is what is compared
            extra = {"add_pooling_layer": False} if "add_pooling_layer" in inspect.signature(model_class.__init__).parameters else {}
            model = model_class.from_pretrained(source, **extra)
        except Exception as exc:  # noqa: BLE001
            raise _load_error("DINO", source, exc) from exc
        return cls(model, _image_processor(source, "DINO"), device)

    @torch.no_grad()
    def embed_images(self, images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        frames = _frames_list(images)
        chunks = []
        for start in range(0, len(frames), self.batch_size):
            pixels = self.image_processor(images=frames[start : start + self.batch_size], return_tensors="pt")["pixel_values"]
            out = self.model(pixel_values=pixels.to(self.device, self.model.dtype))
            chunks.append(out.last_hidden_state[:, 0].cpu())
        return _unit(torch.cat(chunks))


def _features(out: Any) -> torch.Tensor:
    """Projected features from ``get_*_features`` (a tensor, or an output whose pooler_output holds them)."""
    if isinstance(out, torch.Tensor):
        return out
    return out.pooler_output


# ------------------------------------------------------------------------------------------
# The metrics, on embeddings (exact definitions) and on videos
# ------------------------------------------------------------------------------------------


def text_alignment(frame_embeddings: torch.Tensor, text_embedding: torch.Tensor) -> float:
    """Mean over frames of cos(frame, text); embeddings unit-norm, text (D,) or (1, D)."""
    return float((frame_embeddings @ text_embedding.reshape(-1)).mean())


def image_similarity(frame_embeddings: torch.Tensor, reference_embeddings: torch.Tensor, pairing: Pairing = "all") -> float:
    """Cosine of frames against reference images.

    ``"all"``: mean over every (frame, reference) pair (the DreamBooth CLIP-I / DINO-I).
    ``"best"``: for each frame its best-matching reference, averaged over frames.
    """
    if pairing not in ("all", "best"):
        raise ConfigError(f"pairing must be 'all' or 'best', got {pairing!r}")
    sims = frame_embeddings @ reference_embeddings.T
    return float(sims.mean() if pairing == "all" else sims.max(dim=1).values.mean())


def consecutive_similarity(frame_embeddings: torch.Tensor) -> float:
    """Mean cos of consecutive frames (CLIP temporal consistency)."""
    if len(frame_embeddings) < 2:
        raise InputError("temporal consistency needs at least 2 frames")
    return float((frame_embeddings[1:] * frame_embeddings[:-1]).sum(-1).mean())


def subject_consistency(frame_embeddings: torch.Tensor) -> float:
    """VBench subject consistency: mean over frames 1.. of (max(0, cos prev) + max(0, cos first)) / 2."""
    if len(frame_embeddings) < 2:
        raise InputError("subject consistency needs at least 2 frames")
    previous = (frame_embeddings[1:] * frame_embeddings[:-1]).sum(-1).clamp_min(0.0)
    first = (frame_embeddings[1:] @ frame_embeddings[0]).clamp_min(0.0)
    return float(((previous + first) / 2).mean())


def clip_t(video: np.ndarray, prompt: str, clip: ClipEmbedder) -> float:
    """CLIP-T x100: mean over frames of cos(CLIP image embedding, CLIP text embedding)."""
    return CLIP_SCALE * text_alignment(clip.embed_images(as_uint8_video(video)), clip.embed_texts([prompt])[0])


def clip_i(video: np.ndarray, reference_images: np.ndarray | Sequence[np.ndarray], clip: ClipEmbedder, pairing: Pairing = "all") -> float:
    """CLIP-I x100: cos between CLIP embeddings of frames and reference images (see :func:`image_similarity`)."""
    return CLIP_SCALE * image_similarity(clip.embed_images(as_uint8_video(video)), clip.embed_images(reference_images), pairing)


def clip_temporal_consistency(video: np.ndarray, clip: ClipEmbedder) -> float:
    """Mean cos of consecutive frames' CLIP image embeddings, in [-1, 1]."""
    return consecutive_similarity(clip.embed_images(as_uint8_video(video)))


def dino_i(video: np.ndarray, reference_images: np.ndarray | Sequence[np.ndarray], dino: DinoEmbedder, pairing: Pairing = "all") -> float:
    """DINO-I: cos between DINO [CLS] embeddings of frames and reference images, in [-1, 1]."""
    return image_similarity(dino.embed_images(as_uint8_video(video)), dino.embed_images(reference_images), pairing)


def dino_subject_consistency(video: np.ndarray, dino: DinoEmbedder) -> float:
    """VBench subject consistency on DINO [CLS] embeddings, in [0, 1]."""
    return subject_consistency(dino.embed_images(as_uint8_video(video)))


def pickscore(video: np.ndarray, prompt: str, model: ClipEmbedder) -> float:
    """PickScore: exp(logit_scale) x cos(image, prompt), averaged over frames."""
    return model.logit_scale * text_alignment(model.embed_images(as_uint8_video(video)), model.embed_texts([prompt])[0])


# ------------------------------------------------------------------------------------------
# FVD (set-level; needs a TorchScript I3D)
# ------------------------------------------------------------------------------------------


def _load_torchscript(name: str, path: str, device: str) -> torch.nn.Module:
    """A TorchScript module from ``path`` (the format the I3D and RAFT weights come in), or a one-line error."""
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated, but these weights come in it
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(path, map_location=device)
    except Exception as exc:  # noqa: BLE001
        raise _load_error(name, path, exc) from exc


class I3DFeatures:
    """A TorchScript I3D feature extractor (StyleGAN-V's ``i3d_torchscript.pt``).

    Called as ``detector(videos, rescale=False, resize=False, return_features=True)`` on
    float (N, 3, T, 224, 224) videos in [-1, 1]; returns (N, 400) logits-layer features.
    """

    def __init__(self, module: torch.nn.Module, device: str = "cpu", size: int = 224) -> None:
        self.module = module.eval().to(device)
        self.device = device
        self.size = size

    @classmethod
    def load(cls, path: str, device: str = "cpu") -> I3DFeatures:
        return cls(_load_torchscript("I3D", path, device), device)

    @torch.no_grad()
    def features(self, videos: Iterable[np.ndarray]) -> np.ndarray:
        out = []
        for video in videos:
            v = torch.from_numpy(as_uint8_video(video)).permute(3, 0, 1, 2).float() / 127.5 - 1.0  # (3, T, H, W)
            v = torch.nn.functional.interpolate(v, size=(self.size, self.size), mode="bilinear", align_corners=False)
            feats = self.module(v[None].to(self.device), rescale=False, resize=False, return_features=True)
            out.append(feats.reshape(1, -1).double().cpu().numpy())
        if not out:
            raise InputError("FVD needs at least one video in each set")
        return np.concatenate(out)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, D) (needs N >= 2 each).

    ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2)``, with the matrix
    square roots taken by symmetric eigendecomposition (no scipy needed).
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise InputError(f"feature sets must be (N, D) with equal D, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise InputError(f"a Frechet distance needs at least 2 samples per set, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    vals, vecs = np.linalg.eigh(cov_a)
    root_a = (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T
    middle = root_a @ cov_b @ root_a
    trace_root = float(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum())
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_root)


def fvd(videos: Sequence[np.ndarray], references: Sequence[np.ndarray], i3d: I3DFeatures) -> float:
    """FVD between a set of generated videos and a set of reference videos (>= 2 each)."""
    return frechet_distance(i3d.features(videos), i3d.features(references))


# ------------------------------------------------------------------------------------------
# RAFT dynamic degree (needs a TorchScript RAFT)
# ------------------------------------------------------------------------------------------


class RaftFlow:
    """A TorchScript RAFT optical-flow model (torchvision's ``raft_large`` / ``raft_small``, scripted).

    Called as ``model(image1, image2)`` on float (N, 3, H, W) frames in [-1, 1], H and W
    multiples of 8; returns the list of flow predictions (N, 2, H, W) in pixels, the last being
    the final one (a plain tensor is accepted too). Frames are resized bilinearly, each side up
    to the next multiple of 8 and at least ``min_size``; flow vectors are scaled back to the
    video's pixels (the field keeps the resized resolution).
    """

    def __init__(self, module: torch.nn.Module, device: str = "cpu", min_size: int = 128, batch_size: int = 4) -> None:
        self.module = module.eval().to(device)
        self.device = device
        self.min_size = min_size
        self.batch_size = batch_size

    @classmethod
    def load(cls, path: str, device: str = "cpu") -> RaftFlow:
        return cls(_load_torchscript("RAFT", path, device), device)

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) frames are resized to: each side up to the next multiple of 8, at least ``min_size``."""
        return 8 * math.ceil(max(height, self.min_size) / 8), 8 * math.ceil(max(width, self.min_size) / 8)

    @torch.no_grad()
    def flows(self, video: np.ndarray) -> Iterator[np.ndarray]:
        """The flow (H', W', 2) from each frame to the next, in pixels of the video's frames."""
        v = as_uint8_video(video)
        height, width = v.shape[1:3]
        size = self.input_size(height, width)
        scale = torch.tensor([width / size[1], height / size[0]]).reshape(1, 2, 1, 1)  # model pixels -> video pixels
        for start in range(0, len(v) - 1, self.batch_size):
            chunk = torch.from_numpy(v[start : start + self.batch_size + 1]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            chunk = torch.nn.functional.interpolate(chunk, size=size, mode="bilinear", align_corners=False).to(self.device)
            out = self.module(chunk[:-1], chunk[1:])
            flow = out if isinstance(out, torch.Tensor) else out[-1]
            yield from (flow.float().cpu() * scale).permute(0, 2, 3, 1).numpy()


def raft_dynamic_degree(video: np.ndarray, raft: RaftFlow, fps: float | None = None) -> DynamicDegree:
    """VBench dynamic degree on RAFT flow: the rule of :func:`~motiontune.evaluation.metrics.dynamic_degree`.

    Per adjacent pair: mean of the top 5% RAFT flow magnitudes (in the video's pixels).
    Threshold: 6 * min(H, W) / 256 pixels, times max(1, 8 / fps) when ``fps`` is given; the
    video is dynamic when at least round(4 * F / 16) pairs (at least 1) exceed it. The metric's
    value is ``.score`` (1.0 dynamic, 0.0 not).
    """
    v = as_uint8_video(video)
    if v.shape[0] < 2:
        raise InputError(f"raft_dynamic_degree needs at least 2 frames, video has {v.shape[0]}")
    threshold = dynamic_threshold(v.shape[1], v.shape[2], fps)
    return judge_dynamics(np.array([top_magnitude_mean(f) for f in raft.flows(v)]), threshold)


# ------------------------------------------------------------------------------------------
# Scoring by name, with models loaded once
# ------------------------------------------------------------------------------------------


@dataclass
class LearnedScorer:
    """Computes learned metrics by name; models are loaded on first use and kept.

    A metric whose weights were not given scores ``"skipped: needs <weights>"``; one whose
    input is missing (no prompt, no reference) ``"skipped: needs a prompt"`` etc. Weights that
    were given but do not load raise :class:`ConfigError` (see :meth:`check`).
    """

    weights: WeightSources = field(default_factory=WeightSources)
    device: str = "cpu"
    pairing: Pairing = "all"
    _models: dict[str, Any] = field(default_factory=dict, repr=False)

    def has(self, model: str) -> bool:
        return getattr(self.weights, model, None) is not None

    def model(self, kind: str) -> Any:
        if kind not in self._models:
            if not self.has(kind):
                raise ConfigError(f"no {kind} weights given")
            loaders: dict[str, Callable[[], Any]] = {
                "clip": lambda: ClipEmbedder.load(self.weights.clip, device=self.device),
                "dino": lambda: DinoEmbedder.load(self.weights.dino, device=self.device),
                "pickscore": self._load_pickscore,
                "i3d": lambda: I3DFeatures.load(self.weights.i3d, device=self.device),
                "raft": lambda: RaftFlow.load(self.weights.raft, device=self.device),
                "cotracker": lambda: PointTracker.load(self.weights.cotracker, device=self.device),
            }
            self._models[kind] = loaders[kind]()
        return self._models[kind]

    def _load_pickscore(self) -> ClipEmbedder:
        source, processor = self.weights.pickscore, self.weights.pickscore_processor
        if processor is None:
            has_own = os.path.isdir(source) and os.path.isfile(os.path.join(source, "preprocessor_config.json"))
            processor = source if has_own else DEFAULT_SOURCES["pickscore_processor"]
        return ClipEmbedder.load(source, processor_source=processor, device=self.device, kind="PickScore")

    def check(self, names: Iterable[str]) -> None:
        """Load now every model the named metrics need and that was given (fail early)."""
        for name in names:
            spec = LEARNED_METRICS.get(name)
            if spec is not None and self.has(spec.model):
                self.model(spec.model)

    def unavailable(self, name: str) -> str | None:
        """The skip message of a learned metric whose weights are missing, else None."""
        spec = LEARNED_METRICS[name]
        return None if self.has(spec.model) else skipped_message(METRICS[name].weights)

    def score(
        self,
        names: Iterable[str],
        video: np.ndarray,
        prompt: str | None = None,
        reference_images: np.ndarray | Sequence[np.ndarray] | None = None,
        reference: np.ndarray | None = None,
    ) -> dict[str, MetricValue]:
        """Per-video learned metrics (set-level ones such as FVD are reported as skipped here)."""
        video = as_uint8_video(video)
        cache: dict[tuple[str, str], torch.Tensor] = {}

        def frames(kind: str) -> torch.Tensor:
            if (kind, "video") not in cache:
                cache[kind, "video"] = self.model(kind).embed_images(video)
            return cache[kind, "video"]

        def refs(kind: str) -> torch.Tensor:
            if (kind, "refs") not in cache:
                cache[kind, "refs"] = self.model(kind).embed_images(reference_images)
            return cache[kind, "refs"]

        results: dict[str, MetricValue] = {}
        for name in names:
            if name not in LEARNED_METRICS:
                raise ConfigError(f"{name!r} is not a learned metric; known: {', '.join(LEARNED_METRICS)}")
            spec = LEARNED_METRICS[name]
            missing = self.unavailable(name)
            if missing:
                results[name] = missing
            elif spec.set_level:
                results[name] = "skipped: set-level metric (computed per recipe by bench / bench-merge with --i3d)"
            elif spec.needs_prompt and not prompt:
                results[name] = "skipped: needs a prompt"
            elif spec.needs_reference_video and reference is None:
                results[name] = "skipped: needs a reference video"
            elif spec.needs_reference_images and (reference_images is None or len(reference_images) == 0):
                results[name] = "skipped: needs reference images or a reference video"
            elif name == "clip_t":
                results[name] = CLIP_SCALE * text_alignment(frames("clip"), self.model("clip").embed_texts([prompt])[0])
            elif name == "clip_i":
                results[name] = CLIP_SCALE * image_similarity(frames("clip"), refs("clip"), self.pairing)
            elif name == "clip_temporal_consistency":
                results[name] = consecutive_similarity(frames("clip"))
            elif name == "dino_i":
                results[name] = image_similarity(frames("dino"), refs("dino"), self.pairing)
            elif name == "dino_subject_consistency":
                results[name] = subject_consistency(frames("dino"))
            elif name == "pickscore":
                model = self.model("pickscore")
                results[name] = model.logit_scale * text_alignment(frames("pickscore"), model.embed_texts([prompt])[0])
            elif name == "raft_dynamic_degree":
                results[name] = raft_dynamic_degree(video, self.model("raft")).score
            elif name == "cotracker_motion_fidelity":
                score = tracker_motion_fidelity_or_reason(video, reference, self.model("cotracker"))
                results[name] = score if not isinstance(score, str) else f"skipped: {score}"
            else:  # pragma: no cover - every registered learned metric is handled above
                raise ConfigError(f"no scorer for {name!r}")
        return results

    def fvd(self, videos: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> MetricValue:
        """Set-level FVD, or a skip message when no I3D was given or a set has fewer than 2 videos."""
        if not self.has("i3d"):
            return skipped_message(METRICS["fvd"].weights)
        if len(videos) < 2 or len(references) < 2:
            return f"skipped: FVD needs at least 2 videos per set (got {len(videos)} and {len(references)})"
        return fvd(videos, references, self.model("i3d"))


__all__ = [
    "CLIP_SCALE",
    "DEFAULT_SOURCES",
    "LEARNED_METRICS",
    "NEEDS",
    "ClipEmbedder",
    "DinoEmbedder",
    "I3DFeatures",
    "LearnedMetric",
    "LearnedScorer",
    "RaftFlow",
    "WeightSources",
    "clip_i",
    "clip_t",
    "clip_temporal_consistency",
    "consecutive_similarity",
    "dino_i",
    "dino_subject_consistency",
    "frechet_distance",
    "fvd",
    "image_similarity",
    "pickscore",
    "raft_dynamic_degree",
    "subject_consistency",
    "text_alignment",
]
