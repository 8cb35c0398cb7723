"""Train-state checkpoints: adapter weights, optimizer state and step, all without pickle.

A checkpoint is a folder ``checkpoints/step-000100`` holding ``adapter.safetensors``,
``optimizer.safetensors`` (every tensor of the optimizer state, flattened) and ``state.json``
(step, optimizer hyper-parameters and scalar state). It is written into a temporary folder and
renamed into place, so a crash mid-write leaves the previous checkpoints untouched and never a
half-written one under a final name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any

import torch

from motiontune.errors import ConfigError
from motiontune.utils.files import atomic_directory, load_tensors, save_tensors

CHECKPOINT_RE = re.compile(r"^step-(\d{6,})$")


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in sd["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    groups = meta["param_groups"]
    if len(groups) != len(optimizer.param_groups):
        raise ConfigError("checkpoint optimizer has a different number of parameter groups than this run")
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def optimizers_to_tensors(optimizers: dict[str, torch.optim.Optimizer]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Several optimizers (one per branch) as one flat tensor dict and one metadata dict; a single
    optimizer named ``default`` is written exactly as :func:`optimizer_to_tensors` writes it."""
    if list(optimizers) == ["default"]:
        return optimizer_to_tensors(optimizers["default"])
    tensors: dict[str, torch.Tensor] = {}
    metas: dict[str, Any] = {}
    for name, opt in optimizers.items():
        t, m = optimizer_to_tensors(opt)
        tensors.update({f"{name}/{k}": v for k, v in t.items()})
        metas[name] = m
    return tensors, {"branches": metas}


def optimizers_from_tensors(optimizers: dict[str, torch.optim.Optimizer], tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    if "branches" not in meta:
        if list(optimizers) != ["default"]:
            raise ConfigError(f"checkpoint holds one optimizer but this run has one per branch ({', '.join(optimizers)})")
        optimizer_from_tensors(optimizers["default"], tensors, meta)
        return
    saved = meta["branches"]
    if set(saved) != set(optimizers):
        raise ConfigError(f"checkpoint has optimizers for {', '.join(sorted(saved))}; this run has {', '.join(sorted(optimizers))}")
    for name, opt in optimizers.items():
        prefix = f"{name}/"
        optimizer_from_tensors(opt, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, saved[name])


def save_checkpoint(
    folder: str,
    step: int,
    adapter: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | dict[str, torch.optim.Optimizer],
    extra: dict[str, Any] | None = None,
    keep: int = 2,
) -> str:
    root = os.path.join(folder, "checkpoints")
    final = os.path.join(root, f"step-{step:06d}")
    optimizers = optimizer if isinstance(optimizer, dict) else {"default": optimizer}
    opt_tensors, opt_meta = optimizers_to_tensors(optimizers)
    with atomic_directory(final) as tmp:
        save_tensors(adapter, os.path.join(tmp, "adapter.safetensors"))
        save_tensors(opt_tensors, os.path.join(tmp, "optimizer.safetensors"))
        with open(os.path.join(tmp, "state.json"), "w", encoding="utf-8") as fh:
            json.dump({"step": step, "optimizer": opt_meta, **(extra or {})}, fh, indent=1, default=str)
    prune_checkpoints(root, keep)
    return final


def list_checkpoints(folder: str) -> list[tuple[int, str]]:
    root = os.path.join(folder, "checkpoints")
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        m = CHECKPOINT_RE.match(name)
        path = os.path.join(root, name)
        if m and os.path.isfile(os.path.join(path, "state.json")):
            found.append((int(m.group(1)), path))
    return sorted(found)


def latest_checkpoint(folder: str) -> str | None:
    found = list_checkpoints(folder)
    return found[-1][1] if found else None


def prune_checkpoints(root: str, keep: int) -> None:
    if keep <= 0:
        return
    found = list_checkpoints(os.path.dirname(root))
    for _, path in found[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def load_checkpoint(path: str) -> tuple[int, dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    state_path = os.path.join(path, "state.json")
    try:
        with open(state_path, encoding="utf-8") as fh:
            state = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable checkpoint ({exc})") from exc
    adapter = load_tensors(os.path.join(path, "adapter.safetensors"))
    opt = load_tensors(os.path.join(path, "optimizer.safetensors"))
    return int(state["step"]), adapter, opt, state
