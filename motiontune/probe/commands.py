"""The ``probe`` subcommand (registered with motiontune.cli_shared, loaded by motiontune.cli)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from motiontune.cli_shared import add_model_arguments, add_size_arguments, register_command
from motiontune.errors import ConfigError, InputError

PROBE_EXAMPLE = """example:
  motiontune probe --backbone toy --video orbit.mp4 \\
      --caption "a red circle orbits on a black background" \\
      --edit-caption "a blue square orbits on a black background" \\
      --grid-step 100 --steps 50 --output probes/orbit
  motiontune probe --backbone zeroscope-v2-576w --video dog.mp4 --caption "a dog runs on the beach" \\
      --edit-caption "a tiger runs on the beach" --clip openai/clip-vit-base-patch32 \\
      --num-frames 16 --height 256 --width 256 --output probes/dog

For each tau_start > tau_end on the grid, the video is inverted with --caption and resampled with
--edit-caption for tau_end <= t < tau_start (--caption elsewhere). Writes probe.json,
heatmap_motion.png, heatmap_appearance.png and tradeoff.png, and prints the suggested tau for the
timestep recipe (train and apply the adapter at t >= tau)."""


def _probe_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--video", help="reference video (mp4/mov/webm/gif or a folder of frames)")
    p.add_argument("--caption", help="the reference video's caption (used for the inversion)")
    p.add_argument("--edit-caption", help="the caption with a new subject and the same motion")
    p.add_argument("--grid-step", type=int, help="spacing of the (tau_start, tau_end) grid over 0..1000 (default 100)")
    p.add_argument("--steps", type=int, help="inversion and sampling steps (default: the backbone's)")
    add_size_arguments(p)
    p.add_argument("--guidance", type=float, help="classifier-free guidance while resampling (default 1: none)")
    p.add_argument("--inversion-guidance", type=float, help="classifier-free guidance while inverting (default 1)")
    p.add_argument("--clip", help="CLIP weights, folder or hub id (e.g. openai/clip-vit-base-patch32) for the appearance score")
    p.add_argument("--start", choices=["T", "inverted"], help="resample from the inverted latent at T (default) or at tau_start")
    p.add_argument("--appearance-fraction", type=float, help="suggestion: share of the best appearance score to reach (default 0.8)")
    p.add_argument("--motion-fraction", type=float, help="suggestion: motion threshold as a share of the reconstruction's (default 0.9)")
    p.add_argument("--motion-threshold", type=float, help="suggestion: absolute motion threshold (overrides --motion-fraction)")
    p.add_argument("--save-videos", action="store_true", help="also write the reconstruction and the tau_end=0 videos")
    p.add_argument("--output", help="output folder for probe.json and the plots")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


PROBE_KEYS = {
    "grid_step": "grid_step", "steps": "num_inference_steps", "guidance": "guidance",
    "inversion_guidance": "inversion_guidance", "num_frames": "num_frames", "height": "height", "width": "width",
    "start": "start", "appearance_fraction": "appearance_fraction", "motion_fraction": "motion_fraction",
    "motion_threshold": "motion_threshold", "save_videos": "save_videos",
}


def run_probe_command(s: dict[str, Any]) -> int:
    from motiontune.probe.probe import ProbeConfig

    video, caption, edit = s.pop("video", None), s.pop("caption", None), s.pop("edit_caption", None)
    backbone, output = s.pop("backbone", None), s.pop("output", None)
    if not backbone:
        raise ConfigError("probe needs --backbone (an alias, hub id, folder or 'toy')")
    if not video:
        raise ConfigError("probe needs --video (the reference video)")
    if not caption or not edit:
        raise ConfigError("probe needs --caption (the reference's) and --edit-caption (new subject, same motion)")
    if not output:
        raise ConfigError("probe needs --output (a folder for probe.json and the plots)")
    if not isinstance(video, str) or not os.path.exists(video):
        raise InputError(f"{video}: no such video file or frame folder")
    config = ProbeConfig(**{PROBE_KEYS[k]: s.pop(k) for k in list(s) if k in PROBE_KEYS})
    clip = s.pop("clip", None)
    quiet = s.pop("quiet", False)
    family, device, dtype = s.pop("family", None), s.pop("device", None), s.pop("dtype", "fp32")
    if s:
        raise ConfigError(f"unknown setting(s) for probe: {', '.join(sorted(s))}")

    from motiontune.api import resolve_device, resolve_dtype
    from motiontune.backbones import load_backbone
    from motiontune.probe.probe import run_probe

    spec = load_backbone(backbone, family=family, device=resolve_device(device), dtype=resolve_dtype(dtype))
    result = run_probe(spec, video, caption, edit, config, clip=clip, output_dir=output, progress=not quiet)
    inv = result.inversion
    print(f"inversion: {inv['steps']} steps ({inv['method']}), reconstruction PSNR {inv['psnr']:.2f} dB "
          f"(VAE alone {inv['vae_psnr']:.2f} dB)")
    print(f"grid: {len(result.rows)} (tau_start, tau_end) pairs; appearance score: {result.appearance_metric or 'none'}")
    sug = result.suggestion
    if sug["tau"] is not None:
        print(f"suggested tau: {sug['tau']:g} (motion {sug['motion']:.3f} >= {sug['motion_threshold']:.3f}, "
              f"appearance {sug['appearance']:.3f})")
    else:
        print(f"suggested tau: none ({sug['reason']})")
    for path in result.files.values():
        print(path)
    return 0


register_command("probe", "measure where motion and appearance form along the denoising timesteps (sets tau)",
                 _probe_arguments, run_probe_command, PROBE_EXAMPLE)
