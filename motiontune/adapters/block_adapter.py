"""Bottleneck block adapters (DualReal; METHODS.md section 3): a small MLP beside the attention and
the feed-forward of every transformer block, reading the block's normed tokens.

For each transformer block of :meth:`BackboneSpec.block_sites` and each adapter name, two
bottlenecks, one on the self-attention and one on the feed-forward:

    out = sub_module(normed) + w * s * A(normed),     A(x) = up(gelu(down(x)))

* ``down`` is ``Linear(d, hidden)`` (hidden 64 in DualReal), ``up`` is ``Linear(hidden, d)`` with
  weight and bias zero-initialised, so an adapter starts as a true no-op: the block's output is the
  base model's exactly. ``residual=True`` is the authors' code's variant, ``A(x) = x + up(gelu(down(x)))``
  (the identity inside the adapter): it is *not* a no-op at initialisation (it adds ``w * x``).
* ``normed`` is what the sub-module reads: the attention's inputs (video tokens, and the text
  tokens where the attention is joint: CogVideoX, HunyuanVideo), the feed-forward's input (the
  joint ``[text; video]`` tokens on CogVideoX). The adapter is applied token by token, so the
  video tokens' update is added to the attention's video output and the text tokens' update to
  its text output. Where the feed-forward does not read the normed tokens (HunyuanVideo's
  single-stream ``proj_out`` reads ``[attention | mlp]``), the adapter reads the output of the
  block's ``ff_norm`` module instead, and where the text stream has its own feed-forward
  (HunyuanVideo's dual-stream ``ff_context``) the same feed-forward adapter acts on it too.
* Optional conditioning (DualReal's reference-image conditioning): an adapter given a condition
  projection (:meth:`BlockAdapterLayer.add_condition`) reads ``x + lambda * cond(e)`` instead of
  ``x``, where ``e`` is the layer's condition embedding (``(1, c)`` or ``(B, c)``, set with
  :func:`set_condition`), ``cond`` a learned ``Linear(c, d)`` of that adapter and ``lambda`` the
  condition scale; the identity residual of ``residual=True`` stays the unconditioned ``x`` (as in
  the authors' code). Without an embedding set, the projection is not used.
* ``w`` is a per-sample weight given by the layer's *weight source* (a recipe's controller, e.g.
  DualReal's StageBlender; default 1); ``s`` the adapter's user scale (:class:`AdapterSet` scales).
  At scale 0, or switched off, an adapter is not computed at all.

The adapters are attached with forward hooks on the block's sub-modules (no model code is
copied); their parameters live in a :class:`BlockAdapterLayer` registered as a child of the block
(``<block>.block_adapter_attn`` / ``<block>.block_adapter_ff``), which follows
:class:`motiontune.adapters.base.MultiAdapterLayer`, holding any number of named adapters.

Files: ``<denoiser attr>.<block>.block_adapter_<attn|ff>.down.weight`` (and ``.down.bias``,
``.up.weight``, ``.up.bias``; ``.cond.weight`` and ``.cond.bias`` for a conditioned adapter), the settings in the safetensors metadata. Not a LoRA file:
diffusers' ``load_lora_weights`` cannot load it; motiontune's ``generate`` and Python API do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from motiontune.adapters.files import read_adapter_file, write_adapter_file
from motiontune.adapters.layers import AdapterSwitches, adapter_parameters_by_name, copy_adapter_state
from motiontune.errors import ConfigError

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec, BlockSite

FILE_FORMAT = "motiontune.block_adapter"
#: sub-module kinds of a block and the child name of their layer
SITES = {"attention": "block_adapter_attn", "feed_forward": "block_adapter_ff"}
#: weight source: (adapter name, block index, leading batch size of the tensor) -> multiplier
WeightSource = Callable[[str, int, int], "torch.Tensor | float"]


@dataclass
class BlockAdapterConfig:
    """Settings of one named block adapter."""

    hidden: int = 64
    residual: bool = False
    #: the block paths it sits on (for the folder's description)
    blocks: tuple[str, ...] = ()
    #: width of the condition embedding its projection reads (0: not conditioned)
    condition_dim: int = 0

    def metadata(self) -> dict[str, str]:
        out = {"format": FILE_FORMAT, "version": "1", "hidden": str(self.hidden), "residual": str(bool(self.residual)).lower(),
               "blocks": str(len(self.blocks))}
        if self.condition_dim:
            out["condition_dim"] = str(self.condition_dim)
        return out


class BlockAdapterLayer(AdapterSwitches, nn.Module):
    """The named bottleneck adapters of one sub-module (attention or feed-forward) of one block."""

    def __init__(self, dim: int, block_index: int, kind: str):
        super().__init__()
        self.dim = int(dim)
        self.block_index = int(block_index)
        self.kind = kind
        self.down = nn.ModuleDict()
        self.up = nn.ModuleDict()
        #: condition projections Linear(c, dim) of the conditioned adapters
        self.cond = nn.ModuleDict()
        #: the condition embedding (1 or B, c) and its scale lambda (see the module docstring)
        self.condition: torch.Tensor | None = None
        self.condition_scale = 1.0
        self.residual: dict[str, bool] = {}
        self.user_scale: dict[str, float] = {}
        self.enabled: dict[str, bool] = {}
        #: where the weight ``w`` of each adapter comes from (None: 1)
        self.weight_source: WeightSource | None = None
        #: the normed tokens of the current call where the feed-forward does not read them (see module docstring)
        self._normed: torch.Tensor | None = None

    # ------------------------------------------------------------------ adapters
    def add_adapter(self, name: str, hidden: int = 64, residual: bool = False, device: Any = None, dtype: Any = None) -> None:
        if name in self.down:
            raise ConfigError(f"this block already has a block adapter named {name!r}")
        if dtype in (torch.float16, torch.bfloat16):
            dtype = torch.float32  # adapters of a half-precision model are kept in float32, as peft does
        kw = {"device": device, "dtype": dtype}
        down = nn.Linear(self.dim, hidden, **kw)
        up = nn.Linear(hidden, self.dim, **kw)
        with torch.no_grad():
            nn.init.zeros_(up.weight)
            nn.init.zeros_(up.bias)
        self.down[name] = down
        self.up[name] = up
        self.residual[name] = bool(residual)
        self._add_switches(name)

    def add_condition(self, name: str, condition_dim: int) -> None:
        """Give adapter ``name`` a learned projection ``Linear(condition_dim, dim)`` of the condition
        embedding, added to its input (PyTorch's default initialisation, as in the authors' code)."""
        if name not in self.down:
            raise ConfigError(f"no block adapter named {name!r} to condition")
        if name in self.cond:
            raise ConfigError(f"block adapter {name!r} already has a condition projection")
        w = self.down[name].weight
        self.cond[name] = nn.Linear(int(condition_dim), self.dim, device=w.device, dtype=w.dtype)

    def adapter_parameters(self, name: str) -> dict[str, nn.Parameter]:
        out = {f"down.{name}.weight": self.down[name].weight, f"down.{name}.bias": self.down[name].bias,
               f"up.{name}.weight": self.up[name].weight, f"up.{name}.bias": self.up[name].bias}
        if name in self.cond:
            out.update({f"cond.{name}.weight": self.cond[name].weight, f"cond.{name}.bias": self.cond[name].bias})
        return out

    # ------------------------------------------------------------------ MultiAdapterLayer
    def adapter_names(self) -> list[str]:
        return list(self.down.keys())

    # ------------------------------------------------------------------ forward
    def active(self) -> list[str]:
        return [n for n in self.down.keys() if self.enabled[n] and self.user_scale[n] != 0.0]

    def adapter_output(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """``A(x)`` of adapter ``name`` (in the adapter's dtype)."""
        down = self.down[name]
        x = x.to(down.weight.dtype)
        h = x
        if name in self.cond and self.condition is not None:
            e = self.cond[name](self.condition.to(x.device, x.dtype))  # (1 or B, dim)
            if e.shape[0] not in (1, x.shape[0]):
                if x.shape[0] % e.shape[0]:
                    raise RuntimeError(f"block adapter of block {self.block_index}: {e.shape[0]} condition embeddings for "
                                       f"{x.shape[0]} rows")
                e = e.repeat_interleave(x.shape[0] // e.shape[0], dim=0)
            h = x + self.condition_scale * e.reshape(e.shape[0], *([1] * (x.dim() - 2)), e.shape[-1])
        out = self.up[name](F.gelu(down(h)))
        return x + out if self.residual[name] else out

    def update(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out`` plus every active adapter's ``w * s * A(x)``."""
        if x.shape[:-1] != out.shape[:-1] or x.shape[-1] != self.dim or out.shape[-1] != self.dim:
            raise RuntimeError(f"block adapter of block {self.block_index} ({self.kind}): input {tuple(x.shape)} and output "
                               f"{tuple(out.shape)} are not both (..., {self.dim}) over the same tokens")
        for name in self.active():
            w = 1.0 if self.weight_source is None else self.weight_source(name, self.block_index, out.shape[0])
            delta = self.adapter_output(name, x) * self.user_scale[name]
            if torch.is_tensor(w):
                delta = delta * w.to(delta.dtype).reshape(-1, *([1] * (delta.dim() - 1)))
            else:
                delta = delta * float(w)
            out = out + delta.to(out.dtype)
        return out

    def extra_repr(self) -> str:
        return ", ".join(f"{n}: {self.dim}->{self.down[n].out_features}->{self.dim}{' +x' if self.residual[n] else ''}"
                         for n in self.adapter_names())


# ---------------------------------------------------------------------- hooks
def _inputs(args: tuple, kwargs: dict[str, Any]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(hidden_states, encoder_hidden_states) of a sub-module call."""
    hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else (args[0] if args else None)
    text = kwargs["encoder_hidden_states"] if "encoder_hidden_states" in kwargs else (args[1] if len(args) > 1 else None)
    return hidden, text if torch.is_tensor(text) else None


def _attention_hook(layer: BlockAdapterLayer):
    def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any], out: Any) -> Any:
        if not layer.active():
            return None
        video, text = _inputs(args, kwargs)
        if isinstance(out, tuple):
            parts = list(out)
            parts[0] = layer.update(video, parts[0])
            if text is not None and len(parts) > 1 and torch.is_tensor(parts[1]) and text.shape[-1] == layer.dim:
                parts[1] = layer.update(text, parts[1])
            return tuple(parts)
        return layer.update(video, out)

    return hook


def _ff_hook(layer: BlockAdapterLayer, from_norm: bool):
    def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any], out: Any) -> Any:
        if not layer.active():
            return None
        if from_norm:
            x, layer._normed = layer._normed, None
            if x is None:
                raise RuntimeError(f"block adapter of block {layer.block_index}: the normed tokens were not recorded in this call")
        else:
            x, _ = _inputs(args, kwargs)
        return layer.update(x, out)

    return hook


def _norm_hook(layer: BlockAdapterLayer):
    def hook(module: nn.Module, args: tuple, out: Any) -> None:
        layer._normed = out[0] if isinstance(out, tuple) else out

    return hook


# ---------------------------------------------------------------------- injection
def block_width(spec: "BackboneSpec", site: "BlockSite") -> int:
    """The width ``d`` of a block's tokens (the input width of its first feed-forward linear)."""
    modules = dict(spec.denoiser.named_modules())
    for name in site.ff_linears:
        m = modules.get(name)
        if isinstance(m, nn.Linear):
            return int(m.in_features)
    raise ConfigError(f"{spec.family}: block {site.path} has no feed-forward linear to read its width from")


def backbone_blocks(spec: "BackboneSpec", what: str = "block adapters") -> list["BlockSite"]:
    """``spec.block_sites()``, or a ConfigError naming the family where it lists none."""
    try:
        sites = spec.block_sites()
    except NotImplementedError:
        sites = []
    if not sites:
        raise ConfigError(f"{what} need the transformer blocks of the denoiser; the {spec.family} backbone does not list any")
    for s in sites:
        if s.attention is None or s.feed_forward is None:
            raise ConfigError(f"{what} go on the attention and the feed-forward of each block; {spec.family} block {s.path} "
                              f"lacks {'an attention' if s.attention is None else 'a feed-forward'}")
    return sites


def block_layers(model: nn.Module) -> dict[str, BlockAdapterLayer]:
    return {n: m for n, m in model.named_modules() if isinstance(m, BlockAdapterLayer)}


def inject_block_adapter(spec: "BackboneSpec", adapter_name: str, hidden: int = 64, residual: bool = False) -> BlockAdapterConfig:
    """Put block adapter ``adapter_name`` on the attention and the feed-forward of every block of
    ``spec`` (the layers and hooks are made on the first adapter; later ones join them)."""
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise ConfigError(f"block adapter width (hidden) must be a whole number >= 1 (got {hidden!r})")
    model = spec.denoiser
    sites = backbone_blocks(spec)
    modules = dict(model.named_modules())
    ref = next((p for p in model.parameters()), None)
    device, dtype = (ref.device, ref.dtype) if ref is not None else (None, None)
    for site in sites:
        block = modules[site.path]
        d = block_width(spec, site)
        for kind, child in SITES.items():
            layer = getattr(block, child, None)
            if layer is None:
                layer = BlockAdapterLayer(d, site.index, kind)
                block.add_module(child, layer)
                _attach(spec, site, block, layer, kind, modules)
            layer.add_adapter(adapter_name, hidden, residual, device=device, dtype=dtype)
            for p in layer.adapter_parameters(adapter_name).values():
                p.requires_grad_(True)
    return BlockAdapterConfig(hidden, bool(residual), tuple(s.path for s in sites))


def _attach(spec: "BackboneSpec", site: "BlockSite", block: nn.Module, layer: BlockAdapterLayer, kind: str,
            modules: dict[str, nn.Module]) -> None:
    handles = []
    if kind == "attention":
        handles.append(modules[site.attention].register_forward_hook(_attention_hook(layer), with_kwargs=True))
    else:
        ff = modules[site.feed_forward]
        from_norm = isinstance(ff, nn.Linear) and ff.in_features != layer.dim
        if from_norm:
            if site.ff_norm is None:
                raise ConfigError(f"{spec.family} block {site.path}: the feed-forward does not read the normed tokens and no "
                                  f"norm module gives them; block adapters cannot go there")
            handles.append(modules[site.ff_norm].register_forward_hook(_norm_hook(layer)))
        handles.append(ff.register_forward_hook(_ff_hook(layer, from_norm), with_kwargs=True))
        context = getattr(block, "ff_context", None)
        if site.text_position != "none" and isinstance(context, nn.Module) and context is not ff:
            handles.append(context.register_forward_hook(_ff_hook(layer, False), with_kwargs=True))
    layer._hooks = handles  # kept with the layer (removal: remove_block_adapters)


def remove_block_adapters(spec: "BackboneSpec") -> None:
    """Remove every block adapter layer and its hooks."""
    for name, layer in block_layers(spec.denoiser).items():
        for h in getattr(layer, "_hooks", []):
            h.remove()
        parent_name, _, child = name.rpartition(".")
        parent = spec.denoiser.get_submodule(parent_name) if parent_name else spec.denoiser
        delattr(parent, child)


def set_weight_source(model: nn.Module, source: WeightSource | None) -> None:
    """Give every block adapter layer of ``model`` the weight source ``source``."""
    for layer in block_layers(model).values():
        layer.weight_source = source


def set_condition(model: nn.Module, embedding: torch.Tensor | None, scale: float = 1.0) -> None:
    """Give every block adapter layer of ``model`` the condition embedding ``embedding`` ((1 or B, c);
    None: none) and its scale lambda; only the adapters with a condition projection read it."""
    for layer in block_layers(model).values():
        layer.condition = embedding
        layer.condition_scale = float(scale)


def add_block_condition(model: nn.Module, adapter_name: str, condition_dim: int) -> None:
    """A condition projection ``Linear(condition_dim, d)`` for adapter ``adapter_name`` in every layer."""
    layers = [layer for layer in block_layers(model).values() if adapter_name in layer.adapter_names()]
    if not layers:
        raise ConfigError(f"no block adapter named {adapter_name!r} on this model")
    for layer in layers:
        layer.add_condition(adapter_name, condition_dim)
        for p in layer.cond[adapter_name].parameters():
            p.requires_grad_(True)


def block_adapter_parameters(model: nn.Module, adapter_name: str) -> dict[str, nn.Parameter]:
    return adapter_parameters_by_name(block_layers(model), adapter_name)


# ---------------------------------------------------------------------- state dicts and files
def block_adapter_state_dict(model: nn.Module, adapter_name: str) -> dict[str, torch.Tensor]:
    """Adapter ``adapter_name``'s weights keyed ``<layer>.down.weight`` etc. (the adapter's name is
    not in the keys, so the weights load under any name)."""
    out: dict[str, torch.Tensor] = {}
    for name, layer in block_layers(model).items():
        if adapter_name not in layer.adapter_names():
            continue
        for part in ("down", "up", "cond"):
            if adapter_name not in getattr(layer, part):
                continue
            lin = getattr(layer, part)[adapter_name]
            out[f"{name}.{part}.weight"] = lin.weight.detach()
            out[f"{name}.{part}.bias"] = lin.bias.detach()
    return out


def set_block_adapter_state_dict(model: nn.Module, adapter_name: str, state: dict[str, torch.Tensor], where: str = "") -> None:
    copy_adapter_state(block_layers(model), adapter_name, block_adapter_state_dict(model, adapter_name), state, "block adapter",
                       where or "block adapter weights", "; it was trained on a model with other transformer blocks")


def save_block_adapter(spec: "BackboneSpec", folder: str, config: BlockAdapterConfig, adapter_name: str, file_name: str) -> str:
    return write_adapter_file(spec, folder, file_name, block_adapter_state_dict(spec.denoiser, adapter_name), config.metadata())


def load_block_adapter(spec: "BackboneSpec", folder: str, adapter_name: str, file_name: str) -> None:
    state, path = read_adapter_file(spec, folder, adapter_name, file_name, FILE_FORMAT, "block adapter")
    set_block_adapter_state_dict(spec.denoiser, adapter_name, state, where=path)


__all__ = ["BlockAdapterConfig", "BlockAdapterLayer", "FILE_FORMAT", "add_block_condition", "backbone_blocks", "block_adapter_parameters",
           "block_adapter_state_dict", "block_layers", "block_width", "inject_block_adapter", "load_block_adapter",
           "remove_block_adapters", "save_block_adapter", "set_block_adapter_state_dict", "set_condition", "set_weight_source"]
