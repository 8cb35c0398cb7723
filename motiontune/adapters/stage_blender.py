"""The StageBlender controller (DualReal; METHODS.md section 3): per-sample weights of two block
adapters, one per group of consecutive transformer blocks, from the denoiser's own features and
its timestep embedding.

For one denoiser call with tokens ``f`` entering the first transformer block (``[text; video]``
where the block carries or receives text tokens of the model width) and the timestep embedding
``temb`` (the output of :meth:`BackboneSpec.timestep_embedding_path`):

    c = Linear(d, W)(max over tokens of f)                               (W = 512)
    shift, scale, gate = Linear(t_dim, 3W)(SiLU(temb))
    f' = LayerNorm(c) (1 + scale) + shift
    f'' = Linear(4W, W)(GELU(Linear(W, 4W)(f'))) + gate * c
    alpha = 0.2 * sigmoid(Linear(128, n)(ReLU(Linear(W, 128)(ReLU(f'')))))   (last Linear zero-initialised)

``alpha`` is ``(B, n)``: one weight per sample and group; one branch takes ``alpha``, the other
``0.2 - alpha`` (which one is the recipe's choice). At initialisation ``alpha = 0.1`` everywhere.
The layers and their sizes are those of the authors' code (``Controller`` in ``model/dit.py``:
tanh-approximated GELU in the MLP, LayerNorm eps 1e-5 with affine weights); the code's width ``W``
is CogVideoX's timestep-embedding width (512), kept here as a fixed width whatever the backbone.

Group ``g`` holds consecutive blocks in forward order (:meth:`BackboneSpec.block_sites`):
``blocks_per_group`` blocks each (the last may hold fewer), or ``groups`` groups of near-equal size.

How it runs (:class:`GroupWeights`): a forward hook on the timestep-embedding module records
``temb``; a forward pre-hook on the first block computes ``alpha`` from the block's input; the
block adapters' weight source (:func:`motiontune.adapters.block_adapter.set_weight_source`)
reads ``alpha[:, group of the block]``, repeated over the leading axis where a block's tokens are
``(B*F, ...)`` or ``(B*h*w, ...)`` (Latte, UNet3D; batch-major, as those models lay them out).
Without a controller (``controller=None``) the weights are fixed (the ablation "without the
StageBlender controller").
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from motiontune.errors import ConfigError

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec

FILE_FORMAT = "motiontune.stage_blender"
CHILD = "stage_blender"


def block_groups(blocks: int, blocks_per_group: int = 6, groups: int | None = None, where: str = "") -> list[int]:
    """The group of each of ``blocks`` blocks: ``i // blocks_per_group``, or, with ``groups`` given,
    ``i * groups // blocks`` (consecutive groups of near-equal size). ``groups`` larger than the
    number of blocks is refused (ConfigError naming both)."""
    if groups is not None:
        if groups > blocks:
            raise ConfigError(f"groups={groups} is more than the {blocks} transformer blocks{where}: each group needs a block "
                              f"(give groups <= {blocks}, or blocks_per_group)")
        return [i * groups // blocks for i in range(blocks)]
    return [i // blocks_per_group for i in range(blocks)]


class StageBlender(nn.Module):
    """The controller network (see the module docstring)."""

    def __init__(self, feature_dim: int, time_dim: int, groups: int, width: int = 512, hidden: int = 128, total: float = 0.2):
        super().__init__()
        self.feature_dim, self.time_dim, self.groups = int(feature_dim), int(time_dim), int(groups)
        self.width, self.hidden, self.total = int(width), int(hidden), float(total)
        self.timestep_encoder = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, 3 * width))
        self.channel_encoder = nn.Linear(feature_dim, width)
        self.norm = nn.LayerNorm(width, eps=1e-5)
        self.fuse_proj = nn.Linear(width, 4 * width)
        self.fuse_proj_down = nn.Linear(4 * width, width)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, groups))
        with torch.no_grad():
            nn.init.zeros_(self.head[3].weight)
            nn.init.zeros_(self.head[3].bias)

    def forward(self, temb: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """``alpha`` (B, groups) in (0, total) from ``temb`` (B, time_dim) and the max-pooled block
        features ``pooled`` (B, feature_dim)."""
        shift, scale, gate = self.timestep_encoder(temb).chunk(3, dim=-1)
        c = self.channel_encoder(pooled)
        f = self.norm(c) * (1 + scale) + shift
        f = self.fuse_proj_down(F.gelu(self.fuse_proj(f), approximate="tanh")) + gate * c
        return torch.sigmoid(self.head(f)) * self.total

    def settings(self) -> dict[str, Any]:
        return {"feature_dim": self.feature_dim, "time_dim": self.time_dim, "groups": self.groups, "width": self.width,
                "hidden": self.hidden, "total": self.total}

    def metadata(self) -> dict[str, str]:
        return {"format": FILE_FORMAT, "version": "1", **{k: repr(v) if isinstance(v, float) else str(v) for k, v in self.settings().items()}}


def timestep_width(spec: "BackboneSpec") -> int:
    """The width of the timestep embedding (the output of ``spec.timestep_embedding_path()``)."""
    module = spec.denoiser.get_submodule(spec.timestep_embedding_path())
    for path in ("linear_2", "timestep_embedder.linear_2"):
        try:
            lin = module.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(lin, nn.Linear):
            return int(lin.out_features)
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(f"{spec.family}: cannot tell the width of the timestep embedding {spec.timestep_embedding_path()}")
    return int(linears[-1].out_features)


class GroupWeights:
    """Per-sample weights of two named adapters per block group, from a :class:`StageBlender` (or
    fixed), installed on a spec with hooks (see the module docstring)."""

    def __init__(self, spec: "BackboneSpec", group_of_block: list[int], alpha_branch: str, other_branch: str,
                 controller: StageBlender | None = None, total: float = 0.2, fixed: tuple[float, float] = (0.1, 0.1)):
        self.spec = spec
        self.group_of_block = list(group_of_block)
        self.alpha_branch, self.other_branch = alpha_branch, other_branch
        self.controller = controller
        self.total = float(total)
        self.fixed = {alpha_branch: float(fixed[0]), other_branch: float(fixed[1])}
        #: the last call's timestep embedding and alpha (B, groups); the records of one call
        self.temb: torch.Tensor | None = None
        self.alpha: torch.Tensor | None = None
        self._handles: list[Any] = []
        sites = spec.block_sites()
        self._first = sites[0]

    # ------------------------------------------------------------------ hooks
    def install(self) -> None:
        if self._handles or self.controller is None:
            return
        modules = dict(self.spec.denoiser.named_modules())
        self._handles.append(modules[self.spec.timestep_embedding_path()].register_forward_hook(self._timestep_hook))
        self._handles.append(modules[self._first.path].register_forward_pre_hook(self._block_hook, with_kwargs=True))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _timestep_hook(self, module: nn.Module, args: tuple, out: Any) -> None:
        temb = out[0] if isinstance(out, tuple) else out
        if temb.dim() > 2:  # one embedding per token (Wan's expand_timesteps): their mean
            temb = temb.flatten(1, -2).mean(1)
        self.temb, self.alpha = temb, None

    def _block_hook(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        if self.temb is None:
            raise RuntimeError("StageBlender: the timestep embedding of this call was not recorded before the first block")
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        text = kwargs["encoder_hidden_states"] if "encoder_hidden_states" in kwargs else (args[1] if len(args) > 1 else None)
        b = self.temb.shape[0]
        d = self.controller.feature_dim
        dtype = self.controller.channel_encoder.weight.dtype
        if hidden.shape[0] % b or hidden.shape[-1] != d:
            raise RuntimeError(f"StageBlender: the first block's tokens {tuple(hidden.shape)} are not (B*k, tokens, {d}) for B={b}")
        pooled = hidden.reshape(b, -1, d).amax(dim=1)
        if self._first.kind == "joint" and torch.is_tensor(text) and text.dim() == 3 and text.shape[0] == b and text.shape[-1] == d:
            pooled = torch.maximum(pooled, text.amax(dim=1))  # max over [text; video]
        self.alpha = self.controller(self.temb.to(dtype), pooled.to(dtype))

    # ------------------------------------------------------------------ weights
    def weight(self, name: str, block: int, lead: int) -> torch.Tensor | float:
        """The weight of adapter ``name`` in block ``block`` for a tensor of leading size ``lead``."""
        if name not in self.fixed:
            raise ConfigError(f"the StageBlender weights two adapters ({self.alpha_branch}, {self.other_branch}), not {name!r}")
        if self.controller is None:
            return self.fixed[name]
        if self.alpha is None:
            raise RuntimeError("StageBlender: no weights for this call (the first block's hook did not run)")
        a = self.alpha[:, self.group_of_block[block]]
        w = a if name == self.alpha_branch else self.total - a
        if lead != w.shape[0]:
            if lead % w.shape[0]:
                raise RuntimeError(f"StageBlender: {lead} rows of block {block} are not a multiple of the batch {w.shape[0]}")
            w = w.repeat_interleave(lead // w.shape[0])
        return w


# ---------------------------------------------------------------------- files
def save_stage_blender(controller: StageBlender, path: str) -> str:
    from motiontune.utils.files import save_tensors

    save_tensors({k: v.detach() for k, v in controller.state_dict().items()}, path, metadata=controller.metadata())
    return path


def load_stage_blender(controller: StageBlender, path: str) -> None:
    from safetensors import safe_open

    from motiontune.utils.files import load_tensors

    if not os.path.isfile(path):
        raise ConfigError(f"{os.path.dirname(path) or '.'}: no {os.path.basename(path)} (the weights of the 'controller' branch)")
    with safe_open(path, "pt") as fh:
        meta = fh.metadata() or {}
    if meta.get("format") != FILE_FORMAT:
        raise ConfigError(f"{path}: not a StageBlender controller file")
    mine = controller.settings()
    for key in ("groups", "feature_dim", "time_dim", "width", "hidden"):
        if key in meta and int(meta[key]) != mine[key]:
            raise ConfigError(f"{path}: the controller has {key}={meta[key]}, this model's {mine[key]}")
    if "total" in meta and not math.isclose(float(meta["total"]), mine["total"]):
        raise ConfigError(f"{path}: the controller's weights add up to {meta['total']}, the recipe's to {mine['total']}")
    state = load_tensors(path)
    expected = controller.state_dict()
    if set(state) != set(expected):
        raise ConfigError(f"{path}: not the weights of this controller ({len(set(expected) ^ set(state))} names differ)")
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ConfigError(f"{path}: {k} has shape {tuple(v.shape)}, this controller's {tuple(expected[k].shape)}")
    controller.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


__all__ = ["CHILD", "GroupWeights", "StageBlender", "block_groups", "load_stage_blender", "save_stage_blender", "timestep_width"]
