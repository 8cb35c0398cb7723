"""Head-split LoRA (Follow-Your-Motion's spatial-temporal decoupled LoRA; METHODS.md section 5).

The q, k, v projections of a self-attention produce one block of ``head_dim`` output rows per head,
and the output projection o reads one block of input columns per head. Splitting those rows and
columns by head type gives a spatial and a temporal branch of one attention, which stays one full
attention over all heads. Each branch gets its own LoRA:

* on q, k, v (``role="rows"``): ``y = W x + b``, then ``y[..., rows] += s * B(A(dropout(x)))`` with
  ``rows`` the output channels of the branch's heads (``B`` has ``len(rows)`` outputs);
* on o (``role="columns"``): ``y = W x + b + s * B(A(dropout(x[..., columns])))`` with ``columns``
  the input channels of the branch's heads.

``s = alpha / r`` (peft's convention) times the adapter's user scale. ``A`` is initialised as peft
does (Kaiming-uniform, ``a = sqrt(5)``), ``B = 0``: the output is the base layer's exactly. The
base weight and bias are never touched (the bias stays whole in the base layer; the unofficial
port copies the weight rows of each head into new layers but leaves their biases random, which
this layer cannot do). With ``rows``/``columns`` covering every head the layer is a plain LoRA.

The layer is written the peft way: a wrapper around the original ``nn.Linear`` (kept as
``base_layer``, frozen) holding any number of named adapters in dicts, following
:class:`motiontune.adapters.base.MultiAdapterLayer` (per-name scale and switch).

Files: ``<denoiser attr>.<module>.hs_down.weight`` (A) and ``.hs_up.weight`` (B), the settings in the
safetensors metadata. The channels of each adapter are not stored in the weights file: they follow
from the head types the adapter folder records. diffusers' ``load_lora_weights`` cannot load these
files; motiontune loads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from motiontune.adapters.files import read_adapter_file, write_adapter_file
from motiontune.adapters.layers import AdapterSwitches, adapter_parameters_by_name, copy_adapter_state
from motiontune.errors import ConfigError

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec

ROLES = ("rows", "columns")
FILE_FORMAT = "motiontune.head_split_lora"


@dataclass
class HeadSplitLoraConfig:
    r: int
    lora_alpha: float
    lora_dropout: float = 0.0
    #: module name -> (role, channel indices)
    targets: dict[str, tuple[str, list[int]]] = field(default_factory=dict)

    @property
    def target_modules(self) -> list[str]:
        return list(self.targets)

    def metadata(self) -> dict[str, str]:
        return {"format": FILE_FORMAT, "version": "1", "rank": str(self.r), "alpha": repr(float(self.lora_alpha)),
                "dropout": repr(float(self.lora_dropout))}


def head_channels(heads: list[int], head_dim: int) -> list[int]:
    """The channels of ``heads`` in a projection of ``head_dim`` channels per head."""
    return [h * head_dim + i for h in heads for i in range(head_dim)]


class HeadSplitLoraLinear(AdapterSwitches, nn.Module):
    """An ``nn.Linear`` with LoRA adapters each restricted to some output rows or input columns."""

    def __init__(self, base_layer: nn.Linear):
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise ConfigError(f"a head-split LoRA wraps nn.Linear layers, not {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.hs_down = nn.ModuleDict()
        self.hs_up = nn.ModuleDict()
        self.hs_dropout = nn.ModuleDict()
        self.role: dict[str, str] = {}
        self.channels: dict[str, torch.Tensor] = {}
        self.scaling: dict[str, float] = {}
        self.user_scale: dict[str, float] = {}
        self.enabled: dict[str, bool] = {}

    @property
    def weight(self) -> torch.Tensor:
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    def add_adapter(self, name: str, role: str, channels: list[int], rank: int, alpha: float, dropout: float = 0.0) -> None:
        if name in self.hs_down:
            raise ConfigError(f"this layer already has a head-split adapter named {name!r}")
        if role not in ROLES:
            raise ConfigError(f"unknown head-split role {role!r}; choose from {', '.join(ROLES)}")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ConfigError(f"LoRA rank must be a whole number >= 1 (got {rank!r})")
        size = self.out_features if role == "rows" else self.in_features
        idx = sorted(set(int(c) for c in channels))
        if not idx or idx[0] < 0 or idx[-1] >= size:
            raise ConfigError(f"head-split adapter {name!r}: channels must be a non-empty subset of 0..{size - 1}")
        w = self.base_layer.weight
        dtype = torch.float32 if w.dtype in (torch.float16, torch.bfloat16) else w.dtype
        kw = {"device": w.device, "dtype": dtype}
        n = len(idx)
        down = nn.Linear(n if role == "columns" else self.in_features, rank, bias=False, **kw)
        up = nn.Linear(rank, n if role == "rows" else self.out_features, bias=False, **kw)
        with torch.no_grad():
            nn.init.kaiming_uniform_(down.weight, a=math.sqrt(5))
            nn.init.zeros_(up.weight)
        self.hs_down[name] = down
        self.hs_up[name] = up
        self.hs_dropout[name] = nn.Dropout(float(dropout)) if dropout > 0 else nn.Identity()
        self.role[name] = role
        self.channels[name] = torch.tensor(idx, dtype=torch.long, device=w.device)
        self.scaling[name] = float(alpha) / rank
        self._add_switches(name)

    def delete_adapter(self, name: str) -> None:
        for d in (self.hs_down, self.hs_up, self.hs_dropout):
            if name in d:
                del d[name]
        for d in (self.role, self.channels, self.scaling, self.user_scale, self.enabled):
            d.pop(name, None)

    def adapter_names(self) -> list[str]:
        return list(self.hs_down.keys())

    def adapter_parameters(self, name: str) -> dict[str, nn.Parameter]:
        return {f"hs_down.{name}.weight": self.hs_down[name].weight, f"hs_up.{name}.weight": self.hs_up[name].weight}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        for name in self.hs_down.keys():
            scale = self.user_scale[name]
            if not self.enabled[name] or scale == 0.0:
                continue
            down = self.hs_down[name]
            idx = self.channels[name]
            if idx.device != x.device:
                idx = self.channels[name] = idx.to(x.device)
            xa = x.to(down.weight.dtype)
            if self.role[name] == "columns":
                xa = xa.index_select(-1, idx)
            delta = self.hs_up[name](down(self.hs_dropout[name](xa))) * (self.scaling[name] * scale)
            if self.role[name] == "rows":
                out = out.index_add(-1, idx, delta.to(out.dtype))
            else:
                out = out + delta.to(out.dtype)
        return out

    def extra_repr(self) -> str:
        return ", ".join(f"{n}: {self.role[n]} x{len(self.channels[n])} r={self.hs_down[n].out_features}" for n in self.adapter_names())


def head_split_layers(model: nn.Module) -> dict[str, HeadSplitLoraLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, HeadSplitLoraLinear)}


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def inject_head_split_lora(model: nn.Module, targets: dict[str, tuple[str, list[int]]], rank: int, alpha: float,
                           dropout: float = 0.0, adapter_name: str = "default") -> HeadSplitLoraConfig:
    """Put adapter ``adapter_name`` on the ``nn.Linear`` layers of ``targets`` (module name -> (role,
    channels)). Layers are wrapped through their parent's ``setattr``; base weights stay frozen."""
    if not targets:
        raise ConfigError(f"no layers selected for the head-split adapter {adapter_name!r}")
    modules = dict(model.named_modules())
    for name, (role, channels) in targets.items():  # everything is checked before the model is changed
        m = modules.get(name)
        if m is None:
            raise ConfigError(f"no module named {name!r} in the denoiser")
        if isinstance(m, HeadSplitLoraLinear):
            if adapter_name in m.adapter_names():
                raise ConfigError(f"a head-split adapter named {adapter_name!r} is already on {name}")
        elif type(m) is not nn.Linear:
            raise ConfigError(f"{name} is {type(m).__name__}, not an nn.Linear: a head-split LoRA cannot go there")
        if role not in ROLES or not channels:
            raise ConfigError(f"{name}: a head-split adapter needs a role ({', '.join(ROLES)}) and channels")
    for name, (role, channels) in targets.items():
        m = modules[name]
        if not isinstance(m, HeadSplitLoraLinear):
            m.requires_grad_(False)
            wrapper = HeadSplitLoraLinear(m)
            _set_module(model, name, wrapper)
            m = wrapper
        m.add_adapter(adapter_name, role, channels, rank, alpha, dropout)
        for p in m.adapter_parameters(adapter_name).values():
            p.requires_grad_(True)
    return HeadSplitLoraConfig(int(rank), float(alpha), float(dropout), {k: (r, list(c)) for k, (r, c) in targets.items()})


def remove_head_split_lora(model: nn.Module, adapter_name: str | None = None) -> None:
    for name, layer in head_split_layers(model).items():
        for n in layer.adapter_names():
            if adapter_name is None or n == adapter_name:
                layer.delete_adapter(n)
        if not layer.adapter_names():
            _set_module(model, name, layer.base_layer)


def head_split_parameters(model: nn.Module, adapter_name: str) -> dict[str, nn.Parameter]:
    return adapter_parameters_by_name(head_split_layers(model), adapter_name)


def head_split_state_dict(model: nn.Module, adapter_name: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, layer in head_split_layers(model).items():
        if adapter_name in layer.adapter_names():
            out[f"{name}.hs_down.weight"] = layer.hs_down[adapter_name].weight.detach()
            out[f"{name}.hs_up.weight"] = layer.hs_up[adapter_name].weight.detach()
    return out


def save_head_split_lora(spec: "BackboneSpec", folder: str, config: HeadSplitLoraConfig, adapter_name: str, file_name: str) -> str:
    return write_adapter_file(spec, folder, file_name, head_split_state_dict(spec.denoiser, adapter_name), config.metadata())


def load_head_split_lora(spec: "BackboneSpec", folder: str, adapter_name: str, file_name: str) -> None:
    state, path = read_adapter_file(spec, folder, adapter_name, file_name, FILE_FORMAT, "head-split LoRA")
    copy_adapter_state(head_split_layers(spec.denoiser), adapter_name, head_split_state_dict(spec.denoiser, adapter_name), state,
                       "head-split adapter", path, hint=" (trained with other head types?)")


__all__ = ["HeadSplitLoraConfig", "HeadSplitLoraLinear", "head_channels", "head_split_layers", "head_split_parameters",
           "head_split_state_dict", "inject_head_split_lora", "load_head_split_lora", "remove_head_split_lora",
           "save_head_split_lora"]
