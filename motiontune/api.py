"""Python API mirroring the command line: :func:`train`, :func:`generate`, :func:`load`.

>>> from motiontune import api
>>> api.train("toy", videos=["ref.mp4"], captions="a red circle orbits on a black background",
...           output_dir="runs/orbit", recipe="lora", steps=200)
>>> api.generate(["a blue square orbits on a gray background"], adapter="runs/orbit",
...              output_dir="outputs/orbit")
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from motiontune.backbones import load_backbone
from motiontune.backbones.base import BackboneSpec
from motiontune.data.dataset import Sample, TrainingData
from motiontune.diffusion.sampling import SamplingConfig
from motiontune.diffusion.sampling import generate as _generate
from motiontune.checks import MAX_FRAME_INDEX, MAX_SCALE, MAX_SIZE, number
from motiontune.errors import ConfigError, InputError
from motiontune.recipes import load_recipe, make_recipe
from motiontune.recipes.base import Recipe, read_recipe_json
from motiontune.training.trainer import Trainer, TrainConfig, TrainResult
from motiontune.utils.files import check_can_write_in

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
VIDEO_FORMATS = ("mp4", "gif", "png")


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r}; use fp32, bf16 or fp16")
    return DTYPES[name]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | None) -> str:
    """``device`` checked to exist here (cpu, cuda, cuda:N, mps), or the default; ConfigError otherwise."""
    if device is None:
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device {device}: unknown device (use cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device}: MPS is not available on this machine (use --device cpu)")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {device}: unsupported device (use cpu, cuda, cuda:N or mps)")
    return str(dev)


def load(
    backbone: str | None = None,
    adapter: str | None = None,
    family: str | None = None,
    device: str | None = None,
    dtype: str | torch.dtype = "fp32",
) -> tuple[BackboneSpec, Recipe | None, dict[str, Any]]:
    """Load a backbone, and optionally a trained adapter folder on top of it.

    With only ``adapter``, the backbone recorded in its ``motiontune.json`` is loaded.
    Returns ``(spec, recipe or None, adapter metadata)``.
    """
    meta: dict[str, Any] = {}
    device = resolve_device(device)
    if adapter is not None:
        meta = read_recipe_json(adapter)
        recorded = meta.get("backbone") if isinstance(meta.get("backbone"), dict) else {}
        if backbone is None or not _family_known(backbone):  # a given folder or alias keeps its own family
            family = family or recorded.get("family")
        if backbone is None:
            backbone = recorded.get("source")
            if isinstance(backbone, str) and os.path.isabs(backbone) and not os.path.exists(backbone):
                raise ConfigError(f"{adapter}: its model {backbone} (recorded in motiontune.json) is not on this machine; "
                                  f"give --backbone (an alias, hub id, folder or 'toy')")
    if backbone is None:
        raise ConfigError("give a backbone (model id, alias, folder or 'toy') or an adapter folder")
    spec = load_backbone(backbone, family=family, device=device, dtype=resolve_dtype(dtype))
    recipe = load_recipe(adapter, spec) if adapter is not None else None
    return spec, recipe, meta


def _family_known(backbone: str) -> bool:
    """Whether the family of ``backbone`` shows without a hint: a local folder or an alias."""
    from motiontune.backbones import all_aliases, model_aliases

    return os.path.isdir(backbone) or backbone in model_aliases() or backbone in all_aliases()


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def prepare_training_data(
    spec: BackboneSpec,
    videos: list[Any],
    captions: list[str] | str,
    num_frames: int,
    height: int,
    width: int,
    images: list[Any] | None = None,
    image_captions: list[str] | str | None = None,
    sampling: str = "uniform",
    stride: int | None = None,
    start: int = 0,
    end: int | None = None,
    resize_mode: str = "center_crop",
) -> TrainingData:
    """The reference clips and images as training samples; each clip logs one info line saying which
    frames were taken and how they were resized (``start``/``end``: the segment of each clip used)."""
    from motiontune.data.frames import prepare_image, prepare_video

    videos, images = _as_list(videos), _as_list(images)
    captions = _broadcast(captions, len(videos), "captions", "videos")
    image_captions = _broadcast(image_captions, len(images), "image captions", "images")
    spec.check_size(num_frames, height, width)
    vsamples = [
        Sample(prepare_video(v, num_frames, height, width, frame_rule=spec.frame_rule, sampling=sampling, stride=stride,
                             start=start, end=end, resize_mode=resize_mode, log_info=True), c, "video", _name(v))
        for v, c in zip(videos, captions)
    ]
    isamples = [Sample(prepare_image(i, height, width, resize_mode), c, "image", _name(i)) for i, c in zip(images, image_captions)]
    return TrainingData(vsamples, isamples)


def _content_hash(x: Any) -> str | None:
    from motiontune.utils.files import content_hash

    return content_hash(str(x)) if isinstance(x, (str, os.PathLike)) else None


def _name(x: Any) -> str:
    return str(x) if isinstance(x, (str, os.PathLike)) else "<array>"


def _broadcast(values: Any, n: int, what: str, of: str) -> list[str]:
    """One caption per item: a single caption is repeated; none, or a count other than 1 or ``n``, is a ConfigError."""
    values = _as_list(values)
    if n == 0:
        return []
    if not values:
        option = "--image-caption" if of == "images" else "--caption"
        raise ConfigError(f"{n} reference {of} without a caption: give {option} (one for all {of}, or one per item)")
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ConfigError(f"got {len(values)} {what} for {n} {of}: give one caption, or one per item")
    return values


def train(
    backbone: str,
    videos: list[Any] | Any,
    captions: list[str] | str,
    output_dir: str,
    recipe: str | Recipe = "lora",
    family: str | None = None,
    images: list[Any] | None = None,
    image_captions: list[str] | str | None = None,
    num_frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    frame_sampling: str = "uniform",
    frame_stride: int | None = None,
    frame_start: int = 0,
    frame_end: int | None = None,
    resize_mode: str = "center_crop",
    device: str | None = None,
    dtype: str = "fp32",
    recipe_settings: dict[str, Any] | None = None,
    sampling_defaults: dict[str, Any] | None = None,
    spec: BackboneSpec | None = None,
    **train_settings: Any,
) -> TrainResult:
    """Customize ``backbone`` on reference videos (and images); write the adapter to ``output_dir``.

    The learning rate is ``learning_rate`` when given, else the recipe's (``recipe_settings`` or a
    ``Recipe`` object), else the model folder's ``default_learning_rate`` when it has one, else the
    recipe's default. Clips are read from frame ``frame_start`` up to (not including) ``frame_end``
    and resized with ``resize_mode`` (crop, stretch or pad; see :mod:`motiontune.data.frames`)."""
    from motiontune.data.frames import check_resize_mode

    # every setting, input path and the output folder is checked before the model loads
    rec = recipe if isinstance(recipe, Recipe) else make_recipe(recipe, **(recipe_settings or {}))
    if images and not rec.accepts_images:
        raise InputError(f"recipe {rec.name!r} learns from videos only and takes no still images: leave out --image")
    if hasattr(rec, "prepare_captions"):  # captions with prompt roles (synmotion): checked and unmarked here
        captions = rec.prepare_captions(_as_list(captions), len(_as_list(videos)))
    if "steps" not in train_settings and rec.default_steps is not None:
        train_settings["steps"] = rec.default_steps  # the recipe's own default (its authors' setting)
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(train_settings) - known)
    if unknown:
        raise ConfigError(f"unknown training setting(s): {', '.join(unknown)}")
    config = TrainConfig(output_dir=output_dir, **train_settings)
    for name, value in (("num_frames", num_frames), ("height", height), ("width", width)):
        number(name, value, 1, MAX_SIZE, integer=True, optional=True)
    number("frame_stride", frame_stride, 1, MAX_SIZE, integer=True, optional=True)
    number("frame_start (--start)", frame_start, 0, MAX_FRAME_INDEX, integer=True)
    number("frame_end (--end)", frame_end, frame_start + 1, MAX_FRAME_INDEX, integer=True, optional=True)
    resize_mode = check_resize_mode(resize_mode)
    for path in [*_as_list(videos), *_as_list(images)]:
        if isinstance(path, (str, os.PathLike)) and not os.path.exists(path):
            raise InputError(f"{path}: no such file or folder")
    _broadcast(captions, len(_as_list(videos)), "captions", "videos")  # caption counts: before the model loads
    _broadcast(image_captions, len(_as_list(images)), "image captions", "images")
    check_output_folder(output_dir)
    spec = spec or load_backbone(backbone, family=family, device=resolve_device(device), dtype=resolve_dtype(dtype))
    if spec.default_learning_rate is not None and "learning_rate" not in train_settings \
            and not isinstance(recipe, Recipe) and "learning_rate" not in (recipe_settings or {}):
        # the model folder's recommendation (the tiny toy model needs a larger step than real models)
        config = dataclasses.replace(config, learning_rate=spec.default_learning_rate)
    f0, h0, w0 = spec.default_size
    num_frames, height, width = num_frames or f0, height or h0, width or w0
    data = prepare_training_data(spec, videos, captions, num_frames, height, width, images, image_captions, frame_sampling,
                                 frame_stride, frame_start, frame_end, resize_mode)
    metadata = {
        "size": [num_frames, height, width],
        # file names as given, and their content, so that a moved adapter still says which clips it learned from
        "references": {"videos": [s.source for s in data.videos], "captions": [s.caption for s in data.videos],
                       "images": [s.source for s in data.images],
                       "video_sha256": [_content_hash(v) for v in _as_list(videos)],
                       "image_sha256": [_content_hash(i) for i in _as_list(images)]},
        "frames": {"sampling": frame_sampling, "stride": frame_stride, "start": frame_start, "end": frame_end,
                   "resize_mode": resize_mode},
        "sampling": {"num_inference_steps": spec.default_steps, "guidance_scale": spec.default_guidance, **(sampling_defaults or {})},
    }
    return Trainer(spec, rec, data, config, metadata).train()


def check_output_folder(path: str) -> None:
    """Refuse an output folder that is a file, lies under a file, or cannot be written (ConfigError)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{path}: the output folder exists and is not a folder")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"{path}: cannot be an output folder ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{path}: the output folder is not writable ({existing}: permission denied)")
    check_can_write_in(existing, path)  # what access() misses: /sys and the like, for root too


@dataclass
class GenerationResult:
    videos: torch.Tensor  # (N, 3, F, H, W) in [-1, 1]
    prompts: list[str]
    paths: list[str] = field(default_factory=list)


def generate(
    prompts: list[str] | str,
    adapter: str | None = None,
    backbone: str | None = None,
    family: str | None = None,
    output_dir: str | None = None,
    formats: tuple[str, ...] | list[str] = ("mp4",),
    num_frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    negative_prompt: str = "",
    seed: int = 0,
    adapter_scale: float | None = None,
    batch_size: int = 4,
    device: str | None = None,
    dtype: str = "fp32",
    progress: bool = True,
    spec: BackboneSpec | None = None,
    recipe: Recipe | None = None,
    noise_prior: float | None = None,
    subject: str | list[str] | None = None,
    motion: str | None = None,
) -> GenerationResult:
    """Generate one video per prompt with the base model or a trained adapter; optionally write files.

    ``subject``/``motion`` (or prompts marked ``"[a fox] {claps} in a field"``) give the prompt roles
    of an adapter that splits its prompts by role (synmotion)."""
    prompts = _as_list(prompts)
    if not prompts:
        raise ConfigError("no prompts given")
    bad = [f for f in formats if f not in VIDEO_FORMATS]
    if bad:
        raise ConfigError(f"unknown output format(s) {bad}; choose from {', '.join(VIDEO_FORMATS)}")
    # the settings are checked before any model loads
    SamplingConfig(steps, guidance, num_frames, height, width, negative_prompt, seed, batch_size)
    number("adapter_scale", adapter_scale, -MAX_SCALE, MAX_SCALE, optional=True)
    if noise_prior is not None:
        from motiontune.recipes.motiondirector import MotionDirectorConfig

        noise_prior = MotionDirectorConfig.checked_noise_prior(noise_prior)
    if output_dir:
        check_output_folder(output_dir)
    meta: dict[str, Any] = {}
    if spec is None:
        spec, recipe, meta = load(backbone, adapter, family, device, dtype)
    elif adapter is not None and recipe is None:
        meta = read_recipe_json(adapter)
        recipe = load_recipe(adapter, spec)
    size = meta.get("size") or [None, None, None]
    sampling = meta.get("sampling", {})
    cfg = SamplingConfig(
        num_inference_steps=steps or sampling.get("num_inference_steps"),
        guidance_scale=guidance if guidance is not None else sampling.get("guidance_scale"),
        num_frames=num_frames or size[0],
        height=height or size[1],
        width=width or size[2],
        negative_prompt=negative_prompt,
        seed=seed,
        batch_size=batch_size,
    )
    if recipe is not None and adapter_scale is not None:
        recipe.config.scale = adapter_scale
    if noise_prior is not None:
        if recipe is None or not hasattr(recipe.config, "noise_prior"):
            raise ConfigError(f"noise_prior needs an adapter whose recipe has one (motiondirector); got {recipe.name if recipe else 'no adapter'}")
        recipe.config.noise_prior = noise_prior
    if recipe is not None and hasattr(recipe, "prepare_prompts"):
        prompts = recipe.prepare_prompts(prompts, subject, motion)
    elif subject is not None or motion is not None:
        raise ConfigError(f"subject/motion need an adapter that splits prompts by role (synmotion); got {recipe.name if recipe else 'no adapter'}")
    latents = recipe.initial_latents(spec, cfg.resolved(spec), prompts, meta) if recipe is not None else None
    videos = _generate(spec, prompts, recipe, cfg, progress=progress, latents=latents)
    result = GenerationResult(videos, prompts)
    if output_dir:
        result.paths = write_outputs(videos, prompts, output_dir, formats, fps=spec.default_fps)
    return result


def slug(text: str, limit: int = 48) -> str:
    keep = "".join(c if c.isalnum() else "-" for c in text.lower())
    while "--" in keep:
        keep = keep.replace("--", "-")
    return keep.strip("-")[:limit] or "video"


def write_outputs(videos: torch.Tensor, prompts: list[str], output_dir: str, formats: tuple[str, ...] | list[str], fps: int = 8) -> list[str]:
    from motiontune.data.video_io import write_frames, write_video
    from motiontune.utils.files import atomic_write_text

    paths = []
    for i, (video, prompt) in enumerate(zip(videos, prompts)):
        stem = os.path.join(output_dir, f"{i:02d}-{slug(prompt)}")
        os.makedirs(output_dir, exist_ok=True)
        # the full prompt beside the clip (slugs are cut), read back by `motiontune eval`
        atomic_write_text(f"{stem}.txt", prompt + "\n")
        for fmt in formats:
            if fmt == "png":
                write_frames(video, stem)
                paths.append(stem)
            else:
                paths.append(str(write_video(video, f"{stem}.{fmt}", fps=fps)))
    return paths
