"""Named adapters on one denoiser: :class:`AdapterSet`.

Several adapters may sit on the same layer (spatial + temporal, identity + motion are just two
names); each has its own parameters, its own scale (which a recipe may make a function of the
timestep at sampling) and its own on/off switch, and can be saved and loaded alone, so a method
may ship only some of its branches. Plain LoRA adapters are peft's (each adapter's file loads
with diffusers' ``load_lora_weights`` where the pipeline supports it); a method whose layer
peft cannot express registers its own layers here, keeping the same contract (see
:class:`MultiAdapterLayer`): gated LoRA (:mod:`motiontune.adapters.gated_lora`,
:meth:`AdapterSet.add_gated_lora`) is one, written with its own key layout that diffusers'
``load_lora_weights`` cannot read (motiontune loads it); bottleneck block adapters
(:mod:`motiontune.adapters.block_adapter`, :meth:`AdapterSet.add_block_adapter`, DualReal) another.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

from motiontune.adapters.block_adapter import (
    BlockAdapterConfig,
    block_adapter_parameters,
    inject_block_adapter,
    load_block_adapter,
    save_block_adapter,
)
from motiontune.adapters.gated_lora import (
    GatedLoraConfig,
    gated_lora_parameters,
    inject_gated_lora,
    load_gated_lora,
    save_gated_lora,
)
from motiontune.adapters.head_split import (
    HeadSplitLoraConfig,
    head_split_parameters,
    inject_head_split_lora,
    load_head_split_lora,
    save_head_split_lora,
)
from motiontune.adapters.lora import activate_all, inject_lora, load_lora_state, lora_parameters, save_lora_for_diffusers
from motiontune.errors import ConfigError

if TYPE_CHECKING:
    from peft import LoraConfig

    from motiontune.backbones.base import BackboneSpec


@runtime_checkable
class MultiAdapterLayer(Protocol):
    """What a method's own adapter layer offers (the peft way: adapters in dicts keyed by name)."""

    def adapter_names(self) -> list[str]: ...

    def set_adapter_scale(self, name: str, scale: float) -> None: ...

    def set_adapter_enabled(self, name: str, enabled: bool) -> None: ...


def adapter_file(name: str) -> str:
    """The file of adapter ``name`` in an adapter folder."""
    return f"adapter_{name}.safetensors"


class AdapterSet:
    """The named adapters a recipe put on ``spec.denoiser``."""

    def __init__(self, spec: "BackboneSpec"):
        self.spec = spec
        #: peft ``LoraConfig`` of each LoRA adapter, :class:`GatedLoraConfig` of each gated one,
        #: :class:`BlockAdapterConfig` of each block adapter, :class:`HeadSplitLoraConfig` of each head-split one
        self.configs: dict[str, "LoraConfig | GatedLoraConfig | BlockAdapterConfig | HeadSplitLoraConfig"] = {}
        self._scales: dict[str, float] = {}
        self._enabled: dict[str, bool] = {}

    # ------------------------------------------------------------------ building
    def _check_new(self, name: str) -> None:
        if not name or "." in name or "/" in name:
            raise ConfigError(f"adapter names must be non-empty and hold no '.' or '/' (got {name!r})")
        if name in self.configs:
            raise ConfigError(f"adapter {name!r} is already in this set")

    def add_lora(self, name: str, targets: list[str], rank: int, alpha: float, dropout: float = 0.0) -> None:
        self._check_new(name)
        self.configs[name] = inject_lora(self.spec.denoiser, targets, rank, alpha, dropout, adapter_name=name)
        self._scales[name] = 1.0
        self._enabled[name] = True

    def add_gated_lora(self, name: str, targets: list[str], rank: int, alpha: float, dropout: float = 0.1,
                       gate: str = "mean", scale_mode: str = "raw") -> None:
        """A gated LoRA adapter (GLoRA, :mod:`motiontune.adapters.gated_lora`) on the ``nn.Linear``
        layers ``targets``: ``gate`` "mean" (one gate per layer and call, the authors' code),
        "token" or "none"; ``scale_mode`` "raw" (s = alpha, the authors' code) or "alpha_over_r".

        Its file (:meth:`save`) has its own key layout: diffusers' ``load_lora_weights`` cannot
        load it, since the gate depends on the layer's input; :meth:`load` (and so motiontune's
        ``generate`` and Python API) does."""
        self._check_new(name)
        self.configs[name] = inject_gated_lora(self.spec.denoiser, targets, rank, alpha, dropout, adapter_name=name,
                                               gate=gate, scale_mode=scale_mode)
        self._scales[name] = 1.0
        self._enabled[name] = True

    def add_block_adapter(self, name: str, hidden: int = 64, residual: bool = False) -> None:
        """A bottleneck adapter (:mod:`motiontune.adapters.block_adapter`) on the attention and the
        feed-forward of every transformer block: ``Linear(d, hidden) -> GELU -> Linear(hidden, d)``,
        the up projection zero-initialised (a no-op at first; ``residual=True``: the authors' DualReal
        code's ``x + ...`` inside the adapter, not a no-op). Its weight per block comes from the
        layers' weight source (:func:`motiontune.adapters.block_adapter.set_weight_source`; default 1)
        times its scale here. Its file has its own key layout, which only :meth:`load` reads."""
        self._check_new(name)
        self.configs[name] = inject_block_adapter(self.spec, name, hidden, residual)
        self._scales[name] = 1.0
        self._enabled[name] = True

    def add_head_split_lora(self, name: str, targets: dict[str, tuple[str, list[int]]], rank: int, alpha: float,
                            dropout: float = 0.0) -> None:
        """A LoRA restricted to some heads of each attention (:mod:`motiontune.adapters.head_split`):
        ``targets`` maps a q/k/v layer to ``("rows", output channels)`` and an o layer to
        ``("columns", input channels)``. Its file has its own key layout, which only :meth:`load` reads."""
        self._check_new(name)
        self.configs[name] = inject_head_split_lora(self.spec.denoiser, targets, rank, alpha, dropout, adapter_name=name)
        self._scales[name] = 1.0
        self._enabled[name] = True

    def is_head_split(self, name: str) -> bool:
        self._check(name)
        return isinstance(self.configs[name], HeadSplitLoraConfig)

    def is_gated(self, name: str) -> bool:
        self._check(name)
        return isinstance(self.configs[name], GatedLoraConfig)

    def is_block(self, name: str) -> bool:
        self._check(name)
        return isinstance(self.configs[name], BlockAdapterConfig)

    @property
    def names(self) -> list[str]:
        return list(self.configs)

    def _check(self, name: str) -> None:
        if name not in self.configs:
            raise ConfigError(f"no adapter named {name!r} (adapters: {', '.join(self.names) or 'none'})")

    def layers(self) -> list[torch.nn.Module]:
        from peft.tuners.lora import LoraLayer

        return [m for m in self.spec.denoiser.modules() if isinstance(m, (LoraLayer, MultiAdapterLayer))]

    # ------------------------------------------------------------------ parameters
    def parameters(self, name: str) -> dict[str, torch.nn.Parameter]:
        """Adapter ``name``'s parameters by their names in the denoiser."""
        if self.is_gated(name):
            return gated_lora_parameters(self.spec.denoiser, name)
        if self.is_block(name):
            return block_adapter_parameters(self.spec.denoiser, name)
        if self.is_head_split(name):
            return head_split_parameters(self.spec.denoiser, name)
        return lora_parameters(self.spec.denoiser, name)

    # ------------------------------------------------------------------ scales and switches
    def set_scale(self, name: str, scale: float) -> None:
        from peft.tuners.lora import LoraLayer

        self._check(name)
        scale = float(scale)
        if scale == self._scales[name]:
            return
        for layer in self.layers():
            if isinstance(layer, LoraLayer):
                layer.set_scale(name, scale)
            else:
                layer.set_adapter_scale(name, scale)
        self._scales[name] = scale

    def set_scales(self, scales: dict[str, float]) -> None:
        for name, scale in scales.items():
            self.set_scale(name, scale)

    def scale(self, name: str) -> float:
        self._check(name)
        return self._scales[name]

    def enable(self, name: str, enabled: bool = True) -> None:
        """Switch adapter ``name`` on or off; an adapter that is off is not computed at all."""
        from peft.tuners.lora import LoraLayer

        self._check(name)
        self._enabled[name] = bool(enabled)
        for layer in self.layers():
            if isinstance(layer, LoraLayer):
                if name in layer.lora_A:
                    activate_all(layer)
                    layer._active_adapter = [n for n in layer.active_adapters if self._enabled.get(n, True)]
            else:
                layer.set_adapter_enabled(name, enabled)

    def disable(self, name: str) -> None:
        self.enable(name, False)

    def enabled(self, name: str) -> bool:
        self._check(name)
        return self._enabled[name]

    # ------------------------------------------------------------------ files
    def save(self, folder: str, names: list[str] | None = None) -> dict[str, dict]:
        """Write each adapter of ``names`` (default all) to its own file; returns their descriptions.

        A LoRA adapter's file is keyed as diffusers' ``load_lora_weights`` expects; a gated one's
        has its own layout (``<denoiser attr>.<module>.gated_down/gated_up/gated_gate.weight``,
        settings in the file's metadata), and a block adapter's too
        (``<denoiser attr>.<block>.block_adapter_<attn|ff>.down/up.weight/bias``); only :meth:`load`
        reads those."""
        os.makedirs(folder, exist_ok=True)
        out = {}
        for name in names if names is not None else self.names:
            gated = self.is_gated(name)
            cfg = self.configs[name]
            if isinstance(cfg, HeadSplitLoraConfig):
                save_head_split_lora(self.spec, folder, cfg, name, adapter_file(name))
                out[name] = {"kind": "head_split_lora", "file": adapter_file(name), "rank": int(cfg.r), "alpha": float(cfg.lora_alpha),
                             "layers": len(cfg.targets)}
                continue
            if isinstance(cfg, BlockAdapterConfig):
                save_block_adapter(self.spec, folder, cfg, name, adapter_file(name))
                out[name] = {"kind": "block_adapter", "file": adapter_file(name), "hidden": int(cfg.hidden),
                             "residual": bool(cfg.residual), "blocks": len(cfg.blocks)}
                continue
            if gated:
                save_gated_lora(self.spec, folder, cfg, name, adapter_file(name))
                out[name] = {"kind": "gated_lora", "file": adapter_file(name), "rank": int(cfg.r), "alpha": float(cfg.lora_alpha),
                             "gate": cfg.gate, "scale_mode": cfg.scale_mode, "targets": sorted(cfg.target_modules)}
                continue
            save_lora_for_diffusers(self.spec, folder, cfg, name, adapter_file(name))
            out[name] = {"kind": "lora", "file": adapter_file(name), "rank": int(cfg.r), "alpha": float(cfg.lora_alpha),
                         "targets": sorted(cfg.target_modules)}
        return out

    def load(self, folder: str, names: list[str]) -> None:
        for name in names:
            if self.is_gated(name):
                load_gated_lora(self.spec, folder, name, adapter_file(name))
            elif self.is_block(name):
                load_block_adapter(self.spec, folder, name, adapter_file(name))
            elif self.is_head_split(name):
                load_head_split_lora(self.spec, folder, name, adapter_file(name))
            else:
                load_lora_state(self.spec, folder, name, adapter_file(name))
