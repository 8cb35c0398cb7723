"""Gated LoRA (GLoRA, JointTuner; METHODS.md section 2): a LoRA whose output is scaled by a gate
computed from the layer's input.

For a wrapped ``nn.Linear`` with weight ``W`` (and bias ``b``), each adapter adds

    y = W x + b + g * s * B(A(dropout(x))),     g = sigmoid(w_g . x)

* ``w_g`` is a learned ``Linear(in, 1, bias=False)``; ``gate="mean"`` (default, the authors' code)
  averages ``g`` over the batch and the tokens, one scalar per layer and forward call (the
  samples of a batch, and both halves of a guided batch, share it, as in the code);
  ``gate="token"`` keeps one gate per token; ``gate="none"`` drops the gate (``g = 1``: a plain
  LoRA with the same initialisation, for ablations).
* ``s``: ``scale_mode="raw"`` (default, the authors' code) multiplies by ``alpha`` itself;
  ``scale_mode="alpha_over_r"`` by ``alpha / r`` as peft does. With the code's settings (rank
  128, alpha 1 on CogVideoX) the two differ by a factor 128.
* Initialisation (the authors' code): ``A`` and ``w_g`` are drawn from a normal distribution of
  standard deviation ``1 / r`` (``nn.init.normal_(w, std=1 / r)``, i.e. variance ``1 / r**2``;
  the fact sheet's "N(0, 1/r)" is this), ``B = 0``; the output at initialisation is the base
  layer's exactly.
* LoRA dropout acts on the adapter's input (peft's placement; the authors' code drops the
  adapter's output instead) and is off in eval mode. The gate sees the input without dropout.
* A user scale per adapter (:meth:`GatedLoraLinear.set_adapter_scale`, as peft's ``set_scale``)
  multiplies ``s``; at scale 0, or switched off, an adapter is not computed at all.

The layer is written the peft way: a wrapper around the original ``nn.Linear`` (kept as
``base_layer``, its weight and bias untouched and frozen) holding any number of adapters in dicts
keyed by adapter name, and it follows :class:`motiontune.adapters.base.MultiAdapterLayer`.

Files: a gated adapter is written with its own key layout,
``<denoiser attr>.<module>.gated_down.weight`` (A), ``.gated_up.weight`` (B) and
``.gated_gate.weight`` (w_g), with the adapter's settings in the safetensors metadata. diffusers'
``load_lora_weights`` cannot load it (the gate depends on the layer's input, which a LoRA loader
cannot express; the keys are deliberately not LoRA keys, so a LoRA loader refuses the file
rather than loading the low-rank part without its gate); motiontune's ``generate``,
:func:`motiontune.api.generate` and :func:`motiontune.recipes.load_recipe` load it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from motiontune.adapters.files import read_adapter_file, write_adapter_file
from motiontune.adapters.layers import AdapterSwitches, adapter_parameters_by_name, copy_adapter_state
from motiontune.errors import ConfigError

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec

GATES = ("mean", "token", "none")
SCALE_MODES = ("raw", "alpha_over_r")
FILE_FORMAT = "motiontune.gated_lora"
#: the parts of one adapter in a file (the key suffixes after the module name)
PARTS = {"down": "gated_down", "up": "gated_up", "gate": "gated_gate"}


def check_gate(gate: object) -> str:
    if gate not in GATES:
        raise ConfigError(f"unknown gate {gate!r}; choose from {', '.join(GATES)}")
    return str(gate)


def check_scale_mode(mode: object) -> str:
    if mode not in SCALE_MODES:
        raise ConfigError(f"unknown scale_mode {mode!r}; choose from {', '.join(SCALE_MODES)}")
    return str(mode)


def base_scaling(rank: int, alpha: float, scale_mode: str) -> float:
    """The scale ``s`` of the adapter's output: ``alpha`` ("raw") or ``alpha / rank`` ("alpha_over_r")."""
    return float(alpha) if check_scale_mode(scale_mode) == "raw" else float(alpha) / int(rank)


@dataclass
class GatedLoraConfig:
    """Settings of one gated adapter (attribute names as peft's ``LoraConfig`` where they match)."""

    r: int
    lora_alpha: float
    lora_dropout: float = 0.1
    gate: str = "mean"
    scale_mode: str = "raw"
    target_modules: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, str]:
        return {"format": FILE_FORMAT, "version": "1", "rank": str(self.r), "alpha": repr(float(self.lora_alpha)),
                "dropout": repr(float(self.lora_dropout)), "gate": self.gate, "scale_mode": self.scale_mode}


class GatedLoraLinear(AdapterSwitches, nn.Module):
    """An ``nn.Linear`` with gated LoRA adapters keyed by name (see the module docstring)."""

    def __init__(self, base_layer: nn.Linear):
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise ConfigError(f"gated LoRA wraps nn.Linear layers, not {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.gated_down = nn.ModuleDict()
        self.gated_up = nn.ModuleDict()
        self.gated_gate = nn.ModuleDict()
        self.gated_dropout = nn.ModuleDict()
        self.gate_mode: dict[str, str] = {}
        #: s of each adapter (alpha or alpha / r)
        self.scaling: dict[str, float] = {}
        #: the user scale of each adapter (multiplies s)
        self.user_scale: dict[str, float] = {}
        self.enabled: dict[str, bool] = {}

    # ------------------------------------------------------------------ the wrapped layer
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

    # ------------------------------------------------------------------ adapters
    def add_adapter(self, name: str, rank: int, alpha: float, dropout: float = 0.1, gate: str = "mean",
                    scale_mode: str = "raw") -> None:
        """Add adapter ``name``: A and w_g ~ N(0, std 1/r), B = 0 (drawn from torch's global generator)."""
        if name in self.gated_down:
            raise ConfigError(f"this layer already has a gated adapter named {name!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ConfigError(f"gated LoRA rank must be a whole number >= 1 (got {rank!r})")
        gate = check_gate(gate)
        w = self.base_layer.weight
        # adapters of a half-precision layer are kept in float32, as peft does
        dtype = torch.float32 if w.dtype in (torch.float16, torch.bfloat16) else w.dtype
        kw = {"device": w.device, "dtype": dtype}
        down = nn.Linear(self.in_features, rank, bias=False, **kw)
        up = nn.Linear(rank, self.out_features, bias=False, **kw)
        with torch.no_grad():
            nn.init.normal_(down.weight, std=1.0 / rank)
            nn.init.zeros_(up.weight)
        self.gated_down[name] = down
        self.gated_up[name] = up
        if gate != "none":
            g = nn.Linear(self.in_features, 1, bias=False, **kw)
            with torch.no_grad():
                nn.init.normal_(g.weight, std=1.0 / rank)
            self.gated_gate[name] = g
        self.gated_dropout[name] = nn.Dropout(float(dropout)) if dropout > 0 else nn.Identity()
        self.gate_mode[name] = gate
        self.scaling[name] = base_scaling(rank, alpha, scale_mode)
        self._add_switches(name)

    def delete_adapter(self, name: str) -> None:
        for d in (self.gated_down, self.gated_up, self.gated_gate, self.gated_dropout):
            if name in d:
                del d[name]
        for d in (self.gate_mode, self.scaling, self.user_scale, self.enabled):
            d.pop(name, None)

    def adapter_parameters(self, name: str) -> dict[str, nn.Parameter]:
        """Adapter ``name``'s parameters by their names relative to this layer."""
        out = {f"gated_down.{name}.weight": self.gated_down[name].weight, f"gated_up.{name}.weight": self.gated_up[name].weight}
        if name in self.gated_gate:
            out[f"gated_gate.{name}.weight"] = self.gated_gate[name].weight
        return out

    # ------------------------------------------------------------------ MultiAdapterLayer
    def adapter_names(self) -> list[str]:
        return list(self.gated_down.keys())

    # ------------------------------------------------------------------ forward
    def gate_value(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """g of adapter ``name`` for input ``x``: a 0-d tensor ("mean"), one per token (shape
        ``(..., 1)``, "token"), or 1 ("none")."""
        if self.gate_mode[name] == "none":
            return torch.ones((), device=x.device, dtype=x.dtype)
        g = torch.sigmoid(self.gated_gate[name](x))
        return g.mean() if self.gate_mode[name] == "mean" else g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        for name in self.gated_down.keys():
            scale = self.user_scale[name]
            if not self.enabled[name] or scale == 0.0:
                continue
            down = self.gated_down[name]
            xa = x.to(down.weight.dtype)
            delta = self.gated_up[name](down(self.gated_dropout[name](xa)))
            out = out + (self.gate_value(name, xa) * (self.scaling[name] * scale) * delta).to(out.dtype)
        return out

    def extra_repr(self) -> str:
        return ", ".join(f"{n}: r={self.gated_down[n].out_features} gate={self.gate_mode[n]} s={self.scaling[n]:g}"
                         for n in self.adapter_names())


# ---------------------------------------------------------------------- injection and removal
def gated_layers(model: nn.Module) -> dict[str, GatedLoraLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, GatedLoraLinear)}


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def inject_gated_lora(model: nn.Module, target_modules: list[str], rank: int, alpha: float, dropout: float = 0.1,
                      adapter_name: str = "default", gate: str = "mean", scale_mode: str = "raw") -> GatedLoraConfig:
    """Put gated adapter ``adapter_name`` on exactly the ``nn.Linear`` layers ``target_modules``.

    Each layer is replaced, through its parent's ``setattr``, by a :class:`GatedLoraLinear` holding
    it (a layer already wrapped gets the new adapter beside its others). The base weights and biases
    are left as they are and frozen; the new adapter's parameters are trainable.
    """
    gate, scale_mode = check_gate(gate), check_scale_mode(scale_mode)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"gated LoRA rank must be a whole number >= 1 (got {rank!r})")
    targets = list(dict.fromkeys(target_modules))
    if not targets:
        raise ConfigError("no layers selected for the gated LoRA")
    modules = dict(model.named_modules())
    for name in targets:  # everything is checked before the model is changed
        m = modules.get(name)
        if m is None:
            raise ConfigError(f"no module named {name!r} in the denoiser")
        if isinstance(m, GatedLoraLinear):
            if adapter_name in m.adapter_names():
                raise ConfigError(f"a gated adapter named {adapter_name!r} is already on {name}")
        elif type(m) is not nn.Linear:
            kind = "a peft LoRA layer" if hasattr(m, "lora_A") else type(m).__name__
            raise ConfigError(f"{name} is {kind}, not an nn.Linear: a gated LoRA cannot go there")
    for name in targets:
        m = modules[name]
        if not isinstance(m, GatedLoraLinear):
            m.requires_grad_(False)
            wrapper = GatedLoraLinear(m)
            _set_module(model, name, wrapper)
            m = wrapper
        m.add_adapter(adapter_name, rank, alpha, dropout, gate, scale_mode)
        for p in m.adapter_parameters(adapter_name).values():
            p.requires_grad_(True)
    return GatedLoraConfig(rank, float(alpha), float(dropout), gate, scale_mode, targets)


def remove_gated_lora(model: nn.Module, adapter_name: str | None = None) -> None:
    """Remove adapter ``adapter_name`` (None: every gated adapter); a layer left without adapters
    is replaced by its original ``nn.Linear`` again."""
    for name, layer in gated_layers(model).items():
        for n in layer.adapter_names():
            if adapter_name is None or n == adapter_name:
                layer.delete_adapter(n)
        if not layer.adapter_names():
            _set_module(model, name, layer.base_layer)


def gated_lora_parameters(model: nn.Module, adapter_name: str) -> dict[str, nn.Parameter]:
    """Adapter ``adapter_name``'s parameters by their names in ``model``."""
    return adapter_parameters_by_name(gated_layers(model), adapter_name)


# ---------------------------------------------------------------------- state dicts and files
def gated_lora_state_dict(model: nn.Module, adapter_name: str) -> dict[str, torch.Tensor]:
    """Adapter ``adapter_name``'s weights keyed ``<module>.gated_down.weight`` (A),
    ``<module>.gated_up.weight`` (B) and ``<module>.gated_gate.weight`` (w_g): the adapter's name
    is not in the keys, so the weights load under any name."""
    out: dict[str, torch.Tensor] = {}
    for name, layer in gated_layers(model).items():
        if adapter_name not in layer.adapter_names():
            continue
        out[f"{name}.gated_down.weight"] = layer.gated_down[adapter_name].weight.detach()
        out[f"{name}.gated_up.weight"] = layer.gated_up[adapter_name].weight.detach()
        if adapter_name in layer.gated_gate:
            out[f"{name}.gated_gate.weight"] = layer.gated_gate[adapter_name].weight.detach()
    return out


def set_gated_lora_state_dict(model: nn.Module, adapter_name: str, state: dict[str, torch.Tensor], where: str = "") -> None:
    """Copy ``state`` (keyed as :func:`gated_lora_state_dict` writes) into the injected adapter
    ``adapter_name``; a missing, unexpected or misshapen weight is refused (ConfigError)."""
    copy_adapter_state(gated_layers(model), adapter_name, gated_lora_state_dict(model, adapter_name), state, "gated adapter",
                       where or "gated LoRA weights")


def save_gated_lora(spec: "BackboneSpec", folder: str, config: GatedLoraConfig, adapter_name: str, file_name: str) -> str:
    """Write adapter ``adapter_name`` to ``folder/file_name`` (keys prefixed with the denoiser's
    pipeline attribute, ``transformer.`` or ``unet.``; settings in the metadata). Not a diffusers
    LoRA file: see the module docstring."""
    return write_adapter_file(spec, folder, file_name, gated_lora_state_dict(spec.denoiser, adapter_name), config.metadata())


def load_gated_lora(spec: "BackboneSpec", folder: str, adapter_name: str, file_name: str) -> None:
    """Load a file written by :func:`save_gated_lora` into the injected adapter ``adapter_name``."""
    state, path = read_adapter_file(spec, folder, adapter_name, file_name, FILE_FORMAT, "gated LoRA")
    set_gated_lora_state_dict(spec.denoiser, adapter_name, state, where=path)


__all__ = ["GATES", "SCALE_MODES", "GatedLoraConfig", "GatedLoraLinear", "base_scaling", "gated_layers", "gated_lora_parameters",
           "gated_lora_state_dict", "inject_gated_lora", "load_gated_lora", "remove_gated_lora", "save_gated_lora",
           "set_gated_lora_state_dict"]
