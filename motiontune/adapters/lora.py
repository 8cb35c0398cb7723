"""Plain LoRA through peft on chosen attention projections of a backbone."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch

from motiontune.errors import ConfigError
from motiontune.utils.files import load_tensors, save_tensors

if TYPE_CHECKING:  # peft is imported where it is used: listing the recipes does not import it
    from peft import LoraConfig
    from peft.tuners.lora import LoraLayer

    from motiontune.backbones.base import AttentionSite, BackboneSpec

LORA_WEIGHTS_NAME = "pytorch_lora_weights.safetensors"  # the file name diffusers' load_lora_weights looks for


def lora_target_modules(sites: Iterable["AttentionSite"], roles: Iterable[str]) -> list[str]:
    roles = tuple(roles)
    names: list[str] = []
    for site in sites:
        names.extend(site.module_names(tuple(r for r in roles if r in site.projections)))
    if not names:
        raise ConfigError("no attention projections selected for LoRA (check the attention kinds and projections)")
    return names


def inject_lora(
    model: torch.nn.Module,
    target_modules: list[str],
    rank: int,
    alpha: float,
    dropout: float = 0.0,
    adapter_name: str = "default",
    init: str | bool = True,
) -> LoraConfig:
    """Inject a peft LoRA adapter named ``adapter_name`` on exactly ``target_modules``."""
    from peft import LoraConfig, inject_adapter_in_model

    if rank < 1:
        raise ConfigError(f"LoRA rank must be >= 1 (got {rank})")
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules),
        init_lora_weights=init,
    )
    if any(adapter_name in layer.lora_A for layer in lora_layers(model)):
        raise ConfigError(f"a LoRA adapter named {adapter_name!r} is already on this model")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    with warnings.catch_warnings():
        # peft warns that a second adapter makes "multiple adapters in the model": that is the point
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
        if hasattr(model, "add_adapter"):  # diffusers' PeftAdapterMixin (Wan, CogVideoX, HunyuanVideo)
            model.add_adapter(config, adapter_name=adapter_name)
        else:  # UNet3DConditionModel, LatteTransformer3DModel
            inject_adapter_in_model(config, model, adapter_name=adapter_name)
    # peft (and diffusers' add_adapter) make only the newest adapter active and trainable: every
    # adapter on a layer stays active, each with its own scale (set_lora_scale), and the adapters
    # injected before keep their trainable flags
    for layer in lora_layers(model):
        activate_all(layer)
    for name, p in model.named_parameters():
        new = f".{adapter_name}." in name and "lora_" in name
        p.requires_grad_(new or name in trainable)
    return config


def activate_all(layer: LoraLayer) -> None:
    """Make every adapter a peft layer holds active (peft's set_adapter would also change requires_grad)."""
    names = [n for n in layer.lora_A.keys()]
    if list(layer.active_adapters) != names:
        layer._active_adapter = names


def lora_layers(model: torch.nn.Module) -> list[LoraLayer]:
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def set_lora_scale(layers: list[LoraLayer], adapter_name: str, scale: float) -> None:
    for layer in layers:
        layer.set_scale(adapter_name, scale)


def lora_parameters(model: torch.nn.Module, adapter_name: str = "default") -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if "lora_" in n and f".{adapter_name}." in n}


def save_lora_for_diffusers(spec: "BackboneSpec", folder: str, config: LoraConfig, adapter_name: str = "default",
                            file_name: str = LORA_WEIGHTS_NAME) -> str:
    """Write the adapter in the layout diffusers' ``pipe.load_lora_weights(folder)`` reads.

    Pipelines with a LoRA loader write it themselves (``save_lora_weights`` with the adapter
    metadata, so that ``lora_alpha != r`` reloads at the right scale); for the others the same
    file is written directly.
    """
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(spec.denoiser, adapter_name=adapter_name)
    prefix = spec.denoiser_attr
    meta = config.to_dict()
    for key, value in list(meta.items()):
        if isinstance(value, set):
            meta[key] = sorted(value)
    save = getattr(spec.pipeline_cls, "save_lora_weights", None)
    if spec.diffusers_lora_loading and save is not None:
        tmp = folder + ".lora-tmp"
        os.makedirs(tmp, exist_ok=True)
        save(tmp, **{f"{prefix}_lora_layers": state, f"{prefix}_lora_adapter_metadata": meta}, safe_serialization=True)
        os.replace(os.path.join(tmp, LORA_WEIGHTS_NAME), os.path.join(folder, file_name))
        os.rmdir(tmp)
    else:
        save_tensors({f"{prefix}.{k}": v for k, v in state.items()}, os.path.join(folder, file_name))
    return os.path.join(folder, file_name)


def load_lora_state(spec: "BackboneSpec", folder: str, adapter_name: str = "default", file_name: str = LORA_WEIGHTS_NAME) -> None:
    """Load a file written by :func:`save_lora_for_diffusers` into an already injected adapter."""
    from peft.utils import set_peft_model_state_dict

    path = os.path.join(folder, file_name)
    if not os.path.isfile(path):
        raise ConfigError(f"{folder}: no {file_name} (the weights of adapter {adapter_name!r})")
    state = load_tensors(path)
    prefix = spec.denoiser_attr + "."
    state = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
    result = set_peft_model_state_dict(spec.denoiser, state, adapter_name=adapter_name)
    unexpected = getattr(result, "unexpected_keys", []) or []
    if unexpected:
        raise ConfigError(f"{folder}: LoRA file has {len(unexpected)} weights this model lacks (e.g. {unexpected[0]})")
    expected = set(lora_parameters(spec.denoiser, adapter_name))
    loaded = {k.replace(".weight", f".{adapter_name}.weight") for k in state}
    missing = sorted(expected - loaded)
    if missing:
        raise ConfigError(f"{folder}: LoRA file lacks {len(missing)} weights of this adapter (e.g. {missing[0]})")
