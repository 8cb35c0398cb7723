"""Quality bar of the embedded toy model, measured by the toy world's oracle.

Generates the held-in evaluation prompts (combinations of seen colour, shape, motion and
background that never appeared verbatim in training; listed in the model's toyworld.json) and
reports oracle accuracy for colour, shape, background and motion direction, plus how often a
held-out motion (never trained) is what best fits the generated trajectory ("appears"), and how
often it also explains the trajectory as well as a render of that motion would ("shown": at most
HELDOUT_FIT_MAX of the track unexplained). The same numbers on ground-truth renders of the same
prompts give the oracle's own ceiling.

    python benchmarks/toy_quality.py --append-results docs/RESULTS.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time

import numpy as np
import torch

from motiontune.backbones import load_backbone
from motiontune.data.video_io import to_uint8_frames
from motiontune.diffusion.sampling import SamplingConfig, generate
from motiontune.toyworld.demo import toy_model_path
from motiontune.toyworld.metrics import as_analysis
from motiontune.toyworld.motions import BASE_MOTIONS, HELDOUT_FIT_MAX, HELDOUT_MOTIONS, MOTIONS, heldout_motion_shown
from motiontune.toyworld.render import render, video_to_tensor
from motiontune.toyworld.training import load_dit_checkpoint
from motiontune.toyworld.world import BACKGROUNDS, COLORS, SHAPES, CaptionFields, caption, sample_scene

sys.path.insert(0, os.path.dirname(__file__))
from results_doc import command_line, replace_section, upsert_row  # noqa: E402


def prompt_clip(rng: np.random.Generator, f: CaptionFields, size: tuple[int, int, int]) -> np.ndarray:
    """A ground-truth render (uint8 frames of ``size`` = (frames, height, width)) of a random scene of the prompt ``f``."""
    scene = sample_scene(rng, "base", motions=[f.motion], colors=[f.color], shapes=[f.shape], backgrounds=[f.background])
    return render(scene, *size)


def score(videos: list, fields: list[CaptionFields]) -> dict[str, float]:
    """Oracle accuracies of ``videos`` (uint8 frames, or the oracle's analyses of them) for their prompts."""
    hits = {"color": [], "shape": [], "background": [], "motion_direction": [], "heldout_motion_appears": [],
            "heldout_motion_shown": [], "found": []}
    for video, f in zip(videos, fields):
        a = as_analysis(video)
        hits["found"].append(a.found)
        hits["color"].append(a.color == f.color)
        hits["shape"].append(a.shape == f.shape)
        hits["background"].append(a.background == f.background)
        hits["motion_direction"].append(a.motion == f.motion)
        fit = a.fit_motion(MOTIONS) if a.found and len(a.found_frames) > 1 else None
        # appears: a held-out motion is the best of the vocabulary's fits, however poor;
        # shown: and it explains the track as well as a render of that motion (HELDOUT_FIT_MAX)
        hits["heldout_motion_appears"].append(fit is not None and fit.motion in HELDOUT_MOTIONS)
        hits["heldout_motion_shown"].append(fit is not None and heldout_motion_shown(fit))
    return {k: float(np.mean(v)) for k, v in hits.items()}


def clip_records(videos: list, fields: list[CaptionFields]) -> list[dict]:
    """Per clip (uint8 frames, or the oracle's analyses of them): its prompt, what the oracle read, and
    the motion of the whole vocabulary that best fits its track, with that fit's unexplained share and
    the asked motion's (None where there is no track)."""
    out = []
    for video, f in zip(videos, fields):
        a = as_analysis(video)
        rec = {"prompt": caption(f), "read": {"color": a.color, "shape": a.shape, "background": a.background, "motion": a.motion}}
        if a.found and len(a.found_frames) > 1:
            fit = a.fit_motion(MOTIONS)
            rec["fit"] = {"motion": fit.motion, "error": round(float(fit.errors[fit.motion]), 4),
                          "asked_error": round(float(fit.errors[f.motion]), 4)}
        else:
            rec["fit"] = None
        out.append(rec)
    return out


def confusion(videos: list, fields: list[CaptionFields]) -> dict[str, dict[str, dict[str, int]]]:
    """For shape and motion: prompt value -> {what the oracle read: count} ("none" where nothing was found)."""
    table: dict[str, dict[str, dict[str, int]]] = {"shape": {}, "motion": {}}
    for video, f in zip(videos, fields):
        a = as_analysis(video)
        for key, asked, read in (("shape", f.shape, a.shape), ("motion", f.motion, a.motion)):
            row = table[key].setdefault(asked, {})
            name = str(read) if read else "none"
            row[name] = row.get(name, 0) + 1
    return table


def confusion_lines(table: dict[str, dict[str, dict[str, int]]]) -> str:
    """One Markdown bullet per asked value: ``- shape square: circle 17, diamond 1``."""
    out = []
    for key, rows in table.items():
        for asked in sorted(rows):
            reads = ", ".join(f"{read} {n}" for read, n in sorted(rows[asked].items(), key=lambda kv: (-kv[1], kv[0])))
            out.append(f"- {key} {asked}: {reads}")
    return "\n".join(out)


@torch.no_grad()
def word_influence(spec, fields: list[CaptionFields], level: float = 0.7, seed: int = 0) -> dict[str, float]:
    """How much the model's clean-clip estimate depends on each word of the prompt.

    Each prompt's ground-truth clip is encoded and noised to ``level``; the denoiser's estimate of
    the clean latents (``x_t - level * v`` for a flow model) is computed with the prompt and with the
    prompt whose colour, shape, motion or background word is swapped for every other value of the
    vocabulary. The result per attribute is the mean of ``|x0(swapped) - x0(prompt)| / |x0(truth)|``:
    0 means the model ignores that word at this noise level.
    """
    values = {"color": COLORS, "shape": SHAPES, "motion": BASE_MOTIONS, "background": BACKGROUNDS}
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, list[float]] = {k: [] for k in values}
    for f in fields:
        clip = prompt_clip(rng, f, spec.default_size)
        x0 = spec.encode_video(video_to_tensor(clip)[None].to(spec.device)).float()
        x_t = (1 - level) * x0 + level * torch.randn(x0.shape, generator=gen).to(x0)
        t = torch.full((1,), level * spec.schedule.num_train_timesteps, device=x0.device)

        def estimate(fields_: CaptionFields) -> torch.Tensor:
            return x_t - level * spec.predict(x_t, t, spec.encode_prompt([caption(fields_)])).float()

        base = estimate(f)
        for key, options in values.items():
            for v in options:
                if v != getattr(f, key):
                    out[key].append(float((estimate(dataclasses.replace(f, **{key: v})) - base).norm() / x0.norm()))
    return {k: float(np.mean(v)) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="toy model folder (default: the packaged one)")
    p.add_argument("--weights", default=None, help="a transformer checkpoint of the toy training (WORK/dit/checkpoints/step-N) to load")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--influence-prompts", type=int, default=16,
                   help="prompts for the word-influence diagnostic (0: skip it); see word_influence")
    p.add_argument("--output-json", default=None)
    p.add_argument("--append-results", default=None, help="write the table into this Markdown file")
    args = p.parse_args(argv)
    folder = args.model or toy_model_path()
    with open(os.path.join(folder, "toyworld.json"), encoding="utf-8") as fh:
        combos = json.load(fh)["heldin_combinations"]
    combos = combos[: args.limit] if args.limit else combos
    fields = [CaptionFields(c, s, m, b) for c, s, m, b in combos]
    prompts = [caption(f) for f in fields]
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = load_backbone(folder, family="wan")
    if args.weights:
        load_dit_checkpoint(spec, args.weights)
    cfg = SamplingConfig(num_inference_steps=args.steps, guidance_scale=args.guidance, seed=args.seed, batch_size=8)
    t0 = time.time()
    videos = generate(spec, prompts, config=cfg, progress=True)
    seconds = time.time() - t0
    generated = [to_uint8_frames(v) for v in videos]
    rng = np.random.default_rng(args.seed)
    truth = [prompt_clip(rng, f, spec.default_size) for f in fields]
    analyses = [as_analysis(v) for v in generated]  # read once, for the scores and the confusion tables
    model_scores, truth_scores = score(analyses, fields), score(truth, fields)
    rc = SamplingConfig(num_inference_steps=args.steps, guidance_scale=args.guidance).resolved(spec)
    result = {"prompts": len(prompts), "weights": args.weights, "generated": model_scores, "ground_truth_renders": truth_scores,
              "sampling": {"steps": rc.num_inference_steps, "guidance": rc.guidance_scale}, "seconds": seconds,
              "confusion": confusion(analyses, fields), "clips": clip_records(analyses, fields)}
    if args.influence_prompts > 0:
        result["word_influence"] = word_influence(spec, fields[: args.influence_prompts], seed=args.seed)
    print(json.dumps({k: v for k, v in result.items() if k != "clips"}, indent=1))
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
    if args.append_results and args.weights:
        # a training checkpoint: one row of the by-step table, keyed by its step
        name = os.path.basename(os.path.normpath(args.weights))
        step = name.rsplit("step-", 1)[-1]
        # a checkpoint of the tune stage (WORK/tune/checkpoints/step-N) is named as such
        parts = os.path.normpath(args.weights).split(os.sep)
        if len(parts) >= 3 and parts[-2] == "checkpoints" and parts[-3] == "tune":
            step = f"tune {step}"
        # keyed by the transformer's patch as well, so that runs of different designs keep their own rows
        patch = "x".join(str(int(v)) for v in spec.denoiser.config.patch_size)
        intro = (
            "Training checkpoints of the toy transformer read the same way as the packaged model above, one row "
            "per checkpoint (`python benchmarks/toy_quality.py --model WORK/pipeline --weights "
            "WORK/dit/checkpoints/step-N --append-results docs/RESULTS.md`; the rows keep their own prompt counts "
            "and sampling settings; the first cell is the transformer's patch and the step). Patch 1x4x4 is the first "
            "model (batch 32, logit-normal noise levels to step 4,000), patch 1x2x2 the present design (docs/toyworld.md, "
            "\"Training\")."
        )
        header = ["patch / step", "prompts", "steps / guidance", "colour", "shape", "background", "motion direction",
                  "held-out motion appears", "date"]
        g = model_scores
        upsert_row(args.append_results, "## Toy model quality by training step", intro, header, [
            f"{patch} / {step}", str(len(prompts)), f"{rc.num_inference_steps} / {rc.guidance_scale:g}", f"{g['color']:.3f}", f"{g['shape']:.3f}",
            f"{g['background']:.3f}", f"{g['motion_direction']:.3f}", f"{g['heldout_motion_appears']:.3f}", time.strftime("%Y-%m-%d"),
        ])
    elif args.append_results:
        cmd = command_line(__file__, argv)
        rows = "\n".join(
            f"| {k.replace('_', ' ')} | {model_scores[k]:.3f} | {truth_scores[k]:.3f} |" for k in model_scores
        )
        body = (
            f"Command: `{cmd.strip()}` — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
            f"{platform.machine()}.\n\n"
            f"{len(prompts)} held-in prompts (seen factors, unseen combinations), {rc.num_inference_steps} sampling steps, "
            f"guidance {rc.guidance_scale}, generation took {seconds:.0f} s. Bar: at least 0.90 for colour, shape, background "
            f"and motion direction; held-out motions should not appear. \"Heldout motion appears\": a held-out motion is "
            f"the best fit of the vocabulary to the clip's track, however poor; \"shown\": it also leaves at most "
            f"{HELDOUT_FIT_MAX:g} of the track unexplained, as renders of the held-out motions do.\n\n"
            f"| oracle reading | generated | ground-truth renders |\n|---|---|---|\n{rows}\n\n"
            f"What the oracle read, by the shape and motion the prompt asked for (generated clips):\n\n"
            f"{confusion_lines(result['confusion'])}\n"
        )
        replace_section(args.append_results, "## Toy model quality", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
