"""Where along the noise trajectory a toy model fails: generation started from a real clip of the
prompt noised to level s, read by the toy oracle.

For each start level s the held-in prompts' ground-truth clips are encoded, noised to the first
noise level of the sampling grid at or below s (``x_s = (1 - s) x0 + s eps``), and denoised
with Euler steps of the flow (classifier-free guidance, the grid warped by the model's
flow_shift). s = 1 is plain generation from noise. A model that scores well from s = 0.8 but not
from s = 1 finishes clips whose subject is already placed but cannot place and move one: its
high-noise regime is under-trained.

    python benchmarks/toy_partial_noise.py --levels 0.5,0.8,0.95,1 --limit 16
    python benchmarks/toy_partial_noise.py --model WORK/pipeline --weights WORK/dit/checkpoints/step-004000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

from motiontune.backbones import load_backbone
from motiontune.data.video_io import to_uint8_frames
from motiontune.errors import ConfigError
from motiontune.toyworld.demo import toy_model_path
from motiontune.toyworld.render import video_to_tensor
from motiontune.toyworld.training import load_dit_checkpoint
from motiontune.toyworld.world import CaptionFields, caption

sys.path.insert(0, os.path.dirname(__file__))
from results_doc import command_line, replace_section  # noqa: E402
from toy_quality import prompt_clip, score  # noqa: E402


def sigma_grid(steps: int, shift: float) -> np.ndarray:
    """The sampler's noise levels from 1 to 0, warped by ``shift`` (``s' = shift s / (1 + (shift - 1) s)``)."""
    s = np.linspace(1.0, 0.0, steps + 1)
    return shift * s / (1 + (shift - 1) * s)


@torch.no_grad()
def denoise_from(spec, x0: torch.Tensor, cond, uncond, level: float, steps: int, shift: float, guidance: float, seed: int) -> torch.Tensor:
    """Clean latents from ``x0`` noised to the grid level at or below ``level``, by Euler steps with CFG."""
    from motiontune.diffusion.sampling import cat_conditioning

    grid = sigma_grid(steps, shift)
    start = int(np.argmax(grid <= level + 1e-9))
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    z = (1 - grid[start]) * x0 + grid[start] * eps
    both = cat_conditioning([uncond, cond])
    for a, b in zip(grid[start:-1], grid[start + 1 :]):
        t = torch.full((2 * z.shape[0],), float(a) * spec.schedule.num_train_timesteps, device=z.device)
        out_u, out_c = spec.predict(torch.cat([z, z]), t, both).float().chunk(2)
        z = z + float(b - a) * (out_u + guidance * (out_c - out_u))
    return z


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="toy model folder (default: the packaged one)")
    p.add_argument("--weights", default=None, help="a training checkpoint of the full recipe to load into the model (adapter.safetensors)")
    p.add_argument("--levels", default="0.5,0.8,0.95,1")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--shift", type=float, default=None, help="default: the model scheduler's flow_shift")
    p.add_argument("--limit", type=int, default=16, help="the first N held-in prompts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--output-json", default=None)
    p.add_argument("--append-results", default=None)
    p.add_argument("--section", default="## Toy model from partial noise")
    args = p.parse_args(argv)
    try:
        levels = [float(v) for v in args.levels.split(",")]
    except ValueError:
        p.error(f"--levels {args.levels!r}: expected comma-separated numbers in (0, 1]")
    if not levels or any(not 0 < v <= 1 for v in levels) or args.steps < 1:
        p.error("--levels must lie in (0, 1] and --steps must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = args.model or toy_model_path()
    with open(os.path.join(folder, "toyworld.json"), encoding="utf-8") as fh:
        combos = json.load(fh)["heldin_combinations"][: args.limit]
    spec = load_backbone(folder, family="wan")
    if args.weights:
        load_dit_checkpoint(spec, args.weights)
    spec.denoiser.eval()
    shift = args.shift if args.shift is not None else float(spec.fresh_scheduler().config.get("flow_shift", 1.0))
    guidance = args.guidance if args.guidance is not None else spec.default_guidance
    fields = [CaptionFields(c, s, m, b) for c, s, m, b in combos]
    prompts = [caption(f) for f in fields]
    rng = np.random.default_rng(args.seed)
    clips = torch.stack([
        video_to_tensor(prompt_clip(rng, f, spec.default_size))
        for f in fields
    ]).to(spec.device)
    t0 = time.time()
    with torch.no_grad():
        x0 = spec.encode_video(clips).float()
        cond, uncond = spec.encode_prompt(prompts), spec.encode_prompt([""] * len(prompts))
    rows = {}
    for level in levels:
        z = denoise_from(spec, x0, cond, uncond, level, args.steps, shift, guidance, args.seed + 1)
        videos = [to_uint8_frames(v) for v in spec.decode_latents(z).float().cpu()]
        rows[f"{level:g}"] = score(videos, fields)
        print(f"start level {level:g}: {json.dumps({k: round(v, 3) for k, v in rows[f'{level:g}'].items()})}", flush=True)
    result = {"prompts": len(prompts), "steps": args.steps, "shift": shift, "guidance": guidance, "weights": args.weights,
              "levels": rows, "seconds": time.time() - t0}
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
    if args.append_results:
        cmd = command_line(__file__, argv)
        table = "\n".join(
            f"| {lv} | {r['color']:.3f} | {r['shape']:.3f} | {r['background']:.3f} | {r['motion_direction']:.3f} | {r['heldout_motion_appears']:.3f} |"
            for lv, r in rows.items()
        )
        body = (
            f"Command: `{cmd.strip()}` — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores, torch {torch.__version__}.\n\n"
            f"{len(prompts)} held-in prompts; ground-truth clips noised to level s, then {args.steps}-step Euler grid "
            f"(shift {shift:g}) from s down, guidance {guidance:g}. s = 1 is plain generation.\n\n"
            "| start level s | colour | shape | background | motion direction | held-out motion appears |\n|---|---|---|---|---|---|\n"
            f"{table}\n"
        )
        replace_section(args.append_results, args.section, body)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2)
