"""The ``heads`` subcommand (registered with motiontune.cli_shared, loaded by motiontune.cli):
classify every attention head of a backbone as spatial or temporal on a reference clip."""

from __future__ import annotations

import argparse
import os
from typing import Any

from motiontune.cli_shared import add_model_arguments, add_size_arguments, register_command
from motiontune.errors import ConfigError, InputError

HEADS_EXAMPLE = """example:
  motiontune heads --backbone toy --video orbit.mp4 \\
      --caption "a red circle orbits on a black background" --output heads/orbit
  motiontune heads --backbone wan2.1-1.3b --video dog.mp4 --caption "a dog runs on the beach" \\
      --num-frames 33 --height 480 --width 832 --criterion mass --output heads/dog

One forward pass of the clip at a high-noise timestep (default: the sampler's second); writes
head_types.json (train with `--recipe follow_your_motion --set head_types=DIR/head_types.json`) and
heads.png (layers x heads), and prints the temporal heads of each layer. Latte and UNet3D have
explicit temporal attention layers: nothing to classify there."""

HEATMAP_FILE = "heads.png"


def _heads_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--video", help="reference video (mp4/mov/webm/gif or a folder of frames)")
    p.add_argument("--caption", help="the reference video's caption")
    p.add_argument("--output", help="output folder for head_types.json and heads.png")
    add_size_arguments(p)
    p.add_argument("--criterion", choices=["cosine", "mass"], help="cosine (the paper, default) or mass (the code)")
    p.add_argument("--alpha", type=float, help="threshold factor (default 1.3)")
    p.add_argument("--timestep", type=float, help="native timestep of the pass (default: the sampler's second timestep)")
    p.add_argument("--chunk", type=int, help="queries per block of the streamed attention scores (default 256)")
    p.add_argument("--seed", type=int, help="seed of the noise (default 0)")


def run_heads_command(s: dict[str, Any]) -> int:
    from motiontune.analysis.heads import DEFAULT_ALPHA, DEFAULT_CHUNK, HEAD_TYPES_FILE, check_criterion
    from motiontune.checks import MAX_SIZE, number

    video, caption, output, backbone = s.pop("video", None), s.pop("caption", None), s.pop("output", None), s.pop("backbone", None)
    if not backbone:
        raise ConfigError("heads needs --backbone (an alias, hub id, folder or 'toy')")
    if not video:
        raise ConfigError("heads needs --video (the reference clip)")
    if caption is None:
        raise ConfigError("heads needs --caption (the reference clip's caption)")
    if not output:
        raise ConfigError("heads needs --output (a folder for head_types.json and heads.png)")
    if not isinstance(video, str) or not os.path.exists(video):
        raise InputError(f"{video}: no such video file or frame folder")
    criterion = check_criterion(s.pop("criterion", "cosine"))
    alpha = number("alpha", s.pop("alpha", DEFAULT_ALPHA), 0, low_open=True)
    timestep = number("timestep", s.pop("timestep", None), 0, 1000, optional=True)
    chunk = number("chunk", s.pop("chunk", DEFAULT_CHUNK), 1, 1 << 20, integer=True)
    seed = number("seed", s.pop("seed", 0), 0, 2**31 - 1, integer=True)
    size = [number(k, s.pop(k, None), 1, MAX_SIZE, integer=True, optional=True) for k in ("num_frames", "height", "width")]
    family, device, dtype = s.pop("family", None), s.pop("device", None), s.pop("dtype", "fp32")
    if s:
        raise ConfigError(f"unknown setting(s) for heads: {', '.join(sorted(s))}")
    from motiontune.api import check_output_folder, resolve_device, resolve_dtype

    check_output_folder(output)

    from motiontune.analysis.heads import classify_heads, joint_sites, write_heatmap
    from motiontune.backbones import load_backbone
    from motiontune.data.frames import prepare_video

    spec = load_backbone(backbone, family=family, device=resolve_device(device), dtype=resolve_dtype(dtype))
    joint_sites(spec)  # refuses Latte / UNet3D before the clip is read
    f0, h0, w0 = spec.default_size
    f, h, w = size[0] or f0, size[1] or h0, size[2] or w0
    spec.check_size(f, h, w)
    pixels = prepare_video(video, f, h, w, frame_rule=spec.frame_rule)
    import torch

    with torch.no_grad():
        x0 = spec.encode_video(pixels.unsqueeze(0)).float()
    types = classify_heads(spec, x0, caption, timestep=timestep, criterion=criterion, alpha=float(alpha), chunk=chunk, seed=seed)
    os.makedirs(output, exist_ok=True)
    json_path = types.save(os.path.join(output, HEAD_TYPES_FILE))
    png_path = write_heatmap(types, os.path.join(output, HEATMAP_FILE))
    print(f"head types ({criterion}, alpha {float(alpha):g}, t = {types.info['timestep']:g}):")
    for line in types.summary():
        print("  " + line)
    print(json_path)
    print(png_path)
    return 0


register_command("heads", "classify the attention heads of a backbone as spatial or temporal (follow_your_motion)",
                 _heads_arguments, run_heads_command, HEADS_EXAMPLE)
