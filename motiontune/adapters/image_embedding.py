"""Reference-image embeddings from a CLIP image encoder (DualReal's optional conditioning of its
block adapters; METHODS.md section 3).

The encoder is a transformers ``CLIPVisionModelWithProjection`` with its ``CLIPImageProcessor``,
given by hub id or local folder. :func:`check_image_encoder` tells, before any model loads, whether
it can be had (a folder holding ``config.json``; a hub id in the local cache, or downloadable when
the hub is not offline); :func:`embed_images` gives the projected image embeddings
(``image_embeds``, not normalised, as the authors' code uses OpenCLIP's ``encode_image``).
The embedding a run uses is written beside the adapter (:func:`save_embedding`), so generation
needs no encoder.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from motiontune.errors import ConfigError

FILE_FORMAT = "motiontune.image_embedding"
KEY = "image_embedding"


def _offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        from huggingface_hub import constants

        return bool(getattr(constants, "HF_HUB_OFFLINE", False))
    except Exception:  # noqa: BLE001 - no hub library: treated as offline
        return True


def check_image_encoder(source: str, what: str = "image_encoder") -> None:
    """Refuse (ConfigError, one line) an encoder that cannot be had, before anything loads."""
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"{what} must be a hub id or a folder of a CLIP image encoder (got {source!r})")
    if os.path.isdir(source):
        if not os.path.isfile(os.path.join(source, "config.json")):
            raise ConfigError(f"{what} {source!r}: the folder holds no config.json (not a transformers CLIP image encoder)")
        return
    if source.startswith((".", "/", "~")) or source.count("/") > 1 or (os.sep != "/" and os.sep in source) or os.path.exists(source):
        raise ConfigError(f"{what} {source!r}: no such folder (give a folder of a CLIP image encoder or a hub id)")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(source, "config.json"), str):
        return
    if _offline():
        raise ConfigError(f"{what} {source!r}: no such folder, and not a hub id in the local cache (the hub is offline: HF_HUB_OFFLINE)")
    try:
        from huggingface_hub import hf_hub_download

        hf_hub_download(source, "config.json")
    except Exception as exc:  # noqa: BLE001 - any failure is one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{what} {source!r}: not a folder, not in the local hub cache, and not downloadable ({first})") from None


def load_image_encoder(source: str, device: Any = "cpu"):
    """(model, processor) of a CLIP image encoder (ConfigError naming the source when it fails)."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        model = CLIPVisionModelWithProjection.from_pretrained(source)
        processor = CLIPImageProcessor.from_pretrained(source)
    except Exception as exc:  # noqa: BLE001
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"cannot load the CLIP image encoder {source!r}: {first}") from None
    return model.eval().to(device), processor


@torch.no_grad()
def embed_images(model, processor, images: list[torch.Tensor]) -> torch.Tensor:
    """(N, projection_dim) embeddings of images given as (3, H, W) tensors in [-1, 1]."""
    if not images:
        raise ConfigError("no reference images to embed")
    arrays = [((img.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
              for img in images]
    pixels = processor(images=arrays, return_tensors="pt")["pixel_values"]
    ref = next(model.parameters())
    return model(pixel_values=pixels.to(ref.device, ref.dtype)).image_embeds.float().cpu()


def save_embedding(embedding: torch.Tensor, path: str, metadata: dict[str, str] | None = None) -> str:
    from motiontune.utils.files import save_tensors

    save_tensors({KEY: embedding.detach().float().cpu()}, path, metadata={"format": FILE_FORMAT, "version": "1", **(metadata or {})})
    return path


def load_embedding(path: str, dim: int | None = None) -> torch.Tensor:
    """The embedding written by :func:`save_embedding` (ConfigError when missing or of another width)."""
    from safetensors import safe_open

    from motiontune.utils.files import load_tensors

    if not os.path.isfile(path):
        raise ConfigError(f"{os.path.dirname(path) or '.'}: no {os.path.basename(path)} (the reference-image embedding the "
                          f"adapters were trained with)")
    with safe_open(path, "pt") as fh:
        meta = fh.metadata() or {}
    if meta.get("format") != FILE_FORMAT:
        raise ConfigError(f"{path}: not a motiontune image-embedding file")
    state = load_tensors(path)
    e = state.get(KEY)
    if e is None or e.dim() != 2 or (dim is not None and e.shape[-1] != dim):
        raise ConfigError(f"{path}: expected one ({'N' if dim is None else 1}, {dim or 'c'}) embedding named {KEY!r}")
    return e


__all__ = ["check_image_encoder", "embed_images", "load_embedding", "load_image_encoder", "save_embedding"]
