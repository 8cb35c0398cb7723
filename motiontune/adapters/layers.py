"""What the layers holding named adapters of their own kind (gated LoRA, block adapters) share:
a user scale and an on/off switch per adapter name, the adapter's parameters by their names in
the model, and loading a state dict with every weight checked by name and shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from motiontune.errors import ConfigError


class AdapterSwitches:
    """The :class:`~motiontune.adapters.base.MultiAdapterLayer` switches: a layer keeps
    ``user_scale`` and ``enabled`` dicts keyed by adapter name."""

    user_scale: dict[str, float]
    enabled: dict[str, bool]

    def _add_switches(self, name: str) -> None:
        self.user_scale[name] = 1.0
        self.enabled[name] = True

    def set_adapter_scale(self, name: str, scale: float) -> None:
        if name in self.user_scale:
            self.user_scale[name] = float(scale)

    def set_adapter_enabled(self, name: str, enabled: bool) -> None:
        if name in self.enabled:
            self.enabled[name] = bool(enabled)


def adapter_parameters_by_name(layers: Mapping[str, Any], adapter_name: str) -> dict[str, nn.Parameter]:
    """Adapter ``adapter_name``'s parameters of ``layers`` (module name -> layer) by their names in the model."""
    out: dict[str, nn.Parameter] = {}
    for name, layer in layers.items():
        if adapter_name in layer.adapter_names():
            out.update({f"{name}.{k}": p for k, p in layer.adapter_parameters(adapter_name).items()})
    return out


def copy_adapter_state(layers: Mapping[str, Any], adapter_name: str, expected: dict[str, torch.Tensor],
                       state: dict[str, torch.Tensor], kind: str, where: str, hint: str = "") -> None:
    """Copy ``state`` (keys ``<module>.<part>.<weight|bias>``) into adapter ``adapter_name`` of
    ``layers``, after refusing (ConfigError) a state with a missing, unexpected or misshapen weight;
    ``expected`` is the adapter's present state dict, ``hint`` ends the mismatch messages."""
    if not expected:
        raise ConfigError(f"no {kind} named {adapter_name!r} on this model")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise ConfigError(f"{where}: {len(unexpected)} weights this model's {kind} lacks (e.g. {unexpected[0]}){hint}")
    if missing:
        raise ConfigError(f"{where}: lacks {len(missing)} weights of the {kind} {adapter_name!r} (e.g. {missing[0]}){hint}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ConfigError(f"{where}: {k} has shape {tuple(v.shape)}, this model's adapter {tuple(expected[k].shape)}")
    with torch.no_grad():
        for k, v in state.items():
            module, part, attr = k.rsplit(".", 2)
            getattr(getattr(layers[module], part)[adapter_name], attr).copy_(v)
