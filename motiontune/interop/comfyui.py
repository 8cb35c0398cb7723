"""Export an adapter folder as one LoRA file in the original checkpoints' key naming, the one ComfyUI
(and diffusers' loader for "non-diffusers" LoRA files) read.

Only adapters whose weights are plain low-rank updates ``W + s * B @ A`` of the base linears can be
exported: peft LoRA adapters (recipes ``lora``, ``timestep`` in its LoRA mode, the shipped
``temporal`` branch of ``motiondirector`` ...) and gated LoRA trained with ``gate="none"`` (the gate
is then absent, the fold is exact). Anything else is refused with one line saying why.

Layouts, per family (the keys carry the ``diffusion_model.`` prefix of the original checkpoints):

* **Wan2.1** (and the toy model, a Wan architecture): ``blocks.N.self_attn.{q,k,v,o}``,
  ``blocks.N.cross_attn.{q,k,v,o,k_img,v_img}``, ``blocks.N.ffn.{0,2}``, each with
  ``.lora_A.weight`` (rank x in), ``.lora_B.weight`` (out x rank) and ``.alpha`` (a scalar,
  ``alpha / rank`` = the adapter's scale), as musubi-tuner and diffusion-pipe write them.
* **HunyuanVideo**: the original checkpoint fuses projections that diffusers keeps apart
  (``double_blocks.N.img_attn_qkv`` = to_q|to_k|to_v, ``txt_attn_qkv`` = add_q|add_k|add_v,
  ``single_blocks.N.linear1`` = to_q|to_k|to_v|proj_mlp). A fused layer gets ``A`` = the parts'
  ``A`` stacked (rank = the sum of their ranks) and ``B`` block-diagonal (rows of a part without an
  adapter are zero), so ``B @ A`` is exactly the parts' updates stacked. The scale is folded into
  ``B`` and no ``.alpha`` is written (diffusers' HunyuanVideo converter does not read alpha keys;
  ComfyUI then applies scale 1).
* **CogVideoX**: refused. ComfyUI's own model loader has no CogVideoX model; CogVideoX LoRAs are
  used there through third-party wrapper nodes built on diffusers, which take the diffusers-format
  file the adapter folder already holds.

The adapter's timestep window (``infer_timesteps``, the ``timestep`` recipe's tau) cannot be carried
by a LoRA file: the exported LoRA applies at every step, which is stated in the output and in the
file's metadata.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from motiontune.errors import ConfigError

FORMATS = ("comfyui",)
PREFIX = "diffusion_model."


@dataclass
class LowRank:
    """One low-rank update ``scale * B @ A`` of a base linear (diffusers module name)."""

    module: str
    A: torch.Tensor  # (rank, in)
    B: torch.Tensor  # (out, rank)
    scale: float


@dataclass
class ExportResult:
    path: str
    keys: int
    layers: int
    family: str
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- reading
def _read(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    from motiontune.utils.files import load_tensors

    if not os.path.isfile(path):
        raise ConfigError(f"{path}: weights file not found (the adapter folder is incomplete)")
    with safe_open(path, "pt") as fh:
        meta = fh.metadata() or {}
    return load_tensors(path), meta


def _strip(key: str) -> str:
    for p in ("transformer.", "unet."):
        if key.startswith(p):
            return key[len(p):]
    return key


def _peft_lora(path: str, rank: int, alpha: float, user_scale: float) -> list[LowRank]:
    state, _ = _read(path)
    mods: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        m = re.match(r"(.+)\.lora_([AB])\.weight$", _strip(key))
        if not m:
            raise ConfigError(f"{path}: {key} is not a LoRA weight (only plain low-rank updates can be exported)")
        mods.setdefault(m.group(1), {})[m.group(2)] = value
    out = []
    for module, ab in sorted(mods.items()):
        if set(ab) != {"A", "B"}:
            raise ConfigError(f"{path}: {module} lacks its lora_{'B' if 'A' in ab else 'A'} weight")
        out.append(LowRank(module, ab["A"].float(), ab["B"].float(), user_scale * alpha / rank))
    return out


def _gated_as_lora(path: str, user_scale: float) -> list[LowRank]:
    state, meta = _read(path)
    gate, mode = meta.get("gate"), meta.get("scale_mode")
    rank, alpha = int(meta.get("rank", 0) or 0), float(meta.get("alpha", 0) or 0)
    if gate != "none":
        raise ConfigError(f"{path}: a gated LoRA (gate={gate!r}) is not a plain low-rank update: its gate sigmoid(w_g . x) "
                          f"depends on each layer's input, so no LoRA file reproduces it (only gate='none' folds exactly)")
    s = alpha if mode == "raw" else alpha / max(rank, 1)
    mods: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        m = re.match(r"(.+)\.gated_(down|up|gate)\.weight$", _strip(key))
        if not m:
            raise ConfigError(f"{path}: unexpected key {key} in a gated LoRA file")
        mods.setdefault(m.group(1), {})[m.group(2)] = value
    return [LowRank(mod, w["down"].float(), w["up"].float(), user_scale * s) for mod, w in sorted(mods.items())]


def low_rank_updates(folder: str) -> tuple[list[LowRank], dict[str, Any], list[str]]:
    """The low-rank updates an adapter folder applies at inference, its ``motiontune.json`` and notes.

    Refuses (ConfigError, one line) a folder whose inference adapters are not plain low-rank updates."""
    from motiontune.recipes import get_recipe_class
    from motiontune.recipes.base import read_recipe_json

    info = read_recipe_json(folder)
    name, cfg = info["recipe"], info.get("config") or {}
    user_scale = float(cfg.get("scale", 1.0) if cfg.get("scale") is not None else 1.0)
    notes: list[str] = []
    window = cfg.get("infer_timesteps") or cfg.get("train_timesteps") or (info.get("tau") and "tau")
    if window or name == "timestep":
        notes.append("the adapter's timestep window (applied only at some sampling steps) cannot be stored in a LoRA file: "
                     "the exported LoRA applies at every step")
    adapters = info.get("adapters")
    if isinstance(adapters, dict) and adapters:
        try:
            wanted = list(get_recipe_class(name).inference_adapters) or list(adapters)
        except ConfigError:
            wanted = list(adapters)
        updates: list[LowRank] = []
        for a in wanted:
            d = adapters.get(a)
            if not isinstance(d, dict):
                raise ConfigError(f"{folder}: the {name} recipe needs its {a!r} adapter at inference, which the folder lacks")
            kind, path = d.get("kind"), os.path.join(folder, str(d.get("file")))
            if kind == "lora":
                updates += _peft_lora(path, int(d["rank"]), float(d["alpha"]), user_scale)
            elif kind == "gated_lora":
                if d.get("gate") != "none":
                    raise ConfigError(f"cannot export {name}: its {a!r} adapter is a gated LoRA (gate={d.get('gate')!r}); the gate "
                                      f"sigmoid(w_g . x) depends on each layer's input, so it is not a low-rank update of the "
                                      f"weights (a gated LoRA trained with --set gate=none folds exactly)")
                updates += _gated_as_lora(path, user_scale)
                notes.append(f"adapter {a!r}: gated LoRA with gate='none', folded exactly into a plain LoRA")
            elif kind == "block_adapter":
                raise ConfigError(f"cannot export {name}: its {a!r} adapter is a bottleneck block adapter "
                                  f"(Linear -> GELU -> Linear on a block's outputs), not a low-rank update of a base weight")
            else:
                raise ConfigError(f"cannot export {name}: its {a!r} adapter is a {kind!r} adapter, not a low-rank update of base weights")
        skipped = [a for a in adapters if a not in wanted]
        if skipped:
            notes.append(f"adapter(s) {', '.join(skipped)} left out: the {name} recipe does not apply them at inference")
        return updates, info, notes
    weights = info.get("weights")
    from motiontune.adapters.lora import LORA_WEIGHTS_NAME

    if weights != LORA_WEIGHTS_NAME:
        what = "full fine-tuning (changed weights in full)" if (cfg.get("mode") == "full" or name == "full") else f"weights {weights!r}"
        raise ConfigError(f"cannot export {name}: the adapter holds {what}, not a low-rank update of base weights")
    rank, alpha = cfg.get("rank"), cfg.get("alpha")
    if rank is None or alpha is None:
        raise ConfigError(f"{folder}: motiontune.json gives no rank/alpha for the LoRA")
    return _peft_lora(os.path.join(folder, weights), int(rank), float(alpha), user_scale), info, notes


# ---------------------------------------------------------------------------------------- key maps
WAN_MAP = [
    (r"blocks\.(\d+)\.attn1\.to_q", "blocks.{}.self_attn.q"),
    (r"blocks\.(\d+)\.attn1\.to_k", "blocks.{}.self_attn.k"),
    (r"blocks\.(\d+)\.attn1\.to_v", "blocks.{}.self_attn.v"),
    (r"blocks\.(\d+)\.attn1\.to_out\.0", "blocks.{}.self_attn.o"),
    (r"blocks\.(\d+)\.attn2\.to_q", "blocks.{}.cross_attn.q"),
    (r"blocks\.(\d+)\.attn2\.to_k", "blocks.{}.cross_attn.k"),
    (r"blocks\.(\d+)\.attn2\.to_v", "blocks.{}.cross_attn.v"),
    (r"blocks\.(\d+)\.attn2\.to_out\.0", "blocks.{}.cross_attn.o"),
    (r"blocks\.(\d+)\.attn2\.add_k_proj", "blocks.{}.cross_attn.k_img"),
    (r"blocks\.(\d+)\.attn2\.add_v_proj", "blocks.{}.cross_attn.v_img"),
    (r"blocks\.(\d+)\.ffn\.net\.0\.proj", "blocks.{}.ffn.0"),
    (r"blocks\.(\d+)\.ffn\.net\.2", "blocks.{}.ffn.2"),
]

#: HunyuanVideo: diffusers module -> (original layer, part index, parts of the fused layer)
HUNYUAN_MAP = [
    (r"transformer_blocks\.(\d+)\.attn\.to_q", "double_blocks.{}.img_attn_qkv", 0, 3),
    (r"transformer_blocks\.(\d+)\.attn\.to_k", "double_blocks.{}.img_attn_qkv", 1, 3),
    (r"transformer_blocks\.(\d+)\.attn\.to_v", "double_blocks.{}.img_attn_qkv", 2, 3),
    (r"transformer_blocks\.(\d+)\.attn\.to_out\.0", "double_blocks.{}.img_attn_proj", 0, 1),
    (r"transformer_blocks\.(\d+)\.attn\.add_q_proj", "double_blocks.{}.txt_attn_qkv", 0, 3),
    (r"transformer_blocks\.(\d+)\.attn\.add_k_proj", "double_blocks.{}.txt_attn_qkv", 1, 3),
    (r"transformer_blocks\.(\d+)\.attn\.add_v_proj", "double_blocks.{}.txt_attn_qkv", 2, 3),
    (r"transformer_blocks\.(\d+)\.attn\.to_add_out", "double_blocks.{}.txt_attn_proj", 0, 1),
    (r"transformer_blocks\.(\d+)\.ff\.net\.0\.proj", "double_blocks.{}.img_mlp.fc1", 0, 1),
    (r"transformer_blocks\.(\d+)\.ff\.net\.2", "double_blocks.{}.img_mlp.fc2", 0, 1),
    (r"transformer_blocks\.(\d+)\.ff_context\.net\.0\.proj", "double_blocks.{}.txt_mlp.fc1", 0, 1),
    (r"transformer_blocks\.(\d+)\.ff_context\.net\.2", "double_blocks.{}.txt_mlp.fc2", 0, 1),
    (r"single_transformer_blocks\.(\d+)\.attn\.to_q", "single_blocks.{}.linear1", 0, 4),
    (r"single_transformer_blocks\.(\d+)\.attn\.to_k", "single_blocks.{}.linear1", 1, 4),
    (r"single_transformer_blocks\.(\d+)\.attn\.to_v", "single_blocks.{}.linear1", 2, 4),
    (r"single_transformer_blocks\.(\d+)\.proj_mlp", "single_blocks.{}.linear1", 3, 4),
    (r"single_transformer_blocks\.(\d+)\.proj_out", "single_blocks.{}.linear2", 0, 1),
]


def _match(table: list, module: str, family: str) -> tuple:
    for row in table:
        m = re.fullmatch(row[0], module)
        if m:
            return (row[1].format(m.group(1)),) + tuple(row[2:])
    raise ConfigError(f"cannot export to ComfyUI: {family} layer {module} has no counterpart in the original checkpoint naming")


def wan_state(updates: list[LowRank]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for u in updates:
        (name,) = _match(WAN_MAP, u.module, "wan")
        rank = u.A.shape[0]
        out[f"{PREFIX}{name}.lora_A.weight"] = u.A.contiguous()
        out[f"{PREFIX}{name}.lora_B.weight"] = u.B.contiguous()
        out[f"{PREFIX}{name}.alpha"] = torch.tensor(u.scale * rank, dtype=torch.float32)
    return out


def hunyuan_state(updates: list[LowRank], mlp: int | None = None) -> dict[str, torch.Tensor]:
    """Fused layers: A stacked, B block-diagonal with the scale folded in (see the module docstring).

    The row count of each part is its B's; a part without an adapter has the rows of its siblings of
    the same width (q, k, v share the width), and the MLP part of ``linear1`` needs ``mlp`` rows when
    it carries no adapter (default: 4 x the attention width, HunyuanVideo's ratio)."""
    groups: dict[str, dict[int, LowRank]] = {}
    nparts: dict[str, int] = {}
    for u in updates:
        name, part, n = _match(HUNYUAN_MAP, u.module, "hunyuan_video")
        if part in groups.setdefault(name, {}):
            raise ConfigError(f"two updates for {u.module}")
        groups[name][part] = u
        nparts[name] = n
    out: dict[str, torch.Tensor] = {}
    for name, parts in groups.items():
        n = nparts[name]
        width = next((p.B.shape[0] for i, p in sorted(parts.items()) if i < 3), None)  # q, k, v share it
        rows = []
        for i in range(n):
            if i in parts:
                rows.append(parts[i].B.shape[0])
            elif i < 3:
                if width is None:
                    raise ConfigError(f"{name}: cannot tell the width of the attention part without an adapter on it")
                rows.append(width)
            else:  # the MLP part of linear1 without an adapter
                rows.append(mlp if mlp is not None else 4 * (width or 0))
        A = torch.cat([parts[i].A for i in sorted(parts)], 0)
        B = torch.zeros(sum(rows), A.shape[0])
        col = 0
        for i in sorted(parts):
            r0 = sum(rows[:i])
            p = parts[i]
            B[r0:r0 + p.B.shape[0], col:col + p.A.shape[0]] = p.B * p.scale
            col += p.A.shape[0]
        out[f"{PREFIX}{name}.lora_A.weight"] = A.contiguous()
        out[f"{PREFIX}{name}.lora_B.weight"] = B.contiguous()
    return out


# ---------------------------------------------------------------------------------------- export
def _family(info: dict[str, Any]) -> tuple[str, str]:
    bb = info.get("backbone") if isinstance(info.get("backbone"), dict) else {}
    fam = bb.get("family")
    if not fam:
        raise ConfigError("the adapter folder does not record its backbone family (motiontune.json has no backbone.family)")
    return str(fam), str(bb.get("source") or "")


def _denoiser_config(source: str) -> dict[str, Any]:
    path = os.path.join(source, "transformer", "config.json")
    if source and os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    return {}


def check_target(folder: str, fmt: str, output: str) -> None:
    """The cheap checks, before any weight is read."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: unknown export format (choose from {', '.join(FORMATS)})")
    if not output:
        raise ConfigError("export needs --output FILE.safetensors")
    if not output.endswith(".safetensors"):
        raise ConfigError(f"--output {output}: the file name must end in .safetensors")
    if not os.path.isdir(folder):
        raise ConfigError(f"{folder}: not an adapter folder")
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise ConfigError(f"--output {output}: the folder {parent} does not exist")


def export_comfyui(folder: str, output: str) -> ExportResult:
    """Write ``folder``'s adapter to ``output`` in the original key naming (see the module docstring)."""
    from motiontune.utils.files import save_tensors

    check_target(folder, "comfyui", output)
    from motiontune.recipes.base import read_recipe_json

    info = read_recipe_json(folder)
    family, source = _family(info)
    if family == "cogvideox":
        raise ConfigError("cannot export a CogVideoX adapter for ComfyUI: ComfyUI's own loader has no CogVideoX model; "
                          "CogVideoX wrapper nodes take the diffusers-format file already in the adapter folder")
    if family not in ("wan", "hunyuan_video"):
        raise ConfigError(f"cannot export a {family} adapter for ComfyUI: only Wan2.1 and HunyuanVideo adapters have a ComfyUI layout here")
    updates, info, notes = low_rank_updates(folder)
    if not updates:
        raise ConfigError(f"{folder}: the adapter holds no LoRA weights to export")
    if family == "wan":
        state = wan_state(updates)
        arch = "wan2.1/lora"
    else:
        cfg = _denoiser_config(source)
        hidden = int(cfg["num_attention_heads"]) * int(cfg["attention_head_dim"]) if cfg else None
        mlp = int(hidden * float(cfg.get("mlp_ratio", 4.0))) if hidden else None
        state = hunyuan_state(updates, mlp)
        arch = "hunyuan-video/lora"
    ranks = sorted({int(u.A.shape[0]) for u in updates})
    meta = {
        "format": "pt",
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": arch,
        "modelspec.implementation": "motiontune",
        "modelspec.title": os.path.splitext(os.path.basename(output))[0],
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(ranks[0] if len(ranks) == 1 else max(ranks)),
        "ss_base_model_version": arch.split("/")[0],
        "motiontune.recipe": str(info.get("recipe")),
        "motiontune.base_model": source,
        "motiontune.notes": " | ".join(notes),
    }
    save_tensors(state, output, metadata=meta)
    return ExportResult(output, len(state), len(updates), family, notes)


def export(folder: str, fmt: str, output: str) -> ExportResult:
    check_target(folder, fmt, output)
    return export_comfyui(folder, output)
