"""Reading and writing the files of adapter kinds diffusers cannot load (gated LoRA, block adapters).

Keys are prefixed with the denoiser's pipeline attribute (``transformer.`` or ``unet.``); the
adapter's settings and its kind's ``format`` tag go into the safetensors metadata, so a file of
one kind is never read as another.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

from motiontune.errors import ConfigError

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec


def write_adapter_file(spec: "BackboneSpec", folder: str, file_name: str, state: dict[str, torch.Tensor],
                       metadata: dict[str, str]) -> str:
    from motiontune.utils.files import save_tensors

    path = os.path.join(folder, file_name)
    save_tensors({f"{spec.denoiser_attr}.{k}": v for k, v in state.items()}, path, metadata=metadata)
    return path


def read_adapter_file(spec: "BackboneSpec", folder: str, adapter_name: str, file_name: str, file_format: str,
                      kind: str) -> tuple[dict[str, torch.Tensor], str]:
    """The state (keys without the denoiser prefix) and the path of a file of ``file_format``."""
    from safetensors import safe_open

    from motiontune.utils.files import load_tensors

    path = os.path.join(folder, file_name)
    if not os.path.isfile(path):
        raise ConfigError(f"{folder}: no {file_name} (the weights of adapter {adapter_name!r})")
    state = load_tensors(path)
    with safe_open(path, "pt") as fh:
        meta = fh.metadata() or {}
    if meta.get("format") != file_format:
        raise ConfigError(f"{path}: not a {kind} file (written by another adapter kind)")
    prefix = spec.denoiser_attr + "."
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}, path
