"""Train-state checkpoints: adapter weights, optimizer state and step, all without pickle.

A checkpoint is a folder ``checkpoints/step-000100`` holding ``adapter.safetensors``,
``optimizer.safetensors`` (every tensor of the optimizer state, flattened) and ``state.json``
(step, optimizer hyper-parameters and scalar state). It is written into a temporary folder and
renamed into place, so a crash mid-write leaves the previous checkpoints untouched and never a
half-written one under a final name; what a killed run leaves behind is removed when the next run
starts (:func:`clean_leftovers`). Non-finite adapter weights are never written.

A run that does not go on from a checkpoint of its output folder, while that folder holds a saved
run, trains in a folder beside it (``.NAME.tmp-run``) that replaces the output folder only when the
run ends (:func:`swap_in`), so a saved adapter is never lost to a run that fails or is killed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any

import torch

from motiontune.errors import ConfigError, TrainingDiverged
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
    check_finite(adapter, f"checkpoint step {step}")
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


def check_finite(tensors: dict[str, torch.Tensor], what: str) -> None:
    """Refuse (TrainingDiverged) tensors holding NaN or infinity, naming the first such tensor."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise TrainingDiverged(f"{what}: weight {name} holds NaN or infinite values; not saved")


#: what a run writes into its output folder; other entries of a replaced folder are kept (see :func:`retire`)
RUN_OUTPUTS = ("checkpoints", "validation", "motiontune.json")


def staging_paths(folder: str) -> tuple[str, str]:
    """The folder a run trains in beside ``folder`` when it must not write over it, and the name
    ``folder`` takes while the finished run moves in."""
    parent, name = os.path.split(os.path.abspath(folder))
    return os.path.join(parent, f".{name}.tmp-run"), os.path.join(parent, f".{name}.old-run")


def holds_run(folder: str) -> bool:
    """Whether ``folder`` holds a saved adapter or checkpoints."""
    return os.path.isfile(os.path.join(folder, "motiontune.json")) or bool(list_checkpoints(folder))


def retire(old: str, folder: str) -> None:
    """Delete the replaced output folder ``old``, first moving into ``folder`` the entries that are
    not a run's outputs (e.g. a cache or the user's own files) and that ``folder`` lacks."""
    for name in os.listdir(old):
        if name in RUN_OUTPUTS or name.endswith(".safetensors") or os.path.exists(os.path.join(folder, name)):
            continue
        os.replace(os.path.join(old, name), os.path.join(folder, name))
    shutil.rmtree(old, ignore_errors=True)


def swap_in(staging: str, folder: str) -> None:
    """Put the finished run of ``staging`` in the place of ``folder``."""
    old = staging_paths(folder)[1]
    os.replace(folder, old)
    os.replace(staging, folder)
    retire(old, folder)


def clean_leftovers(folder: str) -> list[str]:
    """Remove what killed runs left in and beside ``folder``: checkpoints half written (``.tmp-step-*``)
    or moved aside (``.old-step-*``), temporary files of atomic writes (``.tmp-*``) and the folder of a
    run that did not finish; a folder swap cut short is completed. Returns the paths removed."""
    staging, old = staging_paths(folder)
    if os.path.isdir(old):
        if not os.path.exists(folder):  # killed between the two renames of swap_in: finish it
            os.replace(staging if os.path.isdir(staging) else old, folder)
        if os.path.isdir(old):
            retire(old, folder)
    removed = [staging] if os.path.exists(staging) else []
    for root, prefixes in ((folder, (".tmp-",)), (os.path.join(folder, "checkpoints"), (".tmp-", ".old-"))):
        if os.path.isdir(root):
            removed += [os.path.join(root, n) for n in os.listdir(root) if n.startswith(prefixes)]
    lora_tmp = os.path.abspath(folder) + ".lora-tmp"  # save_lora_for_diffusers' folder beside the adapter
    removed += [lora_tmp] if os.path.isdir(lora_tmp) else []
    for path in removed:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
    return removed
