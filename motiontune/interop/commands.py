"""``motiontune export``: an adapter folder as a LoRA file for other tools (ComfyUI)."""

from __future__ import annotations

import argparse
from typing import Any

from motiontune.cli_shared import register_command
from motiontune.errors import ConfigError

EXAMPLE = """example:
  motiontune export runs/dance --format comfyui --output dance_wan_lora.safetensors
  (Wan2.1 and HunyuanVideo; plain LoRA adapters only: lora, timestep, motiondirector's temporal branch)"""


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("adapter", help="adapter folder written by `motiontune train`")
    p.add_argument("--format", help="comfyui: original checkpoint key naming (diffusion_model.blocks.N.self_attn.q.lora_A.weight ...)")
    p.add_argument("--output", help="the LoRA file to write (.safetensors)")


def _run(s: dict[str, Any]) -> int:
    from motiontune.interop.comfyui import export

    folder, fmt, output = s.pop("adapter", None), s.pop("format", None), s.pop("output", None)
    if not fmt:
        raise ConfigError("export needs --format (comfyui)")
    if s:
        raise ConfigError(f"unknown setting(s) for export: {', '.join(sorted(s))}")
    result = export(folder, fmt, output)
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {result.path}: {result.layers} layers, {result.keys} tensors ({result.family}, ComfyUI key naming)")
    return 0


register_command("export", "export an adapter folder as a LoRA file for other tools (ComfyUI)", _add_arguments, _run, EXAMPLE)
